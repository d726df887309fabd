/**
 * Claim check as a transport decorator: a message too large for the broker is stored in a PayloadStore
 * and travels as a small reference, fetched back before the core sees the delivery, on any transport.
 */
import { randomUUID } from 'node:crypto';
import { ControlHeader, type RawEnvelope, type WireMessage, wireSize } from './envelope.js';
import { ConfigError, ErrorCode, PublishError } from './errors.js';
import { type Logger, silentLogger } from './logger.js';
import type { TransportOperations } from './operations.js';
import type {
  AbandonVerdict,
  Capabilities,
  Delivery,
  HealthReport,
  PublishCall,
  SubscribeSpec,
  Transport,
  TransportContext,
  TransportStats,
  TransportSubscription,
} from './transport.js';

/** Where claim-checked payloads live (S3, a database, memory for tests). */
export interface PayloadStore {
  /** For logs and dead-letter reasons. */
  readonly name: string;
  /** The largest payload the store takes: what the decorated transport then reports as maxMessageBytes. */
  readonly maxObjectBytes: number;
  put(key: string, body: Uint8Array): Promise<void>;
  /** The stored bytes, or undefined when no object has this key (deleted, expired, never written). */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Removes the object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
}

/** The header that marks a reference message; its value is the payload's key in the store. */
export const CLAIM_CHECK_HEADER = 'omnibus-claim-check';
/** The dead-letter reason of a message whose payload could not be fetched. */
export const CLAIM_CHECK_DEAD_LETTER_REASON = 'claim-check';
// Room left under the broker's limit for headers added later (retry and dead-letter control headers).
const MAX_HEADROOM_BYTES = 8192;

export interface ClaimCheckOptions {
  store: PayloadStore;
  /**
   * Messages larger than this (body + headers + key, in bytes) go to the store. Default: the inner
   * transport's maxMessageBytes minus headroom for headers (an eighth of it, at most 8 KiB).
   */
  thresholdBytes?: number | undefined;
  /** Prefix of every stored key, e.g. to scope an S3 lifecycle rule (default `omnibus-claim-check/`). */
  keyPrefix?: string | undefined;
  /**
   * Delete a payload once its message is acked. Default: only where exactly one group ever reads a message
   * (no fan-out, no replay), since elsewhere another group or a replay may still need it; then (and for
   * dead-lettered messages always) the store's own expiry removes it.
   */
  deleteAfterAck?: boolean | undefined;
}

export class MemoryPayloadStore implements PayloadStore {
  readonly name = 'memory';
  private readonly objects = new Map<string, Uint8Array>();
  constructor(readonly maxObjectBytes = 64 * 1024 * 1024) {}
  async put(key: string, body: Uint8Array): Promise<void> {
    this.objects.set(key, Uint8Array.from(body));
  }
  async get(key: string): Promise<Uint8Array | undefined> {
    return this.objects.get(key);
  }
  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
  /** Number of stored objects (tests). */
  get size(): number {
    return this.objects.size;
  }
  keys(): string[] {
    return [...this.objects.keys()];
  }
}

export function memoryPayloadStore(maxObjectBytes?: number): MemoryPayloadStore {
  return new MemoryPayloadStore(maxObjectBytes);
}

/** Wraps a transport so that large messages travel by reference through `options.store`. */
export function claimCheck(transport: Transport, options: ClaimCheckOptions): Transport {
  return new ClaimCheckTransport(transport, options);
}

function positiveInt(value: number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value <= 0)
    throw new ConfigError(field, `must be a positive integer, got ${value}`);
  return value;
}

export class ClaimCheckTransport implements Transport {
  readonly capabilities: Capabilities;
  private readonly store: PayloadStore;
  private readonly threshold: number | undefined;
  private readonly prefix: string;
  private readonly deleteAfterAck: boolean | undefined;
  // The envelope behind each wire this decorator encoded: a reference is encoded from it, so it stays a
  // valid message of the inner transport (type, id, key and headers intact, only the data emptied).
  private readonly envelopes = new WeakMap<WireMessage, RawEnvelope>();
  private logger: Logger = silentLogger;

  constructor(
    readonly inner: Transport,
    options: ClaimCheckOptions,
  ) {
    if (!options?.store) throw new ConfigError('claimCheck.store', 'required: a PayloadStore');
    this.store = options.store;
    this.threshold = positiveInt(options.thresholdBytes, 'claimCheck.thresholdBytes');
    this.prefix = options.keyPrefix ?? 'omnibus-claim-check/';
    this.deleteAfterAck = options.deleteAfterAck;
    const store = this.store;
    // Every flag is the inner transport's (read live), except the size limit, which is now the store's.
    this.capabilities = Object.create(null, {
      ...Object.fromEntries(
        (
          [
            'consumerGroups',
            'fanOut',
            'ordering',
            'replay',
            'delayTiersMs',
            'persistent',
            'rejectsUnroutable',
          ] as const
        ).map((k) => [k, { enumerable: true, get: () => inner.capabilities[k] }]),
      ),
      maxMessageBytes: { enumerable: true, get: () => store.maxObjectBytes },
    }) as Capabilities;
  }

  get name(): string {
    return this.inner.name;
  }

  /** The size above which a message goes to the store. */
  get thresholdBytes(): number {
    if (this.threshold !== undefined) return this.threshold;
    const max = this.inner.capabilities.maxMessageBytes;
    return Math.max(1, max - Math.min(MAX_HEADROOM_BYTES, Math.floor(max / 8)));
  }

  private get deletesAfterAck(): boolean {
    return this.deleteAfterAck ?? (!this.inner.capabilities.fanOut && !this.inner.capabilities.replay);
  }

  connect(ctx: TransportContext): Promise<void> {
    this.logger = ctx.logger;
    return this.inner.connect(ctx);
  }

  encode(envelope: RawEnvelope): WireMessage {
    const wire = this.inner.encode(envelope);
    this.envelopes.set(wire, envelope);
    return wire;
  }

  decode(wire: WireMessage): RawEnvelope {
    return this.inner.decode(wire);
  }

  /**
   * Stores every oversized payload first (in parallel), then publishes the batch with references in their
   * place. Until the inner publish starts nothing has been sent: giving up then withdraws. An object
   * stored for a publish that then fails stays until the store's expiry removes it.
   */
  async publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    const threshold = this.thresholdBytes;
    let out: WireMessage[] | undefined;
    const puts: Promise<void>[] = [];
    for (let i = 0; i < messages.length; i++) {
      const wire = messages[i]!;
      if (wireSize(wire) <= threshold) continue;
      if (wire.body.byteLength > this.store.maxObjectBytes) {
        throw new PublishError(
          ErrorCode.TOO_LARGE,
          `message body of ${wire.body.byteLength} bytes exceeds the ${this.store.maxObjectBytes}-byte limit of payload store "${this.store.name}"`,
          { details: { bytes: wire.body.byteLength, maxMessageBytes: this.store.maxObjectBytes } },
        );
      }
      out ??= [...messages];
      const key = `${this.prefix}${randomUUID()}`;
      out[i] = this.reference(wire, key);
      puts.push(this.store.put(key, wire.body));
    }
    if (!out) return this.inner.publish(topic, messages, call);
    call.onAbandon((): AbandonVerdict => 'withdrawn');
    try {
      await Promise.all(puts);
    } catch (err) {
      throw new PublishError(
        ErrorCode.PUBLISH_FAILED,
        `claim check: storing a payload in "${this.store.name}" failed: ${(err as Error)?.message ?? String(err)}`,
        { cause: err, details: { outcome: 'not-sent' } },
      );
    }
    if (call.abandoned) {
      throw new PublishError(ErrorCode.TIMEOUT, `publish to "${topic}" given up before it was sent`, {
        details: { outcome: 'not-sent' },
      });
    }
    return this.inner.publish(topic, out, call);
  }

  /** A small message of the inner transport standing for `wire`: same metadata and headers, no data. */
  private reference(wire: WireMessage, key: string): WireMessage {
    const envelope = this.envelopes.get(wire);
    if (envelope) {
      return this.inner.encode({
        ...envelope,
        data: new Uint8Array(0),
        headers: { ...envelope.headers, [CLAIM_CHECK_HEADER]: key },
      });
    }
    // A wire this decorator did not encode: only its headers and key can travel with the reference.
    return {
      body: new Uint8Array(0),
      headers: { ...wire.headers, [CLAIM_CHECK_HEADER]: key },
      key: wire.key,
    };
  }

  provision(topic: string, groups: readonly { group: string; patterns: readonly string[] }[]): Promise<void> {
    return this.inner.provision(topic, groups);
  }

  subscribe(spec: SubscribeSpec, onDelivery: (delivery: Delivery) => void): Promise<TransportSubscription> {
    return this.inner.subscribe(spec, (delivery) => {
      const key = delivery.wire.headers[CLAIM_CHECK_HEADER];
      if (key === undefined) {
        onDelivery(delivery);
        return;
      }
      void this.fetchAndHandOver(delivery, key, onDelivery);
    });
  }

  /** Never rejects: a payload that cannot be fetched dead-letters the message; a failing settle is logged. */
  private async fetchAndHandOver(
    delivery: Delivery,
    key: string,
    onDelivery: (delivery: Delivery) => void,
  ): Promise<void> {
    let body: Uint8Array | undefined;
    let problem: string | undefined;
    try {
      body = await this.store.get(key);
      if (body === undefined)
        problem = `payload "${key}" not found in store "${this.store.name}" (deleted or expired)`;
    } catch (err) {
      problem = `payload "${key}" could not be read from store "${this.store.name}": ${(err as Error)?.message ?? String(err)}`;
    }
    if (problem !== undefined || body === undefined) {
      await this.deadLetter(delivery, problem ?? 'no payload');
      return;
    }
    const headers = { ...delivery.wire.headers };
    delete headers[CLAIM_CHECK_HEADER];
    const wire: WireMessage = { body, headers, key: delivery.wire.key };
    const ack = async () => {
      await delivery.ack();
      if (this.deletesAfterAck) {
        this.store.delete(key).catch((err: unknown) => {
          this.logger.warn(
            { key, store: this.store.name, error: String(err) },
            'claim check: deleting a payload failed; it stays until it expires',
          );
        });
      }
    };
    const full: Delivery = {
      wire,
      topic: delivery.topic,
      group: delivery.group,
      previousAttempts: delivery.previousAttempts,
      redelivered: delivery.redelivered,
      receivedAt: delivery.receivedAt,
      ack,
      // Retries and dead letters carry the reference (the inner delivery's own wire): the payload stays.
      retryLater: (delayMs, control) => delivery.retryLater(delayMs, control),
      deadLetter: (control) => delivery.deadLetter(control),
      release: () => delivery.release(),
      ...(delivery.extendLease ? { extendLease: (ms: number) => delivery.extendLease!(ms) } : {}),
    };
    try {
      onDelivery(full);
    } catch (err) {
      this.logger.error({ error: String(err) }, 'claim check: the delivery callback threw; releasing');
      await delivery.release().catch(() => {});
    }
  }

  private async deadLetter(delivery: Delivery, error: string): Promise<void> {
    this.logger.error(
      { topic: delivery.topic, group: delivery.group, error },
      'claim check: payload unavailable, dead-lettering the message',
    );
    const now = String(Date.now());
    try {
      await delivery.deadLetter({
        [ControlHeader.reason]: CLAIM_CHECK_DEAD_LETTER_REASON,
        [ControlHeader.error]: error,
        [ControlHeader.attempts]: String(delivery.previousAttempts),
        [ControlHeader.originalTopic]: delivery.topic,
        [ControlHeader.originalGroup]: delivery.group,
        [ControlHeader.lastFailureAt]: now,
        [ControlHeader.deadLetteredAt]: now,
      });
    } catch (err) {
      this.logger.error({ error: String(err) }, 'claim check: dead-lettering failed; releasing the message');
      await delivery.release().catch(() => {});
    }
  }

  health(): Promise<HealthReport> {
    return this.inner.health();
  }

  stats(topic: string, group?: string): Promise<TransportStats> {
    return this.inner.stats(topic, group);
  }

  /** The inner transport's: a peek shows the reference, and a redrive moves it unchanged. */
  get operations(): TransportOperations | undefined {
    return this.inner.operations;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
