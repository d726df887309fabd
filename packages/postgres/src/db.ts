/** The connection plumbing every part shares: one pool from a URL or the caller's, and errors made readable. */
import {
  ConfigError,
  ConnectionError,
  type Logger,
  redactText,
  redactUrl,
  silentLogger,
} from '@omnibus/core';
import * as pg from 'pg';
import { z } from 'zod';

/**
 * The one thing the outbox needs from a caller's transaction: run a statement with positional
 * parameters. A node-postgres `Client`/`PoolClient` fits as is; another client or ORM passes a small
 * object that forwards to its own transaction (see the README).
 */
export interface Queryable {
  query(text: string, params?: unknown[]): Promise<unknown>;
}

/** Either a connection string (the package opens and closes its own pool) or an existing `pg.Pool`. */
export interface ConnectionOptions {
  /** e.g. `postgres://user@host:5432/db`. */
  connectionString?: string;
  /** An existing pool; it stays the caller's (never ended by Omnibus). */
  pool?: pg.Pool;
}

export const connectionFields = {
  connectionString: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// URL')
    .optional(),
  pool: z.custom<pg.Pool>((v) => v instanceof pg.Pool, 'a pg.Pool').optional(),
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'error' in v).optional(),
};

/** Identifiers that go into SQL text: plain names only, optionally schema-qualified. */
export const identifier = z
  .string()
  .regex(/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/, 'a lower-case SQL name, optionally schema.name');

export interface PoolHandle {
  pool: pg.Pool;
  /** Ends the pool if this package made it. */
  end(): Promise<void>;
}

/** Builds or borrows the pool. A pool made here logs idle-connection errors instead of crashing the process. */
export function openPool(
  options: { connectionString?: string | undefined; pool?: pg.Pool | undefined },
  logger: Logger = silentLogger,
  max = 10,
): PoolHandle {
  if (options.pool && options.connectionString) {
    throw new ConfigError('connectionString', 'give either connectionString or pool, not both');
  }
  if (options.pool) return { pool: options.pool, end: async () => {} };
  if (!options.connectionString) {
    throw new ConfigError('connectionString', 'required (or pass an existing pg.Pool as pool)');
  }
  const pool = new pg.Pool({ connectionString: options.connectionString, max });
  // A server restart or pg_terminate_backend kills idle pooled connections; node-postgres reports that
  // on the pool, and an unheard 'error' event would end the process.
  pool.on('error', (err) => logger.warn({ err: redactText(err.message) }, 'postgres: idle connection lost'));
  // node-postgres can report a cut connection on a client between its statements while it is checked
  // out and has no listener of its own (seen here with pg_terminate_backend under load): one quiet
  // listener per connection keeps that from ending the process. The statement that follows fails and
  // the pool discards the connection on release, as it would anyway.
  pool.on('connect', (client) => client.on('error', () => {}));
  let ended = false;
  return {
    pool,
    end: async () => {
      if (ended) return;
      ended = true;
      await pool.end();
    },
  };
}

/** Wraps a driver error as a retryable ConnectionError with a message that names the operation. */
export function dbError(what: string, err: unknown): ConnectionError {
  const e = err as { message?: string; code?: string };
  const message = redactText(String(e?.message ?? err));
  return new ConnectionError(`postgres: ${what} failed: ${message}${e?.code ? ` (${e.code})` : ''}`, {
    cause: err,
  });
}

/** The URL of a pool for messages, without credentials. */
export function describePool(pool: pg.Pool): string {
  const o = pool.options as { connectionString?: string; host?: string; port?: number };
  if (o.connectionString) return redactUrl(o.connectionString);
  return `${o.host ?? 'localhost'}:${o.port ?? 5432}`;
}

/** Quotes a validated (possibly schema-qualified) name for SQL text. */
export function quoteName(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part}"`)
    .join('.');
}
