/**
 * One subscription: a channel with its own prefetch consuming a group queue (or, for replay, the topic's
 * stream), the deliveries it hands to the core, and the hand-offs to retry tiers and the dead-letter queue.
 */
import {
  ControlHeader,
  type Delivery,
  type Logger,
  PublishError,
  type ReplayFrom,
  type SubscribeSpec,
  type TransportSubscription,
  UnsupportedError,
  type WireMessage,
} from '@omnibus/core';
import { BaseDelivery, handOver, nextHop, planDelay, readDueAt } from '@omnibus/core/kit';
import type { Channel, ConsumeMessage, Message } from 'amqplib';
import { AmqpCode, amqpCode, errorText, missingObject } from './amqp-errors.js';
import type { ConnectionManager } from './connection.js';
import { names } from './naming.js';
import type { ResolvedOptions } from './options.js';
import type { Publisher } from './publisher.js';
import type { Topology } from './topology.js';
import { republishOptions, wireFromAmqp } from './wire.js';

export interface SubscriptionDeps {
  conn: ConnectionManager;
  topology: Topology;
  publisher: Publisher;
  opts: ResolvedOptions;
  logger: Logger;
  onClosed(sub: AmqpSubscription): void;
}

interface ConsumerChannel {
  ch: Channel;
  generation: number;
  alive: boolean;
  consumerTag: string | undefined;
}

const RESYNC_DELAY_MS = 1_000;

export class AmqpSubscription implements TransportSubscription {
  readonly spec: SubscribeSpec;
  readonly #deps: SubscriptionDeps;
  readonly #onDelivery: (d: Delivery) => void;
  readonly #queue: string;
  readonly #replay: boolean;
  readonly #prefetch: number;
  #paused = false;
  #closed = false;
  #chan: ConsumerChannel | undefined;
  #ops: Promise<void> = Promise.resolve();
  #resyncTimer: NodeJS.Timeout | undefined;
  /** Hand-offs (retry, dead-letter, chaining) under way: close waits for them before dropping the channel. */
  #handoffs = 0;
  #handoffsIdle: (() => void)[] = [];
  /**
   * Deliveries that came after pause(), before the broker got the cancel: kept here, in order, and
   * handed over on resume. Not requeued: a quorum queue would hand them back out of order and count a
   * delivery against x-delivery-limit for each pause. Closing the channel returns them to the queue.
   */
  #held: { chan: ConsumerChannel; msg: ConsumeMessage }[] = [];
  /** Replay: the next stream offset to read after a reconnect. */
  #nextOffset: number | undefined;
  /** Log fields built once (handOver logs with them only when the core's callback throws). */
  readonly #logFields: Record<string, unknown>;

  constructor(spec: SubscribeSpec, onDelivery: (d: Delivery) => void, deps: SubscriptionDeps) {
    this.spec = spec;
    this.#deps = deps;
    this.#onDelivery = onDelivery;
    this.#replay = spec.group === undefined;
    this.#queue = this.#replay ? names.streamQueue(spec.topic) : names.groupQueue(spec.topic, spec.group!);
    this.#prefetch = Math.max(1, Math.min(spec.maxInFlight, deps.opts.prefetch ?? Number.MAX_SAFE_INTEGER));
    this.#logFields = { transport: 'rabbitmq', queue: this.#queue };
  }

  get group(): string {
    return this.spec.group ?? '';
  }

  /** The group queue this subscription reads, and how many of its messages wait here for resume(). */
  get held(): { queue: string; count: number } {
    return { queue: this.#queue, count: this.#held.length };
  }

  /** First consume: errors (missing queue, refused declare) reach the caller of subscribe. */
  async start(): Promise<void> {
    const run = this.#ops.then(() => this.#sync());
    this.#ops = run.catch(() => {});
    await run;
  }

  pause(): void {
    if (this.#paused || this.#closed) return;
    this.#paused = true;
    this.#schedule();
  }

  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#schedule();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#resyncTimer);
    this.#schedule();
    await this.#ops;
    if (this.#handoffs > 0) {
      // Hand-offs wait for their confirm as long as it takes; closing waits for them as long as a connect may.
      const waitMs = this.#deps.opts.connectTimeoutMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.#handoffsIdle.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const chan = this.#chan;
    this.#chan = undefined;
    this.#held = [];
    // Closing the channel returns whatever is still unsettled (held ones too) to the queue.
    if (chan?.alive) await chan.ch.close().catch(() => {});
    this.#deps.onClosed(this);
  }

  /** Called by the transport after every reconnect. */
  restore(): void {
    if (!this.#closed) this.#schedule();
  }

  #schedule(): void {
    this.#ops = this.#ops
      .then(() => this.#sync())
      .catch((err: unknown) => {
        this.#deps.logger.error(
          { transport: 'rabbitmq', queue: this.#queue, err: errorText(err) },
          'could not (re)start consuming; trying again',
        );
        this.#scheduleResync();
      });
  }

  #scheduleResync(): void {
    if (this.#closed || this.#resyncTimer) return;
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = undefined;
      this.#schedule();
    }, RESYNC_DELAY_MS);
  }

  /** Brings the broker side in line with the wanted state (consuming, paused, closed). */
  async #sync(): Promise<void> {
    const { conn } = this.#deps;
    let chan = this.#chan;
    if (this.#closed) {
      if (chan?.alive && chan.consumerTag) {
        const tag = chan.consumerTag;
        chan.consumerTag = undefined;
        await chan.ch.cancel(tag).catch(() => {});
      }
      return;
    }
    if (!this.#paused) this.#handOverHeld();
    const model = conn.current;
    if (!model) return; // the reconnect hook calls again
    if (!chan?.alive || chan.generation !== conn.generation) {
      const deadline = Date.now() + this.#deps.opts.connectTimeoutMs;
      if (this.#replay) await this.#deps.topology.ensureStream(this.spec.topic, deadline);
      else await this.#deps.topology.ensureGroup(this.spec.topic, this.group, this.spec.patterns, deadline);
      const ch = await model.createChannel();
      const fresh: ConsumerChannel = { ch, generation: conn.generation, alive: true, consumerTag: undefined };
      ch.on('error', (err: Error) => {
        this.#deps.logger.warn(
          { transport: 'rabbitmq', queue: this.#queue, err: errorText(err) },
          'consumer channel closed by the broker',
        );
      });
      ch.on('close', () => {
        fresh.alive = false;
        fresh.consumerTag = undefined;
        // The broker has put this channel's unsettled deliveries back in the queue, held ones too.
        if (this.#held.length > 0) this.#held = this.#held.filter((h) => h.chan !== fresh);
        // Closed while the connection stays up (e.g. a broker-side error): open a new one.
        if (!this.#closed && this.#chan === fresh && conn.state === 'open') this.#scheduleResync();
      });
      this.#chan = chan = fresh;
      // Per-consumer prefetch: never more unsettled deliveries than the core allows.
      await ch.prefetch(this.#prefetch);
    }
    if (!this.#paused && !chan.consumerTag) {
      const target = chan;
      let reply: { consumerTag: string };
      try {
        reply = await chan.ch.consume(this.#queue, (msg) => this.#onMessage(target, msg), {
          noAck: false,
          arguments: this.#replay ? { 'x-stream-offset': this.#streamOffset() } : undefined,
        });
      } catch (err) {
        if (amqpCode(err) === AmqpCode.NOT_FOUND) throw missingObject(err, 'queue', this.#queue);
        throw err;
      }
      target.consumerTag = reply.consumerTag;
    } else if (this.#paused && chan.consumerTag) {
      const tag = chan.consumerTag;
      chan.consumerTag = undefined;
      // basic.cancel stops new deliveries; those already received can still be acked on this channel.
      await chan.ch.cancel(tag);
    }
  }

  /** Resumed: what came while paused goes to the core first, in order (a closed channel's went back to the queue). */
  #handOverHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const { chan, msg } of held) {
      if (chan.alive && chan.generation === this.#deps.conn.generation) this.#deliver(chan, msg);
    }
  }

  #streamOffset(): unknown {
    if (this.#nextOffset !== undefined) return this.#nextOffset;
    return streamOffset(this.spec.replay ?? 'earliest');
  }

  #onMessage(chan: ConsumerChannel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, or a quorum queue lost its members).
      chan.consumerTag = undefined;
      this.#deps.logger.warn(
        { transport: 'rabbitmq', queue: this.#queue },
        'consumer cancelled by the broker',
      );
      if (!this.#replay) this.#deps.topology.forget(this.spec.topic, this.group);
      this.#scheduleResync();
      return;
    }
    if (this.#paused || this.#held.length > 0) {
      // pause() reaches the broker later: what it sends meanwhile waits here. After resume, until the
      // held ones are handed over, newer ones queue behind them.
      this.#held.push({ chan, msg });
      return;
    }
    this.#deliver(chan, msg);
  }

  #deliver(chan: ConsumerChannel, msg: ConsumeMessage): void {
    const wire = wireFromAmqp(msg);
    if (this.#replay) {
      const offset = msg.properties.headers?.['x-stream-offset'];
      if (typeof offset === 'number') this.#nextOffset = offset + 1;
    } else {
      // Most messages carry no due time: the clock is read only for those that do.
      const dueAt = readDueAt(wire.headers);
      const hop = dueAt === undefined ? undefined : nextHop(dueAt, this.#deps.opts.delayTiersMs);
      if (hop) {
        // Back early from the largest tier of a chained delay: round again without bothering the core.
        void this.#chain(chan, msg, hop.tierMs);
        return;
      }
    }
    handOver(this.#onDelivery, new AmqpDelivery(this, chan, msg, wire), this.#deps.logger, this.#logFields);
  }

  async #chain(chan: ConsumerChannel, msg: ConsumeMessage, tier: number): Promise<void> {
    try {
      await this.handOffToTier(tier, msg, {});
      settle(chan, this.#deps.conn, msg, 'ack');
    } catch (err) {
      this.#deps.logger.warn(
        { transport: 'rabbitmq', queue: this.#queue, err: errorText(err) },
        'could not send a delayed message round again; it goes back to the queue',
      );
      // Not at once: the broker is in trouble, and an immediate requeue would spin.
      setTimeout(() => settle(chan, this.#deps.conn, msg, 'requeue'), RESYNC_DELAY_MS);
    }
  }

  /**
   * Publishes a copy of `msg` to the shared delay tier of `tierMs`, with this group's queue as routing key:
   * the tier dead-letters it by that key back here, and to no other group (see topology.ts).
   */
  async handOffToTier(
    tierMs: number,
    msg: Message,
    controlHeaders: Record<string, string>,
    drop: readonly string[] = [],
  ): Promise<void> {
    const { topology } = this.#deps;
    try {
      await topology.ensureTiers(Date.now() + this.#deps.opts.connectTimeoutMs);
      await this.handOff(topology.delayTier(tierMs), this.#queue, msg, controlHeaders, drop);
    } catch (err) {
      // A tier deleted under us returns the mandatory copy: declare the tiers again before the next retry.
      if (err instanceof PublishError && err.code === 'UNROUTABLE') topology.forgetTiers();
      throw err;
    }
  }

  /** Publishes a copy of `msg` to `exchange` with `routingKey` (mandatory) and waits for the confirm. */
  async handOff(
    exchange: string,
    routingKey: string,
    msg: Message,
    controlHeaders: Record<string, string>,
    drop: readonly string[] = [],
  ): Promise<void> {
    this.#handoffs++;
    try {
      const options = republishOptions(msg, controlHeaders, drop);
      // No deadline: a hand-off waits for its confirm (resent after a reconnect) or the transport's close.
      await this.#deps.publisher.send([{ exchange, routingKey, content: msg.content, options }]);
    } finally {
      this.#handoffs--;
      if (this.#handoffs === 0) for (const w of this.#handoffsIdle.splice(0)) w();
    }
  }

  get replay(): boolean {
    return this.#replay;
  }
  get deps(): SubscriptionDeps {
    return this.#deps;
  }
}

/**
 * Acks, or nacks with requeue, only on the channel that received the message: a tag on any other channel is
 * a protocol error. (An operation name rather than a callback: this runs once per message.)
 */
function settle(chan: ConsumerChannel, conn: ConnectionManager, msg: Message, how: 'ack' | 'requeue'): void {
  if (!chan.alive || chan.generation !== conn.generation) return;
  try {
    if (how === 'ack') chan.ch.ack(msg);
    else chan.ch.nack(msg, false, true);
  } catch {
    // The channel closed under us: the broker returns the message to the queue by itself.
  }
}

/** What `ack` and `release` return: they settle synchronously, so one resolved promise serves every call. */
const SETTLED: Promise<void> = Promise.resolve();

export function streamOffset(from: ReplayFrom): unknown {
  if (from === 'earliest') return 'first';
  // `next` is "only what arrives from now on"; `last` would start at the last chunk and replay part of it.
  if (from === 'latest') return 'next';
  if ('offset' in from) return Number(from.offset);
  return { '!': 'timestamp', value: Math.floor(from.timestamp / 1000) };
}

/**
 * A message from a group queue (or the replay stream). The kit's BaseDelivery holds the settle state
 * machine; these are only the broker actions. Ack and release settle synchronously on the channel that
 * received the message (if it died meanwhile the broker redelivers: at-least-once, never lost).
 */
class AmqpDelivery extends BaseDelivery {
  readonly #sub: AmqpSubscription;
  readonly #chan: ConsumerChannel;
  readonly #msg: ConsumeMessage;

  constructor(sub: AmqpSubscription, chan: ConsumerChannel, msg: ConsumeMessage, wire: WireMessage) {
    super({ wire, topic: sub.spec.topic, group: sub.group, redelivered: msg.fields.redelivered });
    this.#sub = sub;
    this.#chan = chan;
    this.#msg = msg;
  }

  protected doAck(): Promise<void> {
    settle(this.#chan, this.#sub.deps.conn, this.#msg, 'ack');
    return SETTLED;
  }

  protected doRelease(): Promise<void> {
    // A stream cannot take a message back; reading it again is a matter of the next replay's offset.
    settle(this.#chan, this.#sub.deps.conn, this.#msg, this.#sub.replay ? 'ack' : 'requeue');
    return SETTLED;
  }

  protected doRetryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void> {
    if (this.#sub.replay) {
      return Promise.reject(new UnsupportedError('a replay subscription cannot schedule retries'));
    }
    const plan = planDelay(delayMs, this.#sub.deps.opts.delayTiersMs);
    const headers = { ...controlHeaders };
    const drop: string[] = [];
    // A due time travels only with a delay one tier cannot cover (the next hops read it).
    if (plan.dueAt !== undefined) headers[ControlHeader.dueAt] = String(plan.dueAt);
    else {
      delete headers[ControlHeader.dueAt];
      drop.push(ControlHeader.dueAt);
    }
    return this.#settleAfter(this.#sub.handOffToTier(plan.tierMs, this.#msg, headers, drop));
  }

  protected doDeadLetter(controlHeaders: Record<string, string>): Promise<void> {
    if (this.#sub.replay) {
      return Promise.reject(new UnsupportedError('a replay subscription has no dead-letter queue'));
    }
    const headers = { ...controlHeaders };
    delete headers[ControlHeader.dueAt];
    const dlq = names.deadLetterQueue(this.topic, this.group);
    return this.#settleAfter(this.#sub.handOff('', dlq, this.#msg, headers, [ControlHeader.dueAt]));
  }

  /** Confirmed hand-off first, then the ack: a failed hand-off leaves the original unsettled (failed). */
  async #settleAfter(handOff: Promise<void>): Promise<void> {
    await handOff;
    settle(this.#chan, this.#sub.deps.conn, this.#msg, 'ack');
  }
}
