/**
 * Publishing to one queue: concurrent sends are coalesced into SendMessageBatch calls, and each
 * caller's promise settles with its own entry's outcome (a retryable per-entry failure is sent again,
 * anything else rejects that entry alone). The sender keeps no publish timeout: an entry lives until
 * SQS answers or its caller gives up (see `withdraw`).
 */
import {
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { ErrorCode, PublishError } from '@omnibus/core';
import type { AbandonVerdict } from '@omnibus/core/kit';
import {
  awsErrorCode,
  brokerAnswered,
  describeError,
  isQueueMissing,
  isRetryableEntryFailure,
  isTimeout,
} from './aws-errors.js';
import { MicroBatcher } from './batcher.js';

export type SendEntry = Omit<SendMessageBatchRequestEntry, 'Id'>;

/**
 * Where an entry stands: `queued` (in the batcher, or waiting to be sent again after SQS refused it:
 * not written), `sending` (in a request: it may be written), `done`, or `withdrawn` (its caller gave up
 * while it was queued: it is never sent).
 */
type SendState = 'queued' | 'sending' | 'done' | 'withdrawn';

/** One SendMessageBatch request, aborted once none of its entries' callers is waiting any more. */
interface BatchCall {
  readonly controller: AbortController;
  waiting: number;
}

export class PendingSend {
  state: SendState = 'queued';
  tries = 0;
  batch: BatchCall | undefined = undefined;
  readonly promise: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: Error) => void;

  constructor(
    readonly entry: SendEntry,
    readonly bytes: number,
  ) {
    this.promise = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  resolve(): void {
    this.state = 'done';
    this.batch = undefined;
    this.#resolve();
  }

  reject(err: Error): void {
    if (this.state !== 'withdrawn') this.state = 'done';
    this.batch = undefined;
    this.#reject(err);
  }
}

/**
 * The caller of these entries gave up: entries still queued are withdrawn (never sent); for entries in
 * a request the outcome is unknown, and a request none of whose callers still waits is aborted, which
 * also stops the SDK from retrying it. 'withdrawn' only when nothing was or will be written.
 */
export function withdraw(entries: readonly PendingSend[]): AbandonVerdict {
  let verdict: AbandonVerdict = 'withdrawn';
  for (const p of entries) {
    if (p.state === 'queued') {
      p.state = 'withdrawn';
      p.reject(
        new PublishError(ErrorCode.TIMEOUT, 'publish withdrawn before it was sent', {
          details: { outcome: 'not-sent' },
        }),
      );
    } else if (p.state === 'sending') {
      verdict = 'unknown';
      const batch = p.batch;
      if (batch && --batch.waiting === 0) batch.controller.abort();
    } else if (p.state === 'done') {
      verdict = 'unknown';
    }
  }
  return verdict;
}

const MAX_ENTRY_TRIES = 4;
const MAX_BATCH_ENTRIES = 10;
// A publish has no request timeout of its own: its caller's deadline ends it (0 = none in the SDK).
const NO_REQUEST_TIMEOUT = 0;

export interface QueueSenderOptions {
  queueUrl: string;
  queueName: string;
  /** Batch payload limit: SQS counts the sum of the entries' sizes against it. */
  maxBatchBytes: number;
  lingerMs: number;
  /** 1 for FIFO queues: two batches in flight could land in either order and break per-group order. */
  maxInFlight: number;
}

export function toPublishError(err: unknown, queueName: string): PublishError {
  if (err instanceof PublishError) return err;
  const text = describeError(err);
  if (isQueueMissing(err)) {
    return new PublishError(ErrorCode.UNROUTABLE, `SQS queue "${queueName}" does not exist: ${text}`, {
      cause: err,
      details: { queueMissing: true, queue: queueName },
    });
  }
  if (isTimeout(err)) {
    return new PublishError(ErrorCode.TIMEOUT, `SQS did not answer in time (${queueName}): ${text}`, {
      cause: err,
    });
  }
  const code = awsErrorCode(err);
  if (code === 'BatchRequestTooLong' || code === 'RequestEntityTooLarge') {
    return new PublishError(ErrorCode.TOO_LARGE, `SQS refused the batch as too large: ${text}`, {
      cause: err,
    });
  }
  return new PublishError(ErrorCode.PUBLISH_FAILED, `SQS publish to "${queueName}" failed: ${text}`, {
    cause: err,
    // Client faults (bad attribute, bad body) will not improve by trying again; outages and throttling may.
    retryable: !brokerAnswered(err) || (err as { $fault?: string }).$fault === 'server',
  });
}

export class QueueSender {
  private readonly batcher: MicroBatcher<PendingSend>;

  constructor(
    private readonly client: SQSClient,
    private readonly opts: QueueSenderOptions,
  ) {
    this.batcher = new MicroBatcher<PendingSend>({
      maxEntries: MAX_BATCH_ENTRIES,
      maxBytes: opts.maxBatchBytes,
      lingerMs: opts.lingerMs,
      maxInFlight: opts.maxInFlight,
      sizeOf: (p) => p.bytes,
      live: (p) => p.state === 'queued',
      run: (items) => this.run(items),
    });
  }

  /** Queues one entry; its promise settles with the entry's own outcome. */
  send(entry: SendEntry, bytes: number): PendingSend {
    const p = new PendingSend(entry, bytes);
    this.batcher.add(p);
    return p;
  }

  flush(): Promise<void> {
    return this.batcher.flush();
  }

  private async run(items: PendingSend[]): Promise<void> {
    const batch: BatchCall = { controller: new AbortController(), waiting: items.length };
    for (const p of items) {
      p.state = 'sending';
      p.batch = batch;
    }
    let res: SendMessageBatchCommandOutput;
    try {
      res = await this.client.send(
        new SendMessageBatchCommand({
          QueueUrl: this.opts.queueUrl,
          Entries: items.map((p, i) => ({ ...p.entry, Id: String(i) })),
        }),
        { abortSignal: batch.controller.signal, requestTimeout: NO_REQUEST_TIMEOUT },
      );
    } catch (err) {
      const error = batch.controller.signal.aborted
        ? new PublishError(
            ErrorCode.OUTCOME_UNKNOWN,
            `SQS publish to "${this.opts.queueName}" abandoned by its callers while in flight`,
            { details: { outcome: 'unknown' } },
          )
        : toPublishError(err, this.opts.queueName);
      for (const p of items) p.reject(error);
      return;
    }
    const answered = new Set<number>();
    for (const ok of res.Successful ?? []) {
      const i = Number(ok.Id);
      items[i]?.resolve();
      answered.add(i);
    }
    const again: PendingSend[] = [];
    for (const failed of res.Failed ?? []) {
      const i = Number(failed.Id);
      const p = items[i];
      if (!p) continue;
      answered.add(i);
      p.tries++;
      if (isRetryableEntryFailure(failed.Code, failed.SenderFault) && p.tries < MAX_ENTRY_TRIES) {
        // SQS refused this entry, so it was not written: it is queued again, and can still be withdrawn.
        p.state = 'queued';
        p.batch = undefined;
        again.push(p);
        continue;
      }
      p.reject(
        new PublishError(
          ErrorCode.PUBLISH_FAILED,
          `SQS refused a message for "${this.opts.queueName}": ${failed.Code ?? 'Error'}: ${failed.Message ?? ''}`,
          {
            retryable: failed.SenderFault === false,
            details: { code: failed.Code, senderFault: failed.SenderFault },
          },
        ),
      );
    }
    // An entry SQS said nothing about must not be reported as sent.
    items.forEach((p, i) => {
      if (!answered.has(i)) {
        p.reject(
          new PublishError(
            ErrorCode.PUBLISH_FAILED,
            `SQS gave no result for a batch entry (${this.opts.queueName})`,
          ),
        );
      }
    });
    if (again.length > 0) this.batcher.requeue(again, 25 * 2 ** Math.max(...again.map((p) => p.tries)));
  }
}
