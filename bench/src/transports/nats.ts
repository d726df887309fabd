/**
 * NATS JetStream: the official client's `js.publish` (WINDOW unconfirmed) and a pull consumer's
 * `consume()` with explicit acks, against the Omnibus adapter on the same file-backed stream setup.
 */

import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NatsTransport, names, nats } from '@omnibus/nats';
import { GROUP, omnibusSide, wireBytes } from '../lib/omnibus-side.js';
import { decodeData, encodeData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side, SideKind, TransportBench } from '../lib/side.js';
import { windowed } from '../lib/window.js';

const SERVER = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
const WINDOW = 1000;
const CONCURRENCY = 64;
const PREFETCH = 128;

async function deleteStreams(topic: string): Promise<void> {
  const nc = await connect({ servers: [SERVER] });
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of [names.stream(topic), names.deadLetterStream(topic)])
      await jsm.streams.delete(s).catch(() => false);
  } finally {
    await nc.close();
  }
}

async function rawSide(): Promise<Side> {
  const nc: NatsConnection = await connect({ servers: [SERVER], name: 'omnibus-bench-raw' });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const subject = (topic: string) => `${topic}.t.${MESSAGE_TYPE}`;
  return {
    kind: 'raw',
    prepare: async (topic) => {
      await jsm.streams.add({ name: topic, subjects: [`${topic}.>`], storage: StorageType.File });
      await jsm.consumers.add(topic, {
        durable_name: GROUP,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
      });
    },
    publishMany: (topic, count, size) =>
      windowed(count, WINDOW, (i) => js.publish(subject(topic), encodeData(makeData(i, size)))),
    publishOne: async (topic, data) => {
      await js.publish(subject(topic), encodeData(data));
    },
    subscribe: async (topic, onMessage) => {
      const consumer = await js.consumers.get(topic, GROUP);
      const messages = await consumer.consume({
        max_messages: PREFETCH,
        callback: (m) => {
          onMessage(decodeData(Buffer.from(m.data)));
          m.ack();
        },
      });
      return { close: () => messages.close().then(() => {}) };
    },
    cleanup: deleteStreams,
    close: () => nc.close(),
  };
}

export const natsBench: TransportBench = {
  name: 'nats',
  settings: {
    raw: `@nats-io/jetstream js.publish() with ${WINDOW} unconfirmed; pull consumer consume() with max_messages ${PREFETCH}, ack per message`,
    omnibus: `nats({ servers }); bus.publish() with ${WINDOW} unsettled (publishBatch: batches of 100, ${WINDOW / 100} unsettled); subscribe concurrency ${CONCURRENCY}, prefetch ${PREFETCH}`,
    durability: 'file-backed stream, publish acks from the stream, durable pull consumer with explicit acks',
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
      transport: nats({ servers: [SERVER], name: 'omnibus-bench-omnibus' }),
      window: WINDOW,
      concurrency: CONCURRENCY,
      prefetch: PREFETCH,
      batch: { size: 100, outstanding: WINDOW / 100 },
      cleanup: deleteStreams,
    });
  },
  wireBytes: (size) => wireBytes(new NatsTransport({ servers: [SERVER] }), size, {}),
  async brokerVersion() {
    const nc = await connect({ servers: [SERVER] });
    try {
      return `nats-server ${nc.info?.version ?? '?'}`;
    } finally {
      await nc.close();
    }
  },
};
