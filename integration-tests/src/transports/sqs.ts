/**
 * The SQS harness: ElasticMQ on 127.0.0.1:9324 (or SQS_ENDPOINT), read and written with the raw AWS SDK
 * client so dead letters and poison messages bypass Omnibus entirely.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SendMessageCommandInput,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { WireMessage } from '@omnibus/core';
import { attributesToHeaders, headersToAttributes, queueNames, type SqsOptions, sqs } from '@omnibus/sqs';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';

const run = promisify(execFile);
const EXTERNAL = process.env.SQS_ENDPOINT;
const ENDPOINT = EXTERNAL ?? 'http://127.0.0.1:9324';
const REGION = 'us-east-1';
// ElasticMQ ignores signatures; the SDK still signs, so it needs some credentials.
const CREDENTIALS = { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' };
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = 'scripts/brokers/elasticmq.sh';
// The per-key order scenario needs a FIFO queue; every other scenario runs on standard queues.
const ORDERED_SUFFIX = '-ordered';
const isFifoTopic = (topic: string) => topic.endsWith(ORDERED_SUFFIX);

const raw = new SQSClient({ endpoint: ENDPOINT, region: REGION, credentials: CREDENTIALS, maxAttempts: 2 });

const options: SqsOptions = {
  endpoint: ENDPOINT,
  region: REGION,
  credentials: CREDENTIALS,
  fifoTopics: isFifoTopic,
  // scripts/brokers/elasticmq.sh stores queues and messages in an H2 file, so they survive its restart.
  persistent: true,
};

/** Queues the suite's transports created, deleted at teardown. */
const created = new Set<string>();

async function reachable(): Promise<boolean> {
  try {
    await raw.send(new ListQueuesCommand({ MaxResults: 1 }));
    return true;
  } catch {
    return false;
  }
}

async function waitReachable(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await reachable())) {
    if (Date.now() > deadline) throw new Error(`ElasticMQ/SQS is not reachable at ${ENDPOINT}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function queueUrl(name: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await raw.send(new GetQueueUrlCommand({ QueueName: name }));
      if (res.QueueUrl) return res.QueueUrl;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// SQS bodies must be XML text; bytes that are not travel base64-encoded (still undecodable for Omnibus).
const XML_TEXT = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]+$/u;

export const harness: TransportHarness = {
  name: 'sqs',
  async setup() {
    if (await reachable()) return;
    if (!EXTERNAL) await run('bash', [SCRIPT, 'up'], { cwd: REPO_ROOT });
    await waitReachable(60_000);
  },
  async teardown() {
    // ElasticMQ stores queues on disk here: leave no test queues behind to slow its restarts.
    const urls = [...created];
    created.clear();
    await Promise.allSettled(urls.map((QueueUrl) => raw.send(new DeleteQueueCommand({ QueueUrl }))));
  },
  create() {
    const t = sqs(options);
    return recordingQueues(t, created);
  },
  createUnreachable: () =>
    sqs({
      endpoint: 'http://127.0.0.1:1',
      region: REGION,
      credentials: CREDENTIALS,
      maxAttempts: 1,
      connectTimeoutMs: 2000,
    }),
  orderedTopic: (base) => `${base}${ORDERED_SUFFIX}`,
  async readDeadLetters(topic, _group, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const url = await queueUrl(queueNames(topic, isFifoTopic(topic)).deadLetter, timeoutMs);
    const found: WireMessage[] = [];
    while (found.length < count && Date.now() < deadline) {
      const res = await raw.send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['MessageGroupId'],
        }),
      );
      const messages = res.Messages ?? [];
      for (const m of messages) {
        found.push({
          body: Buffer.from(m.Body ?? '', 'utf8'),
          headers: attributesToHeaders(m.MessageAttributes),
          key: m.Attributes?.MessageGroupId,
        });
      }
      if (messages.length > 0) {
        await raw.send(
          new DeleteMessageBatchCommand({
            QueueUrl: url,
            Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
          }),
        );
      }
    }
    return found;
  },
  async publishRaw(topic, body, opts = {}) {
    const fifo = isFifoTopic(topic);
    const url = await queueUrl(queueNames(topic, fifo).main, 10_000);
    const text = body.toString('utf8');
    const asText = XML_TEXT.test(text) && Buffer.from(text, 'utf8').equals(body);
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.type) headers.type = opts.type;
    if (!asText) headers['content-transfer-encoding'] = 'base64';
    const attributes: Record<string, MessageAttributeValue> = headersToAttributes(headers);
    const input: SendMessageCommandInput = {
      QueueUrl: url,
      MessageBody: asText ? text : body.toString('base64'),
      MessageAttributes: attributes,
    };
    if (fifo) {
      input.MessageGroupId = opts.key ?? 'raw';
      input.MessageDeduplicationId = randomUUID();
    }
    await raw.send(new SendMessageCommand(input));
  },
  // Only the local ElasticMQ started by the script can be restarted; an external endpoint cannot.
  ...(EXTERNAL
    ? {}
    : {
        async restart() {
          await run('bash', [SCRIPT, 'restart'], { cwd: REPO_ROOT, timeout: 180_000 });
          await waitReachable(60_000);
        },
      }),
  capabilities: { persistent: true },
};

/** An SQS transport whose created queues are recorded for teardown, like `harness.create()`'s. */
function contractTransport(extra: Record<string, unknown>) {
  const t = sqs({ ...options, ...extra } as SqsOptions);
  return recordingQueues(t, created);
}

/**
 * Hooks for the transport contract suite (src/contract): the harness's transport with options added, one
 * at a closed port with the SDK's default retries, and one whose batch linger keeps publishes queued.
 */
export const contractHooks: ContractHooks = {
  createWith: (extra) => contractTransport(extra),
  createUnreachable: (extra) =>
    sqs({ endpoint: 'http://127.0.0.1:1', region: REGION, credentials: CREDENTIALS, ...extra } as SqsOptions),
  createHoldingPublishes: () => contractTransport({ batchLingerMs: 1_000 }),
};

/**
 * Records the queue URL of every CreateQueue the transport makes into `created`, so a harness can delete
 * its queues at teardown (the SQS and SNS harnesses share it).
 */
export function recordingQueues<T extends ReturnType<typeof sqs>>(t: T, created: Set<string>): T {
  t.sdkClient.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const url = (result.output as { QueueUrl?: string }).QueueUrl;
      if (context.commandName === 'CreateQueueCommand' && url) created.add(url);
      return result;
    },
    { step: 'initialize', name: 'omnibusHarnessQueueRecorder' },
  );
  return t;
}
