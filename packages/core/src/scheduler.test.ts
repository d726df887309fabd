import { describe, expect, it } from 'vitest';
import { KeyedScheduler } from './scheduler.js';
import { eventually } from './testing/index.js';

/** A task the test finishes by hand, recording when it started. */
function gate() {
  let open!: () => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

function harness(concurrency: number, ordered: boolean) {
  const s = new KeyedScheduler(concurrency, ordered);
  const started: string[] = [];
  const gates = new Map<string, ReturnType<typeof gate>>();
  let running = 0;
  let maxRunning = 0;
  const submit = (key: string | undefined, name: string) => {
    const g = gate();
    gates.set(name, g);
    s.submit(key, async () => {
      started.push(name);
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        await g.promise;
      } finally {
        running--;
      }
    });
  };
  const finish = (name: string) => gates.get(name)!.open();
  return {
    s,
    started,
    submit,
    finish,
    fail: (name: string) => gates.get(name)!.fail(new Error(name)),
    get maxRunning() {
      return maxRunning;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('KeyedScheduler', () => {
  it('starts a task at once when a slot is free', () => {
    const h = harness(2, false);
    h.submit(undefined, 'a');
    expect(h.started).toEqual(['a']);
    expect(h.s.size).toBe(1);
  });

  it('never runs more than `concurrency` tasks at once', async () => {
    const h = harness(3, false);
    for (let i = 0; i < 10; i++) h.submit(`k${i}`, `t${i}`);
    expect(h.started).toEqual(['t0', 't1', 't2']);
    expect(h.s.size).toBe(10);
    h.finish('t1');
    await eventually(() => h.started.length === 4);
    expect(h.started[3]).toBe('t3');
    for (let i = 0; i < 10; i++) h.finish(`t${i}`);
    await h.s.idle();
    expect(h.started).toHaveLength(10);
    expect(h.maxRunning).toBe(3);
    expect(h.s.size).toBe(0);
  });

  it('ordered: a key runs one task at a time, in arrival order', async () => {
    const h = harness(4, true);
    h.submit('k', 'k1');
    h.submit('k', 'k2');
    h.submit('k', 'k3');
    expect(h.started).toEqual(['k1']);
    h.finish('k1');
    await eventually(() => h.started.length === 2);
    expect(h.started).toEqual(['k1', 'k2']);
    h.finish('k2');
    await eventually(() => h.started.length === 3);
    h.finish('k3');
    await h.s.idle();
    expect(h.started).toEqual(['k1', 'k2', 'k3']);
    expect(h.maxRunning).toBe(1);
  });

  it('ordered: a failed task does not stall its key', async () => {
    const h = harness(2, true);
    h.submit('k', 'k1');
    h.submit('k', 'k2');
    h.fail('k1');
    await eventually(() => h.started.includes('k2'));
    h.finish('k2');
    await h.s.idle();
  });

  it('ordered: different keys run in parallel', async () => {
    const h = harness(4, true);
    h.submit('a', 'a1');
    h.submit('b', 'b1');
    h.submit('a', 'a2');
    h.submit('c', 'c1');
    expect(h.started).toEqual(['a1', 'b1', 'c1']);
    h.finish('b1');
    h.finish('c1');
    await tick();
    expect(h.started).toEqual(['a1', 'b1', 'c1']);
    h.finish('a1');
    await eventually(() => h.started.includes('a2'));
    h.finish('a2');
    await h.s.idle();
  });

  it('ordered: messages without a key are not serialised', () => {
    const h = harness(4, true);
    h.submit(undefined, 'x1');
    h.submit(undefined, 'x2');
    expect(h.started).toEqual(['x1', 'x2']);
  });

  it('unordered: tasks with the same key run in parallel', () => {
    const h = harness(4, false);
    h.submit('k', 'k1');
    h.submit('k', 'k2');
    expect(h.started).toEqual(['k1', 'k2']);
  });

  it('ordered with a concurrency bound: a waiting lane keeps its place behind other keys', async () => {
    const h = harness(1, true);
    h.submit('a', 'a1');
    h.submit('b', 'b1');
    h.submit('a', 'a2');
    expect(h.started).toEqual(['a1']);
    h.finish('a1');
    await eventually(() => h.started.length === 2);
    // b1 arrived before a2 and was ready first.
    expect(h.started).toEqual(['a1', 'b1']);
    h.finish('b1');
    await eventually(() => h.started.length === 3);
    h.finish('a2');
    await h.s.idle();
    expect(h.started).toEqual(['a1', 'b1', 'a2']);
  });

  it('idle() resolves at once when nothing is queued or running', async () => {
    const s = new KeyedScheduler(1, false);
    await expect(s.idle()).resolves.toBeUndefined();
  });

  it('idle() waits for queued and running tasks, and for all of them', async () => {
    const h = harness(1, false);
    h.submit(undefined, 'a');
    h.submit(undefined, 'b');
    let idle = false;
    const waiters = [h.s.idle(), h.s.idle()];
    void Promise.all(waiters).then(() => {
      idle = true;
    });
    h.finish('a');
    await eventually(() => h.started.includes('b'));
    await tick();
    expect(idle).toBe(false);
    h.finish('b');
    await Promise.all(waiters);
    expect(idle).toBe(true);
    expect(h.s.size).toBe(0);
  });

  it('keeps working through many tasks (internal queue compaction)', async () => {
    const s = new KeyedScheduler(2, true);
    const done: number[] = [];
    for (let i = 0; i < 3000; i++) {
      s.submit(`k${i % 5}`, async () => {
        await Promise.resolve();
        done.push(i);
      });
    }
    await s.idle();
    expect(done).toHaveLength(3000);
    // Per key, completion order is arrival order.
    for (let k = 0; k < 5; k++) {
      const lane = done.filter((i) => i % 5 === k);
      expect(lane).toEqual([...lane].sort((a, b) => a - b));
    }
  });
});
