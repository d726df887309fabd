/**
 * The consumer pipeline, the same for every transport, in the documented order:
 * decode → validate/upcast → idempotency claim → handler (timeout, context) → ack | retry | dead-letter.
 * What to do at each step is the failure policy's decision (policy.ts); this module gathers the facts
 * and carries the decisions out.
 */
import { setMaxListeners } from 'node:events';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker.js';
import type { CodecRegistry } from './codec.js';
import { runInMessageContext } from './context.js';
import { DeadlineQueue } from './deadline.js';
import { ControlHeader, type DeadLetterReason, type Envelope, type RawEnvelope } from './envelope.js';
import { DecodeError, errorMessage, HandlerTimeoutError, UnknownVersionError } from './errors.js';
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
import {
  type Action,
  type BreakerSignal,
  decide,
  type Facts,
  type FailurePolicy,
  type Outcome,
  Outcomes,
} from './policy.js';
import { KeyedScheduler } from './scheduler.js';
import type { ProcessHandle, Telemetry } from './telemetry/telemetry.js';
import type { Delivery, Transport, TransportSubscription } from './transport.js';

/** A subscription's settings: the failure policy's (see policy.ts) and the consumer's own. */
export interface ConsumerPolicy extends FailurePolicy {
  topic: string;
  group: string;
  handlers: Record<string, AnyHandler>;
  concurrency: number;
  handlerTimeoutMs: number;
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
  /** telemetry: spans and histograms per handling, when `connect({ telemetry })`. */
  telemetry?: Telemetry | undefined;
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

/** What one handler run came to, in the policy's terms. */
type InvokeOutcome = typeof Outcomes.ok | Extract<Outcome, { kind: 'failed' }>;

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
  readonly processingStartedAt: number;
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

  constructor(
    envelope: Envelope,
    attempt: number,
    d: Delivery,
    topic: string,
    group: string,
    processingStartedAt: number,
  ) {
    this.envelope = envelope;
    this.attempt = attempt;
    this.redelivered = d.redelivered || attempt > 1;
    this.receivedAt = d.receivedAt;
    this.processingStartedAt = processingStartedAt;
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

const OK_OUTCOME: InvokeOutcome = Outcomes.ok;
const OK_PROMISE = Promise.resolve(OK_OUTCOME);

function failedOutcome(error: unknown): InvokeOutcome {
  return { kind: 'failed', error, timedOut: false };
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
  readonly #facts: Facts = { outcome: Outcomes.queued, attempts: 0, breaker: 'closed', closing: 'no' };

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
    const start = this.#decide(Outcomes.queued, d.previousAttempts);
    const run =
      start.kind === 'release' ? settleCall(() => d.release()) : this.#pipeline(d, raw, decodeError);
    return run.catch((err: unknown) => {
      // A settle action failed (broker unreachable): give the message back rather than lose it.
      this.#deps.logger.error(
        this.#fields(raw, { err: errorMessage(err) }),
        'could not settle message; releasing it',
      );
      return settleCall(() => d.release()).catch(() => {});
    });
  }

  /**
   * Asks the failure policy (policy.ts) what to do. The facts object is shared by all of this consumer's
   * messages: it is filled and read synchronously here, so no message sees another's.
   */
  #decide(outcome: Outcome, attempts: number): Action {
    const facts = this.#facts;
    facts.outcome = outcome;
    facts.attempts = attempts;
    facts.breaker = this.#breaker?.state ?? 'closed';
    facts.closing = this.#closing ? (this.#abort.signal.aborted ? 'drain-over' : 'draining') : 'no';
    const action = decide(facts, this.policy);
    facts.outcome = Outcomes.queued; // holds no error object between decisions
    return action;
  }

  /** Gathers the facts step by step and carries out what the policy decides; decides nothing itself. */
  async #pipeline(d: Delivery, raw: RawEnvelope | undefined, decodeError: unknown): Promise<void> {
    const { policy } = this;
    const previous = d.previousAttempts;
    if (!raw) return this.#giveUp(this.#decide(Outcomes.decodeFailed, previous), d, undefined, decodeError);

    const route = this.#route(raw.type);
    if (!route) {
      const action = this.#decide(Outcomes.unmatched, previous);
      if (action.kind !== 'ack') {
        return this.#giveUp(action, d, raw, new DecodeError(`no handler for type ${raw.type}`));
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
      return this.#giveUp(this.#decide(Outcomes.decodeFailed, previous), d, raw, err);
    }
    if (route.typed) {
      try {
        data = route.typed.definition.parse(data, raw.version);
      } catch (err) {
        if (err instanceof UnknownVersionError) versionError = err;
        else return this.#giveUp(this.#decide(Outcomes.invalid, previous), d, raw, err);
      }
    }
    const envelope = withData(raw, data);

    // A message this consumer cannot read yet takes no claim, so it must never drop someone else's.
    const idem = versionError ? undefined : policy.idempotency;
    const claimKey = idem ? `${policy.group}:${raw.id}` : '';
    // Held elsewhere with `ordered`: the claim is tried again here until it is free, done or closing.
    for (let claiming = idem !== undefined; claiming; ) {
      const claim = await idem!.store.claim(claimKey, idem!.leaseMs);
      const action = this.#decide(
        claim === 'new' ? Outcomes.claimNew : claim === 'done' ? Outcomes.claimDone : Outcomes.claimHeld,
        previous,
      );
      if (action.kind === 'ack') {
        this.#deps.counters.duplicates++;
        await d.ack();
        this.#reporting?.({ kind: 'duplicate', envelope, topic: policy.topic, group: policy.group });
        return;
      }
      if (action.kind === 'retry-via-broker') {
        await d.retryLater(action.delayMs, this.#retryHeaders(d, action.attempts, undefined));
        return;
      }
      if (action.kind === 'release') return d.release();
      if (action.kind === 'retry-in-process') await sleep(action.delayMs, this.#abort.signal);
      else claiming = false;
    }

    let attempts = previous;
    // Whether this delivery has had its go: a failure while the circuit is open gives its attempt back,
    // so `attempts` alone cannot say.
    let tried = false;
    let firstFailureAt = numberHeader(d.wire.headers[ControlHeader.firstFailureAt]);
    // Processing time of the last invocation, for the dead-letter metadata.
    let processingStartedAt: number | undefined;
    for (;;) {
      const probe = this.#breaker ? await this.#breaker.admit() : false;
      let action = this.#decide(tried ? Outcomes.rerun : Outcomes.firstRun, attempts);
      let error: unknown;
      let now = 0;
      // A timed-out handler keeps its claim until its promise settles (see #invoke).
      let keepClaim = false;
      let traced: ProcessHandle | undefined; // telemetry
      if (action.kind === 'proceed') {
        attempts++;
        tried = true;
        processingStartedAt = Date.now();
        traced = this.#deps.telemetry?.startProcess(envelope, d, policy.topic, policy.group, attempts);
        const outcome = versionError
          ? Outcomes.newerVersion
          : await this.#invoke(route, data, envelope, d, attempts, claimKey, processingStartedAt, traced);
        if (outcome.kind !== 'ok') {
          error = outcome.kind === 'failed' ? outcome.error : versionError;
          keepClaim = outcome.kind === 'failed' && outcome.timedOut;
          this.#deps.counters.failures++;
          now = Date.now();
          firstFailureAt ??= now;
          this.#deps.logger.warn(
            this.#fields(raw, { attempt: attempts, err: errorMessage(error) }),
            'handler failed',
          );
        }
        action = this.#decide(outcome, attempts);
      }
      if (this.#breaker) tellBreaker(this.#breaker, action.breaker, probe);
      if (traced) this.#deps.telemetry!.endProcess(traced, action, error); // telemetry

      if (action.kind === 'ack') {
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
      if (action.kind === 'retry-in-process') {
        // A retry that costs no attempt is a wait for the circuit, not a retry.
        if (action.attempts === attempts) this.#deps.counters.retried++;
        attempts = action.attempts;
        await sleep(action.delayMs, this.#abort.signal);
        continue;
      }
      // Every other action hands the message on: the claim goes first, so a redelivery can run.
      if (idem && !keepClaim) await idem.store.release(claimKey);
      if (action.kind === 'release') return d.release();
      if (action.kind !== 'retry-via-broker') {
        return this.#giveUp(action, d, raw, error, firstFailureAt, envelope, processingStartedAt);
      }
      await d.retryLater(action.delayMs, this.#retryHeaders(d, action.attempts, firstFailureAt, now, error));
      this.#deps.counters.retried++;
      this.#reporting?.({
        kind: 'retry-scheduled',
        envelope,
        attempt: action.attempts,
        delayMs: action.delayMs,
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
    processingStartedAt: number,
    traced: ProcessHandle | undefined,
  ): Promise<InvokeOutcome> {
    const { policy } = this;
    const inv = new Invocation(envelope, attempt, d, policy.topic, policy.group, processingStartedAt);
    this.#invocations.add(inv);
    let result: unknown;
    try {
      result = traced
        ? this.#deps.telemetry!.runHandler(traced, envelope, () => this.#callHandler(route, data, inv)) // telemetry
        : runInMessageContext(envelope, () => this.#callHandler(route, data, inv));
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
      inv.resolve!({ kind: 'failed', error, timedOut: true });
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

  /**
   * The handler succeeded: records it with the idempotency store, if any. A store that fails to record
   * it does not make the message fail: retrying would run a handler that already succeeded again, which
   * is what the store is there to prevent. The message is acknowledged and the failure logged; the claim
   * stays held until its lease ends, so only a duplicate arriving after that could run the handler again.
   */
  #completed(claimKey: string): Promise<InvokeOutcome> {
    const idem = this.policy.idempotency;
    if (!idem) return OK_PROMISE;
    return idem.store.complete(claimKey, idem.ttlMs).then(
      () => OK_OUTCOME,
      (err: unknown) => {
        this.#deps.logger.warn(
          { topic: this.policy.topic, group: this.policy.group, key: claimKey, err: errorMessage(err) },
          'handled, but the idempotency store could not record it; acknowledging anyway',
        );
        return OK_OUTCOME;
      },
    );
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

  /** Carries out a dead-letter or drop decision (any other action here is a bug in the caller). */
  async #giveUp(
    action: Action,
    d: Delivery,
    raw: RawEnvelope | undefined,
    err: unknown,
    firstFailureAt?: number,
    envelope?: Envelope,
    processingStartedAt?: number,
  ): Promise<void> {
    if (action.kind !== 'dead-letter' && action.kind !== 'drop') {
      throw new Error(`the failure policy decided ${action.kind} where it gives up`);
    }
    const { policy } = this;
    const { reason, attempts } = action;
    const now = Date.now();
    const error = truncate(errorMessage(err));
    // `attempt` as on every other line about a message; `attempts` kept for existing log queries.
    const fields = this.#fields(raw, { reason, error, attempts, attempt: attempts });
    if (action.kind === 'dead-letter') {
      const times: Record<string, string> = {};
      if (raw) times[ControlHeader.eventTime] = String(raw.time);
      if (processingStartedAt !== undefined) {
        times[ControlHeader.processingStartedAt] = String(processingStartedAt);
      }
      await d.deadLetter({
        ...times,
        [ControlHeader.reason]: reason,
        [ControlHeader.error]: error,
        [ControlHeader.attempts]: String(attempts),
        [ControlHeader.lastFailureAt]: String(now),
        [ControlHeader.firstFailureAt]: String(firstFailureAt ?? now),
        [ControlHeader.originalTopic]: policy.topic,
        [ControlHeader.originalGroup]: policy.group,
        [ControlHeader.deadLetteredAt]: String(now),
      });
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

/** Passes what an outcome says about the dependency to the breaker (neutral matters only to a probe). */
function tellBreaker(breaker: CircuitBreaker, signal: BreakerSignal, probe: boolean): void {
  if (signal === 'success') breaker.success();
  else if (signal === 'failure') breaker.failure();
  else if (signal === 'neutral' && probe) breaker.neutral();
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
