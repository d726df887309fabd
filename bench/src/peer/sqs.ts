/**
 * message-queue-toolkit on SQS (@message-queue-toolkit/sqs, ElasticMQ here): a queue publisher and a
 * consumer (sqs-consumer underneath) with a dead-letter queue, zod-validated on both ends.
 */
import { CreateQueueCommand, DeleteQueueCommand, GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import { MessageHandlerConfigBuilder } from '@message-queue-toolkit/core';
import {
  AbstractSqsConsumer,
  AbstractSqsPublisher,
  type SQSConsumerDependencies,
  type SQSDependencies,
  SqsConsumerErrorResolver,
} from '@message-queue-toolkit/sqs';
import type { BenchData } from '../lib/payload.js';
import { makeData } from '../lib/payload.js';
import type { Side } from '../lib/side.js';
import { windowed } from '../lib/window.js';
// The Omnibus side's window, pollers, long-poll and visibility, and the same SDK client settings.
import { POLLERS, sdkClient, VISIBILITY_SECONDS, WAIT_SECONDS, WINDOW } from '../transports/sqs.js';
import { type PeerMessage, PeerMessageSchema, peerMessage } from './schema.js';
import { errorReporter, type PeerBench, quietLogger, SUCCESS } from './side.js';

const MAX_RECEIVE_COUNT = 5;

const dlqOf = (topic: string) => `${topic}-dlq`;

class BenchPublisher extends AbstractSqsPublisher<PeerMessage> {
  constructor(deps: SQSDependencies, queueUrl: string) {
    super(deps, {
      locatorConfig: { queueUrl },
      messageSchemas: [PeerMessageSchema],
      messageTypeResolver: { messageTypePath: 'type' },
    });
  }
}

class BenchConsumer extends AbstractSqsConsumer<PeerMessage, undefined> {
  constructor(
    deps: SQSConsumerDependencies,
    queueUrl: string,
    deadLetterQueueUrl: string,
    onMessage: (data: BenchData) => void,
  ) {
    super(
      deps,
      {
        locatorConfig: { queueUrl },
        messageTypeResolver: { messageTypePath: 'type' },
        deadLetterQueue: {
          // Created by the bench and located: the library's own creation looks the queue up first and
          // expects the query protocol's error code for a missing queue, which this SDK (JSON protocol)
          // and ElasticMQ do not send (QueueDoesNotExist), so it fails before creating anything.
          locatorConfig: { queueUrl: deadLetterQueueUrl },
          redrivePolicy: { maxReceiveCount: MAX_RECEIVE_COUNT },
        },
        concurrentConsumersAmount: POLLERS,
        consumerOverrides: { batchSize: 10, waitTimeSeconds: WAIT_SECONDS },
        handlers: new MessageHandlerConfigBuilder<PeerMessage, undefined>()
          .addConfig(PeerMessageSchema, async (message) => {
            onMessage(message);
            return SUCCESS;
          })
          .build(),
      },
      undefined,
    );
  }
}

async function peerSide(): Promise<Side> {
  const client = sdkClient();
  // biome-ignore lint/suspicious/noExplicitAny: the library's logger type is pino's; ours is a quiet stand-in.
  const logger = quietLogger as any;
  const deps: SQSDependencies = { sqsClient: client, logger, errorReporter };
  const consumerDeps: SQSConsumerDependencies = {
    ...deps,
    consumerErrorResolver: new SqsConsumerErrorResolver(),
    // biome-ignore lint/suspicious/noExplicitAny: optional in practice (the consumer checks for it).
    transactionObservabilityManager: undefined as any,
  };
  const urls = new Map<string, string>();
  const dlqUrls = new Map<string, string>();
  const publishers = new Map<string, BenchPublisher>();
  const url = (topic: string) => {
    const u = urls.get(topic);
    if (!u) throw new Error(`peer: queue for ${topic} not prepared`);
    return u;
  };
  const publisherFor = async (topic: string) => {
    let p = publishers.get(topic);
    if (!p) {
      p = new BenchPublisher(deps, url(topic));
      await p.init();
      publishers.set(topic, p);
    }
    return p;
  };
  return {
    kind: 'peer',
    prepare: async (topic) => {
      const res = await client.send(
        new CreateQueueCommand({
          QueueName: topic,
          Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS) },
        }),
      );
      urls.set(topic, res.QueueUrl!);
      const dlq = await client.send(new CreateQueueCommand({ QueueName: dlqOf(topic) }));
      dlqUrls.set(topic, dlq.QueueUrl!);
      await publisherFor(topic);
    },
    // One SendMessage per publish (the library has no batch publish), WINDOW of them unsettled.
    publishMany: async (topic, count, size) => {
      const p = await publisherFor(topic);
      await windowed(count, WINDOW, (i) => p.publish(peerMessage(makeData(i, size))));
    },
    publishOne: async (topic, data) => {
      await (await publisherFor(topic)).publish(peerMessage(data));
    },
    subscribe: async (topic, onMessage) => {
      const consumer = new BenchConsumer(consumerDeps, url(topic), dlqUrls.get(topic)!, onMessage);
      await consumer.start();
      return { close: () => consumer.close() };
    },
    cleanup: async (topic) => {
      for (const QueueName of [topic, dlqOf(topic)]) {
        try {
          const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName }));
          await client.send(new DeleteQueueCommand({ QueueUrl }));
        } catch {
          // already gone
        }
      }
    },
    close: async () => {
      // The client stays open until cleanup has run; it holds no timers, so the worker can still exit.
      for (const p of publishers.values()) await p.close().catch(() => {});
    },
  };
}

export const sqsPeer: PeerBench = {
  window: WINDOW,
  settings: {
    peer: `@message-queue-toolkit/sqs 24.2.1 (core 25.4.0, sqs-consumer underneath): AbstractSqsPublisher, one SendMessage per publish, ${WINDOW} unsettled; AbstractSqsConsumer with a zod message schema, ${POLLERS} consumers receiving 10 per call (wait ${WAIT_SECONDS} s), a dead-letter queue (maxReceiveCount ${MAX_RECEIVE_COUNT}; created by the bench and located, as the library's creation fails against ElasticMQ with this SDK), delete after the handler`,
    omnibus:
      'as in the main table, with a defineMessage zod schema checked on publish and on consume (Def.handle())',
    differences:
      'both have a dead-letter queue with a redrive policy; Omnibus batches publishes (SendMessageBatch of 10, linger 5 ms) and deletes in batches, sends CloudEvents message attributes, and retries with backoff by changing the visibility; message-queue-toolkit sends and deletes one message per call, puts its id, type and timestamp in the JSON body, and can offload large payloads to S3 (not used here)',
  },
  side: peerSide,
};
