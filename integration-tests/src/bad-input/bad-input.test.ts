/**
 * The bad-input catalogue, one table run on every transport: foreign producers write broken, hostile or
 * forged messages with the broker's own client into the topic a real subscription consumes; each case must
 * end as the table says (dead-lettered with its reason, handled intact, routed away by the broker, or
 * refused by the broker itself with its own error), and the consumer must handle the good message sent
 * right after it. Publish- and connect-side cases expect a typed error. README "What happens to bad input"
 * lists the outcomes.
 */
import { randomBytes } from 'node:crypto';
import {
  type Bus,
  ConfigError,
  ControlHeader,
  connect,
  defineMessage,
  type Envelope,
  memoryTransport,
  PublishError,
} from '@omnibus/core';
import { prototypeChanges, recordOutcomes } from '@omnibus/core/testing';
import { kafka } from '@omnibus/kafka';
import { nats } from '@omnibus/nats';
import { rabbitmq } from '@omnibus/rabbitmq';
import { sqs } from '@omnibus/sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from '../load-harness.js';
import { type Injector, injectorFor, type RawMessage, uniqueId } from './inject.js';

const harness = await loadHarness();
const T = harness.name;

const Order = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
});

/** Transports whose broker routes by type (binding key, subject, filter policy, memory groups' patterns). */
const ROUTES_BY_TYPE = new Set(['memory', 'rabbitmq', 'nats', 'sns']);
const GROUP = 'audit';
const CASE_HEADER = 'bad-case';
const DEPTH = 100_000;

type Outcome =
  | { deadLetter: string; error?: RegExp }
  | { handled: true; check?: (env: Envelope) => void }
  | { routedAway: true };

interface ForeignEvent {
  /** CloudEvents attributes; a key set to undefined is left out. */
  attrs: Record<string, string | undefined>;
  /** The data as JSON text (embedded as is in structured mode) or as raw bytes. */
  dataText?: string;
  dataBytes?: Buffer;
  headers?: Record<string, string | Buffer>;
}

interface Case {
  name: string;
  /** A foreign CloudEvent (mapped to each broker's binding) or, for raw bytes, the message itself. */
  event?: (id: string) => ForeignEvent;
  raw?: (inj: Injector) => RawMessage;
  expect: Outcome | ((transport: string) => Outcome);
  /** Transports whose broker or client refuses to carry the case, and the error it gives. */
  prevented?: Record<string, RegExp>;
}

const GOOD_DATA = '{"orderId":"o-1","totalCents":100}';
const FAILING_DATA = '{"orderId":"always-fails","totalCents":1}';
/** The attempt number each handled message was handled at. */
const attemptOf = new Map<string, number>();
/** The id a raw structured case wrote into its own document (raw cases choose their ids). */
let lastStructuredId = '';
/** Handler runs per message id. */
const runs = new Map<string, number>();
function valid(id: string): ForeignEvent {
  return {
    attrs: {
      specversion: '1.0',
      id,
      type: Order.type,
      source: 'foreign-producer',
      datacontenttype: 'application/json',
      schemaversion: '2',
    },
    dataText: GOOD_DATA,
  };
}
const withAttrs = (
  id: string,
  attrs: Record<string, string | undefined>,
  dataText = GOOD_DATA,
): ForeignEvent => {
  const e = valid(id);
  return { ...e, attrs: { ...e.attrs, ...attrs }, dataText };
};
const withHeaders = (id: string, headers: Record<string, string | Buffer>): ForeignEvent => ({
  ...valid(id),
  headers,
});

const protoHeaders = () => {
  const h: Record<string, string> = {};
  Object.defineProperty(h, '__proto__', { value: 'p', enumerable: true, writable: true, configurable: true });
  h.constructor = 'c' as never;
  return h;
};

const CASES: Case[] = [
  {
    name: 'undecodable bytes',
    raw: (inj) =>
      inj.structured
        ? // SQS bodies must be XML characters: text that is not JSON is what such a producer can send.
          { body: Buffer.from('<order>not a CloudEvent</order>'), headers: {}, routeType: Order.type }
        : // The type header only: what a producer that routes by it sets, followed by garbage.
          {
            body: Buffer.from([0xff, 0x00, 0x13, 0x37, 0x7b]),
            headers: { [`${inj.prefix}type`]: Order.type },
            routeType: Order.type,
          },
    expect: { deadLetter: 'decode', error: /CloudEvent|specversion/ },
  },
  {
    name: 'a wrong content type',
    event: (id) => withAttrs(id, { datacontenttype: 'application/xml' }, JSON.stringify('<order id="o-1"/>')),
    expect: { deadLetter: 'decode', error: /application\/xml/ },
  },
  {
    name: 'an unknown type (no handler)',
    event: (id) => withAttrs(id, { type: 'order.refunded' }),
    expect: (t) =>
      ROUTES_BY_TYPE.has(t) ? { routedAway: true } : { deadLetter: 'unknown-type', error: /order\.refunded/ },
  },
  ...(['id', 'source', 'type', 'specversion'] as const).map(
    (attr): Case => ({
      name: `missing CloudEvents attribute ${attr}`,
      event: (id) => withAttrs(id, { [attr]: undefined }),
      // The memory broker routes by the type attribute itself: without one, no group receives the message.
      expect: (t) =>
        t === 'memory' && attr === 'type'
          ? { routedAway: true }
          : { deadLetter: 'decode', error: attr === 'specversion' ? /specversion/ : new RegExp(attr) },
    }),
  ),
  {
    name: 'a schema violation',
    event: (id) => withAttrs(id, {}, '{"orderId":12,"totalCents":"lots"}'),
    expect: { deadLetter: 'validation', error: /orderId/ },
  },
  {
    name: 'a newer schema version than the consumer knows (retried, then max-attempts)',
    event: (id) => withAttrs(id, { schemaversion: '3' }),
    expect: { deadLetter: 'max-attempts', error: /version 3/ },
  },
  {
    name: 'invalid UTF-8 in a JSON body',
    raw: (inj) => {
      // Structured mode: the body is text for SQS/SNS, so the closest a producer gets is a lone surrogate.
      if (inj.structured) {
        lastStructuredId = uniqueId();
        return {
          body: Buffer.from(
            `{"specversion":"1.0","id":"${lastStructuredId}","type":"order.placed","source":"f","schemaversion":2,"data":{"orderId":"\uD800","totalCents":1}}`,
          ),
          headers: {},
          routeType: Order.type,
        };
      }
      const body = Buffer.concat([
        Buffer.from('{"orderId":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('","totalCents":1}'),
      ]);
      return binary(inj, valid(uniqueId()), body);
    },
    // SQS/SNS: the producer's UTF-8 encoding (Buffer's, like the SDK's) turns the lone surrogate into U+FFFD
    // before anything is sent, so the broker never sees invalid UTF-8 and the handler gets U+FFFD.
    expect: (t) =>
      t === 'sqs' || t === 'sns'
        ? { handled: true, check: (env) => expect(env.data).toEqual({ orderId: '\uFFFD', totalCents: 1 }) }
        : { deadLetter: 'decode', error: /UTF-8/ },
  },
  {
    name: 'invalid UTF-8 in a header',
    event: (id) => withHeaders(id, { tenant: Buffer.from([0x61, 0xff, 0xfe, 0x62]) }),
    expect: (t) => ({
      handled: true,
      check: (env) =>
        // Kafka, RabbitMQ and NATS clients decode header bytes as UTF-8 (U+FFFD for what is not);
        // SQS and SNS carry bytes only as Binary attributes, which arrive as base64 text.
        expect(env.headers.tenant).toBe(t === 'sqs' || t === 'sns' ? 'Yf/+Yg==' : 'a\uFFFD\uFFFDb'),
    }),
    prevented: { memory: /memory headers are JS strings/ },
  },
  {
    name: 'a huge header (60,000 characters) within the broker limit',
    event: (id) => withHeaders(id, { note: 'h'.repeat(60_000) }),
    expect: { handled: true, check: (env) => expect(env.headers.note?.length).toBe(60_000) },
  },
  {
    name: '__proto__ and constructor keys in JSON data',
    event: (id) =>
      withAttrs(
        id,
        {},
        '{"orderId":"o-1","totalCents":1,"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
      ),
    expect: {
      handled: true,
      check: (env) => {
        expect(env.data).toEqual({ orderId: 'o-1', totalCents: 1 });
        expect(Object.getPrototypeOf(env.data)).toBe(Object.prototype);
      },
    },
  },
  {
    name: '__proto__ and constructor header names',
    event: (id) => withHeaders(id, protoHeaders()),
    expect: (t) => ({
      handled: true,
      check: (env) => {
        expect(Object.getPrototypeOf(env.headers)).toBe(Object.prototype);
        expect(Object.getOwnPropertyDescriptor(env.headers, 'constructor')?.value).toBe('c');
        // amqplib builds its header table by assignment, so `__proto__` is gone before Omnibus sees it.
        const proto = Object.getOwnPropertyDescriptor(env.headers, '__proto__')?.value;
        // fauxqs (the SNS emulator) parses message attributes into a plain object and loses it the same way.
        // On SQS the AWS SDK loses its value: @smithy/core 3.41's JSON map deserializer redefines an own
        // `__proto__` key as undefined (its writeKey) before it reads the value, so the attribute arrives
        // empty and is skipped. Sending keeps it (packages/sqs/src/attributes.test.ts); no prototype is touched.
        expect(proto).toBe(t === 'rabbitmq' || t === 'sns' || t === 'sqs' ? undefined : 'p');
      },
    }),
  },
  {
    name: `JSON data nested ${DEPTH.toLocaleString('en')} levels deep`,
    event: (id) =>
      withAttrs(id, {}, `{"orderId":"o-1","totalCents":1,"extra":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`),
    // Binary mode hands the bytes to JSON.parse (iterative) and the schema drops `extra`; structured mode
    // must re-encode the embedded data, which is refused as undecodable rather than overflowing the stack.
    expect: (t) =>
      t === 'sqs' || t === 'sns'
        ? { deadLetter: 'decode', error: /re-encoded/ }
        : { handled: true, check: (env) => expect(env.data).toEqual({ orderId: 'o-1', totalCents: 1 }) },
  },
  {
    name: 'a malformed traceparent',
    event: (id) => withHeaders(id, { traceparent: 'garbage-not-w3c', tracestate: ',,==;;' }),
    expect: { handled: true },
  },
  // The header is clamped (kit/control-headers.ts): a forged count cannot loop, and costs at most the retries.
  ...(
    [
      ['huge', '1e300', 1_000_001],
      ['huge', '999999999999', 1_000_001],
      ['negative', '-5', 1],
      ['NaN', 'NaN', 1],
    ] as const
  ).map(
    ([label, value, attempt]): Case => ({
      name: `an attempts header forged to ${label} (${value})`,
      event: (id) => withHeaders(id, { [ControlHeader.attempts]: value }),
      expect: { handled: true, check: (env) => expect(attemptOf.get(env.id)).toBe(attempt) },
    }),
  ),
  {
    name: 'an attempts header forged to huge on a message whose handler fails: one run, then max-attempts',
    event: (id) => ({ ...withAttrs(id, {}, FAILING_DATA), headers: { [ControlHeader.attempts]: '1e300' } }),
    expect: { deadLetter: 'max-attempts', error: /always fails/ },
  },
];

/** Binary mode: attributes as prefixed headers, the content type in the binding's header. */
function binary(inj: Injector, e: ForeignEvent, body: Buffer): RawMessage {
  const headers: Record<string, string | Buffer> = {};
  for (const k of Object.keys(e.headers ?? {})) {
    Object.defineProperty(headers, k, {
      value: e.headers![k],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  for (const [attr, v] of Object.entries(e.attrs)) {
    if (v === undefined) continue;
    headers[attr === 'datacontenttype' ? inj.contentTypeHeader : `${inj.prefix}${attr}`] = v;
  }
  return { body, headers, routeType: e.attrs.type ?? Order.type };
}

/** A foreign CloudEvent in the broker's binding: binary mode, or one structured JSON document. */
function encode(inj: Injector, e: ForeignEvent): RawMessage {
  const bodyBytes = e.dataBytes ?? Buffer.from(e.dataText ?? '', 'utf8');
  if (!inj.structured) return binary(inj, e, bodyBytes);
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.attrs)) if (v !== undefined) attrs[k] = v;
  const head = JSON.stringify({
    ...attrs,
    schemaversion: attrs.schemaversion ? Number(attrs.schemaversion) : undefined,
  });
  const data =
    e.dataText !== undefined ? `"data":${e.dataText}` : `"data_base64":"${bodyBytes.toString('base64')}"`;
  return {
    body: Buffer.from(`${head.slice(0, -1)},${data}}`, 'utf8'),
    headers: { ...e.headers },
    routeType: e.attrs.type ?? Order.type,
  };
}

describe(`bad input: ${T}`, () => {
  let consumer: Bus;
  let producer: Bus;
  let inj: Injector;
  const topic = `conf-badinput-${randomBytes(4).toString('hex')}`;
  const handled = new Map<string, Envelope>();
  let outcomes: ReturnType<typeof recordOutcomes>;
  /** The case each dead letter belongs to, checked against the raw dead-letter destination at the end. */
  const expectedDead = new Map<string, { reason: string; error?: RegExp }>();
  const report: string[] = [];

  beforeAll(async () => {
    await harness.setup();
    consumer = await connect({ transport: harness.create(), service: 'bad-input', drainTimeoutMs: 10_000 });
    producer = await connect({
      transport: harness.create(),
      service: 'good-producer',
      publishTimeoutMs: 20_000,
    });
    outcomes = recordOutcomes(consumer);
    await consumer.subscribe({
      topic,
      group: GROUP,
      unmatched: 'dead-letter',
      retry: { attempts: 2, backoff: { initialMs: 10, maxMs: 20, jitter: false } },
      handlers: {
        [Order.type]: Order.handle((d, ctx) => {
          runs.set(ctx.envelope.id, (runs.get(ctx.envelope.id) ?? 0) + 1);
          if (d.orderId === 'always-fails') throw new Error('this order always fails');
          attemptOf.set(ctx.envelope.id, ctx.attempt);
          handled.set(ctx.envelope.id, ctx.envelope as Envelope);
        }),
      },
    });
    inj = await injectorFor(T);
  }, 180_000);

  afterAll(async () => {
    if (report.length) console.log(`bad-input catalogue on ${T}:\n  ${report.join('\n  ')}`);
    await inj?.close();
    await consumer?.close({ drainTimeoutMs: 5_000 }).catch(() => {});
    await producer?.close({ drainTimeoutMs: 5_000 }).catch(() => {});
    await harness.teardown();
  });

  for (const c of CASES) {
    it(`${c.name}: answered as the table says, and the next good message is handled`, async () => {
      let id: string = uniqueId();
      lastStructuredId = '';
      const message = c.raw ? c.raw(inj) : encode(inj, c.event!(id));
      if (lastStructuredId) id = lastStructuredId;
      message.headers = { ...message.headers };
      Object.defineProperty(message.headers, CASE_HEADER, {
        value: c.name,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      const expected = typeof c.expect === 'function' ? c.expect(T) : c.expect;
      const deadBefore = outcomes.deadLettered().length;

      const preventedBy = c.prevented?.[T];
      try {
        await inj.send(topic, message);
      } catch (err) {
        // A broker (or its client) that refuses the case must say so with the error the table names.
        if (!preventedBy) throw err;
        expect(String(err)).toMatch(preventedBy);
        report.push(`${c.name}: prevented by the broker/client — ${String(err).slice(0, 120)}`);
        return;
      }
      expect(preventedBy, 'the table says the broker refuses this case, but it carried it').toBeUndefined();

      // The consumer goes on: a good message published after the bad one is handled.
      const good = await producer.publish(topic, Order, { orderId: 'good', totalCents: 1 });
      if ('deadLetter' in expected) {
        expectedDead.set(c.name, { reason: expected.deadLetter, error: expected.error });
        await outcomes.until(
          (o) => o.filter((x) => x.kind === 'dead-lettered').length > deadBefore && handled.has(good.id),
          {
            timeoutMs: 60_000,
            what: `${c.name}: dead-lettered, then the good message handled`,
          },
        );
        const dead = outcomes.deadLettered().slice(deadBefore);
        expect(dead.map((d) => d.reason)).toEqual([expected.deadLetter]);
        if (expected.error) expect(dead[0]!.error).toMatch(expected.error);
        // A forged attempts header buys no retries: exactly one handler run.
        if (c.name.includes('forged')) expect(runs.get(id)).toBe(1);
        report.push(`${c.name}: dead-lettered, reason ${dead[0]!.reason} (${dead[0]!.error.slice(0, 80)})`);
      } else if ('handled' in expected) {
        await outcomes.until(() => handled.has(id) && handled.has(good.id), {
          timeoutMs: 60_000,
          what: `${c.name}: handled, then the good message handled`,
        });
        expected.check?.(handled.get(id)!);
        expect(outcomes.deadLettered().length).toBe(deadBefore);
        report.push(`${c.name}: handled`);
      } else {
        await outcomes.until(() => handled.has(good.id), { timeoutMs: 60_000, what: 'the good message' });
        expect(handled.has(id)).toBe(false);
        expect(outcomes.deadLettered().length).toBe(deadBefore);
        report.push(`${c.name}: routed away by the broker (no group receives the type)`);
      }
      expect(prototypeChanges()).toEqual([]);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    }, 120_000);
  }

  it('every dead letter is in the dead-letter destination, read with the raw client, with its reason', async () => {
    expect(expectedDead.size).toBeGreaterThan(0);
    const dead = await harness.readDeadLetters(topic, GROUP, expectedDead.size, 60_000);
    const byCase = new Map(dead.map((d) => [d.headers[CASE_HEADER], d.headers]));
    for (const [name, want] of expectedDead) {
      const headers = byCase.get(name);
      expect(headers, `dead letter of "${name}"`).toBeDefined();
      expect(headers![ControlHeader.reason], name).toBe(want.reason);
      if (want.error) expect(headers![ControlHeader.error], name).toMatch(want.error);
      expect(headers![ControlHeader.originalTopic]).toBe(topic);
    }
  }, 120_000);

  it('an oversized message is refused at publish with TOO_LARGE', async () => {
    const max = harness.create().capabilities.maxMessageBytes;
    const err = await producer
      .publish(topic, Order, { orderId: 'x'.repeat(max + 1), totalCents: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe('TOO_LARGE');
  });

  it('a header that makes the message too large is refused at publish with TOO_LARGE', async () => {
    const max = harness.create().capabilities.maxMessageBytes;
    const err = await producer
      .publish(topic, Order, { orderId: 'o', totalCents: 1 }, { headers: { huge: 'h'.repeat(max + 1) } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe('TOO_LARGE');
  });
});

/** Invalid URLs and options: each refused at construction or connect with a ConfigError naming the field. */
const SECRET = 's3cret-pw';
const BAD_CONFIG: Record<string, [string, string, () => unknown][]> = {
  memory: [
    ['maxMessageBytes -1', 'maxMessageBytes', () => memoryTransport({ maxMessageBytes: -1 })],
    [
      'URL memory://x?retention=lots',
      'transport',
      () => connect({ transport: 'memory://x?retention=lots', service: 's' }),
    ],
  ],
  rabbitmq: [
    ['an http:// URL with a password', 'url', () => rabbitmq({ url: `http://u:${SECRET}@127.0.0.1:5672` })],
    ['a URL that is not one', 'url', () => rabbitmq({ url: 'not a url' })],
    ['prefetch -1', 'prefetch', () => rabbitmq({ url: 'amqp://127.0.0.1', prefetch: -1 } as never)],
  ],
  kafka: [
    ['no brokers', 'brokers', () => kafka({ brokers: [] })],
    ['a broker without a port', 'brokers.0', () => kafka({ brokers: ['localhost'] })],
    [
      'sessionTimeoutMs -5',
      'sessionTimeoutMs',
      () => kafka({ brokers: ['127.0.0.1:9092'], sessionTimeoutMs: -5 } as never),
    ],
  ],
  sqs: [
    ['an endpoint that is not a URL', 'endpoint', () => sqs({ endpoint: 'not a url' })],
    ['a region that is a number', 'region', () => sqs({ region: 5 } as never)],
  ],
  sns: [['fanOut "carrier-pigeon"', 'fanOut', () => sqs({ fanOut: 'carrier-pigeon' } as never)]],
  nats: [
    ['a server that is not host:port', 'servers.0', () => nats({ servers: ['nats://:::'] })],
    ['no servers', 'servers', () => nats({ servers: [] })],
  ],
};
const BAD_CONNECT: [string, string, () => unknown][] = [
  [
    'an unknown URL scheme with a password',
    'transport',
    () => connect({ transport: `bogus://u:${SECRET}@x`, service: 's' }),
  ],
  ['a transport URL that is not one', 'transport', () => connect({ transport: '::::', service: 's' })],
  [
    'publishTimeoutMs -1',
    'publishTimeoutMs',
    () => connect({ transport: memoryTransport(), service: 's', publishTimeoutMs: -1 }),
  ],
];

describe(`bad configuration: ${T}`, () => {
  it.each([...(BAD_CONFIG[T] ?? []), ...BAD_CONNECT])(
    '%s → ConfigError naming %s',
    async (_name, field, make) => {
      const err = await (async () => make())().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe(field);
      expect((err as Error).message).toContain(field);
      expect((err as Error).message).not.toContain(SECRET);
    },
  );
});
