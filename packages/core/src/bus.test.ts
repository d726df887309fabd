/** The Bus's publishing side, connect(), context propagation and health, on the memory transport. */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Bus, type ConnectOptions, connect } from './bus.js';
import { rawCodec } from './codec.js';
import { runWithContext } from './context.js';
import type { Envelope, WireMessage } from './envelope.js';
import { ConfigError, PublishError, UnsupportedError, ValidationError } from './errors.js';
import type { LogFields, Logger } from './logger.js';
import { memoryBroker, memoryTransport } from './memory/transport.js';
import { defineMessage } from './message.js';
import { capturePublished, eventually, recordOutcomes } from './testing/index.js';
import { uuidv7Time } from './uuid.js';

const Order = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
});
const Shipped = defineMessage({ type: 'order.shipped', schema: z.object({ orderId: z.string() }) });

const PARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 2000 })));
});

async function setup(options: Partial<ConnectOptions> & { maxMessageBytes?: number } = {}) {
  const { maxMessageBytes, ...connectOptions } = options;
  const broker = `bus-${randomUUID()}`;
  const transport = memoryTransport({ name: broker, ...(maxMessageBytes ? { maxMessageBytes } : {}) });
  const bus = await connect({ transport, service: 'checkout', ...connectOptions });
  buses.push(bus);
  const topic = `t-${randomUUID().slice(0, 8)}`;
  /** Everything the broker has accepted on the topic. */
  const sent = (): WireMessage[] => memoryBroker(broker).topic(topic).log;
  return { bus, broker, topic, transport, sent };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('publish', () => {
  it('builds the envelope: id, source, time, version, content type, correlation', async () => {
    const { bus, topic, sent } = await setup();
    const cap = capturePublished(bus);
    const before = Date.now();
    const { id } = await bus.publish(topic, Order, { orderId: 'o-1', totalCents: 5 });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(uuidv7Time(id)).toBeGreaterThanOrEqual(before);
    expect(cap.messages).toHaveLength(1);
    const { envelope, topic: capturedTopic } = cap.messages[0]!;
    expect(capturedTopic).toBe(topic);
    expect(envelope).toMatchObject({
      id,
      type: 'order.placed',
      source: 'checkout',
      version: 2,
      contentType: 'application/json',
      correlationId: id,
      headers: {},
      data: { orderId: 'o-1', totalCents: 5 },
    });
    expect(envelope.causationId).toBeUndefined();
    expect(envelope.traceparent).toBeUndefined();
    expect(envelope.key).toBeUndefined();
    expect(envelope.time).toBeGreaterThanOrEqual(before);
    expect(sent()).toHaveLength(1);
    expect(bus.counters.published).toBe(1);
  });

  it('takes id, key, headers, time, correlation and causation from the options', async () => {
    const { bus, topic } = await setup();
    const cap = capturePublished(bus);
    const { id } = await bus.publish(
      topic,
      Order,
      { orderId: 'o-1', totalCents: 5 },
      {
        id: 'my-id',
        key: 'k',
        headers: { tenant: 'acme' },
        time: 1234,
        correlationId: 'corr',
        causationId: 'cause',
      },
    );
    expect(id).toBe('my-id');
    expect(cap.messages[0]!.envelope).toMatchObject({
      id: 'my-id',
      key: 'k',
      headers: { tenant: 'acme' },
      time: 1234,
      correlationId: 'corr',
      causationId: 'cause',
    });
  });

  it('a typed publish with bad data rejects with ValidationError and sends nothing', async () => {
    const { bus, topic, sent } = await setup();
    const cap = capturePublished(bus);
    const err = await rejection(bus.publish(topic, Order, { orderId: 1 } as never));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toContain('orderId');
    expect(sent()).toHaveLength(0);
    expect(cap.messages).toHaveLength(0);
    expect(bus.counters.published).toBe(0);
  });

  it('publishes the validated (schema output) data', async () => {
    const { bus, topic } = await setup();
    const Trimmed = defineMessage({ type: 'trimmed', schema: z.object({ name: z.string().trim() }) });
    const cap = capturePublished(bus);
    await bus.publish(topic, Trimmed, { name: '  x  ' });
    expect(cap.messages[0]!.envelope.data).toEqual({ name: 'x' });
  });

  it('untyped publish: a type and plain data, version 1 by default', async () => {
    const { bus, topic } = await setup();
    const cap = capturePublished(bus);
    await bus.publish(topic, { type: 'note.added', data: { text: 'hi' } });
    await bus.publish(topic, { type: 'note.added', data: { text: 'hi' }, version: 4 });
    expect(cap.messages.map((m) => m.envelope.version)).toEqual([1, 4]);
  });

  it.each([
    [{ type: '', data: 1 }, 'type'],
    [{ data: 1 }, 'type'],
    [null, 'type'],
  ])('untyped publish of %o fails naming %s', async (message, field) => {
    const { bus, topic, sent } = await setup();
    const err = (await rejection(bus.publish(topic, message as never))) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe(field);
    expect(sent()).toHaveLength(0);
  });

  it('an empty topic is a ConfigError', async () => {
    const { bus } = await setup();
    const err = (await rejection(bus.publish('', { type: 'x', data: 1 }))) as ConfigError;
    expect(err.field).toBe('topic');
  });

  it('a content type without a codec is a ConfigError', async () => {
    const { bus, topic } = await setup();
    const err = (await rejection(
      bus.publish(topic, { type: 'x', data: 1 }, { contentType: 'application/x-protobuf' }),
    )) as ConfigError;
    expect(err.field).toBe('contentType');
  });

  it('raw bytes travel with the raw codec; +json types with the JSON codec', async () => {
    const { bus, topic } = await setup();
    const outcomes = recordOutcomes(bus);
    const got: unknown[] = [];
    await bus.subscribe({ topic, group: 'g', handlers: { '#': (d) => void got.push(d) } });
    const a = await bus.publish(
      topic,
      { type: 'blob', data: Buffer.from([1, 2, 3]) },
      { contentType: 'application/octet-stream' },
    );
    const b = await bus.publish(
      topic,
      { type: 'doc', data: { a: 1 } },
      { contentType: 'application/vnd.x+json' },
    );
    await outcomes.settled([a.id, b.id]);
    expect(got).toContainEqual(Buffer.from([1, 2, 3]));
    expect(got).toContainEqual({ a: 1 });
  });

  it("a definition's codec decides the content type", async () => {
    const { bus, topic } = await setup();
    const Blob = defineMessage({
      type: 'blob',
      schema: z.custom<Uint8Array>((v) => v instanceof Uint8Array),
      codec: rawCodec,
    });
    const cap = capturePublished(bus);
    await bus.publish(topic, Blob, Buffer.from('abc'));
    expect(cap.messages[0]!.envelope.contentType).toBe('application/octet-stream');
  });

  describe('size limit', () => {
    it('a message over the transport maximum is a PublishError TOO_LARGE and nothing is sent', async () => {
      const { bus, topic, sent } = await setup({ maxMessageBytes: 200 });
      const err = (await rejection(
        bus.publish(topic, { type: 'x', data: { text: 'a'.repeat(300) } }),
      )) as PublishError;
      expect(err).toBeInstanceOf(PublishError);
      expect(err.code).toBe('TOO_LARGE');
      expect(err.retryable).toBe(false);
      expect(err.details).toMatchObject({ max: 200 });
      expect(err.details.size).toBeGreaterThan(200);
      expect(err.message).toContain('at most 200');
      expect(sent()).toHaveLength(0);
      expect(bus.counters.publishFailed).toBe(1);
    });

    it('a message of exactly the maximum is accepted', async () => {
      const { bus, topic, sent } = await setup({ maxMessageBytes: 400 });
      const probe = (await rejection(
        bus.publish(topic, { type: 'x', data: 'a'.repeat(500) }, { id: 'fixed-id' }),
      )) as PublishError;
      const over = (probe.details.size as number) - 400;
      await bus.publish(topic, { type: 'x', data: 'a'.repeat(500 - over) }, { id: 'fixed-id', time: 0 });
      expect(sent()).toHaveLength(1);
      const err = (await rejection(
        bus.publish(topic, { type: 'x', data: 'a'.repeat(501 - over) }, { id: 'fixed-id', time: 0 }),
      )) as PublishError;
      expect(err.code).toBe('TOO_LARGE');
    });
  });

  describe('publishTimeoutMs', () => {
    it('a publish the broker never confirms rejects with OUTCOME_UNKNOWN when the transport cannot withdraw it', async () => {
      const transport = memoryTransport({ name: `bus-${randomUUID()}` });
      transport.publish = () => new Promise<void>(() => {});
      const bus = await connect({ transport, service: 'svc', publishTimeoutMs: 50 });
      buses.push(bus);
      const started = Date.now();
      const err = (await rejection(bus.publish('t', { type: 'x', data: 1 }))) as PublishError;
      expect(err).toBeInstanceOf(PublishError);
      expect(err.code).toBe('OUTCOME_UNKNOWN');
      expect(err.retryable).toBe(true);
      expect(err.message).toContain('50 ms');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(bus.counters).toMatchObject({ published: 0, publishFailed: 1 });
    });

    it('a publish the transport withdrew at the deadline rejects with TIMEOUT: never sent', async () => {
      const transport = memoryTransport({ name: `bus-${randomUUID()}` });
      let deadlineAt = 0;
      transport.publish = (_topic, _messages, call) => {
        deadlineAt = call.deadlineAt;
        call.onAbandon(() => 'withdrawn');
        return new Promise<void>(() => {});
      };
      const bus = await connect({ transport, service: 'svc', publishTimeoutMs: 50 });
      buses.push(bus);
      const before = Date.now();
      const err = (await rejection(bus.publish('t', { type: 'x', data: 1 }))) as PublishError;
      expect(err.code).toBe('TIMEOUT');
      expect(err.details).toMatchObject({ outcome: 'not-sent' });
      expect(deadlineAt).toBeGreaterThanOrEqual(before + 50);
      expect(deadlineAt).toBeLessThan(before + 5000);
    });

    it('a broker failure becomes a retryable PublishError without credentials in it', async () => {
      const transport = memoryTransport({ name: `bus-${randomUUID()}` });
      const cause = new Error('connect to amqp://user:hunter2@rabbit failed');
      transport.publish = async () => {
        throw cause;
      };
      const bus = await connect({ transport, service: 'svc' });
      buses.push(bus);
      const err = (await rejection(bus.publish('t', { type: 'x', data: 1 }))) as PublishError;
      expect(err.code).toBe('PUBLISH_FAILED');
      expect(err.retryable).toBe(true);
      expect(err.cause).toBe(cause);
      expect(err.message).not.toContain('hunter2');
      expect(err.message).toContain('amqp://user:***@rabbit');
    });

    it('an Omnibus error from the transport passes through unchanged', async () => {
      const transport = memoryTransport({ name: `bus-${randomUUID()}` });
      const own = new PublishError('UNROUTABLE', 'no queue bound');
      transport.publish = async () => {
        throw own;
      };
      const bus = await connect({ transport, service: 'svc' });
      buses.push(bus);
      expect(await rejection(bus.publish('t', { type: 'x', data: 1 }))).toBe(own);
    });
  });

  describe('publishBatch', () => {
    it('sends every message in one call and returns the ids in order', async () => {
      const { bus, topic, sent } = await setup();
      let calls = 0;
      const original = bus.transport.publish.bind(bus.transport);
      bus.transport.publish = (t, m, call) => {
        calls++;
        return original(t, m, call);
      };
      const { ids } = await bus.publishBatch(topic, [
        { definition: Order, data: { orderId: 'a', totalCents: 1 } },
        { type: 'note', data: 'n', options: { key: 'k' } },
        { definition: Shipped, data: { orderId: 'a' }, options: { id: 'fixed' } },
      ]);
      expect(ids).toHaveLength(3);
      expect(ids[2]).toBe('fixed');
      expect(calls).toBe(1);
      expect(sent().map((w) => w.headers.ce_id)).toEqual(ids);
      expect(sent()[1]!.key).toBe('k');
      expect(bus.counters.published).toBe(3);
    });

    it('is all or nothing: one message too large rejects the batch before anything is sent', async () => {
      const { bus, topic, sent } = await setup({ maxMessageBytes: 300 });
      const err = (await rejection(
        bus.publishBatch(topic, [
          { type: 'x', data: 'small' },
          { type: 'x', data: 'b'.repeat(1000) },
          { type: 'x', data: 'small' },
        ]),
      )) as PublishError;
      expect(err.code).toBe('TOO_LARGE');
      expect(sent()).toHaveLength(0);
      expect(bus.counters.published).toBe(0);
    });

    it('is all or nothing: one invalid message rejects the batch', async () => {
      const { bus, topic, sent } = await setup();
      const err = await rejection(
        bus.publishBatch(topic, [
          { definition: Order, data: { orderId: 'a', totalCents: 1 } },
          { definition: Order, data: { orderId: 'b' } },
        ]),
      );
      expect(err).toBeInstanceOf(ValidationError);
      expect(sent()).toHaveLength(0);
    });

    it('an empty batch sends nothing', async () => {
      const { bus, topic } = await setup();
      bus.transport.publish = () => Promise.reject(new Error('must not be called'));
      await expect(bus.publishBatch(topic, [])).resolves.toEqual({ ids: [] });
    });
  });

  describe('publish middleware', () => {
    it('runs in order and may change the envelope before it is encoded', async () => {
      const trail: string[] = [];
      const { bus, topic, sent } = await setup({
        middleware: [
          {
            publish: async (e, next) => {
              trail.push('a');
              e.headers = { ...e.headers, stamped: 'a' };
              await next();
              trail.push('a:after');
            },
          },
          { consume: async (_c, next) => next() },
          {
            publish: async (e, next) => {
              trail.push(`b:${e.headers.stamped}`);
              e.data = { ...(e.data as object), enriched: true };
              await next();
            },
          },
        ],
      });
      await bus.publish(topic, { type: 'x', data: { v: 1 } });
      expect(trail).toEqual(['a', 'b:a', 'a:after']);
      expect(sent()[0]!.headers.stamped).toBe('a');
      expect(JSON.parse(Buffer.from(sent()[0]!.body).toString())).toEqual({ v: 1, enriched: true });
    });

    it('a middleware that throws stops the publish', async () => {
      const { bus, topic, sent } = await setup({
        middleware: [
          {
            publish: async () => {
              throw new Error('blocked');
            },
          },
        ],
      });
      await expect(bus.publish(topic, { type: 'x', data: 1 })).rejects.toThrow('blocked');
      expect(sent()).toHaveLength(0);
    });
  });
});

describe('encodeEnvelope (for outboxes)', () => {
  it('builds the envelope publish would, in the current context and through publish middleware, without sending it', async () => {
    const { bus, topic, sent } = await setup({
      middleware: [
        {
          publish: async (e, next) => {
            e.headers.tenant = 't-1';
            await next();
          },
        },
      ],
    });
    const captured = capturePublished(bus);
    const raw = await runWithContext({ correlationId: 'req-9', causationId: 'cause-1' }, () =>
      bus.encodeEnvelope(topic, Order, { orderId: 'o-1', totalCents: 5 }, { key: 'c-1' }),
    );
    expect(raw).toMatchObject({
      type: 'order.placed',
      version: 2,
      source: 'checkout',
      key: 'c-1',
      correlationId: 'req-9',
      causationId: 'cause-1',
      contentType: 'application/json',
      headers: { tenant: 't-1' },
    });
    expect(uuidv7Time(raw.id)).toBeGreaterThan(0);
    expect(JSON.parse(new TextDecoder().decode(raw.data))).toEqual({ orderId: 'o-1', totalCents: 5 });
    // Nothing reached the broker, and nothing was reported as published.
    expect(sent()).toHaveLength(0);
    expect(captured.messages).toHaveLength(0);
  });

  it('validates and size-checks like publish', async () => {
    const { bus, topic } = await setup({ maxMessageBytes: 1000 });
    await expect(bus.encodeEnvelope(topic, Order, { orderId: 1 } as never)).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(bus.encodeEnvelope(topic, { type: 'big', data: 'x'.repeat(2000) })).rejects.toMatchObject({
      code: 'TOO_LARGE',
    });
  });
});

describe('correlation and tracing', () => {
  it('a publish inside a handler inherits the correlation id, is caused by the message and continues its trace', async () => {
    const { bus, topic } = await setup();
    const outcomes = recordOutcomes(bus);
    const cap = capturePublished(bus);
    await bus.subscribe({
      topic,
      group: 'g',
      handlers: {
        [Order.type]: Order.handle(async (d) => {
          await new Promise((r) => setTimeout(r, 1));
          await bus.publish(topic, Shipped, { orderId: d.orderId });
        }),
        [Shipped.type]: Shipped.handle(() => {}),
      },
    });
    const first = await runWithContext(
      { correlationId: 'req-42', traceparent: PARENT, tracestate: 'v=1' },
      () => bus.publish(topic, Order, { orderId: 'o-1', totalCents: 1 }),
    );
    await outcomes.until((o) => o.filter((x) => x.kind === 'handled').length === 2);
    const [placed, shipped] = cap.messages.map((m) => m.envelope);
    expect(placed!.id).toBe(first.id);
    expect(placed!.correlationId).toBe('req-42');
    expect(placed!.causationId).toBeUndefined();
    expect(shipped!.correlationId).toBe('req-42');
    expect(shipped!.causationId).toBe(placed!.id);
    expect(shipped!.tracestate).toBe('v=1');
    const traceOf = (e: Envelope) => e.traceparent!.split('-')[1];
    const spanOf = (e: Envelope) => e.traceparent!.split('-')[2];
    expect(traceOf(placed!)).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(traceOf(shipped!)).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(new Set([spanOf(placed!), spanOf(shipped!), 'b7ad6b7169203331']).size).toBe(3);
  });

  it('without a context each publish starts its own correlation', async () => {
    const { bus, topic } = await setup();
    const cap = capturePublished(bus);
    const a = await bus.publish(topic, { type: 'x', data: 1 });
    const b = await bus.publish(topic, { type: 'x', data: 1 });
    expect(cap.messages.map((m) => m.envelope.correlationId)).toEqual([a.id, b.id]);
  });

  it('explicit options win over the ambient context', async () => {
    const { bus, topic } = await setup();
    const cap = capturePublished(bus);
    await runWithContext({ correlationId: 'ambient', causationId: 'ambient-cause' }, () =>
      bus.publish(
        topic,
        { type: 'x', data: 1 },
        { correlationId: 'explicit', causationId: 'explicit-cause' },
      ),
    );
    await runWithContext({ correlationId: 'ambient', causationId: 'ambient-cause' }, () =>
      bus.publish(topic, { type: 'x', data: 1 }),
    );
    expect(cap.messages.map((m) => [m.envelope.correlationId, m.envelope.causationId])).toEqual([
      ['explicit', 'explicit-cause'],
      ['ambient', 'ambient-cause'],
    ]);
  });
});

describe('connect', () => {
  it("connect('memory://name', service) reaches the broker of that name", async () => {
    const name = `url-${randomUUID()}`;
    const bus = await connect(`memory://${name}`, 'svc');
    buses.push(bus);
    expect(bus.service).toBe('svc');
    expect(bus.transport.name).toBe('memory');
    const other = await connect({ transport: memoryTransport({ name }), service: 'other' });
    buses.push(other);
    const outcomes = recordOutcomes(other);
    await other.subscribe({ topic: 't', group: 'g', handlers: { x: () => {} } });
    const { id } = await bus.publish('t', { type: 'x', data: 1 });
    await outcomes.settled([id]);
  });

  it("connect('memory://') uses the default broker", async () => {
    const bus = await connect('memory://', 'svc');
    buses.push(bus);
    expect((bus.transport as unknown as { broker: unknown }).broker).toBe(memoryBroker('default'));
  });

  it('an unknown scheme is a ConfigError naming transport', async () => {
    const err = (await rejection(connect('nope://x', 'svc'))) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('transport');
    expect(err.message).toContain('nope');
  });

  it('a missing transport is a ConfigError', async () => {
    for (const options of [undefined, {}, { transport: 42 }, { transport: null }]) {
      const err = (await rejection(connect(options as never))) as ConfigError;
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.field).toBe('transport');
    }
  });

  it.each([
    [{ service: '' }, 'service'],
    [{ service: 'has space' }, 'service'],
    [{ service: 'svc', publishTimeoutMs: 0 }, 'publishTimeoutMs'],
    [{ service: 'svc', drainTimeoutMs: 1.5 }, 'drainTimeoutMs'],
  ])('bad options %o fail naming %s', async (options, field) => {
    const err = (await rejection(
      connect({ transport: memoryTransport({ name: randomUUID() }), ...options }),
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe(field);
  });

  it('never puts the password of a URL into the error', async () => {
    // Whatever happens to this URL (adapter missing, or installed and the port closed), the secret stays out.
    for (const url of [
      'amqp://user:s3cr3t-pw@127.0.0.1:1',
      'amqp:/user:s3cr3t-pw@127.0.0.1:1',
      'amqp//user:s3cr3t-pw@host',
      'nope://user:s3cr3t-pw@host',
      'user:s3cr3t-pw@host',
    ]) {
      const err = await rejection(connect(url, 'svc'));
      expect(err).toBeInstanceOf(Error);
      const text = `${err.message} ${String(err)} ${(err as { cause?: Error }).cause?.message ?? ''} ${JSON.stringify(err)}`;
      expect(text, url).not.toContain('s3cr3t-pw');
    }
  }, 20_000);

  it('subscribe with bad options fails with a ConfigError naming the field, and subscribes nothing', async () => {
    const { bus, topic } = await setup();
    const handlers = { x: () => {} };
    const cases: [Record<string, unknown>, string][] = [
      [{ retry: { attempts: 0 } }, 'retry.attempts'],
      [{ concurrency: -1 }, 'concurrency'],
      [{ group: 'no spaces' }, 'group'],
      [{ handlers: {} }, 'handlers'],
      [{ idempotency: { store: 'redis://user:pw@host' } }, 'idempotency.store'],
    ];
    for (const [bad, field] of cases) {
      const err = (await rejection(
        bus.subscribe({ topic, group: 'g', handlers, ...bad } as never),
      )) as ConfigError;
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.field).toBe(field);
      expect(err.message).not.toContain('pw@');
    }
    expect((await bus.health()).subscriptions).toEqual([]);
  });
});

describe('health, stats and counters', () => {
  it('health() reports the transport and every subscription', async () => {
    const { bus, topic } = await setup();
    const sub = await bus.subscribe({ topic, group: 'billing', handlers: { x: () => {} } });
    const h = await bus.health();
    expect(h.ok).toBe(true);
    expect(h.transport).toMatchObject({ ok: true, transport: 'memory' });
    expect(h.subscriptions).toEqual([{ topic, group: 'billing', circuit: 'closed', inFlight: 0 }]);
    await sub.close();
    expect((await bus.health()).subscriptions).toEqual([]);
  });

  it('health() is not ok when the transport health check throws, and hides credentials', async () => {
    const { bus } = await setup();
    bus.transport.health = async () => {
      throw new Error('cannot reach amqp://u:topsecret@h');
    };
    const h = await bus.health();
    expect(h.ok).toBe(false);
    expect(JSON.stringify(h)).not.toContain('topsecret');
    expect(h.transport.transport).toBe('memory');
  });

  it('stats() comes from the transport', async () => {
    const { bus, topic } = await setup();
    await bus.provision(topic, [{ group: 'billing' }, { group: 'shipping', types: ['x'] }]);
    await bus.publish(topic, { type: 'x', data: 1 });
    await bus.publish(topic, { type: 'y', data: 1 });
    expect(await bus.stats(topic, 'billing')).toMatchObject({ depth: 2 });
    expect(await bus.stats(topic, 'shipping')).toMatchObject({ depth: 1 });
    expect(await bus.stats(topic)).toMatchObject({ depth: 3 });
  });

  it('counters are a snapshot', async () => {
    const { bus, topic } = await setup();
    const before = bus.counters;
    await bus.publish(topic, { type: 'x', data: 1 });
    expect(before.published).toBe(0);
    expect(bus.counters.published).toBe(1);
  });

  it('logs a warning through the given logger when a handler fails', async () => {
    const lines: { fields: LogFields; msg?: string }[] = [];
    const push = (fields: LogFields, msg?: string) => void lines.push({ fields, msg });
    const logger: Logger = { debug: push, info: push, warn: push, error: push };
    const { bus, topic } = await setup({ logger });
    expect(bus.logger).toBe(logger);
    await bus.subscribe({
      topic,
      group: 'g',
      retry: { attempts: 1 },
      handlers: {
        x: () => {
          throw new Error('nope');
        },
      },
    });
    await bus.publish(topic, { type: 'x', data: 1 });
    await eventually(() => lines.some((l) => l.msg === 'message dead-lettered'));
    expect(lines.find((l) => l.msg === 'handler failed')?.fields).toMatchObject({
      topic,
      group: 'g',
      err: 'nope',
    });
  });

  it('replay is refused by a transport that cannot replay', async () => {
    const { bus } = await setup();
    (bus.transport.capabilities as { replay: boolean }).replay = false;
    await expect(
      bus.replay({ topic: 't', from: 'earliest', handlers: { x: () => {} } }),
    ).rejects.toBeInstanceOf(UnsupportedError);
  });
});
