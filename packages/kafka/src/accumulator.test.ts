import { ErrorCode, PublishError } from '@omnibus/core';
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
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const options = { lingerMs: 5, batchMaxBytes: 1024, maxInFlightSends: 1, sendTimeoutMs: 1_000 };

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

  it('times out each unacknowledged publish at its own deadline, with one timer for all', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const first = track(acc.publish('t', [record('a')]));
    await vi.advanceTimersByTimeAsync(400);
    const second = track(acc.publish('t', [record('b')]));
    const third = track(acc.publish('t', [record('c')]));
    expect(sends).toHaveLength(1);
    // The linger timer went off; only the deadline timer is armed however many publishes wait.
    expect(vi.getTimerCount()).toBe(1);

    await vi.advanceTimersByTimeAsync(600);
    expect(first.settled).toBe('rejected');
    expect(first.error).toBeInstanceOf(PublishError);
    expect((first.error as PublishError).code).toBe(ErrorCode.TIMEOUT);
    expect([second.settled, third.settled]).toEqual(['pending', 'pending']);

    await vi.advanceTimersByTimeAsync(399);
    expect([second.settled, third.settled]).toEqual(['pending', 'pending']);
    await vi.advanceTimersByTimeAsync(1);
    expect([second.settled, third.settled]).toEqual(['rejected', 'rejected']);
    expect((second.error as PublishError).message).toContain('"t" within 1000 ms');
    expect(vi.getTimerCount()).toBe(0);

    // A late acknowledgement changes nothing.
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(first.settled).toBe('rejected');
  });

  it('a publish acknowledged in time is not failed by the deadline of one still waiting', async () => {
    const { producer, sends } = fakeProducer();
    const acc = new Accumulator(producer, options);
    const first = track(acc.publish('t', [record('a')]));
    await vi.advanceTimersByTimeAsync(5);
    const second = track(acc.publish('t', [record('b')]));
    sends[0]!.ack();
    await vi.advanceTimersByTimeAsync(0);
    expect(first.settled).toBe('resolved');
    // The second went out once the first request returned; it is never acknowledged.
    expect(sends).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first.settled).toBe('resolved');
    expect(second.settled).toBe('rejected');
    expect((second.error as PublishError).code).toBe(ErrorCode.TIMEOUT);
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
    const acc = new Accumulator(producer, { ...options, sendTimeoutMs: 60_000 });
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
