/**
 * The contract between the core and a broker adapter. Deliberately broker-agnostic: no connection,
 * channel or client type leaks through. The core owns the failure policy; a transport moves bytes,
 * hands messages to delayed redelivery or dead-letter when told, and reports what it can do.
 */
import type { RawEnvelope, WireMessage } from './envelope.js';
import type { Logger } from './logger.js';
import type { TransportOperations } from './operations.js';

export type OrderingScope = 'none' | 'process' | 'group';

/**
 * What a transport can do. Each flag is here because something branches on it; the comment says who.
 * (Behaviour every transport must have, such as confirmed hand-offs, is not a flag: the contract suite
 * checks it on all of them.)
 */
export interface Capabilities {
  /** Competing consumers in named groups. Read by the conformance suite (group scenarios). */
  consumerGroups: boolean;
  /** Several groups on one topic each receive every message. Read by the conformance suite. */
  fanOut: boolean;
  /**
   * Where per-key order holds: nowhere, within one consumer process, or across a whole group. Read by
   * `subscribe` (a warning for `ordered` where it is 'none') and the conformance suite.
   */
  ordering: OrderingScope;
  /** A non-group subscription can re-read history. Read by `bus.replay` and both suites. */
  replay: boolean;
  /**
   * Fixed delay tiers (ms) a retry delay is rounded up to; empty when any delay is exact. Read by the
   * suites to bound how late a retry may come.
   */
  delayTiersMs: readonly number[];
  /** Largest wire message (body + headers) the broker accepts. Read by `publish` (TOO_LARGE). */
  maxMessageBytes: number;
  /** Accepted messages survive a broker restart. Read by the conformance suite (restart scenario). */
  persistent: boolean;
  /**
   * A publish to a topic no group receives can be refused (`onNoSubscribers: 'reject'`). Read by the
   * contract suite; transports without it refuse that option with a ConfigError.
   */
  rejectsUnroutable: boolean;
}

export type ReplayFrom = 'earliest' | 'latest' | { offset: string | number } | { timestamp: number };

export interface SubscribeSpec {
  topic: string;
  /** Consumer group; absent for replay subscriptions. */
  group?: string | undefined;
  /** Type patterns this subscription wants (exact types or `*`/`#` patterns). */
  patterns: readonly string[];
  /** The transport never holds more than this many unsettled deliveries for this subscription. */
  maxInFlight: number;
  /** Set for a replay subscription (no group, nothing committed): where to start reading. */
  replay?: ReplayFrom | undefined;
  /** Where a brand-new group starts (Kafka); ignored where the broker has no such notion. */
  startFrom?: 'earliest' | 'latest' | undefined;
  /** Single active consumer / exclusive mode for cross-process ordering, where supported. */
  exclusive?: boolean | undefined;
}

/** One received message, with the actions that settle it. Exactly one settle action is called. */
export interface Delivery {
  readonly wire: WireMessage;
  readonly topic: string;
  readonly group: string;
  /** Handler invocations already made for this message (from control headers or receive counts). */
  readonly previousAttempts: number;
  readonly redelivered: boolean;
  readonly receivedAt: number;
  /** Done: remove the message. */
  ack(): Promise<void>;
  /**
   * Hand the message to the broker's delayed redelivery with these control headers replaced/added.
   * Resolves only once the broker has confirmed the hand-off and the original is settled.
   * `delayMs` may exceed the transport's maximum: the transport chains (never shortens).
   */
  retryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void>;
  /** Move to the dead-letter destination with failure metadata headers; confirmed before the original is removed. */
  deadLetter(controlHeaders: Record<string, string>): Promise<void>;
  /** Give the message back unprocessed (shutdown, circuit open): redelivered soon, no attempt consumed. */
  release(): Promise<void>;
  /** Where the broker keeps the message, where it has such a place (Kafka): read by tracing. */
  readonly partition?: number;
  readonly offset?: string;
  /** Extend the broker lease while a handler runs long (SQS visibility); optional. */
  extendLease?(ms: number): Promise<void>;
}

export interface TransportSubscription {
  /** Stop fetching new messages (backpressure, open circuit). Deliveries already made continue. */
  pause(): void;
  resume(): void;
  /** Stop fetching for good; settled deliveries are committed; resolves when the consumer is gone. */
  close(): Promise<void>;
}

/**
 * Broker-side figures for a topic and group, the same keys on every transport. A figure the broker does
 * not know is null (never 0, which would read as "empty").
 */
export interface TransportStats {
  /** Messages waiting for the group (RabbitMQ ready, SQS visible, Kafka lag where that is the backlog). */
  depth: number | null;
  /** Delivered to a consumer and not yet settled. */
  inFlight: number | null;
  /** Waiting out a retry delay. */
  delayed: number | null;
  /** In the group's dead-letter destination. */
  deadLettered: number | null;
  /** Kafka: records behind the committed offsets, summed over partitions. */
  lag: number | null;
  /** Age of the oldest waiting message, in ms, where the broker reports it. */
  oldestAgeMs: number | null;
  /** Transport-specific figures, by name. */
  extras: Record<string, number>;
}

/** What the transport answers when the caller of a publish gives up (see PublishCall). */
export type AbandonVerdict = 'withdrawn' | 'unknown';

/**
 * The caller's side of one `publish` call: its single deadline. The transport never times a publish
 * itself; it registers how to withdraw what it still holds, and the bus asks when the caller gives up.
 */
export interface PublishCall {
  /** When the caller stops waiting (ms since epoch, `Date.now()` clock). */
  readonly deadlineAt: number;
  /** True once the caller has given up (deadline passed or its AbortSignal fired). */
  readonly abandoned: boolean;
  /**
   * Registers what to do if the caller gives up before the publish settles; called at most once,
   * synchronously. Return 'withdrawn' only when none of the call's messages has been or will ever be
   * written (they were still queued in the client and are now removed); otherwise 'unknown'. Registering
   * again replaces the previous callback. With none registered, the outcome is 'unknown'.
   */
  onAbandon(fn: () => AbandonVerdict): void;
}

export interface HealthReport {
  ok: boolean;
  transport: string;
  details: Record<string, unknown>;
}

export interface TransportContext {
  logger: Logger;
  /** The name of the service, for client ids and queue tags. */
  service: string;
}

export interface Transport {
  readonly name: string;
  readonly capabilities: Capabilities;
  connect(ctx: TransportContext): Promise<void>;
  /** Envelope → broker wire form (CloudEvents binary or structured mode). */
  encode(envelope: RawEnvelope): WireMessage;
  /** Broker wire form → envelope; throws DecodeError for anything that is not one of ours. */
  decode(wire: WireMessage): RawEnvelope;
  /**
   * Resolves once the broker has accepted every message (confirm/ack); rejects with PublishError. The
   * call carries the caller's deadline: the transport keeps no publish timeout of its own.
   */
  publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void>;
  /** Create what the topic and groups need (idempotent). */
  provision(topic: string, groups: readonly { group: string; patterns: readonly string[] }[]): Promise<void>;
  subscribe(spec: SubscribeSpec, onDelivery: (delivery: Delivery) => void): Promise<TransportSubscription>;
  health(): Promise<HealthReport>;
  /** Broker-side figures for a topic/group, in one shape on every transport. */
  stats(topic: string, group?: string): Promise<TransportStats>;
  /** Flush producers and disconnect. */
  close(): Promise<void>;
  /**
   * Browse, peek, redrive and purge (see operations.ts); absent where the transport offers none, and
   * any single method may throw UnsupportedError.
   */
  readonly operations?: TransportOperations | undefined;
}

/** What a transport package exports so `connect(url)` can build it from a URL. */
export type TransportFactory = (url: string, options?: Record<string, unknown>) => Transport;
