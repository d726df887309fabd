#!/usr/bin/env node
// Benchmarks: raw client vs Omnibus on the same broker, in the same run. Not part of CI.
//   pnpm bench [memory|rabbitmq|kafka|sqs …] [--reps N] [--scale F] [--sizes 200,16384]
//              [--only throughput,latency,naive]
//   pnpm bench soak [memory|kafka] [--messages N] [--max-entries N]
//   pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B] [--label L]
//   pnpm bench stores [--messages N] [--concurrency C]   (idempotency stores: Redis vs memory)
//   pnpm bench postgres [--messages N] [--rows N]   (@omnibus/postgres: claim cost, outbox relay throughput)
//   … --node <major>   (any of the above, e.g. --node 24)
// Starts the brokers it needs with scripts/brokers/up.sh (unless AMQP_URL / KAFKA_BROKERS /
// SQS_ENDPOINT point elsewhere), builds the packages, then runs the benchmark sources in bench/src with
// tsx against those builds. With --node <major>, tsx (and so the benchmark's worker processes, which
// inherit its binary) runs under that Node.js major, fetched with `npx -y node@<major>`, instead of the
// machine's `node`; the figures of a major other than the machine's are kept apart in latest.json
// (`byNode`), and BENCHMARKS.md compares the Omnibus/raw ratios across Node.js versions.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TRANSPORTS = ['memory', 'rabbitmq', 'kafka', 'sqs', 'nats'];
// The broker each transport needs, and the variable that, when set, means "already running elsewhere".
const BROKERS = {
  rabbitmq: { broker: 'rabbitmq', env: 'AMQP_URL' },
  kafka: { broker: 'kafka', env: 'KAFKA_BROKERS' },
  sqs: { broker: 'sqs', env: 'SQS_ENDPOINT' },
  nats: { broker: 'nats', env: 'NATS_URL' },
};

const args = process.argv.slice(2);
const BOOLEAN_FLAGS = new Set(['--no-stages', '--no-write', '--no-peer', '--peer-only', '--help', '-h']);
let entry = 'index';
if (args[0] === 'soak' || args[0] === 'profile' || args[0] === 'stores' || args[0] === 'postgres')
  entry = args.shift();
const named = args.filter((a) => TRANSPORTS.includes(a));
const unknown = args.filter((a, i) => !a.startsWith('-') && !TRANSPORTS.includes(a) && !isOptionValue(i));
if (unknown.length > 0) {
  console.error(`unknown transport(s): ${unknown.join(', ')}; expected ${TRANSPORTS.join(', ')}`);
  process.exit(2);
}
if (args.includes('--help') || args.includes('-h')) {
  console.log(
    [
      'pnpm bench [memory|rabbitmq|kafka|sqs …] [--reps N] [--scale F] [--sizes 200,16384]',
      '    raw client vs Omnibus, every transport by default; writes bench/results/latest.json and BENCHMARKS.md',
      '    --only throughput,latency,naive: the parts to run (naive: a service publishing one event per request,',
      '    one at a time and 64 at once, against the raw client sending one message per call); others keep their figures',
      '    then Omnibus (zod schema) vs message-queue-toolkit where it has an adapter (--no-peer skips, --peer-only runs only that)',
      'pnpm bench soak [memory|kafka] [--messages N] [--max-entries N]',
      '    one million messages with a bounded idempotency store, resident memory sampled',
      'pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B] [--label L]',
      '    CPU profile (node --cpu-prof) of the Omnibus path, per phase, and the hot spots in packages/core/src',
      'pnpm bench stores [--messages N] [--concurrency C]',
      '    claim + complete per message: the Redis idempotency store against memoryStore; bench/results/stores.json',
      'pnpm bench postgres [--messages N] [--rows N]',
      '    @omnibus/postgres: claim cost against memoryStore, outbox relay throughput into RabbitMQ and Kafka (if it answers)',
      '--node <major>  (any of the above, e.g. --node 24)',
      "    run under that Node.js major (npx -y node@<major>) instead of the machine's node; a run under another",
      '    major than the machine\'s keeps its figures apart (latest.json byNode, "by Node.js version" in BENCHMARKS.md)',
    ].join('\n'),
  );
  process.exit(0);
}

// --node <major> | --node=<major>: the launcher's own option, not passed on to the benchmark.
const nodeAt = args.findIndex((a) => a === '--node' || a.startsWith('--node='));
let nodeMajor;
if (nodeAt >= 0) {
  const inline = args[nodeAt].startsWith('--node=');
  nodeMajor = inline ? args[nodeAt].slice('--node='.length) : args[nodeAt + 1];
  // tsx 4 needs Node.js 18 or later.
  if (!/^\d+$/.test(nodeMajor ?? '') || Number(nodeMajor) < 18) {
    console.error('bench: --node takes a Node.js major version from 18 on, e.g. --node 24');
    process.exit(2);
  }
  args.splice(nodeAt, inline ? 1 : 2);
}
// Fetched before brokers and builds, so that a wrong major fails at once.
const nodeBin = nodeMajor ? nodeBinary(nodeMajor) : undefined;

function isOptionValue(i) {
  const prev = args[i - 1];
  return !!prev?.startsWith('--') && !prev.includes('=') && !BOOLEAN_FLAGS.has(prev);
}

// Which transports will run: the ones named, else the entry's default set.
const selected =
  named.length > 0
    ? named
    : entry === 'index'
      ? TRANSPORTS
      : entry === 'soak'
        ? ['memory', 'kafka']
        : entry === 'stores' || entry === 'postgres'
          ? []
          : ['memory'];
const brokers = selected
  .map((t) => BROKERS[t])
  .filter((b) => b && !process.env[b.env])
  .map((b) => b.broker);
// The stores benchmark needs Redis rather than a transport's broker.
if (entry === 'stores' && !process.env.REDIS_URL) brokers.push('redis');
// The postgres benchmark needs PostgreSQL and RabbitMQ; it measures Kafka only when Kafka already answers.
if (entry === 'postgres') {
  if (!process.env.DATABASE_URL) brokers.push('postgres');
  if (!process.env.AMQP_URL) brokers.push('rabbitmq');
}

if (brokers.length > 0) {
  const up = join(root, 'scripts/brokers/up.sh');
  if (!existsSync(up)) {
    console.error(
      `bench: ${up} is missing; start the brokers (${brokers.join(', ')}) yourself and set their variables`,
    );
    process.exit(1);
  }
  const started = spawnSync('bash', [up, ...brokers], { stdio: 'inherit', cwd: root });
  if (started.status !== 0) {
    console.error(`bench: could not start ${brokers.join(', ')}`);
    process.exit(1);
  }
}

// Measure what users install: the packages' tsup builds (dist), not the sources through tsx, whose
// keep-names wrapping (`__name`) costs several per cent of CPU on the hot path and is not in the build.
const build = spawnSync('pnpm', ['-r', '--filter', './packages/*', 'run', 'build'], {
  stdio: ['ignore', 'ignore', 'inherit'],
  cwd: root,
});
if (build.status !== 0) {
  console.error('bench: building the packages failed');
  process.exit(1);
}
// The soak samples heap after a forced collection, so that growth means retained memory, not garbage.
const nodeFlags = entry === 'soak' ? ['--expose-gc'] : [];
const options = args.filter((a) => !TRANSPORTS.includes(a));
// A profile under another Node.js gets a file of its own unless labelled (profile-<transport>-node24.json).
if (entry === 'profile' && nodeBin && !options.some((a) => a === '--label' || a.startsWith('--label='))) {
  options.push(`--label=node${nodeMajor}`);
}
const benchArgs = [`src/${entry}.ts`, ...selected, ...options];
// The TS side tells the main figures (this, the machine's Node.js) from those of another major.
const env = { ...process.env, OMNIBUS_BENCH_MAIN_NODE: process.version };
let run;
if (nodeBin) {
  const version = execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim();
  console.log(`bench: Node.js ${version} (${nodeBin})`);
  const tsx = join(root, 'bench/node_modules/tsx/dist/cli.mjs');
  run = spawnSync(nodeBin, [tsx, ...nodeFlags, ...benchArgs], {
    stdio: 'inherit',
    cwd: join(root, 'bench'),
    env,
  });
} else {
  run = spawnSync('pnpm', ['--dir', 'bench', 'exec', 'tsx', ...nodeFlags, ...benchArgs], {
    stdio: 'inherit',
    cwd: root,
    env,
  });
}
process.exit(run.status ?? 1);

/** The binary of Node.js `major`, through npx's cache (downloaded the first time). */
function nodeBinary(major) {
  console.log(`bench: getting Node.js ${major} (npx -y node@${major})`);
  // stderr kept back: under pnpm, npm warns about pnpm's npm_config_* variables; shown only on failure.
  const got = spawnSync('npx', ['-y', `node@${major}`, '-p', 'process.execPath'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: root,
  });
  const path = got.stdout?.trim().split('\n').pop()?.trim();
  if (got.status !== 0 || !path || !existsSync(path)) {
    process.stderr.write(got.stderr ?? '');
    console.error(`bench: could not get Node.js ${major} with npx -y node@${major}`);
    process.exit(1);
  }
  return path;
}
