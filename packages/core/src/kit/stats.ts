/** The one stats shape, started empty: every figure unknown (null) until the transport fills it in. */
import type { TransportStats } from '../transport.js';

export function emptyStats(extras: Record<string, number> = {}): TransportStats {
  return {
    depth: null,
    inFlight: null,
    delayed: null,
    deadLettered: null,
    lag: null,
    oldestAgeMs: null,
    extras,
  };
}
