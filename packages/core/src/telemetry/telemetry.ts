/**
 * OpenTelemetry instrumentation of the bus: producer and consumer spans under the messaging semantic
 * conventions, and metrics, through the `@opentelemetry/api` object the application passes in.
 *
 * Why the API is passed in rather than imported: `@opentelemetry/api` is an optional peer dependency. A
 * static import would make it required; a dynamic `import()` is asynchronous (connect would await it) and
 * resolves differently in the ESM and CJS builds. The application already holds the API (it registered the
 * SDK with it), so `connect({ telemetry: { api } })` hands over the one copy the SDK uses, in both builds,
 * and a bus without the option never touches any of this: the hot paths test one field for `undefined`.
 * The only import of the package here is a type import, erased at build time.
 */
import type * as OtelApi from '@opentelemetry/api';
import { currentContext, runInMessageContext } from '../context.js';
import type { Envelope } from '../envelope.js';
import type { Counters } from '../metrics.js';
import type { Action } from '../policy.js';
import type { Delivery, Transport } from '../transport.js';

export type OpenTelemetryApi = typeof OtelApi;

export interface TelemetryOptions {
  /** The `@opentelemetry/api` module (`import * as api from '@opentelemetry/api'`). */
  api: OpenTelemetryApi;
  /** Make spans (default true). Uses `tracerProvider` or the globally registered one. */
  tracing?: boolean;
  /** Record metrics (default true). Uses `meterProvider` or the globally registered one. */
  metrics?: boolean;
  tracerProvider?: OtelApi.TracerProvider;
  meterProvider?: OtelApi.MeterProvider;
}

/** Attribute names of the messaging semantic conventions (checked against @opentelemetry/semantic-conventions 1.45). */
export const Attr = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destination: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  consumerGroup: 'messaging.consumer.group.name',
  batchCount: 'messaging.batch.message_count',
  kafkaKey: 'messaging.kafka.message.key',
  partition: 'messaging.destination.partition.id',
  kafkaOffset: 'messaging.kafka.offset',
  /**
   * The conventions have no system-neutral attempt attribute (only `messaging.gcp_pubsub.message.delivery_attempt`
   * and Service Bus's delivery count): ours follows their pattern under the `omnibus` system name.
   */
  attempt: 'messaging.omnibus.message.delivery_attempt',
  messageType: 'messaging.omnibus.message.type',
} as const;

const SYSTEMS: Record<string, string> = {
  rabbitmq: 'rabbitmq',
  kafka: 'kafka',
  sqs: 'aws_sqs',
  memory: 'memory',
};

/** The `messaging.system` value for a transport name (its own name when the conventions have none). */
export function messagingSystem(transportName: string): string {
  return SYSTEMS[transportName] ?? transportName;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** One handling's telemetry: its span (when tracing) and when it started. */
export interface ProcessHandle {
  span: OtelApi.Span | undefined;
  /** Date.now() at the start (processing time), and performance.now() for the duration. */
  startedAt: number;
  startedPerf: number;
  eventTime: number;
}

/** What the bus needs to poll broker figures for the gauges. */
export interface StatsSource {
  transport: Transport;
  subscriptions(): Iterable<{ topic: string; group: string }>;
  counters(): Readonly<Counters>;
}

export class Telemetry {
  readonly #api: OpenTelemetryApi;
  readonly #tracer: OtelApi.Tracer | undefined;
  readonly #system: string;
  readonly #processDuration: OtelApi.Histogram | undefined;
  readonly #messageAge: OtelApi.Histogram | undefined;

  constructor(options: TelemetryOptions, transportName: string, service: string, source: StatsSource) {
    const api = options.api;
    this.#api = api;
    this.#system = messagingSystem(transportName);
    if (options.tracing !== false) {
      const provider = options.tracerProvider ?? api.trace.getTracerProvider();
      this.#tracer = provider.getTracer('@omnibus/core');
    }
    if (options.metrics !== false) {
      const meter = (options.meterProvider ?? api.metrics.getMeterProvider()).getMeter('@omnibus/core');
      this.#processDuration = meter.createHistogram('messaging.process.duration', {
        description: 'Handler time per handling',
        unit: 's',
        advice: {
          explicitBucketBoundaries: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        },
      });
      this.#messageAge = meter.createHistogram('omnibus.message.age', {
        description: 'From the event time (envelope time) to the start of processing',
        unit: 's',
        advice: { explicitBucketBoundaries: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600] },
      });
      this.#observeCounters(meter, service, source);
      this.#observeStats(meter, source);
    }
  }

  get tracing(): boolean {
    return this.#tracer !== undefined;
  }

  /**
   * Starts a producer span for one message (`send`, or `create` inside a batch) and writes its context
   * into the envelope's traceparent, so the consumer's span becomes its child. The parent is the active
   * OpenTelemetry span, else the trace context Omnibus carries (a handler's message).
   */
  startProducer(topic: string, envelope: Envelope, op: 'send' | 'create'): OtelApi.Span | undefined {
    const tracer = this.#tracer;
    if (!tracer) return undefined;
    const api = this.#api;
    const span = tracer.startSpan(
      `${op} ${topic}`,
      {
        kind: api.SpanKind.PRODUCER,
        attributes: {
          [Attr.system]: this.#system,
          [Attr.operationType]: op,
          [Attr.operationName]: op,
          [Attr.destination]: topic,
          [Attr.messageId]: envelope.id,
          [Attr.conversationId]: envelope.correlationId,
          [Attr.messageType]: envelope.type,
          ...(envelope.key !== undefined && this.#system === 'kafka'
            ? { [Attr.kafkaKey]: envelope.key }
            : {}),
        },
      },
      this.#parentContext(),
    );
    this.#stamp(envelope, span);
    return span;
  }

  /** One `send` span for a batch, linked to each message's `create` span (the conventions' batch shape). */
  startBatchSend(topic: string, creates: readonly (OtelApi.Span | undefined)[]): OtelApi.Span | undefined {
    const tracer = this.#tracer;
    if (!tracer) return undefined;
    const links: OtelApi.Link[] = [];
    for (const s of creates) if (s) links.push({ context: s.spanContext() });
    return tracer.startSpan(
      `send ${topic}`,
      {
        kind: this.#api.SpanKind.PRODUCER,
        links,
        attributes: {
          [Attr.system]: this.#system,
          [Attr.operationType]: 'send',
          [Attr.operationName]: 'send',
          [Attr.destination]: topic,
          [Attr.batchCount]: creates.length,
        },
      },
      this.#parentContext(),
    );
  }

  /** Ends a producer span with the publish's outcome. */
  endProducer(span: OtelApi.Span | undefined, error?: unknown): void {
    if (!span) return;
    if (error !== undefined) this.#fail(span, error);
    span.end();
  }

  /** Starts one handling: a `process` span, child of the producer span the envelope carries. */
  startProcess(
    envelope: Envelope,
    d: Delivery,
    topic: string,
    group: string,
    attempt: number,
  ): ProcessHandle {
    let span: OtelApi.Span | undefined;
    const tracer = this.#tracer;
    if (tracer) {
      const api = this.#api;
      const attributes: OtelApi.Attributes = {
        [Attr.system]: this.#system,
        [Attr.operationType]: 'process',
        [Attr.operationName]: 'process',
        [Attr.destination]: topic,
        [Attr.consumerGroup]: group,
        [Attr.messageId]: envelope.id,
        [Attr.conversationId]: envelope.correlationId,
        [Attr.messageType]: envelope.type,
        [Attr.attempt]: attempt,
      };
      if (this.#system === 'kafka' && envelope.key !== undefined) attributes[Attr.kafkaKey] = envelope.key;
      if (d.partition !== undefined) attributes[Attr.partition] = String(d.partition);
      if (d.offset !== undefined) attributes[Attr.kafkaOffset] = Number(d.offset);
      const parent = this.#extract(envelope.traceparent, envelope.tracestate) ?? api.ROOT_CONTEXT;
      span = tracer.startSpan(`process ${topic}`, { kind: api.SpanKind.CONSUMER, attributes }, parent);
    }
    return { span, startedAt: Date.now(), startedPerf: performance.now(), eventTime: envelope.time };
  }

  /**
   * Runs the handler inside its span: as the active OpenTelemetry span (for the user's own spans) and as
   * Omnibus's trace context (so a publish inside is the span's child even without a context manager).
   */
  runHandler<R>(handle: ProcessHandle, envelope: Envelope, fn: () => R): R {
    const span = handle.span;
    if (!span) return runInMessageContext(envelope, fn);
    const sc = span.spanContext();
    const traced = {
      id: envelope.id,
      correlationId: envelope.correlationId,
      traceparent: formatTraceparent(sc),
      tracestate: sc.traceState?.serialize() || envelope.tracestate,
    };
    const api = this.#api;
    return api.context.with(api.trace.setSpan(api.context.active(), span), () =>
      runInMessageContext(traced, fn),
    );
  }

  /**
   * Ends a handling with the failure policy's decision: retries and dead-letters become span events, a
   * failure sets the error status; records the processing time and the message's age.
   */
  endProcess(handle: ProcessHandle, action: Action, error: unknown): void {
    const span = handle.span;
    if (span) {
      if (action.kind === 'retry-in-process' || action.kind === 'retry-via-broker') {
        span.addEvent('omnibus.retry', {
          'omnibus.retry.delay_ms': action.delayMs,
          'omnibus.retry.in_process': action.kind === 'retry-in-process',
          [Attr.attempt]: action.attempts,
        });
      } else if (action.kind === 'dead-letter' || action.kind === 'drop') {
        span.addEvent(action.kind === 'dead-letter' ? 'omnibus.dead_letter' : 'omnibus.dropped', {
          'omnibus.dead_letter.reason': action.reason,
          [Attr.attempt]: action.attempts,
        });
      } else if (action.kind === 'release') {
        span.addEvent('omnibus.released');
      }
      if (error !== undefined) this.#fail(span, error);
      span.end();
    }
    const attrs = { [Attr.system]: this.#system };
    this.#processDuration?.record((performance.now() - handle.startedPerf) / 1000, attrs);
    this.#messageAge?.record(Math.max(0, handle.startedAt - handle.eventTime) / 1000, attrs);
  }

  #fail(span: OtelApi.Span, error: unknown): void {
    const api = this.#api;
    if (error instanceof Error) span.recordException(error);
    span.setStatus({
      code: api.SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  }

  #parentContext(): OtelApi.Context {
    const api = this.#api;
    const active = api.context.active();
    if (api.trace.getSpan(active)) return active;
    const ctx = currentContext();
    return this.#extract(ctx?.traceparent, ctx?.tracestate) ?? active;
  }

  #extract(traceparent: string | undefined, tracestate: string | undefined): OtelApi.Context | undefined {
    if (!traceparent) return undefined;
    const m = TRACEPARENT.exec(traceparent);
    if (!m) return undefined;
    const api = this.#api;
    return api.trace.setSpanContext(api.ROOT_CONTEXT, {
      traceId: m[1]!,
      spanId: m[2]!,
      traceFlags: Number.parseInt(m[3]!, 16),
      isRemote: true,
      traceState: tracestate ? api.createTraceState(tracestate) : undefined,
    });
  }

  #stamp(envelope: Envelope, span: OtelApi.Span): void {
    const sc = span.spanContext();
    // A non-recording span (no SDK, or sampled out) keeps the context the envelope already had.
    if (!this.#api.trace.isSpanContextValid(sc)) return;
    envelope.traceparent = formatTraceparent(sc);
    const state = sc.traceState?.serialize();
    if (state) envelope.tracestate = state;
  }

  /** The bus's counters as observable counters: read at collection time, so no per-message cost. */
  #observeCounters(meter: OtelApi.Meter, service: string, source: StatsSource): void {
    const names: [keyof Counters, string, string][] = [
      ['published', 'messaging.client.sent.messages', 'Messages the broker accepted'],
      ['publishFailed', 'omnibus.publish.failures', 'Messages whose publish failed'],
      ['consumed', 'messaging.client.consumed.messages', 'Messages delivered to this process'],
      ['handled', 'omnibus.messages.handled', 'Messages handled and acknowledged'],
      ['retried', 'omnibus.messages.retried', 'Retries scheduled'],
      ['deadLettered', 'omnibus.messages.dead_lettered', 'Messages dead-lettered or dropped'],
      ['duplicates', 'omnibus.messages.duplicates', 'Duplicates suppressed by idempotency'],
      ['failures', 'omnibus.handler.failures', 'Handler invocations that failed'],
    ];
    const attrs = { [Attr.system]: this.#system, 'service.name': service };
    const counters = names.map(([key, name, description]) => ({
      key,
      instrument: meter.createObservableCounter(name, { description, unit: '{message}' }),
    }));
    meter.addBatchObservableCallback(
      (result) => {
        const c = source.counters();
        for (const { key, instrument } of counters) result.observe(instrument, c[key], attrs);
      },
      counters.map((c) => c.instrument),
    );
  }

  /** Per subscription, broker figures from `transport.stats()`, polled when the metrics are collected. */
  #observeStats(meter: OtelApi.Meter, source: StatsSource): void {
    const depth = meter.createObservableGauge('omnibus.subscription.depth', {
      description: 'Messages waiting for the group (RabbitMQ ready, SQS visible, Kafka lag)',
      unit: '{message}',
    });
    const lag = meter.createObservableGauge('omnibus.subscription.lag', {
      description: 'Kafka: records behind the committed offsets',
      unit: '{message}',
    });
    const oldest = meter.createObservableGauge('omnibus.subscription.oldest_age', {
      description: 'Age of the oldest waiting message, where the broker reports it',
      unit: 's',
    });
    meter.addBatchObservableCallback(
      async (result) => {
        const subs = [...source.subscriptions()];
        await Promise.all(
          subs.map(async ({ topic, group }) => {
            let stats: Awaited<ReturnType<Transport['stats']>>;
            try {
              stats = await source.transport.stats(topic, group);
            } catch {
              return; // a broker that cannot answer now leaves the gauge unreported this round
            }
            const attrs = {
              [Attr.system]: this.#system,
              [Attr.destination]: topic,
              [Attr.consumerGroup]: group,
            };
            if (stats.depth !== null) result.observe(depth, stats.depth, attrs);
            if (stats.lag !== null) result.observe(lag, stats.lag, attrs);
            if (stats.oldestAgeMs !== null) result.observe(oldest, stats.oldestAgeMs / 1000, attrs);
          }),
        );
      },
      [depth, lag, oldest],
    );
  }
}

function formatTraceparent(sc: OtelApi.SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}
