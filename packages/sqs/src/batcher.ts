/**
 * Coalesces single operations (send, delete) into SQS batch calls: at most 10 entries and a byte
 * budget per call, and a bounded number of calls in flight. By default (`lingerMs` 0) batching adapts
 * to the load, like Nagle's algorithm: an item added while no call is in flight goes at once (after a
 * microtask, so items of the same tick share the call); items added while calls are in flight wait for
 * one to return, or go as soon as they fill a batch and a slot is free. With `lingerMs` > 0 a partial
 * batch instead waits that long for company. An item whose caller gave up is skipped when its batch is
 * formed (`live`), so it is never sent; withdrawing is O(1) however long the queue.
 */

export interface BatcherOptions<T> {
  /** Entries per call (SQS: 10). */
  maxEntries: number;
  /** Byte budget per call (SQS: the batch payload limit); Infinity where size does not matter. */
  maxBytes: number;
  /** 0: adaptive (see the module comment); > 0: how long a partial batch waits for company. */
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
  // Once the linger has run out (or flush() asked), partial batches may go as soon as a call slot is free.
  private lingerExpired = false;
  private drainQueued = false;
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
      this.drain(true);
    }, delayMs);
  }

  /** Sends whatever is pending now and resolves once nothing is pending or in flight. */
  flush(): Promise<void> {
    this.lingerExpired = true;
    this.drain(true);
    return this.idle();
  }

  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private get adaptive(): boolean {
    return this.opts.lingerMs <= 0;
  }

  private schedule(): void {
    if (this.lingerExpired || this.hasFullBatch()) {
      this.drain(false);
      return;
    }
    if (this.adaptive) {
      // Nothing in flight: nothing to wait for, bar the rest of this tick. Else the item waits for a return.
      if (this.inFlight === 0 && !this.drainQueued) {
        this.drainQueued = true;
        queueMicrotask(() => {
          this.drainQueued = false;
          this.drain(false);
        });
      }
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.lingerExpired = true;
        this.drain(true);
      }, this.opts.lingerMs);
    }
  }

  private hasFullBatch(): boolean {
    return this.pending.length >= this.opts.maxEntries || this.pendingBytes >= this.opts.maxBytes;
  }

  /**
   * Starts calls while slots are free. Full batches always go; a partial one goes once the linger ran
   * out, or adaptively when nothing is in flight or when `returned` (a call just freed its slot: what
   * waited for it goes now, further slots take full batches only).
   */
  private drain(returned: boolean): void {
    let partialOk = returned && this.adaptive;
    while (this.pending.length > 0 && this.inFlight < this.opts.maxInFlight) {
      const partial = this.lingerExpired || partialOk || (this.adaptive && this.inFlight === 0);
      if (!partial && !this.hasFullBatch()) break;
      const batch = this.takeBatch();
      if (batch.length === 0) continue;
      partialOk = false;
      this.inFlight++;
      void this.opts.run(batch).finally(() => {
        this.inFlight--;
        this.drain(true);
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
