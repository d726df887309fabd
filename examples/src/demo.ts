/**
 * Three services on one bus — checkout → payments → shipping — showing a retry that succeeds, a poison
 * message dead-lettered with its reason, a duplicate suppressed and one correlation id across every hop.
 * Runs on the memory transport unless OMNIBUS_URL names a broker. With DATABASE_URL set, payments keeps its
 * idempotency claims in PostgreSQL and publishes through a transactional outbox: the captured payment is
 * written in the same transaction that marks the order handled, and a relay sends it on.
 */
import { randomBytes } from 'node:crypto';
import { type Bus, connect, type MessageContext, memoryStore, runWithContext } from '@omnibus/core';
import { recordOutcomes } from '@omnibus/core/testing';
import type { Queryable } from '@omnibus/postgres';
import { OrderPlaced, PaymentCaptured, ShipmentBooked } from './messages.js';
import { transportFromEnv } from './transport.js';

const run = randomBytes(3).toString('hex');
const ORDERS = `demo-orders-${run}`;
const PAYMENTS = `demo-payments-${run}`;
const SHIPMENTS = `demo-shipments-${run}`;
const started = Date.now();

function trace(service: string, text: string, correlationId?: string): void {
  const t = String(Date.now() - started).padStart(5);
  const corr = correlationId ? `  corr=${correlationId}` : '';
  console.log(`${t} ms  ${service.padEnd(9)} ${text}${corr}`);
}

async function service(name: string): Promise<{ bus: Bus; label: string }> {
  const { transport, label } = await transportFromEnv(`demo-${run}`);
  return { bus: await connect({ transport, service: name, publishTimeoutMs: 15_000 }), label };
}

async function main(): Promise<void> {
  const checkout = await service('checkout');
  const payments = await service('payments');
  const shipping = await service('shipping');
  const db = process.env.DATABASE_URL ? await database(payments.bus) : undefined;
  console.log(`Omnibus demo on ${checkout.label}${db ? ', payments on PostgreSQL (store + outbox)' : ''}\n`);

  // Groups exist before anything is published (RabbitMQ drops messages no queue was bound for).
  await checkout.bus.provision(ORDERS, [{ group: 'payments', types: [OrderPlaced.type] }]);
  await checkout.bus.provision(PAYMENTS, [{ group: 'shipping', types: [PaymentCaptured.type] }]);

  const paymentsOutcomes = recordOutcomes(payments.bus);
  const shippingOutcomes = recordOutcomes(shipping.bus);
  let providerCalls = 0;

  // The capture: with PostgreSQL, written to the outbox in the handler's transaction (the inbox commits it
  // together with the claim, exactly once); without, published straight away.
  type Order = { orderId: string; customerId: string; totalCents: number };
  const pay = async (order: Order, ctx: MessageContext<Order>, tx?: Queryable) => {
    const corr = ctx.envelope.correlationId;
    trace('payments', `received ${order.orderId} (attempt ${ctx.attempt})`, corr);
    // The payment provider times out on the first call for o-2: the retry succeeds.
    if (order.orderId === 'o-2' && ctx.attempt === 1) {
      providerCalls++;
      trace('payments', `provider timeout for ${order.orderId}: will retry`, corr);
      throw new Error('payment provider timed out');
    }
    providerCalls++;
    const captured = {
      orderId: order.orderId,
      paymentId: `pay-${order.orderId}`,
      totalCents: order.totalCents,
    };
    if (db && tx) await db.outbox.publish(tx, PAYMENTS, PaymentCaptured, captured);
    else await payments.bus.publish(PAYMENTS, PaymentCaptured, captured);
    trace(
      'payments',
      `captured ${order.totalCents} cents for ${order.orderId} → ${PaymentCaptured.type}`,
      corr,
    );
  };

  await payments.bus.subscribe({
    topic: ORDERS,
    group: 'payments',
    concurrency: 4,
    retry: { attempts: 3, backoff: { initialMs: 100, maxMs: 1000, factor: 2, jitter: false } },
    idempotency: { store: db?.store ?? memoryStore({ ttlMs: 3_600_000 }) },
    handlers: {
      [OrderPlaced.type]: OrderPlaced.handle(db ? db.inbox(db.store, pay) : (order, ctx) => pay(order, ctx)),
    },
  });

  await shipping.bus.subscribe({
    topic: PAYMENTS,
    group: 'shipping',
    handlers: {
      [PaymentCaptured.type]: PaymentCaptured.handle(async (payment, ctx) => {
        const trackingCode = `TRK-${payment.orderId.toUpperCase()}`;
        await shipping.bus.publish(SHIPMENTS, ShipmentBooked, { orderId: payment.orderId, trackingCode });
        trace(
          'shipping',
          `booked ${trackingCode} (caused by ${ctx.envelope.causationId?.slice(-8)})`,
          ctx.envelope.correlationId,
        );
      }),
    },
  });

  // Checkout: each order is one HTTP request, one correlation id.
  const placed: string[] = [];
  for (const [orderId, totalCents] of [
    ['o-1', 4200],
    ['o-2', 1999],
  ] as const) {
    const correlationId = `req-${orderId}`;
    await runWithContext({ correlationId }, async () => {
      const { id } = await checkout.bus.publish(
        ORDERS,
        OrderPlaced,
        { orderId, customerId: 'c-7', totalCents },
        { key: 'c-7' },
      );
      placed.push(id);
      trace('checkout', `placed ${orderId} as ${OrderPlaced.type} id …${id.slice(-8)}`, correlationId);
      if (orderId === 'o-1') {
        // A producer retry after a lost acknowledgement: same message id, sent again.
        await checkout.bus.publish(
          ORDERS,
          OrderPlaced,
          { orderId, customerId: 'c-7', totalCents },
          { id, key: 'c-7' },
        );
        trace('checkout', `re-sent ${orderId} with the same id (a producer retry)`, correlationId);
      }
    });
  }
  // An old client sends a v1 message (upcast to v2) and a broken client sends one that fails the schema.
  await runWithContext({ correlationId: 'req-o-3' }, async () => {
    await checkout.bus.publish(ORDERS, {
      type: OrderPlaced.type,
      version: 1,
      data: { orderId: 'o-3', customerId: 'c-9', total: 12.5 },
    });
    trace('checkout', 'placed o-3 from a legacy v1 client', 'req-o-3');
  });
  const poison = await runWithContext({ correlationId: 'req-bad' }, () =>
    checkout.bus.publish(ORDERS, {
      type: OrderPlaced.type,
      version: 2,
      data: { orderId: 'o-4', totalCents: -5 },
    }),
  );
  trace('checkout', 'placed o-4 from a broken client (negative total, no customer)', 'req-bad');

  await shippingOutcomes.until((o) => o.filter((x) => x.kind === 'handled').length >= 3, {
    timeoutMs: 30_000,
    what: 'three shipments',
  });
  await paymentsOutcomes.until(
    // With the outbox, shipping can see a capture before payments has acknowledged its order: wait for all.
    (o) =>
      o.some((x) => x.kind === 'dead-lettered') &&
      o.some((x) => x.kind === 'duplicate') &&
      o.filter((x) => x.kind === 'handled').length >= 3,
    { timeoutMs: 30_000, what: 'the poison message, the duplicate and three payments' },
  );

  const dead = paymentsOutcomes.deadLettered()[0]!;
  console.log('');
  trace('payments', `dead-lettered …${dead.id?.slice(-8)}: reason=${dead.reason} (${dead.error})`);
  console.log('\nSummary');
  console.log(`  orders placed                 ${placed.length + 2} (+1 duplicate send)`);
  console.log(`  payments handled              ${payments.bus.counters.handled}`);
  console.log(`  retries                       ${payments.bus.counters.retried}`);
  console.log(`  duplicates suppressed         ${payments.bus.counters.duplicates}`);
  console.log(
    `  dead-lettered                 ${payments.bus.counters.deadLettered} (${dead.reason}, id …${poison.id.slice(-8)})`,
  );
  console.log(`  shipments booked              ${shipping.bus.counters.handled}`);
  console.log(`  payment provider calls        ${providerCalls}`);
  const correlations = shippingOutcomes.handled().map((o) => o.envelope.correlationId);
  console.log(`  correlation ids at shipping   ${[...new Set(correlations)].sort().join(', ')}`);

  await db?.relay.close();
  await Promise.all([checkout.bus.close(), payments.bus.close(), shipping.bus.close()]);
  await db?.store.close();
  const ok =
    payments.bus.counters.duplicates >= 1 &&
    payments.bus.counters.deadLettered === 1 &&
    shipping.bus.counters.handled === 3 &&
    correlations.sort().join() === 'req-o-1,req-o-2,req-o-3';
  if (!ok) {
    console.error('\ndemo did not reach the expected outcome');
    process.exit(1);
  }
}

/**
 * Payments' PostgreSQL side: the schema, the shared store, the outbox and its relay (publishing through
 * payments' bus). Loaded only when DATABASE_URL is set.
 */
async function database(bus: Bus) {
  const pg = await import('@omnibus/postgres');
  const connectionString = process.env.DATABASE_URL!;
  const store = pg.postgresStore({ connectionString });
  await store.ensureSchema();
  const outbox = pg.outbox({ bus });
  const relay = await pg.startRelay({ connectionString, bus, pollIntervalMs: 200 });
  return { store, outbox, relay, inbox: pg.inbox };
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
