/**
 * Gathers concurrent publishes into few produce requests (kafkajs has no linger of its own): records
 * wait up to `lingerMs`, or until `batchMaxBytes` are gathered, or until a request in flight returns;
 * each publish resolves when all of its records are acknowledged and rejects otherwise, never later
 * than `sendTimeoutMs`.
 *
 * Every publish has the same timeout, so the core's DeadlineQueue serves all their deadlines with one
 * timer (instead of a timer per publish).
 */
import { type Deadline, DeadlineQueue, ErrorCode, PublishError } from '@omnibus/core';
import type { DriverProducer, ProducedRecord, TopicRecords } from './driver.js';
import { classifyError } from './driver.js';

export interface AccumulatorOptions {
  lingerMs: number;
  batchMaxBytes: number;
  maxInFlightSends: number;
  sendTimeoutMs: number;
}

/** One publish call: settles once, when its last record is acknowledged or on the first failure. */
class Publish {
  settled = false;
  resolve!: () => void;
  reject!: (err: PublishError) => void;
  readonly promise: Promise<void>;
  deadline: Deadline | undefined;

  constructor(
    readonly topic: string,
    public remaining: number,
  ) {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

interface Pending {
  topic: string;
  record: ProducedRecord;
  bytes: number;
  owner: Publish;
}

export function toPublishError(err: unknown, topic: string): PublishError {
  if (err instanceof PublishError) return err;
  const kind = classifyError(err);
  const reason = err instanceof Error ? err.message : String(err);
  if (kind === 'too-large') {
    return new PublishError(
      ErrorCode.TOO_LARGE,
      `kafka rejected a message to "${topic}" as too large: ${reason}`,
      { cause: err },
    );
  }
  if (kind === 'unknown-topic') {
    return new PublishError(ErrorCode.UNROUTABLE, `kafka topic "${topic}" does not exist`, { cause: err });
  }
  return new PublishError(ErrorCode.PUBLISH_FAILED, `kafka publish to "${topic}" failed: ${reason}`, {
    cause: err,
  });
}

function recordSize(record: ProducedRecord): number {
  let size = record.body.byteLength + (record.key ? Buffer.byteLength(record.key) : 0);
  for (const name in record.headers) {
    const v = record.headers[name]!;
    size += name.length + (typeof v === 'string' ? Buffer.byteLength(v) : v.byteLength);
  }
  return size;
}

export class Accumulator {
  private queue: Pending[] = [];
  private head = 0;
  private queuedBytes = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushQueued = false;
  private closed = false;
  private readonly idle = new Set<() => void>();
  private readonly deadlines: DeadlineQueue;

  constructor(
    private readonly producer: DriverProducer,
    private readonly options: AccumulatorOptions,
  ) {
    this.deadlines = new DeadlineQueue(options.sendTimeoutMs);
  }

  publish(topic: string, records: readonly ProducedRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new PublishError(ErrorCode.CLOSED, 'kafka transport is closed'));
    if (records.length === 0) return Promise.resolve();
    const owner = new Publish(topic, records.length);
    owner.deadline = this.deadlines.start(performance.now(), () =>
      this.fail(
        owner,
        new PublishError(
          ErrorCode.TIMEOUT,
          `kafka did not acknowledge a publish to "${topic}" within ${this.options.sendTimeoutMs} ms`,
        ),
      ),
    );
    for (const record of records) {
      const bytes = recordSize(record);
      this.queue.push({ topic, record, bytes, owner });
      this.queuedBytes += bytes;
    }
    this.schedule();
    return owner.promise;
  }

  private succeed(owner: Publish): void {
    if (owner.settled) return;
    this.markSettled(owner);
    owner.resolve();
  }

  private fail(owner: Publish, err: PublishError): void {
    if (owner.settled) return;
    this.markSettled(owner);
    owner.reject(err);
  }

  private markSettled(owner: Publish): void {
    owner.settled = true;
    owner.deadline?.done();
  }

  private schedule(): void {
    if (this.inFlight >= this.options.maxInFlightSends || this.pendingCount() === 0) return;
    if (this.options.lingerMs === 0 || this.queuedBytes >= this.options.batchMaxBytes) {
      // A microtask still gathers publishes made in the same tick into one request.
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => {
          this.flushQueued = false;
          this.flush();
        });
      }
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.options.lingerMs);
    }
  }

  private pendingCount(): number {
    return this.queue.length - this.head;
  }

  private take(): Pending[] {
    const taken: Pending[] = [];
    let bytes = 0;
    while (this.head < this.queue.length) {
      const next = this.queue[this.head]!;
      if (taken.length > 0 && bytes + next.bytes > this.options.batchMaxBytes) break;
      this.head++;
      this.queuedBytes -= next.bytes;
      // A publish that already failed or timed out does not send its remaining records.
      if (next.owner.settled) continue;
      taken.push(next);
      bytes += next.bytes;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return taken;
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.inFlight < this.options.maxInFlightSends && this.pendingCount() > 0) {
      const batch = this.take();
      if (batch.length === 0) continue;
      this.send(batch);
    }
  }

  private send(batch: Pending[]): void {
    const byTopic = new Map<string, TopicRecords>();
    for (const p of batch) {
      let entry = byTopic.get(p.topic);
      if (!entry) {
        entry = { topic: p.topic, records: [] };
        byTopic.set(p.topic, entry);
      }
      entry.records.push(p.record);
    }
    this.inFlight++;
    this.producer.send([...byTopic.values()]).then(
      () => {
        for (const p of batch) if (--p.owner.remaining === 0) this.succeed(p.owner);
        this.done();
      },
      (err: unknown) => {
        for (const p of batch) if (!p.owner.settled) this.fail(p.owner, toPublishError(err, p.topic));
        this.done();
      },
    );
  }

  private done(): void {
    this.inFlight--;
    // Records queued while a request was in flight have waited long enough: send them now.
    if (this.pendingCount() > 0) this.flush();
    else if (this.inFlight === 0) for (const wake of this.idle) wake();
  }

  /** Sends what is queued and waits (at most `timeoutMs`) for every request in flight. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    this.flush();
    if (this.inFlight === 0 && this.pendingCount() === 0) return;
    await new Promise<void>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.idle.delete(finish);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.idle.add(finish);
    });
    // Anything still queued after the deadline is failed rather than left hanging.
    while (this.pendingCount() > 0) {
      for (const p of this.take())
        this.fail(p.owner, new PublishError(ErrorCode.CLOSED, 'kafka transport closed before sending'));
    }
  }
}
