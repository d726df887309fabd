/**
 * Memory transport. There is no broker client here, so "raw" is the transport's own API (publish wire
 * messages, subscribe with a delivery callback that acks): the ratio is the cost of the core itself
 * (envelope, CloudEvents mapping, codec, failure pipeline), with nothing else to hide it.
 */
import { type Delivery, type MemoryTransport, memoryTransport, type WireMessage } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { GROUP, omnibusSide, wireBytes } from '../lib/omnibus-side.js';
import { decodeData, encodeData, MESSAGE_TYPE, makeData } from '../lib/payload.js';
import type { Side, SideKind, TransportBench } from '../lib/side.js';
import { windowed } from '../lib/window.js';

const WINDOW = 1000;
const CONCURRENCY = 64;
const PREFETCH = 128;
let brokers = 0;

function fresh(): MemoryTransport {
  // A broker of its own per side, so one side's leftovers never slow the other down.
  return memoryTransport({ name: `bench-${process.pid}-${brokers++}`, retention: 1000 });
}

function dropTopic(t: MemoryTransport, topic: string): Promise<void> {
  t.broker.topics.delete(topic);
  return Promise.resolve();
}

async function rawSide(): Promise<Side> {
  const t = fresh();
  await t.connect();
  const wire = (data: ReturnType<typeof makeData>): WireMessage => ({
    body: encodeData(data),
    headers: { ce_type: MESSAGE_TYPE },
  });
  // The raw side publishes straight to the broker model: no caller deadline to carry.
  const NO_DEADLINE = noDeadline();
  return {
    kind: 'raw',
    prepare: (topic) => t.provision(topic, [{ group: GROUP, patterns: ['#'] }]),
    publishMany: (topic, count, size) =>
      windowed(count, WINDOW, (i) => t.publish(topic, [wire(makeData(i, size))], NO_DEADLINE)),
    publishOne: (topic, data) => t.publish(topic, [wire(data)], NO_DEADLINE),
    subscribe: async (topic, onMessage) => {
      const sub = await t.subscribe(
        { topic, group: GROUP, patterns: ['#'], maxInFlight: PREFETCH },
        (d: Delivery) => {
          onMessage(decodeData(d.wire.body));
          void d.ack();
        },
      );
      return { close: () => sub.close() };
    },
    cleanup: (topic) => dropTopic(t, topic),
    close: () => t.close(),
  };
}

export const memoryBench: TransportBench = {
  name: 'memory',
  settings: {
    raw: `MemoryTransport API directly: publish(wire) with ${WINDOW} unsettled, subscribe + ack, maxInFlight ${PREFETCH}`,
    omnibus: `bus.publish() with ${WINDOW} unsettled (publishBatch: batches of 1000, one at a time); subscribe concurrency ${CONCURRENCY}, prefetch ${PREFETCH}`,
    durability: 'in-process (not persistent)',
  },
  sizing: {
    count: (size) => (size > 1024 ? 10_000 : 50_000),
    latencyRate: 1_000,
    latencyMs: 2_000,
    naiveMs: 2_000,
  },
  async side(kind: SideKind): Promise<Side> {
    if (kind === 'raw') return rawSide();
    const t = fresh();
    return omnibusSide({
      transport: t,
      window: WINDOW,
      concurrency: CONCURRENCY,
      prefetch: PREFETCH,
      batch: { size: 1000, outstanding: 1 },
      cleanup: (topic) => dropTopic(t, topic),
    });
  },
  wireBytes: (size) => wireBytes(fresh(), size, { ce_type: MESSAGE_TYPE }),
  async brokerVersion() {
    return 'in-process';
  },
};
