import { describe, expect, it } from 'vitest';
import { type Backoff, backoffDelay, backoffSchema } from './backoff.js';

const exact = (o: Partial<Backoff> = {}): Backoff => ({
  initialMs: 100,
  maxMs: 10_000,
  factor: 2,
  jitter: false,
  ...o,
});

describe('backoffDelay', () => {
  it('grows exponentially from initialMs by factor, one step per failed attempt', () => {
    const b = exact();
    expect([1, 2, 3, 4, 5].map((a) => backoffDelay(b, a))).toEqual([100, 200, 400, 800, 1600]);
  });

  it('uses the configured factor', () => {
    const b = exact({ factor: 3 });
    expect([1, 2, 3].map((a) => backoffDelay(b, a))).toEqual([100, 300, 900]);
  });

  it('stays constant with factor 1', () => {
    const b = exact({ factor: 1 });
    expect([1, 2, 10].map((a) => backoffDelay(b, a))).toEqual([100, 100, 100]);
  });

  it('is capped at maxMs', () => {
    const b = exact({ maxMs: 500 });
    expect([3, 4, 30].map((a) => backoffDelay(b, a))).toEqual([400, 500, 500]);
  });

  it('treats attempt 0 (or less) like the first attempt', () => {
    expect(backoffDelay(exact(), 0)).toBe(100);
    expect(backoffDelay(exact(), -3)).toBe(100);
  });

  it('rounds fractional delays', () => {
    expect(backoffDelay(exact({ initialMs: 10, factor: 1.5 }), 2)).toBe(15);
    expect(backoffDelay(exact({ initialMs: 10, factor: 1.5 }), 3)).toBe(23); // 22.5
  });

  it('equal jitter keeps the delay within the upper half [d/2, d]', () => {
    const b = exact({ jitter: true });
    expect(backoffDelay(b, 3, () => 0)).toBe(200);
    expect(backoffDelay(b, 3, () => 0.5)).toBe(300);
    expect(backoffDelay(b, 3, () => 0.999999)).toBe(400);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(b, 3);
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(400);
    }
  });

  it('jitters the capped delay, never beyond maxMs', () => {
    const b = exact({ jitter: true, maxMs: 300 });
    expect(backoffDelay(b, 10, () => 0)).toBe(150);
    expect(backoffDelay(b, 10, () => 0.999999)).toBe(300);
  });

  it('does not call random without jitter', () => {
    let calls = 0;
    backoffDelay(exact(), 2, () => {
      calls++;
      return 0.5;
    });
    expect(calls).toBe(0);
  });
});

describe('backoffSchema', () => {
  it('fills defaults', () => {
    expect(backoffSchema.parse({})).toEqual({ initialMs: 200, maxMs: 60_000, factor: 2, jitter: true });
  });

  it('rejects maxMs below initialMs, naming maxMs', () => {
    const r = backoffSchema.safeParse({ initialMs: 500, maxMs: 100 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['maxMs']);
    expect(r.error?.issues[0]?.message).toBe('maxMs must be ≥ initialMs');
  });

  it('rejects a factor below 1 and negative delays', () => {
    expect(backoffSchema.safeParse({ factor: 0.5 }).success).toBe(false);
    expect(backoffSchema.safeParse({ initialMs: -1 }).success).toBe(false);
    expect(backoffSchema.safeParse({ maxMs: 0 }).success).toBe(false);
  });
});
