/**
 * The publisher's bookkeeping against a scripted confirm channel (no broker): withdrawing a given-up call,
 * the confirm window, confirms in any order, returns, nacks, resending after a lost channel and socket
 * backpressure. The real-broker behaviour is covered in test/publish.test.ts, test/deadline.test.ts and test/reconnect.test.ts.
 */
import { EventEmitter } from 'node:events';
import { silentLogger } from '@omnibus/core';
import { noDeadline, PublishDeadline } from '@omnibus/core/kit';
import type { Message, Options } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConnectionManager } from './connection.js';
import { type Outgoing, Publisher } from './publisher.js';

interface Sent {
  exchange: string;
  routingKey: string;
  options: Options.Publish;
  cb: (err: Error | null) => void;
}

/** Stands in for amqplib's ConfirmChannel: records publishes; the test confirms, nacks and closes by hand. */
class FakeChannel extends EventEmitter {
  readonly sent: Sent[] = [];
  /** What publish() returns: false means "socket buffer full, wait for drain". */
  writable = true;
  #open = true;
  #pending = new Set<Sent>();

  publish(
    exchange: string,
    routingKey: string,
    _content: Buffer,
    options: Options.Publish,
    cb: (err: Error | null) => void,
  ): boolean {
    if (!this.#open) throw new Error('Channel closed');
    const s = { exchange, routingKey, options, cb };
    this.sent.push(s);
    this.#pending.add(s);
    return this.writable;
  }

  ack(i: number): void {
    this.#confirm(i, null);
  }

  nack(i: number): void {
    this.#confirm(i, new Error('message nacked'));
  }

  get closed(): boolean {
    return !this.#open;
  }

  returnMessage(i: number): void {
    const s = this.sent[i]!;
    this.emit('return', {
      fields: { exchange: s.exchange, routingKey: s.routingKey, replyText: 'NO_ROUTE' },
      properties: { messageId: s.options.messageId },
      content: Buffer.alloc(0),
    } as unknown as Message);
  }

  /** Closed under the publisher, as amqplib does it: unconfirmed callbacks fail, then 'close'. */
  die(): void {
    this.#open = false;
    for (const s of this.#pending) s.cb(new Error('channel closed'));
    this.#pending.clear();
    this.emit('close');
  }

  async close(): Promise<void> {
    this.die();
  }

  #confirm(i: number, err: Error | null): void {
    const s = this.sent[i]!;
    if (!this.#pending.delete(s)) throw new Error(`message ${i} is not awaiting a confirm`);
    s.cb(err);
  }
}

class FakeConnection {
  state = 'open';
  generation = 1;
  readonly channels: FakeChannel[] = [];
  readonly model = {
    createConfirmChannel: async () => {
      const ch = new FakeChannel();
      this.channels.push(ch);
      return ch;
    },
  };
  onLost(): void {}
  whenOpen(): Promise<unknown> {
    return Promise.resolve(this.model);
  }
  details(): Record<string, unknown> {
    return { lastError: undefined };
  }
  get channel(): FakeChannel {
    return this.channels[this.channels.length - 1]!;
  }
}

function message(id: string): Outgoing {
  return {
    exchange: 'orders',
    routingKey: 'order.placed',
    content: Buffer.from(id),
    options: { messageId: id },
  };
}

/** The outcome of a send as a value, so a test can check it without awaiting (and without unhandled rejections). */
function track(p: Promise<void>): { state: 'pending' | 'resolved' | 'rejected'; error: unknown } {
  const t = { state: 'pending' as 'pending' | 'resolved' | 'rejected', error: undefined as unknown };
  p.then(
    () => {
      t.state = 'resolved';
    },
    (err: unknown) => {
      t.state = 'rejected';
      t.error = err;
    },
  );
  return t;
}

/** Lets promise callbacks and microtasks run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

function setup(window = 100) {
  const conn = new FakeConnection();
  const publisher = new Publisher(conn as unknown as ConnectionManager, window, silentLogger, {
    initialMs: 100,
    maxMs: 10_000,
  });
  return { conn, publisher };
}

/** Two messages on one channel; the broker refuses the first, the second still waits for its confirm. */
async function firstOfTwoRefused() {
  const { conn, publisher } = setup();
  const results = ['a', 'b'].map((id) => track(publisher.send([message(id)], noDeadline())));
  await settle();
  const first = conn.channel;
  first.nack(0);
  await vi.advanceTimersByTimeAsync(0);
  expect(first.closed).toBe(false);
  return { conn, publisher, results, first };
}

describe('Publisher', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'Date', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('resolves a send only when every message in it is confirmed, and leaves no timer behind', async () => {
    const { conn, publisher } = setup();
    const result = track(publisher.send([message('a'), message('b')], noDeadline()));
    await settle();
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['a', 'b']);
    conn.channel.ack(0);
    await settle();
    expect(result.state).toBe('pending');
    conn.channel.ack(1);
    await settle();
    expect(result.state).toBe('resolved');
    expect(vi.getTimerCount()).toBe(0);
    expect(publisher.inFlight).toBe(0);
  });

  it('a call given up while every message still waits in the queue is withdrawn and never written', async () => {
    const { conn, publisher } = setup(1);
    const held = track(publisher.send([message('held')], noDeadline()));
    const call = new PublishDeadline(Date.now() + 1_000);
    const queued = track(publisher.send([message('q1'), message('q2')], call));
    await settle();
    expect(publisher.queued).toBe(2);
    expect(call.abandon()).toBe('withdrawn');
    await settle();
    expect(queued.error).toMatchObject({ code: 'TIMEOUT' });
    expect(publisher.queued).toBe(0);
    // The window opens again: what was withdrawn stays unwritten.
    conn.channel.ack(0);
    await settle();
    expect(held.state).toBe('resolved');
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['held']);
  });

  it('a call given up after a message reached the channel is unknown; its unsent rest is never written', async () => {
    const { conn, publisher } = setup(1);
    const call = new PublishDeadline(Date.now() + 1_000);
    const result = track(publisher.send([message('a'), message('b')], call));
    await settle();
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['a']);
    expect(call.abandon()).toBe('unknown');
    await settle();
    expect(result.error).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    conn.channel.ack(0);
    await settle();
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['a']);
    expect(publisher.inFlight).toBe(0);
  });

  it('a call given up while no channel is open is withdrawn; a call already given up is refused unsent', async () => {
    const { conn, publisher } = setup();
    let open!: () => void;
    conn.whenOpen = () => new Promise((resolve) => (open = () => resolve(conn.model)));
    const call = new PublishDeadline(Date.now() + 1_000);
    const waiting = track(publisher.send([message('a')], call));
    await settle();
    expect(call.abandon()).toBe('withdrawn');
    const late = new PublishDeadline(Date.now());
    late.abandon();
    await expect(publisher.send([message('b')], late)).rejects.toMatchObject({ code: 'TIMEOUT' });
    open();
    await settle();
    expect(waiting.error).toMatchObject({ code: 'TIMEOUT' });
    expect(conn.channels.flatMap((c) => c.sent)).toEqual([]);
  });

  it('a call caught unconfirmed by a lost channel and then given up is not sent again', async () => {
    const { conn, publisher } = setup();
    let open: (() => void) | undefined;
    const call = new PublishDeadline(Date.now() + 1_000);
    const result = track(publisher.send([message('a')], call));
    await settle();
    const first = conn.channel;
    conn.whenOpen = () => new Promise((resolve) => (open = () => resolve(conn.model)));
    first.die();
    await vi.advanceTimersByTimeAsync(0);
    expect(call.abandon()).toBe('unknown');
    open?.();
    await vi.advanceTimersByTimeAsync(0);
    expect(result.error).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    expect(conn.channels.slice(1).flatMap((c) => c.sent)).toEqual([]);
  });

  it('keeps at most `window` messages unconfirmed, sending more as confirms arrive in any order', async () => {
    const { conn, publisher } = setup(2);
    const results = ['a', 'b', 'c', 'd', 'e'].map((id) => track(publisher.send([message(id)], noDeadline())));
    await settle();
    const ids = () => conn.channel.sent.map((s) => s.options.messageId);
    expect(ids()).toEqual(['a', 'b']);
    expect(publisher.inFlight).toBe(2);
    expect(publisher.queued).toBe(3);
    conn.channel.ack(1); // out of order
    await settle();
    expect(ids()).toEqual(['a', 'b', 'c']);
    expect(results.map((r) => r.state)).toEqual(['pending', 'resolved', 'pending', 'pending', 'pending']);
    // Several confirms at once (as with a `multiple` ack) refill the window in one go.
    conn.channel.ack(0);
    conn.channel.ack(2);
    await settle();
    expect(ids()).toEqual(['a', 'b', 'c', 'd', 'e']);
    conn.channel.ack(3);
    conn.channel.ack(4);
    await settle();
    expect(results.every((r) => r.state === 'resolved')).toBe(true);
    expect(publisher.inFlight).toBe(0);
  });

  it('a returned message is UNROUTABLE on its confirm; the others in the send are still sent', async () => {
    const { conn, publisher } = setup();
    const result = track(publisher.send([message('a'), message('b')], noDeadline()));
    await settle();
    conn.channel.returnMessage(1);
    conn.channel.ack(0);
    conn.channel.ack(1);
    await settle();
    expect(result.error).toMatchObject({ code: 'UNROUTABLE' });
    expect(publisher.inFlight).toBe(0);
  });

  it('a nack rejects with PUBLISH_FAILED', async () => {
    const { conn, publisher } = setup();
    const result = track(publisher.send([message('a')], noDeadline()));
    await settle();
    conn.channel.nack(0);
    await settle();
    expect(result.error).toMatchObject({ code: 'PUBLISH_FAILED' });
  });

  it('after a nack, nothing more is written on that channel: the retry goes out on a new one', async () => {
    const { conn, publisher } = setup();
    const refused = track(publisher.send([message('a')], noDeadline()));
    await settle();
    const first = conn.channel;
    first.nack(0);
    await settle();
    expect(refused.error).toMatchObject({ code: 'PUBLISH_FAILED' });
    expect(publisher.channelsReplaced).toBe(1);
    const retried = track(publisher.send([message('a')], noDeadline()));
    await vi.advanceTimersByTimeAsync(0);
    const second = conn.channel;
    expect(second).not.toBe(first);
    expect(first.sent.map((s) => s.options.messageId)).toEqual(['a']);
    expect(second.sent.map((s) => s.options.messageId)).toEqual(['a']);
    second.ack(0);
    await settle();
    expect(retried.state).toBe('resolved');
    // The refusing channel had nothing left to confirm: it is closed, not left open.
    expect(first.closed).toBe(true);
  });

  it('a refusing channel keeps its other unconfirmed messages: confirmed once, nothing sent twice', async () => {
    const { conn, publisher } = setup();
    const results = ['a', 'b', 'c'].map((id) => track(publisher.send([message(id)], noDeadline())));
    await settle();
    const first = conn.channel;
    first.nack(0);
    const later = track(publisher.send([message('d')], noDeadline()));
    await vi.advanceTimersByTimeAsync(0);
    const second = conn.channel;
    expect(second).not.toBe(first);
    // b and c stay on the first channel, waiting for its confirms; only d goes to the new one.
    expect(second.sent.map((s) => s.options.messageId)).toEqual(['d']);
    first.ack(1);
    first.nack(2);
    second.ack(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(results.map((r) => r.state)).toEqual(['rejected', 'resolved', 'rejected']);
    expect(later.state).toBe('resolved');
    expect(publisher.channelsReplaced).toBe(1);
    expect(publisher.inFlight).toBe(0);
    expect(first.closed).toBe(true);
    expect(second.closed).toBe(false);
  });

  it('a retired channel lost with messages unconfirmed sends them again on the current one', async () => {
    const { conn, results, first } = await firstOfTwoRefused();
    first.die();
    await vi.advanceTimersByTimeAsync(0);
    const second = conn.channel;
    expect(second).not.toBe(first);
    expect(second.sent.map((s) => s.options.messageId)).toEqual(['b']);
    second.ack(0);
    await settle();
    expect(results.map((r) => r.state)).toEqual(['rejected', 'resolved']);
  });

  it('channels that keep refusing are replaced at once, then after a growing wait; an ack resets it', async () => {
    const { conn, publisher } = setup();
    const refuseLatest = async () => {
      const r = track(publisher.send([message(`m${conn.channels.length}`)], noDeadline()));
      await vi.advanceTimersByTimeAsync(0);
      conn.channel.nack(conn.channel.sent.length - 1);
      await vi.advanceTimersByTimeAsync(0);
      expect(r.error).toMatchObject({ code: 'PUBLISH_FAILED' });
    };
    await refuseLatest();
    await refuseLatest();
    expect(conn.channels).toHaveLength(2);
    // The second refusal in a row: the third channel waits for the backoff (100 ms ± 25 %).
    const waiting = track(publisher.send([message('w')], noDeadline()));
    await vi.advanceTimersByTimeAsync(70);
    expect(conn.channels).toHaveLength(2);
    expect(waiting.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(60);
    expect(conn.channels).toHaveLength(3);
    conn.channel.ack(0);
    await settle();
    expect(waiting.state).toBe('resolved');
    // An ack on the current channel ends the series: the next refusal is replaced at once again.
    await refuseLatest();
    track(publisher.send([message('x')], noDeadline()));
    await vi.advanceTimersByTimeAsync(0);
    expect(conn.channels).toHaveLength(4);
    expect(publisher.channelsReplaced).toBe(3);
  });

  it('a return (UNROUTABLE) does not replace the channel', async () => {
    const { conn, publisher } = setup();
    const result = track(publisher.send([message('a')], noDeadline()));
    await settle();
    conn.channel.returnMessage(0);
    conn.channel.ack(0);
    await settle();
    expect(result.error).toMatchObject({ code: 'UNROUTABLE' });
    track(publisher.send([message('b')], noDeadline()));
    await vi.advanceTimersByTimeAsync(0);
    expect(conn.channels).toHaveLength(1);
    expect(publisher.channelsReplaced).toBe(0);
  });

  it('close also closes a retired channel still waiting for confirms', async () => {
    const { publisher, results, first } = await firstOfTwoRefused();
    const closing = publisher.close(Date.now() + 1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    await closing;
    expect(results.map((r) => (r.error as { code?: string })?.code)).toEqual(['PUBLISH_FAILED', 'CLOSED']);
    expect(first.closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('messages caught unconfirmed by a lost channel are sent again, in order, on the next one', async () => {
    const { conn, publisher } = setup(2);
    const results = ['a', 'b', 'c'].map((id) => track(publisher.send([message(id)], noDeadline())));
    await settle();
    const first = conn.channel;
    expect(first.sent.map((s) => s.options.messageId)).toEqual(['a', 'b']);
    first.die();
    await vi.advanceTimersByTimeAsync(0);
    const second = conn.channel;
    expect(second).not.toBe(first);
    expect(second.sent.map((s) => s.options.messageId)).toEqual(['a', 'b']);
    second.ack(0);
    second.ack(1);
    await settle();
    expect(second.sent.map((s) => s.options.messageId)).toEqual(['a', 'b', 'c']);
    second.ack(2);
    await settle();
    expect(results.every((r) => r.state === 'resolved')).toBe(true);
  });

  it('stops writing while the socket buffer is full and goes on after drain', async () => {
    const { conn, publisher } = setup();
    const first = track(publisher.send([message('a')], noDeadline()));
    await settle();
    const ch = conn.channel;
    ch.writable = false;
    const rest = track(publisher.send([message('b'), message('c')], noDeadline()));
    await settle();
    expect(ch.sent.map((s) => s.options.messageId)).toEqual(['a', 'b']);
    expect(publisher.queued).toBe(1);
    ch.writable = true;
    ch.emit('drain');
    await settle();
    expect(ch.sent.map((s) => s.options.messageId)).toEqual(['a', 'b', 'c']);
    for (let i = 0; i < 3; i++) ch.ack(i);
    await settle();
    expect([first.state, rest.state]).toEqual(['resolved', 'resolved']);
  });

  it('close waits for confirms, then rejects whatever is still queued or unconfirmed with CLOSED', async () => {
    const { conn, publisher } = setup(1);
    const sent = track(publisher.send([message('a')], noDeadline()));
    const queued = track(publisher.send([message('b')], noDeadline()));
    await settle();
    const closing = publisher.close(Date.now() + 1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    await closing;
    expect(queued.error).toMatchObject({ code: 'CLOSED' });
    // The unconfirmed one is not sent again on another channel: closing ends it.
    expect(sent.error).toMatchObject({ code: 'CLOSED' });
    expect(conn.channels).toHaveLength(1);
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['a']);
    await expect(publisher.send([message('c')], noDeadline())).rejects.toMatchObject({
      code: 'CLOSED',
    });
  });
});
