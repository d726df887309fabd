/**
 * @omnibus/postgres figures: what a shared idempotency claim costs next to memoryStore, and how fast the
 * outbox relay moves committed rows into RabbitMQ and Kafka. Writes bench/results/postgres.json.
 *   pnpm bench postgres [--messages N] [--rows N]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Bus, connect, type IdempotencyStore, memoryStore, memoryTransport } from '@omnibus/core';
import { kafka } from '@omnibus/kafka';
import { ensureSchema, outbox, postgresStore, startRelay } from '@omnibus/postgres';
import { rabbitmq } from '@omnibus/rabbitmq';
import pg from 'pg';
import { machine } from './lib/machine.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

function flag(name: string, fallback: number): number {
  const i = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  const a = process.argv[i]!;
  return Number(a.includes('=') ? a.split('=')[1] : process.argv[i + 1]);
}
const MESSAGES = flag('messages', 5000);
const ROWS = flag('rows', 20_000);
const CONCURRENCY = 16;
const tag = () => randomBytes(4).toString('hex');

interface ClaimFigures {
  store: string;
  /** One message at a time: claim then complete, mean per message. */
  sequentialUsPerMessage: number;
  /** 16 messages in flight. */
  concurrentMessagesPerSecond: number;
}

/** claim + complete per message, as the consumer does for every message it handles. */
async function claimCost(name: string, store: IdempotencyStore): Promise<ClaimFigures> {
  const prefix = `bench:${tag()}`;
  const sequential = Math.min(MESSAGES, 2000);
  // Warm-up: connections opened, statements planned.
  for (let i = 0; i < 50; i++) {
    await store.claim(`${prefix}:w${i}`, 30_000);
    await store.complete(`${prefix}:w${i}`, 60_000);
  }
  let t = performance.now();
  for (let i = 0; i < sequential; i++) {
    await store.claim(`${prefix}:s${i}`, 30_000);
    await store.complete(`${prefix}:s${i}`, 60_000);
  }
  const sequentialUs = ((performance.now() - t) * 1000) / sequential;
  let next = 0;
  t = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < MESSAGES; i = next++) {
        await store.claim(`${prefix}:c${i}`, 30_000);
        await store.complete(`${prefix}:c${i}`, 60_000);
      }
    }),
  );
  const perSecond = MESSAGES / ((performance.now() - t) / 1000);
  return {
    store: name,
    sequentialUsPerMessage: Math.round(sequentialUs),
    concurrentMessagesPerSecond: Math.round(perSecond),
  };
}

interface RelayFigures {
  transport: string;
  rows: number;
  keys: number;
  /** Writing the rows through outbox.publish, 100 per transaction. */
  writeRowsPerSecond: number;
  /** From relay start until every row is published (broker-confirmed) and marked sent. */
  relayRowsPerSecond: number;
  batchSize: number;
}

async function relayThroughput(label: string, bus: Bus, pool: pg.Pool, rows: number): Promise<RelayFigures> {
  const table = `bench_outbox_${tag()}`;
  const idem = `bench_idem_${tag()}`;
  await ensureSchema(pool, { outboxTable: table, idempotencyTable: idem });
  const topic = `bench-outbox-${tag()}`;
  await bus.provision(topic, [{ group: 'bench' }]);
  const box = outbox({ bus, table });
  const keys = 100;
  const payload = { text: 'x'.repeat(200) };
  let t = performance.now();
  for (let done = 0; done < rows; done += 100) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = 0; i < 100; i++) {
        await box.publish(
          client,
          topic,
          { type: 'bench.row', data: payload },
          { key: `k${(done + i) % keys}` },
        );
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
  const writeRate = rows / ((performance.now() - t) / 1000);
  const batchSize = 500;
  t = performance.now();
  const relay = await startRelay({ pool, bus, table, batchSize, pollIntervalMs: 100 });
  for (;;) {
    const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE sent_at IS NULL`);
    if (Number(r.rows[0]!.n) === 0) break;
    if (performance.now() - t > 600_000) throw new Error(`relay into ${label} did not finish in 10 minutes`);
    await new Promise((res) => setTimeout(res, 20));
  }
  const relayRate = rows / ((performance.now() - t) / 1000);
  await relay.close();
  await pool.query(`DROP TABLE ${table}; DROP TABLE ${idem}`);
  return {
    transport: label,
    rows,
    keys,
    writeRowsPerSecond: Math.round(writeRate),
    relayRowsPerSecond: Math.round(relayRate),
    batchSize,
  };
}

async function kafkaAnswers(): Promise<boolean> {
  const probe = kafka({
    brokers: KAFKA_BROKERS,
    connectionTimeoutMs: 10_000,
    retry: { retries: 2, initialRetryTimeMs: 300, maxRetryTimeMs: 2000 },
  });
  try {
    const bus = await connect({ transport: probe, service: 'bench-probe' });
    await bus.close();
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const table = `bench_idem_${tag()}`;
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: CONCURRENCY + 4 });
  pool.on('error', () => {});
  await ensureSchema(pool, { idempotencyTable: table, outboxTable: `bench_unused_${tag()}` });
  const claims: ClaimFigures[] = [];
  claims.push(await claimCost('memoryStore', memoryStore()));
  const store = postgresStore({ pool, table });
  claims.push(await claimCost('postgresStore', store));
  await pool.query(`DROP TABLE ${table}`);
  for (const c of claims) {
    console.log(
      `claim+complete  ${c.store.padEnd(14)} ${String(c.sequentialUsPerMessage).padStart(7)} µs/message sequential   ${String(c.concurrentMessagesPerSecond).padStart(8)} messages/s at ${CONCURRENCY} in flight`,
    );
  }

  const relays: RelayFigures[] = [];
  const skipped: Record<string, string> = {};
  const targets: [string, () => Promise<Bus>][] = [
    ['memory', () => connect({ transport: memoryTransport(), service: 'bench-relay' })],
    [
      'rabbitmq',
      () =>
        connect({ transport: rabbitmq({ url: AMQP_URL, connectTimeoutMs: 60_000 }), service: 'bench-relay' }),
    ],
  ];
  if (await kafkaAnswers()) {
    targets.push([
      'kafka',
      () => connect({ transport: kafka({ brokers: KAFKA_BROKERS }), service: 'bench-relay' }),
    ]);
  } else {
    skipped.kafka = `Kafka did not answer at ${KAFKA_BROKERS.join(',')}`;
    console.log(`relay into kafka: skipped (${skipped.kafka})`);
  }
  for (const [label, make] of targets) {
    let bus: Bus | undefined;
    try {
      bus = await make();
      const f = await relayThroughput(label, bus, pool, ROWS);
      relays.push(f);
      console.log(
        `outbox → ${label.padEnd(9)} write ${String(f.writeRowsPerSecond).padStart(6)} rows/s   relay ${String(f.relayRowsPerSecond).padStart(6)} rows/s (${f.rows} rows, ${f.keys} keys, batches of ${f.batchSize})`,
      );
    } catch (err) {
      skipped[label] = String((err as Error).message ?? err);
      console.log(`relay into ${label}: failed (${skipped[label]})`);
    } finally {
      await bus?.close({ drainTimeoutMs: 1000 }).catch(() => {});
    }
  }
  await pool.end();
  const result = {
    started,
    machine: machine(),
    database: DATABASE_URL.replace(/\/\/[^@/]*@/, '//***@'),
    amqp: AMQP_URL.replace(/\/\/[^@/]*@/, '//***@'),
    kafka: KAFKA_BROKERS.join(','),
    messages: MESSAGES,
    concurrency: CONCURRENCY,
    claims,
    relays,
    skipped,
    notes: [
      'claim+complete: the two store calls the consumer makes for every handled message (sequential = latency, one at a time; concurrent = 16 at once).',
      'relay: rows written first (100 per transaction), then one relay started; rows/s until every row is broker-confirmed and marked sent.',
      'The machine is shared with other work; see machine.loadAverage.',
    ],
  };
  const out = join(process.cwd(), 'results', 'postgres.json');
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten ${out}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
