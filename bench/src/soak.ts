/**
 * `pnpm bench soak [memory|kafka] [--messages N] [--max-entries N]`
 *
 * One million messages (by default) published and handled through Omnibus while the consumer uses a
 * bounded idempotency store (`memoryStore({ maxEntries })`); resident memory and heap (after a forced
 * collection, with --expose-gc) are sampled along the way. Memory must level off, not grow with the
 * message count. The publisher keeps at most MAX_LAG messages ahead of the consumer, as a producer
 * bounded by its broker would. Results go to bench/results/soak-<transport>.json and BENCHMARKS.md.
 */
import { parseArgs } from 'node:util';
import { type Bus, connect, memoryStore, memoryTransport, type Transport } from '@omnibus/core';
import { DEFAULT_DELAY_TIERS_MS } from '@omnibus/core/kit';
import { deadLetterTopic, groupId, kafka, retryGroupId, retryTopic } from '@omnibus/kafka';

import kafkajs from 'kafkajs';
import { machine } from './lib/machine.js';
import { MESSAGE_TYPE, makeData } from './lib/payload.js';
import {
  readResults,
  type SoakResult,
  type SoakSample,
  writeReport,
  writeResults,
  writeSoak,
} from './lib/report.js';
import { sleep } from './lib/runner.js';
import { topicName } from './lib/side.js';
import { round } from './lib/stats.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string', default: '1000000' },
    'max-entries': { type: 'string', default: '10000' },
    size: { type: 'string', default: '200' },
    samples: { type: 'string', default: '20' },
  },
});

const MAX_LAG = 20_000;
const WINDOW = 1000;
const GROUP = 'soak';
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim());

function log(line: string): void {
  process.stdout.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

function sample(messages: number, t0: number, storeEntries: number): SoakSample {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return {
    messages,
    elapsedS: round((performance.now() - t0) / 1000, 1),
    rssMiB: round(m.rss / 2 ** 20, 1),
    heapUsedMiB: round(m.heapUsed / 2 ** 20, 1),
    storeEntries,
  };
}

async function soak(name: 'memory' | 'kafka', total: number, maxEntries: number, size: number) {
  const topic = topicName(name, ['soak']);
  let transport: Transport;
  if (name === 'memory') {
    // Replay retention bounded too (the default keeps 100 000 messages per topic for replay).
    transport = memoryTransport({ name: `soak-${process.pid}`, retention: 10_000 });
  } else {
    transport = kafka({ brokers: KAFKA_BROKERS, clientId: 'omnibus-bench-soak', partitions: 3 });
  }
  const bus: Bus = await connect({ transport, service: 'omnibus-soak' });
  const store = memoryStore({ maxEntries });
  const result: SoakResult = {
    transport: name,
    measuredAt: new Date().toISOString(),
    messages: total,
    maxEntries,
    durationS: 0,
    throughput: 0,
    samples: [],
    secondHalfRssGrowthMiB: Number.NaN,
    secondHalfHeapGrowthMiB: Number.NaN,
    status: 'ok',
  };
  let handled = 0;
  let duplicates = 0;
  const seen = new Uint8Array(total);
  try {
    await bus.provision(topic, [{ group: GROUP }]);
    const sub = await bus.subscribe({
      topic,
      group: GROUP,
      concurrency: 64,
      prefetch: 256,
      idempotency: { store },
      handlers: {
        [MESSAGE_TYPE]: (data: { seq: number }) => {
          if (seen[data.seq] === 1) duplicates++;
          else {
            seen[data.seq] = 1;
            handled++;
          }
        },
      },
    });
    const t0 = performance.now();
    const every = Math.max(1, Math.floor(total / Number(values.samples)));
    let nextSample = 0;
    let published = 0;
    let inFlight = 0;
    let failed: unknown;
    const sampler = setInterval(() => {
      if (handled >= nextSample) {
        result.samples.push(sample(handled, t0, store.size));
        const s = result.samples.at(-1)!;
        log(
          `${name}: ${s.messages.toLocaleString('en-US')} handled, ${s.elapsedS} s, RSS ${s.rssMiB} MiB, heap ${s.heapUsedMiB} MiB, store ${s.storeEntries}`,
        );
        nextSample = Math.min(total, handled + every);
      }
    }, 50);
    try {
      const deadline = performance.now() + 30 * 60_000;
      while (published < total) {
        if (failed) throw failed;
        if (performance.now() > deadline) throw new Error('soak did not finish within 30 minutes');
        if (inFlight >= WINDOW || published - handled >= MAX_LAG) {
          await sleep(1);
          continue;
        }
        inFlight++;
        bus.publish(topic, { type: MESSAGE_TYPE, data: makeData(published++, size) }).then(
          () => {
            inFlight--;
          },
          (err: unknown) => {
            failed ??= err;
          },
        );
      }
      while (handled < total) {
        if (failed) throw failed;
        if (performance.now() > deadline)
          throw new Error(`only ${handled} of ${total} handled within 30 minutes`);
        await sleep(20);
      }
    } finally {
      clearInterval(sampler);
    }
    result.durationS = round((performance.now() - t0) / 1000, 1);
    result.throughput = Math.round(total / result.durationS);
    if (result.samples.at(-1)?.messages !== handled) result.samples.push(sample(handled, t0, store.size));
    await sub.close();
    if (duplicates > 0) log(`${name}: ${duplicates} duplicate deliveries (redelivered after a rebalance)`);
  } catch (err) {
    result.status = 'failed';
    result.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`${name}: FAILED: ${result.error}`);
  } finally {
    await bus.close({ drainTimeoutMs: 10_000 }).catch(() => {});
    if (name === 'kafka') await deleteKafka(topic);
  }
  // Growth over the second half of the run: from the sample nearest the midpoint to the last.
  const s = result.samples;
  if (s.length >= 2) {
    const mid = s.reduce((best, x) =>
      Math.abs(x.messages - total / 2) < Math.abs(best.messages - total / 2) ? x : best,
    );
    const last = s.at(-1)!;
    result.secondHalfRssGrowthMiB = round(last.rssMiB - mid.rssMiB, 1);
    result.secondHalfHeapGrowthMiB = round(last.heapUsedMiB - mid.heapUsedMiB, 1);
  }
  return result;
}

async function deleteKafka(topic: string): Promise<void> {
  const admin = new kafkajs.Kafka({
    clientId: 'omnibus-bench-soak-admin',
    brokers: KAFKA_BROKERS,
    logLevel: kafkajs.logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    await admin.deleteGroups([groupId(topic, GROUP), retryGroupId(topic, GROUP)]).catch(() => {});
    const topics = [
      topic,
      deadLetterTopic(topic, GROUP),
      ...DEFAULT_DELAY_TIERS_MS.map((t) => retryTopic(topic, GROUP, t)),
    ];
    const existing = new Set(await admin.listTopics());
    await admin.deleteTopics({ topics: topics.filter((t) => existing.has(t)) }).catch(() => {});
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function main(): Promise<number> {
  const names = positionals.length > 0 ? positionals : ['memory', 'kafka'];
  const total = Number(values.messages);
  const maxEntries = Number(values['max-entries']);
  const size = Number(values.size);
  if (!Number.isInteger(total) || total < 1000 || !Number.isInteger(maxEntries) || maxEntries < 1) {
    console.error('--messages must be an integer ≥ 1000 and --max-entries a positive integer');
    return 2;
  }
  if (!(globalThis as { gc?: unknown }).gc)
    log('no --expose-gc: heap figures include garbage not yet collected');
  let failed = 0;
  for (const name of names) {
    if (name !== 'memory' && name !== 'kafka') {
      console.error(`soak runs on memory or kafka, not "${name}"`);
      return 2;
    }
    log(
      `${name}: ${total.toLocaleString('en-US')} messages of ${size} B, memoryStore({ maxEntries: ${maxEntries} })`,
    );
    const r = await soak(name, total, maxEntries, size);
    if (r.status !== 'ok') failed++;
    writeSoak(r);
    log(
      `${name}: ${r.status}, ${r.durationS} s, ${r.throughput} msg/s; second-half growth: RSS ${r.secondHalfRssGrowthMiB} MiB, heap ${r.secondHalfHeapGrowthMiB} MiB`,
    );
  }
  const results = readResults();
  if (results.machine) {
    // The machine description, but the load average stays the one of the throughput run it describes.
    results.machine = { ...machine(), loadAverage: results.machine.loadAverage };
    writeResults(results);
    await writeReport(results);
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
