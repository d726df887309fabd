/**
 * Delay planning on SQS: the kit's single-tier plan (the tier is a ceiling: DelaySeconds' 15 min, or the
 * visibility timeout's 12 h) turned into whole-second SQS waits, chained by due time beyond the ceiling.
 */
import { nextHop, planDelay } from '@omnibus/core/kit';
import { describe, expect, it } from 'vitest';
import { MAX_DELAY_SECONDS, MAX_VISIBILITY_SECONDS, toHop } from '../src/subscription.js';

const COPY_TIER = [MAX_DELAY_SECONDS * 1000];
const NOW = 1_800_000_000_000;
const MIN = 60_000;

describe('SQS delay hops', () => {
  it('waits a delay within the ceiling exactly, rounded up to whole seconds, with no due time', () => {
    expect(toHop(planDelay(1500, COPY_TIER, NOW), 1500, NOW)).toEqual({ seconds: 2, dueAt: undefined });
    expect(toHop(planDelay(90_000, COPY_TIER, NOW), 90_000, NOW)).toEqual({ seconds: 90, dueAt: undefined });
    expect(toHop(planDelay(15 * MIN, COPY_TIER, NOW), 15 * MIN, NOW)).toEqual({
      seconds: 900,
      dueAt: undefined,
    });
    expect(toHop(planDelay(0, COPY_TIER, NOW), 0, NOW)).toEqual({ seconds: 0, dueAt: undefined });
  });

  it('chains a longer delay in ceiling-long hops by its due time; the last hop is the exact rest', () => {
    const delay = 40 * MIN;
    const dueAt = NOW + delay;
    expect(toHop(planDelay(delay, COPY_TIER, NOW), delay, NOW)).toEqual({ seconds: 900, dueAt });
    // Back after the first hop: 25 minutes left, still more than one hop.
    const second = nextHop(dueAt, COPY_TIER, NOW + 15 * MIN);
    expect(second && toHop(second, 0, NOW + 15 * MIN)).toEqual({ seconds: 900, dueAt });
    // 10 minutes left: one hop covers it, and the copy carries no due time any more.
    const last = nextHop(dueAt, COPY_TIER, NOW + 30 * MIN);
    expect(last && toHop(last, 0, NOW + 30 * MIN)).toEqual({ seconds: 600, dueAt: undefined });
    expect(nextHop(dueAt, COPY_TIER, NOW + 40 * MIN)).toBeUndefined();
  });

  it('never delivers early: a hop is never shorter than what is left when that fits one hop', () => {
    const dueAt = NOW + 61_500;
    const hop = nextHop(dueAt, COPY_TIER, NOW);
    expect(hop && toHop(hop, 0, NOW).seconds * 1000).toBeGreaterThanOrEqual(dueAt - NOW);
  });

  it('FIFO: the visibility ceiling left for the receive is the tier, so a 30 h delay takes three hops', () => {
    const ceiling = [(MAX_VISIBILITY_SECONDS - 60) * 1000];
    const delay = 30 * 3_600_000;
    const dueAt = NOW + delay;
    const first = toHop(planDelay(delay, ceiling, NOW), delay, NOW);
    expect(first).toEqual({ seconds: MAX_VISIBILITY_SECONDS - 60, dueAt });
    let now = NOW + first.seconds * 1000;
    const second = toHop(nextHop(dueAt, ceiling, now)!, 0, now);
    expect(second.dueAt).toBe(dueAt);
    now += second.seconds * 1000;
    const third = toHop(nextHop(dueAt, ceiling, now)!, 0, now);
    expect(third.dueAt).toBeUndefined();
    expect(now + third.seconds * 1000).toBeGreaterThanOrEqual(dueAt);
  });
});
