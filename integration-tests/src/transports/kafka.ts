/**
 * The Kafka harness: a real broker (KAFKA_BROKERS, else scripts/brokers/kafka.sh on 127.0.0.1:9092);
 * dead letters and poison records go through kafkajs directly, never through the transport.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { WireMessage } from '@omnibus/core';
import { type KafkaTransportOptions, kafka } from '@omnibus/kafka';
import { Kafka, type KafkaConfig, logLevel } from 'kafkajs';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../../scripts/brokers/kafka.sh', import.meta.url));
const FROM_ENV = process.env.KAFKA_BROKERS;
const BROKERS = (FROM_ENV ?? '127.0.0.1:9092').split(',').map((b) => b.trim());
// Conformance topics are named conf-<label>-<hex>; those created during this run are deleted afterwards.
const TOPIC_PREFIX = 'conf-';

let topicsBefore = new Set<string>();

/**
 * What a variant harness (TLS, SASL) changes before the first use: the options of the raw client and of
 * every transport made here, and the script that starts and restarts its broker.
 */
export const variant: {
  raw: Partial<KafkaConfig>;
  transport: Partial<KafkaTransportOptions>;
  script: string | undefined;
} = { raw: {}, transport: {}, script: undefined };

function client(): Kafka {
  return new Kafka({
    clientId: 'omnibus-conformance-raw',
    brokers: BROKERS,
    logLevel: logLevel.NOTHING,
    ...variant.raw,
  });
}

async function reachable(timeoutMs: number): Promise<boolean> {
  const [host, port] = BROKERS[0]!.split(':') as [string, string];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port: Number(port) }, () => {
        socket.end();
        resolve(true);
      });
      socket.setTimeout(1000, () => socket.destroy());
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/** Waits until the broker answers a real request (metadata), not just a TCP connect. */
async function answering(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const admin = client().admin();
    try {
      await admin.connect();
      await admin.describeCluster();
      return;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
  throw new Error(`Kafka at ${BROKERS.join(',')} does not answer: ${String(last)}`);
}

async function listTopics(): Promise<string[]> {
  const admin = client().admin();
  await admin.connect();
  try {
    return await admin.listTopics();
  } finally {
    await admin.disconnect();
  }
}

export const harness: TransportHarness = {
  name: 'kafka',

  async setup() {
    if (variant.script) {
      await run('bash', [variant.script, 'up'], { timeout: 300_000 });
    } else if (!(await reachable(3_000))) {
      if (FROM_ENV) throw new Error(`no Kafka broker at KAFKA_BROKERS=${FROM_ENV}`);
      // The script is idempotent and waits until the broker answers.
      await run('bash', [SCRIPT, 'up'], { timeout: 300_000 });
    }
    await answering(60_000);
    topicsBefore = new Set(await listTopics());
  },

  async teardown() {
    const created = (await listTopics().catch(() => [])).filter(
      (t) => t.startsWith(TOPIC_PREFIX) && !topicsBefore.has(t),
    );
    if (created.length === 0) return;
    const admin = client().admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: created, timeout: 30_000 });
    } catch {
      // Cleanup only: a topic left behind does not affect later runs (names are random).
    } finally {
      await admin.disconnect();
    }
  },

  create: () =>
    kafka({
      brokers: BROKERS,
      // Quicker group reactions than the production defaults, for a suite full of joins and leaves.
      heartbeatIntervalMs: 1_000,
      sessionTimeoutMs: 10_000,
      ...variant.transport,
    }),

  createUnreachable: () =>
    kafka({
      ...variant.transport,
      brokers: ['127.0.0.1:1'],
      // The transport's own connect deadline, not tuned client retries, is what makes this fail fast.
      connectTimeoutMs: 2_000,
    }),

  async readDeadLetters(topic, group, count, timeoutMs) {
    const consumer = client().consumer({
      groupId: `conformance-dlq-reader-${randomUUID()}`,
      maxWaitTimeInMs: 250,
    });
    const found: WireMessage[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [`${topic}.${group}.dlq`], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(message.headers ?? {})) {
            if (value === undefined) continue;
            const last = Array.isArray(value) ? value[value.length - 1] : value;
            headers[name] = Buffer.isBuffer(last) ? last.toString('utf8') : String(last);
          }
          found.push({ body: message.value ?? Buffer.alloc(0), headers, key: message.key?.toString('utf8') });
        },
      });
      const deadline = Date.now() + timeoutMs;
      while (found.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return found.slice();
    } finally {
      await consumer.disconnect().catch(() => {});
    }
  },

  async publishRaw(topic, body, options = {}) {
    const kafkaClient = client();
    const admin = kafkaClient.admin();
    await admin.connect();
    try {
      // The broker does not create topics on its own; a poison test may publish before anyone subscribed.
      await admin
        // The broker's default replication factor: 1 on one node, 3 on the cluster (min ISR 2 there).
        .createTopics({ topics: [{ topic, numPartitions: 3 }] })
        .catch(() => false);
    } finally {
      await admin.disconnect();
    }
    const headers: Record<string, string> = { ...options.headers };
    if (options.type) headers.ce_type = options.type;
    const producer = kafkaClient.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: [{ key: options.key ?? null, value: body, headers }],
      });
    } finally {
      await producer.disconnect();
    }
  },

  async restart() {
    // In the containers mode the broker is a container: restart it (its log directory lives in the
    // container's own filesystem, which a restart keeps), never the process-based Kafka.
    const container = process.env.OMNIBUS_KAFKA_CONTAINER;
    if (container) await run('docker', ['restart', '-t', '30', container], { timeout: 300_000 });
    else await run('bash', [variant.script ?? SCRIPT, 'restart'], { timeout: 300_000 });
    if (!(await reachable(60_000))) throw new Error('Kafka did not come back after the restart');
    // A container's port answers TCP (docker's proxy) long before the JVM inside does: wait for answers.
    await answering(container ? 180_000 : 60_000);
  },
};

/** The contract suite's Kafka options: quick group reactions, as in `harness.create()`. */
const CONTRACT_BASE = { brokers: BROKERS, heartbeatIntervalMs: 1_000, sessionTimeoutMs: 10_000 };

/**
 * Hooks for the transport contract suite (src/contract): the harness's transport with options added, one
 * at a closed port with the client's default retries, and one whose long linger keeps publishes queued
 * in the accumulator.
 */
export const contractHooks: ContractHooks = {
  createWith: (options) => kafka({ ...CONTRACT_BASE, ...options }),
  createWithDelayTiers: (tiersMs) => kafka({ ...CONTRACT_BASE, delayTiersMs: [...tiersMs] }),
  createUnreachable: (options) => kafka({ brokers: ['127.0.0.1:1'], ...options }),
  createHoldingPublishes: () => kafka({ ...CONTRACT_BASE, lingerMs: 3_000 }),
};
