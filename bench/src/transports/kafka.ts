/**
 * Kafka: kafkajs `sendBatch` (idempotent producer, acks all) and an `eachBatch` consumer against the
 * Omnibus adapter, on 3-partition topics. Throughput runs batch on both sides (raw: batches of up to
 * WINDOW records or 512 KiB, the next one built while the previous is in flight; Omnibus: WINDOW
 * concurrent publishes gathered by the adapter). Latency runs send one message per request: raw
 * `send()` per message, Omnibus with its default (adaptive, no linger) batching.
 */
import { DEFAULT_DELAY_TIERS_MS } from '@omnibus/core/kit';
import { deadLetterTopic, groupId, kafka, retryGroupId, retryTopic } from '@omnibus/kafka';

import kafkajs, { type Admin, type Consumer, type Message, type Producer } from 'kafkajs';
import { versionFromListener } from '../lib/machine.js';
import { GROUP, omnibusSide, wireBytes } from '../lib/omnibus-side.js';
import { decodeData, encodeData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side, SideKind, SideMode, TransportBench } from '../lib/side.js';

const { Kafka, logLevel, Partitioners } = kafkajs;

const BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092')
  .split(',')
  .map((b) => b.trim())
  .filter(Boolean);
/** Records per raw sendBatch (also capped at 512 KiB, like the adapter's batchMaxBytes). */
const WINDOW = 1000;
/**
 * Unsettled Omnibus publishes: the raw loop holds one batch in flight and builds the next meanwhile
 * (up to 2 × WINDOW messages accepted and not yet confirmed), so Omnibus gets the same.
 */
const OMNIBUS_WINDOW = 2 * WINDOW;
const BATCH_MAX_BYTES = 512 * 1024;
const PARTITIONS = 3;
const CONCURRENCY = 64;
const PREFETCH = 128;
// The adapter's consumer defaults, given to the raw consumer too.
const CONSUMER = {
  sessionTimeout: 30_000,
  rebalanceTimeout: 60_000,
  heartbeatInterval: 3_000,
  maxWaitTimeInMs: 1_000,
  maxBytesPerPartition: 1_048_576,
  allowAutoTopicCreation: false,
};

let sharedAdmin: Promise<Admin> | undefined;

function client(id: string) {
  return new Kafka({ clientId: id, brokers: BROKERS, logLevel: logLevel.NOTHING });
}

async function admin(): Promise<Admin> {
  sharedAdmin ??= (async () => {
    const a = client('omnibus-bench-admin').admin();
    await a.connect();
    return a;
  })();
  return sharedAdmin;
}

/**
 * Creates a topic and waits until every partition has a leader. kafkajs's own `waitForLeaders` gives up
 * when a busy broker briefly answers UNKNOWN_TOPIC_OR_PARTITION for a topic it has just created.
 */
async function createTopic(topic: string): Promise<void> {
  const a = await admin();
  await a.createTopics({
    waitForLeaders: false,
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const { topics } = await a.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics[0]?.partitions ?? [];
      if (partitions.length === PARTITIONS && partitions.every((p) => p.leader >= 0)) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`kafka topic ${topic} has no leaders after 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function deleteAll(topics: string[], groups: string[]): Promise<void> {
  const a = await admin();
  // Groups go first (a group still holding offsets of a deleted topic is harmless, but untidy).
  await a.deleteGroups(groups).catch(() => {});
  const existing = new Set(await a.listTopics());
  const doomed = topics.filter((t) => existing.has(t));
  if (doomed.length > 0) await a.deleteTopics({ topics: doomed, timeout: 30_000 }).catch(() => {});
}

function omnibusTopics(topic: string): string[] {
  return [
    topic,
    deadLetterTopic(topic, GROUP),
    ...DEFAULT_DELAY_TIERS_MS.map((t) => retryTopic(topic, GROUP, t)),
  ];
}

async function rawSide(mode: SideMode): Promise<Side> {
  const kafkaClient = client(`omnibus-bench-raw-${mode}`);
  const producer: Producer = kafkaClient.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  const headers = { type: MESSAGE_TYPE, 'content-type': 'application/json' };
  return {
    kind: 'raw',
    prepare: createTopic,
    publishMany: async (topic, count, size) => {
      let inFlight: Promise<unknown> | undefined;
      let i = 0;
      while (i < count) {
        const messages: Message[] = [];
        let bytes = 0;
        while (i < count && messages.length < WINDOW && bytes < BATCH_MAX_BYTES) {
          const value = encodeData(makeData(i++, size));
          messages.push({ value, headers });
          bytes += value.length + 40;
        }
        // Built while the previous request was in flight; one request at a time (idempotent producer).
        if (inFlight) await inFlight;
        inFlight = producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] });
      }
      await inFlight;
    },
    publishOne: async (topic, data) => {
      await producer.send({ topic, acks: -1, messages: [{ value: encodeData(data), headers }] });
    },
    // Offsets are committed by this loop every second, as the adapter does: kafkajs's own autoCommit
    // runs inside the fetch loop and was measured to add about 12 ms to every message's latency.
    subscribe: async (topic, onMessage) => {
      const consumer: Consumer = kafkaClient.consumer({ groupId: groupId(topic, GROUP), ...CONSUMER });
      const next = new Map<number, string>();
      let committed = new Map<number, string>();
      const commit = async () => {
        const offsets = [...next].filter(([p, o]) => committed.get(p) !== o);
        if (offsets.length === 0) return;
        const snapshot = new Map(next);
        await consumer
          .commitOffsets(offsets.map(([partition, offset]) => ({ topic, partition, offset })))
          .then(() => {
            committed = snapshot;
          })
          .catch(() => {});
      };
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: 3,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
          for (const m of batch.messages) {
            if (!isRunning() || isStale()) break;
            if (m.value) onMessage(decodeData(m.value));
            resolveOffset(m.offset);
            next.set(batch.partition, String(Number(m.offset) + 1));
          }
          await heartbeat();
        },
      });
      const timer = setInterval(() => void commit(), 1_000);
      return {
        close: async () => {
          clearInterval(timer);
          await commit();
          await consumer.disconnect();
        },
      };
    },
    cleanup: (topic) => deleteAll([topic], [groupId(topic, GROUP)]),
    close: () => producer.disconnect(),
  };
}

export const kafkaBench: TransportBench = {
  name: 'kafka',
  settings: {
    raw: `kafkajs 2.2.4 idempotent producer (acks all, 1 request in flight): sendBatch of up to ${WINDOW} records / 512 KiB, next batch built while one is in flight; eachBatch consumer (3 partitions concurrently), resolveOffset per message, offsets committed every 1 s by the loop (kafkajs autoCommit off, as in the adapter); latency runs: send() per message`,
    omnibus: `kafka({ brokers }) (idempotent, acks all, adaptive batching (no linger: sent at once when no request is in flight), batchMaxBytes 512 KiB, batchMaxMessages 1000, 1 request in flight); bus.publish() with ${OMNIBUS_WINDOW} unsettled (publishBatch: batches of ${WINDOW}, 2 unsettled); subscribe concurrency ${CONCURRENCY}, prefetch ${PREFETCH}, commit every 1 s`,
    durability: `${PARTITIONS}-partition topic, replication 1, acks all (idempotent producer), offsets committed only for handled messages`,
  },
  sizing: {
    count: (size) => (size > 1024 ? 3_000 : 20_000),
    // A raw producer sends each message as its own request, one in flight: at 16 KiB on this machine
    // it falls behind at 500/s, which would measure queueing rather than latency.
    latencyRate: 200,
    latencyMs: 3_000,
    naiveMs: 3_000,
  },
  async side(kind: SideKind, mode: SideMode): Promise<Side> {
    if (kind === 'raw') return rawSide(mode);
    return omnibusSide({
      transport: kafka({
        brokers: BROKERS,
        clientId: `omnibus-bench-omnibus-${mode}`,
        partitions: PARTITIONS,
        // Every run keeps the adapter's default batching (adaptive: no linger when nothing is in flight).
      }),
      window: OMNIBUS_WINDOW,
      concurrency: CONCURRENCY,
      prefetch: PREFETCH,
      batch: { size: WINDOW, outstanding: 2 },
      cleanup: (topic) =>
        deleteAll(omnibusTopics(topic), [groupId(topic, GROUP), retryGroupId(topic, GROUP)]),
    });
  },
  wireBytes: (size) =>
    wireBytes(kafka({ brokers: BROKERS }), size, { type: MESSAGE_TYPE, 'content-type': 'application/json' }),
  async brokerVersion() {
    const port = Number(BROKERS[0]?.split(':')[1] ?? 9092);
    const v = versionFromListener(port, /kafka(?:_[\d.]+)?-(\d+\.\d+\.\d+)/);
    if (v) return `Apache Kafka ${v} (KRaft, single node)`;
    const env = process.env.OMNIBUS_KAFKA_VERSION;
    return env ? `Apache Kafka ${env}` : 'Apache Kafka (version not readable)';
  },
};

export async function closeKafkaAdmin(): Promise<void> {
  const a = sharedAdmin;
  sharedAdmin = undefined;
  if (a) await (await a).disconnect().catch(() => {});
}
