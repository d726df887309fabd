import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { WireMessage } from '../envelope.js';
import { ControlHeader, type RawEnvelope } from '../envelope.js';
import { ConfigError, ConnectionError, PublishError, UnsupportedError } from '../errors.js';
import { noDeadline } from '../kit/publish.js';
import { eventually } from '../testing/index.js';
import type { Delivery } from '../transport.js';
import { type MemoryTransport, memoryBroker, memoryTransport } from './transport.js';

/** A transport-level publish with no deadline (the bus normally supplies the caller's). */
function publishTo(t: MemoryTransport, topic: string, messages: WireMessage[]): Promise<void> {
  return t.publish(topic, messages, noDeadline());
}

function raw(type: string, n: number, extra: Partial<RawEnvelope> = {}): RawEnvelope {
  return {
    id: `id-${n}`,
    type,
    source: 's',
    time: 1000 + n,
    correlationId: `c-${n}`,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from(String(n)),
    ...extra,
  };
}

async function connected(name = `mem-${randomUUID()}`) {
  const t = memoryTransport({ name });
  await t.connect();
  return t;
}

function collector() {
  const got: Delivery[] = [];
  return {
    got,
    onDelivery: (d: Delivery) => void got.push(d),
    ids: () => got.map((d) => d.wire.headers.ce_id),
  };
}

describe('memory transport', () => {
  it('declares its capabilities', () => {
    const t = memoryTransport({ name: randomUUID(), maxMessageBytes: 1234 });
    expect(t.capabilities).toMatchObject({
      consumerGroups: true,
      fanOut: true,
      rejectsUnroutable: true,
      ordering: 'process',
      replay: true,
      maxMessageBytes: 1234,
      persistent: false,
    });
    expect(memoryTransport({ name: randomUUID() }).capabilities.maxMessageBytes).toBe(1024 * 1024);
  });

  it.each([0, -1, 1.5])('rejects maxMessageBytes %s', (maxMessageBytes) => {
    expect(() => memoryTransport({ maxMessageBytes })).toThrow(ConfigError);
  });

  it('refuses to work before connect and after close', async () => {
    const t = memoryTransport({ name: randomUUID() });
    await expect(publishTo(t, 't', [t.encode(raw('x', 1))])).rejects.toBeInstanceOf(PublishError);
    await expect(
      t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 1 }, () => {}),
    ).rejects.toBeInstanceOf(ConnectionError);
    await t.connect();
    expect((await t.health()).ok).toBe(true);
    await t.close();
    expect((await t.health()).ok).toBe(false);
  });

  it('a group subscription needs a group', async () => {
    const t = await connected();
    await expect(
      t.subscribe({ topic: 't', patterns: ['#'], maxInFlight: 1 }, () => {}),
    ).rejects.toBeInstanceOf(UnsupportedError);
  });

  it('round-trips envelopes through CloudEvents binary headers', () => {
    const t = memoryTransport({ name: randomUUID() });
    const env = raw('order.placed', 1, { key: 'k', headers: { tenant: 'a' } });
    const back = t.decode(t.encode(env));
    expect({ ...back, data: Buffer.from(back.data).toString() }).toEqual({ ...env, data: '1' });
  });

  it('fans out to groups, routes by pattern, and shares a group between its consumers', async () => {
    const t = await connected();
    const a1 = collector();
    const a2 = collector();
    const b = collector();
    await t.subscribe({ topic: 't', group: 'a', patterns: ['order.*'], maxInFlight: 100 }, a1.onDelivery);
    await t.subscribe({ topic: 't', group: 'a', patterns: ['order.*'], maxInFlight: 100 }, a2.onDelivery);
    await t.subscribe({ topic: 't', group: 'b', patterns: ['order.placed'], maxInFlight: 100 }, b.onDelivery);
    await publishTo(
      t,
      't',
      [1, 2, 3, 4].map((n) => t.encode(raw(n === 4 ? 'order.shipped' : 'order.placed', n))),
    );
    await publishTo(t, 't', [t.encode(raw('invoice.sent', 5))]);
    await eventually(() => a1.got.length + a2.got.length === 4 && b.got.length === 3);
    expect(a1.got.length).toBe(2);
    expect(a2.got.length).toBe(2);
    expect(b.ids()).toEqual(['id-1', 'id-2', 'id-3']);
  });

  it('never hands a consumer more than maxInFlight unsettled deliveries', async () => {
    const t = await connected();
    const c = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 2 }, c.onDelivery);
    await publishTo(
      t,
      't',
      [1, 2, 3, 4, 5].map((n) => t.encode(raw('x', n))),
    );
    await eventually(() => c.got.length === 2);
    expect(await t.stats('t', 'g')).toMatchObject({ depth: 3, inFlight: 2, extras: { consumers: 1 } });
    await c.got[0]!.ack();
    await eventually(() => c.got.length === 3);
    expect(c.ids()).toEqual(['id-1', 'id-2', 'id-3']);
  });

  it('pause stops deliveries and resume restarts them', async () => {
    const t = await connected();
    const c = collector();
    const sub = await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 10 }, c.onDelivery);
    sub.pause();
    await publishTo(t, 't', [t.encode(raw('x', 1))]);
    await eventually(async () => (await t.stats('t', 'g')).depth === 1);
    await new Promise((r) => setImmediate(r));
    expect(c.got).toHaveLength(0);
    sub.resume();
    await eventually(() => c.got.length === 1);
  });

  it('release puts a message back at the front, marked redelivered', async () => {
    const t = await connected();
    const c = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 1 }, c.onDelivery);
    await publishTo(
      t,
      't',
      [1, 2].map((n) => t.encode(raw('x', n))),
    );
    await eventually(() => c.got.length === 1);
    expect(c.got[0]!.redelivered).toBe(false);
    await c.got[0]!.release();
    await eventually(() => c.got.length === 2);
    expect(c.ids()).toEqual(['id-1', 'id-1']);
    expect(c.got[1]!.redelivered).toBe(true);
  });

  it('retryLater redelivers after the delay with the control headers merged in', async () => {
    const t = await connected();
    const c = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 5 }, c.onDelivery);
    await publishTo(t, 't', [t.encode(raw('x', 1))]);
    await eventually(() => c.got.length === 1);
    await c.got[0]!.retryLater(30, { [ControlHeader.attempts]: '2' });
    expect(await t.stats('t', 'g')).toMatchObject({ delayed: 1, inFlight: 0 });
    await eventually(() => c.got.length === 2);
    expect(c.got[1]!.previousAttempts).toBe(2);
    expect(c.got[1]!.redelivered).toBe(true);
    expect(c.got[1]!.wire.headers.ce_id).toBe('id-1');
    expect((await t.stats('t', 'g')).delayed).toBe(0);
  });

  it('deadLetter moves the message to the group DLQ with the headers', async () => {
    const name = `mem-${randomUUID()}`;
    const t = await connected(name);
    const c = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 5 }, c.onDelivery);
    await publishTo(t, 't', [t.encode(raw('x', 1))]);
    await eventually(() => c.got.length === 1);
    await c.got[0]!.deadLetter({ [ControlHeader.reason]: 'decode' });
    const dlq = memoryBroker(name).deadLetters('t', 'g');
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.headers[ControlHeader.reason]).toBe('decode');
    expect(dlq[0]!.headers.ce_id).toBe('id-1');
    expect(memoryBroker(name).deadLetters('t', 'nope')).toEqual([]);
    expect(await t.stats('t')).toMatchObject({ deadLettered: 1 });
  });

  it('a delivery can be settled only once', async () => {
    const t = await connected();
    const c = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 5 }, c.onDelivery);
    await publishTo(t, 't', [t.encode(raw('x', 1))]);
    await eventually(() => c.got.length === 1);
    await c.got[0]!.ack();
    await expect(c.got[0]!.ack()).rejects.toMatchObject({ code: 'ALREADY_SETTLED' });
  });

  it('closing a subscription gives its unsettled deliveries back to the group', async () => {
    const t = await connected();
    const first = collector();
    const sub = await t.subscribe(
      { topic: 't', group: 'g', patterns: ['#'], maxInFlight: 5 },
      first.onDelivery,
    );
    await publishTo(
      t,
      't',
      [1, 2].map((n) => t.encode(raw('x', n))),
    );
    await eventually(() => first.got.length === 2);
    await sub.close();
    const second = collector();
    await t.subscribe({ topic: 't', group: 'g', patterns: ['#'], maxInFlight: 5 }, second.onDelivery);
    await eventually(() => second.got.length === 2);
    expect(second.got.every((d) => d.redelivered)).toBe(true);
    // Settling a delivery of the closed subscription changes nothing.
    await first.got[0]!.ack();
    expect((await t.stats('t', 'g')).inFlight).toBe(2);
  });

  it('a group created after publishing gets nothing older (like a RabbitMQ queue); provision binds it early', async () => {
    const t = await connected();
    await t.provision('t', [{ group: 'early', patterns: ['#'] }]);
    await publishTo(t, 't', [t.encode(raw('x', 1))]);
    const early = collector();
    const late = collector();
    await t.subscribe({ topic: 't', group: 'early', patterns: ['x'], maxInFlight: 5 }, early.onDelivery);
    await t.subscribe({ topic: 't', group: 'late', patterns: ['#'], maxInFlight: 5 }, late.onDelivery);
    await eventually(() => early.got.length === 1);
    expect(late.got).toHaveLength(0);
  });

  it.each([
    ['earliest', ['id-1', 'id-2', 'id-3']],
    ['latest', []],
    [{ offset: 1 }, ['id-2', 'id-3']],
    [{ timestamp: 1003 }, ['id-3']],
    [{ timestamp: 9999 }, []],
  ] as const)('replay from %o', async (from, expected) => {
    const t = await connected();
    await publishTo(
      t,
      't',
      [1, 2, 3].map((n) => t.encode(raw('x', n))),
    );
    await publishTo(t, 't', [t.encode(raw('other', 4))]);
    const c = collector();
    const sub = await t.subscribe({ topic: 't', patterns: ['x'], maxInFlight: 1, replay: from }, (d) => {
      c.onDelivery(d);
      void d.ack();
    });
    if (expected.length > 0) await eventually(() => c.got.length === expected.length);
    await new Promise((r) => setImmediate(r));
    expect(c.ids()).toEqual(expected);
    await sub.close();
  });

  it('stats of an unknown topic are zero', async () => {
    const t = await connected();
    expect(await t.stats('nothing')).toEqual({
      depth: 0,
      inFlight: 0,
      delayed: 0,
      deadLettered: 0,
      lag: null,
      oldestAgeMs: null,
      extras: { consumers: 0 },
    });
  });

  it('the broker keeps at most `retention` messages for replay', () => {
    const b = memoryBroker(`ret-${randomUUID()}`, 2);
    for (let i = 0; i < 5; i++) b.publish('t', { body: Buffer.from(String(i)), headers: { ce_type: 'x' } });
    expect(b.topic('t').log.map((w) => Buffer.from(w.body).toString())).toEqual(['3', '4']);
  });
});
