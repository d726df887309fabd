import {
  type Bus,
  ConfigError,
  ConnectionError,
  connect,
  defineMessage,
  memoryTransport,
} from '@omnibus/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { outbox, type Relay, startRelay } from '../src/index.js';
import { DATABASE_URL, requireDatabase, Tables, terminate, unique, urlNamed, waitFor } from './helpers.js';

const OrderPlaced = defineMessage({
  type: 'order.placed',
  version: 1,
  schema: z.object({ orderId: z.string(), n: z.number().int() }),
});

const tables = new Tables();
const closers: (() => Promise<unknown>)[] = [];

beforeAll(requireDatabase);
afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  await tables.drop();
});

/** A memory bus (the point here is the database), a subscriber recording what arrives, and a fresh outbox table. */
async function setup(label: string) {
  const { outboxTable } = await tables.schema(label);
  // A broker of its own per test (memory transports with the same name share one).
  const bus = await connect({ transport: memoryTransport({ name: unique(label) }), service: 'orders' });
  closers.push(() => bus.close({ drainTimeoutMs: 1000 }));
  const topic = unique('topic');
  const seen: { id: string; type: string; data: unknown; key: string | undefined }[] = [];
  await bus.subscribe({
    topic,
    group: 'audit',
    handlers: {
      '#': (data, ctx) =>
        void seen.push({ id: ctx.envelope.id, type: ctx.envelope.type, data, key: ctx.envelope.key }),
    },
  });
  const box = outbox({ bus, table: outboxTable });
  return { bus, box, topic, seen, table: outboxTable };
}

async function relayFor(
  bus: Bus,
  table: string,
  extra: Parameters<typeof startRelay>[0] = {},
): Promise<Relay> {
  const relay = await startRelay({ connectionString: DATABASE_URL, bus, table, ...extra });
  closers.push(() => relay.close());
  return relay;
}

async function inTransaction<T>(fn: (tx: pg.PoolClient) => Promise<T>, commit = true): Promise<T> {
  const client = await tables.pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return result;
  } finally {
    client.release();
  }
}

describe('outbox', () => {
  it('a rolled-back transaction publishes nothing; a committed one publishes exactly once', async () => {
    const { bus, box, topic, seen, table } = await setup('rollback');
    const relay = await relayFor(bus, table, { pollIntervalMs: 100 });
    const rolledBack = await inTransaction(
      (tx) => box.publish(tx, topic, OrderPlaced, { orderId: 'o-rolled-back', n: 1 }, { key: 'c-1' }),
      false,
    );
    const committed = await inTransaction((tx) =>
      box.publish(tx, topic, OrderPlaced, { orderId: 'o-committed', n: 2 }, { key: 'c-1' }),
    );
    await waitFor(() => seen.some((m) => m.id === committed.id), 'the committed message');
    // Several more relay rounds pass (each poll is 100 ms) before we conclude nothing else comes.
    const rounds = relay.stats.batches;
    await box.publish(tables.pool, topic, { type: 'marker', data: {} });
    await waitFor(() => seen.some((m) => m.type === 'marker'), 'a later marker message');
    expect(relay.stats.batches).toBeGreaterThan(rounds);
    expect(seen.filter((m) => m.id === committed.id)).toHaveLength(1);
    expect(seen.some((m) => m.id === rolledBack.id)).toBe(false);
    expect(seen.find((m) => m.id === committed.id)).toMatchObject({
      data: { orderId: 'o-committed', n: 2 },
      key: 'c-1',
    });
    expect(
      await tables.count(`SELECT count(*) AS n FROM ${table} WHERE message_id = $1`, [rolledBack.id]),
    ).toBe(0);
    expect(await tables.count(`SELECT count(*) AS n FROM ${table} WHERE sent_at IS NOT NULL`)).toBe(2);
  });

  it('fixes the id at write time and keeps the envelope (type, key, headers, correlation) for the relay', async () => {
    const { bus, box, topic, seen, table } = await setup('envelope');
    const id = await inTransaction(async (tx) => {
      const r = await box.publish(
        tx,
        topic,
        { type: 'invoice.sent', data: { total: 5 } },
        {
          key: 'k-9',
          headers: { tenant: 't1' },
          correlationId: 'corr-1',
        },
      );
      expect((await tx.query(`SELECT message_id FROM ${table}`)).rows[0].message_id).toBe(r.id);
      return r.id;
    });
    await relayFor(bus, table);
    const m = await waitFor(() => seen.find((s) => s.id === id), 'the message');
    expect(m).toMatchObject({ type: 'invoice.sent', key: 'k-9', data: { total: 5 } });
  });

  it('the relay is woken by NOTIFY at commit, not by its poll', async () => {
    const { bus, box, topic, seen, table } = await setup('notify');
    // A poll this long would fail the wait below; only the notification can deliver in time.
    await relayFor(bus, table, { pollIntervalMs: 600_000 });
    // The relay's first round (at start) takes this one; after it the relay sleeps until notified.
    const first = await box.publish(tables.pool, topic, { type: 'marker', data: {} });
    await waitFor(() => seen.some((m) => m.id === first.id), 'the first message');
    const started = Date.now();
    const { id } = await inTransaction((tx) => box.publish(tx, topic, OrderPlaced, { orderId: 'o-n', n: 1 }));
    await waitFor(() => seen.some((m) => m.id === id), 'the notified message', 10_000);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('works with any client through a minimal { query(text, params) } transaction', async () => {
    const { bus, box, topic, seen, table } = await setup('queryable');
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    // What an ORM user writes: forward to the ORM's own transaction object.
    const tx = { query: (text: string, params?: unknown[]) => client.query(text, params) };
    await client.query('BEGIN');
    const { id } = await box.publish(tx, topic, { type: 'x.y', data: { ok: true } });
    await client.query('COMMIT');
    await client.end();
    await relayFor(bus, table);
    await waitFor(() => seen.some((m) => m.id === id), 'the message');
  });

  it('deletes sent rows after the retention time', async () => {
    const { bus, box, topic, seen, table } = await setup('retention');
    await relayFor(bus, table, { retentionMs: 0, cleanupIntervalMs: 100, pollIntervalMs: 50 });
    const { id } = await box.publish(tables.pool, topic, { type: 'x.y', data: 1 });
    await waitFor(() => seen.some((m) => m.id === id), 'the message');
    await waitFor(
      async () => (await tables.count(`SELECT count(*) AS n FROM ${table}`)) === 0,
      'the sent row to be deleted',
    );
  });

  it('a cut relay connection is reported, and the relay carries on without losing rows', async () => {
    const { bus, box, topic, seen, table } = await setup('cut');
    const app = unique('relay');
    const errors: Error[] = [];
    const relay = await relayFor(bus, table, {
      connectionString: urlNamed(app),
      pollIntervalMs: 50,
      retryDelayMs: 50,
      onError: (e) => errors.push(e),
    });
    const ids: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 100; i++)
        ids.push(
          (await box.publish(tables.pool, topic, OrderPlaced, { orderId: 'o', n: i }, { key: `k${i % 7}` }))
            .id,
        );
      await waitFor(async () => (await terminate(tables.pool, app)) > 0, 'a relay connection to cut');
    }
    await waitFor(() => errors.length > 0, 'the relay to report the cut');
    // The server's reason when it got through (57P01), else the socket's: either way, a ConnectionError
    // that says the relay's connection failed.
    expect(errors[0]).toBeInstanceOf(ConnectionError);
    expect(errors[0]!.message).toMatch(
      /^postgres: outbox relay (connection )?failed: .*(terminat|ECONNRESET)/i,
    );
    await waitFor(
      () => ids.every((id) => seen.some((m) => m.id === id)),
      () => `all ${ids.length} messages (${new Set(seen.map((m) => m.id)).size} seen)`,
    );
    expect(relay.stats.errors).toBeGreaterThan(0);
  });

  it('validates its options with ConfigErrors naming the field', async () => {
    const { bus } = await setup('options');
    expect(() => outbox({ bus, table: 'Bad Name' })).toThrow(/table/);
    expect(() => outbox({ bus, extra: 1 } as never)).toThrow(ConfigError);
    await expect(startRelay({ connectionString: DATABASE_URL, bus, batchSize: 0 })).rejects.toThrow(
      /batchSize/,
    );
    await expect(startRelay({ connectionString: DATABASE_URL })).rejects.toThrow(/bus or transport/);
    await expect(
      startRelay({ connectionString: DATABASE_URL, bus, transport: bus.transport }),
    ).rejects.toThrow(/exactly one/);
  });
});
