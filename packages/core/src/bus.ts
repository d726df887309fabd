/** The Bus: `connect()` returns one, and services publish and subscribe through it. */

import type { Span as OtelSpan } from '@opentelemetry/api';
import type { BackoffOptions } from './backoff.js';
import type { CircuitBreakerOptions } from './circuit-breaker.js';
import { type ClaimCheckOptions, claimCheck } from './claim-check.js';
import { type Codec, CodecRegistry } from './codec.js';
import { type ConsumeOutcome, Consumer, type ConsumerDeps, type ConsumerPolicy } from './consumer.js';
import { childTraceparent, currentContext } from './context.js';
import { type Deadline, DeadlineQueue } from './deadline.js';
import { type Envelope, type RawEnvelope, type WireMessage, wireSize } from './envelope.js';
import {
  ClosedError,
  ConfigError,
  ErrorCode,
  OmnibusError,
  PublishError,
  UnsupportedError,
} from './errors.js';
import type { IdempotencyStore } from './idempotency.js';
import { abandonedPublishError, PublishDeadline } from './kit/publish.js';
import { type Logger, silentLogger } from './logger.js';
import type { AnyHandler, AnyMessageDefinition, MessageDefinition } from './message.js';
import { type Counters, newCounters } from './metrics.js';
import type { ConsumeMiddleware, Middleware, PublishMiddleware } from './middleware.js';
import { Operations } from './operations.js';
import {
  busOptionsSchema,
  checkBatchItemOptions,
  checkPublishOptions,
  connectSchema,
  parseOptions,
  publishCallSchema,
  replaySchema,
  subscribeSchema,
} from './options.js';
import { redactText } from './redact.js';
import { resolveTransport } from './resolve.js';
import { Telemetry, type TelemetryOptions } from './telemetry/telemetry.js';
import type {
  HealthReport,
  ReplayFrom,
  SubscribeSpec,
  Transport,
  TransportStats,
  TransportSubscription,
} from './transport.js';
import { uuidv7 } from './uuid.js';

export interface ConnectOptions {
  /** A transport instance (e.g. `rabbitmq({ url })`) or a URL whose scheme picks the adapter package. */
  transport: Transport | string;
  /** This service's name: the `source` of everything it publishes. */
  service: string;
  logger?: Logger;
  codecs?: Codec[];
  middleware?: Middleware[];
  /** A publish resolves or rejects within this time, even during an outage (default 10 s). */
  publishTimeoutMs?: number;
  /** Default drain time for `close()` (default 30 s). */
  drainTimeoutMs?: number;
  /** Options for the adapter when `transport` is a URL (validated strictly by the adapter). */
  transportOptions?: Record<string, unknown>;
  /** Large payloads by reference: the transport is wrapped with `claimCheck(transport, this)`. */
  claimCheck?: ClaimCheckOptions;
  /** OpenTelemetry traces and metrics: pass `{ api }` (`import * as api from '@opentelemetry/api'`). */
  telemetry?: TelemetryOptions;
}

/** How long one publish (or one batch) may take, and how the caller can give up on it. */
export interface PublishCallOptions {
  /**
   * Gives up on the publish when aborted, exactly as its deadline would: an already-aborted signal rejects
   * at once and sends nothing; later, the rejection is TIMEOUT (withdrawn, never sent) or OUTCOME_UNKNOWN
   * (a retry may duplicate), with the signal's reason as `cause`.
   */
  signal?: AbortSignal;
  /** This call's deadline instead of the bus's `publishTimeoutMs` (still the only deadline it has). */
  timeoutMs?: number;
}

/** The envelope fields a caller may set on one message. */
export interface MessagePublishOptions {
  key?: string;
  id?: string;
  headers?: Record<string, string>;
  correlationId?: string;
  causationId?: string;
  /** Event time in ms (default now). */
  time?: number;
  contentType?: string;
}

export interface PublishOptions extends MessagePublishOptions, PublishCallOptions {}

/** One message of `publishBatch`: typed (a definition and its data) or untyped. */
export type BatchItem =
  | { definition: AnyMessageDefinition; data: unknown; options?: MessagePublishOptions }
  | (UntypedMessage & { options?: MessagePublishOptions });

/** A message without a definition: a type and plain data. */
export interface UntypedMessage {
  type: string;
  data: unknown;
  version?: number;
}

export interface SubscribeOptions {
  topic: string;
  group: string;
  /** Handlers by message type or pattern (`order.*`, `#`). Use `Def.handle(fn)` for typed, validated data. */
  handlers: Record<string, AnyHandler>;
  /** Handlers running at once (default 8). */
  concurrency?: number;
  /** Per-key order: a key's messages run one at a time, retries included (default false). */
  ordered?: boolean;
  /** Unsettled messages the transport may hand over (default 2 × concurrency). */
  prefetch?: number;
  retry?: { attempts?: number; backoff?: BackoffOptions; inProcessMaxDelayMs?: number };
  handlerTimeoutMs?: number;
  /** Dead-letter messages that cannot be processed (default true; false drops them with an error log). */
  deadLetter?: boolean;
  /** What to do with a message whose type no handler matches (default 'ack': it is not for this group). */
  unmatched?: 'ack' | 'dead-letter';
  idempotency?: { store: IdempotencyStore; leaseMs?: number; ttlMs?: number };
  circuitBreaker?: CircuitBreakerOptions;
  /** Where a brand-new group starts reading, where the broker keeps history (Kafka). */
  startFrom?: 'earliest' | 'latest';
  /** Single active consumer across processes, for group-wide order where the broker supports it. */
  exclusive?: boolean;
}

export interface ReplayOptions {
  topic: string;
  from: ReplayFrom;
  handlers: Record<string, AnyHandler>;
  /** Handlers running at once (default 1: history is read in order). */
  concurrency?: number;
  handlerTimeoutMs?: number;
}

/** A running subscription or replay. `await using sub = await bus.subscribe(…)` closes it at scope end. */
export interface Subscription extends AsyncDisposable {
  readonly topic: string;
  readonly group: string;
  /** Stops fetching, lets in-flight handlers finish (up to drainTimeoutMs), then detaches. */
  close(options?: { drainTimeoutMs?: number }): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

export interface BusHealth {
  ok: boolean;
  transport: HealthReport;
  subscriptions: { topic: string; group: string; circuit: string; inFlight: number }[];
}

type OutcomeListener = (o: ConsumeOutcome) => void;

interface Draft {
  envelope: Envelope;
  /** The definition's codec; else chosen by the envelope's content type once middleware has run. */
  codec: Codec | undefined;
  options: PublishOptions;
}

interface Prepared {
  id: string;
  message: WireMessage;
  options: PublishOptions;
  raw: RawEnvelope;
  /** telemetry: the producer span, on the prepared (slow) path only when tracing. */
  span?: OtelSpan | undefined;
}

/** Shared by every publish without options, so none allocates an empty object. */
const NO_OPTIONS: PublishOptions = Object.freeze({});

export class Bus implements AsyncDisposable {
  readonly service: string;
  readonly transport: Transport;
  readonly logger: Logger;
  readonly #codecs: CodecRegistry;
  readonly #publishMw: PublishMiddleware[];
  readonly #consumeMw: ConsumeMiddleware[];
  readonly #publishDeadlines: DeadlineQueue;
  readonly #drainTimeoutMs: number;
  readonly #counters: Counters = newCounters();
  readonly #consumers = new Set<Consumer>();
  readonly #outcomeListeners = new Set<OutcomeListener>();
  readonly #publishListeners = new Set<(e: Envelope, topic: string) => void>();
  /** No new subscriptions once close() has begun; publishes go on until the handlers have drained. */
  #closing = false;
  #closed = false;
  #closingDone: Promise<void> | undefined;
  /** telemetry: undefined unless `connect({ telemetry })`; the hot paths only test it. */
  readonly #telemetry: Telemetry | undefined;

  /** @internal use `connect()` */
  constructor(transport: Transport, options: Omit<ConnectOptions, 'transport' | 'transportOptions'>) {
    const o = parseOptions(busOptionsSchema, options);
    this.transport = transport;
    this.service = o.service;
    this.logger = o.logger ?? silentLogger;
    this.#codecs = new CodecRegistry(o.codecs);
    this.#publishDeadlines = new DeadlineQueue(o.publishTimeoutMs);
    this.#drainTimeoutMs = o.drainTimeoutMs;
    this.#publishMw = (o.middleware ?? []).flatMap((m) => (m.publish ? [m.publish] : []));
    this.#consumeMw = (o.middleware ?? []).flatMap((m) => (m.consume ? [m.consume] : []));
    this.#telemetry = o.telemetry
      ? new Telemetry(o.telemetry, transport.name, this.service, {
          transport,
          subscriptions: () => [...this.#consumers].map((c) => c.policy),
          counters: () => this.#counters,
        })
      : undefined;
  }

  /** A snapshot of this process's counters. */
  get counters(): Readonly<Counters> {
    return { ...this.#counters };
  }

  /** Publishes one message; resolves with its id once the broker has accepted it. */
  publish<T>(
    topic: string,
    definition: MessageDefinition<T>,
    data: T,
    options?: PublishOptions,
  ): Promise<{ id: string }>;
  publish(topic: string, message: UntypedMessage, options?: PublishOptions): Promise<{ id: string }>;
  publish(topic: string, a: unknown, b?: unknown, c?: PublishOptions): Promise<{ id: string }> {
    // Without publish middleware everything before the broker call is synchronous: no extra promises.
    // telemetry: a traced publish takes the prepared path, which carries its span.
    if (this.#publishMw.length > 0 || this.#telemetry?.tracing) {
      return this.#publishThroughMiddleware(topic, a, b, c);
    }
    let prepared: Prepared;
    try {
      prepared = this.#encode(topic, this.#envelope(topic, a, b, c));
    } catch (err) {
      return Promise.reject(err);
    }
    const o = prepared.options;
    return this.#send(topic, [prepared.message], { id: prepared.id }, o.signal, o.timeoutMs);
  }

  async #publishThroughMiddleware(
    topic: string,
    a: unknown,
    b: unknown,
    c: PublishOptions | undefined,
  ): Promise<{ id: string }> {
    const prepared = await this.#prepare(topic, a, b, c, 'send');
    const o = prepared.options;
    const sent = this.#send(topic, [prepared.message], { id: prepared.id }, o.signal, o.timeoutMs);
    if (!prepared.span) return sent;
    // telemetry: the producer span ends with the broker's answer.
    const t = this.#telemetry!;
    return sent.then(
      (r) => {
        t.endProducer(prepared.span);
        return r;
      },
      (err: unknown) => {
        t.endProducer(prepared.span, err);
        throw err;
      },
    );
  }

  /**
   * Publishes several messages in one broker call where the broker batches. Every message is encoded and
   * size-checked first, so a bad one rejects the batch before anything is sent. The batch has one deadline
   * and one optional signal (`options`); each item's own options set only its envelope fields.
   */
  async publishBatch(
    topic: string,
    items: readonly BatchItem[],
    options?: PublishCallOptions,
  ): Promise<{ ids: string[] }> {
    if (this.#closed) throw new ClosedError();
    const call = options === undefined ? NO_OPTIONS : parseOptions(publishCallSchema, options, 'options');
    if (call.signal?.aborted) throw this.#abortedBeforeSend(topic, items.length, call.signal);
    for (let i = 0; i < items.length; i++) checkBatchItemOptions(items[i]?.options, i);
    const prepared = await Promise.all(
      items.map((item) =>
        'definition' in item
          ? this.#prepare(topic, item.definition, item.data, item.options, 'create')
          : this.#prepare(topic, item, item.options, undefined, 'create'),
      ),
    );
    const ids = prepared.map((p) => p.id);
    if (prepared.length === 0) return { ids };
    // telemetry: one send span linked to each message's create span.
    const t = this.#telemetry;
    let span: OtelSpan | undefined;
    if (t?.tracing) {
      for (const p of prepared) t.endProducer(p.span);
      span = t.startBatchSend(
        topic,
        prepared.map((p) => p.span),
      );
    }
    try {
      const result = await this.#send(
        topic,
        prepared.map((p) => p.message),
        { ids },
        call.signal,
        call.timeoutMs,
      );
      t?.endProducer(span);
      return result;
    } catch (err) {
      t?.endProducer(span, err);
      throw err;
    }
  }

  /** A publish whose signal was aborted before anything was handed to the transport: never sent. */
  #abortedBeforeSend(topic: string, count: number, signal: AbortSignal): PublishError {
    this.#counters.publishFailed += count;
    return abandonedPublishError(topic, 'withdrawn', { aborted: signal.reason });
  }

  async #prepare(
    topic: string,
    a: unknown,
    b: unknown,
    c: PublishOptions | undefined,
    op: 'send' | 'create',
    notify = true,
  ): Promise<Prepared> {
    const draft = this.#envelope(topic, a, b, c);
    // telemetry: the span starts before middleware, which then sees the traceparent that goes on the wire.
    const span = notify ? this.#telemetry?.startProducer(topic, draft.envelope, op) : undefined;
    try {
      if (this.#publishMw.length > 0) await this.#runPublishMiddleware(draft.envelope);
      const prepared = this.#encode(topic, draft, notify);
      if (span) prepared.span = span;
      return prepared;
    } catch (err) {
      this.#telemetry?.endProducer(span, err);
      throw err;
    }
  }

  /**
   * Builds a message exactly as `publish` would (context, publish middleware, codec, size check against
   * this bus's transport) without sending it: for an outbox that stores it now and sends it later.
   */
  async encodeEnvelope<T>(
    topic: string,
    definition: MessageDefinition<T>,
    data: T,
    options?: PublishOptions,
  ): Promise<RawEnvelope>;
  async encodeEnvelope(
    topic: string,
    message: UntypedMessage,
    options?: PublishOptions,
  ): Promise<RawEnvelope>;
  async encodeEnvelope(topic: string, a: unknown, b?: unknown, c?: PublishOptions): Promise<RawEnvelope> {
    const prepared = await this.#prepare(topic, a, b, c, 'create', false);
    return prepared.raw;
  }

  /** Validates the arguments and builds the envelope (data not yet encoded). */
  #envelope(topic: string, a: unknown, b: unknown, c: PublishOptions | undefined): Draft {
    if (this.#closed) throw new ClosedError();
    if (typeof topic !== 'string' || topic === '')
      throw new ConfigError('topic', 'must be a non-empty string');
    let type: string;
    let version: number;
    let data: unknown;
    let options: PublishOptions;
    let codec: Codec | undefined;
    if (isDefinition(a)) {
      type = a.type;
      version = a.version;
      data = a.parse(b, a.version);
      codec = a.codec;
      options = c ?? NO_OPTIONS;
    } else {
      const m = a as UntypedMessage;
      if (!m || typeof m.type !== 'string' || m.type === '')
        throw new ConfigError('type', 'must be a non-empty string');
      type = m.type;
      version = m.version ?? 1;
      data = m.data;
      options = (b as PublishOptions | undefined) ?? NO_OPTIONS;
    }
    if (options !== NO_OPTIONS) {
      checkPublishOptions(options);
      if (options.signal?.aborted) throw this.#abortedBeforeSend(topic, 1, options.signal);
    }
    const ctx = currentContext();
    const id = options.id ?? uuidv7();
    const parentTrace = ctx?.traceparent;
    const envelope: Envelope = {
      id,
      type,
      source: this.service,
      time: options.time ?? Date.now(),
      key: options.key,
      correlationId: options.correlationId ?? ctx?.correlationId ?? id,
      causationId: options.causationId ?? ctx?.causationId,
      traceparent: parentTrace ? childTraceparent(parentTrace) : undefined,
      tracestate: ctx?.tracestate,
      version,
      contentType: options.contentType ?? codec?.contentType ?? 'application/json',
      headers: options.headers ?? {},
      data,
    };
    return { envelope, codec, options };
  }

  /** Encodes the data, maps the envelope to the wire, and checks the size against the transport's limit. */
  #encode(topic: string, { envelope, codec: fixed, options }: Draft, notify = true): Prepared {
    const codec = fixed ?? this.#codecs.get(envelope.contentType);
    if (!codec) throw new ConfigError('contentType', `no codec registered for ${envelope.contentType}`);
    // Fields listed rather than spread: this runs for every message.
    const raw: RawEnvelope = {
      id: envelope.id,
      type: envelope.type,
      source: envelope.source,
      time: envelope.time,
      key: envelope.key,
      correlationId: envelope.correlationId,
      causationId: envelope.causationId,
      traceparent: envelope.traceparent,
      tracestate: envelope.tracestate,
      version: envelope.version,
      contentType: envelope.contentType,
      headers: envelope.headers,
      data: codec.encode(envelope.data),
    };
    const message = this.transport.encode(raw);
    const max = this.transport.capabilities.maxMessageBytes;
    const size = fitsEasily(message, max) ? 0 : wireSize(message);
    if (size > max) {
      this.#counters.publishFailed++;
      throw new PublishError(
        ErrorCode.TOO_LARGE,
        `message ${envelope.id} (${envelope.type}) is ${size} bytes on the wire; ${this.transport.name} accepts at most ${max}`,
        { details: { size, max } },
      );
    }
    if (notify && this.#publishListeners.size > 0) for (const l of this.#publishListeners) l(envelope, topic);
    return { id: envelope.id, message, options, raw };
  }

  async #runPublishMiddleware(envelope: Envelope): Promise<void> {
    let i = -1;
    const next = async (): Promise<void> => {
      i++;
      const m = this.#publishMw[i];
      if (m) await m(envelope, next);
    };
    await next();
  }

  /**
   * Hands the messages to the transport; resolves with `result` once the broker has accepted them, or
   * rejects with a PublishError. There is one deadline, the bus's `publishTimeoutMs` (or this call's
   * `timeoutMs`): the transport receives it with the call and says, when the caller gives up (deadline, or
   * `signal` aborted), whether it withdrew the messages (TIMEOUT: never sent) or they may still be written
   * (OUTCOME_UNKNOWN). The deadlines at the bus's own timeout all share one timer; without a signal or an
   * override this path allocates nothing beyond what it did before either existed.
   */
  #send<R>(
    topic: string,
    messages: WireMessage[],
    result: R,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<R> {
    const counters = this.#counters;
    if (signal?.aborted) return Promise.reject(this.#abortedBeforeSend(topic, messages.length, signal));
    const queue = this.#publishDeadlines;
    const ms = timeoutMs ?? queue.timeoutMs;
    const call = new PublishDeadline(Date.now() + ms);
    return new Promise<R>((resolve, reject) => {
      let settled = false;
      let onAbort: (() => void) | undefined;
      const expire = () => {
        settled = true;
        if (onAbort) signal!.removeEventListener('abort', onAbort);
        counters.publishFailed += messages.length;
        reject(abandonedPublishError(topic, call.abandon(), { timeoutMs: ms }));
      };
      const deadline =
        ms === queue.timeoutMs ? queue.start(performance.now(), expire) : ownDeadline(ms, expire);
      if (signal) {
        onAbort = () => {
          if (settled) return;
          settled = true;
          deadline.done();
          counters.publishFailed += messages.length;
          reject(abandonedPublishError(topic, call.abandon(), { aborted: signal.reason }));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      const fail = (err: unknown) => {
        deadline.done();
        call.settled();
        if (settled) return;
        settled = true;
        if (onAbort) signal!.removeEventListener('abort', onAbort);
        counters.publishFailed += messages.length;
        if (err instanceof OmnibusError) reject(err);
        else
          reject(
            new PublishError(
              ErrorCode.PUBLISH_FAILED,
              `publish to ${topic} failed: ${redactText(String((err as Error)?.message ?? err))}`,
              { cause: err },
            ),
          );
      };
      let accepted: Promise<void>;
      try {
        accepted = this.transport.publish(topic, messages, call);
      } catch (err) {
        fail(err);
        return;
      }
      accepted.then(() => {
        deadline.done();
        call.settled();
        if (settled) return;
        settled = true;
        if (onAbort) signal!.removeEventListener('abort', onAbort);
        counters.published += messages.length;
        resolve(result);
      }, fail);
    });
  }

  /** Creates the broker objects a topic and its groups need, before producers start. */
  async provision(topic: string, groups: { group: string; types?: string[] }[] = []): Promise<void> {
    await this.transport.provision(
      topic,
      groups.map((g) => ({ group: g.group, patterns: g.types && g.types.length > 0 ? g.types : ['#'] })),
    );
  }

  /** Joins a consumer group on a topic; the failure policy applies to every message. */
  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    if (this.#closing) throw new ClosedError();
    const o = parseOptions(subscribeSchema, options);
    if (o.concurrency > 1 && o.ordered && this.transport.capabilities.ordering === 'none') {
      this.logger.warn(
        { topic: o.topic },
        `${this.transport.name} keeps no order; ordered applies within this process only`,
      );
    }
    const policy: ConsumerPolicy = {
      topic: o.topic,
      group: o.group,
      handlers: o.handlers,
      concurrency: o.concurrency,
      ordered: o.ordered,
      maxAttempts: o.retry.attempts,
      backoff: o.retry.backoff,
      inProcessMaxDelayMs: o.retry.inProcessMaxDelayMs,
      handlerTimeoutMs: o.handlerTimeoutMs,
      deadLetter: o.deadLetter,
      unmatched: o.unmatched,
      idempotency: o.idempotency,
      circuitBreaker: o.circuitBreaker,
    };
    return this.#start(policy, {
      topic: o.topic,
      group: o.group,
      maxInFlight: o.prefetch,
      startFrom: o.startFrom,
      exclusive: o.exclusive,
    });
  }

  /** Reads a topic's history from a point, outside any group (nothing is committed). */
  async replay(options: ReplayOptions): Promise<Subscription> {
    if (this.#closing) throw new ClosedError();
    const o = parseOptions(replaySchema, options);
    if (!this.transport.capabilities.replay) {
      throw new UnsupportedError(`${this.transport.name} cannot replay history`);
    }
    const group = `replay-${uuidv7().slice(-12)}`;
    const policy: ConsumerPolicy = {
      topic: o.topic,
      group,
      handlers: o.handlers,
      concurrency: o.concurrency,
      ordered: true,
      // History is read once: a failure is logged and the replay moves on.
      maxAttempts: 1,
      backoff: { initialMs: 0, maxMs: 1, factor: 1, jitter: false },
      inProcessMaxDelayMs: 0,
      handlerTimeoutMs: o.handlerTimeoutMs,
      deadLetter: false,
      unmatched: 'ack',
    };
    return this.#start(policy, { topic: o.topic, maxInFlight: 64, replay: o.from });
  }

  /** Starts a consumer on a transport subscription; a bus closed meanwhile closes it again. */
  async #start(policy: ConsumerPolicy, spec: Omit<SubscribeSpec, 'patterns'>): Promise<Subscription> {
    const consumer = new Consumer(policy, this.#consumerDeps());
    const sub: TransportSubscription = await this.transport.subscribe(
      { ...spec, patterns: consumer.patterns },
      consumer.onDelivery,
    );
    consumer.attach(sub);
    if (this.#closing) {
      await consumer.close(0);
      throw new ClosedError('the bus was closed while subscribing');
    }
    this.#consumers.add(consumer);
    const close = async (opts?: { drainTimeoutMs?: number }) => {
      this.#consumers.delete(consumer);
      await consumer.close(opts?.drainTimeoutMs ?? this.#drainTimeoutMs);
    };
    return { topic: policy.topic, group: policy.group, close, [Symbol.asyncDispose]: () => close() };
  }

  #consumerDeps(): ConsumerDeps {
    return {
      transport: this.transport,
      codecs: this.#codecs,
      logger: this.logger,
      counters: this.#counters,
      middleware: this.#consumeMw,
      outcomeListeners: this.#outcomeListeners,
      telemetry: this.#telemetry,
    };
  }

  async health(): Promise<BusHealth> {
    let transport: HealthReport;
    try {
      transport = await this.transport.health();
    } catch (err) {
      transport = { ok: false, transport: this.transport.name, details: { error: redactText(String(err)) } };
    }
    const subscriptions = [...this.#consumers].map((c) => ({
      topic: c.policy.topic,
      group: c.policy.group,
      circuit: c.circuitState,
      inFlight: c.inFlight,
    }));
    return { ok: transport.ok && !this.#closing, transport, subscriptions };
  }

  stats(topic: string, group?: string): Promise<TransportStats> {
    return this.transport.stats(topic, group);
  }

  /**
   * Browse, peek, redrive and purge: the operations API (see operations.ts). Each call throws
   * UnsupportedError where this transport cannot do it.
   */
  get operations(): Operations {
    this.#operations ??= new Operations(this.transport);
    return this.#operations;
  }
  #operations: Operations | undefined;

  /** @internal for `@omnibus/core/testing` */
  onOutcome(listener: OutcomeListener): () => void {
    this.#outcomeListeners.add(listener);
    return () => this.#outcomeListeners.delete(listener);
  }

  /** @internal for `@omnibus/core/testing` */
  onPublished(listener: (e: Envelope, topic: string) => void): () => void {
    this.#publishListeners.add(listener);
    return () => this.#publishListeners.delete(listener);
  }

  /** `await using bus = await connect(…)`: closes the bus (with its default drain time) at scope end. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stops fetching, finishes in-flight work within the drain time, flushes producers, disconnects. */
  async close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closingDone ??= this.#close(options.drainTimeoutMs ?? this.#drainTimeoutMs);
    return this.#closingDone;
  }

  async #close(drainTimeoutMs: number): Promise<void> {
    this.#closing = true;
    // Handlers still running may publish (a follow-up event, a reply): the bus takes publishes until
    // they have drained, and refuses them from then on.
    await Promise.all([...this.#consumers].map((c) => c.close(drainTimeoutMs)));
    this.#consumers.clear();
    this.#closed = true;
    await this.transport.close();
  }
}

/** A deadline of its own for a publish whose `timeoutMs` differs from the bus's (the shared timer's). */
function ownDeadline(ms: number, onExpire: () => void): Deadline {
  const timer = setTimeout(onExpire, ms);
  return { done: () => clearTimeout(timer) };
}

/**
 * Whether a message is certainly within `max` bytes without measuring it: a UTF-16 code unit never takes
 * more than 3 bytes in UTF-8, so three times the string lengths bounds the exact size from above.
 */
function fitsEasily(msg: WireMessage, max: number): boolean {
  let chars = msg.key?.length ?? 0;
  for (const k in msg.headers) chars += k.length + msg.headers[k]!.length;
  return msg.body.byteLength + 3 * chars <= max;
}

function isDefinition(v: unknown): v is MessageDefinition<unknown> {
  return typeof v === 'object' && v !== null && 'parse' in v && 'handle' in v && 'schema' in v;
}

/**
 * Connects a bus. There is no silent default: pass a transport (`memoryTransport()`, `rabbitmq({…})`),
 * or a URL (`memory://`, `amqp://…`, `kafka://…`, `sqs://…`) whose adapter package is installed.
 */
export async function connect(options: ConnectOptions | string, service?: string): Promise<Bus> {
  const given: ConnectOptions =
    typeof options === 'string' ? { transport: options, service: service ?? '' } : options;
  if (
    !given ||
    (typeof given.transport !== 'string' && (typeof given.transport !== 'object' || given.transport === null))
  ) {
    throw new ConfigError(
      'transport',
      'required: a transport instance or a URL such as memory:// or amqp://host',
    );
  }
  // Every option is checked before anything is loaded or connected.
  const {
    transport: target,
    transportOptions,
    claimCheck: claimCheckOptions,
    ...busOptions
  } = parseOptions(connectSchema, given);
  if (transportOptions !== undefined && typeof target !== 'string') {
    throw new ConfigError(
      'transportOptions',
      'only used with a URL transport; pass options to the transport factory instead',
    );
  }
  const resolved = typeof target === 'string' ? await resolveTransport(target, transportOptions) : target;
  const transport = claimCheckOptions ? claimCheck(resolved, claimCheckOptions) : resolved;
  const bus = new Bus(transport, busOptions);
  await transport.connect({ logger: bus.logger, service: bus.service });
  return bus;
}
