/** The NATS JetStream transport: CloudEvents binary mode in headers, streams and consumers, publishing, figures. */

import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type OrderedConsumerOptions,
  StorageType,
} from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos, headers as natsHeaders } from '@nats-io/transport-node';
import {
  type Capabilities,
  ConfigError,
  ConnectionError,
  type Delivery,
  ErrorCode,
  fromBinary,
  type HealthReport,
  type Logger,
  PublishError,
  type RawEnvelope,
  type SubscribeSpec,
  silentLogger,
  type Transport,
  type TransportContext,
  type TransportSubscription,
  toBinary,
  type WireMessage,
} from '@omnibus/core';
import { type PublishCall, type TransportStats, withConnectDeadline } from '@omnibus/core/kit';
import { describe, notFound } from './errors.js';
import { checkName, names } from './naming.js';
import { NatsOperations } from './operations.js';
import { type NatsTransportOptions, type ResolvedNatsOptions, resolveOptions } from './options.js';
import { NatsSubscription } from './subscription.js';

const BINARY_MODE = {
  prefix: 'ce_',
  contentTypeHeader: 'content-type',
  // Nats-Msg-Id, Nats-Expected-Stream…: the server's, never the user's.
  isBrokerHeader: (name: string) => /^nats-/i.test(name),
} as const;
// Subject, reply subject and header framing count against the server's max_payload too.
const FRAMING_BYTES = 1024;
const DEFAULT_MAX_PAYLOAD = 1_048_576;
// Consumers hold delayed retries as pending acks: the cap must not stop a group with many retries waiting.
const MAX_ACK_PENDING = 100_000;

export class NatsTransport implements Transport {
  readonly name = 'nats';
  readonly options: ResolvedNatsOptions;
  private caps: Capabilities;
  private logger: Logger = silentLogger;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  /** Streams known to exist (each name passed checkName). */
  private readonly streams = new Map<string, Promise<void>>();
  /**
   * Topics whose stream lookup has finished. Until then every publish waits for the lookup, not only the
   * first: a publish that skipped it overtook the first one (per-key order broken) or, on a new topic,
   * reached the server before the stream existed and failed with "no responders".
   */
  private readonly readyStreams = new Set<string>();
  private readonly subscriptions = new Set<NatsSubscription>();
  private closed = false;

  constructor(options: NatsTransportOptions = {}) {
    this.options = resolveOptions(options);
    this.caps = {
      consumerGroups: true,
      fanOut: true,
      ordering: 'process',
      replay: true,
      // Retries wait out their delay in the server's delayed redelivery (nak with a delay): exact.
      delayTiersMs: [],
      maxMessageBytes: this.options.maxMessageBytes ?? DEFAULT_MAX_PAYLOAD - FRAMING_BYTES,
      persistent: this.options.storage === 'file',
      rejectsUnroutable: false,
    };
  }

  get capabilities(): Capabilities {
    return this.caps;
  }

  private describeServers(): string {
    return `nats at ${this.options.servers.join(',')}`;
  }

  async connect(ctx: TransportContext): Promise<void> {
    if (this.closed) throw new ConnectionError('nats transport is closed', { retryable: false });
    if (this.nc) return;
    this.logger = ctx.logger;
    const o = this.options;
    let gaveUp = false;
    const connecting = connect({
      servers: o.servers,
      name: o.name ?? `omnibus-${ctx.service}`,
      user: o.user,
      pass: o.pass,
      token: o.token,
      tls: o.tls === true ? {} : o.tls === false || o.tls === undefined ? undefined : o.tls,
      timeout: o.connectTimeoutMs,
      // Once connected, reconnect for ever: deliveries, acks and publishes resume after a server restart.
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
    const ready = connecting.then(async (nc) => {
      if (gaveUp) {
        await nc.close().catch(() => {});
        throw new ConnectionError(`${this.describeServers()}: connect given up`);
      }
      try {
        // Fails when the server runs without JetStream.
        const jsm = await jetstreamManager(nc, { timeout: o.requestTimeoutMs });
        return { nc, jsm };
      } catch (err) {
        await nc.close().catch(() => {});
        throw new ConnectionError(`${this.describeServers()} has no JetStream: ${describe(err)}`, {
          cause: err,
        });
      }
    });
    let parts: { nc: NatsConnection; jsm: JetStreamManager };
    try {
      parts = await withConnectDeadline(ready, o.connectTimeoutMs, this.describeServers(), () => {
        gaveUp = true;
      });
    } catch (err) {
      if (err instanceof ConnectionError) throw err;
      throw new ConnectionError(`cannot connect to ${this.describeServers()}: ${describe(err)}`, {
        cause: err,
      });
    }
    this.nc = parts.nc;
    this.jsm = parts.jsm;
    this.js = jetstream(parts.nc, { timeout: o.requestTimeoutMs });
    if (o.maxMessageBytes === undefined && parts.nc.info?.max_payload) {
      this.caps = { ...this.caps, maxMessageBytes: parts.nc.info.max_payload - FRAMING_BYTES };
    }
    void (async () => {
      for await (const s of parts.nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect')
          this.logger.warn({ transport: 'nats', event: s.type }, `nats: ${s.type}`);
      }
    })().catch(() => {});
  }

  private require(): { js: JetStreamClient; jsm: JetStreamManager; nc: NatsConnection } {
    if (this.closed) throw new PublishError(ErrorCode.CLOSED, 'nats transport is closed');
    if (!this.nc || !this.js || !this.jsm)
      throw new ConnectionError('nats transport is not connected: call connect() first', {
        retryable: false,
      });
    return { js: this.js, jsm: this.jsm, nc: this.nc };
  }

  encode(envelope: RawEnvelope): WireMessage {
    return toBinary(envelope, BINARY_MODE);
  }

  decode(wire: WireMessage): RawEnvelope {
    return fromBinary(wire, BINARY_MODE);
  }

  publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    return this.publishAll(topic, messages, call);
  }

  private async publishAll(
    topic: string,
    messages: readonly WireMessage[],
    call: PublishCall,
  ): Promise<void> {
    const { js } = this.require();
    if (!this.readyStreams.has(topic)) {
      checkName('topic', topic);
      // Nothing is sent while the stream is looked up: a caller who gives up now withdrew the messages.
      call.onAbandon(() => 'withdrawn');
      await this.ensureStream(topic).catch((err: unknown) => {
        throw this.publishError(topic, err);
      });
      if (call.abandoned)
        throw new PublishError(ErrorCode.TIMEOUT, `publish to "${topic}" abandoned before it was sent`);
    }
    // Once a message is on the wire the server may store it whatever we do: the outcome is unknown.
    call.onAbandon(() => 'unknown');
    const timeout = Number.isFinite(call.deadlineAt)
      ? Math.max(1, call.deadlineAt - Date.now())
      : this.options.requestTimeoutMs;
    try {
      await Promise.all(
        messages.map((m) =>
          js.publish(names.subject(topic, m.headers.ce_type), m.body, {
            headers: this.headersOf(m.headers),
            msgID: this.options.deduplicate ? m.headers.ce_id : undefined,
            expect: { streamName: names.stream(topic) },
            timeout,
          }),
        ),
      );
    } catch (err) {
      throw this.publishError(topic, err);
    }
  }

  private publishError(topic: string, err: unknown): PublishError {
    if (err instanceof PublishError || err instanceof ConfigError) return err as PublishError;
    const text = describe(err);
    const code = /timeout/i.test(text) ? ErrorCode.OUTCOME_UNKNOWN : ErrorCode.PUBLISH_FAILED;
    return new PublishError(code, `publish to ${topic} failed: ${text}`, { cause: err });
  }

  private headersOf(record: Record<string, string>) {
    const h = natsHeaders();
    for (const [name, value] of Object.entries(record))
      if (!BINARY_MODE.isBrokerHeader(name)) h.set(name, value);
    return h;
  }

  /** Publishes a copy (retry, dead letter) and waits for the server to have stored it. */
  private async handOff(subject: string, wire: WireMessage, msgId: string): Promise<void> {
    const { js } = this.require();
    await js.publish(subject, wire.body, {
      headers: this.headersOf(wire.headers),
      msgID: msgId,
      timeout: this.options.requestTimeoutMs,
    });
  }

  /** Creates the topic's stream when it does not exist (once per transport). */
  private ensureStream(topic: string): Promise<void> {
    let pending = this.streams.get(topic);
    if (!pending) {
      pending = this.createStream(names.stream(topic), [`${topic}.>`]);
      this.streams.set(topic, pending);
      pending.then(
        () => this.readyStreams.add(topic),
        () => this.streams.delete(topic),
      );
    }
    return pending;
  }

  private async createStream(name: string, subjects: string[]): Promise<void> {
    const { jsm } = this.require();
    const o = this.options;
    try {
      await jsm.streams.info(name);
      return;
    } catch (err) {
      if (!notFound(err)) throw err;
    }
    if (!o.autoCreateStreams)
      throw new ConfigError(
        'autoCreateStreams',
        `stream "${name}" does not exist and autoCreateStreams is false`,
      );
    try {
      await jsm.streams.add({
        name,
        subjects,
        storage: o.storage === 'file' ? StorageType.File : StorageType.Memory,
        num_replicas: o.replicas,
        duplicate_window: nanos(o.duplicateWindowMs),
        max_age: nanos(o.maxAgeMs),
      });
    } catch (err) {
      // Another process created it meanwhile.
      if (!/already in use|already exists/i.test(describe(err))) throw err;
    }
  }

  private async ensureGroup(topic: string, group: string, startFrom: 'earliest' | 'latest'): Promise<void> {
    checkName('group', group);
    await this.ensureStream(topic);
    const { jsm } = this.require();
    try {
      await jsm.consumers.info(names.stream(topic), group);
      return;
    } catch (err) {
      if (!notFound(err)) throw err;
    }
    await jsm.consumers.add(names.stream(topic), {
      durable_name: group,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: startFrom === 'earliest' ? DeliverPolicy.All : DeliverPolicy.New,
      ack_wait: nanos(this.options.ackWaitMs),
      max_deliver: this.options.maxDeliver,
      max_ack_pending: MAX_ACK_PENDING,
      // One filter per consumer on NATS 2.9: the stream's every subject; types are matched on receipt.
      filter_subject: `${topic}.>`,
    });
  }

  async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    checkName('topic', topic);
    this.require();
    await this.ensureStream(topic);
    for (const { group } of groups) await this.ensureGroup(topic, group, 'latest');
  }

  async subscribe(
    spec: SubscribeSpec,
    onDelivery: (delivery: Delivery) => void,
  ): Promise<TransportSubscription> {
    const { js } = this.require();
    checkName('topic', spec.topic);
    let consumer: Awaited<ReturnType<JetStreamClient['consumers']['get']>>;
    if (spec.group !== undefined) {
      await this.ensureGroup(spec.topic, spec.group, spec.startFrom ?? 'latest');
      consumer = await js.consumers.get(names.stream(spec.topic), spec.group);
    } else {
      await this.ensureStream(spec.topic);
      consumer = await js.consumers.get(names.stream(spec.topic), replayOptions(spec));
    }
    const sub = new NatsSubscription(spec, consumer, onDelivery, {
      logger: this.logger,
      fetchExpiresMs: this.options.fetchExpiresMs,
      handOff: async (subject, wire, msgId) => {
        if (subject.startsWith(names.deadLetterStream(spec.topic)))
          await this.createStream(names.deadLetterStream(spec.topic), [
            `${names.deadLetterStream(spec.topic)}.>`,
          ]);
        await this.handOff(subject, wire, msgId);
      },
      onClosed: (s) => this.subscriptions.delete(s),
    });
    this.subscriptions.add(sub);
    sub.start();
    return sub;
  }

  async health(): Promise<HealthReport> {
    const nc = this.nc;
    if (!nc || this.closed || nc.isClosed())
      return { ok: false, transport: 'nats', details: { connected: false } };
    try {
      const rttMs = await nc.rtt();
      return { ok: true, transport: 'nats', details: { connected: true, rttMs, server: nc.getServer() } };
    } catch (err) {
      return { ok: false, transport: 'nats', details: { connected: false, error: describe(err) } };
    }
  }

  async stats(topic: string, group?: string): Promise<TransportStats> {
    const { jsm } = this.require();
    const stats: TransportStats = {
      depth: null,
      inFlight: null,
      delayed: null,
      deadLettered: null,
      lag: null,
      oldestAgeMs: null,
      extras: {},
    };
    const stream = await jsm.streams.info(names.stream(topic)).catch((err: unknown) => {
      if (notFound(err)) throw new ConfigError('topic', `stream "${topic}" does not exist`);
      throw err;
    });
    stats.extras.streamMessages = stream.state.messages;
    if (group === undefined) return stats;
    const consumer = await jsm.consumers.info(names.stream(topic), group).catch((err: unknown) => {
      if (notFound(err)) throw new ConfigError('group', `consumer "${group}" does not exist on "${topic}"`);
      throw err;
    });
    // Not yet delivered to the group (other groups' retries and skipped types included).
    stats.depth = consumer.num_pending;
    // Pending acks: deliveries being handled and retries the server holds until due.
    stats.inFlight = consumer.num_ack_pending;
    stats.extras.redelivered = consumer.num_redelivered;
    stats.extras.waitingPulls = consumer.num_waiting;
    const dlq = names.deadLetterStream(topic);
    try {
      const info = await jsm.streams.info(dlq, { subjects_filter: names.deadLetterSubject(topic, group) });
      stats.deadLettered = info.state.subjects?.[names.deadLetterSubject(topic, group)] ?? 0;
    } catch (err) {
      if (!notFound(err)) throw err;
      stats.deadLettered = 0;
    }
    return stats;
  }

  /** Peek, redrive and purge by stream message get and delete, never by delivery (see operations.ts). */
  get operations(): NatsOperations {
    this.#operations ??= new NatsOperations({
      jsm: () => this.require().jsm,
      handOff: (subject, wire, msgId) => this.handOff(subject, wire, msgId),
    });
    return this.#operations;
  }
  #operations: NatsOperations | undefined;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.close()));
    const nc = this.nc;
    this.nc = undefined;
    // Drain flushes acks and publishes still buffered, then closes.
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close().catch(() => {}));
  }
}

function replayOptions(spec: SubscribeSpec): Partial<OrderedConsumerOptions> {
  const from = spec.replay ?? 'earliest';
  // No subject filter: an ordered consumer with one needs NATS 2.10; retries are skipped on receipt.
  const base = {};
  if (from === 'earliest') return { ...base, deliver_policy: DeliverPolicy.All };
  if (from === 'latest') return { ...base, deliver_policy: DeliverPolicy.New };
  if ('offset' in from) {
    const seq = Number(from.offset);
    if (!Number.isSafeInteger(seq) || seq < 1)
      throw new ConfigError(
        'replay.offset',
        `a stream sequence (integer ≥ 1), got ${JSON.stringify(from.offset)}`,
      );
    return { ...base, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq };
  }
  return {
    ...base,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(from.timestamp).toISOString(),
  };
}
