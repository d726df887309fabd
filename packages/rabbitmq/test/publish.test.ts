/**
 * Publishing: confirms, the wire format as a raw AMQP client sees it, the onNoSubscribers policy, oversized
 * messages. The publish deadline (withdrawn / unknown) is in deadline.test.ts.
 */
import { PublishError } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { isBrokerHeader, names } from '../src/index.js';
import { envelope, Fixture, unique } from './helpers.js';

const fx = new Fixture();
afterAll(() => fx.cleanup());

/** The headers a message was published with: a quorum queue adds its own `x-delivery-count`. */
function withoutBrokerHeaders(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers ?? {})) if (!isBrokerHeader(name)) out[name] = value;
  return out;
}

describe('publish', () => {
  it('resolves once confirmed; CloudEvents attributes travel in native AMQP properties, the rest as headers', async () => {
    const topic = unique('wire');
    fx.track(topic, 'g');
    const t = await fx.transport();
    await t.provision(topic, [{ group: 'g', patterns: ['order.*'] }]);
    const env = envelope('order.placed', {
      key: 'customer-7',
      causationId: 'cause-1',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      headers: { tenant: 'acme' },
      time: Date.parse('2024-05-01T10:20:30.456Z'),
    });
    await t.publish(topic, [t.encode(env)]);

    const [m] = await fx.drain(names.groupQueue(topic, 'g'), 1);
    expect(m!.fields.routingKey).toBe('order.placed');
    expect(m!.content.toString()).toBe('{"n":1}');
    const p = m!.properties;
    expect(p.messageId).toBe(env.id);
    expect(p.correlationId).toBe(env.correlationId);
    expect(p.type).toBe('order.placed');
    expect(p.appId).toBe('adapter-test');
    expect(p.contentType).toBe('application/json');
    expect(p.deliveryMode).toBe(2);
    expect(p.timestamp).toBe(Math.floor(Date.parse('2024-05-01T10:20:30.456Z') / 1000));
    // Only what has no native property is a header; extensions at their defaults are left out.
    expect(withoutBrokerHeaders(p.headers)).toEqual({
      cloudEvents_specversion: '1.0',
      cloudEvents_time: '2024-05-01T10:20:30.456Z',
      cloudEvents_partitionkey: 'customer-7',
      cloudEvents_causationid: 'cause-1',
      traceparent: env.traceparent,
      tenant: 'acme',
    });
  });

  it('a time in whole seconds travels in the timestamp property alone; other extensions as headers', async () => {
    const topic = unique('wire-seconds');
    fx.track(topic, 'g');
    const t = await fx.transport();
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const env = envelope('order.placed', {
      time: Date.parse('2024-05-01T10:20:30.000Z'),
      correlationId: 'corr-9',
      version: 4,
    });
    await t.publish(topic, [t.encode(env)]);
    const [m] = await fx.drain(names.groupQueue(topic, 'g'), 1);
    const p = m!.properties;
    expect(p.timestamp).toBe(Date.parse('2024-05-01T10:20:30.000Z') / 1000);
    expect(p.correlationId).toBe('corr-9');
    expect(withoutBrokerHeaders(p.headers)).toEqual({
      cloudEvents_specversion: '1.0',
      cloudEvents_schemaversion: '4',
    });
  });

  it("by default (onNoSubscribers 'accept') a publish nobody receives resolves, as on every transport", async () => {
    const topic = unique('accept');
    fx.track(topic, 'g');
    const t = await fx.transport();
    // A topic with no group at all: the exchange is declared, nothing is bound, the broker drops it.
    const empty = unique('nobody');
    fx.track(empty);
    await t.publish(empty, [t.encode(envelope('shipment.booked'))]);
    // A type no group's binding matches, published beside one that is routed.
    await t.provision(topic, [{ group: 'g', patterns: ['order.placed'] }]);
    const routed = envelope('order.placed');
    await t.publish(topic, [t.encode(envelope('invoice.sent')), t.encode(routed)]);
    const [m] = await fx.drain(names.groupQueue(topic, 'g'), 1);
    expect(m!.properties.messageId).toBe(routed.id);
    expect(await fx.depth(names.groupQueue(topic, 'g'))).toBe(0);
  });

  it("with onNoSubscribers 'reject' an unrouted type is UNROUTABLE (basic.return), and the rest is still delivered", async () => {
    const topic = unique('unroutable');
    fx.track(topic, 'g');
    const t = await fx.transport({ onNoSubscribers: 'reject' });
    await t.provision(topic, [{ group: 'g', patterns: ['order.placed'] }]);
    const err = await t.publish(topic, [t.encode(envelope('invoice.sent'))]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe('UNROUTABLE');
    expect((err as Error).message).toContain('invoice.sent');

    // An exchange with no queue at all is unroutable too.
    const empty = unique('empty');
    fx.track(empty);
    await expect(t.publish(empty, [t.encode(envelope('order.placed'))])).rejects.toMatchObject({
      code: 'UNROUTABLE',
    });

    // A mixed batch: the routable ones are confirmed, the call reports the failure.
    const ok = envelope('order.placed');
    await expect(
      t.publish(topic, [
        t.encode(ok),
        t.encode(envelope('invoice.sent')),
        t.encode(envelope('order.placed')),
      ]),
    ).rejects.toMatchObject({ code: 'UNROUTABLE' });
    const got = await fx.drain(names.groupQueue(topic, 'g'), 2);
    expect(got[0]!.properties.messageId).toBe(ok.id);
  });

  it("with provision: 'verify' a missing exchange is UNROUTABLE and the shared confirm channel survives", async () => {
    const topic = unique('verify-pub');
    fx.track(topic, 'g');
    const creator = await fx.transport();
    await creator.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const t = await fx.transport({ provision: 'verify' });
    const missing = unique('missing');
    await expect(t.publish(missing, [t.encode(envelope('a.b'))])).rejects.toMatchObject({
      code: 'UNROUTABLE',
    });
    await t.publish(topic, [t.encode(envelope('a.b'))]);
    expect(await fx.depth(names.groupQueue(topic, 'g'))).toBe(1);
  });

  it('keeps thousands of publishes within a small confirm window and confirms every one', async () => {
    const topic = unique('window');
    fx.track(topic, 'g');
    const t = await fx.transport({ confirmWindow: 50 });
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const batch = Array.from({ length: 3000 }, (_, i) =>
      t.encode(envelope('bulk.item', { headers: { i: String(i) } })),
    );
    let maxInFlight = 0;
    const probe = setInterval(() => {
      void t.health().then((h) => {
        maxInFlight = Math.max(maxInFlight, Number(h.details.publishesInFlight));
      });
    }, 1);
    await Promise.all([
      t.publish(topic, batch.slice(0, 1000)),
      ...batch.slice(1000).map((m) => t.publish(topic, [m])),
    ]);
    clearInterval(probe);
    expect(maxInFlight).toBeGreaterThan(0);
    expect(maxInFlight).toBeLessThanOrEqual(50);
    expect(await fx.depth(names.groupQueue(topic, 'g'))).toBe(3000);
  });

  it('refuses a message larger than maxMessageBytes before sending it', async () => {
    const topic = unique('big');
    fx.track(topic, 'g');
    const t = await fx.transport({ maxMessageBytes: 1024 });
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const big = envelope('big.one', { data: Buffer.alloc(2048) });
    await expect(t.publish(topic, [t.encode(big)])).rejects.toMatchObject({ code: 'TOO_LARGE' });
    expect(await fx.depth(names.groupQueue(topic, 'g'))).toBe(0);
  });

  it('a closed transport rejects publishes with CLOSED', async () => {
    const t = await fx.transport();
    await t.close();
    await expect(t.publish('whatever', [t.encode(envelope('a.b'))])).rejects.toMatchObject({
      code: 'CLOSED',
    });
  });
});
