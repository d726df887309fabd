/**
 * RabbitMQ: amqplib on a ConfirmChannel with a window of unconfirmed publishes against the Omnibus
 * adapter, both into a durable topic exchange and a quorum queue, persistent messages, manual acks.
 * Everything is named `omnibus-bench-…` and deleted after each step: the broker is shared.
 */
import { DEFAULT_DELAY_TIERS_MS } from '@omnibus/core/kit';
import { names, rabbitmq } from '@omnibus/rabbitmq';
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { GROUP, omnibusSide, wireBytes } from '../lib/omnibus-side.js';
import { type BenchData, decodeData, encodeData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side, SideKind, TransportBench } from '../lib/side.js';

const URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** Unconfirmed publishes at once: the adapter's default confirm window, given to both sides. */
const WINDOW = 1000;
const CONCURRENCY = 64;
const PREFETCH = 128;

/** The arguments the adapter gives a group queue (quorum), minus its dead-letter wiring. */
const QUEUE_ARGS = {
  'x-queue-type': 'quorum',
  'x-overflow': 'reject-publish',
  'x-delivery-limit': 50,
};

let adminConn: Promise<ChannelModel> | undefined;

/** A connection for declaring and deleting, shared by both sides' cleanup. */
async function admin<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  adminConn ??= amqp.connect(URL, { clientProperties: { connection_name: 'omnibus-bench-admin' } });
  const conn = await adminConn;
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => {});
  }
}

async function deleteAll(topic: string, queues: string[]): Promise<void> {
  await admin(async (ch) => {
    for (const q of queues) await ch.deleteQueue(q);
    await ch.deleteExchange(topic);
  });
}

/** The bench's own delay tiers (shared by the groups of one vhost), deleted with each topic's queues. */
const BENCH_DELAY_PREFIX = `omnibus-bench-${process.pid}.delay`;

function omnibusQueues(topic: string): string[] {
  return [names.groupQueue(topic, GROUP), names.deadLetterQueue(topic, GROUP)];
}

async function deleteBenchTiers(): Promise<void> {
  await admin(async (ch) => {
    for (const t of DEFAULT_DELAY_TIERS_MS) {
      const tier = names.delayTier(t, 'quorum', BENCH_DELAY_PREFIX);
      await ch.deleteQueue(tier);
      await ch.deleteExchange(tier);
    }
  });
}

async function rawSide(): Promise<Side> {
  const conn = await amqp.connect(URL, { clientProperties: { connection_name: 'omnibus-bench-raw' } });
  const pub: ConfirmChannel = await conn.createConfirmChannel();
  const queue = (topic: string) => `${topic}.${GROUP}`;
  // Not `mandatory`: the adapter, with its default onNoSubscribers 'accept', publishes without it too.
  const options = (data: BenchData): Options.Publish => ({
    persistent: true,
    contentType: 'application/json',
    messageId: String(data.seq),
    type: MESSAGE_TYPE,
  });
  let drain: Promise<void> | undefined;
  const waitDrain = () => {
    drain ??= new Promise<void>((resolve) => {
      pub.once('drain', () => {
        drain = undefined;
        resolve();
      });
    });
    return drain;
  };
  return {
    kind: 'raw',
    prepare: (topic) =>
      admin(async (ch) => {
        await ch.assertExchange(topic, 'topic', { durable: true });
        await ch.assertQueue(queue(topic), { durable: true, arguments: QUEUE_ARGS });
        await ch.bindQueue(queue(topic), topic, '#');
      }),
    // Keeps WINDOW publishes unconfirmed; a full socket buffer (publish() → false) waits for 'drain'.
    publishMany: (topic, count, size) =>
      new Promise<void>((resolve, reject) => {
        let sent = 0;
        let confirmed = 0;
        let inFlight = 0;
        let blocked = false;
        let failed = false;
        const onConfirm = (err: unknown) => {
          if (failed) return;
          if (err) {
            failed = true;
            reject(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          inFlight--;
          if (++confirmed === count) resolve();
          else if (!blocked) pump();
        };
        const pump = () => {
          while (!failed && !blocked && inFlight < WINDOW && sent < count) {
            const data = makeData(sent++, size);
            inFlight++;
            if (!pub.publish(topic, MESSAGE_TYPE, encodeData(data), options(data), onConfirm)) {
              blocked = true;
              void waitDrain().then(() => {
                blocked = false;
                pump();
              });
            }
          }
        };
        pump();
      }),
    publishOne: (topic, data) =>
      new Promise<void>((resolve, reject) => {
        pub.publish(topic, MESSAGE_TYPE, encodeData(data), options(data), (err) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
        );
      }),
    subscribe: async (topic, onMessage) => {
      const ch = await conn.createChannel();
      await ch.prefetch(PREFETCH);
      const { consumerTag } = await ch.consume(
        queue(topic),
        (msg) => {
          if (!msg) return;
          onMessage(decodeData(msg.content));
          ch.ack(msg);
        },
        { noAck: false },
      );
      return {
        close: async () => {
          await ch.cancel(consumerTag);
          await ch.close();
        },
      };
    },
    cleanup: (topic) => deleteAll(topic, [queue(topic)]),
    close: async () => {
      await pub.close().catch(() => {});
      await conn.close();
    },
  };
}

export const rabbitmqBench: TransportBench = {
  name: 'rabbitmq',
  settings: {
    raw: `amqplib ConfirmChannel, ${WINDOW} unconfirmed publishes (honours 'drain'); consume on a channel with prefetch ${PREFETCH}, ack per message`,
    omnibus: `rabbitmq({ url }) (confirm window ${WINDOW}); bus.publish() with ${WINDOW} unsettled (publishBatch: batches of 100, ${WINDOW / 100} unsettled); subscribe concurrency ${CONCURRENCY}, prefetch ${PREFETCH}`,
    durability:
      'durable topic exchange → quorum queue (x-delivery-limit 50, reject-publish), persistent + mandatory messages, publisher confirms, manual ack after the handler',
  },
  sizing: {
    count: (size) => (size > 1024 ? 2_000 : 10_000),
    latencyRate: 500,
    latencyMs: 3_000,
    naiveMs: 3_000,
  },
  async side(kind: SideKind): Promise<Side> {
    if (kind === 'raw') return rawSide();
    return omnibusSide({
      transport: rabbitmq({
        url: URL,
        connectionName: 'omnibus-bench-omnibus',
        confirmWindow: WINDOW,
        delayQueuePrefix: BENCH_DELAY_PREFIX,
      }),
      window: WINDOW,
      concurrency: CONCURRENCY,
      prefetch: PREFETCH,
      batch: { size: 100, outstanding: WINDOW / 100 },
      cleanup: async (topic) => {
        await deleteAll(topic, omnibusQueues(topic));
        await deleteBenchTiers();
      },
    });
  },
  wireBytes: (size) =>
    wireBytes(rabbitmq({ url: URL }), size, {
      'content-type': 'application/json',
      'message-id': '123456',
      type: MESSAGE_TYPE,
    }),
  async brokerVersion() {
    const conn = await amqp.connect(URL, { clientProperties: { connection_name: 'omnibus-bench-version' } });
    try {
      const p = conn.connection.serverProperties as { product?: string; version?: string };
      return `${p.product ?? 'RabbitMQ'} ${p.version ?? '?'}`;
    } finally {
      await conn.close();
    }
  },
};

/** Closes the shared admin connection (end of run). */
export async function closeRabbitAdmin(): Promise<void> {
  const c = adminConn;
  adminConn = undefined;
  if (c) await (await c).close().catch(() => {});
}
