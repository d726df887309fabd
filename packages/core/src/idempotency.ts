/**
 * Idempotent consumers: an atomic claim on (group, message id) so a message's handler runs once even
 * when the broker delivers it twice, concurrently or later.
 */
import { ConfigError } from './errors.js';

export type ClaimResult = 'new' | 'done' | 'held';

export interface IdempotencyStore {
  /** Atomically: unknown or lease expired → take it ('new'); completed → 'done'; leased by someone → 'held'. */
  claim(key: string, leaseMs: number): Promise<ClaimResult>;
  /** Mark done; duplicates within `ttlMs` are recognised. */
  complete(key: string, ttlMs: number): Promise<void>;
  /** Drop the claim so a redelivery can run the handler again. */
  release(key: string): Promise<void>;
}

export interface MemoryStoreOptions {
  /** How long a completed key is remembered (default 24 h). */
  ttlMs?: number;
  /** Upper bound on remembered keys; the oldest are forgotten first (default 100 000). */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  state: 'held' | 'done';
  expiresAt: number;
}

/** A bounded in-process store: serves one process. Replicas need a shared store (Redis, SQL). */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly #now: () => number;
  // Map keeps insertion order, which doubles as the eviction order (oldest first).
  readonly #entries = new Map<string, Entry>();
  // No entry expires before this (a lower bound, exact after a full scan). While `now` is below it,
  // eviction skips the search for expired entries, which would walk the whole map on every insert
  // once the store is full.
  #earliestExpiry = Number.POSITIVE_INFINITY;
  // Walks the map in insertion order from one eviction to the next: every key before it has been
  // evicted, so its next key is the oldest. (A fresh `keys()` would step over all the slots those
  // deletions left, every time.)
  #oldest: Iterator<string> | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    this.ttlMs = options.ttlMs ?? 86_400_000;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.#now = options.now ?? Date.now;
    if (!Number.isFinite(this.ttlMs) || this.ttlMs <= 0)
      throw new ConfigError('ttlMs', 'must be a positive number');
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new ConfigError('maxEntries', 'must be a positive integer');
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  async claim(key: string, leaseMs: number): Promise<ClaimResult> {
    return this.claimSync(key, leaseMs);
  }

  /** Synchronous form, for callers on the hot path that want to avoid a promise per message. */
  claimSync(key: string, leaseMs: number): ClaimResult {
    const now = this.#now();
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt > now) return entry.state;
    if (entry) this.#entries.delete(key);
    this.#set(key, { state: 'held', expiresAt: now + leaseMs });
    return 'new';
  }

  async complete(key: string, ttlMs: number = this.ttlMs): Promise<void> {
    this.#entries.delete(key);
    this.#set(key, { state: 'done', expiresAt: this.#now() + ttlMs });
  }

  async release(key: string): Promise<void> {
    const entry = this.#entries.get(key);
    if (entry?.state === 'held') this.#entries.delete(key);
  }

  #set(key: string, entry: Entry): void {
    this.#entries.set(key, entry);
    if (entry.expiresAt < this.#earliestExpiry) this.#earliestExpiry = entry.expiresAt;
    if (this.#entries.size > this.maxEntries) this.#evict();
  }

  #evict(): void {
    const now = this.#now();
    // Expired entries go first; if none, the oldest insertions are dropped until within bounds.
    if (now >= this.#earliestExpiry) {
      let earliest = Number.POSITIVE_INFINITY;
      for (const [k, e] of this.#entries) {
        if (this.#entries.size <= this.maxEntries) return;
        if (e.expiresAt <= now) this.#entries.delete(k);
        else if (e.expiresAt < earliest) earliest = e.expiresAt;
      }
      // The whole map was scanned: what is left expires no earlier than this.
      this.#earliestExpiry = earliest;
    }
    while (this.#entries.size > this.maxEntries) {
      let next = this.#oldest?.next();
      if (!next || next.done) {
        this.#oldest = this.#entries.keys();
        next = this.#oldest.next();
        if (next.done) return;
      }
      this.#entries.delete(next.value);
    }
  }
}

export function memoryStore(options: MemoryStoreOptions = {}): MemoryIdempotencyStore {
  return new MemoryIdempotencyStore(options);
}
