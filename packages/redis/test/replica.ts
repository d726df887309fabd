/**
 * One replica of a service, run as its own process by the replica tests: consumes a RabbitMQ group
 * with the Redis idempotency store and records each handler run's effect in Redis (HINCRBY), so the
 * test can count effects per message id across processes.
 *
 * Env: REPLICA, REDIS_URL, AMQP_URL, TOPIC, GROUP, KEY_PREFIX (the store's), EFFECTS and STATS (hash
 * keys), LEASE_MS, MAX_DELAY_MS (random handler delay), HANG_ID (a message id on which this replica
 * notes that it started, then never finishes), NO_STORE=1 (no idempotency: the control run).
 */
import { connect, type IdempotencyStore, silentLogger } from '@omnibus/core';
import { rabbitmq } from '@omnibus/rabbitmq';
import { Redis } from 'ioredis';
import { redisStore } from '../src/index.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`replica: ${name} is not set`);
  return v;
};

const name = env('REPLICA');
const effects = env('EFFECTS');
const stats = env('STATS');
const maxDelayMs = Number(process.env.MAX_DELAY_MS ?? '0');
const hangId = process.env.HANG_ID;

const redis = new Redis(env('REDIS_URL'), { maxRetriesPerRequest: 1 });
redis.on('error', () => {});
const inner = redisStore({ url: env('REDIS_URL'), keyPrefix: env('KEY_PREFIX') });

// Counts what the store answered, so the test can see that the replicas really overlapped.
const counted: IdempotencyStore = {
  async claim(key, leaseMs) {
    const r = await inner.claim(key, leaseMs);
    void redis.hincrby(stats, `${name}:claim-${r}`, 1);
    return r;
  },
  complete: (key, ttlMs) => inner.complete(key, ttlMs),
  release: (key) => inner.release(key),
};

const bus = await connect({
  transport: rabbitmq({
    url: env('AMQP_URL'),
    connectTimeoutMs: 30_000,
    reconnect: { initialMs: 50, maxMs: 1_000 },
  }),
  service: `replica-${name}`,
  logger: silentLogger,
});
bus.onOutcome((o) => {
  void redis.hincrby(stats, `${name}:${o.kind}`, 1);
});

await bus.subscribe({
  topic: env('TOPIC'),
  group: env('GROUP'),
  concurrency: 8,
  retry: { attempts: 50, backoff: { initialMs: 100, maxMs: 1_000, factor: 2, jitter: true } },
  handlerTimeoutMs: 60_000,
  ...(process.env.NO_STORE === '1'
    ? {}
    : { idempotency: { store: counted, leaseMs: Number(env('LEASE_MS')), ttlMs: 600_000 } }),
  handlers: {
    'effect.test': async (_data: unknown, ctx) => {
      const id = ctx.envelope.id;
      if (id === hangId) {
        await redis.hset(stats, 'hang-started-at', Date.now(), 'hang-replica', name);
        // Holds its claim until the test SIGKILLs this process.
        await new Promise(() => {});
      }
      if (maxDelayMs > 0) await new Promise((r) => setTimeout(r, Math.random() * maxDelayMs));
      // The effect: one atomic increment per handler run, and when it happened.
      await redis.multi().hincrby(effects, id, 1).hset(`${effects}:at`, id, Date.now()).exec();
    },
  },
});

process.send?.('ready');
process.on('message', async (m) => {
  if (m !== 'stop') return;
  await bus.close({ drainTimeoutMs: 5_000 }).catch(() => {});
  await inner.close();
  redis.disconnect();
  process.exit(0);
});
