/**
 * Publishes made one after another without waiting reach the stream in the order they were made, the
 * first ones included: found by the chaos run, where the first publish of a process (which looks the
 * stream up) was overtaken by the next ones.
 */
import { randomBytes } from 'node:crypto';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { silentLogger, uuidv7 } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { afterEach, describe, expect, it } from 'vitest';
import { type NatsTransport, nats } from '../src/index.js';

const SERVER = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
const open: NatsTransport[] = [];
const streams: string[] = [];

function wire(t: NatsTransport, seq: number) {
  const id = uuidv7();
  return t.encode({
    id,
    type: 'order.placed',
    source: 'test',
    time: Date.now(),
    key: 'k',
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from(JSON.stringify({ seq })),
  });
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
  const nc = await connect({ servers: [SERVER] });
  const jsm = await jetstreamManager(nc);
  for (const s of streams.splice(0)) await jsm.streams.delete(s).catch(() => false);
  await nc.close();
});

describe('nats publish order', () => {
  it('keeps the call order of publishes not awaited one by one, while the stream is still being looked up', async () => {
    const t = nats({ servers: [SERVER] });
    open.push(t);
    await t.connect({ logger: silentLogger, service: 'publish-order-test' });
    const topic = `order-${randomBytes(4).toString('hex')}`;
    streams.push(topic);
    const count = 30;
    await Promise.all(
      Array.from({ length: count }, (_, seq) => t.publish(topic, [wire(t, seq)], noDeadline())),
    );

    const nc = await connect({ servers: [SERVER] });
    try {
      const consumer = await jetstream(nc).consumers.get(topic, { deliver_policy: DeliverPolicy.All });
      const seqs: number[] = [];
      while (seqs.length < count) {
        const batch = await consumer.fetch({ max_messages: count - seqs.length, expires: 2_000 });
        for await (const m of batch)
          seqs.push((JSON.parse(new TextDecoder().decode(m.data)) as { seq: number }).seq);
      }
      expect(seqs).toEqual(Array.from({ length: count }, (_, i) => i));
    } finally {
      await nc.close();
    }
  });
});
