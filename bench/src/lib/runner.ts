/**
 * Runs one transport's scenarios: publish and consume throughput, then end-to-end latency at a fixed
 * rate, each repeated with the raw client and Omnibus alternating (raw, omnibus, raw, omnibus, …) on the
 * same broker, so drift in the broker or the machine hits both sides alike. Each side runs in a worker
 * process of its own (see workers.ts): one side's heap, JIT state and AsyncLocalStorage hooks never
 * slow the other down.
 */

import type { PeerResult } from '../peer/run.js';
import { NAIVE_CONCURRENCY, NAIVE_SIZE, type NaiveJob, type NaiveOnceResult, naiveOnce } from './naive.js';
import { type BenchData, makeData, sizeLabel, warmData } from './payload.js';
import type { Consuming, Side, SideKind, TransportBench } from './side.js';
import { topicName } from './side.js';
import { type Figure, figure, percentile, ratio, round } from './stats.js';

export interface RunOptions {
  sizes: readonly number[];
  reps: number;
  /** Which parts to run (default all): throughput and latency per size, and the naive-service figures. */
  parts?: ReadonlySet<BenchPart>;
  /** Multiplies every message count and latency duration (e.g. 0.1 while developing). */
  scale: number;
  log: (line: string) => void;
}

export interface Pair {
  raw: Figure;
  omnibus: Figure;
  /** Omnibus / raw: ≥ 1 is better for throughput, ≤ 1 is better for latency. */
  ratio: Figure;
}

export interface SizeResult {
  size: number;
  messages: number;
  latencyRate: number;
  latencyMessages: number;
  /** Bytes per message on the wire (body + headers). */
  wireBytes: { raw: number; omnibus: number };
  publish: Pair;
  /** Raw publish against Omnibus `publishBatch()` (raw samples shared with `publish`). */
  publishBatch: Pair;
  consume: Pair;
  /** CPU time of this process per message (µs, user + system): robust when other work shares the machine. */
  publishCpuUs: Pair;
  publishBatchCpuUs: Pair;
  consumeCpuUs: Pair;
  latencyP50: Pair;
  latencyP99: Pair;
}

/**
 * A service publishing one event per request through the public API, against the raw client sending one
 * message per call and awaiting it (the naive client); see naive.ts.
 */
export interface NaiveResult {
  size: number;
  /** Length of each timed run. */
  durationMs: number;
  concurrency: number;
  /** One request at a time, each awaiting its publish: msg/s, Omnibus / naive raw. */
  serial: Pair;
  /** `concurrency` requests at once: msg/s, Omnibus / naive raw. */
  concurrent: Pair;
  /**
   * Where the raw client batches (SQS): the same Omnibus concurrent figures against the raw batched
   * client (`publishMany`, e.g. SendMessageBatch calls in flight).
   */
  concurrentVsBatched?: Pair;
  /** CPU µs per publish, one request at a time and concurrent. */
  serialCpuUs: Pair;
  concurrentCpuUs: Pair;
}

export interface TransportResult {
  transport: string;
  status: 'ok' | 'failed';
  error?: string;
  measuredAt: string;
  durationS: number;
  brokerVersion?: string | undefined;
  settings: TransportBench['settings'];
  reps: number;
  sizes: SizeResult[];
  naive?: NaiveResult;
  /** Omnibus (with a zod schema) against message-queue-toolkit, where it has a side (peer/run.ts). */
  peer?: PeerResult;
}

export interface ThroughputResult {
  publish: number;
  consume: number;
  publishCpuUs: number;
  consumeCpuUs: number;
}

/** Runs one repetition on one side, wherever that side lives. */
export interface Executor {
  throughput(kind: SideKind, size: number, n: number, label: string): Promise<ThroughputResult>;
  /** Omnibus publishBatch only (no consume): msg/s and CPU µs per message. */
  publishBatch(size: number, n: number, label: string): Promise<{ publish: number; publishCpuUs: number }>;
  latency(kind: SideKind, size: number, durationMs: number, rep: number): Promise<number[]>;
  naive(job: NaiveJob): Promise<NaiveOnceResult>;
  close(): Promise<void>;
}

/** Runs the repetitions in this process. */
export function inProcess(bench: TransportBench): Executor {
  return {
    throughput: (kind, size, n, label) => throughputOnce(bench, kind, size, n, label),
    publishBatch: (size, n, label) => publishBatchOnce(bench, size, n, label),
    latency: (kind, size, durationMs, rep) => latencyOnce(bench, kind, size, durationMs, rep),
    naive: (job) => naiveOnce(bench, job),
    close: async () => {},
  };
}

export type BenchPart = 'throughput' | 'latency' | 'naive';
export const BENCH_PARTS: readonly BenchPart[] = ['throughput', 'latency', 'naive'];

const CONSUME_TIMEOUT_MS = 180_000;
const WARM_TIMEOUT_MS = 90_000;
const KINDS: readonly SideKind[] = ['raw', 'omnibus'];

export async function runTransport(
  bench: TransportBench,
  exec: Executor,
  o: RunOptions,
): Promise<TransportResult> {
  const started = performance.now();
  const result: TransportResult = {
    transport: bench.name,
    status: 'ok',
    measuredAt: new Date().toISOString(),
    durationS: 0,
    settings: bench.settings,
    reps: o.reps,
    sizes: [],
  };
  try {
    result.brokerVersion = await bench.brokerVersion();
    const parts = o.parts ?? new Set(BENCH_PARTS);
    for (const size of parts.has('throughput') ? o.sizes : []) {
      const n = Math.max(50, Math.round(bench.sizing.count(size) * o.scale));
      o.log(`${bench.name} ${sizeLabel(size)}: warm-up`);
      for (const kind of KINDS) {
        await again(o, `${kind} warm-up`, () => exec.throughput(kind, size, Math.min(n, 500), 'warm'));
      }
      const samples = {
        publish: { raw: [] as number[], omnibus: [] as number[] },
        consume: { raw: [] as number[], omnibus: [] as number[] },
        publishCpu: { raw: [] as number[], omnibus: [] as number[] },
        consumeCpu: { raw: [] as number[], omnibus: [] as number[] },
        batch: [] as number[],
        batchCpu: [] as number[],
      };
      await again(o, 'omnibus publishBatch warm-up', () =>
        exec.publishBatch(size, Math.min(n, 500), 'warm-b'),
      );
      for (let rep = 0; rep < o.reps; rep++) {
        for (const kind of KINDS) {
          const r = await again(o, `${kind} rep ${rep + 1}`, () => exec.throughput(kind, size, n, `r${rep}`));
          samples.publish[kind].push(r.publish);
          samples.consume[kind].push(r.consume);
          samples.publishCpu[kind].push(r.publishCpuUs);
          samples.consumeCpu[kind].push(r.consumeCpuUs);
          o.log(
            `${bench.name} ${sizeLabel(size)} rep ${rep + 1}/${o.reps} ${kind.padEnd(7)}: publish ${fmt(r.publish)} msg/s (${r.publishCpuUs.toFixed(1)} µs CPU/msg), consume ${fmt(r.consume)} msg/s (${r.consumeCpuUs.toFixed(1)} µs CPU/msg)`,
          );
        }
        const b = await again(o, `publishBatch rep ${rep + 1}`, () => exec.publishBatch(size, n, `b${rep}`));
        samples.batch.push(b.publish);
        samples.batchCpu.push(b.publishCpuUs);
        o.log(
          `${bench.name} ${sizeLabel(size)} rep ${rep + 1}/${o.reps} omnibus publishBatch: ${fmt(b.publish)} msg/s (${b.publishCpuUs.toFixed(1)} µs CPU/msg)`,
        );
      }
      result.sizes.push({
        size,
        messages: n,
        latencyRate: bench.sizing.latencyRate,
        latencyMessages: 0,
        wireBytes: bench.wireBytes(size),
        publish: pair(samples.publish.raw, samples.publish.omnibus),
        publishBatch: pair(samples.publish.raw, samples.batch),
        publishBatchCpuUs: pair(samples.publishCpu.raw, samples.batchCpu),
        consume: pair(samples.consume.raw, samples.consume.omnibus),
        publishCpuUs: pair(samples.publishCpu.raw, samples.publishCpu.omnibus),
        consumeCpuUs: pair(samples.consumeCpu.raw, samples.consumeCpu.omnibus),
        latencyP50: pair([], []),
        latencyP99: pair([], []),
      });
    }

    const durationMs = Math.max(1000, bench.sizing.latencyMs * o.scale);
    for (const entry of parts.has('latency') ? result.sizes : []) {
      const p50 = { raw: [] as number[], omnibus: [] as number[] };
      const p99 = { raw: [] as number[], omnibus: [] as number[] };
      for (let rep = 0; rep < o.reps; rep++) {
        for (const kind of KINDS) {
          const l = await again(o, `${kind} latency rep ${rep + 1}`, () =>
            exec.latency(kind, entry.size, durationMs, rep),
          );
          entry.latencyMessages = l.length;
          p50[kind].push(percentile(l, 50));
          p99[kind].push(percentile(l, 99));
          o.log(
            `${bench.name} ${sizeLabel(entry.size)} latency rep ${rep + 1}/${o.reps} ${kind.padEnd(7)}: p50 ${percentile(l, 50).toFixed(2)} ms, p99 ${percentile(l, 99).toFixed(2)} ms (${l.length} msgs at ${bench.sizing.latencyRate}/s)`,
          );
        }
      }
      entry.latencyP50 = pair(p50.raw, p50.omnibus);
      entry.latencyP99 = pair(p99.raw, p99.omnibus);
    }
    if (parts.has('naive')) result.naive = await runNaive(bench, exec, o);
  } catch (err) {
    result.status = 'failed';
    result.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    o.log(`${bench.name}: FAILED: ${result.error}`);
  }
  result.durationS = round((performance.now() - started) / 1000, 1);
  return result;
}

/**
 * The naive-service figures at NAIVE_SIZE: per repetition, one request at a time (raw, Omnibus), then
 * NAIVE_CONCURRENCY at once (raw, Omnibus), then, where the transport names it, the raw batched client.
 */
async function runNaive(bench: TransportBench, exec: Executor, o: RunOptions): Promise<NaiveResult> {
  const size = NAIVE_SIZE;
  const durationMs = Math.max(1000, bench.sizing.naiveMs * o.scale);
  const loads = ['serial', 'concurrent'] as const;
  const rate = { serial: sides(), concurrent: sides(), batched: [] as number[] };
  const cpu = { serial: sides(), concurrent: sides() };
  for (let rep = 0; rep < o.reps; rep++) {
    for (const load of loads) {
      for (const kind of KINDS) {
        const job: NaiveJob = { kind, load, size, durationMs, label: `r${rep}` };
        const r = await again(o, `naive ${load} ${kind} rep ${rep + 1}`, () => exec.naive(job));
        rate[load][kind].push(r.rate);
        cpu[load][kind].push(r.cpuUs);
        o.log(
          `${bench.name} naive ${load === 'serial' ? 'one at a time' : `${NAIVE_CONCURRENCY} concurrent`} rep ${rep + 1}/${o.reps} ${kind.padEnd(7)}: ${fmt(r.rate)} msg/s (${r.count} in ${durationMs} ms, ${r.cpuUs.toFixed(1)} µs CPU/msg)`,
        );
      }
    }
    if (bench.naiveAgainstBatched) {
      const job: NaiveJob = { kind: 'raw', load: 'batched', size, durationMs, label: `r${rep}` };
      const r = await again(o, `naive batched raw rep ${rep + 1}`, () => exec.naive(job));
      rate.batched.push(r.rate);
      o.log(
        `${bench.name} naive raw batched client rep ${rep + 1}/${o.reps}: ${fmt(r.rate)} msg/s (${r.count} messages)`,
      );
    }
  }
  const result: NaiveResult = {
    size,
    durationMs,
    concurrency: NAIVE_CONCURRENCY,
    serial: pair(rate.serial.raw, rate.serial.omnibus),
    concurrent: pair(rate.concurrent.raw, rate.concurrent.omnibus),
    serialCpuUs: pair(cpu.serial.raw, cpu.serial.omnibus),
    concurrentCpuUs: pair(cpu.concurrent.raw, cpu.concurrent.omnibus),
  };
  if (bench.naiveAgainstBatched) result.concurrentVsBatched = pair(rate.batched, rate.concurrent.omnibus);
  return result;
}

function sides(): Record<SideKind, number[]> {
  return { raw: [], omnibus: [] };
}

/**
 * Runs a repetition, and once more if it fails (a fresh client on a fresh topic): brokers shared with
 * other work hiccup now and then (a kafkajs idempotent producer sometimes gets OUT_OF_ORDER_SEQUENCE_NUMBER
 * from a busy broker). A second failure fails the transport.
 */
async function again<T>(o: RunOptions, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    o.log(
      `${what} failed, repeating it once: ${String(err instanceof Error ? err.message : err).split('\n')[0]}`,
    );
    return fn();
  }
}

function pair(raw: number[], omnibus: number[]): Pair {
  const r = figure(raw);
  const b = figure(omnibus);
  return { raw: r, omnibus: b, ratio: ratio(b, r) };
}

function fmt(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/**
 * One repetition: publish `n` messages into a fresh backlog (timed), then consume them all (timed).
 * Each repetition gets its own connected side, closed before its topic is deleted (a kafkajs producer
 * keeps asking for the metadata of every topic it ever wrote to, and fails once one is gone).
 */
export async function throughputOnce(
  bench: TransportBench,
  kind: SideKind,
  size: number,
  n: number,
  label: string,
): Promise<ThroughputResult> {
  const side = await bench.side(kind, 'throughput');
  const topic = topicName(bench.name, [`s${size}`, label, side.kind]);
  try {
    await side.prepare(topic);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await side.publishMany(topic, n, size);
    const publishMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const c = await consumeAll(side, topic, n);
    return {
      publish: (n / publishMs) * 1000,
      consume: ((n - 1) / c.ms) * 1000,
      publishCpuUs: (cpu.user + cpu.system) / n,
      consumeCpuUs: c.cpuUs / (n - 1),
    };
  } finally {
    await side.close().catch(() => {});
    await side.cleanup(topic);
  }
}

/** Omnibus `publishBatch()` into a fresh topic (not consumed), timed until every batch is confirmed. */
export async function publishBatchOnce(
  bench: TransportBench,
  size: number,
  n: number,
  label: string,
): Promise<{ publish: number; publishCpuUs: number }> {
  const side = await bench.side('omnibus', 'throughput');
  const topic = topicName(bench.name, [`s${size}`, label, 'batch']);
  try {
    if (!side.publishBatches) throw new Error('this side has no publishBatch');
    await side.prepare(topic);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await side.publishBatches(topic, n, size);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { publish: (n / ms) * 1000, publishCpuUs: (cpu.user + cpu.system) / n };
  } finally {
    await side.close().catch(() => {});
    await side.cleanup(topic);
  }
}

/**
 * Consumes `n` messages; time and CPU run from the first message's arrival to the last one's
 * (returns ms, and µs of CPU).
 */
async function consumeAll(side: Side, topic: string, n: number): Promise<{ ms: number; cpuUs: number }> {
  let seen = 0;
  let first = 0;
  let last = 0;
  let cpu0: NodeJS.CpuUsage | undefined;
  let cpu: NodeJS.CpuUsage | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  const seqs = new Uint8Array(n);
  let duplicates = 0;
  const sub = await side.subscribe(topic, (data: BenchData) => {
    if (seqs[data.seq] === 1) {
      duplicates++;
      return;
    }
    seqs[data.seq] = 1;
    seen++;
    if (seen === 1) {
      first = performance.now();
      cpu0 = process.cpuUsage();
    }
    if (seen === n) {
      last = performance.now();
      cpu = process.cpuUsage(cpu0);
      resolveDone();
    }
  });
  try {
    await withTimeout(done, CONSUME_TIMEOUT_MS, () => `${side.kind} consumed ${seen} of ${n} on ${topic}`);
  } finally {
    await sub.close();
  }
  if (duplicates > 0) throw new Error(`${side.kind} saw ${duplicates} duplicate(s) on ${topic}`);
  return { ms: Math.max(0.001, last - first), cpuUs: cpu ? cpu.user + cpu.system : Number.NaN };
}

/** Publishes at a fixed rate for `durationMs` while consuming; returns each message's end-to-end latency (ms). */
export async function latencyOnce(
  bench: TransportBench,
  kind: SideKind,
  size: number,
  durationMs: number,
  rep: number,
): Promise<number[]> {
  const side = await bench.side(kind, 'latency');
  const topic = topicName(bench.name, [`l${size}`, `r${rep}`, side.kind]);
  const latencies: number[] = [];
  const rate = bench.sizing.latencyRate;
  const total = Math.round((rate * durationMs) / 1000);
  let warmSeen = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  let sub: Consuming | undefined;
  try {
    await side.prepare(topic);
    sub = await side.subscribe(topic, (data) => {
      if (data.warm) {
        warmSeen++;
        return;
      }
      latencies.push(performance.now() - data.t);
      if (latencies.length === total) resolveDone();
    });
    // The consumer may need a moment to join (Kafka group, SQS long poll): wait until messages flow.
    const warmDeadline = performance.now() + WARM_TIMEOUT_MS;
    let warmSent = 0;
    while (warmSeen < 20) {
      if (performance.now() > warmDeadline)
        throw new Error(`${side.kind}: consumer on ${topic} never started`);
      await side.publishOne(topic, warmData(warmSent++, size));
      await sleep(warmSeen > 0 ? 5 : 100);
    }
    await paced(rate, total, (i) => side.publishOne(topic, makeData(i, size)));
    await withTimeout(
      done,
      CONSUME_TIMEOUT_MS,
      () => `${side.kind} latency run got ${latencies.length} of ${total}`,
    );
  } finally {
    await sub?.close().catch(() => {});
    await side.close().catch(() => {});
    await side.cleanup(topic);
  }
  return latencies;
}

/** Starts `send(i)` for i < total at `rate` per second (never waiting for one to finish); waits for all. */
async function paced(rate: number, total: number, send: (i: number) => Promise<void>): Promise<void> {
  const interval = 1000 / rate;
  const start = performance.now();
  const pending = new Set<Promise<void>>();
  let failed: unknown;
  let i = 0;
  while (i < total) {
    const now = performance.now();
    while (i < total && start + i * interval <= now) {
      const p = send(i++).then(
        () => {
          pending.delete(p);
        },
        (err: unknown) => {
          failed ??= err;
          pending.delete(p);
        },
      );
      pending.add(p);
    }
    if (failed) throw failed;
    if (pending.size > 50_000) throw new Error('the broker falls far behind the latency rate');
    if (i < total) await sleep(Math.max(0, start + i * interval - performance.now()));
  }
  await Promise.all(pending);
  if (failed) throw failed;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
