/** The envelope every message travels in, independent of broker and wire format. */

export interface EnvelopeMeta {
  /** UUIDv7, unique per message; the idempotency key together with the consumer group. */
  id: string;
  /** Message type, e.g. `order.placed`; routes to handlers. */
  type: string;
  /** The service that produced the message. */
  source: string;
  /** Event time, ms since the epoch. */
  time: number;
  /** Ordering/partitioning key. */
  key?: string | undefined;
  correlationId: string;
  /** The id of the message whose handler published this one. */
  causationId?: string | undefined;
  /** W3C trace context. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
  /** Schema version of `data`. */
  version: number;
  /** MIME type of the encoded data, e.g. `application/json`. */
  contentType: string;
  /** User headers (plain string pairs). */
  headers: Record<string, string>;
}

/** An envelope whose data is still bytes: what a transport encodes onto and decodes from the wire. */
export interface RawEnvelope extends EnvelopeMeta {
  data: Uint8Array;
}

export interface Envelope<T = unknown> extends EnvelopeMeta {
  data: T;
}

/** Bytes and string headers as a broker carries them. Transports map these to native records. */
export interface WireMessage {
  body: Uint8Array;
  headers: Record<string, string>;
  /** Broker key (Kafka record key, SQS MessageGroupId); undefined where the broker has none. */
  key?: string | undefined;
}

/** Headers that carry retry and dead-letter state. They are never part of the envelope's user headers. */
export const ControlHeader = {
  /** Handler invocations already made before this delivery. */
  attempts: 'x-omnibus-attempts',
  firstFailureAt: 'x-omnibus-first-failure-at',
  lastFailureAt: 'x-omnibus-last-failure-at',
  lastError: 'x-omnibus-last-error',
  /** When a delayed retry is due (ms since epoch); transports with delay tiers use it to chain. */
  dueAt: 'x-omnibus-due-at',
  reason: 'x-omnibus-dead-letter-reason',
  error: 'x-omnibus-dead-letter-error',
  originalTopic: 'x-omnibus-original-topic',
  originalGroup: 'x-omnibus-original-group',
  deadLetteredAt: 'x-omnibus-dead-lettered-at',
  /** The message's event time (its envelope `time`), ms since epoch. */
  eventTime: 'x-omnibus-event-time',
  /** When the last handler invocation started (processing time), ms since epoch. */
  processingStartedAt: 'x-omnibus-processing-started-at',
} as const;

export const CONTROL_HEADER_PREFIX = 'x-omnibus-';

export type DeadLetterReason =
  | 'decode'
  | 'validation'
  | 'non-retryable'
  | 'max-attempts'
  | 'unknown-type'
  | 'too-large'
  /** A claim-checked payload that was missing or unreadable in its store (see claim-check.ts). */
  | 'claim-check';

/** The failure metadata a dead-lettered message carries, parsed back from its headers. */
export interface DeadLetterInfo {
  reason: DeadLetterReason | string;
  error: string;
  attempts: number;
  firstFailureAt?: number | undefined;
  lastFailureAt?: number | undefined;
  originalTopic: string;
  originalGroup: string;
  deadLetteredAt?: number | undefined;
  /** Event time: when the message says it happened (its envelope `time`). */
  eventTime?: number | undefined;
  /** Processing time: when its last handler invocation started. */
  processingStartedAt?: number | undefined;
}

export function readDeadLetterInfo(headers: Record<string, string | undefined>): DeadLetterInfo | undefined {
  const reason = headers[ControlHeader.reason];
  if (reason === undefined) return undefined;
  const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
  return {
    reason,
    error: headers[ControlHeader.error] ?? '',
    attempts: num(headers[ControlHeader.attempts]) ?? 0,
    firstFailureAt: num(headers[ControlHeader.firstFailureAt]),
    lastFailureAt: num(headers[ControlHeader.lastFailureAt]),
    originalTopic: headers[ControlHeader.originalTopic] ?? '',
    originalGroup: headers[ControlHeader.originalGroup] ?? '',
    deadLetteredAt: num(headers[ControlHeader.deadLetteredAt]),
    eventTime: num(headers[ControlHeader.eventTime]),
    processingStartedAt: num(headers[ControlHeader.processingStartedAt]),
  };
}

/** Approximate bytes a wire message occupies: body plus header names and values. */
export function wireSize(msg: WireMessage): number {
  let size = msg.body.byteLength;
  for (const k in msg.headers) size += k.length + Buffer.byteLength(msg.headers[k]!, 'utf8');
  if (msg.key) size += Buffer.byteLength(msg.key, 'utf8');
  return size;
}
