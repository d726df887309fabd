/**
 * The failure policy as one pure decision: what is known about a delivery at one step of the pipeline
 * (the facts) in, what the consumer must do with it (the action) out. No I/O, no clock, no randomness
 * of its own: the consumer gathers the facts and carries the action out, the tests read it as a table.
 * The root README's pipeline diagram is this function drawn; change both together.
 */
import { type Backoff, backoffDelay } from './backoff.js';
import type { CircuitState } from './circuit-breaker.js';
import type { DeadLetterReason } from './envelope.js';

/** The part of a subscription's options the decision reads. */
export interface FailurePolicy {
  /** Handler invocations allowed, the first included. */
  maxAttempts: number;
  backoff: Backoff;
  /** A retry delay up to this is waited out in-process; a longer one goes through the broker. */
  inProcessMaxDelayMs: number;
  /** A key's messages one at a time: its retries stay in-process so later messages wait behind them. */
  ordered: boolean;
  /** false: a message that would be dead-lettered is dropped (acked) instead, loudly. */
  deadLetter: boolean;
  unmatched: 'ack' | 'dead-letter';
}

/** What happened at the step the consumer asks about. */
export type Outcome =
  /** Taken off the scheduler's queue; nothing done yet. */
  | { readonly kind: 'queued' }
  /** The bytes are not an envelope, or its data cannot be decoded. */
  | { readonly kind: 'decode-failed' }
  /** No handler matches the type. */
  | { readonly kind: 'unmatched' }
  /** The data is invalid for a version this consumer knows (or has no upcaster). */
  | { readonly kind: 'invalid' }
  /** The idempotency claim on (group, id): ours now, already handled, or being handled elsewhere. */
  | { readonly kind: 'claim'; readonly claim: 'new' | 'done' | 'held' }
  /** About to run the handler; `tried`: this delivery has already had a handler run in this process. */
  | { readonly kind: 'ready'; readonly tried: boolean }
  /** The message was written by a newer producer than this consumer knows (the handler was not run). */
  | { readonly kind: 'newer-version' }
  /** The handler succeeded (and its claim, if any, was completed). */
  | { readonly kind: 'ok' }
  /** The handler failed: threw, rejected, or outlived its timeout (its promise may still be running). */
  | { readonly kind: 'failed'; readonly error: unknown; readonly timedOut: boolean };

/** The consumer's shutdown: running; closing while in-flight work may finish; past the drain time. */
export type Closing = 'no' | 'draining' | 'drain-over';

export interface Facts {
  outcome: Outcome;
  /**
   * Handler invocations so far, counted across deliveries (the attempts header): the one that produced
   * `outcome` included; before the handler ran, those of earlier deliveries and in-process retries.
   */
  attempts: number;
  /** The circuit breaker's state when the outcome happened ('closed' when there is no breaker). */
  breaker: CircuitState;
  closing: Closing;
}

/**
 * What the outcome tells the circuit breaker about the dependency behind the handler: it works
 * (success), it failed (failure), nothing (neutral: the message was at fault, or the run was cancelled;
 * a probe's slot passes on), or the breaker was not involved at this step (none).
 */
export type BreakerSignal = 'none' | 'success' | 'failure' | 'neutral';

export type Action =
  /** Go on to the next step of the pipeline (for `ready`: run the handler). */
  | { readonly kind: 'proceed'; readonly breaker: 'none' }
  /** Acknowledge; `as` says what to count it as. */
  | {
      readonly kind: 'ack';
      readonly as: 'handled' | 'duplicate' | 'filtered';
      readonly breaker: BreakerSignal;
    }
  /**
   * Run the handler again in this process after `delayMs` (`retry-in-process`), or hand the message to
   * the broker's delayed redelivery (`retry-via-broker`); `attempts` is the count from now on (one less
   * than the facts' when this failure cost no attempt).
   */
  | {
      readonly kind: 'retry-in-process' | 'retry-via-broker';
      readonly delayMs: number;
      readonly attempts: number;
      readonly breaker: BreakerSignal;
    }
  /** Dead-letter with `reason`, or, with `deadLetter: false`, drop it (ack) and log an error. */
  | {
      readonly kind: 'dead-letter' | 'drop';
      readonly reason: DeadLetterReason;
      readonly attempts: number;
      readonly breaker: BreakerSignal;
    }
  /** Give the message back to the broker as it came (no attempt recorded). */
  | { readonly kind: 'release'; readonly breaker: BreakerSignal };

// The actions of the common paths are shared constants: deciding a handled message allocates nothing.
const PROCEED: Action = { kind: 'proceed', breaker: 'none' };
const ACK_HANDLED: Action = { kind: 'ack', as: 'handled', breaker: 'success' };
const ACK_DUPLICATE: Action = { kind: 'ack', as: 'duplicate', breaker: 'none' };
const ACK_FILTERED: Action = { kind: 'ack', as: 'filtered', breaker: 'none' };
const RELEASE: Action = { kind: 'release', breaker: 'none' };
const RELEASE_NEUTRAL: Action = { kind: 'release', breaker: 'neutral' };
const RELEASE_FAILURE: Action = { kind: 'release', breaker: 'failure' };

/** Outcomes that carry no data, as shared constants for the consumer. */
export const Outcomes = {
  queued: { kind: 'queued' },
  decodeFailed: { kind: 'decode-failed' },
  unmatched: { kind: 'unmatched' },
  invalid: { kind: 'invalid' },
  claimNew: { kind: 'claim', claim: 'new' },
  claimDone: { kind: 'claim', claim: 'done' },
  claimHeld: { kind: 'claim', claim: 'held' },
  firstRun: { kind: 'ready', tried: false },
  rerun: { kind: 'ready', tried: true },
  newerVersion: { kind: 'newer-version' },
  ok: { kind: 'ok' },
} as const satisfies Record<string, Outcome>;

/**
 * Whether an error says retrying cannot help: `retryable === false` on any thrown object, an
 * `OmnibusError` (NonRetryableError, PublishError UNROUTABLE, …) or the user's own error alike.
 */
export function isNonRetryable(error: unknown): boolean {
  return (error as { retryable?: unknown } | null | undefined)?.retryable === false;
}

/**
 * Decides what to do with a delivery given the facts at one step. `random` feeds the backoff's jitter
 * (a number in [0, 1)); tests pass a constant.
 */
export function decide(facts: Facts, policy: FailurePolicy, random: () => number = Math.random): Action {
  const { outcome, attempts } = facts;
  switch (outcome.kind) {
    case 'queued':
      // Close began before this delivery was started: it goes back untouched.
      return facts.closing === 'no' ? PROCEED : RELEASE;
    case 'decode-failed':
      return giveUp(policy, 'decode', attempts, 'none');
    case 'unmatched':
      return policy.unmatched === 'ack' ? ACK_FILTERED : giveUp(policy, 'unknown-type', attempts, 'none');
    case 'invalid':
      // Invalid for a version we know: no retry can make it valid.
      return giveUp(policy, 'validation', attempts, 'none');
    case 'claim':
      if (outcome.claim === 'new') return PROCEED;
      if (outcome.claim === 'done') return ACK_DUPLICATE;
      // Running elsewhere right now: look again later, without spending an attempt. With `ordered`, in
      // process: through the broker the key's later messages would overtake it (the holder is often a
      // consumer that died with the claim, its lease not run out yet). Closing: hand it back instead.
      if (policy.ordered) {
        return facts.closing === 'no'
          ? retry('retry-in-process', delay(policy, 1, random), attempts, 'none')
          : RELEASE;
      }
      return retry('retry-via-broker', delay(policy, 1, random), attempts, 'none');
    case 'ready':
      // A delivery that started before close may finish (that is what draining is for), but gets no
      // further run after it; past the drain time nothing runs any more.
      if (facts.closing === 'drain-over' || (outcome.tried && facts.closing === 'draining')) {
        return RELEASE_NEUTRAL;
      }
      return PROCEED;
    case 'newer-version':
      // Not poison: a replica that knows the version may be deployed by the time the broker offers it
      // again, so it never waits in-process. It says nothing about the dependency either.
      if (attempts >= policy.maxAttempts) return giveUp(policy, 'max-attempts', attempts, 'neutral');
      return retry('retry-via-broker', delay(policy, attempts, random), attempts, 'neutral');
    case 'ok':
      return ACK_HANDLED;
    case 'failed':
      return afterFailure(facts, outcome.error, outcome.timedOut, policy, random);
  }
}

function afterFailure(
  facts: Facts,
  error: unknown,
  timedOut: boolean,
  policy: FailurePolicy,
  random: () => number,
): Action {
  const { attempts } = facts;
  const canWait = facts.closing === 'no';
  if (isNonRetryable(error)) {
    // The message itself is at fault: no retry helps, and the dependency is not to blame. Unless the
    // consumer is closing: then the close itself may be the cause (its signal was aborted past the drain
    // time, another bus it publishes through refused with CLOSED), which condemns nothing, so it goes
    // back to be judged again.
    return canWait ? giveUp(policy, 'non-retryable', attempts, 'neutral') : RELEASE_NEUTRAL;
  }
  if (facts.breaker !== 'closed') {
    // Failed while the circuit was open or probing: the dependency is down, not the message, so this
    // failure costs no attempt. In-process it waits for the circuit (the breaker holds it); a timed-out
    // handler may still be running, so its message goes through the broker instead.
    if (timedOut) return retry('retry-via-broker', delay(policy, attempts, random), attempts - 1, 'failure');
    return canWait ? retry('retry-in-process', 0, attempts - 1, 'failure') : RELEASE_FAILURE;
  }
  if (attempts >= policy.maxAttempts) return giveUp(policy, 'max-attempts', attempts, 'failure');
  const delayMs = delay(policy, attempts, random);
  // A timed-out handler may still be running: never run the message again beside it in this process.
  if (!timedOut && (policy.ordered || delayMs <= policy.inProcessMaxDelayMs)) {
    // Closing: no further run will be allowed, so hand it back now rather than wait the delay out.
    return canWait ? retry('retry-in-process', delayMs, attempts, 'failure') : RELEASE_FAILURE;
  }
  return retry('retry-via-broker', delayMs, attempts, 'failure');
}

function delay(policy: FailurePolicy, attempts: number, random: () => number): number {
  const ms = backoffDelay(policy.backoff, attempts, random);
  // initialMs 0 times a growth that overflowed to Infinity is NaN in floating point; it means no delay.
  return Number.isNaN(ms) ? 0 : ms;
}

function retry(
  kind: 'retry-in-process' | 'retry-via-broker',
  delayMs: number,
  attempts: number,
  breaker: BreakerSignal,
): Action {
  return { kind, delayMs, attempts, breaker };
}

function giveUp(
  policy: FailurePolicy,
  reason: DeadLetterReason,
  attempts: number,
  breaker: BreakerSignal,
): Action {
  return { kind: policy.deadLetter ? 'dead-letter' : 'drop', reason, attempts, breaker };
}
