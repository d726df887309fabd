/**
 * The publisher's bookkeeping against a scripted confirm channel (no broker): deadlines on one shared timer,
 * the confirm window, confirms in any order, returns, nacks, resending after a lost channel and socket
 * backpressure. The real-broker behaviour is covered in test/publish.test.ts and test/reconnect.test.ts.
 */
import { EventEmitter } from 'node:events';
import { PublishError, silentLogger } from '@omnibus/core';
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
  const publisher = new Publisher(conn as unknown as ConnectionManager, window, silentLogger);
  return { conn, publisher };
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
    const result = track(publisher.send([message('a'), message('b')], Date.now() + 1_000));
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

  it('rejects with TIMEOUT at the deadline when the broker never confirms', async () => {
    const { conn, publisher } = setup();
    const result = track(publisher.send([message('a')], Date.now() + 1_000));
    await settle();
    expect(conn.channel.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(result.state).toBe('pending');
    await vi.advanceTimersByTimeAsync(1);
    expect(result.state).toBe('rejected');
    expect(result.error).toBeInstanceOf(PublishError);
    expect(result.error).toMatchObject({
      code: 'TIMEOUT',
      message: 'no broker confirm within the publish timeout',
    });
    expect(vi.getTimerCount()).toBe(0);
    // A confirm arriving after the timeout changes nothing and frees the window slot.
    conn.channel.ack(0);
    await settle();
    expect(result.state).toBe('rejected');
    expect(publisher.inFlight).toBe(0);
  });

  it('times out every send at its own deadline, whatever order the deadlines were given in', async () => {
    const { publisher } = setup();
    const now = Date.now();
    const late = track(publisher.send([message('late')], now + 5_000));
    const early = track(publisher.send([message('early')], now + 1_000));
    const middle = track(publisher.send([message('middle')], now + 3_000));
    await vi.advanceTimersByTimeAsync(1_000);
    expect([early.state, middle.state, late.state]).toEqual(['rejected', 'pending', 'pending']);
    await vi.advanceTimersByTimeAsync(1_999);
    expect([middle.state, late.state]).toEqual(['pending', 'pending']);
    await vi.advanceTimersByTimeAsync(1);
    expect([middle.state, late.state]).toEqual(['rejected', 'pending']);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(late.state).toBe('rejected');
    expect(late.error).toMatchObject({ code: 'TIMEOUT' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a send confirmed before its deadline is not timed out while later ones still are', async () => {
    const { conn, publisher } = setup();
    const now = Date.now();
    const first = track(publisher.send([message('first')], now + 1_000));
    const second = track(publisher.send([message('second')], now + 2_000));
    await settle();
    conn.channel.ack(0);
    await vi.advanceTimersByTimeAsync(1_500);
    expect([first.state, second.state]).toEqual(['resolved', 'pending']);
    await vi.advanceTimersByTimeAsync(500);
    expect(second.state).toBe('rejected');
  });

  it('a deadline already past rejects with TIMEOUT straight away', async () => {
    const { publisher } = setup();
    const result = track(publisher.send([message('a')], Date.now() - 10));
    await vi.advanceTimersByTimeAsync(0);
    expect(result.error).toMatchObject({ code: 'TIMEOUT' });
  });

  it('keeps at most `window` messages unconfirmed, sending more as confirms arrive in any order', async () => {
    const { conn, publisher } = setup(2);
    const results = ['a', 'b', 'c', 'd', 'e'].map((id) =>
      track(publisher.send([message(id)], Date.now() + 10_000)),
    );
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
    const result = track(publisher.send([message('a'), message('b')], Date.now() + 1_000));
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
    const result = track(publisher.send([message('a')], Date.now() + 1_000));
    await settle();
    conn.channel.nack(0);
    await settle();
    expect(result.error).toMatchObject({ code: 'PUBLISH_FAILED' });
  });

  it('messages caught unconfirmed by a lost channel are sent again, in order, on the next one', async () => {
    const { conn, publisher } = setup(2);
    const results = ['a', 'b', 'c'].map((id) => track(publisher.send([message(id)], Date.now() + 10_000)));
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
    const first = track(publisher.send([message('a')], Date.now() + 10_000));
    await settle();
    const ch = conn.channel;
    ch.writable = false;
    const rest = track(publisher.send([message('b'), message('c')], Date.now() + 10_000));
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

  it('close waits for confirms, then rejects whatever is still queued with CLOSED', async () => {
    const { conn, publisher } = setup(1);
    const sent = track(publisher.send([message('a')], Date.now() + 10_000));
    const queued = track(publisher.send([message('b')], Date.now() + 10_000));
    await settle();
    const closing = publisher.close(Date.now() + 1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    await closing;
    expect(queued.error).toMatchObject({ code: 'CLOSED' });
    expect(sent.state).toBe('pending');
    expect(conn.channel.sent.map((s) => s.options.messageId)).toEqual(['a']);
    await expect(publisher.send([message('c')], Date.now() + 1_000)).rejects.toMatchObject({
      code: 'CLOSED',
    });
  });
});
