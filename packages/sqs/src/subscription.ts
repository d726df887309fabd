/**
 * One group's consumption of one SQS queue: concurrent long-poll loops within the in-flight budget,
 * deliveries handed to the core, their settlement (batched deletes, delayed retries, dead-lettering,
 * release), lease upkeep for slow handlers, and per-group order on FIFO queues.
 *
 * Delayed retry, and why it differs by queue type:
 * - Standard queues: a copy carrying the core's new control headers is sent with DelaySeconds (≤ 15 min,
 *   longer delays hop again using `x-omnibus-due-at`), and the original is deleted once SQS confirmed
 *   the copy. The attempt count travels in the copy's `x-omnibus-attempts` attribute: exact and durable.
 * - FIFO queues: a copy would join the back of its message group and overtake nothing but be overtaken
 *   by everything, breaking per-key order. The message instead stays where it is and becomes invisible
 *   for the delay (ChangeMessageVisibility, ≤ 12 h per receive, chained beyond), which also keeps its
 *   group blocked behind it. SQS cannot change the message's attributes, so the core's control headers
 *   are kept in this process (RetryStateStore). When another process or a restarted one receives it,
 *   previousAttempts falls back to ApproximateReceiveCount − 1: in-process retries made before are then
 *   not counted, so a message may get more handler invocations than `attempts`, never fewer; the
 *   native redrive (maxReceiveCount) still bounds a crash loop.
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
  type WireMessage,
} from '@omnibus/core';
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

type Outcome = 'removed' | 'returned';

interface Received {
  readonly body: string;
  readonly queueUrl: string;
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly groupId: string | undefined;
  readonly receiveCount: number;
  readonly receivedAt: number;
  headers: Record<string, string>;
  previousAttempts: number;
  /** When the current lease (visibility) runs out, as far as this process knows. */
  leaseUntil: number;
  /** A lease extension in flight: visibility changes wait for it so it cannot overwrite them. */
  extending: Promise<void> | undefined;
  /** open → settling → done, or failed: then only a release is still accepted (the core's fallback). */
  state: 'open' | 'settling' | 'done' | 'failed';
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

function parseAttempts(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

export class SqsSubscription implements TransportSubscription {
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
  private readonly leased = new Set<Received>();
  private readonly heartbeat: NodeJS.Timeout;
  /** FIFO: per message group, the messages received behind the one currently delivered. */
  private readonly groups = new Map<string, Received[]>();
  private readonly deleters = new Map<string, MicroBatcher<PendingDelete>>();

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
    const held: Received[] = [];
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
        this.deps.registry.invalidate(this.spec.topic);
        const info = await this.deps.registry.resolve(this.spec.topic);
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
    const receiveCount = Number(attrs.ApproximateReceiveCount) || 1;
    const queueUrl = this.info.url;
    let headers = attributesToHeaders(message.MessageAttributes);
    const state = this.deps.retryStates.get(queueUrl, message.MessageId);
    if (state) headers = { ...headers, ...state.controlHeaders };
    const r: Received = {
      body: message.Body ?? '',
      queueUrl,
      messageId: message.MessageId,
      receiptHandle: message.ReceiptHandle,
      groupId: attrs.MessageGroupId,
      receiveCount,
      receivedAt: now,
      headers,
      // Attempts carried by the message (or remembered here) win; the receive count is the fallback.
      previousAttempts: parseAttempts(headers[ControlHeader.attempts]) ?? receiveCount - 1,
      leaseUntil: now + this.visibilityMs,
      extending: undefined,
      state: 'open',
    };
    this.unsettled++;
    this.leased.add(r);
    if (this.closed) {
      void this.giveBack([r]);
      return;
    }
    if (this.fifo && r.groupId !== undefined) {
      // SQS may hand over several messages of one group in one receive; only the first is delivered,
      // the rest wait here, because a retry of the first must still come before them.
      const behind = this.groups.get(r.groupId);
      if (behind) {
        behind.push(r);
        return;
      }
      this.groups.set(r.groupId, []);
    }
    this.begin(r, state?.dueAt);
  }

  /** Delivers the message, unless a chained delay is not over yet: then it goes round again unseen. */
  private begin(r: Received, rememberedDueAt: number | undefined): void {
    const dueAt = rememberedDueAt ?? Number(r.headers[ControlHeader.dueAt]);
    const remaining = Number.isFinite(dueAt) ? dueAt - Date.now() : 0;
    if (remaining > 0) {
      void this.settle(r, () =>
        this.fifo
          ? this.retryByVisibility(r, remaining, r.headers)
          : this.retryByCopy(r, remaining, r.headers),
      ).catch((err) =>
        this.logger.warn(
          { topic: this.spec.topic, error: describeError(err) },
          'cannot chain a delayed retry',
        ),
      );
      return;
    }
    this.deliver(r);
  }

  private deliver(r: Received): void {
    const wire: WireMessage = { body: Buffer.from(r.body, 'utf8'), headers: r.headers, key: r.groupId };
    const delivery: Delivery = {
      wire,
      topic: this.spec.topic,
      group: this.spec.group,
      previousAttempts: r.previousAttempts,
      redelivered: r.receiveCount > 1 || r.previousAttempts > 0,
      receivedAt: r.receivedAt,
      ack: () => this.settle(r, () => this.ack(r)),
      retryLater: (delayMs, controlHeaders) =>
        this.settle(r, () => {
          const headers = { ...r.headers, ...controlHeaders };
          return this.fifo
            ? this.retryByVisibility(r, delayMs, headers)
            : this.retryByCopy(r, delayMs, headers);
        }),
      deadLetter: (controlHeaders) => this.settle(r, () => this.deadLetter(r, controlHeaders)),
      release: () =>
        r.state === 'failed' ? this.releaseAfterFailure(r) : this.settle(r, () => this.release(r)),
      extendLease: (ms) => this.extendLease(r, ms),
    };
    try {
      this.deps.onDelivery(delivery);
    } catch (err) {
      // The core's callback is not supposed to throw; if it does, the message must not be lost.
      this.logger.error({ topic: this.spec.topic, error: describeError(err) }, 'delivery callback threw');
      void this.settle(r, () => this.release(r)).catch(() => {});
    }
  }

  // ---- settling -----------------------------------------------------------------------------

  private async settle(r: Received, op: () => Promise<Outcome>): Promise<void> {
    if (r.state !== 'open') throw new Error('this delivery was already settled');
    r.state = 'settling';
    this.leased.delete(r);
    let outcome: Outcome = 'returned';
    try {
      outcome = await op();
      r.state = 'done';
    } catch (err) {
      // The message is still in the queue and comes back when its lease ends, or sooner if released.
      r.state = 'failed';
      throw err;
    } finally {
      this.finish(r, outcome);
    }
  }

  /** The core releases a message whose settlement failed, so it comes back now rather than at lease end. */
  private async releaseAfterFailure(r: Received): Promise<void> {
    r.state = 'done';
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: r.queueUrl,
        ReceiptHandle: r.receiptHandle,
        VisibilityTimeout: 0,
      }),
    );
  }

  private finish(r: Received, outcome: Outcome): void {
    this.unsettled--;
    if (this.fifo && r.groupId !== undefined) {
      const behind = this.groups.get(r.groupId);
      if (behind) {
        // Only once the head is gone for good may the next of its group run; a head that went
        // back to the queue takes the rest of its group with it, so they come back after it.
        if (outcome === 'removed' && behind.length > 0 && !this.closed) {
          const next = behind.shift()!;
          this.begin(next, this.deps.retryStates.get(next.queueUrl, next.messageId)?.dueAt);
        } else {
          this.groups.delete(r.groupId);
          if (behind.length > 0) void this.giveBack(behind);
        }
      }
    }
    this.wake();
  }

  private async ack(r: Received): Promise<Outcome> {
    await this.delete(r);
    this.deps.retryStates.delete(r.queueUrl, r.messageId);
    return 'removed';
  }

  private async release(r: Received): Promise<Outcome> {
    // No attempt is consumed, but the receive count grows: remember the count the message had.
    this.deps.retryStates.set(r.queueUrl, r.messageId, {
      ...controlHeadersOf(r.headers),
      [ControlHeader.attempts]: String(r.previousAttempts),
    });
    await r.extending;
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: r.queueUrl,
        ReceiptHandle: r.receiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    return 'returned';
  }

  private async retryByVisibility(
    r: Received,
    delayMs: number,
    headers: Record<string, string>,
  ): Promise<Outcome> {
    const heldSeconds = Math.ceil((Date.now() - r.receivedAt) / 1000);
    const ceiling = MAX_VISIBILITY_SECONDS - heldSeconds - VISIBILITY_CEILING_MARGIN_SECONDS;
    const seconds = Math.max(0, Math.min(Math.ceil(delayMs / 1000), ceiling));
    const control = controlHeadersOf(headers);
    delete control[ControlHeader.dueAt];
    const dueAt = delayMs > seconds * 1000 ? Date.now() + delayMs : undefined;
    this.deps.retryStates.set(r.queueUrl, r.messageId, control, dueAt);
    await r.extending;
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: r.queueUrl,
        ReceiptHandle: r.receiptHandle,
        VisibilityTimeout: seconds,
      }),
    );
    return 'returned';
  }

  private async retryByCopy(r: Received, delayMs: number, headers: Record<string, string>): Promise<Outcome> {
    const seconds = Math.max(0, Math.min(Math.ceil(delayMs / 1000), MAX_DELAY_SECONDS));
    const copyHeaders = { ...headers };
    if (delayMs > seconds * 1000) copyHeaders[ControlHeader.dueAt] = String(Date.now() + delayMs);
    else delete copyHeaders[ControlHeader.dueAt];
    const attributes = headersToAttributes(copyHeaders);
    if (sqsMessageBytes(r.body, attributes) > this.info.maxMessageBytes) {
      // The new headers do not fit beside the body: keep the message itself instead (see the top).
      return this.retryByVisibility(r, delayMs, headers);
    }
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: r.queueUrl,
        MessageBody: r.body,
        MessageAttributes: attributes,
        DelaySeconds: seconds,
      }),
    );
    await this.deleteAfterHandOff(r);
    this.deps.retryStates.delete(r.queueUrl, r.messageId);
    return 'removed';
  }

  private async deadLetter(r: Received, controlHeaders: Record<string, string>): Promise<Outcome> {
    const headers = { ...r.headers, ...controlHeaders };
    delete headers[ControlHeader.dueAt];
    let attributes = headersToAttributes(headers);
    if (sqsMessageBytes(r.body, attributes) > this.info.maxMessageBytes) {
      for (const name of [ControlHeader.error, ControlHeader.lastError]) {
        const v = headers[name];
        if (v !== undefined && v.length > TRIMMED_ERROR_CHARS)
          headers[name] = `${v.slice(0, TRIMMED_ERROR_CHARS)}…`;
      }
      attributes = headersToAttributes(headers);
    }
    const input: SendMessageCommandInput = {
      QueueUrl: '',
      MessageBody: r.body,
      MessageAttributes: attributes,
    };
    if (this.fifo) {
      input.MessageGroupId = r.groupId ?? FIFO_DEAD_LETTER_GROUP;
      // The SQS message id, not the envelope id: garbage has none, and a crash between send and
      // delete then dead-letters the same message twice within 5 minutes into one entry.
      input.MessageDeduplicationId = r.messageId;
    }
    try {
      input.QueueUrl = await this.deps.registry.deadLetterUrl(this.info);
      await this.client.send(new SendMessageCommand(input));
    } catch (err) {
      if (!isQueueMissing(err) || this.options.provision !== 'create') throw err;
      // The dead-letter queue vanished (emulator restart without storage): recreate it and try once more.
      this.deps.registry.invalidate(this.spec.topic);
      this.info = await this.deps.registry.resolve(this.spec.topic);
      input.QueueUrl = await this.deps.registry.deadLetterUrl(this.info);
      await this.client.send(new SendMessageCommand(input));
    }
    await this.deleteAfterHandOff(r);
    this.deps.retryStates.delete(r.queueUrl, r.messageId);
    return 'removed';
  }

  /** The copy is safe in SQS; if the original cannot be deleted it merely comes back as a duplicate. */
  private async deleteAfterHandOff(r: Received): Promise<void> {
    try {
      await this.delete(r);
    } catch (err) {
      this.logger.warn(
        { topic: this.spec.topic, error: describeError(err) },
        'handed off, but the original could not be deleted; it will be delivered again',
      );
    }
  }

  private async extendLease(r: Received, ms: number): Promise<void> {
    if (r.state !== 'open') return;
    const seconds = Math.min(Math.ceil(ms / 1000), MAX_VISIBILITY_SECONDS);
    await r.extending;
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: r.queueUrl,
        ReceiptHandle: r.receiptHandle,
        VisibilityTimeout: seconds,
      }),
    );
    r.leaseUntil = Date.now() + seconds * 1000;
  }

  /** Heartbeat: leases about to run out are renewed for every message this subscription still holds. */
  private async extendLeases(): Promise<void> {
    const now = Date.now();
    const due = [...this.leased].filter(
      (r) => r.state === 'open' && !r.extending && r.leaseUntil - now < this.visibilityMs / 2,
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
  private async giveBack(items: Received[]): Promise<void> {
    for (let i = 0; i < items.length; i += MAX_RECEIVE_BATCH) {
      const chunk = items.slice(i, i + MAX_RECEIVE_BATCH);
      for (const r of chunk) {
        r.state = 'done';
        this.leased.delete(r);
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

  private delete(r: Received): Promise<void> {
    let deleter = this.deleters.get(r.queueUrl);
    if (!deleter) {
      const queueUrl = r.queueUrl;
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
    return new Promise((resolve, reject) => batcher.add({ receiptHandle: r.receiptHandle, resolve, reject }));
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
