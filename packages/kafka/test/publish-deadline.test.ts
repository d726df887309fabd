/**
 * The one publish deadline on the real broker: a publish still waiting in the accumulator when its caller
 * gives up is withdrawn (TIMEOUT) and never written, even when the transport later flushes and closes; a
 * publish already in a produce request has an unknown outcome, and is indeed written afterwards.
 */
import { connect, ErrorCode, PublishError } from '@omnibus/core';
import { noDeadline, PublishDeadline } from '@omnibus/core/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaTransport } from '../src/index.js';
import {
  BROKERS,
  connected,
  deleteTopics,
  envelope,
  rawKafka,
  requireBroker,
  unique,
  waitFor,
} from './helpers.js';

const PREFIX = unique('omnibus-kdl');

/** Records in the topic (all partitions), read with kafkajs directly. */
async function recordCount(topic: string): Promise<number> {
  const admin = rawKafka().admin();
  await admin.connect();
  try {
    let n = 0;
    for (const p of await admin.fetchTopicOffsets(topic)) n += Number(p.high) - Number(p.low);
    return n;
  } finally {
    await admin.disconnect();
  }
}

/** The `ce_id` of every record in the topic, consumed with kafkajs from the beginning. */
async function readIds(topic: string, expected: number, timeoutMs = 20_000): Promise<string[]> {
  const consumer = rawKafka().consumer({ groupId: unique('raw-reader'), maxWaitTimeInMs: 200 });
  const ids: string[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        ids.push(message.headers?.ce_id?.toString() ?? '?');
      },
    });
    await waitFor(`${expected} records in ${topic}`, () => ids.length >= expected, timeoutMs);
    return ids.slice();
  } finally {
    await consumer.disconnect();
  }
}

describe('kafka publish deadline', () => {
  beforeAll(async () => {
    await requireBroker();
  });
  afterAll(async () => {
    await deleteTopics(PREFIX);
  });

  it('withdraws a publish still lingering at its deadline: TIMEOUT, and it is never written', async () => {
    const topic = `${PREFIX}-withdrawn`;
    // A long linger holds small publishes in the accumulator; a record bigger than batchMaxBytes is sent at once.
    const transport = new KafkaTransport({ brokers: BROKERS, lingerMs: 60_000, batchMaxBytes: 4_096 });
    const bus = await connect({ transport, service: 'kafka-deadline-tests', publishTimeoutMs: 2_000 });
    let closed = false;
    try {
      await transport.provision(topic, []);
      const started = Date.now();
      const err = await bus
        .publish(topic, { type: 'test.lingered', data: { n: 1 } })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect((err as PublishError).code).toBe(ErrorCode.TIMEOUT);
      expect((err as PublishError).message).toMatch(/never sent/);
      expect(Date.now() - started).toBeLessThan(6_000);

      // A big publish now flushes the queue: had the first one stayed queued, it would go out with it.
      const { id } = await bus.publish(topic, { type: 'test.big', data: { pad: 'x'.repeat(8_000) } });
      expect(await readIds(topic, 1)).toEqual([id]);
      // Closing sends whatever is still queued; the withdrawn publish is not among it.
      await bus.close();
      closed = true;
      expect(await recordCount(topic)).toBe(1);
      expect(await readIds(topic, 1)).toEqual([id]);
    } finally {
      if (!closed) await bus.close();
    }
  });

  it("answers 'unknown' for a publish already in a produce request, which is then written", async () => {
    const topic = `${PREFIX}-unknown`;
    const transport = await connected({ lingerMs: 0 });
    try {
      // The first publish to a topic looks it up first; after that a publish reaches the accumulator at once.
      await transport.publish(topic, [transport.encode(envelope())], noDeadline());
      const env = envelope();
      const call = new PublishDeadline(Date.now() + 60_000);
      const publishing = transport.publish(topic, [transport.encode(env)], call).catch((e: unknown) => e);
      // With lingerMs 0 the request is made in a microtask; the broker's answer needs at least a socket read.
      await Promise.resolve();
      await Promise.resolve();
      expect(call.abandon()).toBe('unknown');
      await publishing;
      // The caller was told the outcome is unknown: here the record did reach the broker.
      const ids = await readIds(topic, 2);
      expect(ids).toContain(env.id);
    } finally {
      await transport.close();
    }
  });

  it('withdraws a first publish to a new topic while the topic is still being looked up', async () => {
    const topic = `${PREFIX}-new`;
    const transport = await connected();
    try {
      const call = new PublishDeadline(Date.now() + 60_000);
      const publishing = transport
        .publish(topic, [transport.encode(envelope())], call)
        .catch((e: unknown) => e);
      expect(call.abandon()).toBe('withdrawn');
      expect(await publishing).toBeInstanceOf(PublishError);
      // The topic exists now (the lookup created it), but nothing was written to it.
      await transport.publish(topic, [transport.encode(envelope())], noDeadline());
      await transport.close();
      expect(await recordCount(topic)).toBe(1);
    } finally {
      await transport.close();
    }
  });
});
