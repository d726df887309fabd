/**
 * The nemesis: per transport, runs each fault scenario against the transport's private broker with the
 * producer and the consumer as separate OS processes, injects the fault for real (SIGKILL, SIGSTOP, a
 * broker kill and restart, a packet-dropping partition, a backlog for a slow consumer), then checks the
 * records and writes reliability/results/latest.json and RELIABILITY.md.
 * Usage (through `pnpm chaos`): chaos.ts [rabbitmq|kafka|sqs|nats …] [--short] [--scenario name,…]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { connect } from '@omnibus/core';
import {
  brokerPid,
  brokerScript,
  CHAOS_NAMESPACE,
  createTransport,
  ensureRabbitUser,
  PROFILES,
  RABBITMQ_PASSWORD_ENV,
  SCRIPTS_DIR,
  TRANSPORTS,
  type TransportName,
  type Where,
} from './brokers.js';
import { type CheckResult, check, type Fault, type Handled, type Published } from './checker.js';
import { cleanup, readDeadLetterIds } from './deadletters.js';
import { type ConsumerRole, isPoison, type ProducerRole, RecordTail } from './records.js';
import { writeReport } from './report.js';
import { findLeaks } from './secrets.js';

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));
const LOG_DIR = `${RESULTS_DIR}logs/`;
const RECORDS_DIR = `${RESULTS_DIR}records/`;
const LATEST = `${RESULTS_DIR}latest.json`;

// ---- command line -----------------------------------------------------------------------------------

const args = process.argv.slice(2);
const short = args.includes('--short');
const scenarioArg = args.find((a) => a.startsWith('--scenario='))?.slice('--scenario='.length);
const named = args.filter((a) => !a.startsWith('--'));
const unknown = named.filter((a) => !TRANSPORTS.includes(a as TransportName));
if (unknown.length > 0) {
  console.error(`chaos: unknown transport(s) ${unknown.join(', ')}; expected ${TRANSPORTS.join(', ')}`);
  process.exit(2);
}
const selected = (named.length > 0 ? named : TRANSPORTS) as TransportName[];
const mode = short ? 'short' : 'full';

/** Sizes of one run: the short one is for CI (one round of each fault, small counts). */
const SIZE = short
  ? {
      ratePerSec: 100,
      consumerKills: 1,
      brokerKills: 1,
      pauseMs: 10_000,
      partitionMs: 10_000,
      overloadPrefetch: 50,
    }
  : {
      ratePerSec: 100,
      consumerKills: 5,
      brokerKills: 2,
      pauseMs: 10_000,
      partitionMs: 15_000,
      overloadPrefetch: 200,
    };
/** How long to wait for messages to flow again after a fault. */
const DRAIN_DEADLINE_MS = 120_000;
/**
 * The end of the wait for the backlog: this long without one message handled. Longer than every lease a
 * crashed consumer leaves behind (visibility and ack-wait 10 s, Kafka session 10 s, the store's 10 s lease)
 * plus a process start on a loaded machine.
 */
const DRAIN_STALL_MS = 90_000;
const GROUP = 'chaos';

// ---- small helpers ----------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(
  what: string,
  deadlineMs: number,
  cond: () => boolean | Promise<boolean>,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

function rssBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  log: string;
}

// ---- one scenario -----------------------------------------------------------------------------------

type ScenarioName =
  | 'consumer-kill'
  | 'consumer-kill-store'
  | 'producer-kill'
  | 'broker-restart'
  | 'broker-pause'
  | 'partition'
  | 'overload';

const SCENARIOS: readonly ScenarioName[] = [
  'consumer-kill',
  'consumer-kill-store',
  'producer-kill',
  'broker-restart',
  'broker-pause',
  'partition',
  'overload',
];

export interface ScenarioResult extends CheckResult {
  scenario: ScenarioName;
  fault: string;
  faults: number;
  /** Publishes that failed (rejected or timed out): never promised, so never "lost". */
  publishFailed: number;
  /** Consumer processes started in the scenario. */
  consumers: number;
  peakRssMb: number | null;
  baselineRssMb: number | null;
  prefetch: number;
  durationMs: number;
  /** When the scenario ended (a `--scenario` run replaces only its own rows). */
  date?: string;
  logs: string;
}

class Scenario {
  readonly topic: string;
  readonly dir: string;
  readonly faults: Fault[] = [];
  readonly #procs: Proc[] = [];
  #consumers = 0;
  #producers = 0;
  #peakRss = 0;
  #baselineRss: number | undefined;
  #sampler: NodeJS.Timeout | undefined;
  consumer: Proc | undefined;
  producer: Proc | undefined;
  readonly started = Date.now();
  readonly #nemesisLog: number;

  constructor(
    readonly transport: TransportName,
    readonly name: ScenarioName,
    readonly where: Where,
  ) {
    this.topic = `chaos-${name}-${randomBytes(3).toString('hex')}`;
    this.dir = `${RECORDS_DIR}${transport}/${name}/`;
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    for (const f of readdirSync(LOG_DIR)) if (f.startsWith(`${transport}-${name}-`)) rmSync(LOG_DIR + f);
    this.#nemesisLog = openSync(`${LOG_DIR}${transport}-${name}-nemesis.log`, 'w');
  }

  log(msg: string): void {
    const line = `${new Date().toISOString()} ${this.transport}/${this.name}: ${msg}`;
    console.log(line);
    writeFileSync(this.#nemesisLog, `${line}\n`);
  }

  #spawn(kind: 'producer' | 'consumer', n: number, role: object, where: Where): Proc {
    const script = fileURLToPath(new URL(`./${kind}.ts`, import.meta.url));
    const nodeArgs = [...process.execArgv, script];
    const [cmd, argv] =
      where === 'ns'
        ? ['ip', ['netns', 'exec', CHAOS_NAMESPACE, process.execPath, ...nodeArgs]]
        : [process.execPath, nodeArgs];
    const log = `${LOG_DIR}${this.transport}-${this.name}-${kind}${n}.log`;
    const out = openSync(log, 'a');
    const child = spawn(cmd as string, argv as string[], {
      stdio: ['ignore', out, out],
      env: { ...process.env, OMNIBUS_CHAOS_ROLE: JSON.stringify(role) },
    });
    if (child.pid === undefined) throw new Error(`could not start the ${kind}`);
    children.add(child);
    child.on('exit', () => children.delete(child));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const proc = { child, pid: child.pid, exited, log };
    this.#procs.push(proc);
    return proc;
  }

  startConsumer(options: Partial<ConsumerRole> = {}): Proc {
    const n = ++this.#consumers;
    const role: ConsumerRole = {
      transport: this.transport,
      where: this.where,
      topic: this.topic,
      group: GROUP,
      concurrency: 8,
      prefetch: 16,
      handlerDelayMs: [1, 10],
      poisonEvery: 20,
      recordFile: `${this.dir}consumer${n}.rec`,
      ...options,
    };
    this.consumer = this.#spawn('consumer', n, role, this.where);
    this.log(`consumer ${n} started (pid ${this.consumer.pid})`);
    return this.consumer;
  }

  startProducer(options: Partial<ProducerRole> = {}): Proc {
    const n = ++this.#producers;
    const role: ProducerRole = {
      transport: this.transport,
      where: this.where,
      topic: this.topic,
      generation: n,
      count: 10_000_000,
      ratePerSec: SIZE.ratePerSec,
      keys: 20,
      payloadBytes: 256,
      window: 64,
      recordFile: `${this.dir}producer${n}.rec`,
      ...options,
    };
    this.producer = this.#spawn('producer', n, role, this.where);
    this.log(`producer ${n} started (pid ${this.producer.pid})`);
    return this.producer;
  }

  /** Samples the current consumer's resident memory every 100 ms. */
  sampleRss(): void {
    this.#sampler = setInterval(() => {
      if (!this.consumer) return;
      const rss = rssBytes(this.consumer.pid);
      if (rss !== undefined) this.#peakRss = Math.max(this.#peakRss, rss);
    }, 100);
  }

  markBaselineRss(): void {
    if (this.consumer) this.#baselineRss = rssBytes(this.consumer.pid);
  }

  #files(prefix: string): string[] {
    return readdirSync(this.dir)
      .filter((f) => f.startsWith(prefix) && f.endsWith('.rec'))
      .sort((a, b) => Number(/\d+/.exec(a)?.[0]) - Number(/\d+/.exec(b)?.[0]))
      .map((f) => this.dir + f);
  }

  readonly #tail = new RecordTail();

  published(): { resolved: Published[]; failed: number } {
    const resolved: Published[] = [];
    let failed = 0;
    for (const f of this.#files('producer')) {
      for (const r of this.#tail.rows(f)) {
        if (r[0] === 'R') resolved.push({ id: r[1]!, key: r[2]!, seq: Number(r[3]), at: Number(r[4]) });
        else if (r[0] === 'F') failed++;
      }
    }
    return { resolved, failed };
  }

  handled(): Handled[] {
    const out: Handled[] = [];
    for (const f of this.#files('consumer')) {
      for (const r of this.#tail.rows(f)) {
        if (r[0] === 'H')
          out.push({ id: r[1]!, key: r[2]!, seq: Number(r[3]), at: Number(r[4]), pid: Number(r[5]) });
      }
    }
    return out;
  }

  /** Lines of a kind in the current consumer's record (READY once it subscribed). */
  consumerReady(): boolean {
    const f = `${this.dir}consumer${this.#consumers}.rec`;
    return this.#tail.rows(f).some((r) => r[0] === 'READY');
  }

  handledSince(at: number): number {
    return this.handled().filter((h) => h.at >= at).length;
  }

  async kill(proc: Proc, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    proc.child.kill(signal);
    await proc.exited;
  }

  /**
   * Waits until every resolved publish that is not poison was handled (the poison ones are checked in the
   * DLQ). A backlog still shrinking is waited for; only DRAIN_STALL_MS without a single new handled
   * message ends the wait, and what is then missing counts as lost.
   */
  async drain(poisonEvery: number): Promise<void> {
    let lastCount = -1;
    let lastProgress = Date.now();
    for (;;) {
      const handledRecords = this.handled();
      const handled = new Set(handledRecords.map((h) => h.id));
      const missing = this.published().resolved.filter(
        (p) => !handled.has(p.id) && !isPoison(p.seq, poisonEvery),
      );
      if (missing.length === 0) break;
      if (handledRecords.length !== lastCount) {
        lastCount = handledRecords.length;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > DRAIN_STALL_MS) {
        this.log(
          `nothing handled for ${DRAIN_STALL_MS} ms with ${missing.length} resolved messages not handled`,
        );
        break;
      }
      await sleep(500);
    }
    // Late dead-letter hand-offs and redeliveries of the last messages.
    await sleep(2_000);
  }

  async finish(
    fault: string,
    prefetch: number,
    poisonEvery: number,
    storeUsed: boolean,
  ): Promise<ScenarioResult> {
    if (this.#sampler) clearInterval(this.#sampler);
    for (const p of this.#procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM');
        const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
        await p.exited;
        clearTimeout(timer);
      }
    }
    const deadLettered = await readDeadLetterIds(this.transport, this.topic, GROUP);
    const { resolved, failed } = this.published();
    const result = check({
      published: resolved,
      handled: this.handled(),
      deadLettered,
      faults: this.faults,
      orderPromised: orderPromised(PROFILES[this.transport].orderScope, this.#consumers),
      storeUsed,
    });
    // Poison messages must be in the DLQ, and only they.
    const poisonResolved = resolved.filter((p) => isPoison(p.seq, poisonEvery)).length;
    this.log(
      `published ${result.published} (failed ${failed}), handled ${result.handledUnique}, ` +
        `dead-lettered ${result.deadLettered} (poison published ${poisonResolved}), lost ${result.lost}, ` +
        `duplicates ${result.duplicates}, order violations ${result.orderViolations}, ` +
        `recovery ${result.recoveryMs.map((r) => (r === null ? '-' : `${r} ms`)).join(', ')}`,
    );
    if (result.lost > 0)
      this.log(`LOST ids (first ${result.lostSample.length}): ${result.lostSample.join(' ')}`);
    await cleanup(this.transport, this.topic, GROUP).catch((err: unknown) =>
      this.log(`cleanup: ${String(err)}`),
    );
    return {
      scenario: this.name,
      fault,
      faults: this.faults.length,
      ...result,
      publishFailed: failed,
      consumers: this.#consumers,
      peakRssMb: this.#peakRss > 0 ? round1(this.#peakRss / 1048576) : null,
      baselineRssMb: this.#baselineRss ? round1(this.#baselineRss / 1048576) : null,
      prefetch,
      durationMs: Date.now() - this.started,
      date: new Date().toISOString(),
      logs: `reliability/results/logs/${this.transport}-${this.name}-*.log`,
    };
  }
}

/** Order is promised across the group, or within one process when the scenario kept its one consumer. */
function orderPromised(scope: 'group' | 'process' | 'none', consumers: number): boolean {
  return scope === 'group' || (scope === 'process' && consumers === 1);
}

const round1 = (x: number) => Math.round(x * 10) / 10;

// ---- the faults -------------------------------------------------------------------------------------

async function consumerKills(s: Scenario, kills: number): Promise<void> {
  for (let k = 0; k < kills; k++) {
    const consumer = s.consumer!;
    const since = Date.now();
    // Mid-batch: the consumer is handling a steady stream, with messages in flight.
    await until(
      'the consumer to handle messages',
      60_000,
      () => s.consumerReady() && s.handledSince(since) >= 30,
    );
    const startAt = Date.now();
    await s.kill(consumer);
    s.log(`SIGKILL consumer (pid ${consumer.pid})`);
    s.startConsumer(consumerOptions(s));
    s.faults.push({ kind: 'consumer SIGKILL', startAt, endAt: Date.now() });
    await sleep(short ? 1_000 : 2_000);
  }
}

const consumerOptionsByScenario = new WeakMap<Scenario, Partial<ConsumerRole>>();
const consumerOptions = (s: Scenario) => consumerOptionsByScenario.get(s) ?? {};

/** Creates the topic and the group's queue before any client starts, so that no early publish is dropped. */
async function provision(s: Scenario): Promise<void> {
  const bus = await connect({
    transport: await createTransport(s.transport, 'host'),
    service: 'chaos-nemesis',
  });
  try {
    await bus.provision(s.topic, [{ group: GROUP }]);
  } finally {
    await bus.close({ drainTimeoutMs: 1_000 });
  }
}

/** Consumer and producer started together; returns once messages flow. */
async function steadyFlow(s: Scenario, options: Partial<ConsumerRole> = {}): Promise<void> {
  consumerOptionsByScenario.set(s, options);
  await provision(s);
  s.startConsumer(options);
  s.startProducer();
  await until('the first messages to be handled', 90_000, () => s.handledSince(0) >= 20);
}

/** Lets the producer publish a little longer after the last fault, then stops it gracefully. */
async function stopProducer(s: Scenario): Promise<void> {
  await sleep(3_000);
  if (s.producer) await s.kill(s.producer, 'SIGTERM');
}

async function runScenario(transport: TransportName, name: ScenarioName): Promise<ScenarioResult> {
  const where: Where = name === 'partition' ? 'ns' : 'host';
  const s = new Scenario(transport, name, where);
  const poisonEvery = 20;
  s.sampleRss();
  switch (name) {
    case 'consumer-kill':
    case 'consumer-kill-store': {
      const store = name === 'consumer-kill-store';
      await steadyFlow(s, store ? { storePrefix: `omnibus:chaos:${s.topic}:` } : {});
      await consumerKills(s, SIZE.consumerKills);
      await stopProducer(s);
      await s.drain(poisonEvery);
      return s.finish(
        `consumer SIGKILL mid-batch ×${SIZE.consumerKills}${store ? ', Redis idempotency store' : ''}`,
        16,
        poisonEvery,
        store,
      );
    }
    case 'producer-kill': {
      await steadyFlow(s);
      await sleep(2_000);
      const startAt = Date.now();
      await s.kill(s.producer!);
      s.log('SIGKILL producer');
      s.startProducer();
      s.faults.push({ kind: 'producer SIGKILL', startAt, endAt: Date.now(), recoverySeqFrom: 2 * 1_000_000 });
      await until(
        "the replacement producer's messages to be handled",
        90_000,
        () => s.handled().filter((h) => h.seq >= 2 * 1_000_000).length >= 20,
      );
      await stopProducer(s);
      await s.drain(poisonEvery);
      return s.finish('producer SIGKILL mid-publish', 16, poisonEvery, false);
    }
    case 'broker-restart': {
      await steadyFlow(s);
      for (let k = 0; k < SIZE.brokerKills; k++) {
        await sleep(2_000);
        const pid = await brokerPid(transport);
        const startAt = Date.now();
        process.kill(pid, 'SIGKILL');
        s.log(`SIGKILL broker (pid ${pid})`);
        await until('the broker process to die', 30_000, () => !existsSync(`/proc/${pid}`));
        s.log(await brokerScript(transport, 'up'));
        s.faults.push({ kind: 'broker SIGKILL + restart', startAt, endAt: Date.now() });
        const since = Date.now();
        await until(
          'messages to flow after the restart',
          DRAIN_DEADLINE_MS,
          () => s.handledSince(since) >= 20,
        );
      }
      await stopProducer(s);
      await s.drain(poisonEvery);
      return s.finish(`broker SIGKILL + restart ×${SIZE.brokerKills}`, 16, poisonEvery, false);
    }
    case 'broker-pause': {
      await steadyFlow(s);
      await sleep(2_000);
      const pid = await brokerPid(transport);
      const startAt = Date.now();
      process.kill(pid, 'SIGSTOP');
      s.log(`SIGSTOP broker (pid ${pid})`);
      try {
        await sleep(SIZE.pauseMs);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      s.log('SIGCONT broker');
      s.faults.push({ kind: `broker SIGSTOP ${SIZE.pauseMs / 1000} s`, startAt, endAt: Date.now() });
      const since = Date.now();
      await until('messages to flow after the pause', DRAIN_DEADLINE_MS, () => s.handledSince(since) >= 20);
      await stopProducer(s);
      await s.drain(poisonEvery);
      return s.finish(`broker SIGSTOP ${SIZE.pauseMs / 1000} s, then SIGCONT`, 16, poisonEvery, false);
    }
    case 'partition': {
      await steadyFlow(s);
      await sleep(2_000);
      const startAt = Date.now();
      s.log(await chaosNet('partition'));
      try {
        await sleep(SIZE.partitionMs);
      } finally {
        s.log(await chaosNet('heal'));
      }
      s.faults.push({ kind: `partition ${SIZE.partitionMs / 1000} s`, startAt, endAt: Date.now() });
      const since = Date.now();
      await until(
        'messages to flow after the partition',
        DRAIN_DEADLINE_MS,
        () => s.handledSince(since) >= 20,
      );
      await stopProducer(s);
      await s.drain(poisonEvery);
      return s.finish(
        `network partition ${SIZE.partitionMs / 1000} s (packets dropped), then healed`,
        16,
        poisonEvery,
        false,
      );
    }
    case 'overload': {
      const prefetch = SIZE.overloadPrefetch;
      const backlog = 10 * prefetch;
      // A slow consumer: 2 handlers of 20–40 ms each, far slower than the burst arrives.
      const options: Partial<ConsumerRole> = { prefetch, concurrency: 2, handlerDelayMs: [20, 40] };
      consumerOptionsByScenario.set(s, options);
      await provision(s);
      s.startConsumer(options);
      await until('the consumer to subscribe', 60_000, () => s.consumerReady());
      s.markBaselineRss();
      s.startProducer({ count: backlog, ratePerSec: 100_000, payloadBytes: 4096, window: 256 });
      const startAt = Date.now();
      await until('the burst to be published', 120_000, () => s.producer!.child.exitCode !== null);
      s.faults.push({
        kind: `backlog ${backlog} = 10 × prefetch ${prefetch}`,
        startAt,
        endAt: Date.now(),
        measureRecovery: false,
      });
      await s.drain(poisonEvery);
      return s.finish(
        `slow consumer, backlog 10 × prefetch (${backlog} messages of 4 KiB)`,
        prefetch,
        poisonEvery,
        false,
      );
    }
  }
}

function chaosNet(action: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [`${SCRIPTS_DIR}chaos-net.sh`, action], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`chaos-net.sh ${action}: ${out}`)),
    );
  });
}

// ---- the run ----------------------------------------------------------------------------------------

interface BrokerResults {
  date: string;
  orderScope: 'group' | 'process' | 'none';
  recoverySettings: string;
  loadAverage1m: number;
  cores: number;
  /** Lines of this run's client and nemesis logs that held a secret given to the clients (must be 0). */
  credentialLeaks: number;
  scenarios: ScenarioResult[];
}

/** Client processes die with the nemesis: a stopped run leaves nothing publishing or consuming. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

async function main(): Promise<void> {
  mkdirSync(LOG_DIR, { recursive: true });
  mkdirSync(RECORDS_DIR, { recursive: true });
  const scenarios = scenarioArg
    ? (scenarioArg.split(',') as ScenarioName[]).filter((n) => SCENARIOS.includes(n))
    : SCENARIOS;
  // Fresh secrets per run, which the credentials check then searches the logs for: the RabbitMQ password
  // of the private node's chaos user, and an AWS secret key (ElasticMQ ignores credentials, but the SDK
  // signs every request with them; a run never sends the caller's own AWS keys to the local server).
  process.env[RABBITMQ_PASSWORD_ENV] ??= randomBytes(18).toString('base64url');
  process.env.AWS_ACCESS_KEY_ID = 'chaos';
  process.env.AWS_SECRET_ACCESS_KEY = randomBytes(18).toString('base64url');
  const secrets = {
    'RabbitMQ password': process.env[RABBITMQ_PASSWORD_ENV]!,
    'AWS secret key': process.env.AWS_SECRET_ACCESS_KEY,
  };

  const byMode: Record<string, BrokerResults> = {};
  let failed = false;
  for (const transport of selected) {
    console.log(`\n== ${transport} (${mode})`);
    console.log(await brokerScript(transport, 'up'));
    if (transport === 'rabbitmq') await ensureRabbitUser(process.env[RABBITMQ_PASSWORD_ENV]!);
    const results: ScenarioResult[] = [];
    for (const name of scenarios) {
      try {
        results.push(await runScenario(transport, name));
      } catch (err) {
        console.error(`${transport}/${name}: the scenario failed to run: ${String(err)}`);
        failed = true;
      }
    }
    for (const r of results) if (r.lost > 0) failed = true;
    const leaks = findLeaks(LOG_DIR, `${transport}-`, secrets);
    for (const l of leaks)
      console.error(`${transport}: the ${l.secret} appears in ${LOG_DIR}${l.file}:${l.line}`);
    if (leaks.length > 0) failed = true;
    byMode[transport] = {
      date: new Date().toISOString(),
      orderScope: PROFILES[transport].orderScope,
      recoverySettings: PROFILES[transport].recoverySettings,
      loadAverage1m: round1(loadavg()[0] ?? 0),
      cores: cpus().length,
      credentialLeaks: leaks.length,
      scenarios: results,
    };
    if (results.length > 0) saveResults(transport, byMode[transport]!);
  }
  writeReport(readLatest());
  printSummary(byMode);
  if (failed) {
    console.error('chaos: FAILED (a message was lost, a secret was logged, or a scenario could not run)');
    process.exit(1);
  }
}

function readLatest(): Record<string, Record<string, BrokerResults>> {
  return existsSync(LATEST) ? JSON.parse(readFileSync(LATEST, 'utf8')) : {};
}

/**
 * Merges one broker's results into latest.json, read again just now (another run may have written it).
 * Scenarios this run did not run (`--scenario`) keep their last figures, in the usual order.
 */
function saveResults(transport: TransportName, results: BrokerResults): void {
  const latest = readLatest();
  const before = latest[mode]?.[transport];
  // Rows from before scenarios carried their own date were measured at their broker's date.
  const previous = (before?.scenarios ?? []).map((r) => ({ date: before!.date, ...r }));
  const ran = new Set(results.scenarios.map((r) => r.scenario));
  const merged = [...previous.filter((r) => !ran.has(r.scenario)), ...results.scenarios].sort(
    (a, b) => SCENARIOS.indexOf(a.scenario) - SCENARIOS.indexOf(b.scenario),
  );
  results = { ...results, scenarios: merged };
  latest[mode] = { ...latest[mode], [transport]: results };
  writeFileSync(LATEST, `${JSON.stringify(latest, null, 2)}\n`);
}

function printSummary(byMode: Record<string, BrokerResults>): void {
  console.log(`\nbroker     scenario              published  lost  dup  order  recovery`);
  for (const transport of selected) {
    for (const r of byMode[transport]?.scenarios ?? []) {
      const rec = r.recoveryMs.map((x) => (x === null ? '-' : `${x}`)).join('/');
      console.log(
        `${transport.padEnd(10)} ${r.scenario.padEnd(20)} ${String(r.published).padStart(9)}  ${String(r.lost).padStart(4)}  ${String(r.duplicates).padStart(3)}  ${String(r.orderViolations).padStart(5)}  ${rec} ms`,
      );
    }
  }
}

await main();
process.exit(0);
