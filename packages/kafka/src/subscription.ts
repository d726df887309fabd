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
 *   with `x-omnibus-due-at`, confirmed, then acks the original. The retry consumer pauses each tier
 *   partition until its head is due (record time + tier, or earlier if due-at says so) and then hands
 *   the message straight to this subscription: the retry reaches only this group, and the main
 *   topic's partitions are never held up. A message that comes out of a tier before its due-at
 *   (delays longer than the longest tier) is written to the next tier without reaching the core.
 */
import {
  ControlHeader,
  type Delivery,
  type Logger,
  type ReplayFrom,
  type SubscribeSpec,
  type TransportSubscription,
  UnsupportedError,
} from '@omnibus/core';
import type {
  BatchControl,
  ConsumedBatch,
  ConsumedRecord,
  DriverConsumer,
  KafkaDriver,
  ProducedRecord,
} from './driver.js';
import { deadLetterTopic, groupId, retryGroupId, retryTopic, tierFor } from './naming.js';
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

function attemptsFrom(value: string | undefined): number {
  const n = Number(value);
  return value !== undefined && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function timeFrom(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

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
          topics: o.retryTiersMs.map((t) => retryTopic(spec.topic, group, t)),
          fromBeginning: true,
          maxWaitTimeMs: o.retryMaxWaitTimeMs,
          tiers: new Map(o.retryTiersMs.map((t) => [retryTopic(spec.topic, group, t), t])),
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
   * Resolves true with a slot taken (counted in `unsettled`) when one more message may be handed out,
   * false when this batch must stop. The slot is taken synchronously with the check, so batches of
   * several partitions woken together cannot overshoot maxInFlight.
   */
  async acquire(control: BatchControl): Promise<boolean> {
    for (;;) {
      if (this.closed || this.paused || !control.isActive()) return false;
      if (this.unsettled < this.spec.maxInFlight) {
        this.unsettled++;
        return true;
      }
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
    }
  }

  wake(): void {
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

  /** The tier topic of this group that a delay goes to. */
  retryTopicFor(delayMs: number): { topic: string; tierMs: number } {
    const tierMs = tierFor(this.deps.options.retryTiersMs, delayMs);
    return { topic: retryTopic(this.spec.topic, this.group, tierMs), tierMs };
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
  private readonly seeks = new Set<string>();
  private readonly dueTimers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly sub: KafkaSubscription,
    private readonly kind: LoopKind,
    private readonly config: LoopConfig,
  ) {}

  private get logger(): Logger {
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
      state = { topic, partition, tracker: new PartitionTracker() };
      this.partitions.set(key, state);
    }
    return state;
  }

  private async onBatch(batch: ConsumedBatch, control: BatchControl): Promise<void> {
    if (this.closed) return;
    const state = this.state(batch.topic, batch.partition);
    const { tracker } = state;
    for (const record of batch.records) {
      const offset = Number(record.offset);
      const admission = tracker.admit(offset);
      if (admission === 'skip') {
        control.resolve(record.offset);
        continue;
      }
      let dueAt: number | undefined;
      if (this.kind === 'retry') {
        const tierMs = this.config.tiers?.get(batch.topic) ?? 0;
        dueAt = timeFrom(record.headers[ControlHeader.dueAt]);
        const leaveTierAt = Math.min(dueAt ?? Number.POSITIVE_INFINITY, record.timestamp + tierMs);
        if (leaveTierAt > Date.now()) {
          // The head of this tier partition is not due: nothing behind it is due earlier than its own
          // record time + tier, so the partition waits as a whole while others keep flowing.
          this.waitUntil(batch.topic, batch.partition, leaveTierAt);
          return;
        }
      }
      if (!(await this.sub.acquire(control))) return;
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
      control.resolve(record.offset);
      if (dueAt !== undefined && dueAt > Date.now()) this.chain(state, entry, record, dueAt);
      else this.deliver(state, entry, record, admission === 'redeliver' || this.kind === 'retry');
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
  private chain(state: PartitionState, entry: TrackedOffset, record: ConsumedRecord, dueAt: number): void {
    const { topic } = this.sub.retryTopicFor(dueAt - Date.now());
    this.sub.deps.produce(topic, { key: record.key, value: record.value, headers: record.rawHeaders }).then(
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

  private deliver(
    state: PartitionState,
    entry: TrackedOffset,
    record: ConsumedRecord,
    redelivered: boolean,
  ): void {
    const sub = this.sub;
    const { spec } = sub;
    let settled = false;
    let busy = false;
    const finish = (how: 'done' | 'released') => {
      settled = true;
      this.settle(state, entry, how);
    };
    // Only one settle action runs at a time; a failed hand-off leaves the message unsettled so the
    // core can release it instead.
    const guard = async (action: () => Promise<void>) => {
      if (settled || busy) return;
      busy = true;
      try {
        await action();
      } finally {
        busy = false;
      }
    };
    const copyWith = (control: Record<string, string>): ProducedRecord => ({
      key: record.key,
      value: record.value,
      headers: { ...record.rawHeaders, ...control },
    });
    const delivery: Delivery = {
      wire: { body: record.value, headers: record.headers, key: record.key },
      topic: spec.topic,
      group: sub.group,
      previousAttempts: attemptsFrom(record.headers[ControlHeader.attempts]),
      redelivered,
      receivedAt: Date.now(),
      ack: () =>
        guard(async () => {
          finish('done');
        }),
      retryLater: (delayMs, controlHeaders) =>
        guard(async () => {
          if (this.kind === 'replay')
            throw new UnsupportedError('a replay subscription has no delayed retry');
          const dueAt = Date.now() + Math.max(0, delayMs);
          const { topic } = sub.retryTopicFor(delayMs);
          await sub.deps.produce(
            topic,
            copyWith({ ...controlHeaders, [ControlHeader.dueAt]: String(dueAt) }),
          );
          finish('done');
        }),
      deadLetter: (controlHeaders) =>
        guard(async () => {
          if (this.kind === 'replay')
            throw new UnsupportedError('a replay subscription has no dead-letter topic');
          await sub.deps.produce(deadLetterTopic(spec.topic, sub.group), copyWith(controlHeaders));
          finish('done');
        }),
      release: () =>
        guard(async () => {
          finish('released');
        }),
    };
    try {
      sub.onDelivery(delivery);
    } catch (err) {
      this.logger.error(
        { err: String(err), topic: state.topic, partition: state.partition },
        'onDelivery threw',
      );
    }
  }

  private settle(state: PartitionState, entry: TrackedOffset, how: 'done' | 'released'): void {
    this.sub.unsettled--;
    this.sub.wake();
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
    const key = tpKey(state.topic, state.partition);
    if (this.seeks.has(key)) return;
    this.seeks.add(key);
    // Releases usually come in bursts (shutdown, open circuit): one seek to the lowest is enough.
    queueMicrotask(() => {
      this.seeks.delete(key);
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
