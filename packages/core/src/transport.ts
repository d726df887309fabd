/**
 * The contract between the core and a broker adapter. Deliberately broker-agnostic: no connection,
 * channel or client type leaks through. The core owns the failure policy; a transport moves bytes,
 * hands messages to delayed redelivery or dead-letter when told, and reports what it can do.
 */
import type { RawEnvelope, WireMessage } from './envelope.js';
import type { Logger } from './logger.js';

export type OrderingScope = 'none' | 'process' | 'group';

export interface Capabilities {
  /** Competing consumers in named groups. */
  consumerGroups: boolean;
  /** Several groups on one topic each receive every message. */
  fanOut: boolean;
  /** The broker filters by type pattern (otherwise the core filters after delivery). */
  patternRouting: boolean;
  /** Where per-key order holds: nowhere, within one consumer process, or across a whole group. */
  ordering: OrderingScope;
  /** A non-group subscription can re-read history. */
  replay: boolean;
  /** Delayed redelivery without holding the message in the consumer. */
  nativeDelay: boolean;
  /**
   * The longest delay `retryLater` honours without shortening it, chaining included (unbounded where
   * the transport chains hops, e.g. delay tiers re-sent until due).
   */
  maxDelayMs: number;
  /** Fixed delay tiers (ms) a delay is rounded up to; empty when any delay is exact. */
  delayTiersMs: readonly number[];
  nativeDeadLetter: boolean;
  /** Largest wire message (body + headers) the broker accepts. */
  maxMessageBytes: number;
  /** Accepted messages survive a broker restart. */
  persistent: boolean;
  /** The broker assigns a partition/group from the key, so per-key order holds across processes. */
  keyAffinity: boolean;
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
  /** Resolves once the broker has accepted every message (confirm/ack); rejects with PublishError. */
  publish(topic: string, messages: readonly WireMessage[]): Promise<void>;
  /** Create what the topic and groups need (idempotent). */
  provision(topic: string, groups: readonly { group: string; patterns: readonly string[] }[]): Promise<void>;
  subscribe(spec: SubscribeSpec, onDelivery: (delivery: Delivery) => void): Promise<TransportSubscription>;
  health(): Promise<HealthReport>;
  /** Broker-side figures for a topic/group (depth, in flight, lag). */
  stats(topic: string, group?: string): Promise<Record<string, number>>;
  /** Flush producers and disconnect. */
  close(): Promise<void>;
}

/** What a transport package exports so `connect(url)` can build it from a URL. */
export type TransportFactory = (url: string, options?: Record<string, unknown>) => Transport;
