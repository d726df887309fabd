/**
 * The consumer pipeline, the same for every transport, in the documented order:
 * decode → validate/upcast → idempotency claim → handler (timeout, context) → ack | retry | dead-letter.
 */
import { setMaxListeners } from 'node:events';
import { type Backoff, backoffDelay } from './backoff.js';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker.js';
import type { CodecRegistry } from './codec.js';
import { runInMessageContext } from './context.js';
import { DeadlineQueue } from './deadline.js';
import { ControlHeader, type DeadLetterReason, type Envelope, type RawEnvelope } from './envelope.js';
import {
  DecodeError,
  errorMessage,
  HandlerTimeoutError,
  NonRetryableError,
  UnknownVersionError,
} from './errors.js';
import type { IdempotencyStore } from './idempotency.js';
import type { LogFields, Logger } from './logger.js';
import {
  type AnyHandler,
  type Handler,
  isTypedHandler,
  type MessageContext,
  type TypedHandler,
} from './message.js';
import type { Counters } from './metrics.js';
import type { ConsumeMiddleware } from './middleware.js';
import { isPattern, matchesPattern } from './pattern.js';
import { KeyedScheduler } from './scheduler.js';
import type { Delivery, Transport, TransportSubscription } from './transport.js';

export interface ConsumerPolicy {
  topic: string;
  group: string;
  handlers: Record<string, AnyHandler>;
  concurrency: number;
  ordered: boolean;
  maxAttempts: number;
  backoff: Backoff;
  inProcessMaxDelayMs: number;
  handlerTimeoutMs: number;
  deadLetter: boolean;
  unmatched: 'ack' | 'dead-letter';
  idempotency?: { store: IdempotencyStore; leaseMs: number; ttlMs: number } | undefined;
  circuitBreaker?: CircuitBreakerOptions | undefined;
}

export interface ConsumerDeps {
  transport: Transport;
  codecs: CodecRegistry;
  logger: Logger;
  counters: Counters;
  middleware: readonly ConsumeMiddleware[];
  /**
   * Told every settled outcome (the testing helpers listen here). Outcome objects are built only while
   * the set is not empty, so a consumer nobody watches allocates none.
   */
  outcomeListeners?: ReadonlySet<(outcome: ConsumeOutcome) => void> | undefined;
}

export type ConsumeOutcome =
  | { kind: 'handled'; envelope: Envelope; attempt: number; topic: string; group: string }
  | { kind: 'duplicate'; envelope: Envelope; topic: string; group: string }
  | {
      kind: 'retry-scheduled';
      envelope: Envelope;
      attempt: number;
      delayMs: number;
      topic: string;
      group: string;
    }
  | {
      kind: 'dead-lettered';
      envelope?: Envelope | undefined;
      id?: string | undefined;
      reason: DeadLetterReason;
      error: string;
      attempts: number;
      topic: string;
      group: string;
    }
  | { kind: 'filtered'; type: string; topic: string; group: string };

interface Route {
  typed?: TypedHandler<unknown> | undefined;
  fn: Handler<unknown>;
}

type InvokeOutcome = { ok: true } | { ok: false; error: unknown; timedOut: boolean };

/**
 * One handler invocation: the `ctx` the handler receives, its abort state and its deadline, in one object
 * (this runs for every message, so it allocates as little as it can). The AbortController is created
 * only when the handler reads `ctx.signal`; an abort that comes first is remembered and applied then.
 */
class Invocation implements MessageContext {
  readonly envelope: Envelope;
  readonly attempt: number;
  readonly redelivered: boolean;
  readonly receivedAt: number;
  readonly topic: string;
  readonly group: string;
  /** performance.now() when the handler was started. */
  readonly started: number;
  /** Settles the invocation's outcome; set once the handler returned a promise. */
  resolve: ((outcome: InvokeOutcome) => void) | undefined = undefined;
  timedOut = false;
  #controller: AbortController | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  constructor(envelope: Envelope, attempt: number, d: Delivery, topic: string, group: string) {
    this.envelope = envelope;
    this.attempt = attempt;
    this.redelivered = d.redelivered || attempt > 1;
    this.receivedAt = d.receivedAt;
    this.topic = topic;
    this.group = group;
    this.started = performance.now();
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

const OK_OUTCOME: InvokeOutcome = { ok: true };
const OK_PROMISE = Promise.resolve(OK_OUTCOME);

function failedOutcome(error: unknown): InvokeOutcome {
  return { ok: false, error, timedOut: false };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

const MAX_ERROR_HEADER = 1000;

/** One group subscription: owns the scheduler, the breaker and the transport subscription. */
export class Consumer {
  readonly policy: ConsumerPolicy;
  readonly #deps: ConsumerDeps;
  readonly #scheduler: KeyedScheduler;
  readonly #exact = new Map<string, Route>();
  readonly #patterns: [string, Route][] = [];
  readonly #breaker: CircuitBreaker | undefined;
  readonly #abort = new AbortController();
  /** Handler invocations under way: shutdown aborts their signals. */
  readonly #invocations = new Set<Invocation>();
  readonly #handlerDeadlines: DeadlineQueue;
  #sub: TransportSubscription | undefined;
  #closing = false;

  constructor(policy: ConsumerPolicy, deps: ConsumerDeps) {
    this.policy = policy;
    this.#deps = deps;
    this.#scheduler = new KeyedScheduler(policy.concurrency, policy.ordered);
    this.#handlerDeadlines = new DeadlineQueue(policy.handlerTimeoutMs);
    // Every running handler and retry wait listens for shutdown on this one signal.
    setMaxListeners(0, this.#abort.signal);
    for (const [key, h] of Object.entries(policy.handlers)) {
      const route: Route = isTypedHandler(h) ? { typed: h, fn: h.fn } : { fn: h };
      if (isPattern(key)) this.#patterns.push([key, route]);
      else this.#exact.set(key, route);
    }
    if (policy.circuitBreaker) {
      const user = policy.circuitBreaker.onStateChange;
      this.#breaker = new CircuitBreaker({
        ...policy.circuitBreaker,
        onStateChange: (state) => {
          // Stop fetching while the dependency is down; held messages keep their slots meanwhile.
          if (state === 'open') this.#sub?.pause();
          else if (state === 'closed') this.#sub?.resume();
          deps.logger.warn(
            { topic: policy.topic, group: policy.group, state },
            'circuit breaker state changed',
          );
          user?.(state);
        },
      });
    }
  }

  /** Reports an outcome, when someone listens (`this.#reporting?.({…})` builds the object only then). */
  get #reporting(): ((outcome: ConsumeOutcome) => void) | undefined {
    return this.#deps.outcomeListeners?.size ? this.#report : undefined;
  }

  readonly #report = (outcome: ConsumeOutcome): void => {
    for (const listener of this.#deps.outcomeListeners ?? []) listener(outcome);
  };

  get patterns(): string[] {
    return Object.keys(this.policy.handlers);
  }

  get circuitState(): string {
    return this.#breaker?.state ?? 'closed';
  }

  /** Deliveries accepted and not yet settled. */
  get inFlight(): number {
    return this.#scheduler.size;
  }

  attach(sub: TransportSubscription): void {
    this.#sub = sub;
  }

  /** The transport's callback: queue the delivery on its key's lane. */
  readonly onDelivery = (d: Delivery): void => {
    this.#deps.counters.consumed++;
    let raw: RawEnvelope | undefined;
    let decodeError: unknown;
    try {
      raw = this.#deps.transport.decode(d.wire);
    } catch (err) {
      decodeError = err;
    }
    this.#scheduler.submit(raw?.key, () => this.#process(d, raw, decodeError));
  };

  async close(drainTimeoutMs: number): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#sub?.pause();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.#scheduler.idle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), drainTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      this.#deps.logger.warn(
        { topic: this.policy.topic, group: this.policy.group, inFlight: this.inFlight },
        'drain timeout: unsettled messages go back to the broker',
      );
    }
    this.#abort.abort();
    for (const inv of this.#invocations) inv.abort(this.#abort.signal.reason);
    this.#breaker?.dispose();
    await this.#sub?.close();
  }

  #route(type: string): Route | undefined {
    const exact = this.#exact.get(type);
    if (exact) return exact;
    for (const [pattern, route] of this.#patterns) if (matchesPattern(pattern, type)) return route;
    return undefined;
  }

  #fields(raw: RawEnvelope | undefined, extra?: LogFields): LogFields {
    return {
      topic: this.policy.topic,
      group: this.policy.group,
      messageId: raw?.id,
      type: raw?.type,
      correlationId: raw?.correlationId,
      ...extra,
    };
  }

  #process(d: Delivery, raw: RawEnvelope | undefined, decodeError: unknown): Promise<void> {
    const run = this.#closing ? settleCall(() => d.release()) : this.#pipeline(d, raw, decodeError);
    return run.catch((err: unknown) => {
      // A settle action failed (broker unreachable): give the message back rather than lose it.
      this.#deps.logger.error(
        this.#fields(raw, { err: errorMessage(err) }),
        'could not settle message; releasing it',
      );
      return settleCall(() => d.release()).catch(() => {});
    });
  }

  async #pipeline(d: Delivery, raw: RawEnvelope | undefined, decodeError: unknown): Promise<void> {
    const { policy } = this;
    const previous = d.previousAttempts;
    if (!raw) return this.#deadLetter(d, undefined, 'decode', decodeError, previous);

    const route = this.#route(raw.type);
    if (!route) {
      if (policy.unmatched === 'dead-letter') {
        return this.#deadLetter(
          d,
          raw,
          'unknown-type',
          new DecodeError(`no handler for type ${raw.type}`),
          previous,
        );
      }
      this.#deps.counters.filtered++;
      this.#reporting?.({ kind: 'filtered', type: raw.type, topic: policy.topic, group: policy.group });
      return d.ack();
    }

    let data: unknown;
    let versionError: UnknownVersionError | undefined;
    try {
      const codec = route.typed?.definition.codec ?? this.#deps.codecs.require(raw.contentType);
      data = codec.decode(raw.data);
    } catch (err) {
      return this.#deadLetter(d, raw, 'decode', err, previous);
    }
    if (route.typed) {
      try {
        data = route.typed.definition.parse(data, raw.version);
      } catch (err) {
        if (err instanceof UnknownVersionError) versionError = err;
        else return this.#deadLetter(d, raw, 'validation', err, previous);
      }
    }
    const envelope = withData(raw, data);

    // A message this consumer cannot read yet takes no claim, so it must never drop someone else's.
    const idem = versionError ? undefined : policy.idempotency;
    const claimKey = idem ? `${policy.group}:${raw.id}` : '';
    if (idem) {
      const claim = await idem.store.claim(claimKey, idem.leaseMs);
      if (claim === 'done') {
        this.#deps.counters.duplicates++;
        await d.ack();
        this.#reporting?.({ kind: 'duplicate', envelope, topic: policy.topic, group: policy.group });
        return;
      }
      if (claim === 'held') {
        // Someone is running it right now; look again later without spending an attempt.
        const delay = backoffDelay(policy.backoff, 1);
        await d.retryLater(delay, this.#retryHeaders(d, previous, undefined));
        return;
      }
    }

    let attempts = previous;
    // Whether this delivery has had its go: a failure while the circuit is open gives its attempt back,
    // so `attempts` alone cannot say.
    let tried = false;
    let firstFailureAt = numberHeader(d.wire.headers[ControlHeader.firstFailureAt]);
    for (;;) {
      const probe = this.#breaker ? await this.#breaker.admit() : false;
      // Shutting down between in-process retries, or past the drain time while waiting on an open
      // circuit: hand the message back rather than run a handler after close.
      if (this.#closing && (tried || this.#abort.signal.aborted)) {
        if (probe) this.#breaker?.neutral();
        if (idem) await idem.store.release(claimKey);
        await d.release();
        return;
      }
      attempts++;
      tried = true;
      const outcome = versionError
        ? { ok: false as const, error: versionError, timedOut: false }
        : await this.#invoke(route, data, envelope, d, attempts, claimKey);
      if (outcome.ok) {
        this.#breaker?.success();
        await d.ack();
        this.#deps.counters.handled++;
        this.#reporting?.({
          kind: 'handled',
          envelope,
          attempt: attempts,
          topic: policy.topic,
          group: policy.group,
        });
        return;
      }
      const err = outcome.error;
      // A message rejected for itself says nothing about the dependency: a probe must not stay in flight.
      if (probe && (versionError || err instanceof NonRetryableError)) this.#breaker?.neutral();
      this.#deps.counters.failures++;
      const now = Date.now();
      firstFailureAt ??= now;
      this.#deps.logger.warn(
        this.#fields(raw, { attempt: attempts, err: errorMessage(err) }),
        'handler failed',
      );
      // A timed-out handler keeps its claim until its promise settles (see #invoke).
      const releaseClaim = idem !== undefined && !outcome.timedOut;

      if (err instanceof NonRetryableError) {
        if (releaseClaim) await idem.store.release(claimKey);
        return this.#deadLetter(d, raw, 'non-retryable', err, attempts, firstFailureAt, envelope);
      }
      const whileOpen = versionError ? false : (this.#breaker?.failure() ?? false);
      if (whileOpen) {
        // The dependency is down, not the message: this failure costs no attempt.
        attempts--;
        continue;
      }
      if (attempts >= policy.maxAttempts) {
        if (releaseClaim) await idem.store.release(claimKey);
        return this.#deadLetter(d, raw, 'max-attempts', err, attempts, firstFailureAt, envelope);
      }
      const delay = backoffDelay(policy.backoff, attempts);
      // A version this process does not know cannot succeed here: let the broker offer it again later
      // (perhaps to an upgraded replica) instead of spending the attempts in-process.
      const inProcess =
        !outcome.timedOut && !versionError && (policy.ordered || delay <= policy.inProcessMaxDelayMs);
      if (inProcess) {
        this.#deps.counters.retried++;
        await sleep(delay, this.#abort.signal);
        continue;
      }
      if (releaseClaim) await idem.store.release(claimKey);
      const headers = this.#retryHeaders(d, attempts, firstFailureAt, now, err);
      await d.retryLater(delay, headers);
      this.#deps.counters.retried++;
      this.#reporting?.({
        kind: 'retry-scheduled',
        envelope,
        attempt: attempts,
        delayMs: delay,
        topic: policy.topic,
        group: policy.group,
      });
      return;
    }
  }

  /**
   * Runs the handler once, in the message's context, with the consumer's handler timeout. Resolves (never
   * rejects) with the outcome. The timeouts of all of this consumer's invocations share one timer.
   */
  #invoke(
    route: Route,
    data: unknown,
    envelope: Envelope,
    d: Delivery,
    attempt: number,
    claimKey: string,
  ): Promise<InvokeOutcome> {
    const { policy } = this;
    const inv = new Invocation(envelope, attempt, d, policy.topic, policy.group);
    this.#invocations.add(inv);
    let result: unknown;
    try {
      result = runInMessageContext(envelope, () => this.#callHandler(route, data, inv));
    } catch (error) {
      this.#finish(inv);
      return Promise.resolve(failedOutcome(error));
    }
    // A handler that returned without a promise has finished.
    if (!isThenable(result)) {
      this.#finish(inv);
      return this.#completed(claimKey);
    }
    const outcome = new Promise<InvokeOutcome>((resolve) => {
      inv.resolve = resolve;
    });
    const deadline = this.#handlerDeadlines.start(inv.started, () => {
      inv.timedOut = true;
      this.#finish(inv);
      const error = new HandlerTimeoutError(policy.handlerTimeoutMs);
      inv.abort(error);
      inv.resolve!({ ok: false, error, timedOut: true });
    });
    result.then(
      () => {
        deadline.done();
        if (!inv.timedOut) this.#finish(inv);
        // A late handler (past its timeout) kept its claim so a redelivery could not run beside it: it
        // completes now. Its outcome was already given, so this second resolve changes nothing.
        this.#completed(claimKey).then(inv.resolve);
      },
      (error: unknown) => {
        deadline.done();
        if (inv.timedOut) {
          policy.idempotency?.store.release(claimKey).catch(() => {});
          return;
        }
        this.#finish(inv);
        inv.resolve!(failedOutcome(error));
      },
    );
    return outcome;
  }

  #finish(inv: Invocation): void {
    this.#invocations.delete(inv);
    this.#deps.counters.processingMs += performance.now() - inv.started;
  }

  /** The handler succeeded: records it with the idempotency store, if any. */
  #completed(claimKey: string): Promise<InvokeOutcome> {
    const idem = this.policy.idempotency;
    if (!idem) return OK_PROMISE;
    return idem.store.complete(claimKey, idem.ttlMs).then(() => OK_OUTCOME, failedOutcome);
  }

  #callHandler(route: Route, data: unknown, ctx: MessageContext): unknown {
    const mw = this.#deps.middleware;
    if (mw.length === 0) return route.fn(data, ctx);
    let i = -1;
    const next = async (): Promise<void> => {
      i++;
      const m = mw[i];
      if (m) await m(ctx, next);
      else await route.fn(data, ctx);
    };
    return next();
  }

  #retryHeaders(
    d: Delivery,
    attempts: number,
    firstFailureAt: number | undefined,
    now?: number,
    err?: unknown,
  ): Record<string, string> {
    const h: Record<string, string> = { [ControlHeader.attempts]: String(attempts) };
    const first = firstFailureAt ?? numberHeader(d.wire.headers[ControlHeader.firstFailureAt]);
    if (first !== undefined) h[ControlHeader.firstFailureAt] = String(first);
    if (now !== undefined) h[ControlHeader.lastFailureAt] = String(now);
    if (err !== undefined) h[ControlHeader.lastError] = truncate(errorMessage(err));
    return h;
  }

  async #deadLetter(
    d: Delivery,
    raw: RawEnvelope | undefined,
    reason: DeadLetterReason,
    err: unknown,
    attempts: number,
    firstFailureAt?: number,
    envelope?: Envelope,
  ): Promise<void> {
    const { policy } = this;
    const now = Date.now();
    const error = truncate(errorMessage(err));
    const headers: Record<string, string> = {
      [ControlHeader.reason]: reason,
      [ControlHeader.error]: error,
      [ControlHeader.attempts]: String(attempts),
      [ControlHeader.lastFailureAt]: String(now),
      [ControlHeader.firstFailureAt]: String(firstFailureAt ?? now),
      [ControlHeader.originalTopic]: policy.topic,
      [ControlHeader.originalGroup]: policy.group,
      [ControlHeader.deadLetteredAt]: String(now),
    };
    const fields = this.#fields(raw, { reason, error, attempts });
    if (policy.deadLetter) {
      await d.deadLetter(headers);
      this.#deps.logger.warn(fields, 'message dead-lettered');
    } else {
      // The user opted out of dead-lettering: the message is dropped, loudly.
      await d.ack();
      this.#deps.logger.error(fields, 'message dropped after failure (deadLetter: false)');
    }
    this.#deps.counters.deadLettered++;
    this.#reporting?.({
      kind: 'dead-lettered',
      envelope: envelope ?? (raw ? { ...raw, data: raw.data } : undefined),
      id: raw?.id,
      reason,
      error,
      attempts,
      topic: policy.topic,
      group: policy.group,
    });
  }
}

/** A transport's settle call as a promise, even when it throws instead of rejecting. */
function settleCall(fn: () => Promise<void>): Promise<void> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err);
  }
}

/** The decoded envelope: the wire envelope's fields with the data decoded (fields listed, not spread). */
function withData(raw: RawEnvelope, data: unknown): Envelope {
  return {
    id: raw.id,
    type: raw.type,
    source: raw.source,
    time: raw.time,
    key: raw.key,
    correlationId: raw.correlationId,
    causationId: raw.causationId,
    traceparent: raw.traceparent,
    tracestate: raw.tracestate,
    version: raw.version,
    contentType: raw.contentType,
    headers: raw.headers,
    data,
  };
}

function truncate(s: string): string {
  return s.length > MAX_ERROR_HEADER ? `${s.slice(0, MAX_ERROR_HEADER - 1)}…` : s;
}

function numberHeader(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
