/**
 * Coalesces single operations (send, delete) into SQS batch calls: at most 10 entries and a byte
 * budget per call, a short linger so concurrent callers share a call, and a bounded number of calls
 * in flight. An item whose caller gave up is skipped when its batch is formed (`live`), so it is
 * never sent; withdrawing is O(1) however long the queue.
 */

export interface BatcherOptions<T> {
  /** Entries per call (SQS: 10). */
  maxEntries: number;
  /** Byte budget per call (SQS: the batch payload limit); Infinity where size does not matter. */
  maxBytes: number;
  /** How long a partial batch waits for company before it is sent. */
  lingerMs: number;
  /** Calls in flight at once. */
  maxInFlight: number;
  sizeOf(item: T): number;
  /** False for an item withdrawn while queued: it is dropped instead of sent. Absent: all are live. */
  live?(item: T): boolean;
  /** Sends one batch; settles every item itself (resolve, reject or `requeue`) and never rejects. */
  run(items: T[]): Promise<void>;
}

export class MicroBatcher<T> {
  private pending: T[] = [];
  private pendingBytes = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  // Once the linger has run out, partial batches may go as soon as a call slot is free.
  private lingerExpired = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: BatcherOptions<T>) {}

  get size(): number {
    return this.pending.length + this.inFlight;
  }

  add(item: T): void {
    this.pending.push(item);
    this.pendingBytes += this.opts.sizeOf(item);
    this.schedule();
  }

  /** Puts items back at the head of the queue (a retryable partial failure), after `delayMs`. */
  requeue(items: T[], delayMs: number): void {
    if (items.length === 0) return;
    // Counted as in flight meanwhile so idle() does not resolve with retries outstanding.
    this.inFlight++;
    setTimeout(() => {
      this.inFlight--;
      const live = this.opts.live;
      const still = live ? items.filter((item) => live(item)) : items;
      this.pending.unshift(...still);
      for (const item of still) this.pendingBytes += this.opts.sizeOf(item);
      this.lingerExpired = true;
      this.drain();
    }, delayMs);
  }

  /** Sends whatever is pending now and resolves once nothing is pending or in flight. */
  flush(): Promise<void> {
    this.lingerExpired = true;
    this.drain();
    return this.idle();
  }

  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.opts.lingerMs <= 0) this.lingerExpired = true;
    if (this.lingerExpired || this.hasFullBatch()) {
      this.drain();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.lingerExpired = true;
        this.drain();
      }, this.opts.lingerMs);
    }
  }

  private hasFullBatch(): boolean {
    return this.pending.length >= this.opts.maxEntries || this.pendingBytes >= this.opts.maxBytes;
  }

  private drain(): void {
    while (this.pending.length > 0 && this.inFlight < this.opts.maxInFlight) {
      if (!this.lingerExpired && !this.hasFullBatch()) break;
      const batch = this.takeBatch();
      if (batch.length === 0) continue;
      this.inFlight++;
      void this.opts.run(batch).finally(() => {
        this.inFlight--;
        this.drain();
        this.notifyIdle();
      });
    }
    if (this.pending.length === 0) {
      this.lingerExpired = false;
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      // Everything left may have been withdrawn rather than sent: flush() waiters must still hear of it.
      this.notifyIdle();
    }
  }

  /** The next batch from the head of the queue; withdrawn items met on the way are dropped. */
  private takeBatch(): T[] {
    const live = this.opts.live;
    if (!live) return this.takeLive();
    let dropped = 0;
    let droppedBytes = 0;
    while (dropped < this.pending.length && !live(this.pending[dropped]!)) {
      droppedBytes += this.opts.sizeOf(this.pending[dropped]!);
      dropped++;
    }
    if (dropped > 0) {
      this.pending.splice(0, dropped);
      this.pendingBytes -= droppedBytes;
    }
    const batch = this.takeLive();
    // Items withdrawn further back are only dropped when they reach the head; one in this batch is cut out here.
    let w = 0;
    for (const item of batch) {
      if (live(item)) batch[w++] = item;
    }
    batch.length = w;
    return batch;
  }

  private takeLive(): T[] {
    let count = 0;
    let bytes = 0;
    // Always at least one entry: a single entry is never larger than the budget (checked on entry).
    while (count < this.pending.length && count < this.opts.maxEntries) {
      const size = this.opts.sizeOf(this.pending[count]!);
      if (count > 0 && bytes + size > this.opts.maxBytes) break;
      bytes += size;
      count++;
    }
    this.pendingBytes -= bytes;
    return this.pending.splice(0, count);
  }

  private notifyIdle(): void {
    if (this.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
