/**
 * Structured logs with pino: every line about a message — Omnibus's own (handler failed, dead-lettered)
 * and the handler's — carries the message id, correlation id, topic, group and attempt, so one query
 * finds a message's whole story. Runs on the memory transport unless OMNIBUS_URL names a broker.
 */
import { connect, type MessageContext, type Middleware } from '@omnibus/core';
import pino, { type Logger } from 'pino';
import { transportFromEnv } from './transport.js';

const root = pino({ name: 'orders-service' });

/** The fields every log line about this message carries (the names Omnibus's own lines use). */
export function messageFields(ctx: MessageContext): Record<string, unknown> {
  return {
    messageId: ctx.envelope.id,
    correlationId: ctx.envelope.correlationId,
    topic: ctx.topic,
    group: ctx.group,
    attempt: ctx.attempt,
    type: ctx.envelope.type,
  };
}

/** A child logger per handling, made by a consume middleware and read by handlers through `log(ctx)`. */
const loggers = new WeakMap<MessageContext, Logger>();
export function log(ctx: MessageContext): Logger {
  return loggers.get(ctx) ?? root.child(messageFields(ctx));
}
export const messageLogging: Middleware = {
  consume: async (ctx, next) => {
    const logger = root.child(messageFields(ctx));
    loggers.set(ctx, logger);
    logger.debug('handling');
    await next();
  },
};

async function main(): Promise<void> {
  const { transport } = await transportFromEnv('pino-example');
  // pino's (fields, message) signature is Omnibus's Logger interface: its own lines go through pino too.
  const bus = await connect({ transport, service: 'orders', logger: root, middleware: [messageLogging] });
  await bus.subscribe({
    topic: 'orders',
    group: 'billing',
    retry: { attempts: 2, backoff: { initialMs: 50, maxMs: 50, factor: 1, jitter: false } },
    handlers: {
      'order.placed': (data, ctx) => {
        log(ctx).info({ data }, 'charging the order');
        if (ctx.attempt === 1) throw new Error('card processor timed out');
        log(ctx).info('charged');
      },
    },
  });
  await bus.publish(
    'orders',
    { type: 'order.placed', data: { orderId: 'o-1' } },
    { correlationId: 'req-42' },
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  await bus.close();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
