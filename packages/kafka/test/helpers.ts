/** Shared helpers of the Kafka adapter tests: the real broker's address, unique names, waiting with deadlines. */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Delivery, RawEnvelope, TransportSubscription } from '@omnibus/core';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaTransport, type KafkaTransportOptions } from '../src/index.js';

export const BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim());

/** Throws (the test fails, never skips) when nothing answers on the broker port within the deadline. */
export async function requireBroker(timeoutMs = 20_000): Promise<void> {
  const [host, port] = BROKERS[0]!.split(':') as [string, string];
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host, port: Number(port) }, () => {
          socket.end();
          resolve();
        });
        socket.setTimeout(1000, () => socket.destroy(new Error('connect timeout')));
        socket.on('error', reject);
      });
      return;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`no Kafka broker at ${BROKERS.join(',')}: ${String(lastError)}`);
}

export function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A raw kafkajs client, to look at the broker without going through the transport. */
export function rawKafka(): Kafka {
  return new Kafka({ clientId: 'omnibus-kafka-tests', brokers: BROKERS, logLevel: logLevel.NOTHING });
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

export async function connected(options: KafkaTransportOptions = {}): Promise<KafkaTransport> {
  const t = new KafkaTransport({ brokers: BROKERS, ...options });
  await t.connect({ logger: silent, service: 'kafka-tests' });
  return t;
}

export function envelope(overrides: Partial<RawEnvelope> = {}): RawEnvelope {
  const id = overrides.id ?? randomUUID();
  return {
    id,
    type: 'test.happened',
    source: 'kafka-tests',
    time: Date.now(),
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from(JSON.stringify({ id })),
    ...overrides,
  };
}

/** Collects deliveries; the test decides how to settle each. */
export class Collector {
  readonly deliveries: Delivery[] = [];
  onDelivery = (d: Delivery) => {
    this.deliveries.push(d);
    this.listener?.(d);
  };
  listener: ((d: Delivery) => void) | undefined;
  sub: TransportSubscription | undefined;
}

/** Deletes test topics (everything starting with the prefix); cheap on KRaft, keeps the shared broker tidy. */
export async function deleteTopics(prefix: string): Promise<void> {
  const admin = rawKafka().admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
  } finally {
    await admin.disconnect();
  }
}
