/**
 * The tables: one for idempotency claims, one for the outbox. `schemaSql()` is the single source; the
 * shipped migration `migrations/001_omnibus.sql` is its output for the default names (a test keeps the
 * two equal), and `ensureSchema()` runs it.
 */
import { ConfigError } from '@omnibus/core';
import type * as pg from 'pg';
import { dbError, identifier, quoteName } from './db.js';

export const DEFAULT_IDEMPOTENCY_TABLE = 'omnibus_idempotency';
export const DEFAULT_OUTBOX_TABLE = 'omnibus_outbox';
/**
 * Outbox rows are spread over this many buckets by key. A relay publishes a bucket only while it holds
 * the bucket's advisory lock, so a key's rows are never published by two relays at once.
 */
export const OUTBOX_BUCKETS = 64;

export interface SchemaNames {
  idempotencyTable?: string;
  outboxTable?: string;
}

function names(n: SchemaNames): { idem: string; outbox: string } {
  const idem = n.idempotencyTable ?? DEFAULT_IDEMPOTENCY_TABLE;
  const outbox = n.outboxTable ?? DEFAULT_OUTBOX_TABLE;
  if (!identifier.safeParse(idem).success) throw new ConfigError('idempotencyTable', 'a lower-case SQL name');
  if (!identifier.safeParse(outbox).success) throw new ConfigError('outboxTable', 'a lower-case SQL name');
  return { idem, outbox };
}

const bare = (name: string) => name.split('.').pop()!;

/** The DDL, idempotent (IF NOT EXISTS throughout), for the given table names. */
export function schemaSql(n: SchemaNames = {}): string {
  const { idem, outbox } = names(n);
  const I = quoteName(idem);
  const O = quoteName(outbox);
  return `-- @omnibus/postgres schema, version 1. Safe to run more than once.

-- Idempotency claims: key = "<group>:<message id>". A row is either held (a lease until expires_at) or
-- done (remembered until expires_at). token fences the holder: only the claim that wrote it may
-- complete or release the row.
CREATE TABLE IF NOT EXISTS ${I} (
  key text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('held', 'done')),
  token uuid NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS "${bare(idem)}_expires_at" ON ${I} (expires_at);

-- Transactional outbox: rows written inside the caller's transaction, published by a relay after
-- commit, in seq order per bucket (a bucket holds whole keys).
CREATE TABLE IF NOT EXISTS ${O} (
  seq bigserial PRIMARY KEY,
  message_id text NOT NULL,
  topic text NOT NULL,
  key text,
  bucket smallint NOT NULL GENERATED ALWAYS AS (hashtext(coalesce(key, message_id)) & ${OUTBOX_BUCKETS - 1}) STORED,
  envelope jsonb NOT NULL,
  data bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS "${bare(outbox)}_pending" ON ${O} (bucket, seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS "${bare(outbox)}_sent_at" ON ${O} (sent_at) WHERE sent_at IS NOT NULL;
`;
}

// Two processes running CREATE TABLE IF NOT EXISTS at the same moment can still collide on the
// catalog; one transaction-scoped advisory lock lines them up.
const SCHEMA_LOCK = 0x0b1b05;

/** Creates the tables and indexes if they are missing (the same SQL as the shipped migration). */
export async function ensureSchema(pool: pg.Pool, n: SchemaNames = {}): Promise<void> {
  const sql = schemaSql(n);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw dbError('ensureSchema (connect)', err);
  }
  const onError = () => {};
  client.on('error', onError);
  let failed: unknown;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
    await client.query(sql);
    await client.query('COMMIT');
  } catch (err) {
    failed = err;
    await client.query('ROLLBACK').catch(() => {});
    throw dbError('ensureSchema', err);
  } finally {
    client.removeListener('error', onError);
    client.release(failed instanceof Error ? failed : undefined);
  }
}
