/**
 * The outbox relay: publishes committed outbox rows through any Omnibus transport, at least once and
 * in order per key, then marks them sent.
 *
 * Design. Rows are spread over a fixed number of buckets by key (a generated column). A relay
 * publishes a bucket only while it holds that bucket's session advisory lock, taken with
 * pg_try_advisory_lock on the relay's own connection: two relays never publish the same key at once,
 * and several relays share the buckets between them (each takes the buckets the others do not hold at
 * that moment). Within a bucket rows go out in `seq` order, a batch at a time: publish (awaiting the
 * broker's confirmation), mark sent, release the lock. A relay that dies mid-batch loses its
 * connection and with it the lock; the next relay republishes the unmarked rows — a duplicate the
 * consumer's idempotency recognises by the message id, never a loss, and never a reordering of first
 * appearances (every publisher goes in seq order). The relay wakes on NOTIFY (sent by the outbox at
 * commit) and polls as a fallback, and deletes sent rows after the retention time.
 */
import {
  type Bus,
  ConfigError,
  type Logger,
  OmnibusError,
  parseOptions,
  type RawEnvelope,
  redactText,
  silentLogger,
  type Transport,
  type WireMessage,
} from '@omnibus/core';
import { abandonedPublishError, PublishDeadline } from '@omnibus/core/kit';
import type * as pg from 'pg';
import { z } from 'zod';
import { connectionFields, dbError, identifier, openPool, quoteName } from './db.js';
import type { StoredMeta } from './outbox.js';
import { DEFAULT_OUTBOX_TABLE } from './schema.js';

export interface RelayOptions {
  /** Connection string, or `pool` (an existing pg.Pool): the relay takes one connection from it for its lifetime. */
  connectionString?: string;
  pool?: pg.Pool;
  /** Publish through this bus's transport (the bus stays the caller's)… */
  bus?: Bus;
  /** …or through this transport, which the relay connects and closes itself. */
  transport?: Transport;
  /** Outbox table (default `omnibus_outbox`). */
  table?: string;
  /** NOTIFY channel (default: the table name, as the outbox uses). */
  channel?: string;
  /** Rows published per batch (default 500). */
  batchSize?: number;
  /** Look for rows this often even without a notification (default 1 s). */
  pollIntervalMs?: number;
  /** Sent rows are deleted once older than this (default 1 h; 0 deletes them at the next cleanup). */
  retentionMs?: number;
  /** How often the cleanup runs (default 60 s). */
  cleanupIntervalMs?: number;
  /** A batch's publish must be confirmed within this time (default 30 s), else it is tried again. */
  publishTimeoutMs?: number;
  /** Wait after an error (database or broker) before trying again (default 1 s). */
  retryDelayMs?: number;
  /** The service name the relay's own transport connects with (default `outbox-relay`). */
  service?: string;
  logger?: Logger;
  /** Called with every error the relay recovers from (connection lost, publish failed). */
  onError?: (err: Error) => void;
}

const positive = z.number().int().positive();
const optionsSchema = z
  .object({
    ...connectionFields,
    bus: z
      .custom<Bus>((v) => typeof v === 'object' && v !== null && 'transport' in v, 'an Omnibus Bus')
      .optional(),
    transport: z
      .custom<Transport>(
        (v) => typeof v === 'object' && v !== null && 'publish' in v && 'encode' in v,
        'a Transport',
      )
      .optional(),
    table: identifier.default(DEFAULT_OUTBOX_TABLE),
    channel: identifier.optional(),
    batchSize: positive.max(10_000).default(500),
    pollIntervalMs: positive.default(1000),
    retentionMs: z.number().int().nonnegative().default(3_600_000),
    cleanupIntervalMs: positive.default(60_000),
    publishTimeoutMs: positive.default(30_000),
    retryDelayMs: positive.default(1000),
    service: z.string().min(1).default('outbox-relay'),
    onError: z.custom<(err: Error) => void>((v) => typeof v === 'function').optional(),
  })
  .strict();

interface Row {
  seq: string;
  topic: string;
  envelope: StoredMeta;
  data: Buffer;
}

/** Figures a running relay keeps (this process only). */
export interface RelayStats {
  /** Rows published and marked sent. */
  published: number;
  batches: number;
  errors: number;
  /** Sent rows deleted by the cleanup. */
  cleaned: number;
}

export class Relay {
  readonly stats: RelayStats = { published: 0, batches: 0, errors: 0, cleaned: 0 };
  readonly #o: z.output<typeof optionsSchema>;
  readonly #pool: pg.Pool;
  readonly #endPool: () => Promise<void>;
  readonly #transport: Transport;
  readonly #ownsTransport: boolean;
  readonly #logger: Logger;
  readonly #lockClass: number;
  readonly #sql: { buckets: string; select: string; markSent: string; cleanup: string };
  readonly #channel: string;
  #client: pg.PoolClient | undefined;
  // Why the relay's connection died, when the server said so (a later statement only says "not queryable").
  #lostWith: Error | undefined;
  #closing = false;
  #woken = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #lastCleanup = 0;

  constructor(options: RelayOptions) {
    const o = parseOptions(optionsSchema, options);
    if (!o.bus === !o.transport) throw new ConfigError('transport', 'give exactly one of bus or transport');
    this.#o = o;
    this.#logger = o.logger ?? o.bus?.logger ?? silentLogger;
    const handle = openPool(o, this.#logger, 2);
    this.#pool = handle.pool;
    this.#endPool = handle.end;
    this.#transport = o.bus ? o.bus.transport : o.transport!;
    this.#ownsTransport = !o.bus;
    this.#channel = o.channel ?? o.table.replace('.', '_');
    this.#lockClass = lockClassOf(o.table);
    const t = quoteName(o.table);
    this.#sql = {
      buckets: `SELECT DISTINCT bucket FROM ${t} WHERE sent_at IS NULL`,
      select: `SELECT seq, topic, envelope, data FROM ${t} WHERE bucket = $1 AND sent_at IS NULL ORDER BY seq LIMIT $2`,
      markSent: `UPDATE ${t} SET sent_at = now() WHERE seq = ANY($1::bigint[])`,
      cleanup: `DELETE FROM ${t} WHERE seq IN (
  SELECT seq FROM ${t} WHERE sent_at IS NOT NULL AND sent_at < now() - $1 * interval '1 millisecond' LIMIT 10000)`,
    };
  }

  /** Connects the transport (when the relay owns it) and starts the loop. */
  async start(): Promise<this> {
    if (this.#ownsTransport)
      await this.#transport.connect({ logger: this.#logger, service: this.#o.service });
    this.#loop = this.#run();
    return this;
  }

  /** Looks for rows now instead of at the next notification or poll. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** Finishes the batch in progress, stops, and disconnects what the relay opened. */
  async close(): Promise<void> {
    if (this.#closing) return this.#loop;
    this.#closing = true;
    this.wake();
    await this.#loop;
    await this.#dropClient();
    if (this.#ownsTransport) await this.#transport.close();
    await this.#endPool();
  }

  async #run(): Promise<void> {
    while (!this.#closing) {
      let worked = false;
      try {
        const client = await this.#connection();
        this.#woken = false;
        worked = await this.#round(client);
        if (Date.now() - this.#lastCleanup >= this.#o.cleanupIntervalMs) await this.#cleanup(client);
      } catch (err) {
        this.#failed(err);
        await this.#dropClient();
        await this.#sleep(this.#o.retryDelayMs);
        continue;
      }
      if (!worked && !this.#woken) await this.#sleep(this.#o.pollIntervalMs);
    }
  }

  /** One pass over the buckets with unsent rows; whether anything was published. */
  async #round(client: pg.PoolClient): Promise<boolean> {
    const { rows } = await client.query<{ bucket: number }>(this.#sql.buckets);
    let worked = false;
    // A random start spreads concurrent relays over different buckets.
    const start = Math.floor(Math.random() * rows.length);
    for (let i = 0; i < rows.length && !this.#closing; i++) {
      const bucket = rows[(start + i) % rows.length]!.bucket;
      const lock = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [
        this.#lockClass,
        bucket,
      ]);
      if (!lock.rows[0]?.ok) continue;
      try {
        if (await this.#batch(client, bucket)) worked = true;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, $2)', [this.#lockClass, bucket]);
      }
    }
    return worked;
  }

  /** Publishes the oldest unsent rows of one bucket (its lock held), in seq order, then marks them sent. */
  async #batch(client: pg.PoolClient, bucket: number): Promise<boolean> {
    const { rows } = await client.query<Row>(this.#sql.select, [bucket, this.#o.batchSize]);
    if (rows.length === 0) return false;
    // Consecutive rows of one topic go in one transport call; topics are taken in turn, in seq order.
    let from = 0;
    while (from < rows.length) {
      const topic = rows[from]!.topic;
      let to = from + 1;
      while (to < rows.length && rows[to]!.topic === topic) to++;
      const messages: WireMessage[] = [];
      for (let i = from; i < to; i++) messages.push(this.#transport.encode(toRaw(rows[i]!)));
      await this.#publish(topic, messages);
      from = to;
    }
    await client.query(this.#sql.markSent, [rows.map((r) => r.seq)]);
    this.stats.published += rows.length;
    this.stats.batches++;
    return true;
  }

  /**
   * One publish with the relay's deadline, carried down to the transport (the kit's PublishDeadline): at
   * the deadline the transport withdraws what it still holds or says the outcome is unknown. Either way
   * the rows stay unsent and go out again later; duplicates are suppressed downstream by message id.
   */
  #publish(topic: string, messages: WireMessage[]): Promise<void> {
    const timeoutMs = this.#o.publishTimeoutMs;
    const call = new PublishDeadline(Date.now() + timeoutMs);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(abandonedPublishError(`${topic} (outbox relay)`, call.abandon(), { timeoutMs })),
        timeoutMs,
      );
      this.#transport.publish(topic, messages, call).then(
        () => {
          clearTimeout(timer);
          call.settled();
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          call.settled();
          reject(err);
        },
      );
    });
  }

  async #cleanup(client: pg.PoolClient): Promise<void> {
    this.#lastCleanup = Date.now();
    const r = await client.query(this.#sql.cleanup, [this.#o.retentionMs]);
    this.stats.cleaned += r.rowCount ?? 0;
  }

  /** The relay's own connection: it holds the bucket locks and listens for notifications. */
  async #connection(): Promise<pg.PoolClient> {
    if (this.#client) return this.#client;
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw dbError('outbox relay (connect)', err);
    }
    client.on('error', (err) => {
      // The connection is gone (server restart, pg_terminate_backend), and its locks with it. The
      // statement in flight, or the next one, fails; the loop reports that and takes a new connection.
      this.#lostWith = err;
      this.wake();
    });
    client.on('notification', () => this.wake());
    try {
      await client.query(`LISTEN "${this.#channel}"`);
    } catch (err) {
      client.release(err instanceof Error ? err : true);
      throw dbError('outbox relay (LISTEN)', err);
    }
    this.#client = client;
    this.#lostWith = undefined;
    return client;
  }

  async #dropClient(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    // Destroying the connection drops every advisory lock and the LISTEN with it.
    client.release(true);
  }

  #failed(err: unknown): void {
    this.stats.errors++;
    const e =
      err instanceof OmnibusError
        ? err
        : this.#lostWith
          ? dbError('outbox relay connection', this.#lostWith)
          : dbError('outbox relay', err);
    this.#logger.error({ err: redactText(e.message) }, 'outbox relay: error; retrying');
    this.#o.onError?.(e);
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closing || this.#woken) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }
}

function toRaw(row: Row): RawEnvelope {
  const m = row.envelope;
  return {
    id: m.id,
    type: m.type,
    source: m.source,
    time: m.time,
    key: m.key ?? undefined,
    correlationId: m.correlationId,
    causationId: m.causationId ?? undefined,
    traceparent: m.traceparent ?? undefined,
    tracestate: m.tracestate ?? undefined,
    version: m.version,
    contentType: m.contentType,
    headers: m.headers ?? {},
    data: row.data,
  };
}

/** The advisory-lock class for a table's buckets: the same table gives the same number in every process. */
function lockClassOf(table: string): number {
  let h = 0x6f6d6e69;
  for (let i = 0; i < table.length; i++) h = Math.imul(h ^ table.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** Starts a relay: `const relay = await startRelay({ connectionString, bus })`; `await relay.close()` to stop. */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  return new Relay(options).start();
}
