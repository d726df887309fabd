/**
 * Replicas in separate processes sharing the PostgreSQL store through RabbitMQ: a race on the same
 * messages, a replica SIGKILLed mid-handler, and connections cut under a running subscription.
 */
import type { Bus, Logger } from '@omnibus/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inbox, postgresStore } from '../src/index.js';
import { connectBus } from './fixtures/connect.js';
import {
  AMQP_URL,
  Child,
  type ChildMessage,
  DATABASE_URL,
  deleteTopics,
  requireDatabase,
  Tables,
  terminate,
  unique,
  urlNamed,
  waitFor,
} from './helpers.js';

const tables = new Tables();
const children: Child[] = [];
const declared: [string, string][] = [];
let bus: Bus;

beforeAll(async () => {
  await requireDatabase();
  bus = await connectBus(AMQP_URL, 'replica-test');
});
afterAll(async () => {
  for (const c of children) await c.kill();
  await bus?.close({ drainTimeoutMs: 1000 });
  await deleteTopics(declared).catch(() => {});
  await tables.drop();
});

function replica(config: Record<string, unknown>): Child {
  const c = new Child('replica', { databaseUrl: DATABASE_URL, amqpUrl: AMQP_URL, ...config });
  children.push(c);
  return c;
}

/** The latest counters a replica reported. */
function latest(c: Child): { handled: number; duplicates: number; claims: Record<string, number> } {
  const m = [...c.messages].reverse().find((x: ChildMessage) => x.kind === 'counters' || x.kind === 'closed');
  const counters = (m?.counters ?? {}) as { handled?: number; duplicates?: number };
  return {
    handled: counters.handled ?? 0,
    duplicates: counters.duplicates ?? 0,
    claims: (m?.claims ?? {}) as Record<string, number>,
  };
}

async function effectsPerId(table: string): Promise<Map<string, number>> {
  const r = await tables.pool.query<{ message_id: string; n: string }>(
    `SELECT message_id, count(*) AS n FROM ${table} GROUP BY message_id`,
  );
  return new Map(r.rows.map((x) => [x.message_id, Number(x.n)]));
}

describe('replicas sharing the PostgreSQL store', () => {
  it('two replicas race on the same 1,000 messages (each delivered twice): every effect exactly once', async () => {
    const { idempotencyTable } = await tables.schema('race');
    const effects = await tables.effects('race');
    const topic = unique('race');
    const group = 'payments';
    declared.push([topic, group]);
    await bus.provision(topic, [{ group }]);
    const common = { topic, group, idempotencyTable, effects, leaseMs: 30_000, concurrency: 16 };
    const a = replica({ ...common, name: 'A' });
    const b = replica({ ...common, name: 'B' });
    await Promise.all([a.waitFor('ready'), b.waitFor('ready')]);

    // Each id twice, the copies side by side, so RabbitMQ hands them to both replicas at about the same time.
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) ids.push(`race-${i}-${unique('id')}`);
    for (let i = 0; i < ids.length; i += 50) {
      await bus.publishBatch(
        topic,
        ids.slice(i, i + 50).flatMap((id) => {
          const item = { type: 'payment.requested', data: { id }, options: { id, key: id } };
          return [item, item];
        }),
      );
    }
    await waitFor(
      () =>
        latest(a).handled + latest(b).handled === 1000 &&
        latest(a).duplicates + latest(b).duplicates === 1000,
      () =>
        `1,000 handled and 1,000 duplicates (A ${JSON.stringify(latest(a))}, B ${JSON.stringify(latest(b))})`,
      120_000,
    );
    const perId = await effectsPerId(effects);
    expect(perId.size).toBe(1000);
    expect([...perId.values()].every((n) => n === 1)).toBe(true);
    expect(ids.every((id) => perId.get(id) === 1)).toBe(true);
    // The race was real: both replicas did work, and the store answered held or done to the second copies.
    expect(latest(a).handled).toBeGreaterThan(0);
    expect(latest(b).handled).toBeGreaterThan(0);
    const sa = latest(a).claims;
    const sb = latest(b).claims;
    expect((sa.held ?? 0) + (sb.held ?? 0) + (sa.done ?? 0) + (sb.done ?? 0)).toBeGreaterThanOrEqual(1000);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a replica SIGKILLed mid-handler: another takes over after the lease, each effect once', async () => {
    const { idempotencyTable } = await tables.schema('kill');
    const effects = await tables.effects('kill');
    const topic = unique('kill');
    const group = 'payments';
    declared.push([topic, group]);
    await bus.provision(topic, [{ group }]);
    // Longer than B takes to start on a loaded machine, so B meets A's leases still running after the kill.
    const leaseMs = 15_000;
    const common = { topic, group, idempotencyTable, effects, leaseMs };
    const a = replica({ ...common, name: 'A', holdMs: 600_000 });
    await a.waitFor('ready');
    const ids = Array.from({ length: 5 }, (_, i) => `kill-${i}-${unique('id')}`);
    for (const id of ids) await bus.publish(topic, { type: 'payment.requested', data: { id } }, { id });
    // A has written every effect inside its open transactions and is holding them.
    await waitFor(() => a.messages.filter((m) => m.kind === 'started').length === 5, 'A to start all five');
    // B joins the group now: RabbitMQ already gave all five to A, and hands them to B when A dies.
    const b = replica({ ...common, name: 'B' });
    await b.waitFor('ready');
    const killedAt = Date.now();
    await a.kill();
    await waitFor(async () => (await effectsPerId(effects)).size === 5, 'B to handle all five', 60_000);
    const r = await tables.pool.query<{ replica: string; message_id: string; at: Date }>(
      `SELECT replica, message_id, at FROM ${effects}`,
    );
    // A's uncommitted writes died with it; B's are the only ones, one per message.
    expect(r.rows).toHaveLength(5);
    expect(r.rows.every((x) => x.replica === 'B')).toBe(true);
    expect(new Set(r.rows.map((x) => x.message_id))).toEqual(new Set(ids));
    // B found A's claims still leased and waited for them to run out before it ran the handler.
    await waitFor(() => (latest(b).claims.held ?? 0) > 0, "B's claim counters");
    expect(latest(b).claims.held).toBeGreaterThan(0);
    expect(Math.min(...r.rows.map((x) => x.at.getTime()))).toBeGreaterThanOrEqual(killedAt - 1000);
    await b.stop();
  });

  it('connections cut under a running inbox: a clear error, then recovery with no double effect', async () => {
    const { idempotencyTable } = await tables.schema('cut');
    const effects = await tables.effects('cut');
    const topic = unique('cut');
    const group = 'ledger';
    declared.push([topic, group]);
    await bus.provision(topic, [{ group }]);
    const app = unique('inbox');
    const logged: string[] = [];
    const capture = (_f: Record<string, unknown>, msg: string) =>
      logged.push(`${msg}: ${String(_f.err ?? '')}`);
    const logger: Logger = { debug() {}, info() {}, warn: capture, error: capture };
    const store = postgresStore({
      connectionString: urlNamed(app),
      table: idempotencyTable,
      maxConnections: 4,
    });
    const consumerBus = await connectBus(AMQP_URL, 'ledger', logger);
    try {
      await consumerBus.subscribe({
        topic,
        group,
        concurrency: 8,
        idempotency: { store, leaseMs: 2000 },
        retry: { attempts: 50, backoff: { initialMs: 20, maxMs: 200, factor: 2, jitter: true } },
        handlers: {
          '#': inbox(store, async (_data, ctx, tx) => {
            await tx.query(`INSERT INTO ${effects} (message_id) VALUES ($1)`, [ctx.envelope.id]);
            // Long enough that transactions are open when the test cuts (300 messages take seconds).
            await new Promise((r) => setTimeout(r, 30));
          }),
        },
      });
      const ids = Array.from({ length: 300 }, (_, i) => `cut-${i}-${unique('id')}`);
      for (const id of ids) await bus.publish(topic, { type: 'entry.posted', data: { id } }, { id });
      let cuts = 0;
      for (const threshold of [50, 120, 200]) {
        // Cut while an inbox transaction is open, so the cut hits work in flight (and must be reported).
        await waitFor(
          async () =>
            (await tables.count(`SELECT count(*) AS n FROM ${effects}`)) >= threshold &&
            (await tables.count(
              `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = '${app}' AND state IN ('active', 'idle in transaction')`,
            )) > 0,
          `${threshold} effects and an open inbox transaction`,
        );
        cuts += await terminate(tables.pool, app);
      }
      expect(cuts).toBeGreaterThan(0);
      await waitFor(
        async () => (await effectsPerId(effects)).size === 300,
        async () => `all 300 effects (${(await effectsPerId(effects)).size})`,
        90_000,
      );
      const perId = await effectsPerId(effects);
      expect([...perId.entries()].filter(([, n]) => n !== 1)).toEqual([]);
      // The cut was reported as a connection error (pg: "Client has encountered a connection error…").
      expect(
        logged.some((l) => /postgres|terminat|connection error|ECONNRESET/i.test(l)),
        `logged: ${JSON.stringify(logged.slice(0, 8))}`,
      ).toBe(true);
    } finally {
      await consumerBus.close({ drainTimeoutMs: 2000 });
      await store.close();
    }
  });
});
