import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { rawCodec } from './codec.js';
import { ConfigError, UnknownVersionError, ValidationError } from './errors.js';
import { defineMessage, isTypedHandler } from './message.js';

const OrderV3 = defineMessage({
  type: 'order.placed',
  version: 3,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int(), currency: z.string() }),
  upcast: {
    1: (v1: { id: string; total: number }) => ({ orderId: v1.id, totalCents: Math.round(v1.total * 100) }),
    2: (v2: { orderId: string; totalCents: number }) => ({ ...v2, currency: 'EUR' }),
  },
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('defineMessage', () => {
  it('describes the message', () => {
    expect(OrderV3.type).toBe('order.placed');
    expect(OrderV3.version).toBe(3);
    expect(OrderV3.codec).toBeUndefined();
    expect(defineMessage({ type: 'x', schema: z.string() }).version).toBe(1);
    expect(defineMessage({ type: 'x', schema: z.string(), codec: rawCodec }).codec).toBe(rawCodec);
  });

  it('validates data at the current version (the default)', () => {
    const v3 = { orderId: 'o-1', totalCents: 100, currency: 'USD' };
    expect(OrderV3.parse(v3)).toEqual(v3);
    expect(OrderV3.parse(v3, 3)).toEqual(v3);
  });

  it('upcasts through the whole chain, one version at a time', () => {
    expect(OrderV3.parse({ id: 'o-1', total: 42.5 }, 1)).toEqual({
      orderId: 'o-1',
      totalCents: 4250,
      currency: 'EUR',
    });
    expect(OrderV3.parse({ orderId: 'o-2', totalCents: 5 }, 2)).toEqual({
      orderId: 'o-2',
      totalCents: 5,
      currency: 'EUR',
    });
  });

  it('returns the schema output (transforms and defaults apply)', () => {
    const D = defineMessage({
      type: 'd',
      schema: z.object({ n: z.coerce.number(), tag: z.string().default('x') }),
    });
    expect(D.parse({ n: '5' })).toEqual({ n: 5, tag: 'x' });
  });

  it('invalid data is a ValidationError listing the issues by path', () => {
    const err = thrown(() =>
      OrderV3.parse({ orderId: 1, totalCents: 1.5, currency: 'EUR' }),
    ) as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('order.placed v3 failed validation');
    expect(err.message).toContain('orderId:');
    expect(err.message).toContain('totalCents:');
    expect(err.issues).toHaveLength(2);
  });

  it('names (root) for a top-level issue', () => {
    const D = defineMessage({ type: 'd', schema: z.string() });
    expect(() => D.parse(5)).toThrow(/\(root\)/);
  });

  it('a schema error without issues still explains itself', () => {
    const D = defineMessage({
      type: 'd',
      schema: { safeParse: () => ({ success: false as const, error: new Error('custom says no') }) },
    });
    const err = thrown(() => D.parse(1)) as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toContain('custom says no');
  });

  it('a missing upcaster is a ValidationError (never retried)', () => {
    const Gap = defineMessage({
      type: 'gap',
      version: 3,
      schema: z.object({ c: z.number() }),
      upcast: { 2: (v: { b: number }) => ({ c: v.b }) },
    });
    expect(Gap.parse({ b: 1 }, 2)).toEqual({ c: 1 });
    const err = thrown(() => Gap.parse({ a: 1 }, 1));
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain('no upcaster from version 1 to 2');
  });

  it('an upcaster that throws is a ValidationError with the cause', () => {
    const boom = new Error('bad v1 payload');
    const D = defineMessage({
      type: 'd',
      version: 2,
      schema: z.object({}),
      upcast: {
        1: () => {
          throw boom;
        },
      },
    });
    const err = thrown(() => D.parse({}, 1)) as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toContain('upcaster from version 1 failed: bad v1 payload');
    expect(err.cause).toBe(boom);
  });

  it('a newer version than this consumer knows is an UnknownVersionError (retryable)', () => {
    const err = thrown(() => OrderV3.parse({}, 4)) as UnknownVersionError;
    expect(err).toBeInstanceOf(UnknownVersionError);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('version 4');
    expect(err.message).toContain('(3)');
  });

  it.each(['', 'Order Placed', 'order..placed', '.order', 'order.', 'order.*', 'a/b'])(
    'rejects the type %j with a ConfigError naming type',
    (type) => {
      const err = thrown(() => defineMessage({ type, schema: z.any() })) as ConfigError;
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.field).toBe('type');
    },
  );

  it('accepts dotted words of letters, digits, _ and -', () => {
    expect(defineMessage({ type: 'Order_2.placed-v2', schema: z.any() }).type).toBe('Order_2.placed-v2');
  });

  it.each([0, -1, 1.5, Number.NaN])('rejects version %s', (version) => {
    const err = thrown(() => defineMessage({ type: 't', version, schema: z.any() })) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('version');
  });

  it('rejects a schema without safeParse', () => {
    const err = thrown(() => defineMessage({ type: 't', schema: {} as never })) as ConfigError;
    expect(err.field).toBe('schema');
  });

  it.each([
    [2, { 2: (v: unknown) => v }, 'upcast.2'],
    [2, { 3: (v: unknown) => v }, 'upcast.3'],
    [3, { 0: (v: unknown) => v }, 'upcast.0'],
    [3, { 1.5: (v: unknown) => v }, 'upcast.1.5'],
  ])('version %s rejects upcast keys %o', (version, upcast, field) => {
    const err = thrown(() => defineMessage({ type: 't', version, schema: z.any(), upcast })) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe(field);
  });

  it('handle() binds a handler to the definition', () => {
    const fn = () => {};
    const h = OrderV3.handle(fn);
    expect(h.definition).toBe(OrderV3);
    expect(h.fn).toBe(fn);
    expect(isTypedHandler(h)).toBe(true);
    expect(isTypedHandler(fn)).toBe(false);
    expect(isTypedHandler(null)).toBe(false);
    expect(isTypedHandler({ fn })).toBe(false);
  });
});
