/** Reads AWS SDK errors (and ElasticMQ's variants of them) into the few facts the transport acts on. */
import { redactText } from '@omnibus/core';

interface AwsLikeError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $fault?: 'client' | 'server';
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

function asAws(err: unknown): AwsLikeError {
  return err && typeof err === 'object' ? (err as AwsLikeError) : {};
}

/** The error code SQS answered with (`QueueDoesNotExist`, …), or the JS error name. */
export function awsErrorCode(err: unknown): string {
  const e = asAws(err);
  // The JSON protocol answers with shape ids such as `com.amazonaws.sqs#QueueDoesNotExist`.
  const code = e.name && e.name !== 'Error' ? e.name : (e.Code ?? e.code ?? e.name ?? 'Error');
  return code.slice(code.lastIndexOf('#') + 1);
}

const QUEUE_MISSING = new Set([
  'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
  'NonExistentQueue',
]);

export function isQueueMissing(err: unknown): boolean {
  return (
    QUEUE_MISSING.has(awsErrorCode(err)) ||
    /NonExistentQueue|QueueDoesNotExist/.test(asAws(err).message ?? '')
  );
}

/** True when the broker answered at all (an HTTP status came back), i.e. it is reachable. */
export function brokerAnswered(err: unknown): boolean {
  return typeof asAws(err).$metadata?.httpStatusCode === 'number';
}

const THROTTLED = new Set([
  'RequestThrottled',
  'ThrottlingException',
  'Throttling',
  'KmsThrottled',
  'ServiceUnavailable',
  'InternalError',
  'InternalFailure',
]);

/** A per-entry failure in a batch answer that is worth sending again. */
export function isRetryableEntryFailure(code: string | undefined, senderFault: boolean | undefined): boolean {
  return senderFault === false || (code !== undefined && THROTTLED.has(code));
}

export function isTimeout(err: unknown): boolean {
  const code = awsErrorCode(err);
  return code === 'TimeoutError' || code === 'RequestTimeout' || code === 'ETIMEDOUT';
}

/** A one-line description safe for errors and logs. */
export function describeError(err: unknown): string {
  const e = asAws(err);
  const msg = e.message ?? String(err);
  const code = awsErrorCode(err);
  return redactText(msg.startsWith(code) ? msg : `${code}: ${msg}`);
}
