/** The RabbitMQ Transport: wires connection, topology, publisher and subscriptions to the core's contract. */
import {
  type Capabilities,
  ConfigError,
  ConnectionError,
  type Delivery,
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
  UnsupportedError,
  type WireMessage,
  wireSize,
} from '@omnibus/core';
import { type AbandonVerdict, emptyStats, type PublishCall, type TransportStats } from '@omnibus/core/kit';
import { AmqpCode, amqpCode, errorText } from './amqp-errors.js';
import { ConnectionManager, NoConnectionError } from './connection.js';
import { names } from './naming.js';
import { RabbitMqOperations } from './operations.js';
import { type RabbitMqOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { type Outgoing, Publisher } from './publisher.js';
import { AmqpSubscription } from './subscription.js';
import { AdminChannel, Topology } from './topology.js';
import { amqpFromWire, binaryMode } from './wire.js';

/** Giving up while the exchange is still being declared: nothing was written yet (one shared function). */
const WITHDRAWN = (): AbandonVerdict => 'withdrawn';

interface Parts {
  conn: ConnectionManager;
  admin: AdminChannel;
  topology: Topology;
  publisher: Publisher;
  logger: Logger;
}

export class RabbitMqTransport implements Transport {
  readonly name = 'rabbitmq';
  readonly capabilities: Capabilities;
  readonly options: ResolvedOptions;
  /** The AMQP `connection_name` this transport announces (visible in `rabbitmqctl list_connections`). */
  readonly connectionName: string;
  #parts: Parts | undefined;
  #closed = false;
  readonly #subs = new Set<AmqpSubscription>();
  /** Publish `mandatory` only when a return changes the outcome (onNoSubscribers 'reject'). */
  readonly #mandatory: boolean;

  constructor(options: RabbitMqOptions) {
    this.options = resolveOptions(options);
    const o = this.options;
    this.connectionName =
      o.connectionName ?? `omnibus-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
    this.#mandatory = o.onNoSubscribers === 'reject';
    this.capabilities = {
      consumerGroups: true,
      fanOut: true,
      ordering: o.singleActiveConsumer ? 'group' : 'process',
      replay: o.streams !== undefined,
      // Longer delays are chained through the largest tier, so no delay is ever shortened.
      delayTiersMs: o.delayTiersMs,
      maxMessageBytes: o.maxMessageBytes,
      persistent: true,
      rejectsUnroutable: true,
    };
  }

  async connect(ctx: TransportContext): Promise<void> {
    if (this.#closed) throw new ConfigError('', 'this transport was closed; create a new one');
    if (this.#parts) return;
    const logger = ctx.logger ?? silentLogger;
    const o = this.options;
    const conn = new ConnectionManager({
      urls: o.urls,
      socketOptions: {
        // Nagle's algorithm held small frames back until the broker acknowledged the previous ones: one
        // message at a time at 500/s, publish to handler took 22 ms at the median with it on.
        noDelay: true,
        ...o.tls,
        clientProperties: { connection_name: this.connectionName, omnibus_service: ctx.service },
      },
      insecureTls: o.tls?.rejectUnauthorized === false,
      connectTimeoutMs: o.connectTimeoutMs,
      reconnect: o.reconnect,
      logger,
    });
    const admin = new AdminChannel(conn);
    const topology = new Topology(o, conn, admin, logger);
    const publisher = new Publisher(conn, o.confirmWindow, logger, o.reconnect);
    publisher.onMissingExchange = (exchange) => topology.forget(exchange);
    conn.onOpen(async () => {
      try {
        await topology.restore();
      } finally {
        // Consumers come back even if re-declaring failed: their queues usually survived the outage.
        for (const sub of this.#subs) sub.restore();
      }
    });
    this.#parts = { conn, admin, topology, publisher, logger };
    try {
      await conn.start();
    } catch (err) {
      this.#parts = undefined;
      throw err;
    }
  }

  encode(envelope: RawEnvelope): WireMessage {
    return toBinary(envelope, binaryMode);
  }

  decode(wire: WireMessage): RawEnvelope {
    return fromBinary(wire, binaryMode);
  }

  /**
   * Not `async`, so that once the topic's exchange is known to exist a publish is a direct hand-off to the
   * publisher's promise, with no extra promise or await of its own; every failure is still a rejection.
   * No timeout here: the caller's `call` carries the one deadline (see Publisher for what is withdrawn).
   */
  publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    let parts: Parts;
    let outgoing: Outgoing[];
    try {
      parts = this.#require(true);
      if (messages.length === 0) return Promise.resolve();
      const max = this.options.maxMessageBytes;
      for (const m of messages) {
        const size = wireSize(m);
        if (size > max) {
          throw new PublishError('TOO_LARGE', `message of ${size} bytes exceeds maxMessageBytes (${max})`);
        }
      }
      const exchange = names.exchange(topic);
      const mandatory = this.#mandatory;
      outgoing = messages.map((m) => amqpFromWire(exchange, m, mandatory));
    } catch (err) {
      return Promise.reject(err);
    }
    if (parts.topology.exchangeReady(topic)) return parts.publisher.send(outgoing, call);
    // Until the exchange is declared nothing is written; send() then takes over the withdrawal.
    call.onAbandon(WITHDRAWN);
    return parts.topology.ensureExchange(topic, call.deadlineAt).then(
      () => parts.publisher.send(outgoing, call),
      (err: unknown) => {
        throw publishErrorFrom(err, topic);
      },
    );
  }

  async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    const parts = this.#require();
    if (this.options.provision === 'none') return;
    const deadline = Date.now() + this.options.connectTimeoutMs;
    await parts.topology.ensureExchange(topic, deadline);
    for (const g of groups) await parts.topology.ensureGroup(topic, g.group, g.patterns, deadline);
  }

  async subscribe(
    spec: SubscribeSpec,
    onDelivery: (delivery: Delivery) => void,
  ): Promise<TransportSubscription> {
    const parts = this.#require();
    if (spec.group === undefined) {
      if (!this.options.streams) {
        throw new UnsupportedError(
          'replay needs a stream queue per topic: create the RabbitMQ transport with streams: true',
        );
      }
    } else if (spec.replay !== undefined) {
      throw new ConfigError('replay', 'a replay subscription has no group');
    }
    if (spec.exclusive && spec.group !== undefined && !this.options.singleActiveConsumer) {
      throw new ConfigError(
        'singleActiveConsumer',
        'an exclusive subscription needs queues declared with x-single-active-consumer: create the RabbitMQ ' +
          'transport with singleActiveConsumer: true (an existing queue must be re-created to gain it)',
      );
    }
    const sub = new AmqpSubscription(spec, onDelivery, {
      conn: parts.conn,
      topology: parts.topology,
      publisher: parts.publisher,
      opts: this.options,
      logger: parts.logger,
      onClosed: (s) => this.#subs.delete(s),
    });
    this.#subs.add(sub);
    try {
      await sub.start();
    } catch (err) {
      await sub.close();
      throw err;
    }
    return sub;
  }

  async health(): Promise<HealthReport> {
    const parts = this.#parts;
    if (!parts) {
      return { ok: false, transport: this.name, details: { state: this.#closed ? 'closed' : 'idle' } };
    }
    const details = parts.conn.details();
    details.subscriptions = this.#subs.size;
    details.publishesInFlight = parts.publisher.inFlight;
    details.publishesQueued = parts.publisher.queued;
    details.publishChannelsReplaced = parts.publisher.channelsReplaced;
    return {
      ok: parts.conn.state === 'open' && details.blocked === undefined,
      transport: this.name,
      details,
    };
  }

  /**
   * From queue.declare (passive) replies: ready messages and consumers per queue. RabbitMQ reports neither
   * unacknowledged messages nor message ages over AMQP (the management API does), so those are null; nor
   * can it count one group's messages in the shared delay tiers, so `delayed` is null and
   * `extras.delayedAllGroups` holds the tiers' ready messages, all groups together.
   */
  async stats(topic: string, group?: string): Promise<TransportStats> {
    const parts = this.#require();
    const deadline = Date.now() + this.options.connectTimeoutMs;
    const check = (queue: string) =>
      parts.admin.run(async (ch) => {
        try {
          return await ch.checkQueue(queue);
        } catch (err) {
          if (amqpCode(err) === AmqpCode.NOT_FOUND) return undefined;
          throw err;
        }
      }, deadline);
    const stats: TransportStats = emptyStats();
    if (group === undefined) {
      // Without a group there is no queue of its own; the replay stream's length is all there is.
      const stream = this.options.streams ? await check(names.streamQueue(topic)) : undefined;
      if (stream) stats.extras.streamMessages = stream.messageCount;
      return stats;
    }
    const q = await check(names.groupQueue(topic, group));
    if (!q) throw new ConfigError('group', `queue "${names.groupQueue(topic, group)}" does not exist`);
    // Ready in the queue, plus what this process's paused subscriptions received and hold for resume():
    // both wait for the group.
    let held = 0;
    for (const sub of this.#subs) if (sub.held.queue === q.queue) held += sub.held.count;
    stats.depth = q.messageCount + held;
    stats.extras.consumers = q.consumerCount;
    const dlq = await check(names.deadLetterQueue(topic, group));
    if (dlq) stats.deadLettered = dlq.messageCount;
    // The delay tiers are shared by every group of the vhost (see topology.ts): AMQP cannot count one
    // group's messages in them, so `delayed` stays null and the tiers' total is reported as such.
    let delayedAllGroups = 0;
    for (const tier of this.options.delayTiersMs) {
      const queue = await check(parts.topology.delayTier(tier));
      if (queue) delayedAllGroups += queue.messageCount;
    }
    stats.extras.delayedAllGroups = delayedAllGroups;
    return stats;
  }

  /** Peek, redrive and purge on channels of their own (see operations.ts). */
  get operations(): RabbitMqOperations {
    this.#operations ??= new RabbitMqOperations(
      (deadline) => this.#require().conn.whenOpen(deadline),
      this.options.connectTimeoutMs,
    );
    return this.#operations;
  }
  #operations: RabbitMqOperations | undefined;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const parts = this.#parts;
    if (!parts) return;
    await Promise.all([...this.#subs].map((s) => s.close()));
    // Confirms still outstanding get as long as a connect may take (a broker that is down sends none).
    await parts.publisher.close(Date.now() + this.options.connectTimeoutMs);
    await parts.admin.close();
    await parts.conn.close();
  }

  #require(forPublish = false): Parts {
    const problem = this.#closed
      ? 'the transport is closed'
      : this.#parts
        ? undefined
        : 'call connect() first';
    if (problem === undefined) return this.#parts!;
    throw forPublish
      ? new PublishError('CLOSED', problem)
      : new ConnectionError(problem, { retryable: false });
  }
}

function publishErrorFrom(err: unknown, topic: string): Error {
  if (err instanceof PublishError) return err;
  if (err instanceof NoConnectionError) {
    // 'timeout': the caller's deadline passed while waiting for a connection, before anything was sent.
    return new PublishError(err.reason === 'timeout' ? 'TIMEOUT' : 'CLOSED', err.message, { cause: err });
  }
  if (err instanceof ConfigError && amqpCode(err.cause) === AmqpCode.NOT_FOUND) {
    return new PublishError('UNROUTABLE', `exchange "${topic}" does not exist: ${err.message}`, {
      cause: err,
    });
  }
  if (err instanceof ConfigError) return err;
  return new PublishError('PUBLISH_FAILED', `could not prepare exchange "${topic}": ${errorText(err)}`, {
    cause: err,
    retryable: true,
  });
}
