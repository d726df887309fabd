/**
 * On the real broker OMNIBUS_TRANSPORT names: the demo's checkout → payments → shipping flow (a retry in
 * payments included) is one OpenTelemetry trace, with the messaging semantic conventions' attribute names.
 */
import { randomBytes } from 'node:crypto';
import { type Bus, connect, defineMessage, messagingSystem } from '@omnibus/core';
import { eventually, recordOutcomes } from '@omnibus/core/testing';
import * as api from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from '../load-harness.js';

const harness = await loadHarness();
const exporter = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const contextManager = new AsyncLocalStorageContextManager();

const OrderPlaced = defineMessage({
  type: 'order.placed',
  version: 1,
  schema: z.object({ orderId: z.string(), totalCents: z.number().int() }),
});
const PaymentCaptured = defineMessage({
  type: 'payment.captured',
  version: 1,
  schema: z.object({ orderId: z.string(), paymentId: z.string() }),
});
const ShipmentBooked = defineMessage({
  type: 'shipment.booked',
  version: 1,
  schema: z.object({ orderId: z.string(), trackingCode: z.string() }),
});

const buses: Bus[] = [];
beforeAll(async () => {
  await harness.setup();
  api.context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  await Promise.all(buses.map((b) => b.close({ drainTimeoutMs: 2000 })));
  api.context.disable();
  await harness.teardown();
});

async function service(name: string): Promise<Bus> {
  const bus = await connect({
    transport: harness.create(),
    service: name,
    publishTimeoutMs: 30_000,
    telemetry: { api, tracerProvider },
  });
  buses.push(bus);
  return bus;
}

describe(`telemetry on ${harness.name}`, () => {
  it('checkout → payments → shipping is one trace with the messaging conventions attributes', async () => {
    const run = randomBytes(4).toString('hex');
    const ORDERS = `otel-orders-${run}`;
    const PAYMENTS = `otel-payments-${run}`;
    const SHIPMENTS = `otel-shipments-${run}`;
    const checkout = await service('checkout');
    const payments = await service('payments');
    const shipping = await service('shipping');
    await checkout.provision(ORDERS, [{ group: 'payments' }]);
    await checkout.provision(PAYMENTS, [{ group: 'shipping' }]);
    await checkout.provision(SHIPMENTS, []);
    const shipped = recordOutcomes(shipping);

    await payments.subscribe({
      topic: ORDERS,
      group: 'payments',
      retry: { attempts: 3, backoff: { initialMs: 200, maxMs: 1000, factor: 2, jitter: false } },
      handlers: {
        [OrderPlaced.type]: OrderPlaced.handle(async (order, ctx) => {
          // The provider times out once: the retry succeeds, as in the demo.
          if (ctx.attempt === 1) throw new Error('payment provider timed out');
          await payments.publish(PAYMENTS, PaymentCaptured, {
            orderId: order.orderId,
            paymentId: `pay-${order.orderId}`,
          });
        }),
      },
    });
    await shipping.subscribe({
      topic: PAYMENTS,
      group: 'shipping',
      handlers: {
        [PaymentCaptured.type]: PaymentCaptured.handle(async (p) => {
          await shipping.publish(SHIPMENTS, ShipmentBooked, {
            orderId: p.orderId,
            trackingCode: `T-${p.orderId}`,
          });
        }),
      },
    });

    const { id } = await checkout.publish(
      ORDERS,
      OrderPlaced,
      { orderId: `o-${run}`, totalCents: 4200 },
      { key: `o-${run}`, correlationId: `corr-${run}` },
    );
    await eventually(() => shipped.handled().length === 1, { timeoutMs: 60_000, what: 'shipping handled' });
    const mine = () =>
      exporter
        .getFinishedSpans()
        .filter((s) => String(s.attributes['messaging.destination.name']).endsWith(run));
    await eventually(() => mine().length >= 6, { timeoutMs: 10_000, what: 'six spans exported' });

    const spans = mine();
    const byName = (n: string) => spans.filter((s) => s.name === n);
    const sendOrders = byName(`send ${ORDERS}`);
    const processOrders = byName(`process ${ORDERS}`);
    const sendPayments = byName(`send ${PAYMENTS}`);
    const processPayments = byName(`process ${PAYMENTS}`);
    const sendShipments = byName(`send ${SHIPMENTS}`);
    expect(sendOrders).toHaveLength(1);
    expect(processOrders).toHaveLength(2);
    expect(sendPayments).toHaveLength(1);
    expect(processPayments).toHaveLength(1);
    expect(sendShipments).toHaveLength(1);

    // One trace, parent by parent.
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
    const root = sendOrders[0]!;
    for (const p of processOrders) expect(p.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    const second = processOrders.find(
      (s) => s.attributes['messaging.omnibus.message.delivery_attempt'] === 2,
    )!;
    expect(sendPayments[0]!.parentSpanContext?.spanId).toBe(second.spanContext().spanId);
    expect(processPayments[0]!.parentSpanContext?.spanId).toBe(sendPayments[0]!.spanContext().spanId);
    expect(sendShipments[0]!.parentSpanContext?.spanId).toBe(processPayments[0]!.spanContext().spanId);

    // The transport's own name (SNS mode is the sqs transport): aws_sqs, rabbitmq, kafka, nats, memory.
    const system = messagingSystem(checkout.transport.name);
    expect(root.kind).toBe(api.SpanKind.PRODUCER);
    expect(root.attributes).toMatchObject({
      'messaging.system': system,
      'messaging.operation.type': 'send',
      'messaging.destination.name': ORDERS,
      'messaging.message.id': id,
      'messaging.message.conversation_id': `corr-${run}`,
    });
    const first = processOrders.find(
      (s) => s.attributes['messaging.omnibus.message.delivery_attempt'] === 1,
    )!;
    expect(first.kind).toBe(api.SpanKind.CONSUMER);
    expect(first.attributes).toMatchObject({
      'messaging.system': system,
      'messaging.operation.type': 'process',
      'messaging.destination.name': ORDERS,
      'messaging.consumer.group.name': 'payments',
      'messaging.message.id': id,
      'messaging.message.conversation_id': `corr-${run}`,
    });
    if (system === 'kafka') {
      expect(first.attributes['messaging.kafka.message.key']).toBe(`o-${run}`);
      expect(first.attributes['messaging.destination.partition.id']).toMatch(/^\d+$/);
      expect(first.attributes['messaging.kafka.offset']).toBeGreaterThanOrEqual(0);
    }
    expect(first.events.map((e) => e.name)).toContain('omnibus.retry');
    expect(first.status.code).toBe(api.SpanStatusCode.ERROR);
    // The correlation id follows the whole flow as the conversation id.
    for (const s of spans) expect(s.attributes['messaging.message.conversation_id']).toBe(`corr-${run}`);
  });
});
