/**
 * Publishing to one queue: concurrent sends are coalesced into SendMessageBatch calls, and each
 * caller's promise settles with its own entry's outcome (a retryable per-entry failure is sent again,
 * anything else rejects that entry alone).
 */
import {
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { ErrorCode, PublishError } from '@omnibus/core';
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

interface PendingSend {
  entry: SendEntry;
  bytes: number;
  tries: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

const MAX_ENTRY_TRIES = 4;
const MAX_BATCH_ENTRIES = 10;

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
      run: (items) => this.run(items),
    });
  }

  send(entry: SendEntry, bytes: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batcher.add({ entry, bytes, tries: 0, resolve, reject });
    });
  }

  flush(): Promise<void> {
    return this.batcher.flush();
  }

  private async run(items: PendingSend[]): Promise<void> {
    let res: SendMessageBatchCommandOutput;
    try {
      res = await this.client.send(
        new SendMessageBatchCommand({
          QueueUrl: this.opts.queueUrl,
          Entries: items.map((p, i) => ({ ...p.entry, Id: String(i) })),
        }),
      );
    } catch (err) {
      const error = toPublishError(err, this.opts.queueName);
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
