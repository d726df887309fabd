import { ErrorCode, type PublishError } from '@omnibus/core';
import { PublishDeadline } from '@omnibus/core/kit';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Accumulator } from './accumulator.js';
import type { DriverProducer, TopicRecords } from './driver.js';

/** A producer whose sends the test acknowledges or fails by hand. */
function fakeProducer() {
  const sends: { batches: TopicRecords[]; ack: () => void; fail: (err: unknown) => void }[] = [];
  const producer: DriverProducer = {
    connect: async () => {},
    disconnect: async () => {},
    send: (batches) =>
      new Promise<void>((resolve, reject) => {
        sends.push({ batches, ack: resolve, fail: reject });
      }),
  };
  return { producer, sends };
}

const record = (text: string) => ({ body: Buffer.from(text), headers: { ce_id: text } });

/** Where a promise stands, without waiting for it. */
function track(promise: Promise<void>) {
  const state: { settled: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { settled: 'pending' };
  promise.then(
    () => {
      state.settled = 'resolved';
    },
    (error: unknown) => {
      state.settled = 'rejected';
      state.error = error;
    },
  );
  return state;
}

describe('Accumulator', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const options = { lingerMs: 5, batchMaxBytes: 1024, maxInFlightSends: 1 };

  it('gathers concurrent publishes into one send and resolves each once acknowledged', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const a = track(acc.publish('t', [record('a')]));
    const b = track(acc.publish('t', [record('b'), record('c')]));
    await vi.advanceTimersByTimeAsync(5);
    expect(sends).toHaveLength(1);
    expect(sends[0]!.batches[0]!.records.map((r) => Buffer.from(r.body).toString())).toEqual(['a', 'b', 'c']);
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect([a.settled, b.settled]).toEqual(['resolved', 'resolved']);
    // Nothing left to time out: no timer is left behind.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('withdraws a publish still waiting in the queue: verdict withdrawn, its records never sent', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const first = track(acc.publish('t', [record('a')], new PublishDeadline(0)));
    await vi.advanceTimersByTimeAsync(5);
    // The first request is in flight (one at a time): the next two wait in the queue behind it.
    const call = new PublishDeadline(0);
    const second = track(acc.publish('t', [record('b'), record('c')], call));
    const third = track(acc.publish('t', [record('d')], new PublishDeadline(0)));
    expect(call.abandon()).toBe('withdrawn');
    expect(call.abandoned).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(second.settled).toBe('rejected');

    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(5);
    expect(first.settled).toBe('resolved');
    // Only the third publish goes out next: b and c are gone for good.
    expect(sends).toHaveLength(2);
    expect(sends[1]!.batches[0]!.records.map((r) => Buffer.from(r.body).toString())).toEqual(['d']);
    sends[1]!.ack();
    await vi.advanceTimersByTimeAsync(5);
    expect(third.settled).toBe('resolved');
    expect(sends).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('withdraws a publish still lingering, before any request was made', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const call = new PublishDeadline(0);
    track(acc.publish('t', [record('a')], call));
    expect(call.abandon()).toBe('withdrawn');
    await vi.advanceTimersByTimeAsync(50);
    expect(sends).toHaveLength(0);
  });

  it("answers 'unknown' once the publish is in a request, and a late acknowledgement changes nothing", async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const call = new PublishDeadline(0);
    const p = track(acc.publish('t', [record('a')], call));
    await vi.advanceTimersByTimeAsync(5);
    expect(sends).toHaveLength(1);
    expect(call.abandon()).toBe('unknown');
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(p.settled).toBe('rejected');
  });

  it("a publish split over two requests is 'unknown' once the first went out, and its rest is not sent", async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, { ...options, batchMaxBytes: 100 });
    const call = new PublishDeadline(0);
    track(acc.publish('t', [record('a'.repeat(80)), record('b'.repeat(80))], call));
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toHaveLength(1);
    expect(call.abandon()).toBe('unknown');
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(10);
    expect(sends).toHaveLength(1);
  });

  it('keeps no timer of its own while publishes wait for an acknowledgement', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const a = track(acc.publish('t', [record('a')], new PublishDeadline(0)));
    await vi.advanceTimersByTimeAsync(5);
    track(acc.publish('t', [record('b')]));
    expect(sends).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
    // However long the broker takes, the accumulator never fails a publish by itself.
    await vi.advanceTimersByTimeAsync(120_000);
    expect(a.settled).toBe('pending');
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.settled).toBe('resolved');
  });

  it('a failed send rejects every publish in it with a typed error', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const a = track(acc.publish('t', [record('a')]));
    const b = track(acc.publish('u', [record('b')]));
    await vi.advanceTimersByTimeAsync(5);
    sends[0]!.fail(Object.assign(new Error('gone'), { type: 'UNKNOWN_TOPIC_OR_PARTITION' }));
    await vi.advanceTimersByTimeAsync(0);
    expect([a.settled, b.settled]).toEqual(['rejected', 'rejected']);
    expect((a.error as PublishError).code).toBe(ErrorCode.UNROUTABLE);
    expect((b.error as PublishError).message).toContain('"u"');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close fails what could not be sent before its deadline', async () => {
    const { producer } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const a = track(acc.publish('t', [record('a')]));
    const b = track(acc.publish('t', [record('b'.repeat(2_000))]));
    const closed = acc.close(100);
    await vi.advanceTimersByTimeAsync(100);
    await closed;
    // The first request never returned; the record behind it was never sent.
    expect(a.settled).toBe('pending');
    expect(b.settled).toBe('rejected');
    expect((b.error as PublishError).code).toBe(ErrorCode.CLOSED);
    await expect(acc.publish('t', [record('c')])).rejects.toMatchObject({ code: ErrorCode.CLOSED });
  });
});

describe('Accumulator, adaptive (lingerMs 0)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const adaptive = { lingerMs: 0, batchMaxBytes: 1024, batchMaxMessages: 3, maxInFlightSends: 1 };
  const bodies = (send: { batches: TopicRecords[] }) =>
    send.batches.flatMap((b) => b.records.map((r) => Buffer.from(r.body).toString()));

  it('sends a lone publish at once, without a timer, and what the same tick adds shares its request', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, adaptive);
    track(acc.publish('t', [record('a')]));
    track(acc.publish('t', [record('b')]));
    expect(vi.getTimerCount()).toBe(0);
    await Promise.resolve();
    expect(sends).toHaveLength(1);
    expect(bodies(sends[0]!)).toEqual(['a', 'b']);
  });

  it('gathers what arrives while a request is in flight and sends it together when the request returns', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, { ...adaptive, batchMaxMessages: 100 });
    const a = track(acc.publish('t', [record('a')]));
    await Promise.resolve();
    const later = ['b', 'c', 'd', 'e'].map((x) => track(acc.publish('t', [record(x)])));
    // However long the request takes, nothing more is sent while it is in flight (one request at a time).
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sends).toHaveLength(1);
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.settled).toBe('resolved');
    expect(sends).toHaveLength(2);
    expect(bodies(sends[1]!)).toEqual(['b', 'c', 'd', 'e']);
    sends[1]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(later.map((p) => p.settled)).toEqual(['resolved', 'resolved', 'resolved', 'resolved']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('caps a request by records and by bytes', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, { ...adaptive, batchMaxBytes: 100, maxInFlightSends: 8 });
    for (const x of ['a', 'b', 'c', 'd']) track(acc.publish('t', [record(x)]));
    track(acc.publish('t', [record('x'.repeat(60))]));
    track(acc.publish('t', [record('y'.repeat(60))]));
    await Promise.resolve();
    // Three records at most; then 100 bytes: a big record (125 with its header) goes alone. Only full
    // batches go to the free slots while the first request is in flight.
    expect(sends.map(bodies)).toEqual([['a', 'b', 'c'], ['d'], ['x'.repeat(60)], ['y'.repeat(60)]]);
  });

  it('with slots free while a request is in flight, a partial batch waits for a return; a full one goes', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, { ...adaptive, maxInFlightSends: 2 });
    track(acc.publish('t', [record('a')]));
    await Promise.resolve();
    expect(sends).toHaveLength(1);
    track(acc.publish('t', [record('b')]));
    await vi.advanceTimersByTimeAsync(0);
    // A free slot, but one record is no batch: it waits for the request in flight.
    expect(sends).toHaveLength(1);
    track(acc.publish('t', [record('c'), record('d')]));
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toHaveLength(2);
    expect(bodies(sends[1]!)).toEqual(['b', 'c', 'd']);
    track(acc.publish('t', [record('e')]));
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toHaveLength(2);
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(sends).toHaveLength(3);
    expect(bodies(sends[2]!)).toEqual(['e']);
  });

  it('withdraws a publish queued behind the request in flight: verdict withdrawn, never sent', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, adaptive);
    track(acc.publish('t', [record('a')], new PublishDeadline(0)));
    await Promise.resolve();
    const call = new PublishDeadline(0);
    const b = track(acc.publish('t', [record('b')], call));
    const c = track(acc.publish('t', [record('c')], new PublishDeadline(0)));
    expect(call.abandon()).toBe('withdrawn');
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(b.settled).toBe('rejected');
    expect((b.error as PublishError).code).toBe(ErrorCode.TIMEOUT);
    expect(sends).toHaveLength(2);
    expect(bodies(sends[1]!)).toEqual(['c']);
    sends[1]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(c.settled).toBe('resolved');
  });
});
