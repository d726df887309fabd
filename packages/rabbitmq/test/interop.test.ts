/**
 * The RabbitMQ wire form as plain AMQP clients see it, through the real broker and the public bus: a raw
 * amqplib consumer reads an Omnibus event from native properties, Omnibus handles an event a raw amqplib
 * producer sent with native properties only, and the earlier all-headers form still decodes the same.
 */
import { type Bus, connect as connectBus, defineMessage, type Envelope, silentLogger } from '@omnibus/core';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { names } from '../src/index.js';
import { Fixture, unique, waitFor } from './helpers.js';

const fx = new Fixture();
const buses: Bus[] = [];
afterAll(async () => {
  for (const b of buses.splice(0)) await b.close().catch(() => {});
  await fx.cleanup();
});

const OrderPlaced = defineMessage({
  type: 'order.placed',
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
});

async function bus(service: string): Promise<Bus> {
  const b = await connectBus({ transport: await fx.transport({}, service), service, logger: silentLogger });
  buses.push(b);
  return b;
}

/** A bus subscription on `topic` that records every order.placed envelope it handles. */
async function handled(b: Bus, topic: string, group: string): Promise<Envelope<unknown>[]> {
  const seen: Envelope<unknown>[] = [];
  await b.subscribe({
    topic,
    group,
    handlers: {
      [OrderPlaced.type]: OrderPlaced.handle(async (_data, ctx) => {
        seen.push(ctx.envelope);
      }),
    },
  });
  return seen;
}

describe('interop with plain AMQP clients', () => {
  it('a raw amqplib consumer reads id, type, source, time and data from native properties', async () => {
    const topic = unique('raw-reader');
    const queue = unique('raw-reader-q');
    fx.track(topic);
    fx.extraQueues.add(queue);
    // The raw reader binds its own queue to the topic's exchange, as any AMQP service would.
    const ch = await fx.channel();
    await ch.assertExchange(names.exchange(topic), 'topic', { durable: true });
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    await ch.bindQueue(queue, names.exchange(topic), '#');
    const got: ConsumeMessage[] = [];
    await ch.consume(queue, (m) => {
      if (m) got.push(m);
    });

    const producer = await bus('checkout');
    const before = Date.now();
    const { id } = await producer.publish(topic, OrderPlaced, { orderId: 'o-1', totalCents: 4200 });
    const [m] = await waitFor(() => (got.length > 0 ? got : undefined), 'the raw consumer to receive it');
    const p = m!.properties;
    expect(p.messageId).toBe(id);
    expect(p.type).toBe('order.placed');
    expect(p.appId).toBe('checkout');
    expect(p.contentType).toBe('application/json');
    // No correlation id was given: it is the event's own id, still set for plain readers.
    expect(p.correlationId).toBe(id);
    expect(m!.fields.routingKey).toBe('order.placed');
    expect(JSON.parse(m!.content.toString())).toEqual({ orderId: 'o-1', totalCents: 4200 });
    // AMQP timestamps are whole seconds; the exact milliseconds ride in cloudEvents_time when they matter.
    expect(typeof p.timestamp).toBe('number');
    expect(p.timestamp * 1000).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(p.timestamp * 1000).toBeLessThanOrEqual(Date.now());
    const headers = p.headers ?? {};
    if (headers.cloudEvents_time !== undefined) {
      expect(Math.floor(Date.parse(headers.cloudEvents_time) / 1000)).toBe(p.timestamp);
    }
    // Nothing the properties already say is repeated as a header, and default extensions are left out.
    for (const name of [
      'cloudEvents_id',
      'cloudEvents_type',
      'cloudEvents_source',
      'cloudEvents_correlationid',
      'cloudEvents_schemaversion',
      'cloudEvents_causationid',
      'cloudEvents_datacontenttype',
    ]) {
      expect(headers).not.toHaveProperty(name);
    }
    expect(headers.cloudEvents_specversion).toBe('1.0');
    await ch.close();
  });

  it('an event a raw amqplib producer sent with native properties only is handled by Omnibus', async () => {
    const topic = unique('raw-writer');
    fx.track(topic, 'g');
    const consumer = await bus('orders');
    const seen = await handled(consumer, topic, 'g');
    const ch = await fx.confirmChannel();
    const time = Date.parse('2025-02-03T04:05:06.000Z');
    ch.publish(names.exchange(topic), 'order.placed', Buffer.from('{"orderId":"o-7","totalCents":99}'), {
      persistent: true,
      messageId: 'raw-1',
      type: 'order.placed',
      appId: 'legacy-billing',
      timestamp: time / 1000,
      contentType: 'application/json',
      correlationId: 'req-42',
    });
    // Without a type property the routing key names the type; without correlation_id it is the id.
    ch.publish(names.exchange(topic), 'order.placed', Buffer.from('{"orderId":"o-8","totalCents":1}'), {
      persistent: true,
      messageId: 'raw-2',
      appId: 'legacy-billing',
      contentType: 'application/json',
    });
    await ch.waitForConfirms();
    await ch.close();
    await waitFor(() => seen.length >= 2, 'both raw events handled');
    const byId = new Map(seen.map((e) => [e.id, e]));
    expect(byId.get('raw-1')).toMatchObject({
      type: 'order.placed',
      source: 'legacy-billing',
      time,
      correlationId: 'req-42',
      version: 1,
      contentType: 'application/json',
      headers: {},
      data: { orderId: 'o-7', totalCents: 99 },
    });
    expect(byId.get('raw-2')).toMatchObject({
      type: 'order.placed',
      source: 'legacy-billing',
      correlationId: 'raw-2',
      version: 1,
      data: { orderId: 'o-8', totalCents: 1 },
    });
  });

  it('the earlier form (every attribute as a header too) and the slim form are handled alike', async () => {
    const topic = unique('old-form');
    fx.track(topic, 'g');
    const consumer = await bus('orders');
    const seen = await handled(consumer, topic, 'g');
    const ch = await fx.confirmChannel();
    const time = Date.parse('2024-05-01T10:20:30.456Z');
    const properties = {
      persistent: true,
      contentType: 'application/json',
      type: 'order.placed',
      appId: 'old-omnibus',
      timestamp: Math.floor(time / 1000),
    };
    const body = Buffer.from('{"orderId":"o-1","totalCents":5}');
    // What Omnibus published before the slim wire: native properties and every attribute as a header.
    ch.publish(names.exchange(topic), 'order.placed', body, {
      ...properties,
      messageId: 'old-1',
      correlationId: 'old-1',
      headers: {
        cloudEvents_specversion: '1.0',
        cloudEvents_id: 'old-1',
        cloudEvents_type: 'order.placed',
        cloudEvents_source: 'old-omnibus',
        cloudEvents_time: '2024-05-01T10:20:30.456Z',
        cloudEvents_correlationid: 'old-1',
        cloudEvents_schemaversion: '1',
        tenant: 'acme',
      },
    });
    // The slim form of the same event.
    ch.publish(names.exchange(topic), 'order.placed', body, {
      ...properties,
      messageId: 'slim-1',
      correlationId: 'slim-1',
      headers: {
        cloudEvents_specversion: '1.0',
        cloudEvents_time: '2024-05-01T10:20:30.456Z',
        tenant: 'acme',
      },
    });
    await ch.waitForConfirms();
    await ch.close();
    await waitFor(() => seen.length >= 2, 'both forms handled');
    const byId = new Map(seen.map((e) => [e.id, e]));
    const comparable = (e: Envelope<unknown> | undefined) => ({
      type: e?.type,
      source: e?.source,
      time: e?.time,
      correlationIdIsId: e?.correlationId === e?.id,
      causationId: e?.causationId,
      version: e?.version,
      contentType: e?.contentType,
      headers: e?.headers,
      data: e?.data,
    });
    expect(comparable(byId.get('old-1'))).toEqual(comparable(byId.get('slim-1')));
    expect(comparable(byId.get('slim-1'))).toEqual({
      type: 'order.placed',
      source: 'old-omnibus',
      time,
      correlationIdIsId: true,
      causationId: undefined,
      version: 1,
      contentType: 'application/json',
      headers: { tenant: 'acme' },
      data: { orderId: 'o-1', totalCents: 5 },
    });
  });

  it('a raw message without message_id or app_id is not taken for an event: it is dead-lettered as undecodable', async () => {
    const topic = unique('raw-incomplete');
    fx.track(topic, 'g');
    const consumer = await bus('orders');
    const seen = await handled(consumer, topic, 'g');
    const ch = await fx.confirmChannel();
    ch.publish(names.exchange(topic), 'order.placed', Buffer.from('{"orderId":"x","totalCents":1}'), {
      persistent: true,
      type: 'order.placed',
      appId: 'legacy',
    });
    ch.publish(names.exchange(topic), 'order.placed', Buffer.from('{"orderId":"y","totalCents":1}'), {
      persistent: true,
      messageId: 'no-source',
      type: 'order.placed',
    });
    await ch.waitForConfirms();
    await ch.close();
    const dead = await fx.drain(names.deadLetterQueue(topic, 'g'), 2);
    expect(dead.map((d) => d.properties.headers?.['x-omnibus-dead-letter-reason'])).toEqual([
      'decode',
      'decode',
    ]);
    expect(seen).toEqual([]);
  });
});
