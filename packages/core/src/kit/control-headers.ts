/** Reading and writing the control headers (attempts, due time) the same way on every transport. */
import { ControlHeader } from '../envelope.js';

/**
 * Attempts are counted in a header any producer could forge, so the value is clamped: a missing,
 * negative, fractional or non-numeric value reads as 0, and anything above this cap reads as the cap
 * (the policy then dead-letters it as max-attempts instead of looping on a nonsense number).
 */
export const MAX_ATTEMPTS_HEADER = 1_000_000;

/** Handler invocations already made before this delivery, from the attempts header (missing → 0). */
export function readAttempts(headers: Readonly<Record<string, string | undefined>>): number {
  const raw = headers[ControlHeader.attempts];
  if (raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(Math.floor(n), MAX_ATTEMPTS_HEADER);
}

/** Whether the delivery carries an attempts header at all (SQS falls back to its receive count). */
export function hasAttempts(headers: Readonly<Record<string, string | undefined>>): boolean {
  return headers[ControlHeader.attempts] !== undefined;
}

/** When a delayed retry is due (ms since epoch), or undefined when absent or not a time. */
export function readDueAt(headers: Readonly<Record<string, string | undefined>>): number | undefined {
  const raw = headers[ControlHeader.dueAt];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * The headers a retried message is re-sent with: the original headers, the consumer's control headers
 * on top, and the due time set (a chained delay) or removed (a delay one tier covers).
 */
export function retryHeaders(
  original: Readonly<Record<string, string>>,
  control: Readonly<Record<string, string>>,
  dueAt: number | undefined,
): Record<string, string> {
  const headers: Record<string, string> = { ...original, ...control };
  if (dueAt === undefined) delete headers[ControlHeader.dueAt];
  else headers[ControlHeader.dueAt] = String(dueAt);
  return headers;
}

/**
 * The headers a dead-lettered message is written with: the original headers and the failure metadata,
 * without the due time (it means nothing in a dead-letter destination).
 */
export function deadLetterHeaders(
  original: Readonly<Record<string, string>>,
  control: Readonly<Record<string, string>>,
): Record<string, string> {
  const headers: Record<string, string> = { ...original, ...control };
  delete headers[ControlHeader.dueAt];
  return headers;
}
