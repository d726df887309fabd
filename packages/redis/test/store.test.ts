import { ConfigError, ConnectionError, ErrorCode, LeaseLostError } from '@omnibus/core';
import { storeContract } from '@omnibus/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisIdempotencyStore, redisStore } from '../src/index.js';
import { deletePrefix, freePort, REDIS_URL, rawClient, requireRedis, unique, waitFor } from './helpers.js';

const prefix = `${unique('store')}:`;
const raw = rawClient();

beforeAll(() => requireRedis());
afterAll(async () => {
  await deletePrefix(raw, prefix).catch(() => {});
  raw.disconnect();
});

const open = () => redisStore({ url: REDIS_URL, keyPrefix: prefix });
storeContract({ describe, it }, 'store contract: redisStore', {
  create: open,
  replica: open,
  dispose: (s: RedisIdempotencyStore) => s.close(),
  fencing: true,
});

describe('redisStore', () => {
  it('fencing: the first holder, past its lease and re-claimed by another, gets LeaseLostError; the second stands', async () => {
    const a = open();
    const b = open();
    try {
      const key = 'billing:fenced-1';
      expect(await a.claim(key, 100)).toBe('new');
      await waitFor(async () => (await b.claim(key, 60_000)) === 'new', "B's takeover of the expired lease");
      const err = await a.complete(key, 60_000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(LeaseLostError);
      expect(err).toMatchObject({
        code: ErrorCode.LEASE_LOST,
        retryable: true,
        key,
        details: { heldBy: 'another holder' },
      });
      // The stored value is still B's lease, untouched by A.
      expect(await raw.get(prefix + key)).toMatch(/^h/);
      expect(await raw.pttl(prefix + key)).toBeGreaterThan(50_000);
      await a.release(key);
      expect(await a.claim(key, 1000)).toBe('held');
      await b.complete(key, 60_000);
      expect(await a.claim(key, 1000)).toBe('done');
      expect(await raw.get(prefix + key)).toMatch(/^d/);
      // Each store forgot the claims it no longer holds.
      expect(a.trackedClaims).toBe(0);
      expect(b.trackedClaims).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('done keys expire after ttlMs and held keys after leaseMs (PX on the server)', async () => {
    const s = open();
    try {
      await s.claim('g:held', 30_000);
      await s.claim('g:done', 30_000);
      await s.complete('g:done', 90_000);
      const heldTtl = await raw.pttl(`${prefix}g:held`);
      const doneTtl = await raw.pttl(`${prefix}g:done`);
      expect(heldTtl).toBeGreaterThan(25_000);
      expect(heldTtl).toBeLessThanOrEqual(30_000);
      expect(doneTtl).toBeGreaterThan(85_000);
      expect(doneTtl).toBeLessThanOrEqual(90_000);
    } finally {
      await s.close();
    }
  });

  it('recovers when the server forgot its scripts (SCRIPT FLUSH): EVALSHA falls back to EVAL', async () => {
    const s = open();
    try {
      expect(await s.claim('g:flush-1', 60_000)).toBe('new');
      await raw.script('FLUSH');
      expect(await s.claim('g:flush-2', 60_000)).toBe('new');
      await s.complete('g:flush-2', 60_000);
      expect(await s.claim('g:flush-2', 60_000)).toBe('done');
    } finally {
      await s.close();
    }
  });

  it('the token map is bounded: the oldest claims are forgotten first', async () => {
    const s = redisStore({ url: REDIS_URL, keyPrefix: prefix, maxTrackedClaims: 3 });
    try {
      for (const n of [1, 2, 3, 4, 5]) await s.claim(`g:bound-${n}`, 60_000);
      expect(s.trackedClaims).toBe(3);
      // A forgotten claim can no longer be released (it might be someone else's by now)…
      await s.release('g:bound-1');
      expect(await s.claim('g:bound-1', 60_000)).toBe('held');
      // …while a remembered one can.
      await s.release('g:bound-5');
      expect(await s.claim('g:bound-5', 60_000)).toBe('new');
    } finally {
      await s.close();
    }
  });

  it('a store given a client uses it and leaves it open; a store from a URL closes its own', async () => {
    const client = rawClient();
    try {
      const given = redisStore({ client, keyPrefix: prefix });
      expect(given.ownsClient).toBe(false);
      expect(await given.claim('g:given', 60_000)).toBe('new');
      await given.close();
      expect(await client.ping()).toBe('PONG');
      await expect(given.claim('g:given-2', 1000)).rejects.toBeInstanceOf(ConnectionError);

      const owned = open();
      expect(owned.ownsClient).toBe(true);
      await owned.ping();
      await owned.close();
      expect(owned.client.status).toBe('end');
    } finally {
      client.disconnect();
    }
  });

  it('options are validated: ConfigError naming the field, unknown keys rejected', () => {
    const field = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).field;
      }
      throw new Error('expected a ConfigError');
    };
    expect(field(() => redisStore({}))).toBe('url');
    expect(field(() => redisStore({ url: 'http://127.0.0.1:6379' }))).toBe('url');
    expect(field(() => redisStore({ url: REDIS_URL, client: rawClient() }))).toBe('client');
    expect(field(() => redisStore({ client: {} as never }))).toBe('client');
    expect(field(() => redisStore({ url: REDIS_URL, ttlMs: -1 }))).toBe('ttlMs');
    expect(field(() => redisStore({ url: REDIS_URL, maxTrackedClaims: 0 }))).toBe('maxTrackedClaims');
    expect(field(() => redisStore({ url: REDIS_URL, keyprefix: 'x' } as never))).toBe('keyprefix');
  });

  it('a URL with a password never shows it in errors', async () => {
    const port = await freePort();
    const s = redisStore({ url: `redis://user:s3cret-pw@127.0.0.1:${port}`, connectTimeoutMs: 500 });
    try {
      const err = await s.claim('g:x', 1000).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err!.message).not.toContain('s3cret-pw');
    } finally {
      await s.close();
    }
  });

  it('pointed at a closed port: ping and claim fail with ConnectionError instead of passing', async () => {
    const port = await freePort();
    await expect(requireRedis(`redis://127.0.0.1:${port}`)).rejects.toThrow(/not reachable/);
    const s = redisStore({ url: `redis://127.0.0.1:${port}` });
    try {
      await expect(s.ping()).rejects.toBeInstanceOf(ConnectionError);
      await expect(s.claim('g:closed', 1000)).rejects.toThrow(
        /redis idempotency store: claim of g:closed failed/,
      );
    } finally {
      await s.close();
    }
  });
});
