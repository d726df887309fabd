/** Counters a bus keeps, per process; cheap enough for every message. */

export interface Counters {
  published: number;
  publishFailed: number;
  consumed: number;
  handled: number;
  retried: number;
  deadLettered: number;
  duplicates: number;
  failures: number;
  filtered: number;
  /** Sum of handler time in ms, for an average with `handled`. */
  processingMs: number;
}

export function newCounters(): Counters {
  return {
    published: 0,
    publishFailed: 0,
    consumed: 0,
    handled: 0,
    retried: 0,
    deadLettered: 0,
    duplicates: 0,
    failures: 0,
    filtered: 0,
    processingMs: 0,
  };
}
