/**
 * One deadline per publish, owned by the caller: the bus creates a PublishDeadline, the transport registers
 * how to withdraw what it still holds, and when the caller gives up the transport's verdict decides the
 * error: TIMEOUT when nothing was or will be written (a retry cannot duplicate), OUTCOME_UNKNOWN otherwise.
 */
import { ConnectionError, ErrorCode, PublishError } from '../errors.js';
import type { AbandonVerdict, PublishCall } from '../transport.js';

export class PublishDeadline implements PublishCall {
  readonly deadlineAt: number;
  #listener: (() => AbandonVerdict) | undefined = undefined;
  #abandoned = false;
  #settled = false;

  constructor(deadlineAt: number) {
    this.deadlineAt = deadlineAt;
  }

  get abandoned(): boolean {
    return this.#abandoned;
  }

  onAbandon(fn: () => AbandonVerdict): void {
    if (!this.#settled) this.#listener = fn;
  }

  /** The publish settled (resolved or rejected): nothing is left to withdraw. */
  settled(): void {
    this.#settled = true;
    this.#listener = undefined;
  }

  /** The caller gives up: asks the transport once, and returns its verdict ('unknown' if it gave none). */
  abandon(): AbandonVerdict {
    if (this.#abandoned || this.#settled) return 'unknown';
    this.#abandoned = true;
    const listener = this.#listener;
    this.#listener = undefined;
    if (!listener) return 'unknown';
    try {
      return listener() === 'withdrawn' ? 'withdrawn' : 'unknown';
    } catch {
      return 'unknown';
    }
  }
}

/** A deadline that never passes, for transport tests and internal sends that wait as long as needed. */
export function noDeadline(): PublishDeadline {
  return new PublishDeadline(Number.POSITIVE_INFINITY);
}

/** The error a publish whose caller gave up rejects with, given the transport's verdict. */
export function abandonedPublishError(
  topic: string,
  verdict: AbandonVerdict,
  why: { timeoutMs: number } | { aborted: unknown },
): PublishError {
  const cause = 'aborted' in why ? why.aborted : undefined;
  const when = 'aborted' in why ? 'aborted by the caller' : `not confirmed within ${why.timeoutMs} ms`;
  if (verdict === 'withdrawn') {
    return new PublishError(ErrorCode.TIMEOUT, `publish to ${topic} ${when}; it was withdrawn, never sent`, {
      cause,
      details: { outcome: 'not-sent' },
    });
  }
  return new PublishError(
    ErrorCode.OUTCOME_UNKNOWN,
    `publish to ${topic} ${when}; it may still be written, so a retry may duplicate it`,
    { cause, details: { outcome: 'unknown' } },
  );
}

/** The connect deadline every transport honours unless configured (`connectTimeoutMs`). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Waits for `connecting` at most `timeoutMs`; past that, runs `giveUp` (stop the client's retries, close
 * sockets) and rejects with a ConnectionError naming the transport. `describe` must not contain credentials.
 */
export function withConnectDeadline<T>(
  connecting: Promise<T>,
  timeoutMs: number,
  describe: string,
  giveUp: () => unknown,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        const stopped = giveUp();
        if (stopped && typeof (stopped as Promise<unknown>).catch === 'function')
          (stopped as Promise<unknown>).catch(() => {});
      } catch {
        // giving up is best effort; the deadline error below is what the caller needs
      }
      reject(new ConnectionError(`could not connect to ${describe} within ${timeoutMs} ms`));
    }, timeoutMs);
    connecting.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
