#!/usr/bin/env node
// The chaos run (issue #14): faults injected for real against private brokers, a checker, and
// RELIABILITY.md generated from reliability/results/latest.json.
//   pnpm chaos [rabbitmq|kafka|sqs|nats …] [--short] [--scenario=consumer-kill,partition,…] [--no-build]
//   pnpm chaos --report     (only regenerate RELIABILITY.md from latest.json)
// Starts the chaos network (scripts/brokers/chaos-net.sh) and each selected transport's private broker
// (rabbitmq-private, kafka-private, elasticmq-private, nats-private), builds the packages, then runs
// reliability/src/chaos.ts with tsx against those builds. Exits non-zero when a message was lost.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TRANSPORTS = ['rabbitmq', 'kafka', 'sqs', 'nats'];
const BROKER_SCRIPT = {
  rabbitmq: 'rabbitmq-private.sh',
  kafka: 'kafka-private.sh',
  sqs: 'elasticmq-private.sh',
  nats: 'nats-private.sh',
};

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(
    [
      'pnpm chaos [rabbitmq|kafka|sqs|nats …] [--short] [--scenario=name,…] [--no-build]',
      '    every fault on every named broker (all by default); writes reliability/results/latest.json and RELIABILITY.md',
      '    scenarios: consumer-kill, consumer-kill-store, producer-kill, broker-restart, broker-pause, partition, overload',
      'pnpm chaos --report',
      '    regenerate RELIABILITY.md from reliability/results/latest.json',
    ].join('\n'),
  );
  process.exit(0);
}
const tsx = (file, extra) =>
  spawnSync('pnpm', ['--dir', 'reliability', 'exec', 'tsx', file, ...extra], { stdio: 'inherit', cwd: root });

if (args.includes('--report')) process.exit(tsx('src/report.ts', []).status ?? 1);

const named = args.filter((a) => !a.startsWith('--'));
const unknown = named.filter((a) => !TRANSPORTS.includes(a));
if (unknown.length > 0) {
  console.error(`chaos: unknown transport(s) ${unknown.join(', ')}; expected ${TRANSPORTS.join(', ')}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('chaos: needs root (network namespaces and nftables for the partition)');
  process.exit(2);
}
const selected = named.length > 0 ? named : TRANSPORTS;

const step = (what, cmd, argv) => {
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    console.error(`chaos: ${what} failed`);
    process.exit(1);
  }
};
step('the chaos network', 'bash', ['scripts/brokers/chaos-net.sh', 'up']);
// The private brokers one after the other: each is a JVM or BEAM start on a small machine.
for (const t of selected)
  step(`starting ${BROKER_SCRIPT[t]}`, 'bash', [`scripts/brokers/${BROKER_SCRIPT[t]}`, 'up']);
// The consumer-kill-store scenario uses the shared Redis.
if (!process.env.REDIS_URL) step('starting redis', 'bash', ['scripts/brokers/redis.sh', 'up']);
// The client processes run the packages' builds (what users install); --no-build reuses the last one.
if (!args.includes('--no-build')) {
  const build = spawnSync('pnpm', ['-r', '--filter', './packages/*', 'run', 'build'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    cwd: root,
  });
  if (build.status !== 0) {
    console.error('chaos: building the packages failed');
    process.exit(1);
  }
}
const started = Date.now();
const run = tsx(
  'src/chaos.ts',
  args.filter((a) => a !== '--no-build'),
);
console.log(`chaos: ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(run.status ?? 1);
