/**
 * Claim check on every transport's real broker: a 5 MB message (over Kafka's 1 MB, SQS's 256 KiB) round-trips
 * by reference through the S3 store on fauxqs and through the memory store; a missing payload dead-letters.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type Bus,
  CLAIM_CHECK_HEADER,
  ControlHeader,
  connect,
  defineMessage,
  MemoryPayloadStore,
  type PayloadStore,
} from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { s3PayloadStore } from '@omnibus/sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from './load-harness.js';

const run = promisify(execFile);
const harness = await loadHarness();
const LOCAL_S3 = 'http://127.0.0.1:4566';
// The S3 store's endpoint: OMNIBUS_S3_ENDPOINT, else the SDK's AWS_ENDPOINT_URL, else the local fauxqs.
const S3_ENDPOINT = process.env.OMNIBUS_S3_ENDPOINT ?? process.env.AWS_ENDPOINT_URL ?? LOCAL_S3;
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const Blob = defineMessage({
  type: 'blob.stored',
  schema: z.object({ text: z.string(), n: z.number().int() }),
});

const s3 = s3PayloadStore({
  bucket: 'omnibus-claim-check-tests',
  endpoint: S3_ENDPOINT,
  region: 'us-east-1',
  credentials: { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' },
  createBucket: true,
});

/** The S3 store must answer (fauxqs is started when it is the local default); never skipped. */
async function requireS3(): Promise<void> {
  const probe = `probe/${randomBytes(4).toString('hex')}`;
  const attempt = () =>
    s3.put(probe, new Uint8Array([1])).then(
      () => true,
      () => false,
    );
  if (!(await attempt()) && S3_ENDPOINT === LOCAL_S3) {
    await run('bash', ['scripts/brokers/fauxqs.sh', 'up'], { cwd: REPO_ROOT });
  }
  await eventually(attempt, { timeoutMs: 30_000, what: `the S3 endpoint ${S3_ENDPOINT}` });
  await s3.delete(probe);
}

// Where the broker itself would take these messages (RabbitMQ's 16 MiB default), a 1 MiB threshold makes
// the claim check do the work anyway; elsewhere the default threshold (from the broker's limit) is tested.
const BROKER_MAX = harness.create().capabilities.maxMessageBytes;
const THRESHOLD = BROKER_MAX > 4 * 1024 * 1024 ? 1024 * 1024 : undefined;

/** Counts what went through the store, so a test can tell the claim check really carried the payload. */
class Counting implements PayloadStore {
  puts = 0;
  gets = 0;
  constructor(private readonly inner: PayloadStore) {}
  get name() {
    return this.inner.name;
  }
  get maxObjectBytes() {
    return this.inner.maxObjectBytes;
  }
  put(key: string, body: Uint8Array) {
    this.puts++;
    return this.inner.put(key, body);
  }
  get(key: string) {
    this.gets++;
    return this.inner.get(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
}

const buses: Bus[] = [];
async function bus(service: string, store: PayloadStore): Promise<Bus> {
  const b = await connect({
    transport: harness.create(),
    service,
    publishTimeoutMs: 30_000,
    drainTimeoutMs: 15_000,
    claimCheck: { store, thresholdBytes: THRESHOLD },
  });
  buses.push(b);
  return b;
}
const topicName = (label: string) => `cc-${label}-${randomBytes(4).toString('hex')}`;

describe(`claim check: ${harness.name}`, () => {
  beforeAll(async () => {
    await harness.setup();
    await requireS3();
  }, 120_000);
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 5_000 }).catch(() => {})));
  });
  afterAll(async () => {
    await harness.teardown();
  });

  const stores: [string, () => PayloadStore][] = [
    ['the S3 store (fauxqs)', () => s3],
    ['the memory store', () => new MemoryPayloadStore()],
  ];
  for (const [label, makeStore] of stores) {
    it(`a 5 MB message round-trips by reference through ${label}`, async () => {
      const store = new Counting(makeStore());
      // 5 MB: over Kafka's 1 MB and SQS's 256 KiB, so there the broker itself would refuse it.
      const text = randomBytes(5 * 1024 * 1024 * 0.75).toString('base64');
      expect(text.length).toBeGreaterThan(THRESHOLD ?? BROKER_MAX);
      const topic = topicName('big');
      const consumer = await bus('billing', store);
      const seen: { text: string; n: number }[] = [];
      await consumer.subscribe({
        topic,
        group: 'billing',
        handlers: { [Blob.type]: Blob.handle((d) => void seen.push(d)) },
      });
      const producer = await bus('checkout', store);
      await producer.publish(topic, Blob, { text, n: 1 }, { key: 'k' });
      await producer.publish(topic, Blob, { text: 'small', n: 2 }, { key: 'k' });
      await eventually(() => seen.length >= 2, { timeoutMs: 60_000, what: 'both messages handled' });
      expect(seen.find((d) => d.n === 1)?.text === text).toBe(true);
      expect(seen.find((d) => d.n === 2)?.text).toBe('small');
      expect(store.puts).toBe(1);
      expect(store.gets).toBeGreaterThanOrEqual(1);
    }, 120_000);
  }

  it('a missing payload dead-letters the message with reason claim-check; the consumer keeps going', async () => {
    const topic = topicName('missing');
    // The consumer's store is empty: as if the producer's object had expired or been deleted.
    const consumer = await bus('billing', new MemoryPayloadStore());
    const handled: number[] = [];
    await consumer.subscribe({
      topic,
      group: 'billing',
      handlers: { [Blob.type]: Blob.handle((d) => void handled.push(d.n)) },
    });
    const producer = await bus('checkout', new MemoryPayloadStore());
    await producer.publish(topic, Blob, { text: 'm'.repeat(2 * 1024 * 1024), n: 1 }, { key: 'k' });
    await producer.publish(topic, Blob, { text: 'fine', n: 2 }, { key: 'k' });
    const [dead] = await harness.readDeadLetters(topic, 'billing', 1, 30_000);
    expect(dead?.headers[ControlHeader.reason]).toBe('claim-check');
    expect(dead?.headers[ControlHeader.error]).toMatch(/not found in store "memory"/);
    expect(dead?.headers[CLAIM_CHECK_HEADER]).toMatch(/^omnibus-claim-check\//);
    await eventually(() => handled.includes(2), { timeoutMs: 30_000, what: 'the next message handled' });
    expect(handled).toEqual([2]);
  }, 90_000);
});
