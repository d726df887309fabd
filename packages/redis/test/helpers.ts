/**
 * Test plumbing for the Redis store: the shared Redis's URL (checked before any test, so a closed port
 * fails the suite), unique names, waiting with a deadline, replica processes and private redis-servers.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redactText } from '@omnibus/core';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export function unique(label: string): string {
  return `redis-test-${label}-${randomBytes(4).toString('hex')}`;
}

/**
 * Rejects unless the Redis at REDIS_URL answers PING: every test file awaits it in beforeAll, so a
 * suite pointed at a closed port fails loudly instead of passing on nothing.
 */
export async function requireRedis(url = REDIS_URL): Promise<void> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    throw new Error(
      `Redis is not reachable at ${redactText(url)} (set REDIS_URL, or run scripts/brokers/redis.sh up): ${String(err)}`,
    );
  } finally {
    probe.disconnect();
  }
}

/** A raw client for the test's own reads and cleanup. */
export function rawClient(url = REDIS_URL): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  c.on('error', () => {});
  return c;
}

/** Deletes every key under a prefix (test cleanup; SCAN, never KEYS, on a shared server). */
export async function deletePrefix(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await client.del(...keys);
  } while (cursor !== '0');
}

export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string | (() => string),
  timeoutMs = 15_000,
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
      const label = typeof what === 'function' ? what() : what;
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${label}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A redis-server of the test's own, on a free port, that the test may kill and start again. */
export class PrivateRedis {
  readonly port: number;
  #child: ChildProcess | undefined;

  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort());
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    this.#child = child;
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
        await requireRedis(this.url);
        return true;
      },
      `private redis-server on port ${this.port}`,
      15_000,
    );
  }

  /** SIGKILL, then wait until the process is gone and the port refuses connections. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.#child = undefined;
  }
}

const REPLICA = join(fileURLToPath(import.meta.url), '..', 'replica.ts');
const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');

/** Starts test/replica.ts in a process of its own (tsx, TypeScript sources), with IPC for 'ready'. */
export function startReplica(env: Record<string, string>): ChildProcess & { ready: Promise<void> } {
  const child = fork(REPLICA, [], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--conditions=omnibus-source'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  }) as ChildProcess & { ready: Promise<void> };
  child.ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica ${env.REPLICA} not ready within 90 s`)), 90_000);
    child.on('message', (m: unknown) => {
      if (m === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`replica ${env.REPLICA} exited before ready (${signal ?? code})`));
    });
  });
  // The test owns these rejections: a replica that exits after 'ready' must not crash the runner.
  child.ready.catch(() => {});
  return child;
}

/** Stops a replica: asks it to close (drains), then SIGKILLs it if it has not exited in time. */
export async function stopReplica(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send('stop');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}
