/**
 * The transactional outbox, writing side: `publish(tx, …)` builds the message exactly as `bus.publish`
 * would (id, context, middleware, codec, size check) and inserts it into the outbox table through the
 * caller's transaction. It becomes visible to the relay when that transaction commits, and never if it
 * rolls back. The commit also wakes the relays (NOTIFY is delivered on commit only).
 */
import {
  type Bus,
  type MessageDefinition,
  type PublishOptions,
  parseOptions,
  type RawEnvelope,
  type UntypedMessage,
} from '@omnibus/core';
import { z } from 'zod';
import { identifier, type Queryable, quoteName } from './db.js';
import { DEFAULT_OUTBOX_TABLE } from './schema.js';

export interface OutboxOptions {
  /** Builds the envelopes (service name, codecs, publish middleware, size limit of its transport). */
  bus: Bus;
  /** Outbox table (default `omnibus_outbox`). */
  table?: string;
  /** NOTIFY channel the relays listen on (default: the table name). */
  channel?: string;
}

const optionsSchema = z
  .object({
    bus: z.custom<Bus>(
      (v) => typeof v === 'object' && v !== null && 'encodeEnvelope' in v,
      'an Omnibus Bus (from connect())',
    ),
    table: identifier.default(DEFAULT_OUTBOX_TABLE),
    channel: identifier.optional(),
  })
  .strict();

/** The envelope's fields except the data, as stored in the `envelope` column. */
export type StoredMeta = Omit<RawEnvelope, 'data'>;

export class Outbox {
  readonly table: string;
  readonly channel: string;
  readonly #bus: Bus;
  readonly #insertSql: string;

  constructor(options: OutboxOptions) {
    const o = parseOptions(optionsSchema, options);
    this.#bus = o.bus;
    this.table = o.table;
    this.channel = o.channel ?? o.table.replace('.', '_');
    // One round trip: the row and the wake-up call. pg_notify inside a transaction is sent at commit.
    this.#insertSql = `WITH row AS (
  INSERT INTO ${quoteName(o.table)} (message_id, topic, key, envelope, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq
)
SELECT seq, pg_notify('${this.channel}', '') FROM row`;
  }

  /**
   * Writes a message into the outbox within `tx` (a node-postgres client inside BEGIN…COMMIT, or any
   * `{ query(text, params) }` that forwards to your transaction). Resolves with the id fixed now.
   */
  publish<T>(
    tx: Queryable,
    topic: string,
    definition: MessageDefinition<T>,
    data: T,
    options?: PublishOptions,
  ): Promise<{ id: string }>;
  publish(
    tx: Queryable,
    topic: string,
    message: UntypedMessage,
    options?: PublishOptions,
  ): Promise<{ id: string }>;
  async publish(
    tx: Queryable,
    topic: string,
    a: unknown,
    b?: unknown,
    c?: PublishOptions,
  ): Promise<{ id: string }> {
    const raw = await (
      this.#bus.encodeEnvelope as (t: string, a: unknown, b?: unknown, c?: unknown) => Promise<RawEnvelope>
    )(topic, a, b, c);
    const { data, ...meta } = raw;
    await tx.query(this.#insertSql, [
      raw.id,
      topic,
      raw.key ?? null,
      meta satisfies StoredMeta,
      Buffer.from(data),
    ]);
    return { id: raw.id };
  }
}

/** The writing side of the outbox; pair it with `startRelay()` somewhere (the same or another process). */
export function outbox(options: OutboxOptions): Outbox {
  return new Outbox(options);
}
