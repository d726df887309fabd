/** The stream stores a publish re-sent with the same envelope id once (Nats-Msg-Id), on the real server. */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { silentLogger, uuidv7 } from '@omnibus/core';
import { noDeadline } from '@omnibus/core/kit';
import { afterEach, describe, expect, it } from 'vitest';
import { type NatsTransport, nats } from '../src/index.js';

const SERVER = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
const open: NatsTransport[] = [];
const streams: string[] = [];

async function transport(options: { deduplicate?: boolean } = {}): Promise<NatsTransport> {
  const t = nats({ servers: [SERVER], ...options });
  open.push(t);
  await t.connect({ logger: silentLogger, service: 'dedupe-test' });
  return t;
}

function wire(t: NatsTransport, id: string) {
  return t.encode({
    id,
    type: 'order.placed',
    source: 'test',
    time: Date.now(),
    key: undefined,
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from('{}'),
  });
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
  const nc = await connect({ servers: [SERVER] });
  const jsm = await jetstreamManager(nc);
  for (const s of streams.splice(0)) await jsm.streams.delete(s).catch(() => false);
  await nc.close();
});

describe('nats deduplication', () => {
  it('stores a second publish with the same envelope id once, and twice when deduplicate is off', async () => {
    for (const deduplicate of [true, false]) {
      const t = await transport({ deduplicate });
      const topic = `dedupe-${randomBytes(4).toString('hex')}`;
      streams.push(topic);
      const id = uuidv7();
      await t.publish(topic, [wire(t, id)], noDeadline());
      await t.publish(topic, [wire(t, id)], noDeadline());
      const stats = await t.stats(topic);
      expect(stats.extras.streamMessages).toBe(deduplicate ? 1 : 2);
    }
  });
});
