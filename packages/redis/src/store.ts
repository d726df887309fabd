/**
 * An IdempotencyStore on Redis shared by every replica of a service: claims are atomic on the server
 * (Lua scripts, see scripts.ts) and fenced by a token per successful claim.
 *
 * Fencing, and why the token lives in this object: the core's contract passes only the key to
 * `complete` and `release`, so the store remembers the token it was granted for each key it holds
 * (a bounded map, emptied as claims end). A replica whose lease ran out and was re-claimed elsewhere
 * no longer matches the stored token: its `complete` rejects with LeaseLostError and its `release`
 * does nothing, so it can neither mark the new holder's work done nor drop the new holder's lease.
 * Within one store object the newest claim on a key owns the token: fencing is between replicas
 * (store objects), which is where leases run out unseen.
 */
import { randomBytes } from 'node:crypto';
import {
  type ClaimResult,
  ConnectionError,
  type IdempotencyStore,
  LeaseLostError,
  redactText,
} from '@omnibus/core';
import { Redis } from 'ioredis';
import { type RedisStoreOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { CLAIM, COMPLETE, RELEASE, type RedisClient, run } from './scripts.js';

export class RedisIdempotencyStore implements IdempotencyStore {
  readonly keyPrefix: string;
  readonly ttlMs: number;
  readonly maxTrackedClaims: number;
  readonly client: RedisClient;
  /** Whether this store made the connection (from a URL), and so closes it. */
  readonly ownsClient: boolean;
  // key → token of the claim this store holds on it. Map order is insertion order: the oldest go first
  // when the bound is reached.
  readonly #tokens = new Map<string, string>();
  // Tokens are this store's random id plus a counter: unique across replicas without a round trip.
  readonly #tokenBase = randomBytes(9).toString('base64url');
  #tokenSeq = 0;
  #closed = false;

  constructor(options: RedisStoreOptions) {
    const o: ResolvedOptions = resolveOptions(options);
    this.keyPrefix = o.keyPrefix;
    this.ttlMs = o.ttlMs;
    this.maxTrackedClaims = o.maxTrackedClaims;
    if (o.client) {
      this.client = o.client;
      this.ownsClient = false;
    } else {
      this.client = new Redis(o.url!, {
        // Fail a call after one reconnect attempt instead of queueing it for 20: while Redis is down,
        // callers get an error within about a second, and the consumer retries the message later.
        maxRetriesPerRequest: 1,
        commandTimeout: o.commandTimeoutMs,
        connectTimeout: o.connectTimeoutMs,
      });
      this.ownsClient = true;
      // ioredis prints unhandled 'error' events; the errors reach callers through their calls instead.
      this.client.on('error', () => {});
    }
  }

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    const token = `${this.#tokenBase}.${(this.#tokenSeq++).toString(36)}`;
    const result = (await this.#run('claim', key, CLAIM, [token, String(Math.ceil(leaseMs))])) as ClaimResult;
    if (result === 'new') this.#remember(key, token);
    return result;
  }

  async complete(key: string, ttlMs: number = this.ttlMs): Promise<void> {
    const token = this.#tokens.get(key) ?? '';
    const reply = await this.#run('complete', key, COMPLETE, [token, String(Math.ceil(ttlMs))]);
    // Applied or refused, the claim is over for this store; after a failed call it is kept for the retry.
    if (this.#tokens.get(key) === token) this.#tokens.delete(key);
    if (reply !== 'ok') {
      const heldBy = reply === 'd' ? 'another completion' : 'another holder';
      throw new LeaseLostError(key, { details: { key, heldBy } });
    }
  }

  async release(key: string): Promise<void> {
    const token = this.#tokens.get(key);
    // Nothing held here: nothing to drop (never someone else's lease).
    if (token === undefined) return;
    await this.#run('release', key, RELEASE, [token]);
    if (this.#tokens.get(key) === token) this.#tokens.delete(key);
  }

  /** Resolves when Redis answers; rejects with ConnectionError otherwise (for health checks and start-up). */
  async ping(): Promise<void> {
    try {
      await this.client.ping();
    } catch (err) {
      throw this.#connectionError('ping', undefined, err);
    }
  }

  /** Claims whose token this store currently remembers. */
  get trackedClaims(): number {
    return this.#tokens.size;
  }

  /** Closes the connection if this store opened it; a client given to the store is left open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#tokens.clear();
    if (!this.ownsClient || this.client.status === 'end') return;
    if (this.client.status === 'ready') {
      // Resolved when the socket is really gone, not merely when QUIT was answered.
      const ended = new Promise<void>((resolve) => this.client.once('end', () => resolve()));
      await this.client.quit().catch(() => this.client.disconnect());
      await ended;
    } else {
      // Connecting or waiting to reconnect: there is no session to end; this stops the reconnecting
      // (ioredis emits no 'end' from a socket that is already gone, so there is nothing to wait for).
      this.client.disconnect();
    }
  }

  #remember(key: string, token: string): void {
    this.#tokens.delete(key);
    this.#tokens.set(key, token);
    if (this.#tokens.size > this.maxTrackedClaims) {
      // A forgotten token only weakens that claim: its complete succeeds only if the key is free.
      const oldest = this.#tokens.keys().next();
      if (!oldest.done) this.#tokens.delete(oldest.value);
    }
  }

  async #run(op: string, key: string, script: typeof CLAIM, args: string[]): Promise<unknown> {
    if (this.#closed) throw new ConnectionError(`redis idempotency store: ${op} of ${key} after close()`);
    try {
      return await run(this.client, script, this.keyPrefix + key, args);
    } catch (err) {
      throw this.#connectionError(op, key, err);
    }
  }

  #connectionError(op: string, key: string | undefined, err: unknown): ConnectionError {
    const why = redactText(err instanceof Error ? err.message : String(err));
    const what = key === undefined ? op : `${op} of ${key}`;
    return new ConnectionError(`redis idempotency store: ${what} failed: ${why}`, { cause: err });
  }
}

/** A Redis idempotency store; options are validated now (ConfigError naming the field). */
export function redisStore(options: RedisStoreOptions): RedisIdempotencyStore {
  return new RedisIdempotencyStore(options);
}
