/**
 * Publishing on one confirm channel with a bounded window of unconfirmed messages: a publish settles only on
 * the broker's confirm, a mandatory return turns it into UNROUTABLE, and messages caught by a lost channel
 * are sent again on the next one. There is no timer here: the caller's deadline (the PublishCall) decides
 * when to give up, and a call given up while all its messages still wait in this queue is withdrawn.
 */
import { type Logger, PublishError } from '@omnibus/core';
import type { AbandonVerdict, PublishCall } from '@omnibus/core/kit';
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

/** One `send` call: a single promise, however many messages it holds. */
interface Batch {
  remaining: number;
  finished: boolean;
  /** Given up by its caller or cancelled by close: messages not yet written are never written. */
  dropped: boolean;
  /** Some message of it was handed to the channel: from then on it cannot be withdrawn. */
  written: boolean;
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
   * Resolves when the broker confirmed every message; rejects with the first PublishError. After a failure
   * the other messages are still sent (the caller cannot unsend them anyway). With a `call`, the caller may
   * give up: see #abandon. Without one (internal hand-offs) it waits for the confirm or the transport's close.
   */
  send(messages: readonly Outgoing[], call?: PublishCall): Promise<void> {
    if (this.#closed) return Promise.reject(new PublishError('CLOSED', 'the transport is closed'));
    if (messages.length === 0) return Promise.resolve();
    if (call?.abandoned) return Promise.reject(givenUp(false));
    let batch!: Batch;
    const settled = new Promise<void>((resolve, reject) => {
      batch = {
        remaining: messages.length,
        finished: false,
        dropped: false,
        written: false,
        resolve,
        reject,
      };
    });
    // One closure per publish call (not per message): the contract's way of asking for a withdrawal.
    if (call) call.onAbandon(() => this.#abandon(batch));
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
      e.batch.dropped = true;
      this.#settle(e, new PublishError('CLOSED', 'the transport closed before this message was sent'));
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
    if (err) batch.reject(err);
    else batch.resolve();
  }

  /**
   * The caller gave up (its deadline passed or it aborted). Runs synchronously between pump passes, so
   * marking the batch dropped is enough for the pump never to write what is still queued. Withdrawn only
   * when nothing of the call reached the channel; otherwise the broker may have it: unknown.
   */
  #abandon(batch: Batch): AbandonVerdict {
    if (batch.finished && !batch.dropped) return batch.written ? 'unknown' : 'withdrawn';
    batch.dropped = true;
    // Free the queue at once rather than when the pump next reaches these entries (maybe much later).
    const queue = this.#queue;
    let kept = 0;
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i]!;
      if (e.batch !== batch) queue[kept++] = e;
    }
    queue.length = kept;
    this.#finish(batch, givenUp(batch.written));
    this.#checkIdle();
    return batch.written ? 'unknown' : 'withdrawn';
  }

  #skip(entry: Entry): boolean {
    return entry.done || entry.batch.dropped;
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
        } else if (this.#closed) {
          // Closing: no next channel to send it again on. It may or may not have reached the broker.
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
        entry.batch.written = true;
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
        if (err instanceof NoConnectionError) {
          // Closed (or never connected): nothing queued can be sent any more.
          this.#waiting = undefined;
          for (const e of this.#queue.splice(0)) this.#settle(e, new PublishError('CLOSED', err.message));
          this.#checkIdle();
          return;
        }
        // The connection is going away under us; wait for the next one (the callers keep their deadlines).
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

/** What a given-up publish rejects with (the bus has already answered its caller; this only ends the promise). */
function givenUp(written: boolean): PublishError {
  return written
    ? new PublishError('OUTCOME_UNKNOWN', 'the caller gave up after the message was sent; it may be written')
    : new PublishError('TIMEOUT', 'the caller gave up before the message was sent; it was withdrawn');
}
