/**
 * Type-level tests of the API users lean on most: what `defineMessage` infers, what handlers and upcasters
 * receive, what publish and subscribe accept, and what must not compile. Checked by vitest's typecheck
 * (`expectTypeOf`); a line under `@ts-expect-error` that compiles fails the run, as does any type error.
 */
import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  type Bus,
  ClosedError,
  connect,
  defineMessage,
  type ErrorCode,
  type Handler,
  type InferMessage,
  isOmnibusError,
  type MessageContext,
  type MessageDefinition,
  type PublishOptions,
  type Subscription,
  type TransportStats,
  type TypedHandler,
  type Upcaster,
} from './index.js';

const OrderPlaced = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int(), note: z.string().optional() }),
  upcast: {
    1: (v1: { id: string; total: number }) => ({ orderId: v1.id, totalCents: Math.round(v1.total * 100) }),
  },
});
type Order = { orderId: string; totalCents: number; note?: string | undefined };

declare const bus: Bus;

describe('defineMessage', () => {
  it('infers the data type from the schema', () => {
    expectTypeOf(OrderPlaced).toEqualTypeOf<MessageDefinition<Order>>();
    expectTypeOf<InferMessage<typeof OrderPlaced>>().toEqualTypeOf<Order>();
    expectTypeOf(OrderPlaced.parse).returns.toEqualTypeOf<Order>();
    expectTypeOf(OrderPlaced.type).toBeString();
  });

  it('requires a schema and rejects a non-function upcaster', () => {
    // @ts-expect-error: a schema is required
    defineMessage({ type: 'a' });
    // @ts-expect-error: an upcaster is a function
    defineMessage({ type: 'a', version: 2, schema: z.object({}), upcast: { 1: 'rename id' } });
  });
});

describe('handlers', () => {
  it("a typed handler's data and context are inferred from the definition", () => {
    const handler = OrderPlaced.handle(async (order, ctx) => {
      expectTypeOf(order).toEqualTypeOf<Order>();
      expectTypeOf(ctx).toEqualTypeOf<MessageContext<Order>>();
      expectTypeOf(ctx.envelope.data).toEqualTypeOf<Order>();
      expectTypeOf(ctx.attempt).toBeNumber();
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
    });
    expectTypeOf(handler).toEqualTypeOf<TypedHandler<Order>>();
  });

  it('a handler expecting other data does not compile', () => {
    // @ts-expect-error: orderId is a string, not a number
    OrderPlaced.handle((order: { orderId: number }) => order);
    OrderPlaced.handle((order) => {
      // @ts-expect-error: no such field on the message
      order.customerId;
    });
  });

  it('subscribe takes typed and plain handlers, and refuses unknown options', async () => {
    const plain: Handler = (data, ctx) => {
      expectTypeOf(data).toBeUnknown();
      expectTypeOf(ctx.topic).toBeString();
    };
    const sub = await bus.subscribe({
      topic: 'orders',
      group: 'billing',
      handlers: { [OrderPlaced.type]: OrderPlaced.handle(() => {}), 'order.*': plain },
      retry: { attempts: 3, backoff: { initialMs: 100 } },
    });
    expectTypeOf(sub).toEqualTypeOf<Subscription>();
    // @ts-expect-error: misspelt option
    await bus.subscribe({ topic: 'o', group: 'g', handlers: { x: plain }, concurency: 3 });
    // @ts-expect-error: misspelt nested option
    await bus.subscribe({ topic: 'o', group: 'g', handlers: { x: plain }, retry: { backof: {} } });
    // @ts-expect-error: handlers are required
    await bus.subscribe({ topic: 'o', group: 'g' });
  });
});

describe('upcasters', () => {
  it('receive what the older producer wrote, as the upcaster declares it, and return the next version', () => {
    const up: Upcaster<{ id: string }, { orderId: string }> = (v1) => {
      expectTypeOf(v1).toEqualTypeOf<{ id: string }>();
      return { orderId: v1.id };
    };
    expectTypeOf(up).parameter(0).toEqualTypeOf<{ id: string }>();
    expectTypeOf(up).returns.toEqualTypeOf<{ orderId: string }>();
    // Unannotated, an upcaster's input is whatever was written: the schema validates the final result.
    expectTypeOf<Upcaster>().parameter(0).toBeAny();
    expectTypeOf<Upcaster>().returns.toBeUnknown();
  });

  it('an upcaster declared with its types must keep to them', () => {
    // @ts-expect-error: returns a number where the next version is an object
    const bad: Upcaster<{ id: string }, { orderId: string }> = (v1) => v1.id.length;
    void bad;
  });
});

describe('publish', () => {
  it('takes the definition, its data and the publish options, and resolves with the id', () => {
    const controller = new AbortController();
    expectTypeOf(
      bus.publish(
        'orders',
        OrderPlaced,
        { orderId: 'o', totalCents: 1 },
        { key: 'c-1', signal: controller.signal },
      ),
    ).resolves.toEqualTypeOf<{ id: string }>();
    expectTypeOf(
      bus.publish('orders', { type: 'x', data: { any: 'thing' } }, { timeoutMs: 500 }),
    ).resolves.toEqualTypeOf<{
      id: string;
    }>();
    expectTypeOf<PublishOptions>().toHaveProperty('signal').toEqualTypeOf<AbortSignal | undefined>();
    expectTypeOf<PublishOptions>().toHaveProperty('timeoutMs').toEqualTypeOf<number | undefined>();
    expectTypeOf(
      bus.publishBatch('orders', [{ definition: OrderPlaced, data: {} }], { signal: controller.signal }),
    ).resolves.toEqualTypeOf<{ ids: string[] }>();
  });

  it('wrong data, a missing field or an unknown option does not compile', () => {
    // @ts-expect-error: totalCents must be a number
    bus.publish('orders', OrderPlaced, { orderId: 'o', totalCents: '1' });
    // @ts-expect-error: totalCents is missing
    bus.publish('orders', OrderPlaced, { orderId: 'o' });
    // @ts-expect-error: data of another shape
    bus.publish('orders', OrderPlaced, { id: 'o', total: 1 });
    // @ts-expect-error: misspelt option
    bus.publish('orders', OrderPlaced, { orderId: 'o', totalCents: 1 }, { keys: 'c-1' });
    // @ts-expect-error: an untyped message needs a type
    bus.publish('orders', { data: 1 });
    // @ts-expect-error: the signal belongs to the batch, not to one item
    bus.publishBatch('orders', [{ type: 'x', data: 1, options: { signal: new AbortController().signal } }]);
    // @ts-expect-error: timeoutMs is a number of milliseconds
    bus.publish('orders', { type: 'x', data: 1 }, { timeoutMs: '5s' });
  });
});

describe('connect and lifecycle', () => {
  it('connect resolves a Bus; the bus and its subscriptions are AsyncDisposable', async () => {
    expectTypeOf(connect({ transport: 'memory://', service: 'svc' })).resolves.toEqualTypeOf<Bus>();
    expectTypeOf<Bus>().toExtend<AsyncDisposable>();
    expectTypeOf<Subscription>().toExtend<AsyncDisposable>();
    await using scoped = await connect({ transport: 'memory://', service: 'svc' });
    expectTypeOf(scoped.stats('orders', 'billing')).resolves.toEqualTypeOf<TransportStats>();
    // @ts-expect-error: misspelt option
    await connect({ transport: 'memory://', service: 'svc', publishTimeout: 5 });
  });

  it('errors carry a typed code', () => {
    const err: unknown = new ClosedError();
    if (isOmnibusError(err)) {
      expectTypeOf(err.code).toEqualTypeOf<ErrorCode>();
      expectTypeOf(err.retryable).toBeBoolean();
    }
    expectTypeOf<'CLOSED'>().toExtend<ErrorCode>();
    expectTypeOf<'TIMEOUT'>().toExtend<ErrorCode>();
    expectTypeOf<'OUTCOME_UNKNOWN'>().toExtend<ErrorCode>();
  });
});
