import { readFileSync } from 'node:fs';
import { ConfigError, ConnectionError, LeaseLostError } from '@omnibus/core';
import { storeContract } from '@omnibus/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresIdempotencyStore, postgresStore, schemaSql } from '../src/index.js';
import { DATABASE_URL, requireDatabase, Tables, terminate, unique, urlNamed, waitFor } from './helpers.js';

const tables = new Tables();
let table: string;
const opened: PostgresIdempotencyStore[] = [];
const open = (extra: Partial<Parameters<typeof postgresStore>[0]> = {}) => {
  const s = postgresStore({ connectionString: DATABASE_URL, table, maxConnections: 3, ...extra });
  opened.push(s);
  return s;
};

beforeAll(async () => {
  await requireDatabase();
  table = (await tables.schema('store')).idempotencyTable;
});
afterAll(async () => {
  for (const s of opened) await s.close();
  await tables.drop();
});

// The core's contract, as every store runs it, with the cross-replica and fencing cases: each replica is
// its own store instance with its own pool, as another process would build it.
storeContract({ describe, it }, 'postgresStore: the IdempotencyStore contract', {
  create: () => open(),
  replica: () => open(),
  dispose: (s) => s.close(),
  fencing: true,
});

describe('postgresStore options', () => {
  it('names the bad field in a ConfigError and rejects unknown keys', () => {
    expect(() => postgresStore({ connectionString: 'mysql://x' })).toThrow(ConfigError);
    expect(() => postgresStore({ connectionString: 'mysql://x' })).toThrow(/connectionString/);
    expect(() => postgresStore({ connectionString: DATABASE_URL, ttlMs: -1 })).toThrow(/ttlMs/);
    expect(() => postgresStore({ connectionString: DATABASE_URL, table: 'drop table x;' })).toThrow(/table/);
    expect(() => postgresStore({ connectionString: DATABASE_URL, lease: 5 } as never)).toThrow(/lease/);
    expect(() => postgresStore({} as never)).toThrow(/connectionString: required/);
  });

  it('accepts an existing pg.Pool and leaves it open on close', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    const store = postgresStore({ pool, table });
    const key = unique('pool');
    expect(await store.claim(key, 60_000)).toBe('new');
    await store.close();
    expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await pool.end();
  });

  it('ships a migration that is exactly what ensureSchema runs', () => {
    const file = readFileSync(new URL('../migrations/001_omnibus.sql', import.meta.url), 'utf8');
    expect(file).toBe(schemaSql());
  });
});

describe('postgresStore claims', () => {
  it('decides concurrent claims from many replicas on the server: exactly one new per key', async () => {
    const replicas = [open(), open(), open()];
    const keys = Array.from({ length: 50 }, (_, i) => unique(`race${i}`));
    const results = await Promise.all(
      keys.flatMap((k) => replicas.flatMap((s) => [s.claim(k, 60_000), s.claim(k, 60_000)])),
    );
    for (let i = 0; i < keys.length; i++) {
      const mine = results.slice(i * 6, i * 6 + 6);
      expect(mine.filter((r) => r === 'new')).toHaveLength(1);
      expect(mine.filter((r) => r === 'held')).toHaveLength(5);
    }
  });

  it('rejects complete with LeaseLostError once another replica took the expired lease (fencing)', async () => {
    const a = open();
    const b = open();
    const key = unique('fence');
    expect(await a.claim(key, 100)).toBe('new');
    await waitFor(async () => (await b.claim(key, 60_000)) === 'new', 'the lease to expire for B');
    const err = await a.complete(key, 60_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((err as LeaseLostError).code).toBe('LEASE_LOST');
    // A's stale release leaves B's claim alone; B completes.
    await a.release(key);
    expect(await a.claim(key, 60_000)).toBe('held');
    await b.complete(key, 60_000);
    expect(await a.claim(key, 60_000)).toBe('done');
  });

  it('complete without a claim by this instance is a LeaseLostError, not a silent overwrite', async () => {
    const a = open();
    const b = open();
    const key = unique('foreign');
    expect(await a.claim(key, 60_000)).toBe('new');
    await expect(b.complete(key, 60_000)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await b.claim(key, 60_000)).toBe('held');
  });

  it('purges rows expired for more than a minute', async () => {
    const s = open();
    const key = unique('purge');
    await tables.pool.query(
      `INSERT INTO ${table} (key, state, token, expires_at) VALUES ($1, 'done', gen_random_uuid(), now() - interval '2 minutes')`,
      [key],
    );
    expect(await s.purgeExpired()).toBeGreaterThanOrEqual(1);
    expect(await tables.count(`SELECT count(*) AS n FROM ${table} WHERE key = $1`, [key])).toBe(0);
  });

  it('a cut connection gives a clear ConnectionError, then the store recovers without losing its claims', async () => {
    const app = unique('cut');
    const s = open({ connectionString: urlNamed(app) });
    s.pool.on('error', () => {});
    const key = unique('k');
    expect(await s.claim(key, 60_000)).toBe('new');
    // Cut a connection in the middle of a statement: a claim waits on a row lock held by another session.
    const blocker = await tables.pool.connect();
    const blocked = unique('blocked');
    await blocker.query('BEGIN');
    await blocker.query(
      `INSERT INTO ${table} (key, state, token, expires_at) VALUES ($1, 'held', gen_random_uuid(), now())`,
      [blocked],
    );
    const pending = s.claim(blocked, 60_000).catch((e: unknown) => e);
    await waitFor(
      async () =>
        (await tables.count(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
          [app],
        )) > 0,
      'the claim to wait on the lock',
    );
    expect(await terminate(tables.pool, app)).toBeGreaterThan(0);
    const err = await pending;
    await blocker.query('ROLLBACK');
    blocker.release();
    expect(err).toBeInstanceOf(ConnectionError);
    expect(String((err as Error).message)).toMatch(/postgres: claim of .* failed: .*terminat/);
    expect(String((err as Error).message)).not.toMatch(/postgres:\/\//);
    // Recovery: new connections; the claim taken before the cut still belongs to this store.
    await s.complete(key, 60_000);
    expect(await s.claim(key, 60_000)).toBe('done');
  });
});
