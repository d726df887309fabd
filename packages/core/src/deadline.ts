/**
 * Deadlines for many operations that share one timeout (publishes of one bus, handler runs of one
 * consumer), served by a single timer instead of one timer per operation.
 *
 * With a fixed timeout, the order operations start in is the order their deadlines fall in, so the
 * pending ones form a FIFO queue: the timer only ever waits for the head. Operations usually finish
 * roughly in the order they started, so finished entries are dropped from the head as soon as they
 * finish; one that finishes out of order is marked and dropped when it reaches the head. The timer is
 * cleared whenever nothing is pending, so an idle process is never kept alive by it.
 */
export interface Deadline {
  /** Marks the operation finished: its expiry callback will not run. Safe to call more than once. */
  done(): void;
}

class Entry implements Deadline {
  finished = false;
  constructor(
    readonly queue: DeadlineQueue,
    readonly at: number,
    readonly onExpire: () => void,
  ) {}

  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.queue.dropFinished();
  }
}

/** setTimeout fires at once (with a warning) past 2^31-1 ms; longer waits re-arm when that runs out. */
const MAX_TIMER_MS = 2_147_483_647;

export class DeadlineQueue {
  readonly timeoutMs: number;
  readonly #entries: Entry[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
  }

  /** Operations started and not yet finished or expired. */
  get pending(): number {
    let n = 0;
    for (let i = this.#head; i < this.#entries.length; i++) if (!this.#entries[i]!.finished) n++;
    return n;
  }

  /**
   * Starts an operation at `now` (performance.now(), passed in when the caller has just read it):
   * `onExpire` runs once `timeoutMs` has passed, unless `done()` comes first.
   */
  start(now: number, onExpire: () => void): Deadline {
    const entry = new Entry(this, now + this.timeoutMs, onExpire);
    this.#entries.push(entry);
    if (this.#timer === undefined) this.#arm(entry.at);
    return entry;
  }

  /** @internal an entry finished: drop the finished ones at the head. */
  dropFinished(): void {
    const entries = this.#entries;
    while (this.#head < entries.length && entries[this.#head]!.finished) this.#head++;
    if (this.#head === entries.length) {
      entries.length = 0;
      this.#head = 0;
      this.#disarm();
    } else if (this.#head > 1024 && this.#head * 2 > entries.length) {
      // Compact now and then rather than shift() per entry.
      entries.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #arm(at: number): void {
    // setTimeout may fire up to a millisecond early; #fire re-arms for whatever is left.
    const ms = Math.min(Math.max(0, Math.ceil(at - performance.now())), MAX_TIMER_MS);
    this.#timer = setTimeout(this.#fire, ms);
  }

  #disarm(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    const entries = this.#entries;
    const expired: Entry[] = [];
    while (this.#head < entries.length) {
      const e = entries[this.#head]!;
      if (!e.finished) {
        if (e.at > now) break;
        e.finished = true;
        expired.push(e);
      }
      this.#head++;
    }
    if (this.#head === entries.length) {
      entries.length = 0;
      this.#head = 0;
    } else {
      entries.splice(0, this.#head);
      this.#head = 0;
      this.#arm(entries[0]!.at);
    }
    for (const e of expired) e.onExpire();
  };
}
