/**
 * One subscription: a group consumer on the topic, a second group consumer on the group's retry-tier
 * topics (or a single uncommitted consumer for replay), sharing one in-flight budget. Messages are
 * handed to the core as they are fetched, many per partition; offsets are committed only up to the
 * first unfinished message of each partition.
 *
 * Design choices, in short:
 * - Backpressure: a batch hands out messages while fewer than `maxInFlight` are unsettled and then
 *   waits inside the batch callback, heartbeating, until one settles. Holding the fetch loop this way
 *   stops fetching exactly like `pause()` would, without discarding and re-fetching the batch.
 *   `pause()` from the core (circuit breaker, shutdown) pauses the client's partitions and leaves the
 *   batch; its unread rest is fetched again on resume.
 * - `release()` marks the offset released and seeks the partition back to the lowest released offset;
 *   the re-fetch hands out only released offsets (the others are in flight or done), and the commit
 *   never passes a released offset, so a crash before the re-fetch still redelivers it.
 * - Rebalance: after every join, partitions this member lost are forgotten (their late settles are not
 *   committed; the new owner redelivers them: at least once). Partitions it kept keep their state, so
 *   the client's re-fetch from the committed offset does not hand out work twice. A new member id
 *   (the member was dropped and rejoined) forgets everything.
 * - Delayed retry: `retryLater` writes the message to the tier topic `<topic>.<group>.retry.<tier>`
 *   chosen by the kit's `planDelay`, with its due time (`x-omnibus-due-at`), confirmed, then acks the
 *   original. The retry consumer pauses each tier partition until its head is due (its due time, or
 *   record time + tier if that is earlier) and then hands the message straight to this subscription:
 *   the retry reaches only this group, and the main topic's partitions are never held up. A message
 *   that comes out of a tier before its due time (delays longer than the longest tier) goes to the
 *   tier the kit's `nextHop` chooses, without reaching the core.
 *   Unlike TTL-queue brokers, a tier partition can be resumed at any moment, so the due time is always
 *   written and a delay is kept exactly rather than rounded up to its tier.
 */
import {
  type Delivery,
  type Logger,
  type ReplayFrom,
  type SubscribeSpec,
  type TransportSubscription,
  UnsupportedError,
} from '@omnibus/core';
import {
  BaseDelivery,
  deadLetterHeaders,
  handOver,
  nextHop,
  planDelay,
  readDueAt,
  retryHeaders,
} from '@omnibus/core/kit';
import type {
  BatchControl,
  ConsumedBatch,
  ConsumedRecord,
  DriverConsumer,
  KafkaDriver,
  ProducedRecord,
} from './driver.js';
import { deadLetterTopic, groupId, retryGroupId, retryTopic } from './naming.js';
import type { ResolvedKafkaOptions } from './options.js';
import { PartitionTracker, type TrackedOffset } from './tracker.js';

export interface SubscriptionDeps {
  driver: KafkaDriver;
  options: ResolvedKafkaOptions;
  logger: Logger;
  /** Writes one record and resolves once the broker acknowledged it. */
  produce(topic: string, record: ProducedRecord): Promise<void>;
}

type LoopKind = 'main' | 'retry' | 'replay';

interface PartitionState {
  topic: string;
  partition: number;
  tracker: PartitionTracker;
  /** A release asked for a seek back, applied in a microtask (several releases share one seek). */
  seekPending: boolean;
  /** Log fields of this partition, made once (not per message). */
  logFields: { topic: string; partition: number };
}

const MAX_TIMER_MS = 2_147_483_647;
// Bounds on shutdown work against an unreachable broker, so close() never hangs.
const CLOSE_COMMIT_TIMEOUT_MS = 5_000;
const CLOSE_STOP_TIMEOUT_MS = 15_000;

function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

type RawHeaders = Record<string, Uint8Array | string>;

/**
 * The kit's header rules, applied to a fetched record's headers as bytes (so that headers this
 * transport does not understand are copied exactly). The kit's functions only spread and set keys, so
 * they work on byte values too; their signatures say strings.
 */
const retryRecordHeaders = retryHeaders as unknown as (
  original: Readonly<RawHeaders>,
  control: Readonly<Record<string, string>>,
  dueAt: number | undefined,
) => RawHeaders;
const deadLetterRecordHeaders = deadLetterHeaders as unknown as (
  original: Readonly<RawHeaders>,
  control: Readonly<Record<string, string>>,
) => RawHeaders;

export class KafkaSubscription implements TransportSubscription {
  unsettled = 0;
  paused = false;
  closed = false;
  private readonly waiters = new Set<() => void>();
  private readonly loops: ConsumerLoop[] = [];
  readonly group: string;

  constructor(
    readonly deps: SubscriptionDeps,
    readonly spec: SubscribeSpec,
    readonly onDelivery: (delivery: Delivery) => void,
  ) {
    this.group = spec.group ?? '';
  }

  async start(replayStart?: Map<number, string>): Promise<void> {
    const { spec, deps } = this;
    const o = deps.options;
    if (spec.replay !== undefined || spec.group === undefined) {
      const from: ReplayFrom = spec.replay ?? 'latest';
      this.loops.push(
        new ConsumerLoop(this, 'replay', {
          groupId: `${spec.topic}.replay.${crypto.randomUUID()}`,
          topics: [spec.topic],
          fromBeginning: from !== 'latest',
          maxWaitTimeMs: o.maxWaitTimeMs,
          startOffsets: replayStart,
        }),
      );
    } else {
      this.loops.push(
        new ConsumerLoop(this, 'main', {
          groupId: groupId(spec.topic, spec.group),
          topics: [spec.topic],
          fromBeginning: spec.startFrom !== 'latest',
          maxWaitTimeMs: o.maxWaitTimeMs,
        }),
      );
      const group = spec.group;
      this.loops.push(
        new ConsumerLoop(this, 'retry', {
          groupId: retryGroupId(spec.topic, group),
          topics: o.delayTiersMs.map((t) => retryTopic(spec.topic, group, t)),
          fromBeginning: true,
          maxWaitTimeMs: o.retryMaxWaitTimeMs,
          tiers: new Map(o.delayTiersMs.map((t) => [retryTopic(spec.topic, group, t), t])),
        }),
      );
    }
    try {
      for (const loop of this.loops) await loop.start();
    } catch (err) {
      await Promise.allSettled(this.loops.map((l) => l.close()));
      throw err;
    }
  }

  /**
   * True with a slot taken (counted in `unsettled`) when one more message may be handed out, false
   * when this batch must stop. The slot is taken synchronously with the check, so batches of several
   * partitions woken together cannot overshoot maxInFlight. Answers at once, without a promise, unless
   * it has to wait for a slot: the common case costs nothing per message.
   */
  acquire(control: BatchControl): boolean | Promise<boolean> {
    return this.trySlot(control) ?? this.waitForSlot(control);
  }

  /** True: slot taken; false: stop; undefined: no slot free yet. */
  private trySlot(control: BatchControl): boolean | undefined {
    if (this.closed || this.paused || !control.isActive()) return false;
    if (this.unsettled >= this.spec.maxInFlight) return undefined;
    this.unsettled++;
    return true;
  }

  /**
   * Once the budget is full, a waiting batch resumes only when a quarter of it is free again, and then
   * hands out that many messages synchronously: one wait (a promise, a timer, a heartbeat) per
   * quarter-budget of messages instead of one per message while the consumer is saturated.
   */
  private get resumeAt(): number {
    const max = this.spec.maxInFlight;
    return max - Math.max(1, Math.floor(max / 4));
  }

  private async waitForSlot(control: BatchControl): Promise<boolean> {
    for (;;) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, this.deps.options.heartbeatIntervalMs);
        this.waiters.add(done);
      });
      // Rejects while the group rebalances; the client then rejoins, which is what must happen.
      await control.heartbeat();
      const slot = this.trySlot(control);
      if (slot !== undefined) return slot;
    }
  }

  /** A message settled: waiting batches go on once enough of the budget is free (see resumeAt). */
  settled(): void {
    this.unsettled--;
    if (this.waiters.size > 0 && this.unsettled <= this.resumeAt) this.wake();
  }

  wake(): void {
    if (this.waiters.size === 0) return;
    for (const w of [...this.waiters]) w();
  }

  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    for (const loop of this.loops) loop.pauseAll();
    this.wake();
  }

  resume(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    for (const loop of this.loops) loop.resumeAll();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    await Promise.allSettled(this.loops.map((l) => l.close()));
  }

  /** The tier topic of this group for a tier. */
  retryTopicOf(tierMs: number): string {
    return retryTopic(this.spec.topic, this.group, tierMs);
  }
}

interface LoopConfig {
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  maxWaitTimeMs: number;
  /** Retry loops: tier (ms) of each tier topic. */
  tiers?: Map<string, number>;
  /** Replay loops: where each partition starts, when not simply earliest/latest. */
  startOffsets?: Map<number, string> | undefined;
}

class ConsumerLoop {
  private readonly partitions = new Map<string, PartitionState>();
  private memberId: string | undefined;
  private consumer: DriverConsumer | undefined;
  private commitTimer: NodeJS.Timeout | undefined;
  private committing: Promise<void> | undefined;
  private readonly dueTimers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    readonly sub: KafkaSubscription,
    readonly kind: LoopKind,
    private readonly config: LoopConfig,
  ) {}

  get logger(): Logger {
    return this.sub.deps.logger;
  }

  async start(): Promise<void> {
    const o = this.sub.deps.options;
    this.consumer = this.sub.deps.driver.consumer(
      {
        groupId: this.config.groupId,
        topics: this.config.topics,
        fromBeginning: this.config.fromBeginning,
        sessionTimeoutMs: o.sessionTimeoutMs,
        rebalanceTimeoutMs: o.rebalanceTimeoutMs,
        heartbeatIntervalMs: o.heartbeatIntervalMs,
        maxWaitTimeMs: this.config.maxWaitTimeMs,
        maxBytesPerPartition: o.maxBytesPerPartition,
        partitionsConsumedConcurrently: o.partitionsConsumedConcurrently,
        restartDelayMs: o.consumerRestartDelayMs,
      },
      {
        onAssignment: (memberId, assignment) => this.onAssignment(memberId, assignment),
        onBatch: (batch, control) => this.onBatch(batch, control),
        onCrash: (error, restarting) =>
          this.logger.warn(
            { groupId: this.config.groupId, err: error.message, restarting },
            'kafka consumer crashed',
          ),
      },
    );
    if (this.kind !== 'replay') {
      this.commitTimer = setInterval(() => void this.commit(), o.commitIntervalMs);
      this.commitTimer.unref?.();
    }
    await this.consumer.start();
  }

  private onAssignment(memberId: string, assignment: ReadonlyMap<string, readonly number[]>): void {
    const assigned = new Set<string>();
    for (const [topic, partitions] of assignment) for (const p of partitions) assigned.add(tpKey(topic, p));
    // A replay consumer is alone in its private group: its history is never taken over by anyone.
    const newMember = this.kind !== 'replay' && memberId !== this.memberId;
    for (const [key, state] of this.partitions) {
      if (newMember || !assigned.has(key)) {
        state.tracker.revoked = true;
        this.partitions.delete(key);
      }
    }
    this.memberId = memberId;
    // Due-time timers stay: a tier partition paused for its head must be resumed even if it moved
    // away and back meanwhile (resuming a partition that is not assigned does nothing).
    if (this.kind === 'replay') {
      // Nothing is committed, so after any (re)join each partition must be put back where it was.
      for (const [topic, partitions] of assignment) {
        for (const p of partitions) {
          const state = this.partitions.get(tpKey(topic, p));
          const point = state?.tracker.commitPoint();
          const start = point !== undefined ? String(point) : this.config.startOffsets?.get(p);
          if (start !== undefined) this.consumer?.seek(topic, p, start);
        }
      }
    }
    if (this.sub.paused) this.pauseAll();
  }

  private state(topic: string, partition: number): PartitionState {
    const key = tpKey(topic, partition);
    let state = this.partitions.get(key);
    if (!state) {
      state = {
        topic,
        partition,
        tracker: new PartitionTracker(),
        seekPending: false,
        logFields: { topic, partition },
      };
      this.partitions.set(key, state);
    }
    return state;
  }

  private async onBatch(batch: ConsumedBatch, control: BatchControl): Promise<void> {
    if (this.closed) return;
    const state = this.state(batch.topic, batch.partition);
    const { tracker } = state;
    // Every record looked at moves the fetch position past it, but the client reads that position only
    // after this callback returns: resolving just the last one before each await and at the end
    // leaves the client exactly where per-record resolves would (each costs a 64-bit parse there).
    let unresolved: string | undefined;
    try {
      for (const record of batch.records) {
        const offset = Number(record.offset);
        const admission = tracker.admit(offset);
        if (admission === 'skip') {
          unresolved = record.offset;
          continue;
        }
        let dueAt: number | undefined;
        if (this.kind === 'retry') {
          const tierMs = this.config.tiers?.get(batch.topic) ?? 0;
          dueAt = readDueAt(record.headers);
          const leaveTierAt = Math.min(dueAt ?? Number.POSITIVE_INFINITY, record.timestamp + tierMs);
          if (leaveTierAt > Date.now()) {
            // The head of this tier partition is not due: nothing behind it is due earlier than its own
            // record time + tier, so the partition waits as a whole while others keep flowing.
            this.waitUntil(batch.topic, batch.partition, leaveTierAt);
            return;
          }
        }
        let slot = this.sub.acquire(control);
        if (slot !== true && slot !== false) {
          if (unresolved !== undefined) control.resolve(unresolved);
          unresolved = undefined;
          slot = await slot;
        }
        if (!slot) return;
        if (tracker.revoked || this.closed) {
          this.sub.unsettled--;
          this.sub.wake();
          return;
        }
        let entry: TrackedOffset;
        if (admission === 'new') entry = tracker.add(offset);
        else {
          entry = tracker.find(offset)!;
          entry.state = 'in-flight';
        }
        unresolved = record.offset;
        const hop = dueAt === undefined ? undefined : nextHop(dueAt, this.sub.deps.options.delayTiersMs);
        if (hop !== undefined) this.chain(state, entry, record, hop.tierMs);
        else {
          const redelivered = admission === 'redeliver' || this.kind === 'retry';
          handOver(
            this.sub.onDelivery,
            new KafkaDelivery(this, state, entry, record, redelivered),
            this.logger,
            state.logFields,
          );
        }
        // A release in this partition is about to seek it back: the client would report the batch
        // stale right after, and what follows is fetched again from the seek.
        if (state.seekPending) return;
      }
    } finally {
      if (unresolved !== undefined) control.resolve(unresolved);
    }
  }

  private waitUntil(topic: string, partition: number, at: number): void {
    const key = tpKey(topic, partition);
    this.consumer?.pause(topic, [partition]);
    clearTimeout(this.dueTimers.get(key));
    const timer = setTimeout(
      () => {
        this.dueTimers.delete(key);
        // While the whole subscription is paused, its resume() reopens every partition.
        if (!this.sub.paused && !this.closed) this.consumer?.resume(topic, [partition]);
      },
      // setTimeout overflows past 2^31-1 ms; an early wake-up just finds the head not due and waits again.
      Math.min(at - Date.now(), MAX_TIMER_MS),
    );
    timer.unref?.();
    this.dueTimers.set(key, timer);
  }

  /** Sends a message that left its tier before its due time round again, without the core seeing it. */
  private chain(state: PartitionState, entry: TrackedOffset, record: ConsumedRecord, tierMs: number): void {
    const topic = this.sub.retryTopicOf(tierMs);
    this.sub.deps.produce(topic, { key: record.key, body: record.value, headers: record.rawHeaders }).then(
      () => this.settle(state, entry, 'done'),
      (err: unknown) => {
        this.logger.warn(
          { topic, err: String(err) },
          'could not chain a delayed retry; it will be read again',
        );
        this.settle(state, entry, 'released');
      },
    );
  }

  settle(state: PartitionState, entry: TrackedOffset, how: 'done' | 'released'): void {
    this.sub.settled();
    const { tracker } = state;
    // A partition that moved to another member (or a closed loop) takes no more bookkeeping: the
    // new owner starts from the last commit and redelivers what was not committed here.
    if (tracker.revoked || this.closed) return;
    if (how === 'done') {
      tracker.complete(entry);
      return;
    }
    entry.state = 'released';
    this.scheduleSeek(state);
  }

  private scheduleSeek(state: PartitionState): void {
    if (state.seekPending) return;
    state.seekPending = true;
    // Releases usually come in bursts (shutdown, open circuit): one seek to the lowest is enough.
    queueMicrotask(() => {
      state.seekPending = false;
      if (state.tracker.revoked || this.closed) return;
      const lowest = state.tracker.lowestReleased();
      if (lowest !== undefined) this.consumer?.seek(state.topic, state.partition, String(lowest));
    });
  }

  pauseAll(): void {
    for (const topic of this.config.topics) this.consumer?.pause(topic);
  }

  resumeAll(): void {
    for (const timer of this.dueTimers.values()) clearTimeout(timer);
    this.dueTimers.clear();
    // Tier partitions whose head is still not due pause again as soon as it is fetched.
    for (const topic of this.config.topics) this.consumer?.resume(topic);
  }

  /** Commits, per partition still owned, the offset of the first unfinished message. */
  commit(): Promise<void> {
    if (this.kind === 'replay' || !this.consumer) return Promise.resolve();
    if (this.committing) return this.committing;
    const work: { state: PartitionState; point: number }[] = [];
    for (const state of this.partitions.values()) {
      const point = state.tracker.commitPoint();
      if (!state.tracker.revoked && point !== undefined && point > state.tracker.committed)
        work.push({ state, point });
    }
    if (work.length === 0) return Promise.resolve();
    const consumer = this.consumer;
    this.committing = consumer
      .commit(
        work.map((w) => ({ topic: w.state.topic, partition: w.state.partition, offset: String(w.point) })),
      )
      .then(
        () => {
          for (const w of work) w.state.tracker.committed = Math.max(w.state.tracker.committed, w.point);
        },
        (err: unknown) => {
          // Typically a rebalance in progress; the next round commits with the new generation.
          this.logger.debug({ groupId: this.config.groupId, err: String(err) }, 'kafka offset commit failed');
        },
      )
      .finally(() => {
        this.committing = undefined;
      });
    return this.committing;
  }

  async close(): Promise<void> {
    clearInterval(this.commitTimer);
    for (const timer of this.dueTimers.values()) clearTimeout(timer);
    this.dueTimers.clear();
    if (!this.consumer) return;
    await within(
      (async () => {
        await this.committing;
        await this.commit();
      })(),
      CLOSE_COMMIT_TIMEOUT_MS,
    );
    this.closed = true;
    for (const state of this.partitions.values()) state.tracker.revoked = true;
    this.partitions.clear();
    const stopped = await within(
      this.consumer.stop().then(() => true),
      CLOSE_STOP_TIMEOUT_MS,
    );
    if (!stopped) this.logger.warn({ groupId: this.config.groupId }, 'kafka consumer did not stop in time');
  }
}

const SETTLED = Promise.resolve();

/**
 * One message handed to the core. The kit's BaseDelivery holds the settle state machine (one action,
 * a second call rejects, only release() after a failed hand-off); this class only says what each action
 * does on Kafka. A class rather than closures: a delivery is made per message.
 */
class KafkaDelivery extends BaseDelivery {
  readonly #loop: ConsumerLoop;
  readonly #state: PartitionState;
  readonly #entry: TrackedOffset;
  readonly #record: ConsumedRecord;

  constructor(
    loop: ConsumerLoop,
    state: PartitionState,
    entry: TrackedOffset,
    record: ConsumedRecord,
    redelivered: boolean,
  ) {
    super({
      wire: { body: record.value, headers: record.headers, key: record.key },
      topic: loop.sub.spec.topic,
      group: loop.sub.group,
      redelivered,
    });
    this.#loop = loop;
    this.#state = state;
    this.#entry = entry;
    this.#record = record;
  }

  /** The record's partition and offset, for tracing (`messaging.destination.partition.id`, `messaging.kafka.offset`). */
  get partition(): number {
    return this.#state.partition;
  }

  get offset(): string {
    return this.#record.offset;
  }

  // ack and release are bookkeeping only: they hand back an already-resolved promise.
  protected doAck(): Promise<void> {
    this.#loop.settle(this.#state, this.#entry, 'done');
    return SETTLED;
  }

  protected doRelease(): Promise<void> {
    this.#loop.settle(this.#state, this.#entry, 'released');
    return SETTLED;
  }

  protected async doRetryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void> {
    if (this.#loop.kind === 'replay')
      throw new UnsupportedError('a replay subscription has no delayed retry');
    const { sub } = this.#loop;
    const now = Date.now();
    const plan = planDelay(delayMs, sub.deps.options.delayTiersMs, now);
    // The due time is always carried: the tier consumer resumes a partition exactly when it is due.
    const dueAt = plan.dueAt ?? now + Math.max(0, delayMs);
    await this.#handOff(
      sub.retryTopicOf(plan.tierMs),
      retryRecordHeaders(this.#record.rawHeaders, controlHeaders, dueAt),
    );
  }

  protected async doDeadLetter(controlHeaders: Record<string, string>): Promise<void> {
    if (this.#loop.kind === 'replay')
      throw new UnsupportedError('a replay subscription has no dead-letter topic');
    const { sub } = this.#loop;
    await this.#handOff(
      deadLetterTopic(sub.spec.topic, sub.group),
      deadLetterRecordHeaders(this.#record.rawHeaders, controlHeaders),
    );
  }

  /** Writes a copy of the record (confirmed by the broker), then settles the original. */
  async #handOff(topic: string, headers: RawHeaders): Promise<void> {
    const { key, value } = this.#record;
    await this.#loop.sub.deps.produce(topic, { key, body: value, headers });
    this.#loop.settle(this.#state, this.#entry, 'done');
  }
}
