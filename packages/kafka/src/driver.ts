/**
 * The only module that touches kafkajs: a small client interface (admin, producer, group consumer)
 * in plain types, so the rest of the transport never sees a kafkajs type and another client can
 * replace this file later.
 */
import type { ConnectionOptions } from 'node:tls';
import { type Logger, setHeader } from '@omnibus/core';
import { tlsFailure, withConnectDeadline } from '@omnibus/core/kit';
import type {
  Admin,
  Consumer,
  EachBatchPayload,
  IHeaders,
  Kafka as KafkaClient,
  LogEntry,
  Producer,
  RecordMetadata,
  RetryOptions,
  SASLOptions,
} from 'kafkajs';
import kafkajs from 'kafkajs';

const { Kafka, CompressionTypes, Partitioners, logLevel: LogLevel, ConfigResourceTypes } = kafkajs;

export interface DriverRetry {
  retries: number;
  initialRetryTimeMs: number;
  maxRetryTimeMs: number;
}

export interface DriverSasl {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  username: string;
  password: string;
}

export interface DriverConfig {
  brokers: string[];
  clientId: string;
  ssl?: boolean | ConnectionOptions | undefined;
  sasl?: DriverSasl | undefined;
  /** Whole `connect()`: past it, every retry stops and it fails with a ConnectionError. */
  connectTimeoutMs: number;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  retry: DriverRetry;
  logger: Logger;
}

/** Shaped like the core's WireMessage, so a message to publish is handed over without a copy. */
export interface ProducedRecord {
  key?: string | undefined;
  body: Uint8Array;
  /** Bytes values are sent unchanged (used to copy a received record's headers exactly). */
  headers: Record<string, string | Uint8Array>;
  /** Set only when the producer resends a record kafkajs skipped: the partition it was meant for. */
  partition?: number;
}

export interface TopicRecords {
  topic: string;
  records: ProducedRecord[];
}

export interface ConsumedRecord {
  readonly offset: string;
  readonly key: string | undefined;
  readonly value: Uint8Array;
  /** Header values decoded as UTF-8; for a repeated header name the last value wins. */
  readonly headers: Record<string, string>;
  /**
   * The same headers as received, bytes untouched, for copying the record elsewhere (built on first
   * read: only retries and dead letters need them).
   */
  readonly rawHeaders: Record<string, Uint8Array>;
  /** Record timestamp, ms since the epoch. */
  readonly timestamp: number;
}

export interface ConsumedBatch {
  topic: string;
  partition: number;
  records: ConsumedRecord[];
}

export interface BatchControl {
  /** Moves the fetch position past this offset (it will not be fetched again unless sought). */
  resolve(offset: string): void;
  /** Keeps the group membership alive; rejects when the group is rebalancing (rethrow it). */
  heartbeat(): Promise<void>;
  /** False once the consumer stops or the partition was sought: stop handing out this batch. */
  isActive(): boolean;
}

export interface ConsumerHandlers {
  /** Called synchronously after every group (re)join, before the first fetch of the new generation. */
  onAssignment(memberId: string, assignment: ReadonlyMap<string, readonly number[]>): void;
  onBatch(batch: ConsumedBatch, control: BatchControl): Promise<void>;
  onCrash?(error: Error, restarting: boolean): void;
}

export interface ConsumerConfig {
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxWaitTimeMs: number;
  maxBytesPerPartition: number;
  partitionsConsumedConcurrently: number;
  /** Delay before re-creating a consumer that kafkajs gave up on. */
  restartDelayMs: number;
}

export interface DriverConsumer {
  start(): Promise<void>;
  pause(topic: string, partitions?: number[]): void;
  resume(topic: string, partitions?: number[]): void;
  /** The next fetch of this partition starts at `offset` (applied on the next fetch cycle). */
  seek(topic: string, partition: number, offset: string): void;
  commit(offsets: { topic: string; partition: number; offset: string }[]): Promise<void>;
  /** Leaves the group and disconnects. */
  stop(): Promise<void>;
}

export interface DriverProducer {
  connect(): Promise<void>;
  send(batches: TopicRecords[]): Promise<void>;
  disconnect(): Promise<void>;
}

export interface ProducerConfig {
  idempotent: boolean;
  acks: -1 | 0 | 1;
  compression: 'none' | 'gzip';
  /** Broker-side wait for replication acks per request. */
  ackTimeoutMs: number;
  /** Retries of one send; kept short between attempts so a send resumes soon after the broker is back. */
  retry: DriverRetry;
}

export interface PartitionOffsets {
  partition: number;
  low: number;
  high: number;
}

export interface ClusterInfo {
  clusterId: string;
  controller: number | null;
  brokers: { nodeId: number; host: string; port: number }[];
}

export type DriverErrorKind = 'too-large' | 'unknown-topic' | 'connection' | 'other';

/** Maps a client error (possibly wrapped by retries) to what the transport needs to decide. */
export function classifyError(err: unknown): DriverErrorKind {
  let current: unknown = err;
  for (let depth = 0; current && depth < 6; depth++) {
    const e = current as { type?: unknown; name?: unknown; cause?: unknown; originalError?: unknown };
    if (e.type === 'MESSAGE_TOO_LARGE' || e.type === 'RECORD_LIST_TOO_LARGE') return 'too-large';
    if (e.type === 'UNKNOWN_TOPIC_OR_PARTITION') return 'unknown-topic';
    if (
      e.name === 'KafkaJSConnectionError' ||
      e.name === 'KafkaJSConnectionClosedError' ||
      e.name === 'KafkaJSRequestTimeoutError' ||
      e.name === 'KafkaJSBrokerNotFound' ||
      e.name === 'KafkaJSNoBrokerAvailableError'
    ) {
      return 'connection';
    }
    current = e.cause ?? e.originalError;
  }
  return 'other';
}

function headerBytes(value: IHeaders[string]): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return headerBytes(value[value.length - 1]);
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

type KafkaMessage = EachBatchPayload['batch']['messages'][number];
const EMPTY = new Uint8Array(0);

/** A fetched record; the string headers every delivery reads are decoded at once, the bytes copy on demand. */
export class FetchedRecord implements ConsumedRecord {
  readonly offset: string;
  readonly key: string | undefined;
  readonly value: Uint8Array;
  readonly headers: Record<string, string> = {};
  readonly timestamp: number;
  private raw: Record<string, Uint8Array> | undefined;

  constructor(private readonly message: KafkaMessage) {
    this.offset = message.offset;
    // Buffer#toString() without arguments is UTF-8 and goes straight to the decoder (with an encoding
    // argument it takes a slower, general path); invalid UTF-8 becomes U+FFFD instead of throwing.
    this.key = message.key ? message.key.toString() : undefined;
    this.value = message.value ?? EMPTY;
    const ts = Number(message.timestamp);
    this.timestamp = Number.isFinite(ts) ? ts : 0;
    const received = message.headers;
    if (received) {
      for (const name in received) {
        const bytes = headerBytes(received[name]);
        if (bytes !== undefined) setHeader(this.headers, name, bytes.toString());
      }
    }
  }

  get rawHeaders(): Record<string, Uint8Array> {
    if (!this.raw) {
      const raw: Record<string, Uint8Array> = {};
      const received = this.message.headers;
      if (received) {
        for (const name in received) {
          const bytes = headerBytes(received[name]);
          // `raw.__proto__ = bytes` would make a Buffer the prototype and its indices headers of the copy.
          if (bytes !== undefined) setHeader(raw, name, bytes);
        }
      }
      this.raw = raw;
    }
    return this.raw;
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Headers as the client takes them. Strings and Buffers are taken as they are, so the usual record
 * (all strings, or bytes copied from a fetched record) is passed without a copy; only a plain
 * Uint8Array value needs wrapping.
 */
function toHeaders(headers: Record<string, string | Uint8Array>): IHeaders {
  for (const name in headers) {
    const v = headers[name]!;
    if (typeof v !== 'string' && !Buffer.isBuffer(v)) return copyHeaders(headers);
  }
  return headers as IHeaders;
}

function copyHeaders(headers: Record<string, string | Uint8Array>): IHeaders {
  const out: IHeaders = {};
  for (const name in headers) {
    const v = headers[name]!;
    out[name] = typeof v === 'string' ? v : toBuffer(v);
  }
  return out;
}

// kafkajs logs every failed request at ERROR although the caller sees (and retries) the error, and
// warns about bounded idempotent retries that RotatingProducer makes safe: those become debug lines,
// so an application log is not flooded during a broker restart.
const ROUTINE = [
  /^Response /,
  /^Connection error/,
  /^Failed to send messages/,
  /^Limiting retries for the idempotent/,
  // While connect() probes a cluster that does not answer yet; its deadline error says so if it never does.
  /^Failed to connect to seed broker/,
];

function logCreator(logger: Logger) {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...fields } = log as LogEntry['log'] & { logger?: string };
      const text = `kafkajs ${namespace}: ${message}`;
      const routine = namespace === 'Connection' || ROUTINE.some((r) => r.test(message));
      if ((level === LogLevel.ERROR || level === LogLevel.WARN) && !routine) logger.warn(fields, text);
      else logger.debug(fields, text);
    };
}

// Pause between two connection probes while the cluster does not answer (doubling up to the cap).
const PROBE_FIRST_DELAY_MS = 100;
const PROBE_MAX_DELAY_MS = 1_000;

export class KafkaDriver {
  private readonly kafka: KafkaClient;
  private admin: Admin | undefined;
  private adminConnecting: Promise<Admin> | undefined;
  /**
   * Set when connect() gave up or the driver closed. kafkajs reads the broker list through a function
   * before each (re)connection attempt; once stopped it gets none, which kafkajs treats as a
   * non-retriable error: whatever retry loop is still running inside the client ends at its next attempt.
   */
  private stopped = false;
  private probeWait: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  constructor(private readonly config: DriverConfig) {
    this.kafka = this.client({
      retries: config.retry.retries,
      initialRetryTime: config.retry.initialRetryTimeMs,
      maxRetryTime: config.retry.maxRetryTimeMs,
      factor: 0.2,
      multiplier: 2,
    });
  }

  private client(retry: RetryOptions): KafkaClient {
    const { config } = this;
    return new Kafka({
      clientId: config.clientId,
      brokers: () => (this.stopped ? [] : config.brokers),
      ssl: config.ssl,
      // A copy: kafkajs writes into the object it is given (its authentication provider).
      sasl: config.sasl ? ({ ...config.sasl } as SASLOptions) : undefined,
      connectionTimeout: config.connectionTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      retry,
      logLevel: LogLevel.INFO,
      logCreator: logCreator(config.logger),
    });
  }

  private async getAdmin(): Promise<Admin> {
    if (this.admin) return this.admin;
    if (!this.adminConnecting) {
      const admin = this.kafka.admin();
      this.adminConnecting = admin.connect().then(
        () => {
          this.admin = admin;
          return admin;
        },
        (err: unknown) => {
          this.adminConnecting = undefined;
          throw err;
        },
      );
    }
    return this.adminConnecting;
  }

  /**
   * Connects the admin client and `producer` within `connectTimeoutMs`, or rejects with a ConnectionError
   * and leaves nothing running (no socket, no retry timer): the process can exit.
   *
   * kafkajs retries a first connection on its own timers (about a minute with default settings), and
   * those timers cannot be cancelled. So until the cluster answers, this probes it with a throwaway admin
   * client that makes exactly one attempt, and waits between probes on a timer of its own; only a
   * cluster that answered is then connected to for real.
   */
  connect(producer: DriverProducer): Promise<void> {
    const { brokers, connectTimeoutMs } = this.config;
    return withConnectDeadline(
      this.connectAll(producer),
      connectTimeoutMs,
      `kafka at ${brokers.join(',')}`,
      () => this.giveUp(producer),
    );
  }

  private async connectAll(producer: DriverProducer): Promise<void> {
    // The first connection of a client follows the client's retry settings (an admin's own `retry` is
    // not used for it): the probe is a client of its own that never retries.
    const prober = this.client({ retries: 0 });
    for (let delay = PROBE_FIRST_DELAY_MS; ; delay = Math.min(delay * 2, PROBE_MAX_DELAY_MS)) {
      if (this.stopped) throw new Error('connect gave up');
      const probe = prober.admin();
      try {
        await probe.connect();
        break;
      } catch (err) {
        // Anything but "nobody answers" (TLS, SASL, a bad broker list) fails at once: waiting won't fix it.
        // kafkajs reports an untrusted certificate as a connection error too; its socket error code tells.
        if (classifyError(err) !== 'connection' || tlsFailure(err)) throw err;
      } finally {
        await probe.disconnect().catch(() => {});
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.probeWait = undefined;
          resolve();
        };
        const timer = setTimeout(wake, delay);
        this.probeWait = { timer, wake };
      });
    }
    if (this.stopped) throw new Error('connect gave up');
    await this.getAdmin();
    await producer.connect();
  }

  /** Stops connecting: no further probes or client retries, and whatever did connect is disconnected. */
  private async giveUp(producer: DriverProducer): Promise<void> {
    this.stopped = true;
    this.probeWait?.wake();
    await Promise.allSettled([producer.disconnect(), this.close()]);
  }

  async listTopics(): Promise<string[]> {
    return (await this.getAdmin()).listTopics();
  }

  /**
   * Creates the topics that do not exist yet (existing ones are left as they are) and waits until
   * every partition has a leader. kafkajs's own `waitForLeaders` gives up on UNKNOWN_TOPIC_OR_PARTITION,
   * which a KRaft broker answers while its metadata cache still lags the controller.
   */
  async createTopics(
    topics: {
      topic: string;
      partitions: number;
      replicationFactor: number;
      config?: Record<string, string>;
    }[],
    timeoutMs = 30_000,
  ): Promise<void> {
    if (topics.length === 0) return;
    const admin = await this.getAdmin();
    try {
      await admin.createTopics({
        waitForLeaders: false,
        timeout: timeoutMs,
        topics: topics.map((t) => ({
          topic: t.topic,
          numPartitions: t.partitions,
          replicationFactor: t.replicationFactor,
          configEntries: Object.entries(t.config ?? {}).map(([name, value]) => ({ name, value })),
        })),
      });
    } catch (err) {
      // Another process won the race for some of them: kafkajs lists those as TOPIC_ALREADY_EXISTS.
      const errors = (err as { errors?: { type?: string }[] }).errors;
      if (!errors?.every((e) => e.type === 'TOPIC_ALREADY_EXISTS')) throw err;
    }
    const names = topics.map((t) => t.topic);
    const deadline = Date.now() + timeoutMs;
    for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
      try {
        const meta = await admin.fetchTopicMetadata({ topics: names });
        const ready =
          meta.topics.length === names.length &&
          meta.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
        if (ready) return;
      } catch (err) {
        const type = (err as { type?: string }).type;
        if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw err;
      }
      if (Date.now() > deadline)
        throw new Error(`topics ${names.join(', ')} have no leaders after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async deleteTopics(topics: string[]): Promise<void> {
    if (topics.length === 0) return;
    await (await this.getAdmin()).deleteTopics({ topics });
  }

  async topicOffsets(topic: string): Promise<PartitionOffsets[]> {
    const rows = await (await this.getAdmin()).fetchTopicOffsets(topic);
    return rows
      .map((r) => ({ partition: r.partition, low: Number(r.low), high: Number(r.high) }))
      .sort((a, b) => a.partition - b.partition);
  }

  /** Committed offsets of a group on a topic; -1 where the group has committed nothing. */
  async groupOffsets(groupId: string, topic: string): Promise<{ partition: number; offset: number }[]> {
    const rows = await (await this.getAdmin()).fetchOffsets({ groupId, topics: [topic] });
    const partitions = rows.find((r) => r.topic === topic)?.partitions ?? [];
    return partitions
      .map((p) => ({ partition: p.partition, offset: Number(p.offset) }))
      .sort((a, b) => a.partition - b.partition);
  }

  async offsetsForTimestamp(
    topic: string,
    timestamp: number,
  ): Promise<{ partition: number; offset: string }[]> {
    const rows = await (await this.getAdmin()).fetchTopicOffsetsByTimestamp(topic, timestamp);
    return rows.map((r) => ({ partition: r.partition, offset: r.offset }));
  }

  async describeCluster(): Promise<ClusterInfo> {
    const info = await (await this.getAdmin()).describeCluster();
    return {
      clusterId: info.clusterId,
      controller: info.controller,
      brokers: info.brokers.map((b) => ({ nodeId: b.nodeId, host: b.host, port: b.port })),
    };
  }

  /** Reads configuration values of one broker. */
  async brokerConfig(brokerId: number, names: string[]): Promise<Record<string, string>> {
    const res = await (await this.getAdmin()).describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.BROKER, name: String(brokerId), configNames: names }],
    });
    const out: Record<string, string> = {};
    for (const entry of res.resources[0]?.configEntries ?? []) out[entry.configName] = entry.configValue;
    return out;
  }

  /** Sets a group's committed offsets; the broker refuses while the group has running members. */
  async setGroupOffsets(
    groupId: string,
    topic: string,
    partitions: { partition: number; offset: string }[],
  ): Promise<void> {
    await (await this.getAdmin()).setOffsets({ groupId, topic, partitions });
  }

  async deleteGroups(groupIds: string[]): Promise<void> {
    await (await this.getAdmin()).deleteGroups(groupIds);
  }

  producer(config: ProducerConfig): DriverProducer {
    return new RotatingProducer(this.kafka, config);
  }

  consumer(config: ConsumerConfig, handlers: ConsumerHandlers): DriverConsumer {
    return new GroupConsumer(this.kafka, config, handlers, this.config.logger);
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.probeWait?.wake();
    const admin = this.admin ?? (await this.adminConnecting?.catch(() => undefined));
    this.admin = undefined;
    this.adminConnecting = undefined;
    await admin?.disconnect();
  }
}

/** The partition kafkajs's partitioner chose for each message object of a send (see `stickyPartitioner`). */
const chosenPartition = new WeakMap<object, number>();

/**
 * kafkajs's default partitioner, made to give a message the same partition on every retry of its send (the
 * default moves keyless messages round-robin on each attempt) and to remember it, so the producer can tell
 * which messages a partition's answer covers (see `RotatingProducer.send`).
 */
function stickyPartitioner() {
  const inner = Partitioners.DefaultPartitioner();
  return (args: Parameters<typeof inner>[0]): number => {
    const known = chosenPartition.get(args.message);
    if (known !== undefined && args.partitionMetadata.some((p) => p.partitionId === known)) return known;
    const partition = inner(args);
    chosenPartition.set(args.message, partition);
    return partition;
  };
}

/**
 * The records of `batches` whose partition (`partitions[i][j]` for record j of batch i) has no successful
 * answer in `answered`, each pinned to that partition; a record never given a partition is returned unpinned.
 */
export function unanswered(
  batches: readonly TopicRecords[],
  partitions: readonly (readonly (number | undefined)[])[],
  answered: readonly RecordMetadata[],
): TopicRecords[] {
  const ok = new Set(
    answered.filter((a) => a.errorCode === 0).map((a) => `${a.topicName}\u0000${a.partition}`),
  );
  const out: TopicRecords[] = [];
  batches.forEach((b, i) => {
    const missing: ProducedRecord[] = [];
    b.records.forEach((r, j) => {
      const partition = partitions[i]?.[j];
      if (partition === undefined) missing.push(r);
      else if (!ok.has(`${b.topic}\u0000${partition}`)) missing.push({ ...r, partition });
    });
    if (missing.length > 0) out.push({ topic: b.topic, records: missing });
  });
  return out;
}

/**
 * kafkajs rolls back an idempotent producer's sequence numbers when a send finally fails; if the
 * broker did write that request, the next batch would reuse its sequence numbers and could be taken
 * for a duplicate. After any failed send the producer is replaced (a new producer id starts fresh
 * sequences), so a failure never leaks into later sends.
 */
class RotatingProducer implements DriverProducer {
  private current: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private closed = false;

  constructor(
    private readonly kafka: KafkaClient,
    private readonly config: ProducerConfig,
  ) {}

  private create(): Promise<Producer> {
    if (this.current) return Promise.resolve(this.current);
    if (!this.connecting) {
      const producer = this.kafka.producer({
        idempotent: this.config.idempotent,
        maxInFlightRequests: this.config.idempotent ? 1 : undefined,
        createPartitioner: stickyPartitioner,
        allowAutoTopicCreation: false,
        retry: {
          retries: this.config.retry.retries,
          initialRetryTime: this.config.retry.initialRetryTimeMs,
          maxRetryTime: this.config.retry.maxRetryTimeMs,
          factor: 0.2,
          multiplier: 2,
        },
      });
      this.connecting = producer.connect().then(
        () => {
          this.connecting = undefined;
          if (this.closed) {
            void producer.disconnect().catch(() => {});
            throw new Error('producer closed');
          }
          this.current = producer;
          return producer;
        },
        async (err: unknown) => {
          this.connecting = undefined;
          await producer.disconnect().catch(() => {});
          throw err;
        },
      );
    }
    return this.connecting;
  }

  async connect(): Promise<void> {
    await this.create();
  }

  /**
   * Sends and resends until every record was acknowledged by its partition's leader. kafkajs 2.2.4 keeps,
   * across the retries of one sendBatch, the answers per broker: when a leader dies mid-send and its
   * partitions move to a broker that already answered for others, the retry skips that broker and the
   * call resolves without the moved partitions' records ever being written (tulios/kafkajs#1303; seen
   * here with a SIGKILLed leader: 83 of 250 records lost, publish resolved). So each record keeps one
   * partition across retries (`stickyPartitioner`), the answer is checked partition by partition, and
   * records whose partition has no answer are sent again, pinned to it (their sequence numbers were
   * rolled back, never used).
   */
  async send(batches: TopicRecords[]): Promise<void> {
    let pending = batches;
    for (let round = 0; pending.length > 0; round++) {
      if (round === 3) {
        throw new Error(
          `kafkajs acknowledged a produce request without writing ${pending.reduce((n, b) => n + b.records.length, 0)} of its records`,
        );
      }
      pending = await this.sendOnce(pending);
    }
  }

  /** One sendBatch; returns the records it resolved without sending (pinned to their partitions). */
  private async sendOnce(batches: TopicRecords[]): Promise<TopicRecords[]> {
    const producer = await this.create();
    const topicMessages = batches.map((b) => ({
      topic: b.topic,
      messages: b.records.map((r) => ({
        key: r.key === undefined ? null : r.key,
        value: toBuffer(r.body),
        headers: toHeaders(r.headers),
        ...(r.partition === undefined ? {} : { partition: r.partition }),
      })),
    }));
    try {
      const answered = await producer.sendBatch({
        acks: this.config.acks,
        timeout: this.config.ackTimeoutMs,
        compression: this.config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        topicMessages,
      });
      if (this.config.acks === 0) return [];
      return unanswered(
        batches,
        topicMessages.map((t) => t.messages.map((m) => chosenPartition.get(m))),
        answered,
      );
    } catch (err) {
      if (this.config.idempotent && this.current === producer) {
        this.current = undefined;
        void producer.disconnect().catch(() => {});
      }
      throw err;
    }
  }

  async disconnect(): Promise<void> {
    this.closed = true;
    const producer = this.current ?? (await this.connecting?.catch(() => undefined));
    this.current = undefined;
    await producer?.disconnect();
  }
}

/**
 * One group member. kafkajs restarts a crashed consumer by itself when the error is retriable; when
 * it gives up, this wrapper builds a fresh consumer after a delay so a subscription outlives any
 * broker outage.
 */
class GroupConsumer implements DriverConsumer {
  private consumer: Consumer | undefined;
  private stopped = false;
  /** Calls of seek() so far: a batch is made stale only by a seek, and the client only seeks through it. */
  private seeks = 0;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly kafka: KafkaClient,
    private readonly config: ConsumerConfig,
    private readonly handlers: ConsumerHandlers,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: this.config.groupId,
      sessionTimeout: this.config.sessionTimeoutMs,
      rebalanceTimeout: this.config.rebalanceTimeoutMs,
      heartbeatInterval: this.config.heartbeatIntervalMs,
      maxWaitTimeInMs: this.config.maxWaitTimeMs,
      maxBytesPerPartition: this.config.maxBytesPerPartition,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      const assignment = new Map<string, number[]>();
      for (const [topic, partitions] of Object.entries(event.payload.memberAssignment)) {
        assignment.set(topic, [...partitions]);
      }
      this.handlers.onAssignment(event.payload.memberId, assignment);
    });
    consumer.on(consumer.events.CRASH, (event) => {
      const { error, restart } = event.payload;
      this.handlers.onCrash?.(error, restart || !this.stopped);
      if (!restart && !this.stopped && this.consumer === consumer) this.scheduleRestart();
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.config.topics, fromBeginning: this.config.fromBeginning });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.config.partitionsConsumedConcurrently,
      eachBatch: async (payload) => {
        const { batch } = payload;
        // isActive() runs once per record, and the client's isStale() builds a JSON key per call. A
        // batch turns stale only when its partition is sought, which happens only through seek()
        // below: the client is asked again only after a seek (and once at first).
        let seeksSeen = -1;
        let stale = false;
        await this.handlers.onBatch(
          {
            topic: batch.topic,
            partition: batch.partition,
            records: batch.messages.map((m) => new FetchedRecord(m)),
          },
          {
            resolve: (offset) => payload.resolveOffset(offset),
            heartbeat: () => payload.heartbeat(),
            isActive: () => {
              if (seeksSeen !== this.seeks) {
                seeksSeen = this.seeks;
                stale = payload.isStale();
              }
              return payload.isRunning() && !stale && !this.stopped;
            },
          },
        );
      },
    });
  }

  private scheduleRestart(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.stopped) return;
      const old = this.consumer;
      this.consumer = undefined;
      void (async () => {
        await old?.disconnect().catch(() => {});
        if (this.stopped) return;
        try {
          await this.start();
        } catch (err) {
          this.logger.warn({ err, groupId: this.config.groupId }, 'kafka consumer restart failed; retrying');
          this.scheduleRestart();
        }
      })();
    }, this.config.restartDelayMs);
    this.restartTimer.unref?.();
  }

  pause(topic: string, partitions?: number[]): void {
    this.consumer?.pause([partitions ? { topic, partitions } : { topic }]);
  }

  resume(topic: string, partitions?: number[]): void {
    this.consumer?.resume([partitions ? { topic, partitions } : { topic }]);
  }

  seek(topic: string, partition: number, offset: string): void {
    this.seeks++;
    try {
      this.consumer?.seek({ topic, partition, offset });
    } catch (err) {
      // Between a crash and the restart there is no group to seek in; the partition then restarts
      // from its committed offset, which is at or before the sought one.
      this.logger.debug({ err, topic, partition }, 'kafka seek skipped: consumer restarting');
    }
  }

  async commit(offsets: { topic: string; partition: number; offset: string }[]): Promise<void> {
    if (offsets.length === 0 || !this.consumer) return;
    await this.consumer.commitOffsets(offsets);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    const consumer = this.consumer;
    this.consumer = undefined;
    await consumer?.disconnect();
  }
}
