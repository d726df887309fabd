/** The Kafka transport: CloudEvents binary mode on records, provisioning, publishing, subscriptions, figures. */
import {
  type Capabilities,
  ConnectionError,
  type Delivery,
  ErrorCode,
  fromBinary,
  type HealthReport,
  type Logger,
  PublishError,
  type RawEnvelope,
  redactText,
  type SubscribeSpec,
  silentLogger,
  type Transport,
  type TransportContext,
  type TransportSubscription,
  toBinary,
  type WireMessage,
} from '@omnibus/core';
import {
  emptyStats,
  type PublishCall,
  type TransportStats,
  tlsFailure,
  warnIfInsecure,
} from '@omnibus/core/kit';
import { Accumulator, toPublishError } from './accumulator.js';
import { classifyError, type DriverProducer, KafkaDriver } from './driver.js';
import { checkName, deadLetterTopic, groupId, redriveGroupId, retryGroupId, retryTopic } from './naming.js';
import { KafkaOperations } from './operations.js';
import {
  DEFAULT_BROKER_MESSAGE_MAX_BYTES,
  type KafkaTransportOptions,
  type ResolvedKafkaOptions,
  resolveOptions,
} from './options.js';
import { KafkaSubscription } from './subscription.js';

const BINARY_MODE = { prefix: 'ce_', contentTypeHeader: 'content-type' } as const;
// Room for the record batch header and per-record framing, so a message of exactly
// maxMessageBytes still fits under the broker's message.max.bytes.
const RECORD_OVERHEAD_BYTES = 1024;
const HEALTH_TIMEOUT_MS = 5_000;
// A failed produce request is retried at most 2 s apart for about half a minute (then the producer is
// replaced). The caller's deadline is separate: a publish whose caller gave up during these retries
// has an unknown outcome, and publishes queued behind it are withdrawn at their own deadlines.
const PRODUCER_MAX_RETRY_MS = 2_000;
const PRODUCER_RETRIES = 20;
/** The answer for a publish that was never queued: the topic lookup before it sends nothing. */
const NOTHING_SENT = (): 'withdrawn' => 'withdrawn';

function describe(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}

export class KafkaTransport implements Transport {
  readonly name = 'kafka';
  readonly options: ResolvedKafkaOptions;
  private caps: Capabilities;
  private logger: Logger = silentLogger;
  private driver: KafkaDriver | undefined;
  private producer: DriverProducer | undefined;
  private accumulator: Accumulator | undefined;
  /** Topics known to exist; each passed checkName or is derived from names that did. */
  private readonly knownTopics = new Set<string>();
  private readonly ensuring = new Map<string, Promise<void>>();
  private readonly subscriptions = new Set<KafkaSubscription>();
  private closed = false;

  constructor(options: KafkaTransportOptions = {}) {
    this.options = resolveOptions(options);
    this.caps = {
      consumerGroups: true,
      fanOut: true,
      ordering: 'group',
      replay: true,
      delayTiersMs: this.options.delayTiersMs,
      maxMessageBytes:
        this.options.maxMessageBytes ?? DEFAULT_BROKER_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES,
      persistent: true,
      // A topic keeps records for groups that join later: "nobody will read this" is not knowable.
      rejectsUnroutable: false,
    };
  }

  get capabilities(): Capabilities {
    return this.caps;
  }

  async connect(ctx: TransportContext): Promise<void> {
    if (this.closed) throw new ConnectionError('kafka transport is closed', { retryable: false });
    if (this.driver) return;
    this.logger = ctx.logger;
    const o = this.options;
    warnIfInsecure(ctx.logger, o.ssl, { transport: 'kafka', brokers: o.brokers.join(',') });
    if (o.sasl && !o.ssl) {
      ctx.logger.warn(
        { transport: 'kafka', mechanism: o.sasl.mechanism },
        'kafka: SASL without ssl: the authentication exchange and every message travel unencrypted',
      );
    }
    const driver = new KafkaDriver({
      brokers: o.brokers,
      clientId: o.clientId ?? `omnibus-${ctx.service}`,
      ssl: o.ssl as KafkaDriverSsl,
      sasl: o.sasl,
      connectTimeoutMs: o.connectTimeoutMs,
      connectionTimeoutMs: o.connectionTimeoutMs,
      requestTimeoutMs: o.requestTimeoutMs,
      retry: o.retry,
      logger: ctx.logger,
    });
    const producer = driver.producer({
      idempotent: o.idempotent,
      acks: o.acks === 'all' ? -1 : o.acks === 'leader' ? 1 : 0,
      compression: o.compression,
      ackTimeoutMs: o.requestTimeoutMs,
      retry: { retries: PRODUCER_RETRIES, initialRetryTimeMs: 100, maxRetryTimeMs: PRODUCER_MAX_RETRY_MS },
    });
    try {
      await driver.connect(producer);
    } catch (err) {
      await producer.disconnect().catch(() => {});
      await driver.close().catch(() => {});
      if (err instanceof ConnectionError) throw err;
      const tls = tlsFailure(err);
      if (tls) {
        throw new ConnectionError(`cannot connect to kafka at ${o.brokers.join(',')}: ${tls.explanation}`, {
          cause: err,
          retryable: false,
          details: { tls: tls.kind, code: tls.code },
        });
      }
      const auth = (err as { name?: unknown })?.name === 'KafkaJSSASLAuthenticationError';
      throw new ConnectionError(`cannot connect to kafka at ${o.brokers.join(',')}: ${describe(err)}`, {
        cause: err,
        // Wrong credentials stay wrong: retrying the connect cannot help.
        ...(auth ? { retryable: false, details: { auth: 'failed' } } : {}),
      });
    }
    this.driver = driver;
    this.producer = producer;
    this.accumulator = new Accumulator(producer, {
      lingerMs: o.lingerMs,
      batchMaxBytes: o.batchMaxBytes,
      batchMaxMessages: o.batchMaxMessages,
      maxInFlightSends: o.maxInFlightSends,
    });
    if (o.maxMessageBytes === undefined) await this.readMessageLimit(driver);
  }

  /** The broker's message.max.bytes, when the broker lets us read it (ACLs may not). */
  private async readMessageLimit(driver: KafkaDriver): Promise<void> {
    try {
      const cluster = await driver.describeCluster();
      const broker = cluster.controller ?? cluster.brokers[0]?.nodeId;
      if (broker === undefined) return;
      const config = await driver.brokerConfig(broker, ['message.max.bytes']);
      const limit = Number(config['message.max.bytes']);
      if (Number.isSafeInteger(limit) && limit > RECORD_OVERHEAD_BYTES * 2) {
        this.caps = { ...this.caps, maxMessageBytes: limit - RECORD_OVERHEAD_BYTES };
      }
    } catch (err) {
      this.logger.debug({ err: describe(err) }, 'kafka: could not read message.max.bytes; using the default');
    }
  }

  private require(): { driver: KafkaDriver; accumulator: Accumulator } {
    if (this.closed) throw new PublishError(ErrorCode.CLOSED, 'kafka transport is closed');
    if (!this.driver || !this.accumulator) {
      throw new ConnectionError('kafka transport is not connected: call connect() first', {
        retryable: false,
      });
    }
    return { driver: this.driver, accumulator: this.accumulator };
  }

  encode(envelope: RawEnvelope): WireMessage {
    return toBinary(envelope, BINARY_MODE);
  }

  decode(wire: WireMessage): RawEnvelope {
    return fromBinary(wire, BINARY_MODE);
  }

  publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    let accumulator: Accumulator;
    try {
      accumulator = this.require().accumulator;
    } catch (err) {
      return Promise.reject(err);
    }
    if (messages.length === 0) return Promise.resolve();
    // The per-message path: a topic already seen (checked, and known to exist) goes straight to the
    // accumulator, without a name check or an async step. Wire messages are records as they are.
    if (this.knownTopics.has(topic)) return accumulator.publish(topic, messages, call);
    return this.publishToNewTopic(topic, messages, accumulator, call);
  }

  private async publishToNewTopic(
    topic: string,
    messages: readonly WireMessage[],
    accumulator: Accumulator,
    call: PublishCall,
  ): Promise<void> {
    checkName('topic', topic);
    // Until the messages reach the accumulator nothing of them can be written: a caller who gives up
    // while the topic is looked up (or created) is told they were withdrawn, and they are not queued.
    call.onAbandon(NOTHING_SENT);
    try {
      await this.ensureTopic(topic);
    } catch (err) {
      throw toPublishError(err, topic);
    }
    if (call.abandoned) {
      throw new PublishError(ErrorCode.TIMEOUT, `publish to "${topic}" abandoned before it was queued`);
    }
    await accumulator.publish(topic, messages, call);
  }

  /** Makes sure a topic exists before the first publish to it (the client would otherwise retry forever). */
  private ensureTopic(topic: string): Promise<void> {
    let pending = this.ensuring.get(topic);
    if (!pending) {
      pending = (async () => {
        const { driver } = this.require();
        const topics = await driver.listTopics();
        if (topics.includes(topic)) return;
        if (!this.options.autoCreateTopics) {
          throw new PublishError(
            ErrorCode.UNROUTABLE,
            `kafka topic "${topic}" does not exist (autoCreateTopics is off)`,
          );
        }
        await this.createTopics([topic], this.options.partitions);
      })()
        .then(() => {
          this.knownTopics.add(topic);
        })
        .finally(() => this.ensuring.delete(topic));
      this.ensuring.set(topic, pending);
    }
    return pending;
  }

  private async createTopics(topics: string[], partitions: number): Promise<void> {
    const missing = topics.filter((t) => !this.knownTopics.has(t));
    if (missing.length === 0) return;
    await this.require().driver.createTopics(
      missing.map((topic) => ({
        topic,
        partitions,
        replicationFactor: this.options.replicationFactor,
        config: this.options.topicConfig,
      })),
    );
    for (const t of missing) this.knownTopics.add(t);
  }

  async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    this.require();
    checkName('topic', topic);
    for (const { group } of groups) checkName('group', group);
    const o = this.options;
    try {
      await this.createTopics([topic], o.partitions);
      const retry = groups.flatMap(({ group }) =>
        o.delayTiersMs.map((tier) => retryTopic(topic, group, tier)),
      );
      await this.createTopics(retry, o.retryPartitions ?? o.partitions);
      await this.createTopics(
        groups.map(({ group }) => deadLetterTopic(topic, group)),
        o.deadLetterPartitions ?? o.partitions,
      );
    } catch (err) {
      throw new ConnectionError(`kafka: provisioning "${topic}" failed: ${describe(err)}`, { cause: err });
    }
  }

  async subscribe(
    spec: SubscribeSpec,
    onDelivery: (delivery: Delivery) => void,
  ): Promise<TransportSubscription> {
    const { driver, accumulator } = this.require();
    const replay = spec.replay !== undefined || spec.group === undefined;
    await this.provision(spec.topic, replay ? [] : [{ group: spec.group!, patterns: spec.patterns }]);
    let startOffsets: Map<number, string> | undefined;
    try {
      startOffsets = replay ? await this.replayStart(driver, spec) : undefined;
    } catch (err) {
      throw new ConnectionError(`kafka: cannot find the replay start of "${spec.topic}": ${describe(err)}`, {
        cause: err,
      });
    }
    const sub = new KafkaSubscription(
      {
        driver,
        options: this.options,
        logger: this.logger,
        produce: (topic, record) => accumulator.publish(topic, [record]),
      },
      spec,
      onDelivery,
    );
    try {
      await sub.start(startOffsets);
    } catch (err) {
      throw new ConnectionError(`kafka: cannot start consumer on "${spec.topic}": ${describe(err)}`, {
        cause: err,
      });
    }
    this.subscriptions.add(sub);
    const close = sub.close.bind(sub);
    sub.close = async () => {
      this.subscriptions.delete(sub);
      await close();
    };
    return sub;
  }

  /** Per-partition start offsets of a replay from an offset or a time; undefined for earliest/latest. */
  private async replayStart(
    driver: KafkaDriver,
    spec: SubscribeSpec,
  ): Promise<Map<number, string> | undefined> {
    const from = spec.replay;
    if (from === undefined || from === 'earliest' || from === 'latest') return undefined;
    const bounds = await driver.topicOffsets(spec.topic);
    const out = new Map<number, string>();
    if ('timestamp' in from) {
      for (const { partition, offset } of await driver.offsetsForTimestamp(spec.topic, from.timestamp)) {
        out.set(partition, offset);
      }
      return out;
    }
    const wanted = Number(from.offset);
    for (const { partition, low, high } of bounds) {
      // Clamped to what the partition holds, so an out-of-range offset does not reset the consumer.
      out.set(partition, String(Math.min(Math.max(wanted, low), high)));
    }
    return out;
  }

  async health(): Promise<HealthReport> {
    if (!this.driver) return { ok: false, transport: this.name, details: { error: 'not connected' } };
    let timer: NodeJS.Timeout | undefined;
    try {
      const cluster = await Promise.race([
        this.driver.describeCluster(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${HEALTH_TIMEOUT_MS} ms`)),
            HEALTH_TIMEOUT_MS,
          );
        }),
      ]);
      return {
        ok: cluster.brokers.length > 0,
        transport: this.name,
        details: {
          clusterId: cluster.clusterId,
          controller: cluster.controller,
          brokers: cluster.brokers.length,
          ...(this.options.ssl
            ? {
                tls:
                  typeof this.options.ssl === 'object' && this.options.ssl.rejectUnauthorized === false
                    ? 'unverified'
                    : 'verified',
              }
            : {}),
          ...(this.options.sasl ? { sasl: this.options.sasl.mechanism } : {}),
        },
      };
    } catch (err) {
      return { ok: false, transport: this.name, details: { error: describe(err), kind: classifyError(err) } };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Without a group: `extras.partitions` and `extras.messages` (records held, high - low, over all
   * partitions); the group figures are null. With a group: `depth` and `lag` are what the group still
   * has to read (a group that committed nothing lags by everything held), `delayed` what waits in its
   * retry tiers, `deadLettered` what its dead-letter topic holds past the redrive group's offset, and `extras['lag.<partition>']` the lag
   * per partition. The broker knows nothing of deliveries in flight or of record ages: those are null.
   */
  async stats(topic: string, group?: string): Promise<TransportStats> {
    const { driver } = this.require();
    const offsets = await driver.topicOffsets(topic);
    let messages = 0;
    for (const p of offsets) messages += p.high - p.low;
    const extras: Record<string, number> = { partitions: offsets.length, messages };
    const out: TransportStats = emptyStats(extras);
    if (group === undefined) return out;
    const lagOf = async (t: string, g: string, parts = offsets, perPartition = false) => {
      const committed = new Map((await driver.groupOffsets(g, t)).map((c) => [c.partition, c.offset]));
      let total = 0;
      for (const p of parts) {
        const c = committed.get(p.partition) ?? -1;
        const lag = Math.max(0, p.high - (c < 0 ? p.low : Math.max(c, p.low)));
        if (perPartition) extras[`lag.${p.partition}`] = lag;
        total += lag;
      }
      return total;
    };
    out.lag = await lagOf(topic, groupId(topic, group), offsets, true);
    out.depth = out.lag;
    // Only topics that exist: asking for a missing one makes the client retry for a long time.
    const existing = new Set(await driver.listTopics());
    let delayed = 0;
    for (const tier of this.options.delayTiersMs) {
      const t = retryTopic(topic, group, tier);
      if (existing.has(t))
        delayed += await lagOf(t, retryGroupId(topic, group), await driver.topicOffsets(t));
    }
    out.delayed = delayed;
    const dlq = deadLetterTopic(topic, group);
    // Dead letters a redrive or purge has passed (the redrive group's offset) no longer count.
    out.deadLettered = existing.has(dlq)
      ? await lagOf(dlq, redriveGroupId(topic, group), await driver.topicOffsets(dlq))
      : 0;
    return out;
  }

  /** Peek, redrive and purge through consumer groups of their own (see operations.ts). */
  get operations(): KafkaOperations {
    this.#operations ??= new KafkaOperations({
      options: this.options,
      parts: () => {
        const { driver } = this.require();
        return { driver, producer: this.producer! };
      },
    });
    return this.#operations;
  }
  #operations: KafkaOperations | undefined;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.close()));
    this.subscriptions.clear();
    // Waits for the requests in flight as long as one request may take; what is still queued then fails.
    await this.accumulator?.close(this.options.requestTimeoutMs);
    await this.producer?.disconnect().catch((err: unknown) => {
      this.logger.debug({ err: describe(err) }, 'kafka producer disconnect failed');
    });
    await this.driver?.close().catch(() => {});
  }
}

type KafkaDriverSsl = ConstructorParameters<typeof KafkaDriver>[0]['ssl'];
