/** Two members of one group; one leaves mid-stream with work unsettled: nothing is lost. */
import type { Delivery } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaTransport } from '../src/index.js';
import { Collector, connected, deleteTopics, envelope, requireBroker, unique, waitFor } from './helpers.js';

const PREFIX = unique('omnibus-kb');

describe('kafka rebalance', () => {
  const transports: KafkaTransport[] = [];

  beforeAll(async () => {
    await requireBroker();
  });

  afterAll(async () => {
    for (const t of transports) await t.close().catch(() => {});
    await deleteTopics(PREFIX);
  });

  it('every published id is seen at least once when a member leaves mid-stream', async () => {
    const topic = `${PREFIX}-leave`;
    const options = {
      partitions: 6,
      commitIntervalMs: 200,
      heartbeatIntervalMs: 500,
      sessionTimeoutMs: 10_000,
    };
    const [publisher, a, b] = await Promise.all([connected(options), connected(options), connected(options)]);
    transports.push(publisher, a, b);
    await publisher.provision(topic, [{ group: 'g', patterns: ['#'] }]);

    const seenA = new Set<string>();
    const seenB = new Set<string>();
    const heldByA: Delivery[] = [];
    const ca = new Collector();
    ca.listener = (d) => {
      seenA.add(d.wire.headers.ce_id!);
      // A holds some work unsettled; the rest finishes after a short random delay.
      if (seenA.size % 5 === 0) heldByA.push(d);
      else setTimeout(() => void d.ack(), Math.random() * 20);
    };
    const cb = new Collector();
    cb.listener = (d) => {
      seenB.add(d.wire.headers.ce_id!);
      setTimeout(() => void d.ack(), Math.random() * 20);
    };
    const subA = await a.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 32 }, ca.onDelivery);
    const subB = await b.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 32 }, cb.onDelivery);

    const ids: string[] = [];
    const publishSome = async (n: number) => {
      const envs = Array.from({ length: n }, (_, i) => envelope({ key: `key-${ids.length + i}` }));
      ids.push(...envs.map((e) => e.id));
      await publisher.publish(
        topic,
        envs.map((e) => publisher.encode(e)),
        noDeadline(),
      );
    };
    for (let i = 0; i < 10; i++) await publishSome(30);
    await waitFor('both members busy', () => seenA.size > 20 && seenB.size > 20, 30_000);

    // A leaves with work unsettled, then settles it too late; publishing goes on meanwhile.
    const closing = subA.close();
    for (let i = 0; i < 10; i++) await publishSome(30);
    await closing;
    for (const d of heldByA) await d.ack();

    await waitFor('every id seen', () => ids.every((id) => seenA.has(id) || seenB.has(id)), 60_000);
    // What A held unsettled when it left was redelivered to B.
    for (const d of heldByA) expect(seenB.has(d.wire.headers.ce_id!)).toBe(true);
    await waitFor('B caught up', async () => (await publisher.stats(topic, 'g')).lag === 0, 30_000);
    await subB.close();
  });

  it('keeps its membership while deliveries are held longer than the session timeout', async () => {
    const topic = `${PREFIX}-hold`;
    const t = await connected({
      partitions: 1,
      sessionTimeoutMs: 6_000,
      heartbeatIntervalMs: 1_000,
      commitIntervalMs: 200,
    });
    transports.push(t);
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await t.publish(
      topic,
      Array.from({ length: 6 }, () => t.encode(envelope())),
      noDeadline(),
    );
    const c = new Collector();
    const sub = await t.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 2 }, c.onDelivery);
    await waitFor('two deliveries', () => c.deliveries.length === 2);
    // The batch now waits for room; only its heartbeats keep the member in the group.
    const heldUntil = Date.now() + 9_000;
    await waitFor('longer than the session timeout', () => Date.now() > heldUntil, 15_000, 200);
    for (let i = 0; ; i++) {
      const d = await waitFor(`delivery ${i}`, () => c.deliveries[i], 20_000);
      await d.ack();
      if (i === 5) break;
    }
    await waitFor('all committed', async () => (await t.stats(topic, 'g')).lag === 0, 20_000);
    // A member that lost its session would have been given the two held messages again.
    const ids = c.deliveries.map((d) => d.wire.headers.ce_id);
    expect(ids).toHaveLength(6);
    expect(new Set(ids).size).toBe(6);
    await sub.close();
  }, 60_000);
});
