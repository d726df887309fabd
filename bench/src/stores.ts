/**
 * `pnpm bench stores [--messages N] [--concurrency C]`
 *
 * What the idempotency claim costs per message: `claim` + `complete` (the consumer's two store calls
 * for a message handled once) on the Redis store against the memory store, and, as the floor for
 * Redis, the same two writes as plain commands (SET NX PX, then SET PX) with no script and no fence.
 * Each Redis figure is taken one message at a time (latency: two round trips) and with C messages in
 * flight (throughput, as a consumer with concurrency C would load it). Writes bench/results/stores.json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type IdempotencyStore, memoryStore } from '@omnibus/core';
import { redisStore } from '@omnibus/redis';
import { Redis } from 'ioredis';
import { machine } from './lib/machine.js';

const { values } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string', default: '20000' },
    'memory-messages': { type: 'string', default: '500000' },
    concurrency: { type: 'string', default: '32' },
  },
});
const N = Number(values.messages);
const MEMORY_N = Number(values['memory-messages']);
const C = Number(values.concurrency);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = `bench-stores-${process.pid}-${Date.now()}`;
const LEASE_MS = 35_000;
const TTL_MS = 60_000;

interface Figure {
  store: string;
  mode: 'sequential' | `concurrent(${number})`;
  messages: number;
  /** Wall time per message (sequential: latency; concurrent: 1 / throughput). */
  usPerMessage: number;
  messagesPerSecond: number;
}

type Pair = (key: string) => Promise<unknown>;

function pairFor(store: IdempotencyStore): Pair {
  return async (key) => {
    if ((await store.claim(key, LEASE_MS)) !== 'new') throw new Error(`bench: ${key} was not new`);
    await store.complete(key, TTL_MS);
  };
}

/** The same two writes without a script or a token: what a naive store would send. */
function rawPair(client: Redis): Pair {
  return async (key) => {
    if ((await client.set(key, 'h', 'PX', LEASE_MS, 'NX')) !== 'OK') throw new Error(`bench: ${key} taken`);
    await client.set(key, 'd', 'PX', TTL_MS);
  };
}

async function measure(label: string, pair: Pair, n: number, concurrency: number): Promise<Figure> {
  // Warm up (connection, script cache, JIT) on keys of their own.
  for (let i = 0; i < 500; i++) await pair(`${run}:${label}:${concurrency}:warm:${i}`);
  const started = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < n) await pair(`${run}:${label}:${concurrency}:${next++}`);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const figure: Figure = {
    store: label,
    mode: concurrency === 1 ? 'sequential' : `concurrent(${concurrency})`,
    messages: n,
    usPerMessage: Math.round((seconds / n) * 1e6 * 100) / 100,
    messagesPerSecond: Math.round(n / seconds),
  };
  console.log(
    `${label.padEnd(28)} ${figure.mode.padEnd(15)} ${String(figure.usPerMessage).padStart(9)} µs/msg ${String(figure.messagesPerSecond).padStart(9)} msg/s`,
  );
  return figure;
}

const figures: Figure[] = [];
figures.push(await measure('memoryStore', pairFor(memoryStore({ maxEntries: 1_000_000 })), MEMORY_N, 1));

const store = redisStore({ url: REDIS_URL, keyPrefix: `${run}:` });
const raw = new Redis(REDIS_URL);
try {
  figures.push(await measure('redisStore', pairFor(store), N, 1));
  figures.push(await measure('raw SET NX + SET (floor)', rawPair(raw), N, 1));
  figures.push(await measure('redisStore', pairFor(store), N, C));
  figures.push(await measure('raw SET NX + SET (floor)', rawPair(raw), N, C));
} finally {
  // Every key this run wrote starts with its run id.
  let cursor = '0';
  do {
    const [nextCursor, keys] = await raw.scan(cursor, 'MATCH', `${run}*`, 'COUNT', 1000);
    cursor = nextCursor;
    if (keys.length > 0) await raw.unlink(...keys);
  } while (cursor !== '0');
  await store.close();
  raw.disconnect();
}

const redisServer = (await new Redis(REDIS_URL).info('server').then(
  (info) => /redis_version:(\S+)/.exec(info)?.[1],
  () => undefined,
)) as string | undefined;
const out = join(fileURLToPath(import.meta.url), '..', '..', 'results', 'stores.json');
writeFileSync(
  out,
  `${JSON.stringify({ at: new Date().toISOString(), machine: machine(), redis: redisServer, figures }, null, 2)}\n`,
);
console.log(`bench: wrote ${out}`);
process.exit(0);
