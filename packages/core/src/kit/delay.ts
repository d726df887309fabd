/**
 * Delay planning for transports whose broker delays only by fixed tiers (TTL queues, retry topics,
 * a visibility-timeout ceiling): a delay is rounded up to a tier, and a delay longer than the largest
 * tier is chained through several hops by its due time, never silently shortened.
 */
import { z } from 'zod';

/** The tiers every tiered transport uses unless configured: 1 s, 5 s, 30 s, 2 min, 10 min, 1 h. */
export const DEFAULT_DELAY_TIERS_MS: readonly number[] = Object.freeze([
  1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000,
]);

/**
 * The one validation for configured tiers: at least one, each a positive whole number of ms, no
 * duplicates. Order does not matter; the result is sorted ascending.
 */
export const delayTiersSchema = z
  .array(z.number().int().positive())
  .min(1, 'at least one delay tier')
  .refine((tiers) => new Set(tiers).size === tiers.length, 'delay tiers must not repeat')
  .transform((tiers) => Object.freeze([...tiers].sort((a, b) => a - b)) as readonly number[]);

/** The smallest tier at least `delayMs` long, or the largest tier when none is (the rest is chained). */
export function tierFor(delayMs: number, tiersMs: readonly number[]): number {
  for (const tier of tiersMs) if (tier >= delayMs) return tier;
  return tiersMs[tiersMs.length - 1]!;
}

/** Where a message waits next, and until when the whole delay lasts. */
export interface DelayPlan {
  /** The tier the message goes to now. */
  tierMs: number;
  /**
   * When the whole delay ends (ms since epoch), set only when one tier does not cover it: the message
   * must carry it so the next hop knows how long is left.
   */
  dueAt: number | undefined;
}

/** Plans a retry after `delayMs`, starting at `now`. */
export function planDelay(delayMs: number, tiersMs: readonly number[], now: number = Date.now()): DelayPlan {
  const delay = Math.max(0, delayMs);
  const largest = tiersMs[tiersMs.length - 1]!;
  if (delay <= largest) return { tierMs: tierFor(delay, tiersMs), dueAt: undefined };
  return { tierMs: largest, dueAt: now + delay };
}

/**
 * For a message coming back out of a tier: deliver it (`undefined`), or the plan for its next hop when
 * its due time is still ahead. A message without a due time was covered by one tier: it is due.
 */
export function nextHop(
  dueAt: number | undefined,
  tiersMs: readonly number[],
  now: number = Date.now(),
): DelayPlan | undefined {
  if (dueAt === undefined || dueAt <= now) return undefined;
  const remaining = dueAt - now;
  const largest = tiersMs[tiersMs.length - 1]!;
  if (remaining <= largest) return { tierMs: tierFor(remaining, tiersMs), dueAt };
  return { tierMs: largest, dueAt };
}
