/**
 * The conformance suite: one set of scenarios every transport passes against its real broker.
 * Counting is always by unique message ids: the ids handled or dead-lettered must equal the ids whose
 * publish resolved.
 */
import { randomBytes } from 'node:crypto';
import {
  type Bus,
  type Capabilities,
  ControlHeader,
  connect,
  defineMessage,
  type Envelope,
  type InferMessage,
  memoryStore,
  NonRetryableError,
  type Transport,
} from '@omnibus/core';
import { eventually, recordOutcomes } from '@omnibus/core/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from './load-harness.js';
import { type Scenario, unsupported } from './requirements.js';

const harness = await loadHarness();
const probe = harness.create();
const caps: Capabilities = { ...probe.capabilities, ...harness.capabilities };

const Order = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int(), seq: z.number().int().optional() }),
  upcast: {
    1: (v1: { id: string; total: number }) => ({ orderId: v1.id, totalCents: Math.round(v1.total * 100) }),
  },
});
type Order = InferMessage<typeof Order>;

const buses: Bus[] = [];
async function bus(service = 'conformance', transport: Transport = harness.create()): Promise<Bus> {
  const b = await connect({
    transport,
    service,
    publishTimeoutMs: 20_000,
    drainTimeoutMs: 15_000,
  });
  buses.push(b);
  return b;
}
function topicName(label: string): string {
  return `conf-${label}-${randomBytes(4).toString('hex')}`;
}
function order(i: number): Order {
  return { orderId: `o-${i}`, totalCents: i * 100, seq: i };
}
/** Run a scenario, or skip it with the reason when the capabilities rule it out (declared in requirements.ts). */
function scenario(name: string, needs: Scenario | undefined, fn: () => Promise<void>, timeoutMs?: number) {
  const reason = needs ? unsupported(needs, caps, harness) : undefined;
  // A capability the transport lacks is reported as skipped, with the reason in the test name.
  it.skipIf(reason !== undefined)(
    reason ? `${name} (not applicable: ${harness.name} ${reason})` : name,
    fn,
    timeoutMs,
  );
}

describe(`conformance: ${harness.name}`, () => {
  beforeAll(async () => {
    await harness.setup();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 5_000 }).catch(() => {})));
  });
  afterAll(async () => {
    await harness.teardown();
  });

  scenario('round trip keeps ids, headers, key, correlation and data intact', undefined, async () => {
    const topic = topicName('roundtrip');
    const consumer = await bus('billing');
    const seen: Envelope<Order>[] = [];
    await consumer.subscribe({
      topic,
      group: 'billing',
      handlers: {
        [Order.type]: Order.handle((_data, ctx) => void seen.push(ctx.envelope as Envelope<Order>)),
      },
    });
    const producer = await bus('checkout');
    const { id } = await producer.publish(topic, Order, order(7), {
      key: 'customer-7',
      headers: { tenant: 'acme', 'x-request-id': 'r-1' },
      correlationId: 'corr-123',
    });
    await eventually(() => seen.length === 1, { timeoutMs: 20_000, what: 'the message' });
    const env = seen[0]!;
    expect(env.id).toBe(id);
    expect(env.type).toBe('order.placed');
    expect(env.source).toBe('checkout');
    expect(env.key).toBe('customer-7');
    expect(env.correlationId).toBe('corr-123');
    expect(env.version).toBe(2);
    expect(env.headers).toEqual({ tenant: 'acme', 'x-request-id': 'r-1' });
    expect(env.data).toEqual(order(7));
    expect(Math.abs(env.time - Date.now())).toBeLessThan(60_000);
  });

  scenario('competing consumers in one group share the load', 'competing-consumers', async () => {
    const topic = topicName('compete');
    const handledBy = new Map<string, Set<string>>();
    const counts = { a: 0, b: 0 };
    for (const name of ['a', 'b'] as const) {
      const b = await bus(`worker-${name}`);
      await b.subscribe({
        topic,
        group: 'workers',
        concurrency: 2,
        handlers: {
          [Order.type]: Order.handle(async (_d, ctx) => {
            counts[name]++;
            const set = handledBy.get(ctx.envelope.id) ?? new Set();
            set.add(name);
            handledBy.set(ctx.envelope.id, set);
            await new Promise((r) => setTimeout(r, 5));
          }),
        },
      });
    }
    const producer = await bus('producer');
    const ids: string[] = [];
    // Keep publishing until both members took part (a group may need a moment to balance), with a deadline.
    const deadline = Date.now() + 60_000;
    let i = 0;
    while (counts.a === 0 || counts.b === 0) {
      if (Date.now() > deadline) throw new Error(`load not shared: a=${counts.a} b=${counts.b}`);
      const batch = await Promise.all(
        Array.from({ length: 20 }, () => producer.publish(topic, Order, order(i++), { key: `k-${i}` })),
      );
      ids.push(...batch.map((r) => r.id));
      await eventually(() => ids.every((x) => handledBy.has(x)), {
        timeoutMs: 30_000,
        what: 'batch handled',
      });
    }
    expect(new Set(handledBy.keys())).toEqual(new Set(ids));
    expect(counts.a).toBeGreaterThan(0);
    expect(counts.b).toBeGreaterThan(0);
  });

  scenario('two groups each receive every message', 'fan-out', async () => {
    const topic = topicName('fanout');
    const got: Record<string, Set<string>> = { billing: new Set(), shipping: new Set() };
    for (const group of ['billing', 'shipping']) {
      const b = await bus(group);
      await b.subscribe({
        topic,
        group,
        handlers: { [Order.type]: Order.handle((_d, ctx) => void got[group]!.add(ctx.envelope.id)) },
      });
    }
    const producer = await bus('checkout');
    const ids = (
      await Promise.all(Array.from({ length: 30 }, (_, i) => producer.publish(topic, Order, order(i))))
    ).map((r) => r.id);
    await eventually(() => got.billing!.size === 30 && got.shipping!.size === 30, {
      timeoutMs: 30_000,
      what: 'both groups',
    });
    expect(got.billing).toEqual(new Set(ids));
    expect(got.shipping).toEqual(new Set(ids));
  });

  scenario(
    'per-key order holds with 50 keys, concurrency 8 and random handler delays, retries included',
    'per-key-order',
    async () => {
      const topic = harness.orderedTopic ? harness.orderedTopic(topicName('order')) : topicName('order');
      const KEYS = 50;
      const PER_KEY = 6;
      const seen = new Map<string, number[]>();
      const failedOnce = new Set<string>();
      const consumer = await bus('orderly');
      await consumer.subscribe({
        topic,
        group: 'orderly',
        concurrency: 8,
        ordered: true,
        // A retry slower than the lane's next message would be, so an unordered consumer would reorder.
        retry: { attempts: 5, backoff: { initialMs: 150, maxMs: 300, factor: 2, jitter: true } },
        handlers: {
          [Order.type]: Order.handle(async (d, ctx) => {
            await new Promise((r) => setTimeout(r, Math.random() * 8));
            // Every 7th message fails once: its key's later messages must wait behind the retry.
            if (d.seq! % 7 === 3 && !failedOnce.has(ctx.envelope.id)) {
              failedOnce.add(ctx.envelope.id);
              throw new Error('transient');
            }
            const key = ctx.envelope.key!;
            seen.set(key, [...(seen.get(key) ?? []), d.seq!]);
          }),
        },
      });
      const producer = await bus('producer');
      // Round by round, so each key's messages reach the broker in a known order.
      for (let round = 0; round < PER_KEY; round++) {
        await Promise.all(
          Array.from({ length: KEYS }, (_, k) =>
            producer.publish(topic, Order, order(round * KEYS + k), { key: `key-${k}` }),
          ),
        );
      }
      await eventually(() => [...seen.values()].reduce((n, s) => n + s.length, 0) === KEYS * PER_KEY, {
        timeoutMs: 60_000,
        what: 'all messages handled',
      });
      expect(seen.size).toBe(KEYS);
      for (const [key, seqs] of seen) {
        const k = Number(key.slice(4));
        expect(seqs, key).toEqual(Array.from({ length: PER_KEY }, (_, r) => r * KEYS + k));
      }
      expect(failedOnce.size).toBeGreaterThan(0);
    },
    90_000,
  );

  scenario('a failed handler is retried and then succeeds', undefined, async () => {
    const topic = topicName('redeliver');
    const attempts: number[] = [];
    const consumer = await bus('billing');
    await consumer.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 3, backoff: { initialMs: 50, maxMs: 100, factor: 2, jitter: false } },
      handlers: {
        [Order.type]: Order.handle((_d, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) throw new Error('flaky dependency');
        }),
      },
    });
    const producer = await bus('checkout');
    await producer.publish(topic, Order, order(1));
    await eventually(() => attempts.length === 2, { timeoutMs: 20_000, what: 'second attempt' });
    expect(attempts).toEqual([1, 2]);
    // The ack is a broker round trip: `handled` counts once it is done.
    await eventually(() => consumer.counters.handled === 1, { timeoutMs: 10_000, what: 'the ack' });
    expect(consumer.counters.handled).toBe(1);
  });

  scenario(
    'a delayed retry through the broker honours its delay',
    undefined,
    async () => {
      const topic = topicName('delay');
      const requested = 1500;
      const tier = caps.delayTiersMs.find((t) => t >= requested) ?? requested;
      const calls: number[] = [];
      const consumer = await bus('billing');
      await consumer.subscribe({
        topic,
        group: 'billing',
        // inProcessMaxDelayMs 0 forces the broker's delayed redelivery.
        retry: {
          attempts: 2,
          inProcessMaxDelayMs: 0,
          backoff: { initialMs: requested, maxMs: requested, jitter: false },
        },
        handlers: {
          [Order.type]: Order.handle(() => {
            calls.push(Date.now());
            if (calls.length === 1) throw new Error('later, please');
          }),
        },
      });
      const producer = await bus('checkout');
      await producer.publish(topic, Order, order(1));
      await eventually(() => calls.length === 2, { timeoutMs: tier + 30_000, what: 'the delayed retry' });
      const observed = calls[1]! - calls[0]!;
      expect(observed).toBeGreaterThanOrEqual(requested);
      expect(observed).toBeLessThanOrEqual(tier + 2000);
    },
    90_000,
  );

  scenario(
    'after max attempts the message is dead-lettered with its reason, readable with the raw client',
    undefined,
    async () => {
      const topic = topicName('dlq');
      const consumer = await bus('billing');
      const outcomes = recordOutcomes(consumer);
      let calls = 0;
      await consumer.subscribe({
        topic,
        group: 'billing',
        retry: { attempts: 3, backoff: { initialMs: 10, maxMs: 20, jitter: false } },
        handlers: {
          [Order.type]: Order.handle(() => {
            calls++;
            throw new Error('payment provider says no');
          }),
        },
      });
      const producer = await bus('checkout');
      const { id } = await producer.publish(topic, Order, order(42), { key: 'k42' });
      await outcomes.settled([id], { timeoutMs: 30_000 });
      expect(calls).toBe(3);
      const [dead] = await harness.readDeadLetters(topic, 'billing', 1, 20_000);
      expect(dead, 'a dead-lettered message').toBeDefined();
      expect(dead!.headers[ControlHeader.reason]).toBe('max-attempts');
      expect(dead!.headers[ControlHeader.error]).toContain('payment provider says no');
      expect(dead!.headers[ControlHeader.attempts]).toBe('3');
      expect(dead!.headers[ControlHeader.originalTopic]).toBe(topic);
      expect(dead!.headers[ControlHeader.originalGroup]).toBe('billing');
      const env = probe.decode(dead!);
      expect(env.id).toBe(id);
      expect(JSON.parse(Buffer.from(env.data).toString('utf8'))).toEqual(order(42));
    },
  );

  scenario('a NonRetryableError skips the remaining attempts', undefined, async () => {
    const topic = topicName('nonretry');
    const consumer = await bus('billing');
    const outcomes = recordOutcomes(consumer);
    let calls = 0;
    await consumer.subscribe({
      topic,
      group: 'billing',
      retry: { attempts: 5, backoff: { initialMs: 10, maxMs: 20 } },
      handlers: {
        [Order.type]: Order.handle(() => {
          calls++;
          throw new NonRetryableError('card declined');
        }),
      },
    });
    const { id } = await (await bus('checkout')).publish(topic, Order, order(1));
    await outcomes.settled([id], { timeoutMs: 20_000 });
    expect(calls).toBe(1);
    expect(outcomes.deadLettered()[0]).toMatchObject({ reason: 'non-retryable', attempts: 1 });
    const [dead] = await harness.readDeadLetters(topic, 'billing', 1, 20_000);
    expect(dead?.headers[ControlHeader.reason]).toBe('non-retryable');
  });

  scenario(
    'poison messages go straight to dead-letter while the consumer keeps going',
    undefined,
    async () => {
      const topic = topicName('poison');
      const consumer = await bus('billing');
      const outcomes = recordOutcomes(consumer);
      const handled: string[] = [];
      await consumer.subscribe({
        topic,
        group: 'billing',
        handlers: { [Order.type]: Order.handle((_d, ctx) => void handled.push(ctx.envelope.id)) },
      });
      const producer = await bus('checkout');
      // Schema-invalid for a known version: published untyped so the producer's own check is bypassed.
      const invalid = await producer.publish(topic, { type: Order.type, version: 2, data: { orderId: 12 } });
      // Undecodable bytes straight from the broker's own client.
      await harness.publishRaw(topic, Buffer.from([0xff, 0x00, 0x13, 0x37, 0x7b]), { type: Order.type });
      const good = await producer.publish(topic, Order, order(5));
      await outcomes.until(
        (o) => o.filter((x) => x.kind === 'dead-lettered').length >= 2 && handled.length >= 1,
        {
          timeoutMs: 30_000,
          what: 'two dead letters and one handled message',
        },
      );
      expect(handled).toEqual([good.id]);
      const reasons = outcomes
        .deadLettered()
        .map((d) => d.reason)
        .sort();
      expect(reasons).toEqual(['decode', 'validation']);
      expect(outcomes.deadLettered().every((d) => d.attempts === 0)).toBe(true);
      const dead = await harness.readDeadLetters(topic, 'billing', 2, 20_000);
      expect(dead.map((d) => d.headers[ControlHeader.reason]).sort()).toEqual(['decode', 'validation']);
      const invalidDead = dead.find((d) => d.headers[ControlHeader.reason] === 'validation')!;
      expect(probe.decode(invalidDead).id).toBe(invalid.id);
      expect(invalidDead.headers[ControlHeader.error]).toContain('orderId');
    },
  );

  scenario('an older schema version is upcast before the handler sees it', undefined, async () => {
    const topic = topicName('upcast');
    const consumer = await bus('billing');
    const got: Order[] = [];
    await consumer.subscribe({
      topic,
      group: 'billing',
      handlers: { [Order.type]: Order.handle((d) => void got.push(d)) },
    });
    await (await bus('legacy')).publish(topic, {
      type: Order.type,
      version: 1,
      data: { id: 'o-9', total: 12.5 },
    });
    await eventually(() => got.length === 1, { timeoutMs: 20_000 });
    expect(got[0]).toEqual({ orderId: 'o-9', totalCents: 1250 });
  });

  scenario(
    'the same message delivered to two consumers at once runs its handler once',
    undefined,
    async () => {
      const topic = topicName('dupe');
      const store = memoryStore();
      let runs = 0;
      const buses2: Bus[] = [];
      for (const name of ['a', 'b']) {
        const b = await bus(`dedupe-${name}`);
        buses2.push(b);
        await b.subscribe({
          topic,
          group: 'dedupe',
          concurrency: 4,
          retry: { attempts: 5, backoff: { initialMs: 100, maxMs: 400 } },
          idempotency: { store },
          handlers: {
            [Order.type]: Order.handle(async () => {
              runs++;
              // Long enough that the twin arrives while this one still holds the claim.
              await new Promise((r) => setTimeout(r, 300));
            }),
          },
        });
      }
      const producer = await bus('checkout');
      const id = '01900000-0000-7000-8000-000000000001'.replace('0001', randomBytes(2).toString('hex'));
      // Two broker messages with one Omnibus id: a redelivery the broker could not tell apart.
      await Promise.all([
        producer.publish(topic, Order, order(1), { id }),
        producer.publish(topic, Order, order(1), { id }),
      ]);
      await eventually(() => buses2.reduce((n, b) => n + b.counters.duplicates, 0) >= 1 && runs >= 1, {
        timeoutMs: 30_000,
        what: 'one run and one recognised duplicate',
      });
      expect(runs).toBe(1);
    },
  );

  scenario(
    'graceful close finishes in-flight work and loses nothing',
    undefined,
    async () => {
      const topic = topicName('drain');
      const handled = new Set<string>();
      const handler = Order.handle(async (_d, ctx) => {
        await new Promise((r) => setTimeout(r, 30));
        handled.add(ctx.envelope.id);
      });
      const first = await bus('worker-1');
      await first.subscribe({ topic, group: 'workers', concurrency: 4, handlers: { [Order.type]: handler } });
      const producer = await bus('checkout');
      const ids = (
        await Promise.all(Array.from({ length: 60 }, (_, i) => producer.publish(topic, Order, order(i))))
      ).map((r) => r.id);
      await eventually(() => handled.size >= 10, { timeoutMs: 20_000, what: 'some progress' });
      await first.close({ drainTimeoutMs: 10_000 });
      const afterClose = first.counters;
      expect(afterClose.handled).toBe(handled.size);
      const second = await bus('worker-2');
      await second.subscribe({
        topic,
        group: 'workers',
        concurrency: 4,
        handlers: { [Order.type]: handler },
      });
      await eventually(() => ids.every((id) => handled.has(id)), {
        timeoutMs: 60_000,
        what: 'the rest after restart',
      });
      expect(new Set(handled)).toEqual(new Set(ids));
    },
    90_000,
  );

  scenario(
    'thousands of messages from concurrent publishers reach concurrent subscribers',
    undefined,
    async () => {
      const topic = topicName('load');
      const PUBLISHERS = 4;
      const PER = harness.name === 'memory' ? 1500 : 500;
      const handled = new Set<string>();
      let handlerCalls = 0;
      for (let s = 0; s < 3; s++) {
        const b = await bus(`sub-${s}`);
        await b.subscribe({
          topic,
          group: 'load',
          concurrency: 16,
          handlers: {
            [Order.type]: Order.handle((_d, ctx) => {
              handlerCalls++;
              handled.add(ctx.envelope.id);
            }),
          },
        });
      }
      const ids = new Set<string>();
      await Promise.all(
        Array.from({ length: PUBLISHERS }, async (_, p) => {
          const b = await bus(`pub-${p}`);
          for (let chunk = 0; chunk < PER; chunk += 50) {
            const results = await Promise.all(
              Array.from({ length: 50 }, (_, i) =>
                b.publish(topic, Order, order(chunk + i), { key: `p${p}-${i % 10}` }),
              ),
            );
            for (const r of results) ids.add(r.id);
          }
        }),
      );
      expect(ids.size).toBe(PUBLISHERS * PER);
      await eventually(() => handled.size === ids.size, {
        timeoutMs: 120_000,
        what: `${ids.size} messages handled`,
      });
      expect(handled).toEqual(ids);
      // At-least-once: redeliveries are allowed, but not a flood of them.
      expect(handlerCalls).toBeLessThan(ids.size * 1.1);
    },
    180_000,
  );

  scenario(
    'a broker restart mid-stream with a backlog loses nothing',
    'broker-restart',
    async () => {
      const topic = topicName('restart');
      const handled = new Set<string>();
      const onRestartable = () => harness.createForRestart?.() ?? harness.create();
      const consumer = await bus('survivor', onRestartable());
      await consumer.subscribe({
        topic,
        group: 'survivor',
        concurrency: 2,
        handlers: {
          [Order.type]: Order.handle(async (_d, ctx) => {
            await new Promise((r) => setTimeout(r, 10));
            handled.add(ctx.envelope.id);
          }),
        },
      });
      const producer = await bus('checkout', onRestartable());
      const ids = new Set<string>();
      for (let i = 0; i < 300; i += 50) {
        const rs = await Promise.all(
          Array.from({ length: 50 }, (_, j) => producer.publish(topic, Order, order(i + j))),
        );
        for (const r of rs) ids.add(r.id);
      }
      // Restart while a backlog is still waiting.
      expect(handled.size).toBeLessThan(ids.size);
      await harness.restart!();
      // Publishing works again after the restart (the transport reconnects on its own).
      await eventually(
        async () => {
          const r = await producer.publish(topic, Order, order(999));
          ids.add(r.id);
          return true;
        },
        { timeoutMs: 60_000, what: 'publish after restart' },
      );
      const wanted = caps.persistent ? ids : new Set([...ids].filter((id) => handled.has(id)));
      await eventually(() => [...wanted].every((id) => handled.has(id)), {
        timeoutMs: 120_000,
        what: 'the backlog after restart',
      });
      expect([...wanted].filter((id) => !handled.has(id))).toEqual([]);
    },
    240_000,
  );

  scenario(
    'connections closed by the broker mid-stream: the transport reconnects and nothing is lost',
    'connection-drop',
    async () => {
      const topic = topicName('conndrop');
      const handled = new Set<string>();
      const consumer = await bus('survivor');
      await consumer.subscribe({
        topic,
        group: 'survivor',
        concurrency: 4,
        handlers: { [Order.type]: Order.handle((_d, ctx) => void handled.add(ctx.envelope.id)) },
      });
      const producer = await bus('checkout');
      const ids = new Set<string>();
      const publishSome = async (from: number) => {
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, j) => producer.publish(topic, Order, order(from + j))),
        );
        // Only a resolved publish is a promise to deliver; a rejected one was reported to its caller.
        for (const r of results) if (r.status === 'fulfilled') ids.add(r.value.id);
        return results.filter((r) => r.status === 'fulfilled').length;
      };
      await publishSome(0);
      await eventually(() => handled.size > 0, { timeoutMs: 20_000, what: 'consumption to start' });
      const dropping = harness.dropConnections!();
      await publishSome(50);
      await dropping;
      // Once the broker has closed the connections, publishing works again: the transport reconnected.
      expect(await publishSome(100)).toBe(50);
      await eventually(() => [...ids].every((id) => handled.has(id)), {
        timeoutMs: 60_000,
        what: 'every published message after the connections were closed',
      });
    },
    120_000,
  );

  scenario('replay re-reads history from the beginning', 'replay', async () => {
    const topic = topicName('replay');
    const producer = await bus('checkout');
    await producer.provision(topic, [{ group: 'keeper' }]);
    const ids = (
      await Promise.all(Array.from({ length: 10 }, (_, i) => producer.publish(topic, Order, order(i))))
    ).map((r) => r.id);
    const reader = await bus('auditor');
    const seen: string[] = [];
    await reader.replay({
      topic,
      from: 'earliest',
      handlers: { [Order.type]: Order.handle((_d, ctx) => void seen.push(ctx.envelope.id)) },
    });
    await eventually(() => ids.every((id) => seen.includes(id)), { timeoutMs: 30_000, what: 'history' });
  });

  scenario(
    'pointed at a closed port, connecting or publishing fails instead of passing silently',
    undefined,
    async () => {
      const attempt = async (transport: Transport) => {
        const b = await connect({ transport, service: 'nowhere', publishTimeoutMs: 5_000 });
        try {
          await b.publish(topicName('closed'), Order, order(1));
        } finally {
          await b.close({ drainTimeoutMs: 100 }).catch(() => {});
        }
      };
      await expect(attempt(harness.createUnreachable())).rejects.toThrow();
    },
    60_000,
  );
});
