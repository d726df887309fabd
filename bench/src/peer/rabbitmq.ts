/**
 * message-queue-toolkit on RabbitMQ (@message-queue-toolkit/amqp): a topic publisher and a topic consumer
 * on the same durable topic exchange and quorum queue as the other two sides, zod-validated on both ends.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  AbstractAmqpTopicConsumer,
  AbstractAmqpTopicPublisher,
  type AMQPConsumerDependencies,
  type AMQPDependencies,
  AmqpConnectionManager,
  AmqpConsumerErrorResolver,
} from '@message-queue-toolkit/amqp';
import { MessageHandlerConfigBuilder } from '@message-queue-toolkit/core';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { type BenchData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side } from '../lib/side.js';
import { type PeerMessage, PeerMessageSchema, peerMessage } from './schema.js';
import { errorReporter, type PeerBench, quietLogger, SUCCESS } from './side.js';

const URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** The Omnibus side's window (its confirm window) in the RabbitMQ benchmark. */
const WINDOW = 1000;
const PREFETCH = 128;
/** The group queue's arguments on the other two sides (quorum), so the broker does the same work. */
const QUEUE_ARGS = { 'x-queue-type': 'quorum', 'x-overflow': 'reject-publish', 'x-delivery-limit': 50 };
const ARRIVAL_TIMEOUT_MS = 180_000;

const queueOf = (topic: string) => `${topic}.peer`;

function amqpConfig() {
  const u = new globalThis.URL(URL);
  return {
    hostname: u.hostname,
    port: Number(u.port || 5672),
    username: decodeURIComponent(u.username || 'guest'),
    password: decodeURIComponent(u.password || 'guest'),
    vhost: decodeURIComponent(u.pathname.slice(1)),
    useTls: u.protocol === 'amqps:',
  };
}

let adminConn: Promise<ChannelModel> | undefined;

async function admin<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  adminConn ??= amqp.connect(URL, { clientProperties: { connection_name: 'omnibus-bench-peer-admin' } });
  const ch = await (await adminConn).createChannel();
  ch.on('error', () => {});
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => {});
  }
}

class BenchPublisher extends AbstractAmqpTopicPublisher<PeerMessage> {
  constructor(deps: AMQPDependencies, exchange: string) {
    super(deps, {
      exchange,
      messageSchemas: [PeerMessageSchema],
      messageTypeResolver: { messageTypePath: 'type' },
      isLazyInitEnabled: false,
    });
  }
}

class BenchConsumer extends AbstractAmqpTopicConsumer<PeerMessage, undefined> {
  constructor(deps: AMQPConsumerDependencies, exchange: string, onMessage: (data: BenchData) => void) {
    super(
      deps,
      {
        creationConfig: {
          exchange,
          queueName: queueOf(exchange),
          topicPattern: '#',
          queueOptions: { durable: true, arguments: QUEUE_ARGS },
        },
        messageTypeResolver: { messageTypePath: 'type' },
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

  // The library sets no prefetch (unbounded deliveries); the other sides get 128, so this one does too.
  protected override async createMissingEntities(): Promise<void> {
    await super.createMissingEntities();
    await this.channel.prefetch(PREFETCH);
  }
}

async function peerSide(): Promise<Side> {
  // biome-ignore lint/suspicious/noExplicitAny: the library's logger type is pino's; ours is a quiet stand-in.
  const logger = quietLogger as any;
  const manager = new AmqpConnectionManager(amqpConfig(), logger);
  await manager.init();
  const deps: AMQPDependencies = { amqpConnectionManager: manager, logger, errorReporter };
  const consumerDeps: AMQPConsumerDependencies = {
    ...deps,
    consumerErrorResolver: new AmqpConsumerErrorResolver(),
    // biome-ignore lint/suspicious/noExplicitAny: optional in practice (the consumer checks for it).
    transactionObservabilityManager: undefined as any,
  };
  const publishers = new Map<string, BenchPublisher>();
  const publisherFor = async (topic: string) => {
    let p = publishers.get(topic);
    if (!p) {
      p = new BenchPublisher(deps, topic);
      await p.init();
      publishers.set(topic, p);
    }
    return p;
  };
  const send = (p: BenchPublisher, data: BenchData) =>
    p.publish(peerMessage(data), { routingKey: MESSAGE_TYPE, publishOptions: { persistent: true } });
  return {
    kind: 'peer',
    prepare: async (topic) => {
      await admin(async (ch) => {
        await ch.assertExchange(topic, 'topic', { durable: true });
        await ch.assertQueue(queueOf(topic), { durable: true, arguments: QUEUE_ARGS });
        await ch.bindQueue(queueOf(topic), topic, '#');
      });
      await publisherFor(topic);
    },
    // The library's publish() is synchronous and unconfirmed (a plain channel, no backpressure): WINDOW
    // publishes per event-loop turn, so the socket drains between them, then the run counts as done once
    // the queue holds every message (the nearest the peer comes to "confirmed").
    publishMany: async (topic, count, size) => {
      const p = await publisherFor(topic);
      let i = 0;
      while (i < count) {
        const end = Math.min(count, i + WINDOW);
        for (; i < end; i++) send(p, makeData(i, size));
        await nextTurn();
      }
      await arrived(queueOf(topic), count);
    },
    publishOne: async (topic, data) => {
      send(await publisherFor(topic), data);
    },
    subscribe: async (topic, onMessage) => {
      const consumer = new BenchConsumer(consumerDeps, topic, onMessage);
      await consumer.start();
      return {
        close: async () => {
          // The library acks in a promise chain after the handler; closing in the same turn as the last
          // handler would close the channel under those acks. One turn lets the chains finish.
          await nextTurn();
          await consumer.close();
        },
      };
    },
    cleanup: (topic) =>
      admin(async (ch) => {
        await ch.deleteQueue(queueOf(topic));
        await ch.deleteExchange(topic);
      }),
    close: () => manager.close(),
  };
}

/** Waits until `queue` holds `count` messages (polled), or fails after ARRIVAL_TIMEOUT_MS. */
async function arrived(queue: string, count: number): Promise<void> {
  const deadline = performance.now() + ARRIVAL_TIMEOUT_MS;
  await admin(async (ch) => {
    for (;;) {
      const { messageCount } = await ch.checkQueue(queue);
      if (messageCount >= count) return;
      if (performance.now() > deadline)
        throw new Error(`peer: ${messageCount} of ${count} messages reached ${queue}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  });
}

/**
 * A delivery dispatched while the consumer closes makes the library ack, then nack, on the closed channel
 * in a promise nobody awaits, which would end the worker. That one error is logged, the message is left
 * to the broker (requeued, in a queue deleted right after); any other unhandled rejection still fails.
 */
process.on('unhandledRejection', (err) => {
  if (err instanceof Error && err.name === 'IllegalOperationError' && /^Channel clos/.test(err.message)) {
    console.error(`[peer] message-queue-toolkit acked on a closed channel (${err.message}); ignored`);
    return;
  }
  throw err;
});

export const rabbitmqPeer: PeerBench = {
  window: WINDOW,
  settings: {
    peer: `@message-queue-toolkit/amqp 23.1.0 (core 25.4.0) on amqplib 2.3.1: AbstractAmqpTopicPublisher, publish() with persistent messages, ${WINDOW} per event-loop turn, timed until the queue holds them all; AbstractAmqpTopicConsumer with a zod message schema, prefetch ${PREFETCH} (set by the bench: the library sets none), ack after the handler`,
    omnibus: `as in the main table, with a defineMessage zod schema checked on publish and on consume (Def.handle())`,
    differences:
      'Omnibus waits for a publisher confirm per message, declares a dead-letter queue and delay tiers per group and retries with backoff, and sends CloudEvents headers; message-queue-toolkit publishes on a plain channel (no confirms, no backpressure: a message lost in a broken connection is not reported), has no dead-letter support on AMQP (a failed message is requeued at once), and puts its id, type and timestamp in the JSON body',
  },
  side: peerSide,
};
