#!/usr/bin/env node
// Runs the test suites with the brokers they need started first, and ends with one summary line:
//   node scripts/test.mjs all                 every project (unit, adapters, conformance on each transport)
//   node scripts/test.mjs conformance <name>  the conformance suite against one transport
//   node scripts/test.mjs clusters            conformance + node-kill on the 3-node RabbitMQ and Kafka clusters
//                                             (never part of `all`; OMNIBUS_CLUSTERS=rabbitmq-cluster picks one)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The transports whose adapters exist; each names the brokers its tests need.
const TRANSPORTS = {
  memory: [],
  rabbitmq: ['rabbitmq', 'rabbitmq-private'],
  kafka: ['kafka'],
  sqs: ['sqs'],
};
const ENABLED = (process.env.OMNIBUS_TRANSPORTS ?? Object.keys(TRANSPORTS).join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const [mode = 'all', ...rest] = process.argv.slice(2);
let projects;
let brokers;
if (mode === 'conformance') {
  const name = rest[0];
  if (!name || !(name in TRANSPORTS)) {
    console.error(`usage: pnpm conformance <${Object.keys(TRANSPORTS).join('|')}>`);
    process.exit(2);
  }
  projects = [`conformance:${name}`];
  brokers = TRANSPORTS[name];
} else if (mode === 'clusters') {
  // Each cluster is its own broker set, started by scripts/brokers/<name>.sh and stopped by nobody.
  const clusters = (process.env.OMNIBUS_CLUSTERS ?? 'rabbitmq-cluster,kafka-cluster')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = clusters.filter((c) => c !== 'rabbitmq-cluster' && c !== 'kafka-cluster');
  if (unknown.length > 0) {
    console.error(`unknown cluster(s) ${unknown.join(', ')} (rabbitmq-cluster, kafka-cluster)`);
    process.exit(2);
  }
  projects = clusters.map((c) => `conformance:${c}`);
  brokers = clusters;
} else if (mode === 'all') {
  projects = ['unit', 'adapters', ...ENABLED.map((t) => `conformance:${t}`)];
  brokers = [...new Set(ENABLED.flatMap((t) => TRANSPORTS[t] ?? []))];
} else {
  console.error('usage: node scripts/test.mjs all | conformance <transport> | clusters');
  process.exit(2);
}

// With Docker and no broker variables, the conformance projects start brokers in testcontainers instead.
const docker = process.env.DOCKER_HOST || existsSync('/var/run/docker.sock');
const pointed = { rabbitmq: 'AMQP_URL', kafka: 'KAFKA_BROKERS', sqs: 'SQS_ENDPOINT' };
if (docker && process.env.OMNIBUS_NO_CONTAINERS !== '1') {
  brokers = brokers.filter((b) => !(b in pointed) || process.env[pointed[b]]);
}

if (brokers.length > 0) {
  const up = spawnSync('bash', [join(root, 'scripts/brokers/up.sh'), ...brokers], {
    stdio: 'inherit',
    cwd: root,
  });
  if (up.status !== 0) {
    console.error(`could not start brokers: ${brokers.join(', ')}`);
    console.log('tests: 0 passed, 1 failed');
    process.exit(1);
  }
}

const reportDir = join(root, '.cache');
const report = join(reportDir, 'vitest-report.json');
mkdirSync(reportDir, { recursive: true });
rmSync(report, { force: true });
const args = [
  'vitest',
  'run',
  ...projects.flatMap((p) => ['--project', p]),
  '--reporter=default',
  '--reporter=json',
];
args.push(`--outputFile.json=${report}`, ...(mode === 'conformance' ? rest.slice(1) : rest));
const run = spawnSync('pnpm', ['exec', ...args], { stdio: 'inherit', cwd: root });

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  passed = r.numPassedTests;
  failed =
    r.numFailedTests + (r.numFailedTestSuites > 0 && r.numFailedTests === 0 ? r.numFailedTestSuites : 0);
  skipped = r.numPendingTests + r.numTodoTests;
} catch {
  failed = Math.max(failed, 1);
}
const status = run.status === 0 && failed === 0 ? 0 : 1;
if (status !== 0 && failed === 0) failed = 1;
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
