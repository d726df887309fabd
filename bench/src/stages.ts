/**
 * The cost of each pipeline stage, in µs per message, on the memory transport: a baseline subscription
 * (untyped handler, no idempotency) against the same subscription with one feature turned on. Messages
 * are published first (not measured); the consume side is measured in CPU time (user + system) from
 * subscribe to the last handled message, which other work on the machine disturbs far less than wall time.
 */
import {
  connect,
  defineMessage,
  type MessageDefinition,
  memoryStore,
  memoryTransport,
  runWithContext,
  type SubscribeOptions,
} from '@omnibus/core';
import { z } from 'zod';
import type { StageResults, StageRow } from './lib/report.js';
import { withTimeout } from './lib/runner.js';
import { figure } from './lib/stats.js';
import { windowed } from './lib/window.js';

const TYPE = 'bench.order';

interface Order {
  orderId: string;
  customerId: string;
  totalCents: number;
  currency: string;
  items: { sku: string; qty: number; priceCents: number }[];
  note: string;
}

const OrderSchema = z.object({
  orderId: z.string(),
  customerId: z.string(),
  totalCents: z.number().int(),
  currency: z.string().length(3),
  items: z.array(
    z.object({ sku: z.string(), qty: z.number().int().positive(), priceCents: z.number().int() }),
  ),
  note: z.string(),
});

const OrderV1 = defineMessage({ type: TYPE, version: 1, schema: OrderSchema });
const OrderV2 = defineMessage({
  type: TYPE,
  version: 2,
  schema: OrderSchema,
  upcast: { 1: (v1: Order) => v1 },
});

/** About 200 bytes of JSON. */
function order(i: number): Order {
  return {
    orderId: `o-${i}`,
    customerId: `c-${i % 97}`,
    totalCents: 4200 + i,
    currency: 'EUR',
    items: [
      { sku: 'sku-1', qty: 1, priceCents: 2100 },
      { sku: 'sku-2', qty: 2, priceCents: 1050 },
    ],
    note: 'leave at the door',
  };
}

interface Variant {
  stage: string;
  what: string;
  /** Subscribe options beyond topic/group/handlers; `fail` makes each message's first attempt throw. */
  options?: () => Partial<SubscribeOptions>;
  typed?: MessageDefinition<Order>;
  /** Publish with this definition (version) instead of untyped v1 data. */
  publishAs?: MessageDefinition<Order>;
  failFirst?: boolean;
  middleware?: boolean;
  publishInside?: boolean;
}

const VARIANTS: Variant[] = [
  { stage: 'baseline', what: 'untyped handler, no idempotency, concurrency 64' },
  { stage: 'validation', what: '`Def.handle()`: zod schema check of every message', typed: OrderV1 },
  {
    stage: 'validation + upcast',
    what: 'v1 messages read by a v2 definition (one upcaster, then the schema)',
    typed: OrderV2,
    publishAs: OrderV1,
  },
  {
    stage: 'idempotency',
    what: '`memoryStore({ maxEntries: 10 000 })`: claim + complete per message (full, evicting, after the first 10 000)',
    options: () => ({ idempotency: { store: memoryStore({ maxEntries: 10_000 }) } }),
  },
  {
    stage: 'retry bookkeeping',
    what: 'first attempt throws, in-process retry after 0 ms (per message: one failure + one retry)',
    options: () => ({
      retry: { attempts: 3, backoff: { initialMs: 0, maxMs: 1, factor: 1, jitter: false } },
    }),
    failFirst: true,
  },
  {
    stage: 'ordered',
    what: '`ordered: true`, 100 distinct keys: per-key lanes',
    options: () => ({ ordered: true }),
  },
  {
    stage: 'circuit breaker',
    what: '`circuitBreaker: {}`: admit + success per message',
    options: () => ({ circuitBreaker: { failureThreshold: 5, cooldownMs: 10_000 } }),
  },
  { stage: 'consume middleware', what: 'one pass-through consume middleware', middleware: true },
  {
    stage: 'correlation context',
    what: 'the handler publishes one message (inherits correlation and causation from the context)',
    publishInside: true,
  },
];

let names = 0;

async function runVariant(v: Variant, n: number): Promise<number> {
  const transport = memoryTransport({ name: `stages-${process.pid}-${names++}`, retention: 10 });
  const bus = await connect({
    transport,
    service: 'bench-stages',
    middleware: v.middleware ? [{ consume: (_ctx, next) => next() }] : [],
  });
  try {
    const topic = 'orders';
    await bus.provision(topic, [{ group: 'g' }]);
    await windowed(n, 1000, (i) =>
      v.publishAs
        ? bus.publish(topic, v.publishAs, order(i), { key: `k${i % 100}` })
        : bus.publish(topic, { type: TYPE, data: order(i) }, { key: `k${i % 100}` }),
    );
    let handled = 0;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => {
      resolveDone = resolve;
    });
    const failed = new Set<string>();
    const fn = async (data: Order, ctx: { envelope: { id: string } }) => {
      if (v.failFirst && !failed.has(ctx.envelope.id)) {
        failed.add(ctx.envelope.id);
        throw new Error('first attempt fails');
      }
      if (v.publishInside)
        await bus.publish('side-effects', { type: 'bench.audit', data: { orderId: data.orderId } });
      if (++handled === n) resolveDone();
    };
    const cpu0 = process.cpuUsage();
    const sub = await bus.subscribe({
      topic,
      group: 'g',
      concurrency: 64,
      handlers: { [TYPE]: v.typed ? v.typed.handle(fn) : fn },
      ...v.options?.(),
    });
    await withTimeout(done, 120_000, () => `${v.stage}: ${handled} of ${n} handled`);
    const cpu = process.cpuUsage(cpu0);
    const us = (cpu.user + cpu.system) / n;
    await sub.close();
    return us;
  } finally {
    await bus.close();
  }
}

/** CPU µs per call of `fn` over `n` calls (after a warm-up). */
function micro(n: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < Math.min(n, 10_000); i++) fn(i);
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / n;
}

export async function runStages(o: {
  scale: number;
  reps: number;
  log: (line: string) => void;
}): Promise<StageResults> {
  const n = Math.max(2000, Math.round(20_000 * o.scale));
  // Warm-up, then repetitions alternate across all variants so drift spreads evenly.
  for (const v of VARIANTS) await runVariant(v, Math.min(n, 5000));
  const samples = VARIANTS.map(() => [] as number[]);
  for (let rep = 0; rep < o.reps; rep++) {
    for (const [i, v] of VARIANTS.entries()) samples[i]!.push(await runVariant(v, n));
  }
  const base = figure(samples[0]!).median;
  const rows: StageRow[] = VARIANTS.map((v, i) => {
    const f = figure(samples[i]!);
    o.log(
      `stage ${v.stage.padEnd(22)} ${f.median.toFixed(2)} µs/msg (${f.min.toFixed(2)}–${f.max.toFixed(2)})`,
    );
    return {
      stage: v.stage,
      what: v.what,
      usPerMessage: f,
      deltaUs: Math.round((f.median - base) * 100) / 100,
    };
  });

  // The same features as single calls, to separate them from the pipeline's scheduling.
  const m = Math.max(20_000, Math.round(100_000 * o.scale));
  const data = order(1);
  // Bounded at 10 000 and filled by the warm-up, so every timed call also evicts the oldest entry.
  const store = memoryStore({ maxEntries: 10_000 });
  let storeKeys = 0;
  const microRows: { stage: string; what: string; n?: number; fn: (i: number) => unknown }[] = [
    { stage: 'empty call', what: 'loop overhead', fn: (i) => i },
    { stage: 'OrderV1.parse', what: 'zod safeParse of a ~200-byte order', fn: () => OrderV1.parse(data) },
    { stage: 'OrderV2.parse(v1)', what: 'one upcaster + zod safeParse', fn: () => OrderV2.parse(data, 1) },
    {
      stage: 'store claim + complete',
      what: 'memoryStore({ maxEntries: 10 000 }), full: each call also evicts the oldest entry',
      n: Math.max(5_000, Math.round(m / 10)),
      fn: () => {
        const key = `g:${storeKeys++}`;
        store.claimSync(key, 35_000);
        return store.complete(key);
      },
    },
    {
      stage: 'runWithContext',
      what: 'AsyncLocalStorage run around a no-op',
      fn: () => runWithContext({ correlationId: 'c' }, () => 1),
    },
  ];
  const micros: StageRow[] = [];
  const microSamples = microRows.map(() => [] as number[]);
  for (let rep = 0; rep < o.reps; rep++) {
    for (const [i, r] of microRows.entries()) microSamples[i]!.push(micro(r.n ?? m, r.fn));
  }
  const empty = figure(microSamples[0]!).median;
  for (const [i, r] of microRows.entries()) {
    const f = figure(microSamples[i]!);
    micros.push({
      stage: r.stage,
      what: r.what,
      usPerMessage: f,
      deltaUs: Math.round((f.median - empty) * 1000) / 1000,
    });
    o.log(`micro ${r.stage.padEnd(24)} ${f.median.toFixed(3)} µs/call`);
  }
  return { measuredAt: new Date().toISOString(), messages: n, rows, micro: micros };
}
