/**
 * Publishing on one confirm channel with a bounded window of unconfirmed messages: a publish settles only on
 * the broker's confirm, a mandatory return turns it into UNROUTABLE, and messages caught by a lost channel
 * are sent again on the next one until their deadline.
 */
import { type Logger, PublishError, type PublishErrorCode } from '@omnibus/core';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { AmqpCode, amqpCode, errorText } from './amqp-errors.js';
import { type ConnectionManager, NoConnectionError } from './connection.js';

/** One message to publish: where to, and the AMQP body and properties. */
export interface Outgoing {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/** One `send` call: a single promise and a single deadline, however many messages it holds. */
interface Batch {
  remaining: number;
  finished: boolean;
  /** Past its deadline or cancelled by close: messages not yet written are never written. */
  expired: boolean;
  /** The deadline on the monotonic clock (`performance.now()`), so wall-clock jumps cannot move it. */
  due: number;
  resolve(): void;
  reject(err: Error): void;
}

interface Entry extends Outgoing {
  batch: Batch;
  done: boolean;
  returned: string | undefined;
}

interface ChannelState {
  ch: ConfirmChannel;
  generation: number;
  alive: boolean;
  /**
   * Sent and not yet confirmed, in publish order (returns arrive in that order, before the confirm). A Set
   * keeps that order and removes a confirmed entry in constant time, wherever it is.
   */
  unconfirmed: Set<Entry>;
  closeError: Error | undefined;
  drainWaiters: (() => void)[];
  /** Caught unconfirmed by the channel's death, in publish order: sent again first on the next channel. */
  resend: Entry[];
}

/** What the pump is waiting for before it can write more; whatever ends the wait runs it again. */
type Wait = 'channel' | 'slot' | 'drain';

export class Publisher {
  readonly #conn: ConnectionManager;
  readonly #window: number;
  readonly #logger: Logger;
  readonly #queue: Entry[] = [];
  #state: ChannelState | undefined;
  #opening: Promise<ChannelState> | undefined;
  #inFlight = 0;
  /** The pump loop is running right now (guards against re-entry). */
  #pumping = false;
  /** The pump stopped to wait for this; only one wait is ever outstanding. */
  #waiting: Wait | undefined;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  /**
   * Unfinished batches. Rather than a timer per publish, one timer is armed for the earliest deadline among
   * them; when it fires it expires every batch that is due and re-arms for the next earliest.
   */
  readonly #pending = new Set<Batch>();
  #timer: NodeJS.Timeout | undefined;
  /** When `#timer` fires (monotonic ms), or Infinity when none is armed. */
  #timerDue = Number.POSITIVE_INFINITY;

  /** Told when the broker closed the channel because an exchange is gone, so it is declared again. */
  onMissingExchange: (exchange: string) => void = () => {};

  constructor(conn: ConnectionManager, window: number, logger: Logger) {
    this.#conn = conn;
    this.#window = window;
    this.#logger = logger;
    conn.onLost(() => this.#channelLost(undefined));
  }

  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Resolves when the broker confirmed every message; rejects with the first PublishError, or TIMEOUT at
   * `deadline`. After a failure the other messages are still sent (the caller cannot unsend them anyway).
   */
  send(messages: readonly Outgoing[], deadline: number): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError('CLOSED', 'the transport is closed'));
    if (messages.length === 0) return Promise.resolve();
    let batch!: Batch;
    const settled = new Promise<void>((resolve, reject) => {
      batch = {
        remaining: messages.length,
        finished: false,
        expired: false,
        due: performance.now() + Math.max(0, deadline - Date.now()),
        resolve,
        reject,
      };
    });
    this.#track(batch);
    for (const m of messages) {
      this.#queue.push({
        exchange: m.exchange,
        routingKey: m.routingKey,
        content: m.content,
        options: m.options,
        batch,
        done: false,
        returned: undefined,
      });
    }
    this.#pump();
    return settled;
  }

  /** Stops accepting publishes and waits (until `deadline`) for everything accepted to settle. */
  async close(deadline: number): Promise<void> {
    this.#closed = true;
    if (this.#queue.length > 0 || this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    for (const e of this.#queue.splice(0)) {
      e.batch.expired = true;
      this.#settle(e, new PublishError('CLOSED', 'the transport closed'));
    }
    const st = this.#state;
    this.#state = undefined;
    if (st?.alive) await st.ch.close().catch(() => {});
  }

  #settle(entry: Entry, err: Error | undefined): void {
    if (entry.done) return;
    entry.done = true;
    const batch = entry.batch;
    if (err) this.#finish(batch, err);
    else if (--batch.remaining === 0) this.#finish(batch, undefined);
  }

  #finish(batch: Batch, err: Error | undefined): void {
    if (batch.finished) return;
    batch.finished = true;
    this.#pending.delete(batch);
    if (this.#pending.size === 0) this.#disarm();
    if (err) batch.reject(err);
    else batch.resolve();
  }

  #track(batch: Batch): void {
    this.#pending.add(batch);
    if (batch.due < this.#timerDue) this.#arm(batch.due);
  }

  #arm(due: number): void {
    clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = setTimeout(this.#onDeadline, Math.max(0, due - performance.now()));
  }

  #disarm(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
  }

  /** The deadline timer fired: expire every batch that is due, then arm for the earliest one left. */
  readonly #onDeadline = (): void => {
    this.#timer = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    // #expire removes the batch from the set; deleting the current element while iterating a Set is safe.
    for (const batch of this.#pending) {
      if (batch.due <= now) this.#expire(batch);
      else if (batch.due < next) next = batch.due;
    }
    if (next < this.#timerDue) this.#arm(next);
    this.#checkIdle();
  };

  #expire(batch: Batch): void {
    batch.expired = true;
    const waitingForBroker = this.#conn.state !== 'open';
    this.#finish(
      batch,
      new PublishError(
        'TIMEOUT',
        waitingForBroker
          ? `no connection to RabbitMQ within the publish timeout (${this.#conn.details().lastError ?? 'reconnecting'}); unsent messages were dropped from the send queue`
          : 'no broker confirm within the publish timeout',
      ),
    );
  }

  #skip(entry: Entry): boolean {
    return entry.done || entry.batch.expired;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length > 0 && this.#inFlight === 0 && this.#queue.every((e) => this.#skip(e))) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #channel(): Promise<ChannelState> {
    const st = this.#state;
    if (st?.alive && st.generation === this.#conn.generation) return st;
    if (!this.#opening) {
      this.#opening = this.#openChannel().finally(() => {
        this.#opening = undefined;
      });
    }
    return this.#opening;
  }

  async #openChannel(): Promise<ChannelState> {
    const model = await this.#conn.whenOpen();
    const generation = this.#conn.generation;
    const ch = await model.createConfirmChannel();
    const st: ChannelState = {
      ch,
      generation,
      alive: true,
      unconfirmed: new Set(),
      closeError: undefined,
      drainWaiters: [],
      resend: [],
    };
    ch.on('error', (err: Error) => {
      st.closeError = err;
      this.#logger.warn(
        { transport: 'rabbitmq', err: errorText(err) },
        'publish channel closed by the broker',
      );
    });
    ch.on('close', () => this.#channelLost(st));
    ch.on('return', (msg: Message) => this.#onReturn(st, msg));
    ch.on('drain', () => {
      for (const w of st.drainWaiters.splice(0)) w();
    });
    this.#state = st;
    return st;
  }

  #channelLost(st: ChannelState | undefined): void {
    const target = st ?? this.#state;
    if (!target) return;
    target.alive = false;
    for (const w of target.drainWaiters.splice(0)) w();
    if (this.#state === target) this.#state = undefined;
    if (target.resend.length > 0) this.#queue.unshift(...target.resend.splice(0));
    if (this.#queue.length > 0) setImmediate(this.#runPump);
  }

  #onReturn(st: ChannelState, msg: Message): void {
    const { exchange, routingKey } = msg.fields;
    const id = msg.properties.messageId;
    const reply = (msg.fields as { replyText?: string }).replyText ?? 'NO_ROUTE';
    for (const e of st.unconfirmed) {
      if (
        e.returned === undefined &&
        e.exchange === exchange &&
        e.routingKey === routingKey &&
        e.options.messageId === id
      ) {
        e.returned = reply;
        return;
      }
    }
  }

  #onConfirm(st: ChannelState, entry: Entry, err: Error | null): void {
    st.unconfirmed.delete(entry);
    this.#inFlight--;
    this.#wake('slot');
    if (!this.#skip(entry)) {
      if (err === null) {
        if (entry.returned === undefined) this.#settle(entry, undefined);
        else this.#settle(entry, unroutable(entry, entry.returned));
      } else if (err.message === 'message nacked') {
        // With `x-overflow: reject-publish` a full queue nacks; so does an internal broker error.
        this.#settle(
          entry,
          new PublishError(
            'PUBLISH_FAILED',
            `the broker refused the message (nack) for exchange "${entry.exchange}"`,
          ),
        );
      } else {
        // The channel died before the confirm: unknown outcome, so send again (duplicates are the lesser evil).
        st.alive = false;
        const closeCode = amqpCode(st.closeError);
        if (closeCode === AmqpCode.NOT_FOUND && st.closeError?.message.includes(`'${entry.exchange}'`)) {
          this.onMissingExchange(entry.exchange);
          this.#settle(entry, unroutable(entry, `exchange "${entry.exchange}" does not exist`));
        } else if (this.#closed && this.#conn.state === 'closed') {
          this.#settle(entry, new PublishError('CLOSED', 'the transport closed before the broker confirmed'));
        } else {
          entry.returned = undefined;
          st.resend.push(entry);
        }
      }
    }
    this.#checkIdle();
  }

  readonly #runPump = (): void => this.#pump();

  /**
   * Ends the pump's wait for `what`. The pump runs again in a microtask rather than inside the caller: a
   * frame carrying many confirms (or several confirm frames read at once) then refills the window in one
   * pass instead of one pump per confirm, and nothing is written from inside amqplib's frame handling.
   */
  #wake(what: Wait): void {
    if (this.#waiting !== what) return;
    this.#waiting = undefined;
    queueMicrotask(this.#runPump);
  }

  /**
   * Writes queued messages while there is a live channel, room in the confirm window and room in the socket
   * buffer. It is synchronous: the common case (channel up, window open) costs no promise per message. When
   * it has to wait it records what for in `#waiting` and returns; the end of that wait (channel opened,
   * confirm received, socket drained) runs it again, and calls made meanwhile return at once.
   */
  #pump(): void {
    if (this.#pumping || this.#waiting !== undefined) return;
    this.#pumping = true;
    try {
      while (this.#queue.length > 0) {
        const entry = this.#queue[0]!;
        if (this.#skip(entry)) {
          this.#queue.shift();
          continue;
        }
        const st = this.#state;
        if (!st?.alive || st.generation !== this.#conn.generation) {
          this.#awaitChannel();
          return;
        }
        if (this.#inFlight >= this.#window) {
          this.#waiting = 'slot';
          return;
        }
        this.#queue.shift();
        let ok: boolean;
        try {
          ok = st.ch.publish(entry.exchange, entry.routingKey, entry.content, entry.options, (err) =>
            this.#onConfirm(st, entry, err as Error | null),
          );
        } catch (err) {
          if (err instanceof RangeError) {
            // amqplib refuses header tables over 64 KiB before anything is sent.
            this.#settle(entry, new PublishError('TOO_LARGE', `message headers too large: ${err.message}`));
          } else {
            // The channel closed between checks: nothing was sent; try again on the next channel.
            st.alive = false;
            this.#queue.unshift(entry);
          }
          this.#checkIdle();
          continue;
        }
        this.#inFlight++;
        st.unconfirmed.add(entry);
        if (!ok && st.alive) {
          // The socket buffer is full: wait for it to drain (or for the channel to die) before writing more.
          this.#waiting = 'drain';
          st.drainWaiters.push(() => this.#wake('drain'));
          return;
        }
      }
    } finally {
      this.#pumping = false;
      this.#checkIdle();
    }
  }

  /** No usable channel: open one (or wait for the connection), then pump again. */
  #awaitChannel(): void {
    this.#waiting = 'channel';
    this.#channel().then(
      () => this.#wake('channel'),
      (err: unknown) => {
        if (err instanceof NoConnectionError && err.reason !== 'timeout') {
          this.#waiting = undefined;
          const code: PublishErrorCode = 'CLOSED';
          for (const e of this.#queue.splice(0)) this.#settle(e, new PublishError(code, err.message));
          this.#checkIdle();
          return;
        }
        // The connection is going away under us; wait for the next one (entries keep their deadlines).
        setTimeout(() => this.#wake('channel'), 50);
      },
    );
  }
}

function unroutable(entry: Entry, reason: string): PublishError {
  return new PublishError(
    'UNROUTABLE',
    `no queue is bound for routing key "${entry.routingKey}" on exchange "${entry.exchange || '(default)'}" (${reason}); ` +
      'RabbitMQ keeps nothing for a topic without a bound group queue: subscribe or provision the group first',
  );
}
