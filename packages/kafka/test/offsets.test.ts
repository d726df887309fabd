/** Offsets: committed only up to contiguous finished work; release redelivers; replay seeks without committing. */
import type { Delivery } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaTransport } from '../src/index.js';
import {
  Collector,
  connected,
  deleteTopics,
  envelope,
  rawKafka,
  requireBroker,
  unique,
  waitFor,
} from './helpers.js';

const PREFIX = unique('omnibus-ko');

async function committed(groupId: string, topic: string): Promise<Map<number, number>> {
  const admin = rawKafka().admin();
  await admin.connect();
  try {
    const rows = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map(rows[0]!.partitions.map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

describe('kafka offsets', () => {
  let transport: KafkaTransport;

  beforeAll(async () => {
    await requireBroker();
    // One partition keeps offsets 0..n-1 in publish order, so the expected commit points are exact.
    transport = await connected({ partitions: 1, commitIntervalMs: 100 });
  });

  afterAll(async () => {
    await transport?.close();
    await deleteTopics(PREFIX);
  });

  it('commits only up to the highest contiguous settled offset', async () => {
    const topic = `${PREFIX}-contiguous`;
    await transport.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await transport.publish(
      topic,
      Array.from({ length: 10 }, () => transport.encode(envelope())),
      noDeadline(),
    );
    const c = new Collector();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 10 },
      c.onDelivery,
    );
    await waitFor('10 deliveries', () => c.deliveries.length === 10);
    const byOffset = c.deliveries; // one partition: delivery order is offset order

    // Settle out of order: 0,1,2 and 5,6,7,8,9 — offset 3 and 4 still open.
    for (const i of [9, 5, 2, 0, 7, 1, 6, 8]) await byOffset[i]!.ack();
    await waitFor('commit at 3', async () => (await committed(`${topic}.g`, topic)).get(0) === 3);
    // Give the committer several rounds: it must not pass offset 3.
    const rounds = Date.now() + 600;
    await waitFor('several commit rounds', () => Date.now() > rounds);
    expect((await committed(`${topic}.g`, topic)).get(0)).toBe(3);

    await byOffset[4]!.ack();
    await waitFor('commit round', () => Date.now() > rounds + 400);
    expect((await committed(`${topic}.g`, topic)).get(0)).toBe(3);

    await byOffset[3]!.ack();
    await waitFor('commit at 10', async () => (await committed(`${topic}.g`, topic)).get(0) === 10);
    await sub.close();
  });

  it('commits what was settled when closed, and a new member resumes after it', async () => {
    const topic = `${PREFIX}-close`;
    const slow = await connected({ partitions: 1, commitIntervalMs: 60_000 });
    try {
      await slow.provision(topic, [{ group: 'g', patterns: ['#'] }]);
      await slow.publish(
        topic,
        Array.from({ length: 6 }, () => slow.encode(envelope())),
        noDeadline(),
      );
      const c = new Collector();
      const sub = await slow.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 6 }, c.onDelivery);
      await waitFor('6 deliveries', () => c.deliveries.length === 6);
      for (const i of [0, 1, 3]) await c.deliveries[i]!.ack();
      await sub.close();
      expect((await committed(`${topic}.g`, topic)).get(0)).toBe(2);

      const again = new Collector();
      again.listener = (d) => void d.ack();
      const sub2 = await slow.subscribe(
        { topic, group: 'g', patterns: ['#'], maxInFlight: 6 },
        again.onDelivery,
      );
      await waitFor('4 redeliveries', () => again.deliveries.length === 4);
      const ids = again.deliveries.map((d) => d.wire.headers.ce_id);
      expect(ids).toEqual(c.deliveries.slice(2).map((d) => d.wire.headers.ce_id));
      await sub2.close();
    } finally {
      await slow.close();
    }
  });

  it('release() redelivers exactly the released message, promptly, and holds the commit before it', async () => {
    const topic = `${PREFIX}-release`;
    await transport.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await transport.publish(
      topic,
      Array.from({ length: 5 }, () => transport.encode(envelope())),
      noDeadline(),
    );
    const c = new Collector();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 10 },
      c.onDelivery,
    );
    await waitFor('5 deliveries', () => c.deliveries.length === 5);
    const [d0, d1, d2, d3, d4] = c.deliveries as [Delivery, Delivery, Delivery, Delivery, Delivery];
    await d0.ack();
    await d2.release();
    await d1.ack();
    await d3.ack();
    await d4.ack();
    const again = await waitFor('the redelivery', () => c.deliveries[5]);
    expect(again.wire.headers.ce_id).toBe(d2.wire.headers.ce_id);
    expect(again.redelivered).toBe(true);
    expect(again.previousAttempts).toBe(0);
    await waitFor('commit at 2', async () => (await committed(`${topic}.g`, topic)).get(0) === 2);
    await again.ack();
    await waitFor('commit at 5', async () => (await committed(`${topic}.g`, topic)).get(0) === 5);
    // Nothing else came back.
    expect(c.deliveries).toHaveLength(6);
    await sub.close();
  });

  it('pause() stops deliveries and resume() continues', async () => {
    const topic = `${PREFIX}-pause`;
    await transport.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await transport.publish(topic, [transport.encode(envelope())], noDeadline());
    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 10 },
      c.onDelivery,
    );
    await waitFor('first delivery', () => c.deliveries.length === 1);
    sub.pause();
    await transport.publish(topic, [transport.encode(envelope())], noDeadline());
    const until = Date.now() + 2500;
    await waitFor('a while paused', () => Date.now() > until);
    expect(c.deliveries).toHaveLength(1);
    sub.resume();
    await waitFor('second delivery', () => c.deliveries.length === 2);
    await sub.close();
  });

  it('replays from earliest, from an offset and from a timestamp without committing', async () => {
    const topic = `${PREFIX}-replay`;
    await transport.provision(topic, []);
    await transport.publish(
      topic,
      Array.from({ length: 4 }, () => transport.encode(envelope())),
      noDeadline(),
    );
    const midTime = Date.now() + 1;
    await waitFor('the clock to move', () => Date.now() > midTime + 5);
    await transport.publish(
      topic,
      Array.from({ length: 3 }, () => transport.encode(envelope())),
      noDeadline(),
    );

    const read = async (replay: Parameters<KafkaTransport['subscribe']>[0]['replay'], count: number) => {
      const c = new Collector();
      c.listener = (d) => void d.ack();
      const sub = await transport.subscribe({ topic, patterns: ['#'], maxInFlight: 8, replay }, c.onDelivery);
      await waitFor(`${count} replayed`, () => c.deliveries.length >= count);
      // Let any extra record arrive before counting.
      const settle = Date.now() + 500;
      await waitFor('quiet', () => Date.now() > settle);
      await sub.close();
      return c.deliveries;
    };
    expect(await read('earliest', 7)).toHaveLength(7);
    expect(await read({ offset: 5 }, 2)).toHaveLength(2);
    expect(await read({ timestamp: midTime }, 3)).toHaveLength(3);

    const admin = rawKafka().admin();
    await admin.connect();
    const groups = (await admin.listGroups()).groups.filter((g) => g.groupId.startsWith(`${topic}.replay`));
    for (const g of groups) {
      const offsets = await admin.fetchOffsets({ groupId: g.groupId, topics: [topic] });
      expect(offsets[0]!.partitions.every((p) => p.offset === '-1')).toBe(true);
    }
    await admin.disconnect();
  });
});
