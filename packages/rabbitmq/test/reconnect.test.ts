/**
 * Connection loss: the broker closing this test's own connection, and a full outage simulated with a local
 * TCP proxy in front of the shared broker (the broker itself is never stopped or restarted here).
 */
import type { Delivery } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { closeOwnConnection, envelope, Fixture, Relay, unique, waitFor } from './helpers.js';

const fx = new Fixture();
afterAll(() => fx.cleanup());

describe('connection recovery', () => {
  it('after the broker closes the connection, publishing and consuming resume and nothing is lost', async () => {
    const topic = unique('kill');
    fx.track(topic, 'g');
    const t = await fx.transport({ connectionName: unique('conn') });
    const handled = new Set<string>();
    await t.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 20 }, (d: Delivery) => {
      setTimeout(() => {
        handled.add(t.decode(d.wire).id);
        void d.ack();
      }, Math.random() * 5);
    });
    const published = new Set<string>();
    const publishSome = async (n: number) => {
      const envs = Array.from({ length: n }, () => envelope('order.placed'));
      await t.publish(
        topic,
        envs.map((e) => t.encode(e)),
      );
      for (const e of envs) published.add(e.id);
    };
    await publishSome(100);
    await waitFor(() => handled.size >= 20, 'some progress before the kill');

    // Keep publishing while the connection is cut: every publish must resolve (or reject), never vanish.
    let stop = false;
    const failures: unknown[] = [];
    const loop = (async () => {
      while (!stop && failures.length === 0) await publishSome(10).catch((e: unknown) => failures.push(e));
    })();
    await closeOwnConnection(t.connectionName);
    try {
      await waitFor(async () => Number((await t.health()).details.reconnects) >= 1, 'a reconnect');
      const afterReconnect = published.size;
      await waitFor(() => published.size >= afterReconnect + 100, 'publishes after the reconnect');
    } finally {
      stop = true;
      await loop;
    }
    expect(failures).toEqual([]);

    await waitFor(() => [...published].every((id) => handled.has(id)), 'every published id handled', 60_000);
    expect(published.size).toBeGreaterThanOrEqual(200);
    const h = await t.health();
    expect(h.ok).toBe(true);
    expect(Number(h.details.reconnects)).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it('a replay subscription resumes after the last offset it saw, without re-reading or skipping', async () => {
    const topic = unique('replay-kill');
    fx.track(topic, 'keep');
    const t = await fx.transport({ streams: true, connectionName: unique('conn') });
    await t.provision(topic, [{ group: 'keep', patterns: ['#'] }]);
    const first = Array.from({ length: 20 }, () => envelope('order.placed'));
    await t.publish(
      topic,
      first.map((e) => t.encode(e)),
    );
    const seen: string[] = [];
    await t.subscribe({ topic, patterns: ['#'], maxInFlight: 5, replay: 'earliest' }, (d) => {
      seen.push(t.decode(d.wire).id);
      void d.ack();
    });
    await waitFor(() => seen.length === 20, 'the history');
    await closeOwnConnection(t.connectionName);
    await waitFor(
      async () => (await t.health()).ok && Number((await t.health()).details.reconnects) >= 1,
      'reconnect',
    );
    const second = Array.from({ length: 20 }, () => envelope('order.placed'));
    await t.publish(
      topic,
      second.map((e) => t.encode(e)),
    );
    await waitFor(() => seen.length >= 40, 'the new messages');
    expect(seen).toEqual([...first, ...second].map((e) => e.id));
  }, 60_000);

  it('a publish made during an outage is sent once the broker is reachable again', async () => {
    const relay = new Relay();
    await relay.up();
    const topic = unique('outage');
    fx.track(topic, 'g');
    const t = await fx.transport({ url: relay.url(), connectTimeoutMs: 1_000 });
    const seen: string[] = [];
    await t.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 5 }, (d) => {
      seen.push(t.decode(d.wire).id);
      void d.ack();
    });
    const before = envelope('order.placed');
    await t.publish(topic, [t.encode(before)]);
    await waitFor(() => seen.includes(before.id), 'delivery before the outage');

    await relay.down();
    await waitFor(async () => !(await t.health()).ok, 'transport notices the outage');
    // No deadline of the transport's own: the publish waits for the connection (the caller's deadline
    // decides when to give up; see deadline.test.ts).
    const pending = envelope('order.placed');
    const pendingPublish = t.publish(topic, [t.encode(pending)]);
    await relay.up();
    await pendingPublish;
    const after = envelope('order.placed');
    await t.publish(topic, [t.encode(after)]);
    await waitFor(
      () => seen.includes(pending.id) && seen.includes(after.id),
      'deliveries after the outage',
      20_000,
    );
    await relay.down();
    await t.close();
  }, 60_000);
});
