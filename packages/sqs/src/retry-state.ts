/**
 * Retry state of messages that went back to their queue unchanged (ChangeMessageVisibility), kept in
 * this process because SQS cannot rewrite a message's attributes in place. It is a best-effort cache,
 * not durable: after a restart, or when another process receives the message, the attempt count
 * falls back to the broker's receive count (see subscription.ts).
 */

export interface RetryState {
  /** The control headers the core gave with its last retry (attempts, first/last failure, last error). */
  controlHeaders: Record<string, string>;
  /** A chained delay not yet over: the message goes round again without being delivered. */
  dueAt?: number | undefined;
  expiresAt: number;
}

const MAX_ENTRIES = 10_000;
// SQS keeps a message invisible for at most 12 hours per receive; state older than that plus slack is stale.
const TTL_MS = 13 * 3_600_000;

export class RetryStateStore {
  private readonly entries = new Map<string, RetryState>();

  get(queueUrl: string, messageId: string): RetryState | undefined {
    const key = `${queueUrl}|${messageId}`;
    const state = this.entries.get(key);
    if (state && state.expiresAt < Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return state;
  }

  set(queueUrl: string, messageId: string, controlHeaders: Record<string, string>, dueAt?: number): void {
    const key = `${queueUrl}|${messageId}`;
    this.entries.delete(key);
    this.entries.set(key, { controlHeaders, dueAt, expiresAt: Math.max(dueAt ?? 0, Date.now()) + TTL_MS });
    // Map iteration is insertion order, so the first key is the least recently written.
    if (this.entries.size > MAX_ENTRIES) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  delete(queueUrl: string, messageId: string): void {
    this.entries.delete(`${queueUrl}|${messageId}`);
  }

  get size(): number {
    return this.entries.size;
  }
}
