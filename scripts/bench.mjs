#!/usr/bin/env node
// Benchmarks: raw client vs Omnibus on the same broker, in the same run. Not part of CI.
//   pnpm bench [memory|rabbitmq|kafka|sqs …] [--reps N] [--scale F] [--sizes 200,16384]
//   pnpm bench soak [memory|kafka] [--messages N] [--max-entries N]
//   pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B] [--label L]
// Starts the brokers it needs with scripts/brokers/up.sh (unless AMQP_URL / KAFKA_BROKERS /
// SQS_ENDPOINT point elsewhere), builds the packages, then runs the benchmark sources in bench/src with
// tsx against those builds.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TRANSPORTS = ['memory', 'rabbitmq', 'kafka', 'sqs'];
// The broker each transport needs, and the variable that, when set, means "already running elsewhere".
const BROKERS = {
  rabbitmq: { broker: 'rabbitmq', env: 'AMQP_URL' },
  kafka: { broker: 'kafka', env: 'KAFKA_BROKERS' },
  sqs: { broker: 'sqs', env: 'SQS_ENDPOINT' },
};

const args = process.argv.slice(2);
const BOOLEAN_FLAGS = new Set(['--no-stages', '--no-write', '--help', '-h']);
let entry = 'index';
if (args[0] === 'soak' || args[0] === 'profile') entry = args.shift();
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
      'pnpm bench soak [memory|kafka] [--messages N] [--max-entries N]',
      '    one million messages with a bounded idempotency store, resident memory sampled',
      'pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B] [--label L]',
      '    CPU profile (node --cpu-prof) of the Omnibus path, per phase, and the hot spots in packages/core/src',
    ].join('\n'),
  );
  process.exit(0);
}

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
        : ['memory'];
const brokers = selected
  .map((t) => BROKERS[t])
  .filter((b) => b && !process.env[b.env])
  .map((b) => b.broker);

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
const tsxArgs = ['--dir', 'bench', 'exec', 'tsx'];
// The soak samples heap after a forced collection, so that growth means retained memory, not garbage.
if (entry === 'soak') tsxArgs.push('--expose-gc');
const options = args.filter((a) => !TRANSPORTS.includes(a));
const run = spawnSync('pnpm', [...tsxArgs, `src/${entry}.ts`, ...selected, ...options], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(run.status ?? 1);
