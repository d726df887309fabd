/**
 * Relays in their own processes publishing into RabbitMQ: SIGKILLed while rows are written, and two at
 * once. Downstream, a consumer with an idempotency store counts each message id once and checks per-key
 * order by a counter the writer put into every message.
 */
import { type Bus, memoryStore } from '@omnibus/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Outbox, outbox } from '../src/index.js';
import { connectBus } from './fixtures/connect.js';
import {
  AMQP_URL,
  Child,
  DATABASE_URL,
  deleteTopics,
  requireDatabase,
  Tables,
  unique,
  waitFor,
} from './helpers.js';

const tables = new Tables();
const children: Child[] = [];
const declared: [string, string][] = [];
let bus: Bus;

beforeAll(async () => {
  await requireDatabase();
  bus = await connectBus(AMQP_URL, 'relay-test');
});
afterAll(async () => {
  for (const c of children) await c.kill();
  await bus?.close({ drainTimeoutMs: 1000 });
  await deleteTopics(declared).catch(() => {});
  await tables.drop();
});

function relay(table: string, holdAfterPublishMs?: number): Child {
  const c = new Child('relay', {
    databaseUrl: DATABASE_URL,
    amqpUrl: AMQP_URL,
    table,
    batchSize: 200,
    holdAfterPublishMs,
  });
  children.push(c);
  return c;
}

function published(c: Child): number {
  const m = [...c.messages].reverse().find((x) => x.kind === 'progress' || x.kind === 'closed');
  if (!m) return 0;
  return m.kind === 'closed' ? (m.stats as { published: number }).published : (m.published as number);
}

interface Received {
  id: string;
  key: string;
  n: number;
}

/** A downstream consumer: duplicates suppressed by message id, arrivals recorded in order. */
async function downstream(topic: string) {
  const received: Received[] = [];
  const group = 'audit';
  declared.push([topic, group]);
  await retrying(() => bus.provision(topic, [{ group }]));
  const sub = await bus.subscribe({
    topic,
    group,
    ordered: true,
    concurrency: 16,
    idempotency: { store: memoryStore() },
    handlers: {
      '#': (data, ctx) => {
        const d = data as { key: string; n: number };
        received.push({ id: ctx.envelope.id, key: d.key, n: d.n });
      },
    },
  });
  return { received, close: () => sub.close() };
}

/** The shared broker sometimes drops a connection under load: the transport reconnects, the call is tried again. */
async function retrying<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 500 * i));
    }
  }
}

/** Writes `rows` messages over `keys` keys, `perTx` per transaction; n counts up per key. */
async function write(
  box: Outbox,
  topic: string,
  counters: Map<string, number>,
  rows: number,
  keys: number,
  perTx = 100,
) {
  const ids: string[] = [];
  for (let done = 0; done < rows; done += perTx) {
    const client = await tables.pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = 0; i < perTx && done + i < rows; i++) {
        const key = `key-${(done + i) % keys}`;
        const n = counters.get(key) ?? 0;
        counters.set(key, n + 1);
        ids.push((await box.publish(client, topic, { type: 'entry.posted', data: { key, n } }, { key })).id);
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
  return ids;
}

/** Every id arrived once, and each key's counters arrived as 0, 1, 2, … */
function checkOrder(received: Received[], ids: string[], counters: Map<string, number>): void {
  const byId = new Map<string, number>();
  for (const r of received) byId.set(r.id, (byId.get(r.id) ?? 0) + 1);
  expect(byId.size).toBe(ids.length);
  expect(ids.every((id) => byId.get(id) === 1)).toBe(true);
  const next = new Map<string, number>();
  const outOfOrder: string[] = [];
  for (const r of received) {
    const want = next.get(r.key) ?? 0;
    if (r.n !== want) outOfOrder.push(`${r.key}: got ${r.n}, expected ${want}`);
    next.set(r.key, r.n + 1);
  }
  expect(outOfOrder.slice(0, 5)).toEqual([]);
  for (const [key, count] of counters) expect(next.get(key)).toBe(count);
}

describe('outbox relay', () => {
  it('SIGKILLed 5 times while 10,000 rows are written: none lost, order per key kept, duplicates suppressed', async () => {
    const { outboxTable } = await tables.schema('kill');
    const topic = unique('relaykill');
    const down = await downstream(topic);
    const box = outbox({ bus, table: outboxTable });
    const counters = new Map<string, number>();
    const ids: string[] = [];
    let kills = 0;
    const t0 = Date.now();
    for (let phase = 0; phase < 5; phase++) {
      // This relay pauses 300 ms between a batch's broker confirmation and marking it sent.
      const r = relay(outboxTable, 300);
      await r.waitFor('ready');
      // Rows are written while this relay runs; it is killed in that pause, once it has marked some sent.
      const writing = write(box, topic, counters, 2000, 50);
      await waitFor(
        () => {
          const last = [...r.messages].reverse().find((m) => m.kind === 'confirmed');
          return published(r) >= 200 && last !== undefined && (last.confirmed as number) > published(r);
        },
        `relay ${phase} between a confirmed batch and marking it sent`,
        60_000,
      );
      await r.kill();
      kills++;
      console.log(
        `phase ${phase}: killed at ${published(r)} published, ${down.received.length} received, ${Date.now() - t0} ms`,
      );
      ids.push(...(await writing));
    }
    expect(kills).toBe(5);
    expect(ids).toHaveLength(10_000);
    const last = relay(outboxTable);
    await last.waitFor('ready');
    await waitFor(
      () => new Set(down.received.map((x) => x.id)).size === ids.length,
      () => `all 10,000 ids downstream (${new Set(down.received.map((x) => x.id)).size})`,
      120_000,
    );
    expect(await tables.count(`SELECT count(*) AS n FROM ${outboxTable} WHERE sent_at IS NULL`)).toBe(0);
    await last.stop();
    await down.close();
    checkOrder(down.received, ids, counters);
    // What a killed relay had published but not marked sent went out again, and was recognised downstream.
    expect(bus.counters.duplicates).toBeGreaterThan(0);
    console.log(`relay SIGKILL test: ${bus.counters.duplicates} duplicate deliveries suppressed downstream`);
  }, 480_000);

  it('two relays at once: nothing lost, order per key kept, both did work', async () => {
    const { outboxTable } = await tables.schema('two');
    const topic = unique('relaytwo');
    const down = await downstream(topic);
    const box = outbox({ bus, table: outboxTable });
    const a = relay(outboxTable);
    const b = relay(outboxTable);
    await Promise.all([a.waitFor('ready'), b.waitFor('ready')]);
    const counters = new Map<string, number>();
    const ids = await write(box, topic, counters, 4000, 40, 50);
    await waitFor(
      () => new Set(down.received.map((x) => x.id)).size === ids.length,
      () => `all ${ids.length} ids downstream (${new Set(down.received.map((x) => x.id)).size})`,
      120_000,
    );
    await Promise.all([a.stop(), b.stop()]);
    await down.close();
    checkOrder(down.received, ids, counters);
    expect(published(a)).toBeGreaterThan(0);
    expect(published(b)).toBeGreaterThan(0);
    expect(published(a) + published(b)).toBeGreaterThanOrEqual(ids.length);
  }, 300_000);
});
