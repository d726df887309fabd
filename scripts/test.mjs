#!/usr/bin/env node
// Runs the test suites with the brokers they need started first, and ends with one summary line:
//   node scripts/test.mjs all                 every project (unit, adapters, conformance and contract on each transport)
//   node scripts/test.mjs conformance <name>  the conformance suite against one transport
//   node scripts/test.mjs contract <name>     the transport contract suite against one transport
//   node scripts/test.mjs containers          the conformance suites against brokers in containers
//   node scripts/test.mjs clusters            conformance + node-kill on the 3-node RabbitMQ and Kafka clusters
//                                             (never part of `all`; OMNIBUS_CLUSTERS=rabbitmq-cluster picks one)
//   node scripts/test.mjs tls                 conformance + TLS checks over amqps (rabbitmq-tls), Kafka SSL
//                                             (kafka-tls) and Kafka SASL_SSL/SCRAM (kafka-sasl); not part of `all`
// Every mode builds the packages first (about a minute); --no-build skips that. Other arguments go to vitest.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The transports whose adapters exist; each names the brokers its tests need.
// fauxqs serves the S3 payload store the claim-check scenarios run on every transport.
const TRANSPORTS = {
  memory: ['fauxqs'],
  rabbitmq: ['rabbitmq', 'rabbitmq-private', 'fauxqs'],
  kafka: ['kafka', 'fauxqs'],
  sqs: ['sqs', 'fauxqs'],
  // @omnibus/sqs in SNS fan-out mode, on the fauxqs emulator (AWS_ENDPOINT_URL points elsewhere when set).
  sns: ['fauxqs'],
  nats: ['nats', 'nats-private', 'fauxqs'],
};
const ENABLED = (process.env.OMNIBUS_TRANSPORTS ?? Object.keys(TRANSPORTS).join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const argv = process.argv.slice(2);
// --no-build: skip building the packages (for quick reruns when dist/ is known to be fresh).
const build = !argv.includes('--no-build');
const [mode = 'all', ...rest] = argv.filter((a) => a !== '--no-build');
let projects;
/** One test file at a time (projects that share a broker and restart it). */
let sequential = false;
let brokers;
if (mode === 'conformance' || mode === 'contract') {
  const name = rest[0];
  if (!name || !(name in TRANSPORTS)) {
    console.error(`usage: node scripts/test.mjs ${mode} <${Object.keys(TRANSPORTS).join('|')}>`);
    process.exit(2);
  }
  projects = [`${mode}:${name}`];
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
} else if (mode === 'tls') {
  // Its own mode: 10 minutes on 2 cores at load 30-88 (two more brokers to start, a Kafka restart per Kafka variant),
  // too long to add to `all`. The two TLS brokers are started here and left running, like the others.
  projects = ['conformance:rabbitmq-tls', 'conformance:kafka-tls', 'conformance:kafka-sasl'];
  brokers = ['rabbitmq-tls', 'kafka-tls'];
  // kafka-tls and kafka-sasl are two listeners of one broker, and each project's broker-restart scenario
  // restarts it: run in parallel, one project's restart takes the broker away from the other's tests.
  // One file at a time costs little: the suites took 155 s one file at a time, 153 s in parallel (2 cores, quiet).
  sequential = true;
} else if (mode === 'all') {
  projects = [
    'unit',
    'adapters',
    'cli',
    'console',
    ...ENABLED.flatMap((t) => [`conformance:${t}`, `contract:${t}`]),
  ];
  // The adapters project also holds the stores' suites (Redis, PostgreSQL), whose replica tests use RabbitMQ.
  // The CLI and console projects spawn the built `omnibus` against RabbitMQ, ElasticMQ and Kafka.
  brokers = [
    ...new Set([
      ...ENABLED.flatMap((t) => TRANSPORTS[t] ?? []),
      'rabbitmq',
      'redis',
      'postgres',
      'sqs',
      'kafka',
    ]),
  ];
} else if (mode === 'containers') {
  // Explicit only: a Docker socket on the machine never changes what `pnpm test` does.
  const kinds = (process.env.OMNIBUS_CONTAINER_TRANSPORTS ?? 'rabbitmq,kafka,sqs').split(',').filter(Boolean);
  projects = kinds.map((t) => `conformance:${t}`);
  // The broker-restart scenario drives the private RabbitMQ node, which is a process, not a container.
  // fauxqs serves the S3 payload store of the claim-check scenario.
  brokers = kinds.includes('rabbitmq') ? ['rabbitmq-private', 'fauxqs'] : ['fauxqs'];
  prepareContainers();
} else {
  console.error(
    'usage: node scripts/test.mjs all | conformance <transport> | contract <transport> | containers | clusters | tls',
  );
  process.exit(2);
}

/**
 * Containers mode: Docker must answer (it is not started here: `scripts/docker.sh start`), images are the
 * official ones where a registry answers and the locally built ones otherwise (OMNIBUS_IMAGES=local|official).
 */
function prepareContainers() {
  const docker = (args, opts = {}) => spawnSync('docker', args, { encoding: 'utf8', ...opts });
  const info = docker(['info', '--format', '{{.ServerVersion}}']);
  if (info.error || info.status !== 0) {
    console.error(
      `no Docker engine answers${process.env.DOCKER_HOST ? ` at ${process.env.DOCKER_HOST}` : ''}: ` +
        'the containers mode needs one (install and start it with `bash scripts/docker.sh start`, as root)',
    );
    console.log('tests: 0 passed, 1 failed');
    process.exit(1);
  }
  if (!process.env.OMNIBUS_IMAGES) {
    const pull = docker(['pull', '-q', 'rabbitmq:3.13-management'], { timeout: 60_000 });
    process.env.OMNIBUS_IMAGES = pull.status === 0 ? 'official' : 'local';
    console.log(
      `containers: ${process.env.OMNIBUS_IMAGES} images (an image registry ${pull.status === 0 ? 'answers' : 'does not answer'})`,
    );
  }
  if (process.env.OMNIBUS_IMAGES === 'local') {
    const built = spawnSync('bash', [join(root, 'scripts/docker.sh'), 'images'], {
      stdio: 'inherit',
      cwd: root,
    });
    if (built.status !== 0) {
      console.log('tests: 0 passed, 1 failed');
      process.exit(1);
    }
  }
  for (const v of ['AMQP_URL', 'KAFKA_BROKERS', 'SQS_ENDPOINT']) delete process.env[v];
  Object.assign(process.env, {
    OMNIBUS_CONTAINERS: '1',
    OMNIBUS_TEST_RUN: randomUUID(),
    // Ryuk's image comes from a registry; this runner removes its own containers instead (see below).
    TESTCONTAINERS_RYUK_DISABLED: 'true',
    TESTCONTAINERS_HOST_OVERRIDE: '127.0.0.1',
  });
}

/** Removes this run's containers, whatever happened to the suite; returns how many were left behind. */
function removeContainers() {
  const run = process.env.OMNIBUS_TEST_RUN;
  const list = spawnSync('docker', ['ps', '-aq', '--filter', `label=omnibus.test=${run}`], {
    encoding: 'utf8',
  });
  const ids = (list.stdout ?? '').split('\n').filter(Boolean);
  if (ids.length > 0) spawnSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
  const after = spawnSync('docker', ['ps', '-aq', '--filter', `label=omnibus.test=${run}`], {
    encoding: 'utf8',
  });
  const still = (after.stdout ?? '').split('\n').filter(Boolean);
  if (still.length > 0) console.error(`containers still present after cleanup: ${still.join(' ')}`);
  return { leftBehind: ids.length, still: still.length };
}

// Some suites run the built packages (the `omnibus` binary, transports made from URLs by the packages'
// exports): build first, so that `pnpm install && pnpm test` works on a fresh clone.
if (build) {
  const started = Date.now();
  const b = spawnSync('pnpm', ['build'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0) {
    process.stderr.write(`${b.stdout ?? ''}${b.stderr ?? ''}`);
    console.error('the packages did not build (pnpm build failed; its output is above)');
    console.log('tests: 0 passed, 1 failed');
    process.exit(1);
  }
  console.log(`build: the packages built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
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
// `conformance <name>` and `contract <name>` take a transport name first; the rest goes to vitest.
const named = mode === 'conformance' || mode === 'contract';
args.push(`--outputFile.json=${report}`, ...(named ? rest.slice(1) : rest));
if (sequential) args.push('--no-file-parallelism');
const run = spawnSync('pnpm', ['exec', ...args], { stdio: 'inherit', cwd: root });
let cleanupFailed = false;
if (mode === 'containers') {
  const { leftBehind, still } = removeContainers();
  if (leftBehind > 0) console.error(`containers: removed ${leftBehind} left behind by the suite`);
  console.log(
    `containers: ${still === 0 ? 'none left' : `${still} still present`} (run ${process.env.OMNIBUS_TEST_RUN})`,
  );
  cleanupFailed = still > 0;
}

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
const status = run.status === 0 && failed === 0 && !cleanupFailed ? 0 : 1;
if (status !== 0 && failed === 0) failed = 1;
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
