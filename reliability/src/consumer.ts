/**
 * A consumer process of the chaos run: subscribes through Omnibus and records every handled message (H
 * lines) before its handler returns, so a message recorded may be redelivered (a duplicate) but a message
 * acknowledged is always recorded. Poison messages fail for good and must end in the dead-letter queue.
 * SIGTERM closes the bus gracefully; SIGKILL is the nemesis.
 */
import { connect, consoleLogger, type IdempotencyStore, NonRetryableError } from '@omnibus/core';
import { createTransport } from './brokers.js';
import { type ConsumerRole, isPoison, RecordFile, Tick } from './records.js';

const role = JSON.parse(process.env.OMNIBUS_CHAOS_ROLE ?? '') as ConsumerRole;
const record = new RecordFile(role.recordFile);
const bus = await connect({
  transport: await createTransport(role.transport, role.where),
  service: 'chaos-consumer',
  logger: consoleLogger(),
});

let store: IdempotencyStore | undefined;
if (role.storePrefix) {
  const { redisStore } = await import('@omnibus/redis');
  store = redisStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', keyPrefix: role.storePrefix });
}

const [minDelayMs, maxDelayMs] = role.handlerDelayMs;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await bus.subscribe({
  topic: role.topic,
  group: role.group,
  concurrency: role.concurrency,
  prefetch: role.prefetch,
  ordered: true,
  retry: { attempts: 3, backoff: { initialMs: 50, maxMs: 500, factor: 2, jitter: true } },
  ...(store ? { idempotency: { store, leaseMs: 10_000 } } : {}),
  handlers: {
    [Tick.type]: Tick.handle(async (data, ctx) => {
      if (maxDelayMs > 0) await sleep(minDelayMs + Math.random() * (maxDelayMs - minDelayMs));
      if (isPoison(data.seq, role.poisonEvery)) throw new NonRetryableError('poison message (chaos run)');
      record.write('H', ctx.envelope.id, data.key, data.seq, Date.now(), process.pid);
    }),
  },
});
record.write('READY', Date.now(), process.pid);

process.on('SIGTERM', () => {
  void bus
    .close({ drainTimeoutMs: 5_000 })
    .catch(() => {})
    .finally(() => {
      record.write('CLOSED', Date.now(), process.pid);
      process.exit(0);
    });
});
