/**
 * The failure policy through a real Bus on the memory transport, as a user sets it up: publish, subscribe,
 * and read the dead-letter queue back from the broker. Every test has its own broker.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Bus, connect } from './bus.js';
import type { CircuitState } from './circuit-breaker.js';
import { ControlHeader, type Envelope, readDeadLetterInfo } from './envelope.js';
import { ClosedError, NonRetryableError } from './errors.js';
import { memoryStore } from './idempotency.js';
import { memoryBroker, memoryTransport } from './memory/transport.js';
import { defineMessage, type InferMessage, type MessageContext } from './message.js';
import { eventually, recordOutcomes } from './testing/index.js';

const Order = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
  upcast: { 1: (v1: { id: string; total: number }) => ({ orderId: v1.id, totalCents: v1.total * 100 }) },
});
type Order = InferMessage<typeof Order>;
const order = (n = 1): Order => ({ orderId: `o-${n}`, totalCents: n * 100 });

const fast = { initialMs: 1, maxMs: 5, factor: 2, jitter: false };

const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 2000 })));
});

async function setup(service = 'svc') {
  const broker = `pipeline-${randomUUID()}`;
  const topic = `orders-${randomUUID().slice(0, 8)}`;
  const bus = await connect({ transport: memoryTransport({ name: broker }), service, drainTimeoutMs: 5000 });
  buses.push(bus);
  const another = async (name = 'svc2') => {
    const b = await connect({
      transport: memoryTransport({ name: broker }),
      service: name,
      drainTimeoutMs: 5000,
    });
    buses.push(b);
    return b;
  };
  return { bus, broker, topic, outcomes: recordOutcomes(bus), another };
}

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe('pipeline on the memory transport', () => {
  it('delivers a published message to its typed handler', async () => {
    const { bus, topic, outcomes } = await setup();
    const seen: { data: Order; ctx: MessageContext<Order> }[] = [];
    await bus.subscribe({
      topic,
      group: 'billing',
      handlers: { [Order.type]: Order.handle((data, ctx) => void seen.push({ data, ctx })) },
    });
    const { id } = await bus.publish(topic, Order, order(3), { key: 'k-3', headers: { tenant: 'acme' } });
    await outcomes.settled([id]);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.data).toEqual(order(3));
    expect(seen[0]!.ctx).toMatchObject({ attempt: 1, redelivered: false, topic, group: 'billing' });
    expect(seen[0]!.ctx.envelope).toMatchObject({
      id,
      key: 'k-3',
      headers: { tenant: 'acme' },
      source: 'svc',
    });
    expect(bus.counters).toMatchObject({ published: 1, consumed: 1, handled: 1, failures: 0 });
  });

  it('upcasts a message an older producer published', async () => {
    const { bus, topic, outcomes } = await setup();
    const seen: Order[] = [];
    await bus.subscribe({
      topic,
      group: 'billing',
      handlers: { [Order.type]: Order.handle((d) => void seen.push(d)) },
    });
    const { id } = await bus.publish(topic, {
      type: 'order.placed',
      version: 1,
      data: { id: 'o-9', total: 2 },
    });
    await outcomes.settled([id]);
    expect(seen).toEqual([{ orderId: 'o-9', totalCents: 200 }]);
  });

  it('retries a failing handler and succeeds within the attempts', async () => {
    const { bus, topic, outcomes } = await setup();
    const attempts: number[] = [];
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 3, backoff: fast },
      handlers: {
        [Order.type]: Order.handle((_d, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt < 3) throw new Error('transient');
        }),
      },
    });
    const { id } = await bus.publish(topic, Order, order());
    await outcomes.settled([id]);
    expect(attempts).toEqual([1, 2, 3]);
    expect(outcomes.handled()).toHaveLength(1);
    expect(bus.counters).toMatchObject({ handled: 1, failures: 2, retried: 2, deadLettered: 0 });
  });

  it('dead-letters after max attempts; the dead letter keeps the envelope and gains failure metadata', async () => {
    const { bus, broker, topic, outcomes } = await setup();
    let calls = 0;
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 3, backoff: fast },
      handlers: {
        [Order.type]: Order.handle(() => {
          calls++;
          throw new Error(`failure ${calls}`);
        }),
      },
    });
    const before = Date.now();
    const { id } = await bus.publish(topic, Order, order(5), { key: 'k', headers: { tenant: 'acme' } });
    await outcomes.settled([id]);
    expect(calls).toBe(3);
    expect(outcomes.deadLettered()).toEqual([
      expect.objectContaining({
        id,
        reason: 'max-attempts',
        error: 'failure 3',
        attempts: 3,
        topic,
        group: 'billing',
      }),
    ]);
    const dlq = memoryBroker(broker).deadLetters(topic, 'billing');
    expect(dlq).toHaveLength(1);
    const info = readDeadLetterInfo(dlq[0]!.headers)!;
    expect(info).toMatchObject({
      reason: 'max-attempts',
      error: 'failure 3',
      attempts: 3,
      originalTopic: topic,
      originalGroup: 'billing',
    });
    expect(info.firstFailureAt).toBeGreaterThanOrEqual(before);
    expect(info.lastFailureAt).toBeGreaterThanOrEqual(info.firstFailureAt!);
    expect(info.deadLetteredAt).toBe(info.lastFailureAt);
    // The original envelope is intact.
    const original = memoryTransport({ name: broker }).decode(dlq[0]!);
    expect(original).toMatchObject({
      id,
      type: 'order.placed',
      key: 'k',
      headers: { tenant: 'acme' },
      version: 2,
    });
    expect(JSON.parse(Buffer.from(original.data).toString())).toEqual(order(5));
    expect(await bus.stats(topic, 'billing')).toMatchObject({ deadLettered: 1, depth: 0, inFlight: 0 });
  });

  it('continues the attempt count through broker retries', async () => {
    const { bus, broker, topic, outcomes } = await setup();
    const attempts: number[] = [];
    const redelivered: boolean[] = [];
    await bus.subscribe({
      topic,
      group: 'billing',
      // A delay above inProcessMaxDelayMs goes through the broker's delayed redelivery.
      retry: {
        attempts: 3,
        backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
        inProcessMaxDelayMs: 0,
      },
      handlers: {
        [Order.type]: Order.handle((_d, ctx) => {
          attempts.push(ctx.attempt);
          redelivered.push(ctx.redelivered);
          throw new Error('always');
        }),
      },
    });
    const { id } = await bus.publish(topic, Order, order());
    await outcomes.settled([id]);
    expect(attempts).toEqual([1, 2, 3]);
    expect(redelivered).toEqual([false, true, true]);
    expect(outcomes.outcomes.filter((o) => o.kind === 'retry-scheduled')).toEqual([
      expect.objectContaining({ attempt: 1, delayMs: 5 }),
      expect.objectContaining({ attempt: 2, delayMs: 5 }),
    ]);
    const info = readDeadLetterInfo(memoryBroker(broker).deadLetters(topic, 'billing')[0]!.headers)!;
    expect(info.attempts).toBe(3);
    expect(info.firstFailureAt).toBeLessThanOrEqual(info.lastFailureAt!);
  });

  it('a NonRetryableError dead-letters at once', async () => {
    const { bus, broker, topic, outcomes } = await setup();
    let calls = 0;
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 5, backoff: fast },
      handlers: {
        [Order.type]: Order.handle(() => {
          calls++;
          throw new NonRetryableError('unknown customer');
        }),
      },
    });
    const { id } = await bus.publish(topic, Order, order());
    await outcomes.settled([id]);
    expect(calls).toBe(1);
    expect(outcomes.deadLettered()[0]).toMatchObject({ id, reason: 'non-retryable', attempts: 1 });
    expect(readDeadLetterInfo(memoryBroker(broker).deadLetters(topic, 'billing')[0]!.headers)).toMatchObject({
      reason: 'non-retryable',
      error: 'unknown customer',
      attempts: 1,
    });
  });

  it('an unknown newer version is retried, and dead-lettered as max-attempts only when attempts run out', async () => {
    const { bus, topic, outcomes } = await setup();
    let calls = 0;
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: {
        attempts: 3,
        backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
        inProcessMaxDelayMs: 0,
      },
      handlers: { [Order.type]: Order.handle(() => void calls++) },
    });
    const { id } = await bus.publish(topic, {
      type: 'order.placed',
      version: 3,
      data: { orderId: 'x', cents: 1 },
    });
    await outcomes.settled([id]);
    expect(calls).toBe(0);
    const kinds = outcomes.outcomes.map((o) => o.kind);
    expect(kinds).toEqual(['retry-scheduled', 'retry-scheduled', 'dead-lettered']);
    expect(outcomes.deadLettered()[0]).toMatchObject({ reason: 'max-attempts', attempts: 3 });
    expect(outcomes.deadLettered()[0]!.error).toContain('newer');
  });

  it('invalid data for a known version is dead-lettered as validation, never retried', async () => {
    const { bus, topic, outcomes } = await setup();
    let calls = 0;
    await bus.subscribe({
      topic,
      group: 'billing',
      handlers: { [Order.type]: Order.handle(() => void calls++) },
    });
    const { id } = await bus.publish(topic, { type: 'order.placed', version: 2, data: { orderId: 7 } });
    await outcomes.settled([id]);
    expect(calls).toBe(0);
    expect(outcomes.deadLettered()[0]).toMatchObject({ id, reason: 'validation', attempts: 0 });
  });

  it('bytes that are not an envelope are dead-lettered as decode', async () => {
    const { bus, broker, topic, outcomes } = await setup();
    await bus.subscribe({ topic, group: 'billing', handlers: { '#': () => {} } });
    memoryBroker(broker).publish(topic, {
      body: Buffer.from('garbage'),
      headers: { ce_type: 'order.placed' },
    });
    await outcomes.until((o) => o.length > 0);
    expect(outcomes.deadLettered()[0]).toMatchObject({ reason: 'decode', id: undefined });
    expect(memoryBroker(broker).deadLetters(topic, 'billing')).toHaveLength(1);
  });

  it('with ordered: true a key waits behind its retry', async () => {
    const { bus, topic, outcomes } = await setup();
    const seen: number[] = [];
    let failed = false;
    await bus.subscribe({
      topic,
      group: 'billing',
      ordered: true,
      concurrency: 4,
      retry: {
        attempts: 3,
        backoff: { initialMs: 40, maxMs: 40, factor: 1, jitter: false },
        inProcessMaxDelayMs: 0,
      },
      handlers: {
        [Order.type]: Order.handle((d) => {
          if (d.totalCents === 100 && !failed) {
            failed = true;
            throw new Error('once');
          }
          seen.push(d.totalCents / 100);
        }),
      },
    });
    const ids: string[] = [];
    for (let i = 1; i <= 4; i++) ids.push((await bus.publish(topic, Order, order(i), { key: 'same' })).id);
    await outcomes.settled(ids);
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(outcomes.outcomes.some((o) => o.kind === 'retry-scheduled')).toBe(false);
  });

  describe('handler timeout', () => {
    it('fails the attempt with a HandlerTimeoutError', async () => {
      const { bus, topic, outcomes } = await setup();
      await bus.subscribe({
        topic,
        group: 'billing',
        handlerTimeoutMs: 20,
        retry: { attempts: 1 },
        handlers: { [Order.type]: Order.handle(() => new Promise(() => {})) },
      });
      const { id } = await bus.publish(topic, Order, order());
      await outcomes.settled([id]);
      expect(outcomes.deadLettered()[0]).toMatchObject({
        reason: 'max-attempts',
        error: 'handler did not settle within 20 ms',
      });
    });

    it('with idempotency the late handler keeps its claim: the redelivery never runs beside it', async () => {
      const { bus, topic, outcomes } = await setup();
      const store = memoryStore();
      const g = gate();
      let running = 0;
      let maxRunning = 0;
      let calls = 0;
      await bus.subscribe({
        topic,
        group: 'billing',
        handlerTimeoutMs: 20,
        retry: { attempts: 5, backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false } },
        idempotency: { store },
        handlers: {
          [Order.type]: Order.handle(async () => {
            calls++;
            running++;
            maxRunning = Math.max(maxRunning, running);
            await g.promise;
            running--;
          }),
        },
      });
      const { id } = await bus.publish(topic, Order, order());
      // The first attempt timed out and went back to the broker; redeliveries find the claim held.
      await outcomes.until((o) => o.some((x) => x.kind === 'retry-scheduled'));
      await eventually(() => bus.counters.consumed >= 3, { what: 'redeliveries to find the claim held' });
      expect(calls).toBe(1);
      g.open();
      await outcomes.until((o) => o.some((x) => x.kind === 'duplicate'), {
        what: 'the redelivery to see done',
      });
      expect(calls).toBe(1);
      expect(maxRunning).toBe(1);
      expect(store.claimSync(`billing:${id}`, 1)).toBe('done');
      expect(outcomes.deadLettered()).toEqual([]);
    });
  });

  describe('idempotency', () => {
    it('the same message id published twice is handled once', async () => {
      const { bus, topic, outcomes } = await setup();
      const store = memoryStore();
      let calls = 0;
      await bus.subscribe({
        topic,
        group: 'billing',
        idempotency: { store },
        handlers: { [Order.type]: Order.handle(() => void calls++) },
      });
      const id = randomUUID();
      await bus.publish(topic, Order, order(), { id });
      await outcomes.until((o) => o.some((x) => x.kind === 'handled'));
      await bus.publish(topic, Order, order(), { id });
      await outcomes.until((o) => o.some((x) => x.kind === 'duplicate'));
      expect(calls).toBe(1);
      expect(bus.counters.duplicates).toBe(1);
    });

    it('duplicates delivered concurrently run the handler once', async () => {
      const { bus, topic, outcomes } = await setup();
      const store = memoryStore();
      let calls = 0;
      await bus.subscribe({
        topic,
        group: 'billing',
        concurrency: 4,
        idempotency: { store },
        retry: { attempts: 3, backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false } },
        handlers: {
          [Order.type]: Order.handle(async () => {
            calls++;
            await new Promise((r) => setTimeout(r, 30)); // work in progress while the duplicate arrives
          }),
        },
      });
      const id = randomUUID();
      await bus.publishBatch(topic, [
        { definition: Order, data: order(), options: { id } },
        { definition: Order, data: order(), options: { id } },
      ]);
      await outcomes.until(
        (o) => o.some((x) => x.kind === 'duplicate') && o.some((x) => x.kind === 'handled'),
      );
      expect(calls).toBe(1);
    });

    it('a failed attempt frees the claim so the broker retry runs the handler again', async () => {
      const { bus, topic, outcomes } = await setup();
      let calls = 0;
      await bus.subscribe({
        topic,
        group: 'billing',
        idempotency: { store: memoryStore(), leaseMs: 60_000 },
        retry: {
          attempts: 3,
          backoff: { initialMs: 5, maxMs: 5, factor: 1, jitter: false },
          inProcessMaxDelayMs: 0,
        },
        handlers: {
          [Order.type]: Order.handle(() => {
            calls++;
            if (calls === 1) throw new Error('once');
          }),
        },
      });
      const { id } = await bus.publish(topic, Order, order());
      await outcomes.settled([id], { timeoutMs: 5000 });
      expect(calls).toBe(2);
    });

    it("honours the store's own ttlMs when subscribe gives none", async () => {
      const { bus, topic, outcomes } = await setup();
      const clock = { now: Date.now() };
      const store = memoryStore({ ttlMs: 1000, now: () => clock.now });
      await bus.subscribe({
        topic,
        group: 'billing',
        idempotency: { store },
        handlers: { [Order.type]: Order.handle(() => {}) },
      });
      const { id } = await bus.publish(topic, Order, order());
      await outcomes.settled([id]);
      clock.now += 1000;
      expect(store.claimSync(`billing:${id}`, 1)).toBe('new');
    });

    it('a ttlMs given to subscribe wins over the store default', async () => {
      const { bus, topic, outcomes } = await setup();
      const clock = { now: Date.now() };
      const store = memoryStore({ ttlMs: 1000, now: () => clock.now });
      await bus.subscribe({
        topic,
        group: 'billing',
        idempotency: { store, ttlMs: 5000 },
        handlers: { [Order.type]: Order.handle(() => {}) },
      });
      const { id } = await bus.publish(topic, Order, order());
      await outcomes.settled([id]);
      clock.now += 4999;
      expect(store.claimSync(`billing:${id}`, 1)).toBe('done');
    });
  });

  it('circuit breaker: failures while open consume no attempts, so the message survives the outage', async () => {
    const { bus, topic, outcomes } = await setup();
    const states: CircuitState[] = [];
    let calls = 0;
    const FAILURES = 6;
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 3, backoff: fast },
      circuitBreaker: { failureThreshold: 2, cooldownMs: 10, onStateChange: (s) => states.push(s) },
      handlers: {
        [Order.type]: Order.handle(() => {
          calls++;
          if (calls <= FAILURES) throw new Error('dependency down');
        }),
      },
    });
    const { id } = await bus.publish(topic, Order, order());
    await outcomes.settled([id]);
    expect(outcomes.handled()).toHaveLength(1);
    expect(outcomes.deadLettered()).toHaveLength(0);
    expect(calls).toBe(FAILURES + 1);
    expect(states[0]).toBe('open');
    expect(states.at(-1)).toBe('closed');
    expect((await bus.health()).subscriptions[0]!.circuit).toBe('closed');
  });

  it('health() shows an open circuit', async () => {
    const { bus, topic } = await setup();
    await bus.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 5, backoff: fast },
      circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 },
      handlers: {
        [Order.type]: Order.handle(() => {
          throw new Error('down');
        }),
      },
    });
    await bus.publish(topic, Order, order());
    await eventually(async () => (await bus.health()).subscriptions[0]?.circuit === 'open');
    const h = await bus.health();
    expect(h.subscriptions).toEqual([{ topic, group: 'billing', circuit: 'open', inFlight: 1 }]);
    // The message waits on the open circuit: a short drain hands it back.
    await bus.close({ drainTimeoutMs: 10 });
  });

  describe('unmatched types', () => {
    it('are acked and counted as filtered by default', async () => {
      const { bus, broker, topic, outcomes } = await setup();
      // The group is bound to every type, but this consumer only handles order.placed.
      await bus.provision(topic, [{ group: 'billing' }]);
      await bus.subscribe({ topic, group: 'billing', handlers: { [Order.type]: Order.handle(() => {}) } });
      await bus.publish(topic, { type: 'order.cancelled', data: {} });
      await outcomes.until((o) => o.length === 1);
      expect(outcomes.outcomes[0]).toEqual({
        kind: 'filtered',
        type: 'order.cancelled',
        topic,
        group: 'billing',
      });
      expect(bus.counters.filtered).toBe(1);
      expect(memoryBroker(broker).deadLetters(topic, 'billing')).toHaveLength(0);
      expect(await bus.stats(topic, 'billing')).toMatchObject({ depth: 0, inFlight: 0 });
    });

    it("are dead-lettered with unmatched: 'dead-letter'", async () => {
      const { bus, broker, topic, outcomes } = await setup();
      await bus.provision(topic, [{ group: 'billing', types: ['order.#'] }]);
      await bus.subscribe({
        topic,
        group: 'billing',
        unmatched: 'dead-letter',
        handlers: { [Order.type]: Order.handle(() => {}) },
      });
      const { id } = await bus.publish(topic, { type: 'order.cancelled', data: {} });
      await outcomes.settled([id]);
      expect(outcomes.deadLettered()[0]).toMatchObject({ reason: 'unknown-type' });
      expect(memoryBroker(broker).deadLetters(topic, 'billing')).toHaveLength(1);
      expect(bus.counters.filtered).toBe(0);
    });

    it('never reach a group whose bindings do not match (the broker filters)', async () => {
      const { bus, topic, outcomes } = await setup();
      await bus.subscribe({ topic, group: 'billing', handlers: { 'order.*': () => {} } });
      await bus.publish(topic, { type: 'invoice.sent', data: {} });
      const { id } = await bus.publish(topic, { type: 'order.shipped', data: {} });
      await outcomes.settled([id]);
      expect(bus.counters.consumed).toBe(1);
    });
  });

  it('consume middleware wraps handlers in order', async () => {
    const broker = `pipeline-${randomUUID()}`;
    const trail: string[] = [];
    const bus = await connect({
      transport: memoryTransport({ name: broker }),
      service: 'svc',
      middleware: [
        {
          consume: async (ctx, next) => {
            trail.push(`outer:${ctx.envelope.type}`);
            await next();
            trail.push('outer:done');
          },
        },
        { publish: async (_e, next) => next() },
        {
          consume: async (_ctx, next) => {
            trail.push('inner');
            await next();
          },
        },
      ],
    });
    buses.push(bus);
    const outcomes = recordOutcomes(bus);
    await bus.subscribe({ topic: 't', group: 'g', handlers: { x: () => void trail.push('handler') } });
    const { id } = await bus.publish('t', { type: 'x', data: 1 });
    await outcomes.settled([id]);
    expect(trail).toEqual(['outer:x', 'inner', 'handler', 'outer:done']);
  });

  it('two groups each get every message; one group shares them between its consumers', async () => {
    const { bus, topic, outcomes, another } = await setup();
    const got: Record<string, string[]> = { a: [], b: [], shipping: [] };
    const other = await another();
    const otherOutcomes = recordOutcomes(other);
    const h = (name: string) => ({
      [Order.type]: Order.handle((_d, ctx) => void got[name]!.push(ctx.envelope.id)),
    });
    await bus.subscribe({ topic, group: 'billing', concurrency: 1, handlers: h('a') });
    await other.subscribe({ topic, group: 'billing', concurrency: 1, handlers: h('b') });
    await other.subscribe({ topic, group: 'shipping', handlers: h('shipping') });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await bus.publish(topic, Order, order(i))).id);
    await eventually(() => got.a!.length + got.b!.length === 10 && got.shipping!.length === 10);
    expect(new Set([...got.a!, ...got.b!])).toEqual(new Set(ids));
    expect(new Set(got.shipping)).toEqual(new Set(ids));
    expect(got.a!.length).toBeGreaterThan(0);
    expect(got.b!.length).toBeGreaterThan(0);
    expect(outcomes.handled().length + otherOutcomes.handled().length).toBe(20);
  });

  describe('graceful close', () => {
    it('finishes in-flight work and gives queued deliveries back to the broker for another consumer', async () => {
      const { bus, topic, another } = await setup();
      const g = gate();
      const handledBy: Record<string, string[]> = { first: [], second: [] };
      const sub = await bus.subscribe({
        topic,
        group: 'billing',
        concurrency: 1,
        prefetch: 3,
        handlers: {
          [Order.type]: Order.handle(async (_d, ctx) => {
            handledBy.first!.push(ctx.envelope.id);
            await g.promise;
          }),
        },
      });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await bus.publish(topic, Order, order(i))).id);
      await eventually(() => handledBy.first!.length === 1 && bus.counters.consumed === 3, {
        what: 'one running and two queued',
      });
      const other = await another();
      await other.subscribe({
        topic,
        group: 'billing',
        handlers: { [Order.type]: Order.handle((_d, ctx) => void handledBy.second!.push(ctx.envelope.id)) },
      });
      const closing = sub.close();
      g.open();
      await closing;
      await eventually(() => handledBy.second!.length === 2, {
        what: 'the queued messages at the other consumer',
      });
      expect(handledBy.first).toEqual([ids[0]]);
      expect(new Set(handledBy.second)).toEqual(new Set(ids.slice(1)));
      expect(bus.counters.handled).toBe(1);
    });

    it('a handler still draining when bus.close() begins may publish; subscribing is refused at once', async () => {
      const { bus, topic } = await setup();
      const g = gate();
      let published: Promise<{ id: string }> | undefined;
      await bus.subscribe({
        topic,
        group: 'billing',
        handlers: {
          [Order.type]: Order.handle(async () => {
            await g.promise;
            published = bus.publish(topic, { type: 'order.shipped', data: {} });
            await published;
          }),
        },
      });
      await bus.publish(topic, Order, order(1));
      await eventually(() => bus.counters.consumed >= 1, { what: 'the order in its handler' });
      const closing = bus.close({ drainTimeoutMs: 5_000 });
      await expect(bus.subscribe({ topic, group: 'late', handlers: { x: () => {} } })).rejects.toBeInstanceOf(
        ClosedError,
      );
      expect((await bus.health()).ok).toBe(false);
      g.open();
      await closing;
      await expect(published).resolves.toMatchObject({ id: expect.any(String) });
      expect(bus.counters.handled).toBeGreaterThanOrEqual(1);
      await expect(bus.publish(topic, { type: 'x', data: 1 })).rejects.toBeInstanceOf(ClosedError);
    });

    it('after close, publish and subscribe are refused and health is not ok', async () => {
      const { bus, topic } = await setup();
      await bus.close();
      await expect(bus.publish(topic, Order, order())).rejects.toMatchObject({ code: 'CLOSED' });
      await expect(
        bus.subscribe({ topic, group: 'g', handlers: { [Order.type]: Order.handle(() => {}) } }),
      ).rejects.toMatchObject({ code: 'CLOSED' });
      expect((await bus.health()).ok).toBe(false);
      await bus.close(); // idempotent
    });

    it('a closed subscription stops receiving; the message waits for the next consumer', async () => {
      const { bus, topic, outcomes } = await setup();
      const seen: string[] = [];
      const sub = await bus.subscribe({
        topic,
        group: 'billing',
        handlers: { x: () => void seen.push('first') },
      });
      await sub.close();
      expect(sub).toMatchObject({ topic, group: 'billing' });
      await bus.publish(topic, { type: 'x', data: 1 });
      expect((await bus.stats(topic, 'billing')).depth).toBe(1);
      await bus.subscribe({ topic, group: 'billing', handlers: { x: () => void seen.push('second') } });
      await outcomes.until((o) => o.length === 1);
      expect(seen).toEqual(['second']);
    });
  });

  it('replay re-reads history in order outside any group', async () => {
    const { bus, topic } = await setup();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await bus.publish(topic, Order, order(i))).id);
    const seen: Envelope[] = [];
    const sub = await bus.replay({
      topic,
      from: 'earliest',
      handlers: { [Order.type]: Order.handle((_d, ctx) => void seen.push(ctx.envelope)) },
    });
    await eventually(() => seen.length === 3);
    expect(seen.map((e) => e.id)).toEqual(ids);
    expect(sub.group.startsWith('replay-')).toBe(true);
    await sub.close();
  });

  it('dead-letter headers are control headers: they never show up as user headers', async () => {
    const { bus, broker, topic, outcomes } = await setup();
    await bus.subscribe({
      topic,
      group: 'billing',
      handlers: {
        x: () => {
          throw new NonRetryableError('no');
        },
      },
    });
    const { id } = await bus.publish(topic, { type: 'x', data: 1 }, { headers: { tenant: 'a' } });
    await outcomes.settled([id]);
    const dl = memoryBroker(broker).deadLetters(topic, 'billing')[0]!;
    expect(dl.headers[ControlHeader.reason]).toBe('non-retryable');
    expect(memoryTransport({ name: broker }).decode(dl).headers).toEqual({ tenant: 'a' });
  });
});
