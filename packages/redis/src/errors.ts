/** The store's own error: a fenced-off holder tried to complete a claim that is no longer its own. */
import { type ErrorCode, OmnibusError } from '@omnibus/core';

/**
 * Not one of the core's codes (yet): stores are the only source of it. Its value is a stable string
 * like the core's, so code that switches on `err.code` can match it.
 */
export const LEASE_LOST = 'LEASE_LOST';

/**
 * `complete` found the key leased or completed by another holder: this holder's lease expired and
 * someone else claimed the message. Retryable: the consumer's retry claims again and sees 'held' or
 * 'done', so the message is acknowledged once the new holder finishes, never completed twice.
 */
export class LeaseLostError extends OmnibusError {
  readonly key: string;
  readonly heldBy: 'another holder' | 'another completion';
  constructor(key: string, found: 'h' | 'd') {
    const heldBy = found === 'h' ? 'another holder' : 'another completion';
    super(
      LEASE_LOST as ErrorCode,
      `idempotency claim on ${key} was lost: its lease expired and it now belongs to ${heldBy}`,
      { retryable: true, details: { key } },
    );
    this.key = key;
    this.heldBy = heldBy;
  }
}
