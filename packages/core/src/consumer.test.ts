/**
 * The Consumer (the failure policy) driven with hand-made deliveries, so every settle action, header
 * and counter can be checked exactly. Scenarios through a real Bus on the memory transport live in
 * bus-pipeline.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { CircuitState } from './circuit-breaker.js';
import { CodecRegistry, jsonCodec } from './codec.js';
import { type ConsumeOutcome, Consumer, type ConsumerPolicy } from './consumer.js';
import { currentContext } from './context.js';
import { ControlHeader, type Envelope, type RawEnvelope } from './envelope.js';
import { HandlerTimeoutError, NonRetryableError, PublishError } from './errors.js';
import { memoryStore } from './idempotency.js';
import { type LogFields, type Logger, silentLogger } from './logger.js';
import { memoryTransport } from './memory/transport.js';
import { defineMessage, type Handler, type InferMessage, type MessageContext } from './message.js';
import { newCounters } from './metrics.js';
import type { ConsumeMiddleware } from './middleware.js';
import { eventually } from './testing/index.js';
import type { Delivery } from './transport.js';
import { uuidv7 } from './uuid.js';

const Order = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
  upcast: { 1: (v1: { id: string; total: number }) => ({ orderId: v1.id, totalCents: v1.total * 100 }) },
});
type Order = InferMessage<typeof Order>;

// Only encode/decode are used: deliveries are made by hand.
const wireFormat = memoryTransport({ name: `consumer-unit-${randomUUID()}` });

type Settle =
  | { kind: 'ack' }
  | { kind: 'release' }
  | { kind: 'retryLater'; delayMs: number; headers: Record<string, string> }
  | { kind: 'deadLetter'; headers: Record<string, string> };

interface FakeDelivery {
  d: Delivery;
  id: string;
  calls: Settle[];
  /** Resolves with the first settle action. */
  settled: Promise<Settle>;
}

function deliver(
  data: unknown,
  options: {
    id?: string;
    type?: string;
    version?: number;
    key?: string;
    contentType?: string;
    body?: Uint8Array;
    previousAttempts?: number;
    redelivered?: boolean;
    headers?: Record<string, string>;
    correlationId?: string;
    failOn?: Settle['kind'];
  } = {},
): FakeDelivery {
  const id = options.id ?? uuidv7();
  const raw: RawEnvelope = {
    id,
    type: options.type ?? Order.type,
    source: 'unit',
    time: Date.now(),
    key: options.key,
    correlationId: options.correlationId ?? `corr-${id}`,
    version: options.version ?? Order.version,
    contentType: options.contentType ?? 'application/json',
    headers: {},
    data: options.body ?? jsonCodec.encode(data),
  };
  const wire = wireFormat.encode(raw);
  Object.assign(wire.headers, options.headers);
  const calls: Settle[] = [];
  let resolve!: (s: Settle) => void;
  const settled = new Promise<Settle>((r) => {
    resolve = r;
  });
  const record = async (s: Settle) => {
    calls.push(s);
    resolve(s);
    if (options.failOn === s.kind) throw new Error(`broker refused ${s.kind}`);
  };
  const d: Delivery = {
    wire,
    topic: 'orders',
    group: 'billing',
    previousAttempts: options.previousAttempts ?? 0,
    redelivered: options.redelivered ?? false,
    receivedAt: 1234,
    ack: () => record({ kind: 'ack' }),
    release: () => record({ kind: 'release' }),
    retryLater: (delayMs, headers) => record({ kind: 'retryLater', delayMs, headers }),
    deadLetter: (headers) => record({ kind: 'deadLetter', headers }),
  };
  return { d, id, calls, settled };
}

/** Waits for a promise with a deadline, so a stuck pipeline fails the test instead of hanging it. */
async function within<T>(p: Promise<T>, ms = 5000, what = 'the delivery to settle'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function gate() {
  let open!: () => void;
  let fail!: (err: unknown) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

interface LogLine {
  level: keyof Logger;
  fields: LogFields;
  msg: string | undefined;
}

function setup(
  overrides: Partial<ConsumerPolicy> & { handler?: ConsumerPolicy['handlers'][string] } = {},
  middleware: ConsumeMiddleware[] = [],
) {
  const { handler, ...rest } = overrides;
  const policy: ConsumerPolicy = {
    topic: 'orders',
    group: 'billing',
    handlers: { [Order.type]: handler ?? Order.handle(() => {}) },
    concurrency: 4,
    ordered: false,
    maxAttempts: 3,
    backoff: { initialMs: 1, maxMs: 50, factor: 2, jitter: false },
    inProcessMaxDelayMs: 1000,
    handlerTimeoutMs: 5000,
    deadLetter: true,
    unmatched: 'ack',
    ...rest,
  };
  const outcomes: ConsumeOutcome[] = [];
  const counters = newCounters();
  const logs: LogLine[] = [];
  const log =
    (level: keyof Logger) =>
    (fields: LogFields, msg?: string): void => {
      logs.push({ level, fields, msg });
    };
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  const consumer = new Consumer(policy, {
    transport: wireFormat,
    codecs: new CodecRegistry(),
    logger,
    counters,
    middleware,
    outcomeListeners: new Set([(o: ConsumeOutcome) => outcomes.push(o)]),
  });
  const sub = { pause: vi.fn(), resume: vi.fn(), close: vi.fn(async () => {}) };
  consumer.attach(sub);
  const push = (f: FakeDelivery) => {
    consumer.onDelivery(f.d);
    return f;
  };
  return { consumer, policy, outcomes, counters, logs, sub, push };
}

/** A typed handler that records each invocation and runs `fn`. */
function recording(fn: (data: Order, ctx: MessageContext<Order>, call: number) => unknown = () => {}) {
  const calls: { data: Order; ctx: MessageContext<Order> }[] = [];
  const handler = Order.handle((data, ctx) => {
    calls.push({ data, ctx });
    return fn(data, ctx, calls.length);
  });
  return { handler, calls };
}

const order = (n = 1): Order => ({ orderId: `o-${n}`, totalCents: n * 100 });

describe('Consumer: success', () => {
  it('runs the handler with validated data and its context, then acks', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler });
    const f = t.push(deliver(order(7), { key: 'customer-7', correlationId: 'corr-x' }));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(f.calls).toHaveLength(1);
    expect(calls).toHaveLength(1);
    const { data, ctx } = calls[0]!;
    expect(data).toEqual(order(7));
    expect(ctx.attempt).toBe(1);
    expect(ctx.redelivered).toBe(false);
    expect(ctx.receivedAt).toBe(1234);
    expect(ctx.topic).toBe('orders');
    expect(ctx.group).toBe('billing');
    expect(ctx.signal.aborted).toBe(false);
    expect(ctx.envelope).toMatchObject({
      id: f.id,
      type: 'order.placed',
      key: 'customer-7',
      correlationId: 'corr-x',
      version: 2,
      data: order(7),
    });
    expect(t.outcomes).toEqual([
      expect.objectContaining({ kind: 'handled', attempt: 1, topic: 'orders', group: 'billing' }),
    ]);
    expect((t.outcomes[0] as { envelope: Envelope }).envelope.id).toBe(f.id);
    expect(t.counters).toMatchObject({ consumed: 1, handled: 1, failures: 0, retried: 0, deadLettered: 0 });
    expect(t.counters.processingMs).toBeGreaterThanOrEqual(0);
    expect(t.counters.processingMs).toBeLessThan(5000);
    await eventually(() => t.consumer.inFlight === 0, { what: 'the scheduler to settle' });
  });

  it('upcasts older versions before the handler sees them', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler });
    const f = t.push(deliver({ id: 'o-1', total: 12 }, { version: 1 }));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(calls[0]!.data).toEqual({ orderId: 'o-1', totalCents: 1200 });
  });

  it('an untyped handler gets the decoded data as is', async () => {
    const seen: unknown[] = [];
    const t = setup({ handler: (data: unknown) => void seen.push(data) });
    const f = t.push(deliver({ anything: ['goes'] }));
    await within(f.settled);
    expect(seen).toEqual([{ anything: ['goes'] }]);
  });

  it('counts attempts from the delivery: a redelivered message continues its count', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler });
    const f = t.push(deliver(order(), { previousAttempts: 2, redelivered: true }));
    await within(f.settled);
    expect(calls[0]!.ctx.attempt).toBe(3);
    expect(calls[0]!.ctx.redelivered).toBe(true);
    expect(t.outcomes[0]).toMatchObject({ kind: 'handled', attempt: 3 });
  });

  it('runs the handler inside the message context: correlation and causation', async () => {
    let inside: unknown;
    const t = setup({
      handler: Order.handle(() => {
        inside = currentContext();
      }),
    });
    const f = t.push(deliver(order(), { correlationId: 'corr-9' }));
    await within(f.settled);
    expect(inside).toMatchObject({ correlationId: 'corr-9', causationId: f.id });
  });

  it('routes exact types before patterns, and patterns in order', async () => {
    const hits: string[] = [];
    const t = setup({
      handlers: {
        'order.*': () => void hits.push('order.*'),
        '#': () => void hits.push('#'),
        'order.placed': () => void hits.push('exact'),
      },
    });
    await within(t.push(deliver(order(), { type: 'order.placed' })).settled);
    await within(t.push(deliver(order(), { type: 'order.shipped' })).settled);
    await within(t.push(deliver(order(), { type: 'invoice.sent' })).settled);
    expect(hits).toEqual(['exact', 'order.*', '#']);
    expect(t.consumer.patterns).toEqual(['order.*', '#', 'order.placed']);
  });
});

describe('Consumer: middleware', () => {
  it('wraps the handler in the order given, inside the message context', async () => {
    const trail: string[] = [];
    const mw =
      (name: string): ConsumeMiddleware =>
      async (ctx, next) => {
        trail.push(`${name}:before:${ctx.attempt}:${currentContext()?.causationId === ctx.envelope.id}`);
        await next();
        trail.push(`${name}:after`);
      };
    const t = setup({ handler: Order.handle(() => void trail.push('handler')) }, [mw('a'), mw('b')]);
    await within(t.push(deliver(order())).settled);
    expect(trail).toEqual(['a:before:1:true', 'b:before:1:true', 'handler', 'b:after', 'a:after']);
  });

  it('a middleware error is a handler failure', async () => {
    const t = setup({ maxAttempts: 1 }, [
      async () => {
        throw new Error('mw says no');
      },
    ]);
    const f = t.push(deliver(order()));
    const s = await within(f.settled);
    expect(s).toMatchObject({ kind: 'deadLetter' });
    expect((s as { headers: Record<string, string> }).headers[ControlHeader.error]).toBe('mw says no');
  });
});

describe('Consumer: retries', () => {
  it('retries in process with backoff and acks when a later attempt succeeds', async () => {
    const { handler, calls } = recording((_d, _c, n) => {
      if (n < 3) throw new Error(`fail ${n}`);
    });
    const t = setup({ handler, maxAttempts: 3 });
    const f = t.push(deliver(order()));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(f.calls).toHaveLength(1);
    expect(calls.map((c) => c.ctx.attempt)).toEqual([1, 2, 3]);
    expect(calls.map((c) => c.ctx.redelivered)).toEqual([false, true, true]);
    expect(t.counters).toMatchObject({ handled: 1, failures: 2, retried: 2, deadLettered: 0 });
    expect(t.outcomes.map((o) => o.kind)).toEqual(['handled']);
    const warnings = t.logs.filter((l) => l.msg === 'handler failed');
    expect(warnings.map((l) => [l.fields.attempt, l.fields.err])).toEqual([
      [1, 'fail 1'],
      [2, 'fail 2'],
    ]);
    expect(warnings[0]!.fields).toMatchObject({ topic: 'orders', group: 'billing', messageId: f.id });
  });

  it('waits the backoff delay between in-process attempts', async () => {
    const times: number[] = [];
    const { handler } = recording(() => {
      times.push(performance.now());
      if (times.length < 2) throw new Error('again');
    });
    const t = setup({ handler, backoff: { initialMs: 60, maxMs: 60, factor: 1, jitter: false } });
    await within(t.push(deliver(order())).settled);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(50);
  });

  it('hands a retry longer than inProcessMaxDelayMs to the broker with its control headers', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new Error('db down');
      }),
      backoff: { initialMs: 100, maxMs: 10_000, factor: 3, jitter: false },
      inProcessMaxDelayMs: 99,
    });
    const before = Date.now();
    const f = t.push(deliver(order()));
    const s = await within(f.settled);
    expect(s).toEqual({
      kind: 'retryLater',
      delayMs: 100,
      headers: {
        [ControlHeader.attempts]: '1',
        [ControlHeader.firstFailureAt]: expect.any(String),
        [ControlHeader.lastFailureAt]: expect.any(String),
        [ControlHeader.lastError]: 'db down',
      },
    });
    const h = (s as { headers: Record<string, string> }).headers;
    expect(Number(h[ControlHeader.firstFailureAt])).toBeGreaterThanOrEqual(before);
    expect(h[ControlHeader.firstFailureAt]).toBe(h[ControlHeader.lastFailureAt]);
    expect(t.counters).toMatchObject({ retried: 1, failures: 1, handled: 0 });
    expect(t.outcomes).toEqual([
      expect.objectContaining({ kind: 'retry-scheduled', attempt: 1, delayMs: 100, topic: 'orders' }),
    ]);
  });

  it('a broker retry continues the attempt count and keeps the first failure time', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new Error('still down');
      }),
      maxAttempts: 5,
      backoff: { initialMs: 100, maxMs: 10_000, factor: 3, jitter: false },
      inProcessMaxDelayMs: 0,
    });
    const f = t.push(
      deliver(order(), {
        previousAttempts: 2,
        redelivered: true,
        headers: { [ControlHeader.attempts]: '2', [ControlHeader.firstFailureAt]: '1000' },
      }),
    );
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s.kind).toBe('retryLater');
    expect(s.delayMs).toBe(900);
    expect(s.headers[ControlHeader.attempts]).toBe('3');
    expect(s.headers[ControlHeader.firstFailureAt]).toBe('1000');
    expect(Number(s.headers[ControlHeader.lastFailureAt])).toBeGreaterThan(1000);
  });

  it('ignores a malformed first-failure header', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new Error('x');
      }),
      inProcessMaxDelayMs: 0,
    });
    const f = t.push(deliver(order(), { headers: { [ControlHeader.firstFailureAt]: 'yesterday' } }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(Number.isFinite(Number(s.headers[ControlHeader.firstFailureAt]))).toBe(true);
    expect(s.headers[ControlHeader.firstFailureAt]).toBe(s.headers[ControlHeader.lastFailureAt]);
  });

  it('with ordered: true, retries stay in process however long, so a key keeps its order', async () => {
    const { handler, calls } = recording((_d, _c, n) => {
      if (n === 1) throw new Error('first try fails');
    });
    const t = setup({
      handler,
      ordered: true,
      backoff: { initialMs: 30, maxMs: 30, factor: 1, jitter: false },
      inProcessMaxDelayMs: 0,
    });
    const a = t.push(deliver(order(1), { key: 'k' }));
    const b = t.push(deliver(order(2), { key: 'k' }));
    expect(await within(a.settled)).toEqual({ kind: 'ack' });
    expect(await within(b.settled)).toEqual({ kind: 'ack' });
    expect(calls.map((c) => c.data.orderId)).toEqual(['o-1', 'o-1', 'o-2']);
  });

  it('a delay exactly at inProcessMaxDelayMs stays in process', async () => {
    const { handler } = recording((_d, _c, n) => {
      if (n === 1) throw new Error('once');
    });
    const t = setup({
      handler,
      backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
      inProcessMaxDelayMs: 5,
    });
    expect(await within(t.push(deliver(order())).settled)).toEqual({ kind: 'ack' });
  });
});

describe('Consumer: dead-lettering', () => {
  it('dead-letters after max attempts with the failure metadata', async () => {
    const { handler, calls } = recording((_d, _c, n) => {
      throw new Error(`boom ${n}`);
    });
    const t = setup({ handler, maxAttempts: 3 });
    const before = Date.now();
    const f = t.push(deliver(order()));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.kind).toBe('deadLetter');
    expect(f.calls).toHaveLength(1);
    expect(calls).toHaveLength(3);
    const h = s.headers;
    expect(h).toEqual({
      [ControlHeader.reason]: 'max-attempts',
      [ControlHeader.error]: 'boom 3',
      [ControlHeader.attempts]: '3',
      [ControlHeader.lastFailureAt]: expect.any(String),
      [ControlHeader.firstFailureAt]: expect.any(String),
      [ControlHeader.originalTopic]: 'orders',
      [ControlHeader.originalGroup]: 'billing',
      [ControlHeader.deadLetteredAt]: expect.any(String),
      [ControlHeader.eventTime]: expect.any(String),
      [ControlHeader.processingStartedAt]: expect.any(String),
    });
    const first = Number(h[ControlHeader.firstFailureAt]);
    const last = Number(h[ControlHeader.lastFailureAt]);
    expect(first).toBeGreaterThanOrEqual(before);
    expect(last).toBeGreaterThanOrEqual(first);
    expect(Number(h[ControlHeader.deadLetteredAt])).toBe(last);
    expect(t.counters).toMatchObject({ deadLettered: 1, failures: 3, retried: 2, handled: 0 });
    const dl = t.outcomes.at(-1) as Extract<ConsumeOutcome, { kind: 'dead-lettered' }>;
    expect(dl).toMatchObject({
      kind: 'dead-lettered',
      id: f.id,
      reason: 'max-attempts',
      error: 'boom 3',
      attempts: 3,
      topic: 'orders',
      group: 'billing',
    });
    expect(dl.envelope?.data).toEqual(order());
    const logged = t.logs.find((l) => l.msg === 'message dead-lettered');
    expect(logged?.level).toBe('warn');
    expect(logged?.fields).toMatchObject({
      reason: 'max-attempts',
      error: 'boom 3',
      attempts: 3,
      messageId: f.id,
    });
  });

  it('keeps the first failure time from earlier deliveries', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new Error('x');
      }),
      maxAttempts: 3,
    });
    const f = t.push(
      deliver(order(), { previousAttempts: 2, headers: { [ControlHeader.firstFailureAt]: '5000' } }),
    );
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.firstFailureAt]).toBe('5000');
    expect(s.headers[ControlHeader.attempts]).toBe('3');
  });

  it('a message that already used its attempts elsewhere gets one last try', async () => {
    const { handler, calls } = recording(() => {
      throw new Error('x');
    });
    const t = setup({ handler, maxAttempts: 3 });
    const f = t.push(deliver(order(), { previousAttempts: 3 }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(calls).toHaveLength(1);
    expect(s.headers[ControlHeader.attempts]).toBe('4');
  });

  it('NonRetryableError dead-letters at once, without retries', async () => {
    const { handler, calls } = recording(() => {
      throw new NonRetryableError('card declined');
    });
    const t = setup({ handler, maxAttempts: 5 });
    const f = t.push(deliver(order()));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(calls).toHaveLength(1);
    expect(s.headers[ControlHeader.reason]).toBe('non-retryable');
    expect(s.headers[ControlHeader.error]).toBe('card declined');
    expect(s.headers[ControlHeader.attempts]).toBe('1');
    expect(t.counters).toMatchObject({ retried: 0, deadLettered: 1, failures: 1 });
  });

  it.each([
    [
      'a PublishError marked not retryable',
      () => new PublishError('UNROUTABLE', 'no queue bound for shipment.booked'),
    ],
    [
      "the user's own error with retryable: false",
      () => Object.assign(new Error('quota gone for good'), { retryable: false }),
    ],
  ])('%s dead-letters at once as non-retryable (the flag is honoured)', async (_what, makeError) => {
    const error = makeError();
    expect(error.retryable).toBe(false);
    const { handler, calls } = recording(() => {
      throw error;
    });
    const t = setup({ handler, maxAttempts: 5 });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.kind).toBe('deadLetter');
    expect(calls).toHaveLength(1);
    expect(s.headers[ControlHeader.reason]).toBe('non-retryable');
    expect(s.headers[ControlHeader.error]).toBe(error.message);
    expect(s.headers[ControlHeader.attempts]).toBe('1');
    expect(t.counters).toMatchObject({ retried: 0, deadLettered: 1, failures: 1 });
  });

  it('an error marked retryable is retried as usual', async () => {
    const { handler, calls } = recording((_d, _c, n) => {
      if (n === 1) throw new PublishError('TIMEOUT', 'publish timed out');
    });
    const t = setup({ handler, maxAttempts: 5 });
    expect(await within(t.push(deliver(order())).settled)).toEqual({ kind: 'ack' });
    expect(calls).toHaveLength(2);
  });

  it('invalid data is dead-lettered as validation, never retried, and the handler never runs', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler, maxAttempts: 5 });
    const f = t.push(deliver({ orderId: 42 }, { previousAttempts: 1 }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(calls).toHaveLength(0);
    expect(s.headers[ControlHeader.reason]).toBe('validation');
    expect(s.headers[ControlHeader.error]).toContain('orderId');
    expect(s.headers[ControlHeader.attempts]).toBe('1');
    expect(t.counters).toMatchObject({ failures: 0, deadLettered: 1 });
    const dl = t.outcomes[0] as Extract<ConsumeOutcome, { kind: 'dead-lettered' }>;
    expect(dl.id).toBe(f.id);
    expect(Buffer.from(dl.envelope!.data as Uint8Array).toString()).toBe('{"orderId":42}');
  });

  it('a missing upcaster is a validation failure', async () => {
    const V3 = defineMessage({
      type: 'order.placed',
      version: 3,
      schema: z.object({}),
      upcast: { 2: (v: unknown) => v },
    });
    const t = setup({ handler: V3.handle(() => {}) });
    const s = (await within(t.push(deliver({}, { version: 1 })).settled)) as Extract<
      Settle,
      { kind: 'deadLetter' }
    >;
    expect(s.headers[ControlHeader.reason]).toBe('validation');
  });

  it('undecodable bytes are dead-lettered as decode, before any handler', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler });
    const f = t.push(deliver(undefined, { body: Buffer.from('{not json'), previousAttempts: 2 }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(calls).toHaveLength(0);
    expect(s.headers[ControlHeader.reason]).toBe('decode');
    expect(s.headers[ControlHeader.error]).toContain('not valid JSON');
    expect(s.headers[ControlHeader.attempts]).toBe('2');
  });

  it('an unknown content type is a decode failure', async () => {
    const t = setup({ handler: (() => {}) as Handler });
    const f = t.push(deliver(undefined, { body: Buffer.from('x'), contentType: 'application/x-protobuf' }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.reason]).toBe('decode');
    expect(s.headers[ControlHeader.error]).toContain('application/x-protobuf');
  });

  it('something that is not an envelope at all is dead-lettered as decode, with no id', async () => {
    const t = setup();
    const f = deliver(order());
    delete f.d.wire.headers.ce_specversion;
    t.push(f);
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.reason]).toBe('decode');
    expect(s.headers[ControlHeader.error]).toBe('not a CloudEvent: no specversion header');
    expect(s.headers[ControlHeader.attempts]).toBe('0');
    expect(t.outcomes[0]).toMatchObject({
      kind: 'dead-lettered',
      reason: 'decode',
      id: undefined,
      envelope: undefined,
    });
    expect(t.counters.consumed).toBe(1);
  });

  it('truncates very long error messages in headers', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new NonRetryableError('e'.repeat(5000));
      }),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    const error = s.headers[ControlHeader.error]!;
    expect(error).toHaveLength(1000);
    expect(error.endsWith('…')).toBe(true);
    expect((t.outcomes[0] as { error: string }).error).toBe(error);
  });

  it('keeps an error message of exactly 1000 characters whole', async () => {
    const message = 'x'.repeat(1000);
    const t = setup({
      handler: Order.handle(() => {
        throw new NonRetryableError(message);
      }),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.error]).toBe(message);
  });

  it('reports thrown non-errors by their string form', async () => {
    const t = setup({
      maxAttempts: 1,
      handler: Order.handle(() => {
        throw 'plain string';
      }),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.error]).toBe('plain string');
  });

  it('with deadLetter: false the message is dropped (acked) loudly', async () => {
    const t = setup({
      deadLetter: false,
      handler: Order.handle(() => {
        throw new NonRetryableError('bad');
      }),
    });
    const f = t.push(deliver(order()));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(f.calls).toHaveLength(1);
    expect(t.counters.deadLettered).toBe(1);
    expect(t.outcomes[0]).toMatchObject({ kind: 'dead-lettered', reason: 'non-retryable' });
    const line = t.logs.find((l) => l.level === 'error');
    expect(line?.msg).toContain('dropped');
    expect(line?.fields).toMatchObject({ reason: 'non-retryable', error: 'bad' });
  });
});

describe('Consumer: unmatched types', () => {
  it('acks a type no handler matches and counts it as filtered', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler });
    const f = t.push(deliver(order(), { type: 'order.cancelled' }));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(calls).toHaveLength(0);
    expect(t.counters.filtered).toBe(1);
    expect(t.outcomes).toEqual([
      { kind: 'filtered', type: 'order.cancelled', topic: 'orders', group: 'billing' },
    ]);
  });

  it("dead-letters it with unmatched: 'dead-letter'", async () => {
    const t = setup({ unmatched: 'dead-letter' });
    const f = t.push(deliver(order(), { type: 'order.cancelled', previousAttempts: 1 }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.reason]).toBe('unknown-type');
    expect(s.headers[ControlHeader.error]).toBe('no handler for type order.cancelled');
    expect(s.headers[ControlHeader.attempts]).toBe('1');
    expect(t.counters.filtered).toBe(0);
  });
});

describe('Consumer: newer versions', () => {
  it('retries a version newer than it knows through the broker, without calling the handler, then dead-letters as max-attempts', async () => {
    const { handler, calls } = recording();
    const t = setup({ handler, maxAttempts: 3 });
    // Even a short backoff goes to the broker: this process cannot read the message, another may.
    const first = (await within(t.push(deliver(order(), { version: 3 })).settled)) as Extract<
      Settle,
      { kind: 'retryLater' }
    >;
    expect(first.kind).toBe('retryLater');
    expect(first.headers[ControlHeader.attempts]).toBe('1');
    const last = t.push(deliver(order(), { version: 3, previousAttempts: 2 }));
    const s = (await within(last.settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(calls).toHaveLength(0);
    expect(s.headers[ControlHeader.reason]).toBe('max-attempts');
    expect(s.headers[ControlHeader.attempts]).toBe('3');
    expect(s.headers[ControlHeader.error]).toContain('version 3 is newer');
    expect(t.counters).toMatchObject({ retried: 1, failures: 2 });
  });

  it('hands a newer version to the broker for a later retry (a newer consumer may be deployed by then)', async () => {
    const t = setup({ maxAttempts: 3, inProcessMaxDelayMs: 0 });
    const f = t.push(deliver(order(), { version: 9 }));
    const s = (await within(f.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s.kind).toBe('retryLater');
    expect(s.headers[ControlHeader.attempts]).toBe('1');
    expect(s.headers[ControlHeader.lastError]).toContain('newer');
  });

  it('does not take an idempotency claim for a message it cannot read yet', async () => {
    const store = memoryStore();
    const t = setup({ maxAttempts: 1, idempotency: { store, leaseMs: 60_000, ttlMs: 60_000 } });
    const f = t.push(deliver(order(), { version: 3 }));
    await within(f.settled);
    expect(store.size).toBe(0);
  });
});

describe('Consumer: handler timeout', () => {
  it('fails the attempt with HandlerTimeoutError and aborts the handler signal', async () => {
    let signal: AbortSignal | undefined;
    let lateFailing!: () => void;
    const late = new Promise<void>((r) => {
      lateFailing = r;
    });
    const t = setup({
      maxAttempts: 1,
      handlerTimeoutMs: 30,
      handler: Order.handle(async (_d, ctx) => {
        signal = ctx.signal;
        await new Promise((r) => setTimeout(r, 300));
        lateFailing();
        throw new Error('late failure must not surface as an unhandled rejection');
      }),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.reason]).toBe('max-attempts');
    expect(s.headers[ControlHeader.error]).toBe('handler did not settle within 30 ms');
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(HandlerTimeoutError);
    // Let the late handler fail while the test still runs: vitest reports an unhandled rejection.
    await within(late);
    await new Promise((r) => setImmediate(r));
  });

  it('a timed-out attempt is retried through the broker, never in process beside the late handler', async () => {
    const g = gate();
    const t = setup({
      maxAttempts: 3,
      handlerTimeoutMs: 20,
      inProcessMaxDelayMs: 60_000,
      handler: Order.handle(() => g.promise),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s.kind).toBe('retryLater');
    expect(s.headers[ControlHeader.lastError]).toContain('did not settle');
    g.open();
  });

  it('with idempotency the claim is kept until the late handler settles, then completed', async () => {
    const store = memoryStore();
    const g = gate();
    const { handler, calls } = recording(() => g.promise);
    const t = setup({
      maxAttempts: 3,
      handlerTimeoutMs: 20,
      handler,
      idempotency: { store, leaseMs: 60_000, ttlMs: 60_000 },
    });
    const id = uuidv7();
    const key = `billing:${id}`;
    const first = t.push(deliver(order(), { id }));
    const s1 = (await within(first.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s1.kind).toBe('retryLater');
    expect(store.claimSync(key, 1)).toBe('held');

    // The redelivery finds the claim held: it waits again without spending an attempt or running the handler.
    const second = t.push(deliver(order(), { id, previousAttempts: 1 }));
    const s2 = (await within(second.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s2.kind).toBe('retryLater');
    expect(s2.headers[ControlHeader.attempts]).toBe('1');
    expect(s2.delayMs).toBe(1);
    expect(calls).toHaveLength(1);

    g.open();
    await eventually(() => store.claimSync(key, 1) === 'done', { timeoutMs: 5000, what: 'claim completed' });
    const third = t.push(deliver(order(), { id, previousAttempts: 1 }));
    expect(await within(third.settled)).toEqual({ kind: 'ack' });
    expect(calls).toHaveLength(1);
    expect(t.outcomes.at(-1)).toMatchObject({ kind: 'duplicate' });
  });

  it('with idempotency a late handler that fails releases the claim', async () => {
    const store = memoryStore();
    const g = gate();
    const t = setup({
      maxAttempts: 1,
      handlerTimeoutMs: 20,
      handler: Order.handle(() => g.promise),
      idempotency: { store, leaseMs: 60_000, ttlMs: 60_000 },
    });
    const id = uuidv7();
    const f = t.push(deliver(order(), { id }));
    await within(f.settled);
    expect(store.claimSync(`billing:${id}`, 1)).toBe('held');
    g.fail(new Error('late'));
    await eventually(() => store.size === 0, { timeoutMs: 5000, what: 'claim released' });
  });
});

describe('Consumer: idempotency', () => {
  const idem = (store = memoryStore()) => ({ store, leaseMs: 60_000, ttlMs: 60_000 });

  it('completes the claim on success; a duplicate is acked without running the handler', async () => {
    const store = memoryStore();
    const { handler, calls } = recording();
    const t = setup({ handler, idempotency: idem(store) });
    const id = uuidv7();
    await within(t.push(deliver(order(), { id })).settled);
    expect(store.claimSync(`billing:${id}`, 1)).toBe('done');
    const dup = t.push(deliver(order(), { id, redelivered: true }));
    expect(await within(dup.settled)).toEqual({ kind: 'ack' });
    expect(calls).toHaveLength(1);
    expect(t.counters).toMatchObject({ duplicates: 1, handled: 1 });
    expect(t.outcomes.map((o) => o.kind)).toEqual(['handled', 'duplicate']);
    expect((t.outcomes[1] as { envelope: Envelope }).envelope.id).toBe(id);
  });

  it('completes with the ttl it was given', async () => {
    const clock = { now: 1000 };
    const store = memoryStore({ now: () => clock.now });
    const t = setup({ idempotency: { store, leaseMs: 60_000, ttlMs: 500 } });
    const id = uuidv7();
    await within(t.push(deliver(order(), { id })).settled);
    clock.now += 499;
    expect(store.claimSync(`billing:${id}`, 1)).toBe('done');
    clock.now += 1;
    expect(store.claimSync(`billing:${id}`, 1)).toBe('new');
  });

  it('claims per group: the key is group and message id', async () => {
    const store = memoryStore();
    const t = setup({ idempotency: idem(store) });
    const id = uuidv7();
    await store.complete(`shipping:${id}`, 60_000);
    const { handler, calls } = recording();
    const t2 = setup({ handler, idempotency: idem(store) });
    await within(t2.push(deliver(order(), { id })).settled);
    expect(calls).toHaveLength(1);
    expect(t.counters.duplicates).toBe(0);
  });

  it('a message held by another consumer waits (retryLater) without spending an attempt', async () => {
    const store = memoryStore();
    const { handler, calls } = recording();
    const t = setup({
      handler,
      idempotency: idem(store),
      backoff: { initialMs: 40, maxMs: 1000, factor: 2, jitter: false },
    });
    const id = uuidv7();
    await store.claim(`billing:${id}`, 60_000);
    const f = t.push(
      deliver(order(), { id, previousAttempts: 2, headers: { [ControlHeader.firstFailureAt]: '777' } }),
    );
    expect(await within(f.settled)).toEqual({
      kind: 'retryLater',
      delayMs: 40,
      headers: { [ControlHeader.attempts]: '2', [ControlHeader.firstFailureAt]: '777' },
    });
    expect(calls).toHaveLength(0);
    expect(t.counters).toMatchObject({ failures: 0, retried: 0, handled: 0, duplicates: 0 });
    expect(t.outcomes).toEqual([]);
  });

  it('a held message without earlier failures carries only the attempt count', async () => {
    const store = memoryStore();
    const t = setup({ idempotency: idem(store) });
    const id = uuidv7();
    await store.claim(`billing:${id}`, 60_000);
    const s = (await within(t.push(deliver(order(), { id })).settled)) as Extract<
      Settle,
      { kind: 'retryLater' }
    >;
    expect(s.headers).toEqual({ [ControlHeader.attempts]: '0' });
  });

  it('releases the claim when handing a retry to the broker, so the redelivery can run', async () => {
    const store = memoryStore();
    const t = setup({
      handler: Order.handle(() => {
        throw new Error('x');
      }),
      idempotency: idem(store),
      inProcessMaxDelayMs: 0,
    });
    const id = uuidv7();
    const s = await within(t.push(deliver(order(), { id })).settled);
    expect(s.kind).toBe('retryLater');
    expect(store.size).toBe(0);
  });

  it('keeps the claim across in-process retries', async () => {
    const store = memoryStore();
    const id = uuidv7();
    const states: string[] = [];
    const t = setup({
      idempotency: idem(store),
      handler: Order.handle((_d, ctx) => {
        states.push(store.claimSync(`billing:${id}`, 1));
        if (ctx.attempt < 3) throw new Error('again');
      }),
    });
    await within(t.push(deliver(order(), { id })).settled);
    expect(states).toEqual(['held', 'held', 'held']);
    expect(store.claimSync(`billing:${id}`, 1)).toBe('done');
  });

  it.each([
    ['non-retryable', () => new NonRetryableError('no'), 5],
    ['max-attempts', () => new Error('no'), 2],
  ])('releases the claim when dead-lettering (%s)', async (reason, error, maxAttempts) => {
    const store = memoryStore();
    const t = setup({
      maxAttempts,
      handler: Order.handle(() => {
        throw error();
      }),
      idempotency: idem(store),
    });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'deadLetter' }>;
    expect(s.headers[ControlHeader.reason]).toBe(reason);
    expect(store.size).toBe(0);
  });

  it('a failing claim store gives the message back instead of losing it', async () => {
    const t = setup({
      idempotency: {
        store: {
          claim: async () => {
            throw new Error('redis down');
          },
          complete: async () => {},
          release: async () => {},
        },
        leaseMs: 1000,
        ttlMs: 1000,
      },
    });
    const f = t.push(deliver(order()));
    expect(await within(f.settled)).toEqual({ kind: 'release' });
    const line = t.logs.find((l) => l.level === 'error');
    expect(line?.msg).toContain('releasing');
    expect(line?.fields.err).toBe('redis down');
  });
});

describe('Consumer: a claim held elsewhere', () => {
  /** A store whose first `held` claims say someone else holds the message (a consumer that died with it). */
  const heldFor = (held: number) => {
    const claims: string[] = [];
    return {
      claims,
      store: {
        claim: async (key: string) => {
          claims.push(key);
          return claims.filter((k) => k === key).length <= held ? ('held' as const) : ('new' as const);
        },
        complete: async () => {},
        release: async () => {},
      },
    };
  };

  it('with ordered: true waits in process until the claim is free, so later messages of the key stay behind', async () => {
    const { handler, calls } = recording(() => {});
    const { store, claims } = heldFor(2);
    const t = setup({
      handler,
      ordered: true,
      backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
      idempotency: { store, leaseMs: 1000, ttlMs: 1000 },
    });
    const a = t.push(deliver(order(1), { key: 'k', id: 'a' }));
    const b = t.push(deliver(order(2), { key: 'k', id: 'b' }));
    expect(await within(a.settled)).toEqual({ kind: 'ack' });
    expect(await within(b.settled)).toEqual({ kind: 'ack' });
    expect(calls.map((c) => c.data.orderId)).toEqual(['o-1', 'o-2']);
    // Held twice, then free; b was claimed only after a was handled.
    expect(claims).toEqual(['billing:a', 'billing:a', 'billing:a', 'billing:b', 'billing:b', 'billing:b']);
  });

  it('without ordered goes back through the broker, no attempt spent', async () => {
    const { store } = heldFor(1);
    const t = setup({ idempotency: { store, leaseMs: 1000, ttlMs: 1000 } });
    const s = (await within(t.push(deliver(order())).settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s.kind).toBe('retryLater');
  });
});

describe('Consumer: an idempotency store that cannot record a success', () => {
  it('acknowledges the message once, runs the handler once, and logs the store failure', async () => {
    let runs = 0;
    const t = setup({
      handler: Order.handle(() => {
        runs++;
      }),
      idempotency: {
        store: {
          claim: async () => 'new' as const,
          complete: async () => {
            throw new Error('redis down');
          },
          release: async () => {},
        },
        leaseMs: 1000,
        ttlMs: 1000,
      },
    });
    const f = t.push(deliver(order()));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    expect(runs).toBe(1);
    const line = t.logs.find(
      (l) => l.level === 'warn' && l.msg?.includes('idempotency store could not record'),
    );
    expect(line?.fields.err).toBe('redis down');
  });
});

describe('Consumer: settle failures', () => {
  it('releases the message when the broker refuses the ack', async () => {
    const t = setup();
    const f = t.push(deliver(order(), { failOn: 'ack' }));
    await within(f.settled);
    await eventually(() => f.calls.length === 2, { timeoutMs: 5000 });
    expect(f.calls.map((c) => c.kind)).toEqual(['ack', 'release']);
    expect(
      t.logs.some((l) => l.level === 'error' && l.msg === 'could not settle message; releasing it'),
    ).toBe(true);
    await eventually(() => t.consumer.inFlight === 0);
  });

  it('a release that fails too is swallowed (the broker redelivers after its lease)', async () => {
    const t = setup({
      handler: Order.handle(() => {
        throw new NonRetryableError('x');
      }),
    });
    const f = deliver(order(), { failOn: 'deadLetter' });
    f.d.release = async () => {
      f.calls.push({ kind: 'release' });
      throw new Error('gone');
    };
    t.push(f);
    await eventually(() => f.calls.length === 2, { timeoutMs: 5000 });
    await eventually(() => t.consumer.inFlight === 0);
  });
});

describe('Consumer: circuit breaker', () => {
  it('failures while the circuit is open consume no attempts', async () => {
    const states: CircuitState[] = [];
    const { handler, calls } = recording((_d, _c, n) => {
      if (n <= 4) throw new Error(`down ${n}`);
    });
    const t = setup({
      handler,
      maxAttempts: 2,
      circuitBreaker: { failureThreshold: 1, cooldownMs: 15, onStateChange: (s) => states.push(s) },
    });
    const f = t.push(deliver(order()));
    expect(await within(f.settled)).toEqual({ kind: 'ack' });
    // Attempt 1 opened the circuit; every probe that failed afterwards was free.
    expect(calls.map((c) => c.ctx.attempt)).toEqual([1, 2, 2, 2, 2]);
    expect(t.outcomes.at(-1)).toMatchObject({ kind: 'handled', attempt: 2 });
    expect(states).toEqual([
      'open',
      'half-open',
      'open',
      'half-open',
      'open',
      'half-open',
      'open',
      'half-open',
      'closed',
    ]);
    expect(t.counters.failures).toBe(4);
    expect(t.consumer.circuitState).toBe('closed');
  });

  it('pauses fetching while open and resumes when closed', async () => {
    const { handler } = recording((_d, _c, n) => {
      if (n === 1) throw new Error('down');
    });
    const trail: string[] = [];
    const t = setup({
      handler,
      circuitBreaker: { failureThreshold: 1, cooldownMs: 10, onStateChange: (s) => void trail.push(s) },
    });
    t.sub.pause.mockImplementation(() => void trail.push('pause'));
    t.sub.resume.mockImplementation(() => void trail.push('resume'));
    expect(t.consumer.circuitState).toBe('closed');
    await within(t.push(deliver(order())).settled);
    // Fetching stops when the circuit opens and restarts only once it is closed again (not for the probe).
    expect(trail).toEqual(['pause', 'open', 'half-open', 'resume', 'closed']);
    expect(
      t.logs.filter((l) => l.msg === 'circuit breaker state changed').map((l) => l.fields.state),
    ).toEqual(['open', 'half-open', 'closed']);
  });

  it('without a breaker, the circuit reads closed', () => {
    expect(setup().consumer.circuitState).toBe('closed');
  });

  /**
   * Opens the circuit with message A (fails once), and delivers `probe` the moment it opens, so `probe`
   * waits first and becomes the probe after the cool-down; A must still be handled afterwards.
   */
  function probeScenario(probe: () => FakeDelivery, maxAttempts = 5) {
    let firstA = true;
    let probeDelivery: FakeDelivery | undefined;
    const t = setup({
      maxAttempts,
      backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
      circuitBreaker: {
        failureThreshold: 1,
        cooldownMs: 30,
        onStateChange: (s) => {
          if (s === 'open' && !probeDelivery) probeDelivery = t.push(probe());
        },
      },
      handler: Order.handle((d) => {
        if (d.orderId === 'poison') throw new NonRetryableError('poison');
        if (d.orderId === 'a' && firstA) {
          firstA = false;
          throw new Error('down');
        }
      }),
    });
    const a = t.push(deliver({ orderId: 'a', totalCents: 1 }));
    return { t, a, probe: () => probeDelivery! };
  }

  it('a probe that ends in NonRetryableError does not leave the circuit stuck half-open', async () => {
    const s = probeScenario(() => deliver({ orderId: 'poison', totalCents: 1 }));
    expect(await within(s.a.settled, 3000, 'A to be handled after the poison probe')).toEqual({
      kind: 'ack',
    });
    expect((await within(s.probe().settled)).kind).toBe('deadLetter');
    expect(s.t.consumer.circuitState).toBe('closed');
  });

  it('a probe that meets a newer version does not leave the circuit stuck half-open', async () => {
    const s = probeScenario(() => deliver({ orderId: 'v', totalCents: 1 }, { version: 3 }), 3);
    expect(await within(s.a.settled, 3000, 'A to be handled after the version probe')).toEqual({
      kind: 'ack',
    });
    const later = (await within(s.probe().settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(later.kind).toBe('retryLater');
    expect(later.headers[ControlHeader.lastError]).toContain('newer');
  });

  it('a newer-version failure never opens the circuit', async () => {
    const t = setup({ maxAttempts: 3, circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 } });
    const s = await within(t.push(deliver(order(), { version: 3 })).settled);
    expect(s.kind).toBe('retryLater');
    expect(t.consumer.circuitState).toBe('closed');
  });

  it('a NonRetryableError never opens the circuit', async () => {
    const t = setup({
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
      handler: Order.handle(() => {
        throw new NonRetryableError('bad message');
      }),
    });
    await within(t.push(deliver(order())).settled);
    expect(t.consumer.circuitState).toBe('closed');
  });

  it('a handler that times out while the circuit is open goes through the broker, not again beside itself', async () => {
    const hang = gate();
    const calls: string[] = [];
    let fastFailed = false;
    const t = setup({
      maxAttempts: 5,
      handlerTimeoutMs: 80,
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
      handler: Order.handle(async (d) => {
        calls.push(d.orderId);
        if (d.orderId === 'slow') return hang.promise;
        if (!fastFailed) {
          fastFailed = true;
          throw new Error('down');
        }
      }),
    });
    const slow = t.push(deliver({ orderId: 'slow', totalCents: 1 }));
    await eventually(() => calls.length === 1);
    const fast = t.push(deliver({ orderId: 'fast', totalCents: 1 }));
    await eventually(() => t.consumer.circuitState === 'open');
    const s = (await within(slow.settled)) as Extract<Settle, { kind: 'retryLater' }>;
    expect(s.kind).toBe('retryLater');
    // Failed while the circuit was open: no attempt spent.
    expect(s.headers[ControlHeader.attempts]).toBe('0');
    expect(calls.filter((c) => c === 'slow')).toHaveLength(1);
    hang.open();
    await within(t.consumer.close(20));
    expect(await within(fast.settled)).toEqual({ kind: 'release' });
  });
});

describe('Consumer: close', () => {
  it('waits for in-flight handlers, then closes the subscription', async () => {
    const g = gate();
    const t = setup({ handler: Order.handle(() => g.promise) });
    const f = t.push(deliver(order()));
    await eventually(() => t.consumer.inFlight === 1);
    let closed = false;
    const closing = t.consumer.close(5000).then(() => {
      closed = true;
    });
    expect(t.sub.pause).toHaveBeenCalled();
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    expect(t.sub.close).not.toHaveBeenCalled();
    g.open();
    await within(closing);
    expect(await f.settled).toEqual({ kind: 'ack' });
    expect(t.sub.close).toHaveBeenCalledTimes(1);
    expect(t.logs.some((l) => l.msg?.startsWith('drain timeout'))).toBe(false);
    // A second close is a no-op.
    await t.consumer.close(5000);
    expect(t.sub.close).toHaveBeenCalledTimes(1);
  });

  it('releases queued deliveries that have not started', async () => {
    const g = gate();
    const { handler, calls } = recording(() => g.promise);
    const t = setup({ handler, concurrency: 1 });
    const running = t.push(deliver(order(1)));
    const queued = t.push(deliver(order(2)));
    await eventually(() => calls.length === 1);
    const closing = t.consumer.close(5000);
    g.open();
    await within(closing);
    expect(await running.settled).toEqual({ kind: 'ack' });
    expect(await queued.settled).toEqual({ kind: 'release' });
    expect(calls).toHaveLength(1);
  });

  it('after the drain timeout, aborts handlers and returns the rest to the broker', async () => {
    let signal: AbortSignal | undefined;
    const t = setup({
      // The aborted handler fails; its retry must not wait out the backoff after shutdown.
      backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: false },
      inProcessMaxDelayMs: 60_000,
      handler: Order.handle(
        (_d, ctx) =>
          new Promise<void>((_resolve, reject) => {
            signal = ctx.signal;
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          }),
      ),
    });
    const f = t.push(deliver(order()));
    await eventually(() => signal !== undefined);
    await within(t.consumer.close(20));
    expect(signal?.aborted).toBe(true);
    expect(t.sub.close).toHaveBeenCalledTimes(1);
    const warning = t.logs.find((l) => l.msg?.startsWith('drain timeout'));
    expect(warning?.fields).toEqual({ topic: 'orders', group: 'billing', inFlight: 1 });
    expect(await within(f.settled, 3000, 'the aborted message to go back')).toEqual({ kind: 'release' });
  });

  it('shutting down between in-process retries hands the message back and releases its claim', async () => {
    const store = memoryStore();
    const { handler, calls } = recording(() => {
      throw new Error('x');
    });
    const t = setup({
      handler,
      maxAttempts: 5,
      backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: false },
      inProcessMaxDelayMs: 60_000,
      idempotency: { store, leaseMs: 60_000, ttlMs: 60_000 },
    });
    const f = t.push(deliver(order()));
    await eventually(() => calls.length === 1);
    // The retry sleeps for a minute; close with a short drain wakes it.
    await within(t.consumer.close(20));
    expect(await within(f.settled)).toEqual({ kind: 'release' });
    expect(calls).toHaveLength(1);
    expect(store.size).toBe(0);
  });

  it('a message waiting on an open circuit is handed back at shutdown, not run after it', async () => {
    let calls = 0;
    const t = setup({
      maxAttempts: 5,
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
      handler: Order.handle(() => {
        calls++;
        throw new Error('down');
      }),
    });
    const a = t.push(deliver(order(1)));
    await eventually(() => t.consumer.circuitState === 'open');
    const b = t.push(deliver(order(2)));
    await within(t.consumer.close(20));
    expect(await within(a.settled)).toEqual({ kind: 'release' });
    expect(await within(b.settled)).toEqual({ kind: 'release' });
    expect(calls).toBe(1);
  });
});

describe('Consumer: details users rely on', () => {
  it('counts handler time in processingMs', async () => {
    const t = setup({ handler: Order.handle(() => new Promise((r) => setTimeout(r, 40))) });
    await within(t.push(deliver(order())).settled);
    expect(t.counters.processingMs).toBeGreaterThanOrEqual(30);
    expect(t.counters.processingMs).toBeLessThan(5000);
  });

  it('works without an outcome listener, settling every message exactly once', async () => {
    const consumer = new Consumer(
      {
        topic: 'orders',
        group: 'billing',
        handlers: {
          'order.placed': Order.handle((d) => {
            if (d.orderId === 'fail') throw new Error('x');
            if (d.orderId === 'poison') throw new NonRetryableError('x');
          }),
        },
        concurrency: 4,
        ordered: false,
        maxAttempts: 2,
        backoff: { initialMs: 1, maxMs: 1, factor: 1, jitter: false },
        inProcessMaxDelayMs: 0,
        handlerTimeoutMs: 5000,
        deadLetter: true,
        unmatched: 'ack',
        idempotency: { store: memoryStore(), leaseMs: 60_000, ttlMs: 60_000 },
      },
      {
        transport: wireFormat,
        codecs: new CodecRegistry(),
        logger: silentLogger,
        counters: newCounters(),
        middleware: [],
      },
    );
    const id = uuidv7();
    const deliveries = [
      deliver({ orderId: 'ok', totalCents: 1 }, { id }),
      deliver({ orderId: 'fail', totalCents: 1 }),
      deliver({ orderId: 'poison', totalCents: 1 }),
      deliver(order(), { type: 'other.type' }),
    ];
    for (const f of deliveries) consumer.onDelivery(f.d);
    const kinds = await within(Promise.all(deliveries.map((f) => f.settled)));
    expect(kinds.map((k) => k.kind)).toEqual(['ack', 'retryLater', 'deadLetter', 'ack']);
    const dup = deliver({ orderId: 'ok', totalCents: 1 }, { id });
    consumer.onDelivery(dup.d);
    expect(await within(dup.settled)).toEqual({ kind: 'ack' });
    await eventually(() => consumer.inFlight === 0);
    for (const f of [...deliveries, dup]) expect(f.calls).toHaveLength(1);
  });

  it('a handler that reads its signal only after the timeout still sees it aborted', async () => {
    let seen: AbortSignal | undefined;
    const done = gate();
    const t = setup({
      maxAttempts: 1,
      handlerTimeoutMs: 20,
      handler: Order.handle(async (_d, ctx) => {
        await new Promise((r) => setTimeout(r, 80));
        seen = ctx.signal;
        done.open();
      }),
    });
    await within(t.push(deliver(order())).settled);
    await within(done.promise);
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBeInstanceOf(HandlerTimeoutError);
  });

  it('a running handler that reads its signal after shutdown aborted it sees the shutdown', async () => {
    let seen: AbortSignal | undefined;
    const done = gate();
    const t = setup({
      // The timeout passes after the shutdown abort and before the handler looks: the first reason stands.
      handlerTimeoutMs: 40,
      handler: Order.handle(async (_d, ctx) => {
        await new Promise((r) => setTimeout(r, 80));
        seen = ctx.signal;
        done.open();
      }),
    });
    t.push(deliver(order()));
    await eventually(() => t.consumer.inFlight === 1);
    await within(t.consumer.close(10));
    await within(done.promise);
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).not.toBeInstanceOf(HandlerTimeoutError);
  });

  it('a timed-out handler that fails later never surfaces as an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let failedLate = false;
      const t = setup({
        maxAttempts: 1,
        handlerTimeoutMs: 10,
        handler: Order.handle(async () => {
          await new Promise((r) => setTimeout(r, 40));
          failedLate = true;
          throw new Error('late');
        }),
      });
      await within(t.push(deliver(order())).settled);
      await eventually(() => failedLate);
      await new Promise((r) => setTimeout(r, 20)); // let Node report an unhandled rejection, if any
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('close lets a message whose claim is still being taken finish: it is in flight', async () => {
    const claimGate = gate();
    const store = memoryStore();
    const { handler, calls } = recording();
    const t = setup({
      handler,
      idempotency: {
        store: {
          claim: async (k, l) => {
            await claimGate.promise;
            return store.claim(k, l);
          },
          complete: (k, ttl) => store.complete(k, ttl),
          release: (k) => store.release(k),
        },
        leaseMs: 60_000,
        ttlMs: 60_000,
      },
    });
    const f = t.push(deliver(order()));
    await eventually(() => t.consumer.inFlight === 1);
    const closing = t.consumer.close(5000);
    claimGate.open();
    await within(closing);
    expect(await f.settled).toEqual({ kind: 'ack' });
    expect(calls).toHaveLength(1);
  });

  it('a handler whose publish is refused because the bus is closing is handed back, not dead-lettered', async () => {
    const g = gate();
    const { handler, calls } = recording(async () => {
      await g.promise;
      throw new PublishError('CLOSED', 'the bus is closed');
    });
    const t = setup({ handler, maxAttempts: 5 });
    const f = t.push(deliver(order()));
    await eventually(() => calls.length === 1);
    const closing = t.consumer.close(5000);
    g.open();
    await within(closing);
    expect(await f.settled).toEqual({ kind: 'release' });
    expect(t.counters.deadLettered).toBe(0);
  });

  it('a failure during a graceful close is handed back at once, not after its in-process delay', async () => {
    const g = gate();
    const { handler, calls } = recording(async () => {
      await g.promise;
      throw new Error('x');
    });
    const t = setup({
      handler,
      maxAttempts: 5,
      backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1, jitter: false },
      inProcessMaxDelayMs: 60_000,
    });
    const f = t.push(deliver(order()));
    await eventually(() => calls.length === 1);
    const closing = t.consumer.close(60_000);
    g.open();
    await within(closing, 3000, 'close to finish without waiting out the retry delay or the drain time');
    expect(await f.settled).toEqual({ kind: 'release' });
    expect(calls).toHaveLength(1);
  });

  it('a retry whose backoff ends during a graceful close is handed back, not run', async () => {
    const { handler, calls } = recording(() => {
      throw new Error('x');
    });
    const t = setup({
      handler,
      maxAttempts: 5,
      backoff: { initialMs: 40, maxMs: 40, factor: 1, jitter: false },
    });
    const f = t.push(deliver(order()));
    await eventually(() => calls.length === 1);
    await within(t.consumer.close(5000));
    expect(await f.settled).toEqual({ kind: 'release' });
    expect(calls).toHaveLength(1);
    expect(t.logs.some((l) => l.level === 'error')).toBe(false);
  });

  it('at shutdown every message waiting on an open circuit goes back after the cool-down, not the drain timeout', async () => {
    let calls = 0;
    const t = setup({
      maxAttempts: 5,
      backoff: { initialMs: 1, maxMs: 1, factor: 1, jitter: false },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 30 },
      handler: Order.handle(() => {
        calls++;
        throw new Error('down');
      }),
    });
    const a = t.push(deliver(order(1)));
    const b = t.push(deliver(order(2)));
    await eventually(() => calls === 2);
    // Both failed once and now wait on the open circuit; the first to be admitted is the probe.
    await within(t.consumer.close(20_000), 5000, 'close to finish without the drain timeout');
    expect(await a.settled).toEqual({ kind: 'release' });
    expect(await b.settled).toEqual({ kind: 'release' });
    expect(calls).toBe(2);
  });

  it('while the probe runs, a message rejected elsewhere does not let a second probe in', async () => {
    let opened = false;
    let running = 0;
    let maxRunning = 0;
    let aFailed = false;
    const probeStarted = gate();
    let waiter: FakeDelivery | undefined;
    const t = setup({
      concurrency: 4,
      maxAttempts: 5,
      backoff: { initialMs: 1, maxMs: 1, factor: 1, jitter: false },
      circuitBreaker: {
        failureThreshold: 1,
        cooldownMs: 20,
        onStateChange: (s) => {
          if (s !== 'open' || opened) return;
          opened = true;
          waiter = t.push(deliver({ orderId: 'w', totalCents: 1 }));
        },
      },
      handler: Order.handle(async (d) => {
        if (d.orderId === 'q') {
          // Admitted while closed; fails for itself while the probe is running.
          await probeStarted.promise;
          throw new NonRetryableError('bad q');
        }
        if (d.orderId === 'a' && !aFailed) {
          aFailed = true;
          throw new Error('down');
        }
        running++;
        maxRunning = Math.max(maxRunning, running);
        probeStarted.open();
        await eventually(() => t.outcomes.some((o) => o.kind === 'dead-lettered'), { intervalMs: 1 });
        await new Promise((r) => setTimeout(r, 5));
        running--;
      }),
    });
    const q = t.push(deliver({ orderId: 'q', totalCents: 1 }));
    const a = t.push(deliver({ orderId: 'a', totalCents: 1 }));
    expect((await within(q.settled)).kind).toBe('deadLetter');
    expect(await within(a.settled)).toEqual({ kind: 'ack' });
    expect(await within(waiter!.settled)).toEqual({ kind: 'ack' });
    expect(maxRunning).toBe(1);
  });
});
