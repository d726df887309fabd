import * as api from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, memoryBroker, memoryTransport, readDeadLetterInfo } from '../index.js';
import { recordOutcomes } from '../testing/index.js';

const exporter = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  api.context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  api.context.disable();
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('telemetry on the memory transport', () => {
  it('makes one trace from checkout through payments to shipping, with the conventions attributes', async () => {
    exporter.reset();
    const transport = memoryTransport();
    const telemetry = { api, tracerProvider };
    const checkout = await connect({ transport, service: 'checkout', telemetry });
    const payments = await connect({ transport, service: 'payments', telemetry });
    const shipping = await connect({ transport, service: 'shipping', telemetry });
    const shipped = recordOutcomes(shipping);
    await payments.subscribe({
      topic: 'orders',
      group: 'payments',
      retry: { attempts: 3, backoff: { initialMs: 1, maxMs: 5, factor: 1, jitter: false } },
      handlers: {
        'order.placed': async (_d, ctx) => {
          if (ctx.attempt === 1) throw new Error('provider timed out');
          await payments.publish('payments', { type: 'payment.captured', data: {} });
        },
      },
    });
    await shipping.subscribe({
      topic: 'payments',
      group: 'shipping',
      handlers: { 'payment.captured': () => {} },
    });
    const { id } = await checkout.publish(
      'orders',
      { type: 'order.placed', data: { orderId: 'o-1' } },
      { key: 'o-1', correlationId: 'corr-1' },
    );
    await until(() => shipped.handled().length === 1);
    await until(() => exporter.getFinishedSpans().length >= 5);
    const spans = exporter.getFinishedSpans();
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
    const names = spans.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['send orders', 'process orders', 'send payments', 'process payments']),
    );
    const send = spans.find((s) => s.name === 'send orders')!;
    expect(send.kind).toBe(api.SpanKind.PRODUCER);
    expect(send.attributes).toMatchObject({
      'messaging.system': 'memory',
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'orders',
      'messaging.message.id': id,
      'messaging.message.conversation_id': 'corr-1',
    });
    const processes = spans.filter((s) => s.name === 'process orders');
    expect(processes.map((s) => s.attributes['messaging.omnibus.message.delivery_attempt'])).toEqual([1, 2]);
    for (const p of processes) {
      expect(p.kind).toBe(api.SpanKind.CONSUMER);
      expect(p.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
      expect(p.attributes).toMatchObject({
        'messaging.consumer.group.name': 'payments',
        'messaging.message.conversation_id': 'corr-1',
      });
    }
    expect(processes[0]!.events.map((e) => e.name)).toContain('omnibus.retry');
    expect(processes[0]!.status.code).toBe(api.SpanStatusCode.ERROR);
    // The payment is published inside the second handling: its send span is that span's child.
    const sendPayments = spans.find((s) => s.name === 'send payments')!;
    expect(sendPayments.parentSpanContext?.spanId).toBe(processes[1]!.spanContext().spanId);
    const processPayments = spans.find((s) => s.name === 'process payments')!;
    expect(processPayments.parentSpanContext?.spanId).toBe(sendPayments.spanContext().spanId);
    await Promise.all([checkout.close(), payments.close(), shipping.close()]);
  });

  it('records a dead-letter as a span event and links a batch send to its messages', async () => {
    exporter.reset();
    const transport = memoryTransport();
    const bus = await connect({ transport, service: 'svc', telemetry: { api, tracerProvider } });
    const outcomes = recordOutcomes(bus);
    await bus.subscribe({
      topic: 't',
      group: 'g',
      retry: { attempts: 1 },
      handlers: {
        bad: () => {
          throw new Error('poison');
        },
        good: () => {},
      },
    });
    await bus.publishBatch('t', [
      { type: 'good', data: 1 },
      { type: 'bad', data: 2 },
    ]);
    await until(() => outcomes.deadLettered().length === 1 && outcomes.handled().length === 1);
    await until(() => exporter.getFinishedSpans().filter((s) => s.name === 'process t').length === 2);
    const spans = exporter.getFinishedSpans();
    const creates = spans.filter((s) => s.name === 'create t');
    expect(creates).toHaveLength(2);
    const send = spans.find((s) => s.name === 'send t')!;
    expect(send.attributes['messaging.batch.message_count']).toBe(2);
    expect(send.links.map((l) => l.context.spanId).sort()).toEqual(
      creates.map((c) => c.spanContext().spanId).sort(),
    );
    const failed = spans.find(
      (s) => s.name === 'process t' && s.attributes['messaging.omnibus.message.type'] === 'bad',
    )!;
    expect(failed.events.find((e) => e.name === 'omnibus.dead_letter')?.attributes).toMatchObject({
      'omnibus.dead_letter.reason': 'max-attempts',
    });
    await bus.close();
  });

  it('makes no spans without the telemetry option, and none when tracing is off', async () => {
    exporter.reset();
    const transport = memoryTransport();
    const plain = await connect({ transport, service: 'a' });
    const off = await connect({
      transport,
      service: 'b',
      telemetry: { api, tracerProvider, tracing: false },
    });
    const seen = recordOutcomes(off);
    await off.subscribe({ topic: 'q', group: 'g', handlers: { x: () => {} } });
    await plain.publish('q', { type: 'x', data: 1 });
    await off.publish('q', { type: 'x', data: 2 });
    await until(() => seen.handled().length === 2);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    await Promise.all([plain.close(), off.close()]);
  });

  it('exports counters, processing time, message age and broker depth as metrics', async () => {
    const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({
      exporter: metricExporter,
      exportIntervalMillis: 60_000,
    });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const transport = memoryTransport();
    const bus = await connect({ transport, service: 'm', telemetry: { api, meterProvider, tracing: false } });
    const seen = recordOutcomes(bus);
    await bus.subscribe({ topic: 'mt', group: 'g', handlers: { x: () => {} } });
    await bus.publish('mt', { type: 'x', data: 1 }, { time: Date.now() - 2000 });
    await until(() => seen.handled().length === 1);
    const { resourceMetrics } = await reader.collect();
    const metrics = new Map(
      resourceMetrics.scopeMetrics.flatMap((s) => s.metrics.map((m) => [m.descriptor.name, m] as const)),
    );
    const value = (name: string) => (metrics.get(name)?.dataPoints[0]?.value as number | undefined) ?? -1;
    expect(value('messaging.client.sent.messages')).toBe(1);
    expect(value('messaging.client.consumed.messages')).toBe(1);
    expect(value('omnibus.messages.handled')).toBe(1);
    const age = metrics.get('omnibus.message.age')!.dataPoints[0]!.value as { sum: number; count: number };
    expect(age.count).toBe(1);
    expect(age.sum).toBeGreaterThanOrEqual(2);
    expect((metrics.get('messaging.process.duration')!.dataPoints[0]!.value as { count: number }).count).toBe(
      1,
    );
    const depth = metrics.get('omnibus.subscription.depth');
    expect(depth?.dataPoints[0]?.attributes).toMatchObject({
      'messaging.destination.name': 'mt',
      'messaging.consumer.group.name': 'g',
    });
    expect(depth?.dataPoints[0]?.value).toBe(0);
    await bus.close();
    await meterProvider.shutdown();
  });

  it('rejects a telemetry option without the API, naming the field', async () => {
    await expect(
      connect({ transport: memoryTransport(), service: 's', telemetry: {} as never }),
    ).rejects.toThrow(/telemetry/);
  });
});

describe('event time and processing time', () => {
  it('are on the handler context and in the dead-letter metadata', async () => {
    const broker = `times-${Math.random()}`;
    const bus = await connect({ transport: memoryTransport({ name: broker }), service: 'svc' });
    const outcomes = recordOutcomes(bus);
    const seen: { eventTime: number; processingStartedAt: number }[] = [];
    await bus.subscribe({
      topic: 't',
      group: 'g',
      retry: { attempts: 1 },
      handlers: {
        x: (_d, ctx) => {
          seen.push({ eventTime: ctx.envelope.time, processingStartedAt: ctx.processingStartedAt });
          throw new Error('poison');
        },
      },
    });
    const before = Date.now();
    await bus.publish('t', { type: 'x', data: 1 }, { time: before - 5000 });
    await until(() => outcomes.deadLettered().length === 1);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.eventTime).toBe(before - 5000);
    expect(seen[0]!.processingStartedAt).toBeGreaterThanOrEqual(before);
    const [dead] = memoryBroker(broker).deadLetters('t', 'g');
    const info = readDeadLetterInfo(dead!.headers);
    expect(info?.eventTime).toBe(before - 5000);
    expect(info?.processingStartedAt).toBe(seen[0]!.processingStartedAt);
    await bus.close();
  });
});
