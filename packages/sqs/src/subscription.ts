/**
 * One group's consumption of one SQS queue: concurrent long-poll loops within the in-flight budget,
 * deliveries handed to the core, their settlement (batched deletes, delayed retries, dead-lettering,
 * release), lease upkeep for slow handlers, and per-group order on FIFO queues.
 *
 * Delayed retry, and why it differs by queue type. Either way SQS waits any whole number of seconds up
 * to a ceiling, which is this transport's one delay tier for the kit's planner (`planDelay`, `nextHop`):
 * a delay within it is exact, a longer one is chained in hops of the ceiling by its due time.
 * - Standard queues: a copy carrying the core's new control headers is sent with DelaySeconds (ceiling
 *   15 min; the due time of a longer delay travels in `x-omnibus-due-at`), and the original is deleted
 *   once SQS confirmed the copy. The attempt count travels in the copy's `x-omnibus-attempts` attribute:
 *   exact and durable.
 * - FIFO queues: a copy would join the back of its message group and overtake nothing but be overtaken
 *   by everything, breaking per-key order. The message instead stays where it is and becomes invisible
 *   for the delay (ChangeMessageVisibility; ceiling 12 h from the receive, chained beyond), which also
 *   keeps its group blocked behind it. SQS cannot change the message's attributes, so the core's control headers
 *   are kept in this process (RetryStateStore). When another process or a restarted one receives it,
 *   previousAttempts falls back to ApproximateReceiveCount − 1: in-process retries made before are then
 *   not counted, so a message may get more handler invocations than `attempts`, never fewer; the
 *   native redrive (maxReceiveCount) still bounds a crash loop. The due time of a FIFO delay beyond the
 *   ceiling is kept in the same store, so only a chained FIFO delay depends on this process's memory.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SendMessageCommandInput,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import {
  CONTROL_HEADER_PREFIX,
  ControlHeader,
  type Delivery,
  type Logger,
  type SubscribeSpec,
  type TransportSubscription,
} from '@omnibus/core';
import {
  BaseDelivery,
  type DelayPlan,
  deadLetterHeaders,
  handOver,
  hasAttempts,
  nextHop,
  planDelay,
  readAttempts,
  readDueAt,
  retryHeaders,
} from '@omnibus/core/kit';
import { attributesToHeaders, headersToAttributes, sqsMessageBytes } from './attributes.js';
import { describeError, isQueueMissing } from './aws-errors.js';
import { MicroBatcher } from './batcher.js';
import type { ResolvedSqsOptions } from './options.js';
import type { QueueInfo, QueueRegistry } from './queues.js';
import type { RetryStateStore } from './retry-state.js';

/** SQS's longest DelaySeconds. */
export const MAX_DELAY_SECONDS = 900;
/** SQS's longest visibility timeout, counted from the receive. */
export const MAX_VISIBILITY_SECONDS = 43_200;
// Kept off the 12-hour ceiling, which SQS measures from its own receive time, not ours.
const VISIBILITY_CEILING_MARGIN_SECONDS = 60;
const MAX_RECEIVE_BATCH = 10;
const CLOSE_GRACE_MS = 500;
const FIFO_DEAD_LETTER_GROUP = 'omnibus';
// Error strings are what grows a dead letter past the size limit; trimmed to this when it does.
const TRIMMED_ERROR_CHARS = 512;

// The one delay tier of a standard queue's retry copies (see the top); FIFO's depends on each receive.
const COPY_TIERS_MS: readonly number[] = Object.freeze([MAX_DELAY_SECONDS * 1000]);

/** Whether a settled message left the queue for good, or went back to it (retry by visibility, release). */
type Outcome = 'removed' | 'returned';

/** One SQS wait: whole seconds, and the due time to carry when the delay goes on after it. */
interface Hop {
  seconds: number;
  dueAt: number | undefined;
}

/**
 * A kit plan as an SQS wait. The tier is a ceiling, not a size to round up to (SQS waits any whole
 * number of seconds): a plan without a due time waits the delay itself, and so does the last hop of a
 * chain, which then carries no due time.
 */
export function toHop(plan: DelayPlan, delayMs: number, now: number): Hop {
  if (plan.dueAt === undefined) return { seconds: Math.max(0, Math.ceil(delayMs / 1000)), dueAt: undefined };
  const remaining = plan.dueAt - now;
  if (remaining <= plan.tierMs)
    return { seconds: Math.max(0, Math.ceil(remaining / 1000)), dueAt: undefined };
  return { seconds: Math.floor(plan.tierMs / 1000), dueAt: plan.dueAt };
}

/** What the deliveries of one subscription settle through (implemented by SqsSubscription). */
interface Settler {
  ack(d: SqsDelivery): Promise<void>;
  retry(
    d: SqsDelivery,
    delayMs: number,
    headers: Record<string, string>,
    hop: DelayPlan | undefined,
  ): Promise<void>;
  deadLetter(d: SqsDelivery, controlHeaders: Record<string, string>): Promise<void>;
  release(d: SqsDelivery): Promise<void>;
  extendLease(d: SqsDelivery, ms: number): Promise<void>;
  finish(d: SqsDelivery): void;
}

/**
 * One received message: the delivery the core settles (the kit's state machine) and what SQS needs to
 * settle it. Messages held behind their FIFO group, or going round a chained delay, are deliveries too,
 * never handed to the core.
 */
export class SqsDelivery extends BaseDelivery {
  readonly body: string;
  readonly queueUrl: string;
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly groupId: string | undefined;
  readonly receiveCount: number;
  /** When the current lease (visibility) runs out, as far as this process knows. */
  leaseUntil: number;
  /** A lease extension in flight: visibility changes wait for it so it cannot overwrite them. */
  extending: Promise<void> | undefined = undefined;
  outcome: Outcome = 'returned';
  /** The retry state already holds this delivery's attempts (a visibility retry wrote them). */
  attemptsRemembered = false;
  /** Set for a chained delay's next hop (planned on receive) instead of a retry the core asked for. */
  hop: DelayPlan | undefined = undefined;
  readonly #settler: Settler;

  constructor(
    settler: Settler,
    init: {
      topic: string;
      group: string;
      body: string;
      headers: Record<string, string>;
      queueUrl: string;
      messageId: string;
      receiptHandle: string;
      groupId: string | undefined;
      receiveCount: number;
      receivedAt: number;
      leaseUntil: number;
    },
  ) {
    // Attempts carried by the message (or remembered here) win; the receive count is the fallback.
    const previousAttempts = hasAttempts(init.headers) ? readAttempts(init.headers) : init.receiveCount - 1;
    super({
      wire: { body: Buffer.from(init.body, 'utf8'), headers: init.headers, key: init.groupId },
      topic: init.topic,
      group: init.group,
      previousAttempts,
      redelivered: init.receiveCount > 1 || previousAttempts > 0,
      receivedAt: init.receivedAt,
    });
    this.#settler = settler;
    this.body = init.body;
    this.queueUrl = init.queueUrl;
    this.messageId = init.messageId;
    this.receiptHandle = init.receiptHandle;
    this.groupId = init.groupId;
    this.receiveCount = init.receiveCount;
    this.leaseUntil = init.leaseUntil;
  }

  /** The next hop of a chained delay: the same message goes round again unseen. */
  chain(plan: DelayPlan): Promise<void> {
    this.hop = plan;
    return this.retryLater(0, {});
  }

  protected doAck(): Promise<void> {
    return this.#settler.ack(this);
  }

  protected doRetryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void> {
    const hop = this.hop;
    this.hop = undefined;
    return this.#settler.retry(this, delayMs, { ...this.wire.headers, ...controlHeaders }, hop);
  }

  protected doDeadLetter(controlHeaders: Record<string, string>): Promise<void> {
    return this.#settler.deadLetter(this, controlHeaders);
  }

  protected doRelease(): Promise<void> {
    return this.#settler.release(this);
  }

  protected override onSettled(): void {
    this.#settler.finish(this);
  }

  extendLease(ms: number): Promise<void> {
    return this.#settler.extendLease(this, ms);
  }
}

interface PendingDelete {
  receiptHandle: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface SubscriptionDeps {
  client: SQSClient;
  registry: QueueRegistry;
  info: QueueInfo;
  /** The registry key of the queue: the topic (point-to-point) or the group's queue key (SNS mode). */
  queueKey?: string;
  spec: SubscribeSpec & { group: string };
  onDelivery: (delivery: Delivery) => void;
  options: ResolvedSqsOptions;
  logger: Logger;
  retryStates: RetryStateStore;
  onClosed: () => void;
}

function controlHeadersOf(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) if (name.startsWith(CONTROL_HEADER_PREFIX)) out[name] = headers[name]!;
  return out;
}

export class SqsSubscription implements TransportSubscription, Settler {
  private readonly client: SQSClient;
  private readonly options: ResolvedSqsOptions;
  private readonly spec: SubscribeSpec & { group: string };
  private readonly logger: Logger;
  private info: QueueInfo;
  private readonly fifo: boolean;
  private readonly visibilityMs: number;

  private paused = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private pollers: Promise<void>[] = [];
  private waiters: (() => void)[] = [];
  /** Received and not yet settled (delivered, held behind their group, or going round a chained delay). */
  private unsettled = 0;
  /** Slots claimed by receive calls in flight, so the pollers together never exceed maxInFlight. */
  private reserved = 0;
  private readonly leased = new Set<SqsDelivery>();
  private readonly heartbeat: NodeJS.Timeout;
  /** FIFO: per message group, the messages received behind the one currently delivered. */
  private readonly groups = new Map<string, SqsDelivery[]>();
  private readonly deleters = new Map<string, MicroBatcher<PendingDelete>>();

  private get queueKey(): string {
    return this.deps.queueKey ?? this.spec.topic;
  }

  constructor(private readonly deps: SubscriptionDeps) {
    this.client = deps.client;
    this.options = deps.options;
    this.spec = deps.spec;
    this.logger = deps.logger;
    this.info = deps.info;
    this.fifo = deps.info.names.fifo;
    this.visibilityMs = deps.options.visibilityTimeoutSeconds * 1000;
    this.heartbeat = setInterval(() => void this.extendLeases(), Math.max(1000, this.visibilityMs / 3));
    this.heartbeat.unref();
  }

  start(): void {
    for (let i = 0; i < this.options.pollers; i++) this.pollers.push(this.poll());
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake();
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  get topic(): string {
    return this.spec.topic;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.wake();
    // A receive that SQS is answering now brings messages, which accept() gives straight back; one
    // still waiting after a moment is most likely a long poll on an empty queue, and is aborted so it
    // does not hold close() up for its whole wait. (An aborted call whose answer SQS had already
    // prepared leaves those messages invisible until their visibility timeout; then they come back.)
    const pollers = Promise.allSettled(this.pollers);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pollers, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    this.abort.abort();
    await pollers;
    clearInterval(this.heartbeat);
    const held: SqsDelivery[] = [];
    for (const queue of this.groups.values()) held.push(...queue.splice(0));
    await this.giveBack(held);
    // Deliveries still unsettled keep working (the core may settle them while draining); their
    // leases are no longer extended, so anything abandoned comes back after its visibility timeout.
    await Promise.allSettled([...this.deleters.values()].map((d) => d.flush()));
    this.deps.onClosed();
  }

  // ---- receiving ----------------------------------------------------------------------------

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Waits until fetching is allowed and slots are free, then claims up to 10 of them (0: closed). */
  private async reserve(): Promise<number> {
    for (;;) {
      if (this.closed) return 0;
      const free = this.spec.maxInFlight - this.unsettled - this.reserved;
      if (!this.paused && free > 0) {
        const n = Math.min(MAX_RECEIVE_BATCH, free);
        this.reserved += n;
        return n;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async poll(): Promise<void> {
    let backoffMs = 0;
    while (!this.closed) {
      const n = await this.reserve();
      if (n === 0) break;
      let messages: Message[];
      try {
        const res = await this.client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.info.url,
            MaxNumberOfMessages: n,
            WaitTimeSeconds: this.options.waitTimeSeconds,
            VisibilityTimeout: this.options.visibilityTimeoutSeconds,
            MessageAttributeNames: ['All'],
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId', 'SentTimestamp'],
          }),
          { abortSignal: this.abort.signal },
        );
        messages = res.Messages ?? [];
        backoffMs = 0;
      } catch (err) {
        this.reserved -= n;
        this.wake();
        if (this.closed) break;
        backoffMs = Math.min(Math.max(100, backoffMs * 2), 5000);
        await this.recover(err, backoffMs);
        continue;
      }
      this.reserved -= n;
      for (const m of messages) this.accept(m);
      this.wake();
    }
  }

  /** After a failed receive: recreate a vanished queue when allowed, then back off. */
  private async recover(err: unknown, backoffMs: number): Promise<void> {
    this.logger.warn(
      { topic: this.spec.topic, group: this.spec.group, error: describeError(err), retryInMs: backoffMs },
      'SQS receive failed',
    );
    if (isQueueMissing(err) && this.options.provision === 'create') {
      try {
        this.deps.registry.invalidate(this.queueKey);
        const info = await this.deps.registry.resolve(this.queueKey);
        await this.deps.registry.claimGroup(info, this.spec.group);
        this.info = info;
      } catch (again) {
        this.logger.warn(
          { topic: this.spec.topic, error: describeError(again) },
          'cannot recreate the SQS queue',
        );
      }
    }
    // Cut short by close(); the listener is removed either way so a long outage does not pile them up.
    const signal = this.abort.signal;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, backoffMs);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private accept(message: Message): void {
    if (!message.ReceiptHandle || !message.MessageId) {
      this.logger.warn({ topic: this.spec.topic }, 'SQS returned a message without receipt handle or id');
      return;
    }
    const now = Date.now();
    const attrs = message.Attributes ?? {};
    const queueUrl = this.info.url;
    let headers = attributesToHeaders(message.MessageAttributes);
    const state = this.deps.retryStates.get(queueUrl, message.MessageId);
    if (state) headers = { ...headers, ...state.controlHeaders };
    const d = new SqsDelivery(this, {
      topic: this.spec.topic,
      group: this.spec.group,
      body: message.Body ?? '',
      headers,
      queueUrl,
      messageId: message.MessageId,
      receiptHandle: message.ReceiptHandle,
      groupId: attrs.MessageGroupId,
      receiveCount: Number(attrs.ApproximateReceiveCount) || 1,
      receivedAt: now,
      leaseUntil: now + this.visibilityMs,
    });
    this.unsettled++;
    this.leased.add(d);
    if (this.closed) {
      void this.giveBack([d]);
      return;
    }
    if (this.fifo && d.groupId !== undefined) {
      // SQS may hand over several messages of one group in one receive; only the first is delivered,
      // the rest wait here, because a retry of the first must still come before them.
      const behind = this.groups.get(d.groupId);
      if (behind) {
        behind.push(d);
        return;
      }
      this.groups.set(d.groupId, []);
    }
    this.begin(d, state?.dueAt);
  }

  /** Delivers the message, unless a chained delay is not over yet: then it goes round again unseen. */
  private begin(d: SqsDelivery, rememberedDueAt: number | undefined): void {
    if (this.paused) {
      // Paused means nothing more is handed over: a receive that was already under way when pause()
      // came gives its messages straight back, so they wait in the queue (and count in its depth). A
      // FIFO group's later messages go back with it, so they come back after it.
      const behind = this.fifo && d.groupId !== undefined ? (this.groups.get(d.groupId) ?? []) : [];
      if (this.fifo && d.groupId !== undefined) this.groups.delete(d.groupId);
      void this.giveBack([d, ...behind]);
      return;
    }
    const dueAt = rememberedDueAt ?? readDueAt(d.wire.headers);
    const hop = dueAt === undefined ? undefined : nextHop(dueAt, this.tiersFor(d), Date.now());
    if (hop === undefined) {
      handOver(this.deps.onDelivery, d, this.logger, { topic: this.spec.topic, group: this.spec.group });
      return;
    }
    d.chain(hop).catch((err: unknown) => {
      this.logger.warn({ topic: this.spec.topic, error: describeError(err) }, 'cannot chain a delayed retry');
      // Back to the queue now rather than at the end of its lease; it goes round again from there.
      if (d.state === 'failed') d.release().catch(() => {});
    });
  }

  /** The one delay tier: the visibility ceiling left for this receive (FIFO), or SQS's longest DelaySeconds. */
  private tiersFor(d: SqsDelivery): readonly number[] {
    return this.fifo ? [this.visibilityCeilingSeconds(d) * 1000] : COPY_TIERS_MS;
  }

  /** SQS counts the 12-hour ceiling from its receive, so time already held is subtracted, with a margin. */
  private visibilityCeilingSeconds(d: SqsDelivery): number {
    const heldSeconds = Math.ceil((Date.now() - d.receivedAt) / 1000);
    return Math.max(1, MAX_VISIBILITY_SECONDS - heldSeconds - VISIBILITY_CEILING_MARGIN_SECONDS);
  }

  // ---- settling (called by SqsDelivery through the kit's state machine) -------------------

  /** Called once per delivery when it is settled, or released after a failed settle. */
  finish(d: SqsDelivery): void {
    this.leased.delete(d);
    this.unsettled--;
    if (this.fifo && d.groupId !== undefined) {
      const behind = this.groups.get(d.groupId);
      if (behind) {
        // Only once the head is gone for good may the next of its group run; a head that went
        // back to the queue takes the rest of its group with it, so they come back after it.
        if (d.outcome === 'removed' && behind.length > 0 && !this.closed) {
          const next = behind.shift()!;
          this.begin(next, this.deps.retryStates.get(next.queueUrl, next.messageId)?.dueAt);
        } else {
          this.groups.delete(d.groupId);
          if (behind.length > 0) void this.giveBack(behind);
        }
      }
    }
    this.wake();
  }

  async ack(d: SqsDelivery): Promise<void> {
    this.leased.delete(d);
    await this.delete(d);
    this.deps.retryStates.delete(d.queueUrl, d.messageId);
    d.outcome = 'removed';
  }

  async release(d: SqsDelivery): Promise<void> {
    this.leased.delete(d);
    this.rememberAttempts(d);
    await this.changeVisibility(d, 0);
    d.outcome = 'returned';
  }

  retry(
    d: SqsDelivery,
    delayMs: number,
    headers: Record<string, string>,
    hop: DelayPlan | undefined,
  ): Promise<void> {
    this.leased.delete(d);
    return this.fifo
      ? this.retryByVisibility(d, delayMs, headers, hop)
      : this.retryByCopy(d, delayMs, headers, hop);
  }

  private async retryByVisibility(
    d: SqsDelivery,
    delayMs: number,
    headers: Record<string, string>,
    planned: DelayPlan | undefined,
  ): Promise<void> {
    const now = Date.now();
    const ceilingMs = this.visibilityCeilingSeconds(d) * 1000;
    // A hop planned on receive against a larger ceiling than is left now is planned again from its due time.
    const wantMs = planned?.dueAt !== undefined ? Math.max(0, planned.dueAt - now) : delayMs;
    const plan = planned && planned.tierMs <= ceilingMs ? planned : planDelay(wantMs, [ceilingMs], now);
    const { seconds, dueAt } = toHop(plan, wantMs, now);
    const control = controlHeadersOf(headers);
    delete control[ControlHeader.dueAt];
    this.deps.retryStates.set(d.queueUrl, d.messageId, control, dueAt);
    d.attemptsRemembered = true;
    await this.changeVisibility(d, seconds);
    d.outcome = 'returned';
  }

  private async retryByCopy(
    d: SqsDelivery,
    delayMs: number,
    headers: Record<string, string>,
    planned: DelayPlan | undefined,
  ): Promise<void> {
    const now = Date.now();
    const plan = planned ?? planDelay(delayMs, COPY_TIERS_MS, now);
    const { seconds, dueAt } = toHop(plan, delayMs, now);
    const attributes = headersToAttributes(retryHeaders(headers, {}, dueAt));
    if (sqsMessageBytes(d.body, attributes) > this.info.maxMessageBytes) {
      // The new headers do not fit beside the body: keep the message itself instead (see the top).
      return this.retryByVisibility(d, delayMs, headers, planned);
    }
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: d.queueUrl,
        MessageBody: d.body,
        MessageAttributes: attributes,
        DelaySeconds: seconds,
      }),
    );
    await this.deleteAfterHandOff(d);
    this.deps.retryStates.delete(d.queueUrl, d.messageId);
    d.outcome = 'removed';
  }

  async deadLetter(d: SqsDelivery, controlHeaders: Record<string, string>): Promise<void> {
    this.leased.delete(d);
    const headers = deadLetterHeaders(d.wire.headers, controlHeaders);
    let attributes = headersToAttributes(headers);
    if (sqsMessageBytes(d.body, attributes) > this.info.maxMessageBytes) {
      for (const name of [ControlHeader.error, ControlHeader.lastError]) {
        const v = headers[name];
        if (v !== undefined && v.length > TRIMMED_ERROR_CHARS)
          headers[name] = `${v.slice(0, TRIMMED_ERROR_CHARS)}…`;
      }
      attributes = headersToAttributes(headers);
    }
    const input: SendMessageCommandInput = {
      QueueUrl: '',
      MessageBody: d.body,
      MessageAttributes: attributes,
    };
    if (this.fifo) {
      input.MessageGroupId = d.groupId ?? FIFO_DEAD_LETTER_GROUP;
      // The SQS message id, not the envelope id: garbage has none, and a crash between send and
      // delete then dead-letters the same message twice within 5 minutes into one entry.
      input.MessageDeduplicationId = d.messageId;
    }
    try {
      input.QueueUrl = await this.deps.registry.deadLetterUrl(this.info);
      await this.client.send(new SendMessageCommand(input));
    } catch (err) {
      if (!isQueueMissing(err) || this.options.provision !== 'create') throw err;
      // The dead-letter queue vanished (emulator restart without storage): recreate it and try once more.
      this.deps.registry.invalidate(this.queueKey);
      this.info = await this.deps.registry.resolve(this.queueKey);
      input.QueueUrl = await this.deps.registry.deadLetterUrl(this.info);
      await this.client.send(new SendMessageCommand(input));
    }
    await this.deleteAfterHandOff(d);
    this.deps.retryStates.delete(d.queueUrl, d.messageId);
    d.outcome = 'removed';
  }

  /** The copy is safe in SQS; if the original cannot be deleted it merely comes back as a duplicate. */
  private async deleteAfterHandOff(d: SqsDelivery): Promise<void> {
    try {
      await this.delete(d);
    } catch (err) {
      this.logger.warn(
        { topic: this.spec.topic, error: describeError(err) },
        'handed off, but the original could not be deleted; it will be delivered again',
      );
    }
  }

  /** Sets the message's visibility, after any lease extension in flight so that cannot overwrite it. */
  private async changeVisibility(d: SqsDelivery, seconds: number): Promise<void> {
    await d.extending;
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: d.queueUrl,
        ReceiptHandle: d.receiptHandle,
        VisibilityTimeout: seconds,
      }),
    );
  }

  async extendLease(d: SqsDelivery, ms: number): Promise<void> {
    if (d.state !== 'open') return;
    const seconds = Math.min(Math.ceil(ms / 1000), MAX_VISIBILITY_SECONDS);
    await this.changeVisibility(d, seconds);
    d.leaseUntil = Date.now() + seconds * 1000;
  }

  /** Heartbeat: leases about to run out are renewed for every message this subscription still holds. */
  private async extendLeases(): Promise<void> {
    const now = Date.now();
    const due = [...this.leased].filter(
      (d) => d.state === 'open' && !d.extending && d.leaseUntil - now < this.visibilityMs / 2,
    );
    for (let i = 0; i < due.length; i += MAX_RECEIVE_BATCH) {
      const chunk = due.slice(i, i + MAX_RECEIVE_BATCH);
      const byUrl = chunk[0]!.queueUrl;
      const call = this.client
        .send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: byUrl,
            Entries: chunk.map((r, j) => ({
              Id: String(j),
              ReceiptHandle: r.receiptHandle,
              VisibilityTimeout: this.options.visibilityTimeoutSeconds,
            })),
          }),
        )
        .then(
          (res) => {
            const failed = new Set((res.Failed ?? []).map((f) => f.Id));
            chunk.forEach((r, j) => {
              if (!failed.has(String(j))) r.leaseUntil = now + this.visibilityMs;
            });
          },
          (err) =>
            this.logger.warn({ topic: this.spec.topic, error: describeError(err) }, 'lease extension failed'),
        )
        .finally(() => {
          for (const r of chunk) r.extending = undefined;
        });
      for (const r of chunk) r.extending = call;
    }
  }

  /** Messages never delivered to the core go straight back to the queue. */
  /**
   * A message going back unprocessed consumes no attempt, but its receive count grows: remember the
   * count it had (unless a failed visibility retry already remembered the new one).
   */
  private rememberAttempts(d: SqsDelivery): void {
    if (d.attemptsRemembered) return;
    this.deps.retryStates.set(d.queueUrl, d.messageId, {
      ...controlHeadersOf(d.wire.headers),
      [ControlHeader.attempts]: String(d.previousAttempts),
    });
  }

  private async giveBack(items: SqsDelivery[]): Promise<void> {
    for (let i = 0; i < items.length; i += MAX_RECEIVE_BATCH) {
      const chunk = items.slice(i, i + MAX_RECEIVE_BATCH);
      // Never handed to the core, so never settled through the state machine: they just leave the lease.
      for (const d of chunk) {
        this.leased.delete(d);
        this.rememberAttempts(d);
      }
      try {
        await Promise.all(chunk.map((r) => r.extending));
        await this.client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: chunk[0]!.queueUrl,
            Entries: chunk.map((r, j) => ({
              Id: String(j),
              ReceiptHandle: r.receiptHandle,
              VisibilityTimeout: 0,
            })),
          }),
        );
      } catch (err) {
        this.logger.debug(
          { topic: this.spec.topic, error: describeError(err) },
          'give-back failed; leases will lapse',
        );
      }
      this.unsettled -= chunk.length;
    }
    this.wake();
  }

  // ---- deleting -----------------------------------------------------------------------------

  private delete(d: SqsDelivery): Promise<void> {
    let deleter = this.deleters.get(d.queueUrl);
    if (!deleter) {
      const queueUrl = d.queueUrl;
      deleter = new MicroBatcher<PendingDelete>({
        maxEntries: MAX_RECEIVE_BATCH,
        maxBytes: Number.POSITIVE_INFINITY,
        lingerMs: this.options.batchLingerMs,
        maxInFlight: 4,
        sizeOf: () => 1,
        run: (items) => this.runDeletes(queueUrl, items),
      });
      this.deleters.set(queueUrl, deleter);
    }
    const batcher = deleter;
    return new Promise((resolve, reject) => batcher.add({ receiptHandle: d.receiptHandle, resolve, reject }));
  }

  private async runDeletes(queueUrl: string, items: PendingDelete[]): Promise<void> {
    try {
      const res = await this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: items.map((p, i) => ({ Id: String(i), ReceiptHandle: p.receiptHandle })),
        }),
      );
      const failed = new Map((res.Failed ?? []).map((f) => [f.Id, f]));
      const ok = new Set((res.Successful ?? []).map((s) => s.Id));
      items.forEach((p, i) => {
        const f = failed.get(String(i));
        if (f) p.reject(new Error(`SQS DeleteMessage failed: ${f.Code ?? 'Error'}: ${f.Message ?? ''}`));
        else if (ok.has(String(i))) p.resolve();
        else p.reject(new Error('SQS gave no result for a DeleteMessage batch entry'));
      });
    } catch (err) {
      const error = new Error(`SQS DeleteMessageBatch failed: ${describeError(err)}`, { cause: err });
      for (const p of items) p.reject(error);
    }
  }
}
