/**
 * A private redis-server (its own process, on a free port) killed and started again, and the store's
 * connection cut on a live server: calls fail with a clear error while Redis is gone, then recover,
 * and messages consumed through a bus meanwhile run their effect once.
 */
import { randomUUID } from 'node:crypto';
import {
  type Bus,
  ConnectionError,
  connect,
  type IdempotencyStore,
  type Logger,
  memoryTransport,
  silentLogger,
} from '@omnibus/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisIdempotencyStore, redisStore } from '../src/index.js';
import { deletePrefix, PrivateRedis, rawClient, requireRedis, unique, waitFor } from './helpers.js';

// Effects are recorded in the shared Redis, which is not the one the test kills.
const raw = rawClient();
const prefix = `${unique('restart')}:`;
let server: PrivateRedis;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await requireRedis();
  server = await PrivateRedis.start();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
afterAll(async () => {
  await server?.kill();
  await deletePrefix(raw, prefix).catch(() => {});
  raw.disconnect();
});

function store(): RedisIdempotencyStore {
  const s = redisStore({ url: server.url, commandTimeoutMs: 2_000, connectTimeoutMs: 1_000 });
  cleanups.push(() => s.close());
  return s;
}

/** A bus on the memory transport whose consumer uses `idem` and records each run's effect in `effects`. */
async function consumer(
  idem: IdempotencyStore,
  effects: string,
  logger: Logger = silentLogger,
): Promise<Bus> {
  const bus = await connect({
    transport: memoryTransport({ name: randomUUID() }),
    service: 'restart-test',
    logger,
  });
  cleanups.push(() => bus.close({ drainTimeoutMs: 2_000 }));
  await bus.subscribe({
    topic: 'orders',
    group: 'billing',
    concurrency: 8,
    retry: { attempts: 100, backoff: { initialMs: 50, maxMs: 500, factor: 2, jitter: true } },
    idempotency: { store: idem, leaseMs: 10_000 },
    handlers: {
      'effect.test': async (_d: unknown, ctx) => {
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        await raw.hincrby(effects, ctx.envelope.id, 1);
      },
    },
  });
  return bus;
}

describe('Redis killed and restarted', () => {
  it('calls fail with ConnectionError while it is down, then recover; a kept claim still completes', async () => {
    const s = store();
    expect(await s.claim('g:before', 60_000)).toBe('new');
    await s.complete('g:before', 60_000);
    expect(await s.claim('g:held', 60_000)).toBe('new');

    const killedPid = server.pid;
    await server.kill();
    const started = Date.now();
    const err = await s.claim('g:down', 60_000).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err!.message).toMatch(/^redis idempotency store: claim of g:down failed: /);
    // Promptly, not after the command timeout's retries: within a few seconds.
    expect(Date.now() - started).toBeLessThan(5_000);
    // A completion that could not be written keeps its token for the retry.
    await expect(s.complete('g:held', 60_000)).rejects.toBeInstanceOf(ConnectionError);
    expect(s.trackedClaims).toBe(1);

    await server.start();
    expect(server.pid).not.toBe(killedPid);
    await waitFor(async () => (await s.claim('g:after', 60_000)) === 'new', 'the store to reconnect', 20_000);
    await s.complete('g:held', 60_000);
    expect(await s.claim('g:held', 60_000)).toBe('done');
    // This server keeps nothing across a restart (--save "" --appendonly no): completions are gone.
    // Run Redis with persistence (AOF) where that matters; the README says so.
    expect(await s.claim('g:before', 60_000)).toBe('new');
  });

  it('messages consumed while Redis is down wait, then run once it is back', async () => {
    const effects = `${prefix}down-effects`;
    const failures: string[] = [];
    const logger: Logger = { ...silentLogger, error: (fields) => failures.push(String(fields.err)) };
    const bus = await consumer(store(), effects, logger);

    const before = Array.from({ length: 50 }, () => randomUUID());
    for (const id of before) await bus.publish('orders', { type: 'effect.test', data: {} }, { id });
    await waitFor(async () => (await raw.hlen(effects)) === before.length, 'the first 50 effects');

    await server.kill();
    const during = Array.from({ length: 50 }, () => randomUUID());
    for (const id of during) await bus.publish('orders', { type: 'effect.test', data: {} }, { id });
    // The consumer is failing to claim, and so runs nothing.
    await waitFor(() => failures.some((f) => f.includes('redis idempotency store: claim')), 'claim failures');
    expect(await raw.hlen(effects)).toBe(before.length);

    await server.start();
    await waitFor(
      async () => (await raw.hlen(effects)) === before.length + during.length,
      'the 50 messages published during the outage to run',
      30_000,
    );
    const counts = await raw.hgetall(effects);
    expect(Object.entries(counts).filter(([, n]) => n !== '1')).toEqual([]);
  });

  it("the store's connection cut repeatedly under load: every effect exactly once", async () => {
    const effects = `${prefix}cut-effects`;
    const s = store();
    const bus = await consumer(s, effects);
    const admin = rawClient(server.url);
    cleanups.push(async () => admin.disconnect());

    const ids = Array.from({ length: 500 }, () => randomUUID());
    const publishing = (async () => {
      for (const id of ids) await bus.publish('orders', { type: 'effect.test', data: {} }, { id });
    })();
    let cuts = 0;
    while ((await raw.hlen(effects)) < ids.length && cuts < 20) {
      const clientId = await waitFor(
        () => s.client.status === 'ready' && (s.client as { client(a: 'ID'): Promise<number> }).client('ID'),
        'the store to be connected',
      );
      await admin.client('KILL', 'ID', String(clientId));
      cuts++;
      await new Promise((r) => setTimeout(r, 100));
    }
    await publishing;
    await waitFor(async () => (await raw.hlen(effects)) === ids.length, 'all 500 effects', 60_000);
    expect(cuts).toBeGreaterThan(1);
    const counts = await raw.hgetall(effects);
    expect(Object.entries(counts).filter(([, n]) => n !== '1')).toEqual([]);
  });
});
