/**
 * Gathers concurrent publishes into few produce requests (kafkajs has no linger of its own). By default
 * (`lingerMs` 0) the policy is adaptive, like Nagle's algorithm: a publish made while no request is in
 * flight is sent at once (after a microtask, so publishes of the same tick share the request); records
 * that arrive while a request is in flight wait for it to return and then go together, or go as soon as
 * they fill a batch (`batchMaxMessages` or `batchMaxBytes`) and a request slot is free. A lone publish
 * therefore never waits for company, and a busy producer still sends big batches. With `lingerMs` > 0,
 * records instead wait up to that long (or until a batch is full) even when nothing is in flight.
 * Each publish resolves when all of its records are acknowledged and rejects on the first failure.
 *
 * The accumulator keeps no timeout of its own: the caller's deadline comes with the publish
 * (`PublishCall`). When the caller gives up, records of that publish still waiting here are withdrawn
 * and never sent ('withdrawn'); once any of its records went into a produce request, the broker may
 * write it whatever happens next ('unknown').
 */
import { ErrorCode, PublishError } from '@omnibus/core';
import type { AbandonVerdict, PublishCall } from '@omnibus/core/kit';
import type { DriverProducer, ProducedRecord, TopicRecords } from './driver.js';
import { classifyError } from './driver.js';

export interface AccumulatorOptions {
  /** 0: adaptive (see the module comment); > 0: a partial batch waits this long for company. */
  lingerMs: number;
  batchMaxBytes: number;
  /** Records per produce request at most (default: no cap beyond the bytes). */
  batchMaxMessages?: number;
  maxInFlightSends: number;
}

/**
 * One publish call: settles once, when its last record is acknowledged, on the first failure, or when
 * its caller gave up.
 */
class Publish {
  settled = false;
  /** Some record of this publish went into a produce request: it may be written. */
  sent = false;
  /** The caller gave up while none of its records had been sent: the rest is skipped, never sent. */
  withdrawn = false;
  /** Bytes and records of this publish still in the queue (subtracted from the totals when it is withdrawn). */
  queuedBytes = 0;
  queuedRecords = 0;
  resolve!: () => void;
  reject!: (err: PublishError) => void;
  readonly promise: Promise<void>;

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
  /** Records queued and not withdrawn. */
  private queuedRecords = 0;
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushQueued = false;
  private closed = false;
  private readonly idle = new Set<() => void>();

  private readonly maxRecords: number;

  constructor(
    private readonly producer: DriverProducer,
    private readonly options: AccumulatorOptions,
  ) {
    this.maxRecords = options.batchMaxMessages ?? Number.POSITIVE_INFINITY;
  }

  /**
   * Queues the records of one publish. With a `call`, its caller may give up: see the module comment.
   * Internal hand-offs (retry tiers, dead letters) pass none and wait for the broker's answer.
   */
  publish(topic: string, records: readonly ProducedRecord[], call?: PublishCall): Promise<void> {
    if (this.closed) return Promise.reject(new PublishError(ErrorCode.CLOSED, 'kafka transport is closed'));
    if (records.length === 0) return Promise.resolve();
    const owner = new Publish(topic, records.length);
    for (const record of records) {
      const bytes = recordSize(record);
      this.queue.push({ topic, record, bytes, owner });
      owner.queuedBytes += bytes;
    }
    owner.queuedRecords = records.length;
    this.queuedBytes += owner.queuedBytes;
    this.queuedRecords += records.length;
    if (call) call.onAbandon(() => this.abandon(owner));
    this.schedule();
    return owner.promise;
  }

  /** The caller of `owner` gave up: withdraw what is still queued, and say whether anything was sent. */
  private abandon(owner: Publish): AbandonVerdict {
    if (owner.settled) return owner.sent ? 'unknown' : 'withdrawn';
    // The records still queued are skipped by take() from now on, whatever the verdict: the caller
    // was told the publish failed, so sending more of it would only make more duplicates.
    this.markSettled(owner);
    this.queuedBytes -= owner.queuedBytes;
    this.queuedRecords -= owner.queuedRecords;
    owner.queuedBytes = 0;
    owner.queuedRecords = 0;
    owner.withdrawn = true;
    // Nobody waits for this promise any more (the bus rejected its caller); settle it all the same.
    owner.reject(new PublishError(ErrorCode.TIMEOUT, `publish to "${owner.topic}" abandoned by its caller`));
    return owner.sent ? 'unknown' : 'withdrawn';
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
  }

  private schedule(): void {
    if (this.inFlight >= this.options.maxInFlightSends || this.pendingCount() === 0) return;
    const adaptive = this.options.lingerMs === 0;
    // Adaptive: nothing in flight means nothing to wait for; otherwise only a full batch goes early.
    if (this.hasFullBatch() || (adaptive && this.inFlight === 0)) {
      // A microtask still gathers publishes made in the same tick into one request.
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => {
          this.flushQueued = false;
          this.flush(false);
        });
      }
      return;
    }
    if (!adaptive && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush(true);
      }, this.options.lingerMs);
    }
  }

  private hasFullBatch(): boolean {
    return this.queuedBytes >= this.options.batchMaxBytes || this.queuedRecords >= this.maxRecords;
  }

  private pendingCount(): number {
    return this.queue.length - this.head;
  }

  private take(): Pending[] {
    const taken: Pending[] = [];
    let bytes = 0;
    while (this.head < this.queue.length) {
      const next = this.queue[this.head]!;
      const { owner } = next;
      // A withdrawn publish's bytes left the total when it was withdrawn; it takes no room in a request.
      if (owner.withdrawn) {
        this.head++;
        continue;
      }
      if (taken.length > 0 && bytes + next.bytes > this.options.batchMaxBytes) break;
      if (taken.length >= this.maxRecords) break;
      this.head++;
      this.queuedBytes -= next.bytes;
      this.queuedRecords--;
      owner.queuedBytes -= next.bytes;
      owner.queuedRecords--;
      // A publish that already failed does not send its remaining records.
      if (owner.settled) continue;
      owner.sent = true;
      taken.push(next);
      bytes += next.bytes;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return taken;
  }

  /**
   * Sends queued records while a request slot is free. With a linger, everything queued goes (the linger
   * ran out, a batch filled, or a request returned). Adaptively, a partial batch goes when nothing is in
   * flight or when `partial` (a request returned, or the accumulator closes); otherwise only full batches
   * go and the rest waits for a request to return.
   */
  private flush(partial: boolean): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const adaptive = this.options.lingerMs === 0;
    let partialOk = partial || !adaptive;
    while (this.inFlight < this.options.maxInFlightSends && this.pendingCount() > 0) {
      if (!partialOk && this.inFlight > 0 && !this.hasFullBatch()) break;
      const batch = this.take();
      if (batch.length === 0) continue;
      this.send(batch);
      // A returned request frees one slot for what waited; further slots take only full batches.
      if (adaptive && !this.closed) partialOk = false;
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
    if (this.pendingCount() > 0) this.flush(true);
    if (this.inFlight === 0 && this.pendingCount() === 0) for (const wake of [...this.idle]) wake();
  }

  /** Sends what is queued and waits (at most `timeoutMs`) for every request in flight. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    this.flush(true);
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
