/** The batcher's withdrawal: an item whose caller gave up while queued is never handed to a batch call. */
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
