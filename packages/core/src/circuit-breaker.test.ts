import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker, type CircuitState } from './circuit-breaker.js';

/** Tracks whether a promise settled, without awaiting it. */
function track<T>(p: Promise<T>) {
  const t = { settled: false, value: undefined as T | undefined };
  p.then((v) => {
    t.settled = true;
    t.value = v;
  });
  return t;
}

describe('CircuitBreaker', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function breaker(failureThreshold = 3, cooldownMs = 1000) {
    const states: CircuitState[] = [];
    const cb = new CircuitBreaker({ failureThreshold, cooldownMs, onStateChange: (s) => states.push(s) });
    return { cb, states };
  }

  it('defaults to 5 failures and a 10 s cool-down', () => {
    const cb = new CircuitBreaker();
    expect(cb.failureThreshold).toBe(5);
    expect(cb.cooldownMs).toBe(10_000);
    expect(cb.state).toBe('closed');
  });

  it('admits at once, not as a probe, while closed', async () => {
    const { cb } = breaker();
    await expect(cb.admit()).resolves.toBe(false);
  });

  it('opens after N consecutive failures', () => {
    const { cb, states } = breaker(3);
    expect(cb.failure()).toBe(false);
    expect(cb.failure()).toBe(false);
    expect(cb.state).toBe('closed');
    // The failure that opens the circuit still counts as an ordinary failure.
    expect(cb.failure()).toBe(false);
    expect(cb.state).toBe('open');
    expect(states).toEqual(['open']);
  });

  it('a success resets the count of consecutive failures', () => {
    const { cb, states } = breaker(3);
    cb.failure();
    cb.failure();
    cb.success();
    cb.failure();
    cb.failure();
    expect(cb.state).toBe('closed');
    expect(states).toEqual([]);
    cb.failure();
    expect(cb.state).toBe('open');
  });

  it('failure() is true for failures while open: they say the dependency is down, not the message', () => {
    const { cb } = breaker(1);
    expect(cb.failure()).toBe(false);
    expect(cb.state).toBe('open');
    expect(cb.failure()).toBe(true);
    expect(cb.failure()).toBe(true);
    expect(cb.state).toBe('open');
  });

  it('admit waits while open and lets one probe through after the cool-down', async () => {
    const { cb, states } = breaker(1, 1000);
    cb.failure();
    const first = track(cb.admit());
    const second = track(cb.admit());
    await vi.advanceTimersByTimeAsync(999);
    expect(first.settled).toBe(false);
    expect(second.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(cb.state).toBe('half-open');
    // Exactly one of the waiters is the probe; the other keeps waiting.
    expect([first.settled, second.settled].filter(Boolean)).toHaveLength(1);
    expect(first.value ?? second.value).toBe(true);
    expect(states).toEqual(['open', 'half-open']);
  });

  it('a successful probe closes the circuit and frees the waiters (not as probes)', async () => {
    const { cb, states } = breaker(1, 100);
    cb.failure();
    const probe = track(cb.admit());
    const waiter = track(cb.admit());
    await vi.advanceTimersByTimeAsync(100);
    expect(probe.value).toBe(true);
    expect(waiter.settled).toBe(false);
    cb.success();
    await vi.advanceTimersByTimeAsync(0);
    expect(cb.state).toBe('closed');
    expect(waiter.settled).toBe(true);
    expect(waiter.value).toBe(false);
    expect(states).toEqual(['open', 'half-open', 'closed']);
  });

  it('a failed probe re-opens the circuit for another full cool-down', async () => {
    const { cb, states } = breaker(1, 100);
    cb.failure();
    await vi.advanceTimersByTimeAsync(100);
    await expect(cb.admit()).resolves.toBe(true);
    expect(cb.failure()).toBe(true);
    expect(cb.state).toBe('open');
    const next = track(cb.admit());
    await vi.advanceTimersByTimeAsync(99);
    expect(next.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(next.value).toBe(true);
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open']);
  });

  it('while the probe runs, nobody else is admitted', async () => {
    const { cb } = breaker(1, 50);
    cb.failure();
    await vi.advanceTimersByTimeAsync(50);
    await expect(cb.admit()).resolves.toBe(true);
    const other = track(cb.admit());
    await vi.advanceTimersByTimeAsync(10_000);
    expect(other.settled).toBe(false);
    expect(cb.state).toBe('half-open');
  });

  it('can open, probe and close again and again', async () => {
    const { cb, states } = breaker(1, 50);
    for (let round = 0; round < 3; round++) {
      cb.failure();
      const probe = track(cb.admit());
      await vi.advanceTimersByTimeAsync(50);
      expect(probe.value).toBe(true);
      cb.success();
    }
    expect(states).toEqual([
      'open',
      'half-open',
      'closed',
      'open',
      'half-open',
      'closed',
      'open',
      'half-open',
      'closed',
    ]);
  });

  it('after closing, counting starts from zero again', async () => {
    const { cb } = breaker(2, 50);
    cb.failure();
    cb.failure();
    await vi.advanceTimersByTimeAsync(50);
    await cb.admit();
    cb.success();
    expect(cb.failure()).toBe(false);
    expect(cb.state).toBe('closed');
  });

  it('admits after the cool-down on its own clock even when woken early', async () => {
    // Node timers may fire a millisecond before the wall clock shows the full delay; a waiter woken
    // early must not be stranded without a timer.
    const clock = { now: 0 };
    const cb = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100, now: () => clock.now });
    cb.failure();
    const waiter = track(cb.admit());
    clock.now = 99;
    await vi.advanceTimersByTimeAsync(100);
    expect(waiter.settled).toBe(false);
    clock.now = 100;
    await vi.advanceTimersByTimeAsync(100);
    expect(waiter.settled).toBe(true);
    expect(waiter.value).toBe(true);
  });

  it('dispose frees everyone waiting for good', async () => {
    const { cb } = breaker(1, 60_000);
    cb.failure();
    const waiter = track(cb.admit());
    await vi.advanceTimersByTimeAsync(10);
    cb.dispose();
    await vi.advanceTimersByTimeAsync(10);
    expect(waiter.settled).toBe(true);
    // Disposed: admit no longer blocks.
    await expect(cb.admit()).resolves.toBe(false);
  });

  it('neutral() gives the probe slot back when the probe said nothing about the dependency', async () => {
    const { cb } = breaker(1, 50);
    cb.failure();
    await vi.advanceTimersByTimeAsync(50);
    await expect(cb.admit()).resolves.toBe(true);
    const next = track(cb.admit());
    await vi.advanceTimersByTimeAsync(0);
    expect(next.settled).toBe(false);
    cb.neutral();
    await vi.advanceTimersByTimeAsync(0);
    expect(next.value).toBe(true);
    expect(cb.state).toBe('half-open');
  });
});
