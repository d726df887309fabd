/**
 * The SQS transport: CloudEvents structured bodies, headers as message attributes; one queue per topic and
 * group (point-to-point), or an SNS topic per topic with one subscribed queue per group (fan-out mode).
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListTopicsCommand, SNSClient } from '@aws-sdk/client-sns';
import {
  GetQueueAttributesCommand,
  type GetQueueAttributesCommandOutput,
  ListQueuesCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import {
  type Capabilities,
  ConfigError,
  ConnectionError,
  type Delivery,
  ErrorCode,
  fromStructured,
  type HealthReport,
  isOmnibusError,
  type Logger,
  PublishError,
  type RawEnvelope,
  redactUrl,
  type SubscribeSpec,
  silentLogger,
  type Transport,
  type TransportContext,
  type TransportSubscription,
  toStructured,
  UnsupportedError,
  type WireMessage,
} from '@omnibus/core';
import {
  type AbandonVerdict,
  emptyStats,
  type PublishCall,
  type TransportStats,
  withConnectDeadline,
} from '@omnibus/core/kit';
import { headersToAttributes, MAX_ATTRIBUTES, sqsMessageBytes, TYPE_ATTRIBUTE } from './attributes.js';
import { brokerAnswered, describeError, isQueueMissing } from './aws-errors.js';
import { SqsOperations } from './operations.js';
import { fifoPredicate, type ResolvedSqsOptions, resolveOptions, type SqsOptions } from './options.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type QueueInfo, QueueRegistry } from './queues.js';
import { RetryStateStore } from './retry-state.js';
import { QueueSender, type SendEntry, toPublishError, withdraw } from './sender.js';
import { groupQueueKey, SNS_MAX_MESSAGE_BYTES, type SnsEntry, SnsFanOut } from './sns.js';
import { SqsSubscription } from './subscription.js';

/** Waits between connect probes: 100, 200, 400 … ms, at most 1 s (all within connectTimeoutMs). */
const PROBE_BACKOFF_MS = 100;
const PROBE_BACKOFF_MAX_MS = 1_000;
// Loopback endpoints are emulators (ElasticMQ, LocalStack) that ignore signatures; the SDK still
// needs some credentials to sign with, so these stand in when none are configured anywhere.
const EMULATOR_CREDENTIALS = { accessKeyId: 'omnibus-local', secretAccessKey: 'omnibus-local' };
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
// SQS: MessageGroupId and MessageDeduplicationId take up to 128 of these characters.
const FIFO_ID = /^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]{1,128}$/;

/** A key SQS cannot take as a group id is hashed: deterministic, so per-key order still holds. */
export function fifoGroupId(key: string): string {
  return FIFO_ID.test(key) ? key : `sha256-${createHash('sha256').update(key).digest('hex')}`;
}

function deduplicationId(id: string): string {
  return FIFO_ID.test(id) ? id : `sha256-${createHash('sha256').update(id).digest('hex')}`;
}

/** A send refused because the queue no longer exists (deleted, or an emulator restarted empty). */
function isVanishedQueue(err: unknown): boolean {
  return err instanceof PublishError && err.details.queueMissing === true;
}

const WITHDRAWN = (): AbandonVerdict => 'withdrawn';

/** An approximate count SQS reported, or null when it reported none. */
function count(value: string | undefined): number | null {
  const n = Number(value);
  return value === undefined || !Number.isFinite(n) ? null : n;
}

export class SqsTransport implements Transport {
  readonly name = 'sqs';
  readonly capabilities: Capabilities;
  private readonly options: ResolvedSqsOptions;
  private readonly client: SQSClient;
  private readonly registry: QueueRegistry;
  private readonly isFifo: (topic: string) => boolean;
  private readonly senders = new Map<string, QueueSender>();
  private readonly subscriptions = new Set<SqsSubscription>();
  private readonly retryStates = new RetryStateStore();
  // The envelope id of each encoded message, so publish can set the FIFO deduplication id without re-parsing the body.
  private readonly wireIds = new WeakMap<WireMessage, string>();
  // SNS mode: the envelope type of each encoded message, for the filter-policy attribute.
  private readonly wireTypes = new WeakMap<WireMessage, string>();
  private readonly sns: SnsFanOut | undefined;
  private readonly snsClient: SNSClient | undefined;
  /** SNS mode: the topic each group-queue key belongs to (FIFO-ness follows the topic). */
  private readonly queueTopics = new Map<string, string>();
  private readonly knownMaxBytes = new Map<string, number>();
  private logger: Logger = silentLogger;
  private closed = false;

  constructor(options: SqsOptions = {}) {
    this.options = resolveOptions(options);
    this.isFifo = fifoPredicate(this.options.fifoTopics);
    const allFifo = this.options.fifoTopics === true;
    const self = this;
    this.capabilities = {
      consumerGroups: true,
      fanOut: this.options.fanOut === 'sns',
      // Per transport: FIFO topics keep per-key order across the whole group (MessageGroupId), standard
      // queues only as far as the core keeps it in one process. 'group' is claimed only when every topic is FIFO.
      ordering: allFifo ? 'group' : 'process',
      replay: false,
      // SQS delays by any whole number of seconds (DelaySeconds, visibility timeout): no tiers to round to.
      delayTiersMs: [],
      get maxMessageBytes() {
        return self.maxMessageBytes();
      },
      persistent: this.options.persistent,
      // A queue keeps what nobody consumes yet; 'reject' is refused in resolveOptions.
      rejectsUnroutable: false,
    };
    this.client = this.createClient();
    this.registry = new QueueRegistry(
      this.client,
      {
        provision: this.options.provision,
        isFifo: (key) => this.isFifo(this.queueTopics.get(key) ?? key),
        visibilityTimeoutSeconds: this.options.visibilityTimeoutSeconds,
        maxReceiveCount: this.options.maxReceiveCount,
        onResolved: (info) => this.knownMaxBytes.set(info.url, info.maxMessageBytes),
      },
      () => this.logger,
    );
    if (this.options.fanOut === 'sns') {
      this.snsClient = new SNSClient(this.clientConfig('SNS'));
      this.sns = new SnsFanOut(
        this.snsClient,
        this.client,
        this.registry,
        { provision: this.options.provision, isFifo: this.isFifo },
        () => this.logger,
      );
    }
  }

  /** The endpoint requests go to: the option, else the SDK's standard environment variables. */
  private endpointFor(service: 'SQS' | 'SNS'): string | undefined {
    return (
      this.options.endpoint ?? process.env[`AWS_ENDPOINT_URL_${service}`] ?? process.env.AWS_ENDPOINT_URL
    );
  }

  /**
   * Region and credentials come from the SDK's default provider chain (environment, shared config and
   * credentials files, SSO, container and instance metadata) unless given. Only for a loopback endpoint
   * (an emulator, which ignores signatures) with nothing configured are placeholder credentials used.
   */
  private clientConfig(service: 'SQS' | 'SNS') {
    const endpoint = this.endpointFor(service);
    const { region, credentials } = this.options;
    let loopback = false;
    try {
      loopback = endpoint !== undefined && LOOPBACK_HOSTS.has(new URL(endpoint).hostname);
    } catch {
      throw new ConfigError('endpoint', `not a URL: ${redactUrl(endpoint ?? '')}`);
    }
    const envRegion = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    const envCredentials =
      process.env.AWS_ACCESS_KEY_ID !== undefined || process.env.AWS_PROFILE !== undefined;
    return {
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(region !== undefined
        ? { region }
        : endpoint !== undefined && !envRegion
          ? { region: 'us-east-1' }
          : {}),
      ...(credentials !== undefined
        ? { credentials: { ...credentials } } // a copy: the SDK writes tracking fields into it
        : loopback && !envCredentials
          ? { credentials: EMULATOR_CREDENTIALS }
          : {}),
      maxAttempts: this.options.maxAttempts,
    };
  }

  private createClient(): SQSClient {
    return new SQSClient({
      ...this.clientConfig('SQS'),
      requestHandler: {
        connectionTimeout: 5_000,
        // Long polls hold a request open for waitTimeSeconds; anything slower than that plus slack is stuck.
        // Publishes opt out (sender.ts): their caller's deadline is their only timeout.
        requestTimeout: (this.options.waitTimeSeconds + 5) * 1000,
        // Without this the SDK only warns and keeps waiting; seen here: ElasticMQ never answers a long
        // poll on a queue deleted meanwhile, which would stall that poller.
        throwOnRequestTimeout: true,
        // Every poller holds a socket for its whole long poll; the SDK's default pool of 50 would make
        // publishes queue behind them once a process has a few dozen subscriptions.
        httpAgent: { keepAlive: true, maxSockets: 512 },
        httpsAgent: { keepAlive: true, maxSockets: 512 },
      },
    });
  }

  /** The AWS SDK client this transport sends with, e.g. to add middleware (tracing, metrics). */
  get sdkClient(): SQSClient {
    return this.client;
  }

  /** SNS mode: the SNS client topics are published with (undefined in point-to-point mode). */
  get snsSdkClient(): SNSClient | undefined {
    return this.snsClient;
  }

  /** The smallest MaximumMessageSize among the queues seen so far (SQS's classic 256 KiB before any). */
  private maxMessageBytes(): number {
    // SNS mode: SNS's own limit, whatever the queues would take.
    if (this.sns) return Math.min(SNS_MAX_MESSAGE_BYTES, ...this.knownMaxBytes.values());
    if (this.knownMaxBytes.size === 0) return DEFAULT_MAX_MESSAGE_BYTES;
    return Math.min(...this.knownMaxBytes.values());
  }

  private get endpointLabel(): string {
    const endpoint = this.endpointFor('SQS');
    return endpoint ? redactUrl(endpoint) : `AWS SQS (${this.options.region ?? 'default region'})`;
  }

  /** A probe (see probeWithin) within `connectTimeoutMs`, so neither a closed port nor a silent one stretches it. */
  async connect(ctx: TransportContext): Promise<void> {
    this.logger = ctx.logger;
    await this.probeWithin(this.options.connectTimeoutMs);
  }

  /**
   * Probes until SQS (and SNS) answer, up to `maxAttempts` times, all within `timeoutMs`. The attempts
   * and the waits between them are this loop's, not the SDK's: the SDK's backoff between retries is a
   * plain timer an abort does not clear, so past the deadline it held a process whose connect had
   * failed alive for one more backoff delay (seen: 1.5 s). Here the deadline aborts the request in
   * flight or the wait, and the probe's own clients are destroyed with their sockets.
   */
  private probeWithin(timeoutMs: number): Promise<void> {
    const abort = new AbortController();
    return withConnectDeadline(this.probeUntil(abort.signal), timeoutMs, this.endpointLabel, () =>
      abort.abort(),
    );
  }

  private async probeUntil(signal: AbortSignal): Promise<void> {
    const sqsClient = new SQSClient({ ...this.clientConfig('SQS'), maxAttempts: 1 });
    const snsClient = this.sns ? new SNSClient({ ...this.clientConfig('SNS'), maxAttempts: 1 }) : undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.probe(sqsClient, snsClient, signal);
          return;
        } catch (err) {
          if (signal.aborted || attempt >= this.options.maxAttempts) throw err;
          const backoff = Math.min(PROBE_BACKOFF_MS * 2 ** (attempt - 1), PROBE_BACKOFF_MAX_MS);
          // Rejects (and clears its timer) when the deadline aborts the wait; withConnectDeadline has answered.
          await sleep(backoff, undefined, { signal });
        }
      }
    } finally {
      sqsClient.destroy();
      snsClient?.destroy();
    }
  }

  /** Any answer from SQS, an access-denied one included, proves it is reachable. */
  private async probe(
    sqsClient: SQSClient,
    snsClient: SNSClient | undefined,
    abortSignal: AbortSignal,
  ): Promise<void> {
    try {
      await sqsClient.send(new ListQueuesCommand({ QueueNamePrefix: 'omnibus-probe-', MaxResults: 1 }), {
        abortSignal,
      });
      if (snsClient) await snsClient.send(new ListTopicsCommand({}), { abortSignal });
    } catch (err) {
      if (brokerAnswered(err)) return;
      throw new ConnectionError(`cannot connect to SQS at ${this.endpointLabel}: ${describeError(err)}`, {
        cause: err,
      });
    }
  }

  encode(envelope: RawEnvelope): WireMessage {
    const wire = toStructured(envelope);
    this.wireIds.set(wire, envelope.id);
    if (this.sns) this.wireTypes.set(wire, envelope.type);
    return wire;
  }

  decode(wire: WireMessage): RawEnvelope {
    return fromStructured(wire);
  }

  /**
   * Not `async`: once the topic's queue is known, a publish goes straight to the queue's sender (no name
   * mapping, no awaits of its own). A queue that vanished meanwhile is handled by the full path below.
   * There is no publish timeout here: the caller's deadline (`call`) ends the wait, and what is still
   * queued in the batcher then is withdrawn (see sender.ts).
   */
  publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    if (this.sns) return this.publishToSns(this.sns, topic, messages, call);
    const info = this.closed || messages.length === 0 ? undefined : this.registry.resolved(topic);
    if (!info) return this.publishResolving(topic, messages, call);
    let sent: Promise<unknown>;
    try {
      sent = this.sendEntries(info, messages, call);
    } catch (err) {
      return Promise.reject(err);
    }
    return sent.then(
      () => {},
      (err: unknown) => {
        if (isVanishedQueue(err) && this.options.provision === 'create' && !call.abandoned) {
          return this.publishResolving(topic, messages, call);
        }
        throw err;
      },
    );
  }

  private async publishResolving(
    topic: string,
    messages: readonly WireMessage[],
    call: PublishCall,
  ): Promise<void> {
    if (this.closed) throw new PublishError(ErrorCode.CLOSED, 'the SQS transport is closed');
    if (messages.length === 0) return;
    // Until the entries are queued nothing can have been written: giving up meanwhile withdraws them.
    call.onAbandon(WITHDRAWN);
    const names = this.registry.names(topic); // a topic that cannot be a queue name throws ConfigError here
    let info = await this.resolveForPublish(topic);
    try {
      await this.sendQueued(info, messages, call);
    } catch (err) {
      if (!(isVanishedQueue(err) && this.options.provision === 'create')) throw err;
      // SQS refused every entry because the queue is gone: nothing was written, so nothing is withdrawn twice.
      call.onAbandon(WITHDRAWN);
      this.logger.warn(
        { topic, queue: names.main },
        'SQS queue vanished; recreating it and publishing again',
      );
      this.registry.invalidate(topic);
      info = await this.resolveForPublish(topic);
      await this.sendQueued(info, messages, call);
    }
  }

  /** Sends unless the caller gave up while the queue was being resolved (then nothing is sent at all). */
  private sendQueued(info: QueueInfo, messages: readonly WireMessage[], call: PublishCall): Promise<unknown> {
    if (call.abandoned) {
      return Promise.reject(
        new PublishError(ErrorCode.TIMEOUT, `publish to "${info.topic}" withdrawn before it was sent`, {
          details: { outcome: 'not-sent' },
        }),
      );
    }
    return this.sendEntries(info, messages, call);
  }

  private async resolveForPublish(topic: string): Promise<QueueInfo> {
    try {
      return await this.registry.resolve(topic);
    } catch (err) {
      if (err instanceof ConfigError || isQueueMissing(err)) {
        throw new PublishError(
          ErrorCode.UNROUTABLE,
          `no SQS queue for topic "${topic}": ${describeError(err)}`,
          {
            cause: err,
          },
        );
      }
      throw toPublishError(err, topic);
    }
  }

  /**
   * Every entry is checked (it may throw) before any is queued, so a bad message does not leave its
   * batch half published; then each goes to the queue's sender, and the caller's deadline learns how
   * to withdraw them.
   */
  private sendEntries(
    info: QueueInfo,
    messages: readonly WireMessage[],
    call: PublishCall,
  ): Promise<unknown> {
    const sender = this.senderFor(info);
    if (messages.length === 1) {
      const [entry, bytes] = this.toEntry(info, messages[0]!);
      const pending = sender.send(entry, bytes);
      call.onAbandon(() => withdraw([pending]));
      return pending.promise;
    }
    const entries = messages.map((wire) => this.toEntry(info, wire));
    const pending = entries.map(([entry, bytes]) => sender.send(entry, bytes));
    call.onAbandon(() => withdraw(pending));
    return Promise.all(pending.map((p) => p.promise));
  }

  private toEntry(info: QueueInfo, wire: WireMessage): [SendEntry, number] {
    const body = Buffer.from(wire.body.buffer, wire.body.byteOffset, wire.body.byteLength).toString('utf8');
    const attributes = headersToAttributes(wire.headers);
    const bytes = sqsMessageBytes(body, attributes);
    if (bytes > info.maxMessageBytes) {
      throw new PublishError(
        ErrorCode.TOO_LARGE,
        `message of ${bytes} bytes (body + attributes) exceeds the ${info.maxMessageBytes}-byte limit of SQS queue "${info.names.main}"`,
        { details: { bytes, maxMessageBytes: info.maxMessageBytes } },
      );
    }
    const entry: SendEntry = { MessageBody: body };
    if (Object.keys(attributes).length > 0) entry.MessageAttributes = attributes;
    if (info.names.fifo) {
      if (wire.key === undefined || wire.key === '') {
        // Rejected rather than given an arbitrary group: on a FIFO topic the key is what orders messages.
        throw new PublishError(
          ErrorCode.UNROUTABLE,
          `topic "${info.topic}" is FIFO on SQS: every message needs a key (it becomes the MessageGroupId)`,
          { details: { reason: 'fifo-key-required' } },
        );
      }
      entry.MessageGroupId = fifoGroupId(wire.key);
      entry.MessageDeduplicationId = deduplicationId(this.envelopeId(wire, body));
    }
    return [entry, bytes];
  }

  private async publishToSns(
    sns: SnsFanOut,
    topic: string,
    messages: readonly WireMessage[],
    call: PublishCall,
  ): Promise<void> {
    if (this.closed) throw new PublishError(ErrorCode.CLOSED, 'the SQS transport is closed');
    if (messages.length === 0) return;
    const fifo = this.isFifo(topic);
    const entries = messages.map((wire) => this.snsEntry(topic, fifo, wire));
    await sns.publish(topic, entries, call);
  }

  /** One SNS entry: the same body and attributes a queue would get, plus the type for filter policies. */
  private snsEntry(topic: string, fifo: boolean, wire: WireMessage): SnsEntry {
    const body = Buffer.from(wire.body.buffer, wire.body.byteOffset, wire.body.byteLength).toString('utf8');
    // One attribute slot is kept for the type, so the headers pack into one attribute a little earlier.
    const attributes = headersToAttributes(wire.headers, MAX_ATTRIBUTES - 1);
    const type = this.wireTypes.get(wire) ?? this.typeFromBody(body);
    if (type !== undefined) attributes[TYPE_ATTRIBUTE] = { DataType: 'String', StringValue: type };
    const bytes = sqsMessageBytes(body, attributes);
    if (bytes > SNS_MAX_MESSAGE_BYTES) {
      throw new PublishError(
        ErrorCode.TOO_LARGE,
        `message of ${bytes} bytes (body + attributes) exceeds SNS's ${SNS_MAX_MESSAGE_BYTES}-byte limit`,
        { details: { bytes, maxMessageBytes: SNS_MAX_MESSAGE_BYTES } },
      );
    }
    const entry: SnsEntry = { body, attributes, bytes };
    if (fifo) {
      if (wire.key === undefined || wire.key === '') {
        throw new PublishError(
          ErrorCode.UNROUTABLE,
          `topic "${topic}" is FIFO on SNS: every message needs a key (it becomes the MessageGroupId)`,
          { details: { reason: 'fifo-key-required' } },
        );
      }
      entry.groupId = fifoGroupId(wire.key);
      entry.deduplicationId = deduplicationId(this.envelopeId(wire, body));
    }
    return entry;
  }

  private typeFromBody(body: string): string | undefined {
    try {
      const type = (JSON.parse(body) as { type?: unknown }).type;
      return typeof type === 'string' && type !== '' ? type : undefined;
    } catch {
      return undefined;
    }
  }

  /** The envelope id: remembered from encode(), else read from the body, else a hash of the body. */
  private envelopeId(wire: WireMessage, body: string): string {
    const known = this.wireIds.get(wire);
    if (known) return known;
    try {
      const id = (JSON.parse(body) as { id?: unknown }).id;
      if (typeof id === 'string' && id !== '') return id;
    } catch {
      // not structured JSON: fall through to content-based deduplication
    }
    return createHash('sha256').update(body).digest('hex');
  }

  private senderFor(info: QueueInfo): QueueSender {
    let sender = this.senders.get(info.url);
    if (!sender) {
      sender = new QueueSender(this.client, {
        queueUrl: info.url,
        queueName: info.names.main,
        maxBatchBytes: info.maxMessageBytes,
        lingerMs: this.options.batchLingerMs,
        maxInFlight: info.names.fifo ? 1 : this.options.maxBatchesInFlight,
      });
      this.senders.set(info.url, sender);
    }
    return sender;
  }

  async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    if (this.sns) {
      const sns = this.sns;
      try {
        await sns.topicArn(topic, 'create');
        for (const g of groups) {
          this.queueTopics.set(groupQueueKey(topic, g.group, this.isFifo(topic)), topic);
          await sns.ensureGroup(topic, g.group, g.patterns, 'create');
        }
      } catch (err) {
        throw this.brokerError(err, `provisioning SNS topic "${topic}"`);
      }
      return;
    }
    const distinct = [...new Set(groups.map((g) => g.group))];
    if (distinct.length > 1) {
      throw new UnsupportedError(
        `SQS topic "${topic}" cannot serve groups ${distinct.map((g) => `"${g}"`).join(', ')}: one SQS queue ` +
          "serves one consumer group; fan-out to several groups needs SNS: use the transport's SNS mode (fanOut: 'sns')",
      );
    }
    // An explicit provision() is the deployment step: it creates what is missing whatever the provision option.
    try {
      const info = await this.registry.resolve(topic, 'create');
      if (distinct[0] !== undefined) await this.registry.claimGroup(info, distinct[0], 'create');
    } catch (err) {
      throw this.brokerError(err, `provisioning topic "${topic}"`);
    }
  }

  /** SDK errors leave as ConnectionError (retryable) with the cause; Omnibus errors pass through. */
  private brokerError(err: unknown, what: string): unknown {
    if (isOmnibusError(err)) return err;
    return new ConnectionError(`${what} failed at ${this.endpointLabel}: ${describeError(err)}`, {
      cause: err,
    });
  }

  async subscribe(
    spec: SubscribeSpec,
    onDelivery: (delivery: Delivery) => void,
  ): Promise<TransportSubscription> {
    if (this.closed) throw new ConnectionError('the SQS transport is closed', { retryable: false });
    if (spec.replay !== undefined) {
      throw new UnsupportedError(
        'SQS cannot replay: a received and deleted message is gone (capabilities.replay is false)',
      );
    }
    if (!spec.group) {
      throw new UnsupportedError('SQS subscriptions need a consumer group: the queue is the group');
    }
    const fifo = this.isFifo(spec.topic);
    if (spec.exclusive && !fifo) {
      throw new UnsupportedError(
        `SQS has no single-active-consumer mode; for per-key order across processes make topic "${spec.topic}" FIFO (fifoTopics)`,
      );
    }
    let info: QueueInfo;
    let queueKey = spec.topic;
    try {
      if (this.sns) {
        queueKey = groupQueueKey(spec.topic, spec.group, fifo);
        this.queueTopics.set(queueKey, spec.topic);
        info = await this.sns.ensureGroup(spec.topic, spec.group, spec.patterns);
      } else {
        info = await this.registry.resolve(spec.topic);
        await this.registry.claimGroup(info, spec.group);
      }
    } catch (err) {
      throw this.brokerError(err, `subscribing to topic "${spec.topic}"`);
    }
    const sub = new SqsSubscription({
      client: this.client,
      registry: this.registry,
      info,
      queueKey,
      spec: { ...spec, group: spec.group },
      onDelivery,
      options: this.options,
      logger: this.logger,
      retryStates: this.retryStates,
      onClosed: () => this.subscriptions.delete(sub),
    });
    this.subscriptions.add(sub);
    sub.start();
    return sub;
  }

  async health(): Promise<HealthReport> {
    const details: Record<string, unknown> = {
      endpoint: this.endpointLabel,
      subscriptions: this.subscriptions.size,
      queues: this.knownMaxBytes.size,
    };
    try {
      // A health check answers within the connect deadline too, rather than after the SDK's retries.
      await this.probeWithin(this.options.connectTimeoutMs);
      return {
        ok: !this.closed,
        transport: this.name,
        details: this.closed ? { ...details, closed: true } : details,
      };
    } catch (err) {
      return { ok: false, transport: this.name, details: { ...details, error: describeError(err) } };
    }
  }

  /**
   * SQS's approximate counts for the topic's queue: depth = ApproximateNumberOfMessages, inFlight =
   * …NotVisible (on FIFO queues this includes messages waiting out a retry, which stay invisible),
   * delayed = …Delayed (standard queues' delayed retry copies), deadLettered from the dead-letter queue
   * (null when it cannot be read). SQS reports no lag, and the oldest message's age only to CloudWatch.
   * The queue is the group, so `group` selects nothing more.
   */
  async stats(topic: string, group?: string): Promise<TransportStats> {
    let info: QueueInfo;
    let res: GetQueueAttributesCommandOutput;
    if (this.sns && group === undefined) {
      // SNS keeps nothing: every figure belongs to a group's queue.
      return emptyStats();
    }
    try {
      if (this.sns && group !== undefined) {
        const key = groupQueueKey(topic, group, this.isFifo(topic));
        this.queueTopics.set(key, topic);
        info = await this.registry.resolve(key);
      } else info = await this.registry.resolve(topic);
      res = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: info.url,
          AttributeNames: [
            'ApproximateNumberOfMessages',
            'ApproximateNumberOfMessagesNotVisible',
            'ApproximateNumberOfMessagesDelayed',
          ],
        }),
      );
    } catch (err) {
      throw this.brokerError(err, `reading stats of topic "${topic}"`);
    }
    const a = res.Attributes ?? {};
    let deadLettered: number | null = null;
    try {
      const dlq = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: await this.registry.deadLetterUrl(info),
          AttributeNames: ['ApproximateNumberOfMessages'],
        }),
      );
      deadLettered = count(dlq.Attributes?.ApproximateNumberOfMessages);
    } catch {
      // no dead-letter queue (yet), or no permission to read it: unknown
    }
    let consumers = 0;
    for (const s of this.subscriptions) if (s.topic === topic) consumers++;
    return {
      depth: count(a.ApproximateNumberOfMessages),
      inFlight: count(a.ApproximateNumberOfMessagesNotVisible),
      delayed: count(a.ApproximateNumberOfMessagesDelayed),
      deadLettered,
      lag: null,
      oldestAgeMs: null,
      extras: { consumers },
    };
  }

  /** Peek, redrive and purge on the group's queues (see operations.ts). */
  get operations(): SqsOperations {
    this.#operations ??= new SqsOperations({
      client: this.client,
      registry: this.registry,
      sns: this.sns !== undefined,
      queueKey: (topic, group) => {
        if (!this.sns) return topic;
        const key = groupQueueKey(topic, group, this.isFifo(topic));
        this.queueTopics.set(key, topic);
        return key;
      },
      brokerError: (err, what) => this.brokerError(err, what),
    });
    return this.#operations;
  }
  #operations: SqsOperations | undefined;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.subscriptions].map((s) => s.close()));
    await Promise.allSettled([...this.senders.values()].map((s) => s.flush()));
    this.client.destroy();
    this.snsClient?.destroy();
  }
}
