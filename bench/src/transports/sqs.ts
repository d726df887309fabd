/**
 * SQS (ElasticMQ here): the AWS SDK's SendMessageBatch (10 per call, 8 calls in flight) and long-poll
 * ReceiveMessage + DeleteMessageBatch against the Omnibus adapter, on standard queues, with the same
 * HTTP agent settings on both sides.
 */
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { queueNames, sqs } from '@omnibus/sqs';
import { versionFromListener } from '../lib/machine.js';
import { omnibusSide, wireBytes } from '../lib/omnibus-side.js';
import { type BenchData, decodeData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side, SideKind, TransportBench } from '../lib/side.js';

const ENDPOINT = process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'omnibus-bench', secretAccessKey: 'omnibus-bench' };
/** The adapter's defaults, given to the raw client too. */
const BATCHES_IN_FLIGHT = 8;
export const POLLERS = 2;
export const WAIT_SECONDS = 20;
export const VISIBILITY_SECONDS = 30;
/** Unsettled publishes at once: enough to keep 8 batches of 10 in flight. */
export const WINDOW = 200;
const CONCURRENCY = 32;
const PREFETCH = 64;

/** The client settings every side of the SQS benchmark uses (raw, Omnibus, the peer). */
export function sdkClient(): SQSClient {
  return new SQSClient({
    endpoint: ENDPOINT,
    region: REGION,
    credentials: CREDENTIALS,
    maxAttempts: 3,
    requestHandler: {
      connectionTimeout: 5_000,
      requestTimeout: (WAIT_SECONDS + 10) * 1000,
      httpAgent: { keepAlive: true, maxSockets: 512 },
      httpsAgent: { keepAlive: true, maxSockets: 512 },
    },
  });
}

let adminClient: SQSClient | undefined;
function admin(): SQSClient {
  adminClient ??= sdkClient();
  return adminClient;
}

async function deleteQueues(names: string[]): Promise<void> {
  for (const QueueName of names) {
    try {
      const { QueueUrl } = await admin().send(new GetQueueUrlCommand({ QueueName }));
      await admin().send(new DeleteQueueCommand({ QueueUrl }));
    } catch {
      // already gone
    }
  }
}

function body(data: BenchData): string {
  return JSON.stringify(data);
}

const ATTRIBUTES = { type: { DataType: 'String', StringValue: MESSAGE_TYPE } };

async function rawSide(): Promise<Side> {
  const client = sdkClient();
  const urls = new Map<string, string>();
  const url = (topic: string) => {
    const u = urls.get(topic);
    if (!u) throw new Error(`queue for ${topic} not prepared`);
    return u;
  };
  return {
    kind: 'raw',
    prepare: async (topic) => {
      const res = await client.send(
        new CreateQueueCommand({
          QueueName: topic,
          Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS) },
        }),
      );
      urls.set(topic, res.QueueUrl!);
    },
    // BATCHES_IN_FLIGHT workers, each sending the next 10 messages until all are sent.
    publishMany: async (topic, count, size) => {
      const QueueUrl = url(topic);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const Entries: SendMessageBatchRequestEntry[] = [];
          while (next < count && Entries.length < 10) {
            const data = makeData(next++, size);
            Entries.push({
              Id: String(Entries.length),
              MessageBody: body(data),
              MessageAttributes: ATTRIBUTES,
            });
          }
          const res = await client.send(new SendMessageBatchCommand({ QueueUrl, Entries }));
          if (res.Failed && res.Failed.length > 0)
            throw new Error(`SendMessageBatch: ${res.Failed[0]!.Code}`);
        }
      };
      await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, worker));
    },
    publishOne: async (topic, data) => {
      await client.send(
        new SendMessageCommand({
          QueueUrl: url(topic),
          MessageBody: body(data),
          MessageAttributes: ATTRIBUTES,
        }),
      );
    },
    // POLLERS long-poll loops; each received batch is handled, then deleted in one call that the
    // poller does not wait for (at most PREFETCH messages received and not yet deleted).
    subscribe: async (topic, onMessage) => {
      const QueueUrl = url(topic);
      const abort = new AbortController();
      let closed = false;
      let unsettled = 0;
      let wake: (() => void) | undefined;
      const deletes = new Set<Promise<void>>();
      const settle = (messages: Message[]) => {
        const p = client
          .send(
            new DeleteMessageBatchCommand({
              QueueUrl,
              Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
            }),
          )
          .then(
            () => {},
            () => {},
          )
          .finally(() => {
            unsettled -= messages.length;
            deletes.delete(p);
            wake?.();
          });
        deletes.add(p);
      };
      const poll = async () => {
        while (!closed) {
          while (unsettled + 10 > PREFETCH && !closed) await new Promise<void>((r) => (wake = r));
          let messages: Message[];
          try {
            const res = await client.send(
              new ReceiveMessageCommand({
                QueueUrl,
                MaxNumberOfMessages: 10,
                WaitTimeSeconds: WAIT_SECONDS,
                VisibilityTimeout: VISIBILITY_SECONDS,
                MessageAttributeNames: ['All'],
                MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
              }),
              { abortSignal: abort.signal },
            );
            messages = res.Messages ?? [];
          } catch (err) {
            if (closed) return;
            throw err;
          }
          if (messages.length === 0) continue;
          unsettled += messages.length;
          for (const m of messages) onMessage(decodeData(m.Body ?? ''));
          settle(messages);
        }
      };
      const pollers = Array.from({ length: POLLERS }, poll);
      return {
        close: async () => {
          closed = true;
          abort.abort();
          wake?.();
          await Promise.allSettled(pollers);
          await Promise.all(deletes);
        },
      };
    },
    cleanup: (topic) => deleteQueues([topic]),
    close: async () => {
      client.destroy();
    },
  };
}

export const sqsBench: TransportBench = {
  name: 'sqs',
  settings: {
    raw: `@aws-sdk/client-sqs: SendMessageBatch of 10, ${BATCHES_IN_FLIGHT} calls in flight; ${POLLERS} long-poll loops of ReceiveMessage (10, wait ${WAIT_SECONDS} s), DeleteMessageBatch per received batch (not awaited before the next receive; at most ${PREFETCH} unsettled); latency runs: SendMessage per message`,
    omnibus: `sqs({ endpoint, region, credentials }) (batches of 10, linger 5 ms (latency runs: 0), ${BATCHES_IN_FLIGHT} in flight, ${POLLERS} pollers, wait ${WAIT_SECONDS} s); bus.publish() with ${WINDOW} unsettled (publishBatch: batches of 10, ${BATCHES_IN_FLIGHT} unsettled); subscribe concurrency ${CONCURRENCY}, prefetch ${PREFETCH}`,
    durability: `standard queue (visibility ${VISIBILITY_SECONDS} s), delete after the handler; Omnibus adds its dead-letter queue and redrive policy`,
  },
  naiveAgainstBatched: true,
  sizing: {
    count: (size) => (size > 1024 ? 600 : 2_000),
    latencyRate: 100,
    latencyMs: 3_000,
    naiveMs: 3_000,
  },
  async side(kind: SideKind): Promise<Side> {
    if (kind === 'raw') return rawSide();
    return omnibusSide({
      // Every run keeps the adapter's default batching (adaptive: no linger when nothing is in flight).
      transport: sqs({ endpoint: ENDPOINT, region: REGION, credentials: CREDENTIALS }),
      window: WINDOW,
      concurrency: CONCURRENCY,
      prefetch: PREFETCH,
      batch: { size: 10, outstanding: BATCHES_IN_FLIGHT },
      cleanup: async (topic) => {
        const n = queueNames(topic, false);
        await deleteQueues([n.main, n.deadLetter]);
      },
    });
  },
  wireBytes: (size) =>
    wireBytes(sqs({ endpoint: ENDPOINT, region: REGION, credentials: CREDENTIALS }), size, {
      type: MESSAGE_TYPE,
    }),
  async brokerVersion() {
    const port = Number(new URL(ENDPOINT).port || 80);
    const v = versionFromListener(port, /elasticmq(?:-server)?(?:_[\d.]+)?-(\d+\.\d+\.\d+)/);
    return v ? `ElasticMQ ${v}` : undefined;
  },
};
