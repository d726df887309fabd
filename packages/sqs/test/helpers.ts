/** Shared setup for the SQS adapter tests: the real ElasticMQ, a raw SDK client, envelopes and deliveries. */
import { randomBytes } from 'node:crypto';
import { DeleteQueueCommand, ListQueuesCommand, SQSClient } from '@aws-sdk/client-sqs';
import {
  type Delivery,
  type RawEnvelope,
  type SubscribeSpec,
  silentLogger,
  uuidv7,
  type WireMessage,
} from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';
import { type SqsOptions, type SqsTransport, sqs } from '../src/index.js';

export const ENDPOINT = process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324';
export const REGION = 'us-east-1';
export const CREDENTIALS = { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' };

export const raw = new SQSClient({
  endpoint: ENDPOINT,
  region: REGION,
  credentials: CREDENTIALS,
  maxAttempts: 2,
});

/** Fails (never skips) when the broker does not answer within 30 s (it may be restarting). */
export async function requireBroker(): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await raw.send(new ListQueuesCommand({ MaxResults: 1 }));
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`ElasticMQ is not reachable at ${ENDPOINT}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export function uniqueTopic(label: string): string {
  return `sqs-test-${label}-${randomBytes(4).toString('hex')}`;
}

const open: SqsTransport[] = [];
const created = new Set<string>();

/** Remembers every queue a transport creates, so closeAll() can delete them (ElasticMQ persists them). */
export function recordCreatedQueues(t: SqsTransport, into: Set<string> = created): void {
  t.sdkClient.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const url = (result.output as { QueueUrl?: string }).QueueUrl;
      if (context.commandName === 'CreateQueueCommand' && url) into.add(url);
      return result;
    },
    { step: 'initialize', name: 'omnibusTestQueueRecorder' },
  );
}

export async function transport(options: SqsOptions = {}): Promise<SqsTransport> {
  const t = sqs({
    endpoint: ENDPOINT,
    region: REGION,
    credentials: CREDENTIALS,
    waitTimeSeconds: 2,
    ...options,
  });
  recordCreatedQueues(t);
  await t.connect({ logger: silentLogger, service: 'sqs-test' });
  open.push(t);
  return t;
}

export async function closeAll(): Promise<void> {
  await Promise.allSettled(open.splice(0).map((t) => t.close()));
  const urls = [...created];
  created.clear();
  await Promise.allSettled(urls.map((QueueUrl) => raw.send(new DeleteQueueCommand({ QueueUrl }))));
}

/** A publish whose caller waits as long as it takes (the deadline tests make their own). */
export function publish(t: SqsTransport, topic: string, wires: readonly WireMessage[]): Promise<void> {
  return t.publish(topic, wires, noDeadline());
}

export function envelope(data: unknown, partial: Partial<RawEnvelope> = {}): RawEnvelope {
  const id = uuidv7();
  return {
    id,
    type: 'test.happened',
    source: 'sqs-test',
    time: Date.now(),
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from(JSON.stringify(data)),
    ...partial,
  };
}

export function spec(topic: string, group: string, partial: Partial<SubscribeSpec> = {}): SubscribeSpec {
  return { topic, group, patterns: ['#'], maxInFlight: 20, ...partial };
}

/** Deliveries as they arrive, with the data decoded for convenience. */
export class Inbox {
  readonly deliveries: Delivery[] = [];
  readonly arrivedAt: number[] = [];
  constructor(private readonly t: SqsTransport) {}
  readonly push = (d: Delivery): void => {
    this.deliveries.push(d);
    this.arrivedAt.push(Date.now());
  };
  data(i: number): unknown {
    return JSON.parse(Buffer.from(this.t.decode(this.deliveries[i]!.wire).data).toString('utf8'));
  }
  async waitFor(count: number, timeoutMs = 20_000): Promise<void> {
    await eventually(() => this.deliveries.length >= count, { timeoutMs, what: `${count} deliveries` });
  }
}
