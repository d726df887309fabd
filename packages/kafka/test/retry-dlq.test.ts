/** Delayed retry through the tier topics, and dead-lettering, read back with the raw client. */
import { ControlHeader, type Delivery } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import type { Consumer } from 'kafkajs';
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

const PREFIX = unique('omnibus-kr');

describe('kafka delayed retry and dead letters', () => {
  let transport: KafkaTransport;
  const consumers: Consumer[] = [];

  beforeAll(async () => {
    await requireBroker();
    transport = await connected({ delayTiersMs: [400, 1500], partitions: 2, commitIntervalMs: 200 });
  });

  afterAll(async () => {
    for (const c of consumers) await c.disconnect().catch(() => {});
    await transport?.close();
    await deleteTopics(PREFIX);
  });

  it('redelivers after at least the requested delay and within its tier, only to the same group', async () => {
    const topic = `${PREFIX}-tiers`;
    const seen = new Map<string, { at: number; d: Delivery }[]>();
    const requested = new Map<string, { at: number; delayMs: number }>();
    const c = new Collector();
    c.listener = (d) => {
      const id = d.wire.headers.ce_id!;
      const list = seen.get(id) ?? [];
      list.push({ at: Date.now(), d });
      seen.set(id, list);
      if (list.length === 1) {
        const delayMs = [150, 400, 900, 1200][seen.size % 4]!;
        requested.set(id, { at: Date.now(), delayMs });
        void d.retryLater(delayMs, { [ControlHeader.attempts]: '1', [ControlHeader.lastError]: 'boom' });
      } else void d.ack();
    };
    const other = new Collector();
    other.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 8 },
      c.onDelivery,
    );
    const subOther = await transport.subscribe(
      { topic, group: 'other', patterns: ['#'], maxInFlight: 8 },
      other.onDelivery,
    );
    const envs = Array.from({ length: 8 }, (_, i) => envelope({ key: `k${i}`, headers: { tenant: 'acme' } }));
    await transport.publish(
      topic,
      envs.map((e) => transport.encode(e)),
      noDeadline(),
    );
    await waitFor('every message twice', () => envs.every((e) => (seen.get(e.id)?.length ?? 0) >= 2), 30_000);

    for (const e of envs) {
      const [first, second] = seen.get(e.id)!;
      const req = requested.get(e.id)!;
      const observed = second!.at - req.at;
      expect(observed).toBeGreaterThanOrEqual(req.delayMs);
      // Rounded up to a tier, not to the next tier after that (generous bound for a busy machine).
      expect(observed).toBeLessThan((req.delayMs <= 400 ? 400 : 1500) + 3000);
      expect(second!.d.previousAttempts).toBe(1);
      expect(second!.d.redelivered).toBe(true);
      expect(second!.d.wire.headers[ControlHeader.lastError]).toBe('boom');
      expect(second!.d.wire.headers.tenant).toBe('acme');
      expect(second!.d.wire.key).toBe(first!.d.wire.key);
      expect(Buffer.from(second!.d.wire.body).equals(Buffer.from(first!.d.wire.body))).toBe(true);
      expect(transport.decode(second!.d.wire).id).toBe(e.id);
    }
    // The other group saw each message exactly once: retries are per group.
    const settle = Date.now() + 1000;
    await waitFor('quiet', () => Date.now() > settle);
    expect(other.deliveries).toHaveLength(8);
    await Promise.all([sub.close(), subOther.close()]);
  });

  it('chains a delay longer than the largest tier without delivering early', async () => {
    const topic = `${PREFIX}-chain`;
    const c = new Collector();
    let requestedAt = 0;
    c.listener = (d) => {
      if (c.deliveries.length === 1) {
        requestedAt = Date.now();
        void d.retryLater(3500, { [ControlHeader.attempts]: '1' });
      } else void d.ack();
    };
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    await transport.publish(topic, [transport.encode(envelope())], noDeadline());
    const second = await waitFor('the delayed redelivery', () => c.deliveries[1], 20_000);
    expect(Date.now() - requestedAt).toBeGreaterThanOrEqual(3500);
    expect(second.previousAttempts).toBe(1);
    // The tier topic saw the message more than once (chained), the core only once more.
    const admin = rawKafka().admin();
    await admin.connect();
    const tier = await admin.fetchTopicOffsets(`${topic}.g.retry.1500`);
    await admin.disconnect();
    expect(tier.reduce((n, p) => n + Number(p.high), 0)).toBeGreaterThanOrEqual(2);
    expect(c.deliveries).toHaveLength(2);
    await sub.close();
  });

  it('a tier partition waiting for its head does not hold up the main topic', async () => {
    const topic = `${PREFIX}-nohold`;
    const c = new Collector();
    c.listener = (d) => {
      if (d.wire.headers.slow === 'yes' && d.previousAttempts === 0)
        void d.retryLater(1500, { [ControlHeader.attempts]: '1' });
      else void d.ack();
    };
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    await transport.publish(topic, [transport.encode(envelope({ headers: { slow: 'yes' } }))], noDeadline());
    await waitFor('the first delivery', () => c.deliveries.length === 1);
    const fastAt = Date.now();
    await transport.publish(topic, [transport.encode(envelope())], noDeadline());
    await waitFor('the fast message', () => c.deliveries.find((d) => d.wire.headers.slow !== 'yes'));
    expect(Date.now() - fastAt).toBeLessThan(1500);
    await waitFor('the retry', () => c.deliveries.length === 3, 10_000);
    await sub.close();
  });

  it('dead-letters body, headers and key with the control headers, confirmed before the ack', async () => {
    const topic = `${PREFIX}-dlq`;
    const c = new Collector();
    c.listener = (d) =>
      void d.deadLetter({
        [ControlHeader.reason]: 'max-attempts',
        [ControlHeader.error]: 'it broke',
        [ControlHeader.attempts]: '3',
        [ControlHeader.originalTopic]: topic,
        [ControlHeader.originalGroup]: 'g',
      });
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    const env = envelope({ key: 'customer-9', headers: { tenant: 'acme' } });
    await transport.publish(topic, [transport.encode(env)], noDeadline());
    await waitFor('the delivery', () => c.deliveries.length === 1);

    const consumer = rawKafka().consumer({ groupId: unique('dlq-reader'), maxWaitTimeInMs: 200 });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [`${topic}.g.dlq`], fromBeginning: true });
    const read: { key?: string; value: Buffer; headers: Record<string, string> }[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        read.push({ key: message.key?.toString(), value: message.value!, headers });
      },
    });
    const dead = await waitFor('the dead letter', () => read[0]);
    expect(dead.key).toBe('customer-9');
    expect(dead.value.toString()).toBe(Buffer.from(env.data).toString());
    expect(dead.headers.ce_id).toBe(env.id);
    expect(dead.headers.tenant).toBe('acme');
    expect(dead.headers[ControlHeader.reason]).toBe('max-attempts');
    expect(dead.headers[ControlHeader.error]).toBe('it broke');
    expect(dead.headers[ControlHeader.originalGroup]).toBe('g');
    // The original was acked: the group has nothing left to read.
    const stats = await waitFor('the commit', async () => {
      const st = await transport.stats(topic, 'g');
      return st.lag === 0 ? st : undefined;
    });
    expect(stats.deadLettered).toBe(1);
    expect(stats.delayed).toBe(0);
    expect(stats.depth).toBe(0);
    await sub.close();
  });
});
