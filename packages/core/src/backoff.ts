/** Retry delays: exponential growth from `initialMs` by `factor`, capped at `maxMs`, optionally jittered. */
import { z } from 'zod';

export const backoffSchema = z
  .strictObject({
    initialMs: z.number().int().nonnegative().default(200),
    maxMs: z.number().int().positive().default(60_000),
    factor: z.number().min(1).default(2),
    jitter: z.boolean().default(true),
  })
  .refine((b) => b.maxMs >= b.initialMs, { message: 'maxMs must be ≥ initialMs', path: ['maxMs'] });

export type BackoffOptions = z.input<typeof backoffSchema>;
export type Backoff = z.output<typeof backoffSchema>;

/**
 * Delay before handler invocation `attempt + 1`, after `attempt` failures (attempt ≥ 1).
 * Jitter keeps the upper half of the delay ("equal jitter"): spreads retries of a burst without ever
 * retrying much sooner than asked.
 */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random): number {
  const exp = b.initialMs * b.factor ** Math.max(0, attempt - 1);
  const capped = Math.min(b.maxMs, exp);
  if (!b.jitter) return Math.round(capped);
  return Math.round(capped / 2 + (random() * capped) / 2);
}
