import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineQueue } from './deadline.js';

describe('DeadlineQueue', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires an operation once its timeout has passed, not before', () => {
    const q = new DeadlineQueue(100);
    const expired = vi.fn();
    q.start(performance.now(), expired);
    vi.advanceTimersByTime(99);
    expect(expired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(expired).toHaveBeenCalledTimes(1);
    expect(q.pending).toBe(0);
  });

  it('never expires an operation marked done, whatever order they finish in', () => {
    const q = new DeadlineQueue(100);
    const fired: string[] = [];
    const a = q.start(performance.now(), () => fired.push('a'));
    vi.advanceTimersByTime(10);
    const b = q.start(performance.now(), () => fired.push('b'));
    vi.advanceTimersByTime(10);
    q.start(performance.now(), () => fired.push('c'));
    b.done(); // out of order: a is still pending at the head
    b.done(); // twice is harmless
    expect(q.pending).toBe(2);
    vi.advanceTimersByTime(80);
    expect(fired).toEqual(['a']);
    a.done(); // after expiry: no effect
    vi.advanceTimersByTime(20);
    expect(fired).toEqual(['a', 'c']);
    expect(q.pending).toBe(0);
  });

  it('serves every deadline with one timer, and stops it when nothing is pending', () => {
    const q = new DeadlineQueue(1000);
    const ops = Array.from({ length: 500 }, () => q.start(performance.now(), () => {}));
    expect(vi.getTimerCount()).toBe(1);
    for (const op of ops) op.done();
    // An idle queue must not keep the process alive.
    expect(vi.getTimerCount()).toBe(0);
    expect(q.pending).toBe(0);
  });

  it('re-arms for the next deadline after one expires', () => {
    const q = new DeadlineQueue(50);
    const fired: number[] = [];
    q.start(performance.now(), () => fired.push(performance.now()));
    vi.advanceTimersByTime(30);
    q.start(performance.now(), () => fired.push(performance.now()));
    vi.advanceTimersByTime(20);
    expect(fired).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(30);
    expect(fired).toHaveLength(2);
    expect(fired[1]! - fired[0]!).toBeGreaterThanOrEqual(30);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('lets an expiry callback start another operation', () => {
    const q = new DeadlineQueue(10);
    const second = vi.fn();
    q.start(performance.now(), () => {
      q.start(performance.now(), second);
    });
    vi.advanceTimersByTime(10);
    expect(second).not.toHaveBeenCalled();
    vi.advanceTimersByTime(10);
    expect(second).toHaveBeenCalledTimes(1);
  });

  it('waits for a deadline with one timer, not by polling', () => {
    const q = new DeadlineQueue(1000);
    const setTimer = vi.spyOn(globalThis, 'setTimeout');
    const expired = vi.fn();
    q.start(performance.now(), expired);
    vi.advanceTimersByTime(999);
    expect(setTimer).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(expired).toHaveBeenCalledTimes(1);
    setTimer.mockRestore();
  });

  it('waits out a timeout longer than a timer can hold (2^31-1 ms) without firing early', () => {
    const q = new DeadlineQueue(3_000_000_000);
    const setTimer = vi.spyOn(globalThis, 'setTimeout');
    const expired = vi.fn();
    q.start(performance.now(), expired);
    vi.advanceTimersByTime(2_147_483_647);
    expect(expired).not.toHaveBeenCalled();
    expect(setTimer).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(3_000_000_000 - 2_147_483_647);
    expect(expired).toHaveBeenCalledTimes(1);
    setTimer.mockRestore();
  });

  it('still expires the right operations after compacting a long queue', () => {
    const q = new DeadlineQueue(100);
    let expired = 0;
    const ops = Array.from({ length: 3000 }, () => q.start(performance.now(), () => expired++));
    // Finishing the first 2 000 in order drops them from the head (and compacts the queue on the way).
    for (const op of ops.slice(0, 2000)) op.done();
    ops[2500]!.done();
    expect(q.pending).toBe(999);
    vi.advanceTimersByTime(100);
    expect(expired).toBe(999);
    expect(q.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('counts only unfinished operations while a stuck one holds the head', () => {
    const q = new DeadlineQueue(10_000);
    const stuck = q.start(performance.now(), () => {});
    for (let i = 0; i < 5000; i++) q.start(performance.now(), () => {}).done();
    expect(q.pending).toBe(1);
    stuck.done();
    expect(q.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
