import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import {
  checkBatchItemOptions,
  checkPublishOptions,
  closest,
  connectSchema,
  editDistance,
  parseOptions,
  replaySchema,
  subscribeSchema,
} from './options.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const minimal = { topic: 'orders', group: 'billing', handlers: { 'order.placed': () => {} } };

describe('subscribe options', () => {
  it('fills the documented defaults', () => {
    const o = parseOptions(subscribeSchema, minimal);
    expect(o).toMatchObject({
      concurrency: 8,
      ordered: false,
      retry: {
        attempts: 5,
        backoff: { initialMs: 200, maxMs: 60_000, factor: 2, jitter: true },
        inProcessMaxDelayMs: 1000,
      },
      handlerTimeoutMs: 30_000,
      deadLetter: true,
      unmatched: 'ack',
    });
    expect(o.prefetch).toBe(16);
    expect(o.idempotency).toBeUndefined();
    expect(o.circuitBreaker).toBeUndefined();
  });

  it('fills nested defaults inside given objects', () => {
    const o = parseOptions(subscribeSchema, {
      ...minimal,
      retry: { attempts: 2 },
      circuitBreaker: {},
      idempotency: { store: { claim() {} } },
    });
    expect(o.retry.backoff.initialMs).toBe(200);
    expect(o.retry.inProcessMaxDelayMs).toBe(1000);
    expect(o.circuitBreaker).toMatchObject({ failureThreshold: 5, cooldownMs: 10_000 });
    expect(o.idempotency).toMatchObject({ leaseMs: 35_000, ttlMs: 86_400_000 });
  });

  it('derives prefetch, the lease and the retention from the other options', () => {
    const o = parseOptions(subscribeSchema, {
      ...minimal,
      concurrency: 3,
      handlerTimeoutMs: 1000,
      idempotency: { store: { claim() {}, ttlMs: 60_000 } },
    });
    expect(o.prefetch).toBe(6);
    expect(o.idempotency).toMatchObject({ leaseMs: 6000, ttlMs: 60_000 });
    const given = parseOptions(subscribeSchema, {
      ...minimal,
      prefetch: 1,
      idempotency: { store: { claim() {}, ttlMs: 60_000 }, leaseMs: 7, ttlMs: 9 },
    });
    expect(given.prefetch).toBe(1);
    expect(given.idempotency).toMatchObject({ leaseMs: 7, ttlMs: 9 });
  });

  it.each([
    [{ topic: '' }, 'topic'],
    [{ group: 'bad group' }, 'group'],
    [{ group: 'a.b' }, 'group'],
    [{ handlers: {} }, 'handlers'],
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 1.5 }, 'concurrency'],
    [{ prefetch: -1 }, 'prefetch'],
    [{ retry: { attempts: 0 } }, 'retry.attempts'],
    [{ retry: { backoff: { initialMs: 500, maxMs: 100 } } }, 'retry.backoff.maxMs'],
    [{ retry: { backoff: { factor: 0.5 } } }, 'retry.backoff.factor'],
    [{ retry: { inProcessMaxDelayMs: -1 } }, 'retry.inProcessMaxDelayMs'],
    [{ handlerTimeoutMs: 0 }, 'handlerTimeoutMs'],
    [{ deadLetter: 'yes' }, 'deadLetter'],
    [{ unmatched: 'drop' }, 'unmatched'],
    [{ idempotency: { store: {} } }, 'idempotency.store'],
    [{ idempotency: { store: { claim() {} }, leaseMs: 0 } }, 'idempotency.leaseMs'],
    [{ circuitBreaker: { failureThreshold: 0 } }, 'circuitBreaker.failureThreshold'],
    [{ circuitBreaker: { onStateChange: 'x' } }, 'circuitBreaker.onStateChange'],
    [{ startFrom: 'middle' }, 'startFrom'],
  ])('%o fails naming %s', (bad, field) => {
    const err = configError(() => parseOptions(subscribeSchema, { ...minimal, ...bad }));
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
    expect(err.code).toBe('CONFIG');
  });
});

describe('unknown keys', () => {
  it.each([
    [{ concurency: 3 }, 'concurency', 'concurrency'],
    [{ topic: undefined, topc: 'orders' }, 'topc', 'topic'],
    [{ Ordered: true }, 'Ordered', 'ordered'],
    [{ handlerTimeout: 5 }, 'handlerTimeout', 'handlerTimeoutMs'],
    [{ retry: { backof: {} } }, 'retry.backof', 'retry.backoff'],
    [{ retry: { atempts: 2 } }, 'retry.atempts', 'retry.attempts'],
    [{ retry: { backoff: { intialMs: 5 } } }, 'retry.backoff.intialMs', 'retry.backoff.initialMs'],
    [{ circuitBreaker: { cooldown: 5 } }, 'circuitBreaker.cooldown', 'circuitBreaker.cooldownMs'],
    [{ idempotency: { store: { claim() {} }, tllMs: 5 } }, 'idempotency.tllMs', 'idempotency.ttlMs'],
  ])('%o is a ConfigError naming %s, suggesting %s', (bad, field, suggestion) => {
    const err = configError(() => parseOptions(subscribeSchema, { ...minimal, ...bad }));
    expect(err.field).toBe(field);
    expect(err.message).toBe(`${field}: unknown option; did you mean \`${suggestion}\`?`);
  });

  it('suggests nothing when no known key is close', () => {
    const err = configError(() => parseOptions(subscribeSchema, { ...minimal, banana: 1 }));
    expect(err.field).toBe('banana');
    expect(err.message).toBe('banana: unknown option');
  });

  it('names every unknown key of one object', () => {
    const err = configError(() => parseOptions(subscribeSchema, { ...minimal, concurency: 1, banana: 2 }));
    expect(err.field).toBe('concurency');
    expect(err.message).toContain('also unknown: banana');
    expect(err.message).toContain('did you mean `concurrency`?');
  });

  it('keeps the prefix in the field and in the suggestion', () => {
    const err = configError(() =>
      parseOptions(connectSchema, { transport: 'memory://', service: 's', servise: 'x' }, 'options'),
    );
    expect(err.field).toBe('options.servise');
    expect(err.message).toContain('did you mean `options.service`?');
  });

  it('finds the known keys through transforms, records and arrays, as adapters write their schemas', () => {
    const adapter = z
      .strictObject({
        url: z.string().default('amqp://localhost'),
        connectTimeoutMs: z.number().default(10_000),
        queues: z.record(z.string(), z.strictObject({ durable: z.boolean().default(true) })).optional(),
        tiers: z.array(z.strictObject({ delayMs: z.number() })).optional(),
      })
      .transform((o) => ({ ...o, resolved: true }));
    const cases: [unknown, string, string][] = [
      [{ connectTimeout: 5 }, 'transportOptions.connectTimeout', 'transportOptions.connectTimeoutMs'],
      [
        { queues: { orders: { durabel: true } } },
        'transportOptions.queues.orders.durabel',
        'transportOptions.queues.orders.durable',
      ],
      [
        { tiers: [{ delayMs: 1 }, { delay: 5 }] },
        'transportOptions.tiers.1.delay',
        'transportOptions.tiers.1.delayMs',
      ],
    ];
    for (const [value, field, suggestion] of cases) {
      const err = configError(() => parseOptions(adapter, value, 'transportOptions'));
      expect(err.field).toBe(field);
      expect(err.message).toContain(`did you mean \`${suggestion}\`?`);
    }
  });

  it('edit distance counts insertions, deletions, substitutions and swaps of neighbours as one each', () => {
    expect(editDistance('concurrency', 'concurrency')).toBe(0);
    expect(editDistance('concurency', 'concurrency')).toBe(1);
    expect(editDistance('concurrencyy', 'concurrency')).toBe(1);
    expect(editDistance('concurrenxy', 'concurrency')).toBe(1);
    expect(editDistance('cnocurrency', 'concurrency')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('a near miss is within one edit for short keys, two for medium, three for long ones', () => {
    expect(closest('kee', ['key', 'id'])).toBe('key');
    expect(closest('kx', ['key'])).toBeUndefined();
    expect(closest('ordred', ['ordered', 'group'])).toBe('ordered');
    expect(closest('xxxxdered', ['ordered'])).toBeUndefined();
    expect(closest('publishTimeout', ['publishTimeoutMs', 'drainTimeoutMs'])).toBe('publishTimeoutMs');
    expect(closest('RETRY', ['retry'])).toBe('retry');
  });
});

describe('replay options', () => {
  const replay = { topic: 'orders', from: 'earliest', handlers: { x: () => {} } };

  it('fills the defaults: one at a time, the handler timeout of subscribe', () => {
    expect(parseOptions(replaySchema, replay)).toMatchObject({ concurrency: 1, handlerTimeoutMs: 30_000 });
    expect(parseOptions(replaySchema, { ...replay, from: { offset: '42' } }).from).toEqual({ offset: '42' });
    expect(parseOptions(replaySchema, { ...replay, from: { timestamp: 1 } }).from).toEqual({ timestamp: 1 });
  });

  it.each([
    [{ topic: '' }, 'topic'],
    [{ from: 'middle' }, 'from'],
    [{ from: undefined }, 'from'],
    [{ handlers: {} }, 'handlers'],
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurency: 2 }, 'concurency'],
  ])('%o fails naming %s', (bad, field) => {
    expect(configError(() => parseOptions(replaySchema, { ...replay, ...bad })).field).toBe(field);
  });
});

describe('publish options', () => {
  it.each([
    [undefined],
    [{}],
    [
      {
        key: 'k',
        id: 'i',
        headers: { a: 'b' },
        correlationId: 'c',
        causationId: 'd',
        time: 1,
        contentType: 'x',
      },
    ],
    [{ signal: new AbortController().signal, timeoutMs: 5 }],
    [{ key: undefined }],
  ])('%o is accepted', (o) => {
    expect(() => checkPublishOptions(o)).not.toThrow();
  });

  it.each([
    [{ keys: 'k' }, 'options.keys', 'did you mean `options.key`?'],
    [{ header: {} }, 'options.header', 'did you mean `options.headers`?'],
    [{ timeout: 5 }, 'options.timeout', 'did you mean `options.timeoutMs`?'],
    [{ time: 'now' }, 'options.time', ''],
    [{ headers: { a: 1 } }, 'options.headers.a', ''],
    [{ signal: {} }, 'options.signal', 'an AbortSignal'],
    [{ timeoutMs: 0 }, 'options.timeoutMs', ''],
    [{ id: '' }, 'options.id', ''],
  ])('%o is a ConfigError naming %s', (o, field, text) => {
    const err = configError(() => checkPublishOptions(o));
    expect(err.field).toBe(field);
    expect(err.message).toContain(text);
  });

  it("a batch item's options hold only envelope fields, named by the item's index", () => {
    expect(() => checkBatchItemOptions({ key: 'k', headers: { a: 'b' } }, 0)).not.toThrow();
    expect(() => checkBatchItemOptions(undefined, 0)).not.toThrow();
    const err = configError(() => checkBatchItemOptions({ timeoutMs: 5 }, 3));
    expect(err.field).toBe('items.3.options.timeoutMs');
    expect(configError(() => checkBatchItemOptions({ kye: 'k' }, 1)).message).toContain(
      'did you mean `items.1.options.key`?',
    );
  });

  it('options that are not an object are a ConfigError', () => {
    expect(configError(() => checkPublishOptions('k')).field).toBe('options');
  });
});

describe('connect options', () => {
  it('fills defaults', () => {
    expect(parseOptions(connectSchema, { transport: 'memory://', service: 'checkout' })).toEqual({
      transport: 'memory://',
      service: 'checkout',
      publishTimeoutMs: 10_000,
      drainTimeoutMs: 30_000,
    });
  });

  it.each([
    [{ service: '' }, 'service'],
    [{ service: 'my service' }, 'service'],
    [{ service: 'svc', publishTimeoutMs: 0 }, 'publishTimeoutMs'],
    [{ service: 'svc', drainTimeoutMs: -1 }, 'drainTimeoutMs'],
    [{ service: 'svc', publishTimeoutMS: 5 }, 'publishTimeoutMS'],
    [{ service: 'svc', logger: console.log }, 'logger'],
    [{ service: 'svc', transportOptions: 'x' }, 'transportOptions'],
  ])('%o fails naming %s', (bad, field) => {
    expect(configError(() => parseOptions(connectSchema, { transport: 'memory://', ...bad })).field).toBe(
      field,
    );
  });

  it('prefixes the path when asked', () => {
    expect(
      configError(() => parseOptions(connectSchema, { transport: 'memory://', service: '' }, 'options'))
        .field,
    ).toBe('options.service');
  });
});
