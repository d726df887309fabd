/**
 * The "naive service" figures: a service that publishes one event per request through the public API,
 * against the raw client used the simplest way (one message per call, each awaited). Two loads: one
 * request at a time, and NAIVE_CONCURRENCY requests at once. Each run lasts a fixed time rather than a
 * fixed count, so a slow side and a fast side are measured over the same stretch of machine noise.
 */
import { makeData } from './payload.js';
import type { Side, SideKind, TransportBench } from './side.js';
import { topicName } from './side.js';

/** Requests in flight at once in the concurrent load. */
export const NAIVE_CONCURRENCY = 64;
/** Message size of the naive figures (bytes of JSON data). */
export const NAIVE_SIZE = 200;
/** Publishes sent (and awaited) before the timed stretch: connections, metadata, JIT. */
const WARM_PUBLISHES = 20;

/**
 * serial: one request at a time; concurrent: NAIVE_CONCURRENCY at once; batched: the raw client's own
 * fastest publish loop (`publishMany`, e.g. SendMessageBatch calls), the ceiling a batching client reaches.
 */
export type NaiveLoad = 'serial' | 'concurrent' | 'batched';

export interface NaiveJob {
  kind: SideKind;
  load: NaiveLoad;
  size: number;
  durationMs: number;
  label: string;
}

export interface NaiveOnceResult {
  /** Publishes confirmed per second. */
  rate: number;
  /** Publishes confirmed in the timed stretch. */
  count: number;
  /** CPU µs (user + system) of this process per publish. */
  cpuUs: number;
}

export async function naiveOnce(bench: TransportBench, job: NaiveJob): Promise<NaiveOnceResult> {
  if (job.load === 'batched' && job.kind !== 'raw')
    throw new Error('the batched load is the raw client only');
  // A service runs with the adapter's defaults; the batched ceiling with the throughput settings.
  const side = await bench.side(job.kind, job.load === 'batched' ? 'throughput' : 'service');
  const topic = topicName(bench.name, [`n${job.size}`, job.label, job.load, side.kind]);
  try {
    await side.prepare(topic);
    for (let i = 0; i < WARM_PUBLISHES; i++) await side.publishOne(topic, makeData(i, job.size));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const count =
      job.load === 'batched'
        ? await batched(side, topic, bench.sizing.count(job.size), job.size)
        : await requests(side, topic, job, job.load === 'serial' ? 1 : NAIVE_CONCURRENCY, t0);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return { rate: (count / ms) * 1000, count, cpuUs: (cpu.user + cpu.system) / count };
  } finally {
    await side.close().catch(() => {});
    await side.cleanup(topic);
  }
}

/**
 * `concurrency` request loops, each publishing one message and awaiting it before the next, until the
 * stretch is over; the clock stops when the last publish started in it is confirmed.
 */
async function requests(
  side: Side,
  topic: string,
  job: NaiveJob,
  concurrency: number,
  t0: number,
): Promise<number> {
  const end = t0 + job.durationMs;
  let seq = WARM_PUBLISHES;
  let count = 0;
  const loop = async () => {
    while (performance.now() < end) {
      await side.publishOne(topic, makeData(seq++, job.size));
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return count;
}

async function batched(side: Side, topic: string, count: number, size: number): Promise<number> {
  await side.publishMany(topic, count, size);
  return count;
}
