/** Shared test plumbing: the real server's URL, throwaway tables, waiting with a deadline, replicas in child processes. */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ensureSchema } from '../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export function unique(label: string): string {
  return `pgt_${label}_${randomBytes(4).toString('hex')}`;
}

/** The URL with an application_name, so a test can find (and cut) exactly that client's connections. */
export function urlNamed(appName: string): string {
  const u = new URL(DATABASE_URL);
  u.searchParams.set('application_name', appName);
  return u.toString();
}

/**
 * Fails loudly when PostgreSQL does not answer: a suite pointed at a closed port must never pass.
 * Every test file calls it in beforeAll.
 */
export async function requireDatabase(): Promise<void> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(
      `PostgreSQL is not reachable at ${new URL(DATABASE_URL).host} (DATABASE_URL): ${String(err)}. ` +
        'Start it with scripts/brokers/postgres.sh up.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/** Tables made for one test file, dropped in afterAll. */
export class Tables {
  readonly pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  readonly #made: string[] = [];

  constructor() {
    this.pool.on('error', () => {});
  }

  /** A fresh pair of store and outbox tables. */
  async schema(label: string): Promise<{ idempotencyTable: string; outboxTable: string }> {
    const names = { idempotencyTable: unique(`${label}_idem`), outboxTable: unique(`${label}_outbox`) };
    await ensureSchema(this.pool, names);
    this.#made.push(names.idempotencyTable, names.outboxTable);
    return names;
  }

  /** A table recording handler effects: one row per effect, no unique constraint (so doubles show). */
  async effects(label: string): Promise<string> {
    const name = unique(`${label}_fx`);
    await this.pool.query(
      `CREATE TABLE ${name} (message_id text NOT NULL, replica text, at timestamptz DEFAULT now())`,
    );
    this.#made.push(name);
    return name;
  }

  async count(sql: string, params: unknown[] = []): Promise<number> {
    const r = await this.pool.query<{ n: string }>(sql, params);
    return Number(r.rows[0]?.n ?? 0);
  }

  async drop(): Promise<void> {
    for (const t of this.#made) await this.pool.query(`DROP TABLE IF EXISTS ${t}`).catch(() => {});
    await this.pool.end();
  }
}

/** Cuts every connection whose application_name is `appName`, as a server restart would. */
export async function terminate(pool: pg.Pool, appName: string): Promise<number> {
  const r = await pool.query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
    [appName],
  );
  return r.rowCount ?? 0;
}

export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string | (() => string),
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const w = typeof what === 'function' ? what() : what;
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${w}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export type ChildMessage = { kind: string; [k: string]: unknown };

/** A fixture script run as its own Node process (another replica, another relay), talking over IPC. */
export class Child {
  readonly proc: ChildProcess;
  readonly messages: ChildMessage[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';

  constructor(fixture: string, config: Record<string, unknown>) {
    const script = fileURLToPath(new URL(`./fixtures/${fixture}.ts`, import.meta.url));
    this.proc = fork(script, [JSON.stringify(config)], {
      execArgv: ['--import', 'tsx', '--conditions=omnibus-source'],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    this.proc.stderr?.on('data', (b: Buffer) => {
      this.stderr += b.toString();
    });
    this.proc.on('message', (m) => this.messages.push(m as ChildMessage));
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  has(kind: string): ChildMessage | undefined {
    return this.messages.find((m) => m.kind === kind);
  }

  async waitFor(kind: string, timeoutMs = 120_000): Promise<ChildMessage> {
    let exit: unknown;
    void this.exited.then((e) => {
      exit = e;
    });
    return waitFor(
      () => {
        const m = this.has(kind);
        if (m) return m;
        if (exit) throw new Error(`child exited ${JSON.stringify(exit)}: ${this.stderr.slice(-2000)}`);
        return undefined;
      },
      () => `'${kind}' from the child (stderr: ${this.stderr.slice(-1000)})`,
      timeoutMs,
    );
  }

  send(m: ChildMessage): void {
    this.proc.send(m);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** Asks the child to close cleanly and waits for it to exit. */
  async stop(timeoutMs = 30_000): Promise<ChildMessage | undefined> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.has('closed');
    this.send({ kind: 'close' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
    return this.has('closed');
  }
}

const RETRY_TIERS_MS = [1000, 5000, 30_000, 120_000, 600_000, 3_600_000];

/**
 * Deletes what the RabbitMQ transport declared for these topics and groups (exchange, group queue,
 * dead-letter queue, retry tiers): quorum queues left behind weigh on the shared broker.
 */
export async function deleteTopics(topics: readonly [topic: string, group: string][]): Promise<void> {
  if (topics.length === 0) return;
  const { connect } = await import('amqplib');
  const conn = await connect(AMQP_URL);
  conn.on('error', () => {});
  try {
    for (const [topic, group] of topics) {
      const queues = [
        `${topic}.${group}`,
        `${topic}.${group}.dlq`,
        ...RETRY_TIERS_MS.map((t) => `${topic}.${group}.retry.${t}`),
      ];
      for (const q of queues) {
        // A failed delete closes the channel, so each gets its own.
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        await ch.deleteQueue(q).catch(() => {});
        await ch.close().catch(() => {});
      }
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.deleteExchange(topic).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await conn.close().catch(() => {});
  }
}
