/** One error family for the whole library: a stable `code`, a `retryable` flag and the original `cause`. */

export const ErrorCode = {
  CONFIG: 'CONFIG',
  CONNECTION: 'CONNECTION',
  UNROUTABLE: 'UNROUTABLE',
  TOO_LARGE: 'TOO_LARGE',
  TIMEOUT: 'TIMEOUT',
  /** The publish deadline passed after the bytes may have reached the broker: a retry may duplicate. */
  OUTCOME_UNKNOWN: 'OUTCOME_UNKNOWN',
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  CLOSED: 'CLOSED',
  VALIDATION: 'VALIDATION',
  DECODE: 'DECODE',
  NON_RETRYABLE: 'NON_RETRYABLE',
  UNSUPPORTED: 'UNSUPPORTED',
  HANDLER_TIMEOUT: 'HANDLER_TIMEOUT',
  UNKNOWN_VERSION: 'UNKNOWN_VERSION',
  /** A second settle call on one delivery (see the transport kit's BaseDelivery). */
  ALREADY_SETTLED: 'ALREADY_SETTLED',
  /** An idempotency claim's lease ran out and another holder took it (shared stores' fencing). */
  LEASE_LOST: 'LEASE_LOST',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface OmnibusErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  details?: Record<string, unknown>;
}

export class OmnibusError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: OmnibusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details ?? {};
  }
}

/** A bad option or URL, found at start-up. `field` names the path of the offending option. */
export class ConfigError extends OmnibusError {
  readonly field: string;
  constructor(field: string, message: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.CONFIG, field ? `${field}: ${message}` : message, { ...options, retryable: false });
    this.field = field;
  }
}

export class ConnectionError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.CONNECTION, message, { retryable: true, ...options });
  }
}

export type PublishErrorCode =
  | typeof ErrorCode.UNROUTABLE
  | typeof ErrorCode.TOO_LARGE
  | typeof ErrorCode.TIMEOUT
  | typeof ErrorCode.OUTCOME_UNKNOWN
  | typeof ErrorCode.PUBLISH_FAILED
  | typeof ErrorCode.CLOSED;

export class PublishError extends OmnibusError {
  constructor(code: PublishErrorCode, message: string, options: OmnibusErrorOptions = {}) {
    super(code, message, {
      retryable:
        code === ErrorCode.TIMEOUT || code === ErrorCode.OUTCOME_UNKNOWN || code === ErrorCode.PUBLISH_FAILED,
      ...options,
    });
  }
}

/**
 * The bus (or the subscription) was closed: publish, publishBatch, subscribe and replay all reject with
 * this, code CLOSED. Not retryable on this bus: connect a new one.
 */
export class ClosedError extends OmnibusError {
  constructor(message = 'the bus is closed', options: OmnibusErrorOptions = {}) {
    super(ErrorCode.CLOSED, message, { ...options, retryable: false });
  }
}

/** Data that does not satisfy its message schema. Never retried. */
export class ValidationError extends OmnibusError {
  readonly issues: unknown[];
  constructor(message: string, options: OmnibusErrorOptions & { issues?: unknown[] } = {}) {
    super(ErrorCode.VALIDATION, message, { ...options, retryable: false });
    this.issues = options.issues ?? [];
  }
}

/** Bytes that cannot be turned into an envelope (malformed body, missing required attributes). */
export class DecodeError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.DECODE, message, { ...options, retryable: false });
  }
}

/** Thrown by a handler to send the message straight to dead-letter, skipping the remaining attempts. */
export class NonRetryableError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.NON_RETRYABLE, message, { ...options, retryable: false });
  }
}

/** An operation this transport cannot do (see its capabilities). */
export class UnsupportedError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.UNSUPPORTED, message, { ...options, retryable: false });
  }
}

export class HandlerTimeoutError extends OmnibusError {
  constructor(timeoutMs: number) {
    super(ErrorCode.HANDLER_TIMEOUT, `handler did not settle within ${timeoutMs} ms`, { retryable: true });
  }
}

/** The message was written by a newer producer than this consumer knows: retry, it is not poison. */
export class UnknownVersionError extends OmnibusError {
  constructor(type: string, version: number, known: number) {
    super(
      ErrorCode.UNKNOWN_VERSION,
      `${type} version ${version} is newer than the newest this consumer knows (${known})`,
      { retryable: true },
    );
  }
}

/**
 * A shared idempotency store refused to complete a claim: this holder's lease ran out and another
 * replica took the key (fencing). The work may have run twice; the other holder's outcome stands.
 */
export class LeaseLostError extends OmnibusError {
  readonly key: string;
  constructor(key: string, options: OmnibusErrorOptions = {}) {
    super(ErrorCode.LEASE_LOST, `the claim on ${key} is no longer held by this store (lease lost)`, {
      retryable: true,
      ...options,
    });
    this.key = key;
  }
}

export function isOmnibusError(err: unknown): err is OmnibusError {
  return err instanceof OmnibusError;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
