/**
 * Publishing on one confirm channel with a bounded window of unconfirmed messages: a publish settles only on
 * the broker's confirm, a mandatory return turns it into UNROUTABLE, and messages caught by a lost channel
 * are sent again on the next one. A channel that got a nack is replaced (see #retire). The caller's deadline
 * (the PublishCall) decides when to give up, and a call given up while all its messages still wait in this
 * queue is withdrawn; the only timer here spaces out replacements of channels that keep refusing.
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
  /** It refused a message: nothing more is written on it, and it is closed once its confirms are in. */
  retired: boolean;
}

/** How long to wait before opening a channel to replace one that refused: the reconnect settings. */
export interface ReplaceBackoff {
  initialMs: number;
  maxMs: number;
}

/**
 * The longest wait before a replacement channel, whatever the reconnect backoff allows: a refusing channel
 * never recovers by itself, so waiting longer gains nothing, and one extra channel a second costs little.
 */
const MAX_REPLACE_DELAY_MS = 1_000;

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
  /** close() has finished: a channel that opens now is closed at once. */
  #shut = false;
  #idleWaiters: (() => void)[] = [];
  readonly #backoff: ReplaceBackoff;
  /** Channels that refused and still wait for confirms of messages written before the refusal. */
  readonly #retiring = new Set<ChannelState>();
  /** Channels retired in a row without an ack on their successor: spaces out the next replacement. */
  #refusedInARow = 0;
  #replaced = 0;
  #replaceTimer: { timer: NodeJS.Timeout; resolve: () => void } | undefined;

  /** Told when the broker closed the channel because an exchange is gone, so it is declared again. */
  onMissingExchange: (exchange: string) => void = () => {};

  constructor(conn: ConnectionManager, window: number, logger: Logger, backoff: ReplaceBackoff) {
    this.#conn = conn;
    this.#window = window;
    this.#logger = logger;
    this.#backoff = backoff;
    conn.onLost(() => {
      // A new connection is a new start: its first channel opens without the refusal backoff.
      this.#refusedInARow = 0;
      this.#channelLost(undefined);
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#queue.length;
  }
  /** Confirm channels replaced because the broker refused (nacked) a message on them. */
  get channelsReplaced(): number {
    return this.#replaced;
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
    this.#shut = true;
    this.#endReplaceWait();
    const open = [...this.#retiring];
    if (this.#state) open.push(this.#state);
    this.#state = undefined;
    this.#retiring.clear();
    await Promise.all(open.map((st) => (st.alive ? st.ch.close().catch(() => {}) : undefined)));
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
    if (st?.alive && !st.retired && st.generation === this.#conn.generation) return st;
    if (!this.#opening) {
      this.#opening = this.#openChannel().finally(() => {
        this.#opening = undefined;
      });
    }
    return this.#opening;
  }

  async #openChannel(): Promise<ChannelState> {
    await this.#replaceWait();
    const model = await this.#conn.whenOpen();
    const generation = this.#conn.generation;
    const ch = await model.createConfirmChannel();
    if (this.#shut) {
      await ch.close().catch(() => {});
      throw new NoConnectionError('closed', 'the transport is closed');
    }
    const st: ChannelState = {
      ch,
      generation,
      alive: true,
      unconfirmed: new Set(),
      closeError: undefined,
      drainWaiters: [],
      resend: [],
      retired: false,
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
    this.#retiring.delete(target);
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
    if (err === null && st === this.#state) this.#refusedInARow = 0;
    const nacked = err?.message === 'message nacked';
    // Whoever was waiting for it, a nack says something about the channel: see #retire.
    if (nacked) this.#retire(st);
    if (!this.#skip(entry)) {
      if (err === null) {
        if (entry.returned === undefined) this.#settle(entry, undefined);
        else this.#settle(entry, unroutable(entry, entry.returned));
      } else if (nacked) {
        // With `x-overflow: reject-publish` a full queue nacks; so does a quorum queue this channel cannot
        // reach. The caller decides whether to retry; its retry goes out on a new channel.
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
    if (st.retired && st.alive && st.unconfirmed.size === 0) this.#closeRetired(st);
    this.#checkIdle();
  }

  /**
   * The broker refused (nacked) a message on this channel: write nothing more on it and open a new one.
   * RabbitMQ keeps, per channel, its view of each quorum queue it publishes to, taken at the channel's first
   * publish to that queue. A channel that first published while the queue's leader had just died (its
   * record still naming the dead node) asks that node, is told "node down", and refuses every later publish
   * to that queue for as long as it lives (seen on 3.10: rabbit_fifo_client never picks another member
   * before it has registered with a leader). A new channel takes a fresh view once the queue has a leader
   * again. A full queue with `reject-publish` also nacks; a new channel costs little there and is refused
   * alike. Messages already written keep waiting for their confirms on the old channel (so nothing
   * confirmed is sent twice); it is closed once they are in. A return (UNROUTABLE) is about bindings, not
   * the channel, so it retires nothing.
   */
  #retire(st: ChannelState): void {
    if (st.retired || !st.alive) return;
    st.retired = true;
    this.#replaced++;
    if (this.#state === st) {
      this.#state = undefined;
      this.#refusedInARow++;
    }
    this.#retiring.add(st);
    const log = this.#refusedInARow <= 1 ? this.#logger.warn : this.#logger.debug;
    log.call(
      this.#logger,
      { transport: 'rabbitmq', refusedInARow: this.#refusedInARow },
      'the broker refused a publish (nack); publishing moves to a new confirm channel',
    );
    if (st.unconfirmed.size === 0) this.#closeRetired(st);
    // Whatever waits in the queue goes out on the next channel.
    if (this.#queue.length > 0) setImmediate(this.#runPump);
  }

  /** Closes a retired channel whose confirms are all in; outside amqplib's confirm handling, which called us. */
  #closeRetired(st: ChannelState): void {
    setImmediate(() => {
      if (!st.alive || st.unconfirmed.size > 0) return;
      st.alive = false;
      this.#retiring.delete(st);
      st.ch.close().catch(() => {});
    });
  }

  /**
   * Before opening a channel to replace one that refused: nothing for the first replacement (the refusal
   * may be over already), then the reconnect backoff (capped at MAX_REPLACE_DELAY_MS), doubling while each
   * new channel refuses as well, so a queue that stays unreachable is not met with a storm of channels.
   */
  #replaceWait(): Promise<void> {
    const n = this.#refusedInARow - 1;
    if (n <= 0 || this.#shut) return Promise.resolve();
    const maxMs = Math.min(this.#backoff.maxMs, MAX_REPLACE_DELAY_MS);
    const base = Math.min(maxMs, this.#backoff.initialMs * 2 ** Math.min(n - 1, 30));
    const delayMs = Math.min(maxMs, base * (0.75 + Math.random() * 0.5));
    return new Promise<void>((resolve) => {
      this.#replaceTimer = { timer: setTimeout(() => this.#endReplaceWait(), delayMs), resolve };
    });
  }

  #endReplaceWait(): void {
    const t = this.#replaceTimer;
    if (!t) return;
    this.#replaceTimer = undefined;
    clearTimeout(t.timer);
    t.resolve();
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
        if (!st?.alive || st.retired || st.generation !== this.#conn.generation) {
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
