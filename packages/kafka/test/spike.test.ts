/**
 * The client against the broker, without the transport: kafkajs 2.2.4 must create topics through the
 * admin API, produce idempotently with acks=all, consume in a group and seek on the Kafka in use.
 *
 * Found here on Kafka 4.1.2 (KRaft): `createTopics({ waitForLeaders: true })` for several topics at once
 * usually fails with UNKNOWN_TOPIC_OR_PARTITION (9 of 10 tries with 8 topics), because kafkajs only
 * retries LEADER_NOT_AVAILABLE while the broker's metadata cache still lags the controller. The driver
 * therefore creates without waiting and polls the metadata itself; the second test checks that.
 */
import type { Admin, Consumer, Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaDriver } from '../src/driver.js';
import { BROKERS, rawKafka, requireBroker, unique, waitFor } from './helpers.js';

describe('kafkajs 2.2.4 against the broker', () => {
  const topic = unique('omnibus-spike');
  let admin: Admin;
  let producer: Producer;
  const consumers: Consumer[] = [];

  beforeAll(async () => {
    await requireBroker();
    admin = rawKafka().admin();
    await admin.connect();
  });

  afterAll(async () => {
    for (const c of consumers) await c.disconnect().catch(() => {});
    await producer?.disconnect().catch(() => {});
    await admin?.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin?.disconnect();
  });

  it('creates a topic through the admin API and reports an existing one as not created', async () => {
    const spec = { topic, numPartitions: 3, replicationFactor: 1 };
    expect(await admin.createTopics({ waitForLeaders: false, topics: [spec] })).toBe(true);
    expect(await admin.createTopics({ waitForLeaders: false, topics: [spec] })).toBe(false);
    const meta = await waitFor('leaders', async () => {
      const m = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
      return m?.topics[0]?.partitions.every((p) => p.leader >= 0) ? m : undefined;
    });
    expect(meta.topics[0]!.partitions).toHaveLength(3);
  });

  it('the driver creates many topics at once and returns only when every partition has a leader', async () => {
    const silent = { debug() {}, info() {}, warn() {}, error() {} };
    const driver = new KafkaDriver({
      brokers: BROKERS,
      clientId: 'spike',
      connectTimeoutMs: 10_000,
      connectionTimeoutMs: 3000,
      requestTimeoutMs: 30_000,
      retry: { retries: 5, initialRetryTimeMs: 100, maxRetryTimeMs: 1000 },
      logger: silent,
    });
    const names = Array.from({ length: 8 }, (_, i) => `${topic}-many-${i}`);
    try {
      await driver.createTopics(names.map((t) => ({ topic: t, partitions: 3, replicationFactor: 1 })));
      // Already there: no error the second time.
      await driver.createTopics(names.map((t) => ({ topic: t, partitions: 3, replicationFactor: 1 })));
      const meta = await admin.fetchTopicMetadata({ topics: names });
      expect(meta.topics.flatMap((t) => t.partitions)).toHaveLength(24);
      expect(meta.topics.flatMap((t) => t.partitions).every((p) => p.leader >= 0)).toBe(true);
    } finally {
      await driver.deleteTopics(names).catch(() => {});
      await driver.close();
    }
  });

  it('reads message.max.bytes through describeConfigs', async () => {
    const cluster = await admin.describeCluster();
    const res = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 4, name: String(cluster.brokers[0]!.nodeId), configNames: ['message.max.bytes'] }],
    });
    expect(Number(res.resources[0]!.configEntries[0]!.configValue)).toBeGreaterThan(0);
  });

  it('produces idempotently with acks=all, consumes in a group and seeks back', async () => {
    // kafkajs requires acks=-1 for idempotence and serialises requests per broker itself;
    // maxInFlightRequests=1 matches what the transport uses.
    producer = rawKafka().producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = await producer.sendBatch({
      acks: -1,
      topicMessages: [
        {
          topic,
          messages: Array.from({ length: 30 }, (_, i) => ({
            key: `k${i % 5}`,
            value: `v${i}`,
            headers: { n: String(i) },
          })),
        },
      ],
    });
    expect(sent.every((r) => r.errorCode === 0)).toBe(true);

    const consumer = rawKafka().consumer({ groupId: `${topic}.spike`, maxWaitTimeInMs: 500 });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const seen: string[] = [];
    let sought = false;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) {
          seen.push(`${batch.partition}:${m.offset}:${m.headers?.n?.toString()}`);
          resolveOffset(m.offset);
        }
        await consumer.commitOffsets([
          { topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) },
        ]);
      },
    });
    await waitFor('30 messages', () => seen.length >= 30);
    expect(new Set(seen.map((s) => s.split(':')[2])).size).toBe(30);

    const committed = await waitFor('commits of all 30', async () => {
      const offsets = await admin.fetchOffsets({ groupId: `${topic}.spike`, topics: [topic] });
      const total = offsets[0]!.partitions.reduce((n, p) => n + Number(p.offset), 0);
      return total === 30 ? offsets : undefined;
    });
    expect(committed[0]!.partitions).toHaveLength(3);

    // Seek partition 0 back to its start: its messages come again.
    const before = seen.length;
    const p0 = seen.filter((s) => s.startsWith('0:')).length;
    expect(p0).toBeGreaterThan(0);
    consumer.seek({ topic, partition: 0, offset: '0' });
    sought = true;
    await waitFor('the re-read of partition 0', () => seen.length >= before + p0);
    expect(sought).toBe(true);
    expect(seen.slice(before).every((s) => s.startsWith('0:'))).toBe(true);

    const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, Date.now() - 60_000);
    expect(byTime.map((p) => p.offset).sort()).toEqual(['0', '0', '0']);
  });
});
