/** The transport end to end on the real broker: publish, consume, provisioning, figures, failures. */
import { ConfigError, DecodeError, type Delivery, ErrorCode, PublishError } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaTransport, transportFromUrl } from '../src/index.js';
import {
  BROKERS,
  Collector,
  connected,
  deleteTopics,
  envelope,
  rawKafka,
  requireBroker,
  unique,
  waitFor,
} from './helpers.js';

const PREFIX = unique('omnibus-kt');

describe('kafka transport', () => {
  let transport: KafkaTransport;

  beforeAll(async () => {
    await requireBroker();
    transport = await connected();
  });

  afterAll(async () => {
    await transport?.close();
    await deleteTopics(PREFIX);
  });

  it('publishes and delivers CloudEvents binary records to a group, keys choosing partitions', async () => {
    const topic = `${PREFIX}-basic`;
    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 16 },
      c.onDelivery,
    );
    const envs = Array.from({ length: 40 }, (_, i) => envelope({ key: `customer-${i % 7}` }));
    await Promise.all(envs.map((e) => transport.publish(topic, [transport.encode(e)], noDeadline())));
    await waitFor('40 deliveries', () => c.deliveries.length >= 40);
    const decoded = c.deliveries.map((d) => transport.decode(d.wire));
    expect(new Set(decoded.map((e) => e.id))).toEqual(new Set(envs.map((e) => e.id)));
    const first = decoded.find((e) => e.id === envs[0]!.id)!;
    expect(first).toMatchObject({
      type: envs[0]!.type,
      source: envs[0]!.source,
      key: 'customer-0',
      version: 1,
    });
    expect(Buffer.from(first.data).toString()).toBe(Buffer.from(envs[0]!.data).toString());
    expect(c.deliveries[0]!.wire.headers.ce_specversion).toBe('1.0');
    expect(c.deliveries[0]!.wire.headers['content-type']).toBe('application/json');
    expect(c.deliveries.every((d) => d.previousAttempts === 0 && d.group === 'g' && d.topic === topic)).toBe(
      true,
    );

    // Same key, same partition: read the records back raw and compare partitions per key.
    const admin = rawKafka().admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    expect(offsets.filter((o) => Number(o.high) > 0).length).toBeGreaterThan(1);
    await sub.close();
  });

  it('reports lag per partition and in total, and health from the cluster', async () => {
    const topic = `${PREFIX}-stats`;
    await transport.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await transport.publish(
      topic,
      Array.from({ length: 9 }, (_, i) => transport.encode(envelope({ key: `k${i}` }))),
      noDeadline(),
    );
    const before = await transport.stats(topic, 'g');
    expect(before).toMatchObject({
      depth: 9,
      lag: 9,
      inFlight: null,
      delayed: 0,
      deadLettered: 0,
      oldestAgeMs: null,
    });
    expect(before.extras.messages).toBe(9);
    expect(before.extras['lag.0']! + before.extras['lag.1']! + before.extras['lag.2']!).toBe(9);
    // Without a group only the topic's own figures are known.
    expect(await transport.stats(topic)).toEqual({
      depth: null,
      inFlight: null,
      delayed: null,
      deadLettered: null,
      lag: null,
      oldestAgeMs: null,
      extras: { partitions: 3, messages: 9 },
    });

    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    await waitFor('9 deliveries', () => c.deliveries.length >= 9);
    await sub.close();
    const after = await transport.stats(topic, 'g');
    expect(after.lag).toBe(0);
    expect(after.depth).toBe(0);

    const health = await transport.health();
    expect(health.ok).toBe(true);
    expect(health.details.brokers).toBeGreaterThan(0);
  });

  it('reads maxMessageBytes from the broker and rejects oversize records as TOO_LARGE', async () => {
    const topic = `${PREFIX}-large`;
    expect(transport.capabilities.maxMessageBytes).toBeGreaterThan(900_000);
    expect(transport.capabilities.maxMessageBytes).toBeLessThan(1_048_588);
    const atLimit = envelope({ data: Buffer.alloc(transport.capabilities.maxMessageBytes - 600, 97) });
    await transport.publish(topic, [transport.encode(atLimit)], noDeadline());
    const tooLarge = envelope({ data: Buffer.alloc(1_100_000, 97) });
    const err = await transport
      .publish(topic, [transport.encode(tooLarge)], noDeadline())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe(ErrorCode.TOO_LARGE);
  });

  it('decode throws DecodeError for garbage and survives garbage header bytes', async () => {
    const topic = `${PREFIX}-garbage`;
    await transport.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const producer = rawKafka().producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: [
        {
          value: Buffer.from([0xff, 0x00, 0xfe]),
          headers: { ce_type: Buffer.from([0xc3, 0x28]), junk: Buffer.from([0xff]) },
        },
        { value: null },
      ],
    });
    await producer.disconnect();
    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    await waitFor('2 deliveries', () => c.deliveries.length >= 2);
    for (const d of c.deliveries) expect(() => transport.decode(d.wire)).toThrow(DecodeError);
    expect(c.deliveries.some((d) => d.wire.body.byteLength === 0)).toBe(true);
    await sub.close();
  });

  it('batches concurrent publishes and resolves each when acknowledged', async () => {
    const topic = `${PREFIX}-batch`;
    const t = await connected({ lingerMs: 20 });
    try {
      const many = Array.from({ length: 500 }, (_, i) => envelope({ key: `k${i}` }));
      await Promise.all(many.map((e) => t.publish(topic, [t.encode(e)], noDeadline())));
      expect((await t.stats(topic)).extras.messages).toBe(500);
    } finally {
      await t.close();
    }
  });

  it('rejects a publish after close with CLOSED', async () => {
    const t = await connected();
    await t.close();
    const err = await t
      .publish(`${PREFIX}-closed`, [t.encode(envelope())], noDeadline())
      .catch((e: unknown) => e);
    expect((err as PublishError).code).toBe(ErrorCode.CLOSED);
  });

  it('validates options and URLs with ConfigError naming the field', () => {
    expect(() => new KafkaTransport({ brokers: ['nope'] })).toThrow(ConfigError);
    expect(() => new KafkaTransport({ brokers: BROKERS, lingerMs: -1 })).toThrow(/lingerMs/);
    expect(() => new KafkaTransport({ brokers: BROKERS, idempotent: true, acks: 'leader' })).toThrow(/acks/);
    expect(() => new KafkaTransport({ brokers: BROKERS, delayTiersMs: [1000, 1000] })).toThrow(
      /delayTiersMs/,
    );
    expect(() => new KafkaTransport({ brokers: BROKERS, delayTiersMs: [] })).toThrow(/delayTiersMs/);
    expect(() => transportFromUrl('kafka://127.0.0.1:9092?bogus=1')).toThrow(/bogus/);
    expect(() => transportFromUrl('kafka://127.0.0.1:9092?connectTimeoutMs=soon')).toThrow(
      /connectTimeoutMs/,
    );
    const t = transportFromUrl(
      'kafka+ssl://user:s3cret@h1:9092,h2:9093?sasl=scram-sha-512&partitions=6',
    ) as KafkaTransport;
    expect(t.options.brokers).toEqual(['h1:9092', 'h2:9093']);
    expect(t.options.ssl).toBe(true);
    expect(t.options.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'user', password: 's3cret' });
    expect(t.options.partitions).toBe(6);
    const all = transportFromUrl(
      'kafka://h1:9092?connectTimeoutMs=2500&delayTiersMs=5000,1000&retry.retries=2&topicConfig.retention.ms=60000&onNoSubscribers=accept&consumerRestartDelayMs=500',
    ) as KafkaTransport;
    expect(all.options).toMatchObject({
      connectTimeoutMs: 2500,
      delayTiersMs: [1000, 5000],
      retry: { retries: 2, initialRetryTimeMs: 300 },
      topicConfig: { 'retention.ms': '60000' },
      onNoSubscribers: 'accept',
      consumerRestartDelayMs: 500,
    });
    // Unsorted tiers are sorted (the kit's one validation), and the capabilities follow the option.
    expect(all.capabilities.delayTiersMs).toEqual([1000, 5000]);
    try {
      transportFromUrl('kafka://user:s3cret@h1:9092?partitions=zero');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).not.toContain('s3cret');
    }
  });

  it('rejects a misspelt option with a ConfigError naming it', () => {
    const err = (() => {
      try {
        new KafkaTransport({ brokers: BROKERS, lingerMS: 5 } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/lingerMS/);
    expect(() => new KafkaTransport({ brokers: BROKERS, retry: { retrys: 1 } } as never)).toThrow(/retrys/);
  });

  it("refuses onNoSubscribers 'reject', saying why Kafka cannot know", () => {
    const err = (() => {
      try {
        new KafkaTransport({ brokers: BROKERS, onNoSubscribers: 'reject' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('onNoSubscribers');
    expect((err as Error).message).toMatch(/join later/);
    expect(() => transportFromUrl('kafka://h1:9092?onNoSubscribers=reject')).toThrow(/onNoSubscribers/);
    expect(new KafkaTransport({ brokers: BROKERS }).options.onNoSubscribers).toBe('accept');
  });

  it('settles a delivery once: a second settle call rejects with ALREADY_SETTLED', async () => {
    const topic = `${PREFIX}-settle-once`;
    const c = new Collector();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    await transport.publish(topic, [transport.encode(envelope())], noDeadline());
    const d = await waitFor('a delivery', () => c.deliveries[0]);
    await d.ack();
    await expect(d.ack()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    await expect(d.retryLater(10, {})).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    await expect(d.release()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    // The one ack was committed, and the later calls put nothing back: the group has nothing left.
    await waitFor('the commit', async () => (await transport.stats(topic, 'g')).lag === 0);
    expect(c.deliveries).toHaveLength(1);
    await sub.close();
  });

  it('delivers every message to each group (fan-out)', async () => {
    const topic = `${PREFIX}-fanout`;
    const a = new Collector();
    const b = new Collector();
    a.listener = (d) => void d.ack();
    b.listener = (d) => void d.ack();
    const subA = await transport.subscribe(
      { topic, group: 'a', patterns: ['#'], maxInFlight: 8 },
      a.onDelivery,
    );
    const subB = await transport.subscribe(
      { topic, group: 'b', patterns: ['#'], maxInFlight: 8 },
      b.onDelivery,
    );
    await transport.publish(
      topic,
      Array.from({ length: 12 }, () => transport.encode(envelope())),
      noDeadline(),
    );
    await waitFor('12 each', () => a.deliveries.length >= 12 && b.deliveries.length >= 12);
    await Promise.all([subA.close(), subB.close()]);
  });

  it('never holds more than maxInFlight unsettled deliveries', async () => {
    const topic = `${PREFIX}-inflight`;
    await transport.publish(
      topic,
      Array.from({ length: 60 }, (_, i) => transport.encode(envelope({ key: `k${i}` }))),
      noDeadline(),
    );
    const held: Delivery[] = [];
    let maxHeld = 0;
    const c = new Collector();
    c.listener = (d) => {
      held.push(d);
      maxHeld = Math.max(maxHeld, held.length);
    };
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 5 },
      c.onDelivery,
    );
    let acked = 0;
    while (acked < 60) {
      const d = await waitFor('a delivery', () => held.shift());
      await d.ack();
      acked++;
    }
    expect(maxHeld).toBeLessThanOrEqual(5);
    expect(maxHeld).toBe(5);
    await sub.close();
  });
});
