/**
 * The SNS fan-out harness: fauxqs (SNS + SQS + S3) at AWS_ENDPOINT_URL, by default 127.0.0.1:4566 started
 * by scripts/brokers/fauxqs.sh. Transports take the endpoint from the SDK's standard variable, as users do;
 * dead letters are read and poison published with the raw AWS SDK clients.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CreateTopicCommand, PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import {
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import type { WireMessage } from '@omnibus/core';
import { attributesToHeaders, headersToAttributes, queueNames, type SqsOptions, sqs } from '@omnibus/sqs';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';
import { recordingQueues } from './sqs.js';

const run = promisify(execFile);
const LOCAL = 'http://127.0.0.1:4566';
// The vitest project sets AWS_ENDPOINT_URL (to the local fauxqs unless the caller set it): read it per call.
const endpoint = () => process.env.AWS_ENDPOINT_URL ?? LOCAL;
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' };
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = 'scripts/brokers/fauxqs.sh';
const ORDERED_SUFFIX = '-ordered';
const isFifoTopic = (topic: string) => topic.endsWith(ORDERED_SUFFIX);

let clients: { sqs: SQSClient; sns: SNSClient } | undefined;
function raw() {
  clients ??= {
    sqs: new SQSClient({ endpoint: endpoint(), region: REGION, credentials: CREDENTIALS, maxAttempts: 2 }),
    sns: new SNSClient({ endpoint: endpoint(), region: REGION, credentials: CREDENTIALS, maxAttempts: 2 }),
  };
  return clients;
}

// No endpoint here: the transport finds AWS_ENDPOINT_URL itself (and emulator credentials for loopback).
const options: SqsOptions = { fanOut: 'sns', fifoTopics: isFifoTopic, persistent: false };

const created = new Set<string>();

async function reachable(): Promise<boolean> {
  try {
    await raw().sqs.send(new ListQueuesCommand({ MaxResults: 1 }));
    return true;
  } catch {
    return false;
  }
}

async function waitReachable(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await reachable())) {
    if (Date.now() > deadline) throw new Error(`fauxqs (SNS/SQS) is not reachable at ${endpoint()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function queueUrl(name: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await raw().sqs.send(new GetQueueUrlCommand({ QueueName: name }));
      if (res.QueueUrl) return res.QueueUrl;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The group's queue name as the transport builds it (see groupQueueKey in @omnibus/sqs's sns.ts). */
function groupQueue(topic: string, group: string) {
  const fifo = isFifoTopic(topic);
  return queueNames(`${topic}--${group}`, fifo);
}

const XML_TEXT = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]+$/u;

export const harness: TransportHarness = {
  name: 'sns',
  async setup() {
    if (await reachable()) return;
    // Only the local emulator is started here; an AWS_ENDPOINT_URL pointing elsewhere must answer by itself.
    if (endpoint() === LOCAL) await run('bash', [SCRIPT, 'up'], { cwd: REPO_ROOT });
    await waitReachable(endpoint() === LOCAL ? 60_000 : 5_000);
  },
  async teardown() {
    const urls = [...created];
    created.clear();
    await Promise.allSettled(urls.map((QueueUrl) => raw().sqs.send(new DeleteQueueCommand({ QueueUrl }))));
  },
  create() {
    const t = sqs(options);
    return recordingQueues(t, created);
  },
  createUnreachable: () =>
    sqs({
      fanOut: 'sns',
      endpoint: 'http://127.0.0.1:1',
      region: REGION,
      credentials: CREDENTIALS,
      maxAttempts: 1,
      connectTimeoutMs: 2000,
    }),
  orderedTopic: (base) => `${base}${ORDERED_SUFFIX}`,
  async readDeadLetters(topic, group, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const url = await queueUrl(groupQueue(topic, group).deadLetter, timeoutMs);
    const found: WireMessage[] = [];
    while (found.length < count && Date.now() < deadline) {
      const res = await raw().sqs.send(
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
        await raw().sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: url,
            Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
          }),
        );
      }
    }
    return found;
  },
  /** Poison goes where a foreign producer would put it: onto the SNS topic, typed for the filter policies. */
  async publishRaw(topic, body, opts = {}) {
    const fifo = isFifoTopic(topic);
    const name = `${topic.replace(/[^A-Za-z0-9_-]/g, '_')}${fifo ? '.fifo' : ''}`;
    const { TopicArn } = await raw().sns.send(
      new CreateTopicCommand({ Name: name, ...(fifo ? { Attributes: { FifoTopic: 'true' } } : {}) }),
    );
    const text = body.toString('utf8');
    const asText = XML_TEXT.test(text) && Buffer.from(text, 'utf8').equals(body);
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.type) headers.type = opts.type;
    if (!asText) headers['content-transfer-encoding'] = 'base64';
    const attributes = headersToAttributes(headers, 9);
    if (opts.type) attributes['omnibus-type'] = { DataType: 'String', StringValue: opts.type };
    await raw().sns.send(
      new PublishCommand({
        TopicArn,
        Message: asText ? text : body.toString('base64'),
        MessageAttributes: attributes,
        ...(fifo ? { MessageGroupId: opts.key ?? 'raw', MessageDeduplicationId: randomUUID() } : {}),
      }),
    );
  },
  // fauxqs keeps its state in memory: a restart empties it, so there is no restart hook.
  capabilities: { persistent: false },
};

/** The harness's transport with the given options added, recording the queues it creates for teardown. */
function contractTransport(extra: Record<string, unknown>) {
  const t = sqs({ ...options, ...extra } as SqsOptions);
  return recordingQueues(t, created);
}

/** Hooks for the transport contract suite (src/contract), in SNS fan-out mode. */
export const contractHooks: ContractHooks = {
  createWith: (extra) => contractTransport(extra),
  createUnreachable: (extra) =>
    sqs({
      fanOut: 'sns',
      endpoint: 'http://127.0.0.1:1',
      region: REGION,
      credentials: CREDENTIALS,
      ...extra,
    } as SqsOptions),
};
