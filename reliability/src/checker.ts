/**
 * The checker: from the records the client processes wrote and the ids read back from the dead-letter
 * destination, the figures of one scenario. A pure function, so that what "lost" means is in one place.
 */

export interface Fault {
  kind: string;
  /** When the fault was injected and when it ended (the process respawned, the broker answered again,
   * the process resumed, the partition healed), ms since epoch. */
  startAt: number;
  endAt: number;
  /** Producer kill: recovery counts the replacement producer's first message only (seq from this on). */
  recoverySeqFrom?: number;
  /** False where "recovery" means nothing (overload: nothing stopped). */
  measureRecovery?: boolean;
}

export interface Published {
  id: string;
  key: string;
  seq: number;
  at: number;
}

export interface Handled extends Published {
  pid: number;
}

export interface CheckInput {
  published: Published[];
  /** Every H line of every consumer process, in file order per process (processes in start order). */
  handled: Handled[];
  deadLettered: string[];
  faults: Fault[];
  orderPromised: boolean;
  /** With an idempotency store every handler run is an effect: a second run of one id is a duplicate effect. */
  storeUsed: boolean;
}

export interface CheckResult {
  /** Publishes that resolved (the promise is about these). */
  published: number;
  handledUnique: number;
  deadLettered: number;
  /** Resolved, never handled, never dead-lettered. Must be 0. */
  lost: number;
  lostSample: string[];
  /** Handler runs beyond the first, per id, summed. */
  duplicates: number;
  /** With the store: the same. Without it: null (effects are not deduplicated, so not claimed). */
  duplicateEffects: number | null;
  /** A key's message handled (first time) after a later message of that key. */
  orderViolations: number;
  orderPromised: boolean;
  /** Per fault: from its end to the first message handled after it (null: none handled after it). */
  recoveryMs: (number | null)[];
  /** Handled or dead-lettered ids nobody published with a resolved publish (publish outcome unknown). */
  handledUnresolved: number;
}

export function check(input: CheckInput): CheckResult {
  const resolved = new Map<string, Published>();
  for (const p of input.published) resolved.set(p.id, p);
  const dead = new Set(input.deadLettered);

  const runs = new Map<string, number>();
  for (const h of input.handled) runs.set(h.id, (runs.get(h.id) ?? 0) + 1);
  let duplicates = 0;
  for (const n of runs.values()) duplicates += n - 1;

  const lostIds: string[] = [];
  for (const id of resolved.keys()) if (!runs.has(id) && !dead.has(id)) lostIds.push(id);

  let handledUnresolved = 0;
  for (const id of new Set([...runs.keys(), ...dead])) if (!resolved.has(id)) handledUnresolved++;

  // Order: first-time handles in time order (stable: file order breaks ties within a millisecond).
  const firsts: Handled[] = [];
  const seen = new Set<string>();
  for (const h of input.handled) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    firsts.push(h);
  }
  firsts.sort((a, b) => a.at - b.at);
  const maxSeq = new Map<string, number>();
  let orderViolations = 0;
  for (const h of firsts) {
    const max = maxSeq.get(h.key);
    if (max !== undefined && h.seq < max) orderViolations++;
    else maxSeq.set(h.key, h.seq);
  }

  const recoveryMs = input.faults
    .filter((f) => f.measureRecovery !== false)
    .map((f) => {
      let first: number | undefined;
      for (const h of input.handled) {
        if (h.at < f.endAt) continue;
        if (f.recoverySeqFrom !== undefined && h.seq < f.recoverySeqFrom) continue;
        if (first === undefined || h.at < first) first = h.at;
      }
      return first === undefined ? null : first - f.endAt;
    });

  return {
    published: resolved.size,
    handledUnique: runs.size,
    deadLettered: dead.size,
    lost: lostIds.length,
    lostSample: lostIds.slice(0, 20),
    duplicates,
    duplicateEffects: input.storeUsed ? duplicates : null,
    orderViolations,
    orderPromised: input.orderPromised,
    recoveryMs,
    handledUnresolved,
  };
}
