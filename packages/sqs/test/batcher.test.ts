/**
 * The batcher's withdrawal (an item whose caller gave up while queued is never handed to a batch call),
 * and its adaptive batching when there is no linger.
 */
import { describe, expect, it } from 'vitest';
import { MicroBatcher } from '../src/batcher.js';

interface Item {
  n: number;
  live: boolean;
}

function batcher(sent: number[][], lingerMs: number): MicroBatcher<Item> {
  return new MicroBatcher<Item>({
    maxEntries: 10,
    maxBytes: Number.POSITIVE_INFINITY,
    lingerMs,
    maxInFlight: 1,
    sizeOf: () => 1,
    live: (item) => item.live,
    run: async (items) => {
      sent.push(items.map((i) => i.n));
    },
  });
}

describe('MicroBatcher withdrawal', () => {
  it('drops withdrawn items wherever they stand in the queue, and sends the rest', async () => {
    const sent: number[][] = [];
    const b = batcher(sent, 1000);
    const items = Array.from({ length: 12 }, (_, n) => ({ n, live: true }));
    for (const item of items) b.add(item);
    // The first full batch of 10 went at once; the next one starts with a withdrawn item.
    items[10]!.live = false;
    await b.flush();
    expect(sent.flat()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
  });

  it('an item withdrawn while lingering is never sent, and flush() still resolves', async () => {
    const sent: number[][] = [];
    const b = batcher(sent, 1000);
    const a = { n: 1, live: true };
    const c = { n: 2, live: true };
    b.add(a);
    b.add(c);
    a.live = false;
    c.live = false;
    await b.flush();
    expect(sent).toEqual([]);
    expect(b.size).toBe(0);
  });

  it('cuts a withdrawn item out of the middle of a batch', async () => {
    const sent: number[][] = [];
    const b = batcher(sent, 1000);
    const items = Array.from({ length: 5 }, (_, n) => ({ n, live: true }));
    for (const item of items) b.add(item);
    items[2]!.live = false;
    await b.flush();
    expect(sent).toEqual([[0, 1, 3, 4]]);
  });

  it('requeued items withdrawn meanwhile are not sent again', async () => {
    const sent: number[][] = [];
    const b = batcher(sent, 0);
    const item = { n: 7, live: true };
    b.requeue([item], 20);
    item.live = false;
    await b.flush();
    expect(sent).toEqual([]);
  });
});

/** A batcher whose calls the test answers by hand, to see what goes while calls are in flight. */
function heldBatcher(maxInFlight: number, lingerMs = 0) {
  const calls: { items: number[]; done: () => void }[] = [];
  const b = new MicroBatcher<Item>({
    maxEntries: 10,
    maxBytes: Number.POSITIVE_INFINITY,
    lingerMs,
    maxInFlight,
    sizeOf: () => 1,
    live: (item) => item.live,
    run: (items) =>
      new Promise<void>((resolve) => {
        calls.push({ items: items.map((i) => i.n), done: resolve });
      }),
  });
  const add = (...ns: number[]) => {
    for (const n of ns) b.add({ n, live: true });
  };
  return { b, calls, add };
}

/** Lets queued microtasks and promise callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('MicroBatcher without a linger (adaptive)', () => {
  it('sends an item at once when no call is in flight; items of the same tick share the call', async () => {
    const { calls, add } = heldBatcher(8);
    add(1, 2);
    expect(calls).toHaveLength(0);
    await Promise.resolve();
    expect(calls.map((c) => c.items)).toEqual([[1, 2]]);
  });

  it('batches what arrives while a call is in flight and sends it when a call returns', async () => {
    const { calls, add } = heldBatcher(8);
    add(1);
    await settle();
    add(2, 3);
    await settle();
    add(4);
    await settle();
    // Seven slots are free, but partial batches wait for the call in flight.
    expect(calls.map((c) => c.items)).toEqual([[1]]);
    calls[0]!.done();
    await settle();
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3, 4]]);
  });

  it('a full batch goes to a free slot while another call is in flight', async () => {
    const { calls, add } = heldBatcher(8);
    add(0);
    await settle();
    add(...Array.from({ length: 12 }, (_, i) => i + 1));
    await settle();
    expect(calls.map((c) => c.items)).toEqual([[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]);
    calls[1]!.done();
    await settle();
    expect(calls.map((c) => c.items)).toEqual([[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11, 12]]);
  });

  it('flush() sends a partial batch at once whatever is in flight, and resolves when all returned', async () => {
    const { b, calls, add } = heldBatcher(8);
    add(1);
    await settle();
    add(2);
    let flushed = false;
    const done = b.flush().then(() => {
      flushed = true;
    });
    await settle();
    expect(calls.map((c) => c.items)).toEqual([[1], [2]]);
    for (const c of calls) c.done();
    await done;
    expect(flushed).toBe(true);
  });

  it('with a linger, a lone item waits for it', async () => {
    const { calls, add } = heldBatcher(8, 30);
    add(1);
    await settle();
    expect(calls).toHaveLength(0);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(calls.map((c) => c.items)).toEqual([[1]]);
  });
});
