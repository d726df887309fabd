/**
 * Per-partition bookkeeping of handed-out offsets: messages finish out of order, but the committed
 * offset only ever moves up to the first unfinished one, and a re-fetch of the same offsets (after a
 * seek or a rebalance the partition survived) hands out only what was released.
 */

export type OffsetState = 'in-flight' | 'done' | 'released';

export interface TrackedOffset {
  readonly offset: number;
  state: OffsetState;
}

export type Admission = 'new' | 'redeliver' | 'skip';

export class PartitionTracker {
  private entries: TrackedOffset[] = [];
  private head = 0;
  private highest = -1;
  /** Offset last committed to the broker by this member (next offset to read), -1 for none. */
  committed = -1;
  /** Set when the partition left this member: nothing about it may be committed any more. */
  revoked = false;

  /** What to do with a fetched offset. */
  admit(offset: number): Admission {
    if (offset > this.highest) return 'new';
    const entry = this.find(offset);
    return entry?.state === 'released' ? 'redeliver' : 'skip';
  }

  /** Records a newly handed-out offset; offsets arrive in increasing order. */
  add(offset: number): TrackedOffset {
    const entry: TrackedOffset = { offset, state: 'in-flight' };
    this.entries.push(entry);
    this.highest = offset;
    return entry;
  }

  find(offset: number): TrackedOffset | undefined {
    let lo = this.head;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.entries[mid]!;
      if (e.offset === offset) return e;
      if (e.offset < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  complete(entry: TrackedOffset): void {
    entry.state = 'done';
    while (this.head < this.entries.length && this.entries[this.head]!.state === 'done') this.head++;
    if (this.head > 256 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** The lowest released offset, where a seek must go so that it is fetched again. */
  lowestReleased(): number | undefined {
    for (let i = this.head; i < this.entries.length; i++) {
      if (this.entries[i]!.state === 'released') return this.entries[i]!.offset;
    }
    return undefined;
  }

  /** The offset to commit: the first unfinished one, or past the last handed out; undefined before any. */
  commitPoint(): number | undefined {
    if (this.head < this.entries.length) return this.entries[this.head]!.offset;
    return this.highest >= 0 ? this.highest + 1 : undefined;
  }

  /** Offsets handed out and not finished (in flight or released). */
  pending(): number {
    let n = 0;
    for (let i = this.head; i < this.entries.length; i++) if (this.entries[i]!.state !== 'done') n++;
    return n;
  }
}
