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

/** One `send` call: a single promise and a single deadline timer, however many messages it holds. */
interface Batch {
  remaining: number;
  finished: boolean;
  /** Past its deadline or cancelled by close: messages not yet written are never written. */
  expired: boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
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
  /** Sent and not yet confirmed, in publish order (returns arrive in that order, before the confirm). */
  unconfirmed: Entry[];
  closeError: Error | undefined;
  drainWaiters: (() => void)[];
  /** Caught unconfirmed by the channel's death, in publish order: sent again first on the next channel. */
  resend: Entry[];
}

export class Publisher {
  readonly #conn: ConnectionManager;
  readonly #window: number;
  readonly #logger: Logger;
  readonly #queue: Entry[] = [];
  #state: ChannelState | undefined;
  #opening: Promise<ChannelState> | undefined;
  #inFlight = 0;
  #pumping = false;
  #slotWaiter: (() => void) | undefined;
  #closed = false;
  #idleWaiters: (() => void)[] = [];

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
    return new Promise<void>((resolve, reject) => {
      const batch: Batch = {
        remaining: messages.length,
        finished: false,
        expired: false,
        resolve,
        reject,
        timer: undefined,
      };
      batch.timer = setTimeout(
        () => {
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
          this.#checkIdle();
        },
        Math.max(0, deadline - Date.now()),
      );
      for (const m of messages) this.#queue.push({ ...m, batch, done: false, returned: undefined });
      void this.#pump();
    });
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
    clearTimeout(batch.timer);
    if (err) batch.reject(err);
    else batch.resolve();
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
      unconfirmed: [],
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
    if (this.#queue.length > 0) setImmediate(() => void this.#pump());
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
    const i = st.unconfirmed.indexOf(entry);
    if (i >= 0) st.unconfirmed.splice(i, 1);
    this.#inFlight--;
    const wake = this.#slotWaiter;
    this.#slotWaiter = undefined;
    wake?.();
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

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length > 0) {
        while (this.#queue.length > 0 && this.#skip(this.#queue[0]!)) this.#queue.shift();
        if (this.#queue.length === 0) break;
        let st: ChannelState;
        try {
          st = await this.#channel();
        } catch (err) {
          if (err instanceof NoConnectionError && err.reason !== 'timeout') {
            const code: PublishErrorCode = 'CLOSED';
            for (const e of this.#queue.splice(0)) this.#settle(e, new PublishError(code, err.message));
            break;
          }
          // The connection is going away under us; wait for the next one (entries keep their deadlines).
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        if (this.#inFlight >= this.#window) {
          await new Promise<void>((resolve) => {
            this.#slotWaiter = resolve;
          });
          continue;
        }
        const entry = this.#queue.shift()!;
        if (this.#skip(entry)) continue;
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
        st.unconfirmed.push(entry);
        if (!ok && st.alive) {
          // The socket buffer is full: wait for it to drain (or for the channel to die) before writing more.
          await new Promise<void>((resolve) => st.drainWaiters.push(resolve));
        }
      }
    } finally {
      this.#pumping = false;
      this.#checkIdle();
    }
  }
}

function unroutable(entry: Entry, reason: string): PublishError {
  return new PublishError(
    'UNROUTABLE',
    `no queue is bound for routing key "${entry.routingKey}" on exchange "${entry.exchange || '(default)'}" (${reason}); ` +
      'RabbitMQ keeps nothing for a topic without a bound group queue: subscribe or provision the group first',
  );
}
