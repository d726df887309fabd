/**
 * The Bus's options and lifecycle as a user meets them: strict options with suggestions, the same error
 * after close for every operation, a caller's AbortSignal and per-call deadline on publish, `await using`,
 * and `transportOptions` for a memory:// URL.
 */
import { randomUUID } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { type Bus, type ConnectOptions, connect } from './bus.js';
import { ClosedError, ConfigError, OmnibusError, PublishError } from './errors.js';
import { memoryBroker, memoryTransport } from './memory/transport.js';
import { defineMessage } from './message.js';
import { eventually, recordOutcomes } from './testing/index.js';
import type { PublishCall } from './transport.js';

const Order = defineMessage({ type: 'order.placed', schema: z.object({ orderId: z.string() }) });

const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 2000 })));
});

async function setup(options: Partial<ConnectOptions> = {}) {
  const broker = `opts-${randomUUID()}`;
  const transport = memoryTransport({ name: broker });
  const bus = await connect({ transport, service: 'svc', ...options });
  buses.push(bus);
  const topic = `t-${randomUUID().slice(0, 8)}`;
  return { bus, broker, topic, transport, sent: () => memoryBroker(broker).topic(topic).log };
}

/** A transport whose publishes never settle; records each call and answers `verdict` when abandoned. */
async function hangingSetup(verdict?: 'withdrawn' | 'unknown', options: Partial<ConnectOptions> = {}) {
  const s = await setup(options);
  const calls: { call: PublishCall; at: number }[] = [];
  s.transport.publish = (_topic, _messages, call) => {
    calls.push({ call, at: Date.now() });
    if (verdict) call.onAbandon(() => verdict);
    return new Promise<void>(() => {});
  };
  return { ...s, calls };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('strict options', () => {
  it('subscribe with a misspelt option is a ConfigError suggesting the right one, and subscribes nothing', async () => {
    const { bus, topic } = await setup();
    const err = (await rejection(
      bus.subscribe({ topic, group: 'g', handlers: { x: () => {} }, concurency: 3 } as never),
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('concurency');
    expect(err.message).toContain('did you mean `concurrency`?');
    const nested = (await rejection(
      bus.subscribe({ topic, group: 'g', handlers: { x: () => {} }, retry: { backof: {} } } as never),
    )) as ConfigError;
    expect(nested.field).toBe('retry.backof');
    expect(nested.message).toContain('did you mean `retry.backoff`?');
    expect((await bus.health()).subscriptions).toEqual([]);
  });

  it('connect with a misspelt option is a ConfigError before anything connects', async () => {
    const transport = memoryTransport({ name: randomUUID() });
    let connected = false;
    transport.connect = async () => {
      connected = true;
    };
    const err = (await rejection(
      connect({ transport, service: 'svc', publishTimeoutMS: 5 } as never),
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('publishTimeoutMS');
    expect(err.message).toContain('did you mean `publishTimeoutMs`?');
    expect(connected).toBe(false);
  });

  it('replay validates its options', async () => {
    const { bus, topic } = await setup();
    const cases: [Record<string, unknown>, string][] = [
      [{ from: 'yesterday' }, 'from'],
      [{ handlers: {} }, 'handlers'],
      [{ concurrency: 0 }, 'concurrency'],
      [{ handlerTimeout: 5 }, 'handlerTimeout'],
    ];
    for (const [bad, field] of cases) {
      const err = (await rejection(
        bus.replay({ topic, from: 'earliest', handlers: { x: () => {} }, ...bad } as never),
      )) as ConfigError;
      expect(err, field).toBeInstanceOf(ConfigError);
      expect(err.field).toBe(field);
    }
    expect((await bus.health()).subscriptions).toEqual([]);
  });

  it('publish with a misspelt option is a ConfigError suggesting the right one, and sends nothing', async () => {
    const { bus, topic, sent } = await setup();
    const err = (await rejection(
      bus.publish(topic, Order, { orderId: 'o' }, { keys: 'customer-1' } as never),
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('options.keys');
    expect(err.message).toContain('did you mean `options.key`?');
    const untyped = (await rejection(
      bus.publish(topic, { type: 'x', data: 1 }, { header: {} } as never),
    )) as ConfigError;
    expect(untyped.field).toBe('options.header');
    expect(sent()).toEqual([]);
  });

  it('publishBatch checks its own options and each item, naming the item', async () => {
    const { bus, topic, sent } = await setup();
    const err = (await rejection(
      bus.publishBatch(topic, [{ type: 'x', data: 1 }], { timeout: 5 } as never),
    )) as ConfigError;
    expect(err.field).toBe('options.timeout');
    expect(err.message).toContain('did you mean `options.timeoutMs`?');
    const item = (await rejection(
      bus.publishBatch(topic, [
        { type: 'x', data: 1 },
        { type: 'x', data: 2, options: { signal: new AbortController().signal } as never },
      ]),
    )) as ConfigError;
    expect(item.field).toBe('items.1.options.signal');
    expect(sent()).toEqual([]);
  });
});

describe('after close', () => {
  it('publish, publishBatch, subscribe and replay all reject with ClosedError, code CLOSED', async () => {
    const { bus, topic } = await setup();
    await bus.close();
    const handlers = { x: () => {} };
    const errors = await Promise.all([
      rejection(bus.publish(topic, { type: 'x', data: 1 })),
      rejection(bus.publish(topic, Order, { orderId: 'o' })),
      rejection(bus.publishBatch(topic, [{ type: 'x', data: 1 }])),
      rejection(bus.publishBatch(topic, [])),
      rejection(bus.subscribe({ topic, group: 'g', handlers })),
      rejection(bus.replay({ topic, from: 'earliest', handlers })),
    ]);
    for (const err of errors) {
      expect(err).toBeInstanceOf(ClosedError);
      expect(err).toBeInstanceOf(OmnibusError);
      expect((err as OmnibusError).code).toBe('CLOSED');
      expect((err as OmnibusError).retryable).toBe(false);
    }
  });

  it('a subscribe still connecting when the bus closes is closed again and rejects with CLOSED', async () => {
    const { bus, topic, transport } = await setup();
    const subscribe = transport.subscribe.bind(transport);
    let closedSubs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    transport.subscribe = async (spec, onDelivery) => {
      await gate;
      const sub = await subscribe(spec, onDelivery);
      const close = sub.close.bind(sub);
      sub.close = async () => {
        closedSubs++;
        await close();
      };
      return sub;
    };
    const pending = rejection(bus.subscribe({ topic, group: 'g', handlers: { x: () => {} } }));
    const closing = bus.close();
    release();
    const err = (await pending) as OmnibusError;
    await closing;
    expect(err).toBeInstanceOf(ClosedError);
    expect(closedSubs).toBeGreaterThanOrEqual(1);
    expect((await bus.health()).subscriptions).toEqual([]);
  });
});

describe('publish with an AbortSignal', () => {
  it('an already-aborted signal rejects at once, sends nothing, and carries the reason', async () => {
    const { bus, topic, sent } = await setup();
    const reason = new Error('request cancelled');
    const signal = AbortSignal.abort(reason);
    for (const p of [
      bus.publish(topic, Order, { orderId: 'o' }, { signal }),
      bus.publish(topic, { type: 'x', data: 1 }, { signal }),
      bus.publishBatch(topic, [{ type: 'x', data: 1 }], { signal }),
    ]) {
      const err = (await rejection(p)) as PublishError;
      expect(err).toBeInstanceOf(PublishError);
      expect(err.code).toBe('TIMEOUT');
      expect(err.details).toMatchObject({ outcome: 'not-sent' });
      expect(err.cause).toBe(reason);
    }
    expect(sent()).toEqual([]);
    expect(bus.counters.publishFailed).toBe(3);
  });

  it('an abort while pending withdraws what the transport still holds: TIMEOUT, with the reason as cause', async () => {
    const { bus, topic, calls } = await hangingSetup('withdrawn');
    const controller = new AbortController();
    const pending = rejection(bus.publish(topic, { type: 'x', data: 1 }, { signal: controller.signal }));
    expect(calls).toHaveLength(1);
    const reason = new Error('shutting down');
    controller.abort(reason);
    const err = (await pending) as PublishError;
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('aborted');
    expect(err.cause).toBe(reason);
    expect(calls[0]!.call.abandoned).toBe(true);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('an abort after the bytes may be on the wire is OUTCOME_UNKNOWN', async () => {
    const { bus, topic, calls } = await hangingSetup('unknown');
    const controller = new AbortController();
    const pending = rejection(
      bus.publishBatch(
        topic,
        [
          { type: 'x', data: 1 },
          { type: 'x', data: 2 },
        ],
        { signal: controller.signal },
      ),
    );
    // publishBatch prepares asynchronously: abort once the transport holds the call.
    await eventually(() => calls.length === 1);
    controller.abort();
    const err = (await pending) as PublishError;
    expect(err.code).toBe('OUTCOME_UNKNOWN');
    expect((err.cause as Error).name).toBe('AbortError');
    expect(bus.counters.publishFailed).toBe(2);
  });

  it('a publish that settles first leaves no listener on a long-lived signal, and a later abort changes nothing', async () => {
    const { bus, topic, sent } = await setup();
    const controller = new AbortController();
    for (let i = 0; i < 20; i++)
      await bus.publish(topic, { type: 'x', data: i }, { signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    controller.abort();
    expect(sent()).toHaveLength(20);
    expect(bus.counters).toMatchObject({ published: 20, publishFailed: 0 });
  });

  it('the deadline still applies with a signal that never aborts, and the signal is then released', async () => {
    const { bus, topic } = await hangingSetup(undefined, { publishTimeoutMs: 40 });
    const controller = new AbortController();
    const err = (await rejection(
      bus.publish(topic, { type: 'x', data: 1 }, { signal: controller.signal }),
    )) as PublishError;
    expect(err.code).toBe('OUTCOME_UNKNOWN');
    expect(err.message).toContain('40 ms');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('per-call timeoutMs', () => {
  it('replaces the bus deadline for that call: the transport sees it, and it is the only one', async () => {
    const { bus, topic, calls } = await hangingSetup('withdrawn', { publishTimeoutMs: 60_000 });
    const started = Date.now();
    const err = (await rejection(
      bus.publish(topic, { type: 'x', data: 1 }, { timeoutMs: 30 }),
    )) as PublishError;
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain('30 ms');
    expect(calls[0]!.call.deadlineAt).toBeGreaterThanOrEqual(started + 30);
    expect(calls[0]!.call.deadlineAt).toBeLessThan(started + 5000);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('applies to a whole batch', async () => {
    const { bus, topic, calls } = await hangingSetup(undefined, { publishTimeoutMs: 60_000 });
    const err = (await rejection(
      bus.publishBatch(topic, [{ type: 'x', data: 1 }], { timeoutMs: 25 }),
    )) as PublishError;
    expect(err.code).toBe('OUTCOME_UNKNOWN');
    expect(calls).toHaveLength(1);
  });

  it('a publish that settles in time clears its own timer', async () => {
    const { bus, topic } = await setup();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      await bus.publish(topic, { type: 'x', data: 1 }, { timeoutMs: 50 });
      expect(vi.getTimerCount()).toBe(0);
      // Had the timer survived, it would count a failure for a publish that succeeded.
      vi.advanceTimersByTime(100);
    } finally {
      vi.useRealTimers();
    }
    expect(bus.counters).toMatchObject({ published: 1, publishFailed: 0 });
  });
});

describe('await using', () => {
  it('closes a subscription and the bus at the end of the scope', async () => {
    const name = `using-${randomUUID()}`;
    let outer: Bus;
    {
      await using bus = await connect({ transport: memoryTransport({ name }), service: 'svc' });
      outer = bus;
      const outcomes = recordOutcomes(bus);
      {
        await using sub = await bus.subscribe({ topic: 't', group: 'g', handlers: { x: () => {} } });
        expect(sub.group).toBe('g');
        const { id } = await bus.publish('t', { type: 'x', data: 1 });
        await outcomes.settled([id]);
        expect((await bus.health()).subscriptions).toHaveLength(1);
      }
      expect((await bus.health()).subscriptions).toEqual([]);
    }
    const err = (await rejection(outer.publish('t', { type: 'x', data: 1 }))) as OmnibusError;
    expect(err.code).toBe('CLOSED');
  });
});

describe('connect to memory:// with transportOptions', () => {
  it('passes them to the memory transport', async () => {
    const bus = await connect({
      transport: `memory://${randomUUID()}`,
      service: 'svc',
      transportOptions: { maxMessageBytes: 2048, onNoSubscribers: 'reject' },
    });
    buses.push(bus);
    expect(bus.transport.capabilities.maxMessageBytes).toBe(2048);
    const err = (await rejection(bus.publish('nobody', { type: 'x', data: 1 }))) as PublishError;
    expect(err.code).toBe('UNROUTABLE');
  });

  it('a misspelt one is a ConfigError under transportOptions, with a suggestion', async () => {
    const err = (await rejection(
      connect({ transport: 'memory://', service: 'svc', transportOptions: { retension: 5 } }),
    )) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.field).toBe('transportOptions.retension');
    expect(err.message).toContain('did you mean `transportOptions.retention`?');
  });

  it('an invalid value is a ConfigError under transportOptions', async () => {
    const err = (await rejection(
      connect({ transport: 'memory://', service: 'svc', transportOptions: { maxMessageBytes: -1 } }),
    )) as ConfigError;
    expect(err.field).toBe('transportOptions.maxMessageBytes');
  });

  it('the broker name comes from the URL, or from the options when the URL names none', async () => {
    const name = `named-${randomUUID()}`;
    const bus = await connect({ transport: 'memory://', service: 'svc', transportOptions: { name } });
    buses.push(bus);
    expect((bus.transport as unknown as { broker: unknown }).broker).toBe(memoryBroker(name));
    const err = (await rejection(
      connect({ transport: 'memory://a', service: 'svc', transportOptions: { name: 'b' } }),
    )) as ConfigError;
    expect(err.field).toBe('transportOptions.name');
  });

  it('transportOptions with a transport instance is a ConfigError, not silently ignored', async () => {
    const err = (await rejection(
      connect({ transport: memoryTransport({ name: randomUUID() }), service: 'svc', transportOptions: {} }),
    )) as ConfigError;
    expect(err.field).toBe('transportOptions');
  });
});

describe('stats', () => {
  it('has the one documented shape, every key present', async () => {
    const { bus, topic } = await setup();
    await bus.provision(topic, [{ group: 'g' }]);
    const stats = await bus.stats(topic, 'g');
    expect(Object.keys(stats).sort()).toEqual(
      ['deadLettered', 'delayed', 'depth', 'extras', 'inFlight', 'lag', 'oldestAgeMs'].sort(),
    );
  });
});
