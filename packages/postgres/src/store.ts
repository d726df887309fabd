/**
 * The idempotency store on PostgreSQL: claims shared by every replica, each decided by one atomic
 * statement on the server's clock, and fenced by a token so a replica whose lease ran out cannot
 * complete or release over the replica that took the key after it.
 */
import { randomUUID } from 'node:crypto';
import {
  type ClaimResult,
  type IdempotencyStore,
  LeaseLostError,
  type Logger,
  parseOptions,
} from '@omnibus/core';
import type * as pg from 'pg';
import { z } from 'zod';
import {
  type ConnectionOptions,
  connectionFields,
  dbError,
  identifier,
  openPool,
  type Queryable,
  quoteName,
} from './db.js';
import { DEFAULT_IDEMPOTENCY_TABLE, ensureSchema } from './schema.js';

export interface PostgresStoreOptions extends ConnectionOptions {
  /** Table for the claims (default `omnibus_idempotency`; created by the migration or `ensureSchema()`). */
  table?: string;
  /** How long a completed key is remembered when the subscription does not say (default 24 h). */
  ttlMs?: number;
  /** Pool size when the store opens its own pool from `connectionString` (default 10). */
  maxConnections?: number;
  logger?: Logger;
}

const optionsSchema = z
  .object({
    ...connectionFields,
    table: identifier.default(DEFAULT_IDEMPOTENCY_TABLE),
    ttlMs: z.number().int().positive().default(86_400_000),
    maxConnections: z.number().int().positive().default(10),
  })
  .strict();

export class PostgresIdempotencyStore implements IdempotencyStore {
  readonly ttlMs: number;
  readonly table: string;
  readonly pool: pg.Pool;
  readonly #end: () => Promise<void>;
  // The token this instance was granted per key it holds. complete/release act only while the row still
  // carries it; an entry leaves when the claim is completed or released.
  readonly #tokens = new Map<string, string>();
  // Keys whose completion an inbox transaction has committed: the consumer's complete() that follows
  // needs no second statement.
  readonly #committed = new Set<string>();
  readonly #claimSql: string;
  readonly #completeSql: string;
  readonly #releaseSql: string;
  readonly #fenceSql: string;
  readonly #stateSql: string;
  readonly #purgeSql: string;

  constructor(options: PostgresStoreOptions) {
    const o = parseOptions(optionsSchema, options);
    const handle = openPool(o, o.logger, o.maxConnections);
    this.pool = handle.pool;
    this.#end = handle.end;
    this.ttlMs = o.ttlMs;
    this.table = o.table;
    const t = quoteName(o.table);
    // One statement: insert, or take over a row whose lease (or done-ttl) has run out. When neither
    // happens, the second branch reports the row as it stood when the statement began; a row that
    // appeared concurrently is then not visible at all, and that is reported as held (look again later).
    this.#claimSql = `WITH taken AS (
  INSERT INTO ${t} AS c (key, state, token, expires_at)
  VALUES ($1, 'held', $2, clock_timestamp() + $3 * interval '1 millisecond')
  ON CONFLICT (key) DO UPDATE SET state = 'held', token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
  WHERE c.expires_at <= clock_timestamp()
  RETURNING 'new'::text AS result
)
SELECT result FROM taken
UNION ALL
SELECT state FROM ${t} WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM taken)`;
    // Matching on the token (not on state) makes a repeated complete by the same holder harmless, which
    // the inbox relies on: it completes inside the handler's transaction, then the consumer completes.
    this.#completeSql = `UPDATE ${t} SET state = 'done', expires_at = clock_timestamp() + $3 * interval '1 millisecond'
WHERE key = $1 AND token = $2`;
    // Inside a handler's transaction only a claim still held counts: done means an earlier run of this
    // same claim already committed its effects, and they must not commit twice.
    this.#fenceSql = `UPDATE ${t} SET state = 'done', expires_at = clock_timestamp() + $3 * interval '1 millisecond'
WHERE key = $1 AND token = $2 AND state = 'held'`;
    this.#stateSql = `SELECT state FROM ${t} WHERE key = $1 AND token = $2`;
    this.#releaseSql = `DELETE FROM ${t} WHERE key = $1 AND token = $2 AND state = 'held'`;
    this.#purgeSql = `DELETE FROM ${t} WHERE key IN (
  SELECT key FROM ${t} WHERE expires_at < clock_timestamp() - interval '1 minute' LIMIT $1)`;
  }

  /** Creates the table if it is missing (the same DDL as the shipped migration). */
  ensureSchema(): Promise<void> {
    return ensureSchema(this.pool, { idempotencyTable: this.table });
  }

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    const token = randomUUID();
    let rows: { result: string }[];
    try {
      ({ rows } = await this.pool.query<{ result: string }>(this.#claimSql, [key, token, leaseMs]));
    } catch (err) {
      throw dbError(`claim of ${key}`, err);
    }
    const result = rows[0]?.result;
    if (result === 'new') {
      this.#tokens.set(key, token);
      return 'new';
    }
    return result === 'done' ? 'done' : 'held';
  }

  async complete(key: string, ttlMs: number = this.ttlMs): Promise<void> {
    if (this.#committed.delete(key)) {
      this.#tokens.delete(key);
      return;
    }
    const token = this.#tokens.get(key);
    if (token === undefined) throw new LeaseLostError(key);
    let count: number | null;
    try {
      ({ rowCount: count } = await this.pool.query(this.#completeSql, [key, token, ttlMs]));
    } catch (err) {
      throw dbError(`complete of ${key}`, err);
    }
    this.#tokens.delete(key);
    if (count !== 1) throw new LeaseLostError(key);
  }

  async release(key: string): Promise<void> {
    // Completed inside an inbox transaction: done for good, nothing to release.
    if (this.#committed.delete(key)) {
      this.#tokens.delete(key);
      return;
    }
    const token = this.#tokens.get(key);
    if (token === undefined) return;
    try {
      await this.pool.query(this.#releaseSql, [key, token]);
    } catch (err) {
      throw dbError(`release of ${key}`, err);
    }
    this.#tokens.delete(key);
  }

  /**
   * Marks this instance's claim on `key` done inside the caller's transaction: it commits with the
   * handler's own writes or not at all. Rejects with LeaseLostError (so the transaction must roll back)
   * when another replica holds the key now.
   */
  async completeIn(tx: Queryable, key: string, ttlMs: number = this.ttlMs): Promise<void> {
    const token = this.#tokens.get(key);
    if (token === undefined) throw new LeaseLostError(key);
    const result = (await tx.query(this.#fenceSql, [key, token, ttlMs])) as { rowCount?: number | null };
    if (result.rowCount !== 1) throw new LeaseLostError(key);
  }

  /**
   * The state of this instance's own claim on `key`, read through `tx`: 'held' (still ours, not yet
   * done), 'done' (ours, completed: its effects committed), or undefined (not ours any more).
   */
  async ownState(tx: Queryable, key: string): Promise<'held' | 'done' | undefined> {
    const token = this.#tokens.get(key);
    if (token === undefined) return undefined;
    const result = (await tx.query(this.#stateSql, [key, token])) as { rows: { state: string }[] };
    const state = result.rows[0]?.state;
    return state === 'held' || state === 'done' ? state : undefined;
  }

  /** @internal the inbox committed the completion of this instance's claim on `key`. */
  committedIn(key: string): void {
    if (this.#tokens.has(key)) this.#committed.add(key);
  }

  /** Whether this instance holds a claim on `key` (the inbox checks it is wired to the subscription's store). */
  holds(key: string): boolean {
    return this.#tokens.has(key);
  }

  /** Deletes rows expired for over a minute, at most `limit` per call; returns how many went. */
  async purgeExpired(limit = 10_000): Promise<number> {
    try {
      const r = await this.pool.query(this.#purgeSql, [limit]);
      return r.rowCount ?? 0;
    } catch (err) {
      throw dbError('purge of expired claims', err);
    }
  }

  /** Ends the pool if the store opened it from a connection string; a pool passed in is left open. */
  close(): Promise<void> {
    return this.#end();
  }
}

/** A shared idempotency store on PostgreSQL: pass it as `subscribe({ idempotency: { store } })`. */
export function postgresStore(options: PostgresStoreOptions): PostgresIdempotencyStore {
  return new PostgresIdempotencyStore(options);
}
