/** Interop with the official CloudEvents SDK's Kafka binding, both directions, through the real broker. */

import { noDeadline } from '@omnibus/core/kit';
import { CloudEvent, Kafka as CloudEventsKafka, type KafkaMessage } from 'cloudevents';
import type { Consumer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaTransport } from '../src/index.js';
import {
  Collector,
  connected,
  deleteTopics,
  envelope,
  rawKafka,
  requireBroker,
  unique,
  waitFor,
} from './helpers.js';

const PREFIX = unique('omnibus-kce');

describe('CloudEvents SDK interop (Kafka binding, binary mode)', () => {
  let transport: KafkaTransport;
  const consumers: Consumer[] = [];

  beforeAll(async () => {
    await requireBroker();
    transport = await connected();
  });

  afterAll(async () => {
    for (const c of consumers) await c.disconnect().catch(() => {});
    await transport?.close();
    await deleteTopics(PREFIX);
  });

  it('a record the transport produced is read by Kafka.toEvent with every attribute intact', async () => {
    const topic = `${PREFIX}-out`;
    const env = envelope({
      key: 'customer-42',
      causationId: 'cause-1',
      correlationId: 'corr-1',
      version: 3,
      time: Date.parse('2025-03-04T05:06:07.089Z'),
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      headers: { tenant: 'acme' },
      data: Buffer.from(JSON.stringify({ orderId: 'o-1', totalCents: 4200 })),
    });
    await transport.publish(topic, [transport.encode(env)], noDeadline());

    const consumer = rawKafka().consumer({ groupId: unique('ce-reader'), maxWaitTimeInMs: 200 });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const messages: KafkaMessage[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        messages.push({ key: message.key!.toString(), value: message.value!, headers, body: message.value });
      },
    });
    const message = await waitFor('the record', () => messages[0]);
    expect(CloudEventsKafka.isEvent(message)).toBe(true);
    const event = CloudEventsKafka.toEvent(message) as CloudEvent<{ orderId: string; totalCents: number }>;
    expect(event.specversion).toBe('1.0');
    expect(event.id).toBe(env.id);
    expect(event.type).toBe(env.type);
    expect(event.source).toBe(env.source);
    expect(event.time).toBe('2025-03-04T05:06:07.089Z');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.correlationid).toBe('corr-1');
    expect(event.causationid).toBe('cause-1');
    expect(String(event.schemaversion)).toBe('3');
    expect(event.partitionkey).toBe('customer-42');
    expect(event.data).toEqual({ orderId: 'o-1', totalCents: 4200 });
    // Trace context and user headers stay plain headers, where tracing tools look for them.
    expect(message.headers.traceparent).toBe(env.traceparent);
    expect(message.headers.tenant).toBe('acme');
  });

  it('the slim form: extensions at their defaults are absent for the SDK, and the SDK sees a valid event', async () => {
    const topic = `${PREFIX}-slim`;
    const env = envelope({ version: 1, causationId: undefined, key: 'customer-1' });
    expect(env.correlationId).toBe(env.id);
    const wire = transport.encode(env);
    expect(Object.keys(wire.headers).sort()).toEqual(
      [
        'ce_specversion',
        'ce_id',
        'ce_type',
        'ce_source',
        'ce_time',
        'content-type',
        'ce_partitionkey',
      ].sort(),
    );
    await transport.publish(topic, [wire], noDeadline());

    const consumer = rawKafka().consumer({ groupId: unique('ce-slim-reader'), maxWaitTimeInMs: 200 });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const messages: KafkaMessage[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        messages.push({ key: message.key!.toString(), value: message.value!, headers, body: message.value });
      },
    });
    const message = await waitFor('the slim record', () => messages[0]);
    const event = CloudEventsKafka.toEvent(message) as CloudEvent<unknown>;
    // The SDK validates the event (id, type, source, specversion) while building it.
    expect(event.validate()).toBe(true);
    expect(event.id).toBe(env.id);
    expect(event.type).toBe(env.type);
    expect(event.source).toBe(env.source);
    expect(event.partitionkey).toBe('customer-1');
    expect(event.correlationid).toBeUndefined();
    expect(event.schemaversion).toBeUndefined();
    expect(event.causationid).toBeUndefined();
  });

  it('SDK events with and without the default extensions decode to the same envelope', async () => {
    const topic = `${PREFIX}-defaults`;
    const base = {
      type: 'order.placed',
      source: '/sdk/tests',
      time: '2025-01-02T03:04:05.678Z',
      datacontenttype: 'application/json',
      data: { orderId: 'o-1' },
    };
    // The earlier Omnibus form spelled the defaults out; the slim form and most foreign producers do not.
    const explicit = new CloudEvent({
      ...base,
      id: 'sdk-explicit',
      correlationid: 'sdk-explicit',
      schemaversion: '1',
    });
    const implicit = new CloudEvent({ ...base, id: 'sdk-implicit' });
    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );
    const producer = rawKafka().producer();
    await producer.connect();
    const records = [explicit, implicit].map((event) => {
      const message = CloudEventsKafka.binary(event);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers)) if (v !== undefined) headers[k] = String(v);
      return { value: JSON.stringify(message.value), headers };
    });
    await producer.send({ topic, messages: records });
    await producer.disconnect();

    await waitFor('both deliveries', () => (c.deliveries.length >= 2 ? true : undefined));
    const decoded = c.deliveries.map((d) => transport.decode(d.wire));
    const byId = new Map(decoded.map((e) => [e.id, e]));
    const comparable = (id: string) => {
      const e = byId.get(id)!;
      return {
        type: e.type,
        source: e.source,
        time: e.time,
        correlationIsId: e.correlationId === id,
        causationId: e.causationId,
        version: e.version,
        headers: e.headers,
        data: Buffer.from(e.data).toString(),
      };
    };
    expect(comparable('sdk-explicit')).toEqual(comparable('sdk-implicit'));
    expect(comparable('sdk-implicit')).toMatchObject({ correlationIsId: true, version: 1, headers: {} });
    await sub.close();
  });

  it('a record made by Kafka.binary(new CloudEvent(...)) is decoded by the transport', async () => {
    const topic = `${PREFIX}-in`;
    const event = new CloudEvent({
      id: 'sdk-event-1',
      type: 'order.placed',
      source: '/sdk/tests',
      time: '2025-01-02T03:04:05.678Z',
      datacontenttype: 'application/json',
      partitionkey: 'customer-7',
      correlationid: 'corr-sdk',
      schemaversion: '2',
      data: { orderId: 'o-9' },
    });
    const message = CloudEventsKafka.binary(event);
    const c = new Collector();
    c.listener = (d) => void d.ack();
    const sub = await transport.subscribe(
      { topic, group: 'g', patterns: ['#'], maxInFlight: 4 },
      c.onDelivery,
    );

    const producer = rawKafka().producer();
    await producer.connect();
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(message.headers)) if (v !== undefined) headers[k] = String(v);
    await producer.send({
      topic,
      messages: [{ key: String(message.key), value: JSON.stringify(message.value), headers }],
    });
    await producer.disconnect();

    const delivery = await waitFor('the delivery', () => c.deliveries[0]);
    const decoded = transport.decode(delivery.wire);
    expect(decoded).toMatchObject({
      id: 'sdk-event-1',
      type: 'order.placed',
      source: '/sdk/tests',
      time: Date.parse('2025-01-02T03:04:05.678Z'),
      contentType: 'application/json',
      key: 'customer-7',
      correlationId: 'corr-sdk',
      version: 2,
    });
    expect(JSON.parse(Buffer.from(decoded.data).toString())).toEqual({ orderId: 'o-9' });
    expect(decoded.headers).toEqual({});
    await sub.close();
  });
});
