/**
 * Helpers for users' own tests: wait (with a deadline) until messages are handled or dead-lettered,
 * and capture what a bus publishes.
 */
import type { Bus } from '../bus.js';
import type { ConsumeOutcome } from '../consumer.js';
import type { Envelope } from '../envelope.js';

export type Outcome = ConsumeOutcome;

export interface WaitOptions {
  /** Give up after this long (default 10 s) with an error saying what was still missing. */
  timeoutMs?: number;
}

/** Records every outcome a bus's consumers reach, from the moment it is created. */
export class OutcomeRecorder {
  readonly outcomes: Outcome[] = [];
  readonly #stop: () => void;
  #waiters = new Set<() => void>();

  constructor(bus: Bus) {
    this.#stop = bus.onOutcome((o) => {
      this.outcomes.push(o);
      for (const w of this.#waiters) w();
    });
  }

  handled(): Extract<Outcome, { kind: 'handled' }>[] {
    return this.outcomes.filter((o): o is Extract<Outcome, { kind: 'handled' }> => o.kind === 'handled');
  }

  deadLettered(): Extract<Outcome, { kind: 'dead-lettered' }>[] {
    return this.outcomes.filter(
      (o): o is Extract<Outcome, { kind: 'dead-lettered' }> => o.kind === 'dead-lettered',
    );
  }

  /** Resolves once `predicate` holds over the outcomes seen so far; rejects after the deadline. */
  until(
    predicate: (outcomes: readonly Outcome[]) => boolean,
    options: WaitOptions & { what?: string | (() => string) } = {},
  ): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (predicate(this.outcomes)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate(this.outcomes)) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        const what = typeof options.what === 'function' ? options.what() : (options.what ?? 'outcomes');
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${this.outcomes.length} seen)`),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
    });
  }

  /** Waits until every id given was handled or dead-lettered. */
  settled(ids: Iterable<string>, options: WaitOptions = {}): Promise<void> {
    const wanted = new Set(ids);
    return this.until(
      (outs) => {
        for (const o of outs) {
          const id = o.kind === 'dead-lettered' ? o.id : 'envelope' in o ? o.envelope.id : undefined;
          if ((o.kind === 'handled' || o.kind === 'dead-lettered') && id) wanted.delete(id);
        }
        return wanted.size === 0;
      },
      // Counted when the deadline passes: the error says what was still missing then.
      { ...options, what: () => `${wanted.size} message(s) to be handled or dead-lettered` },
    );
  }

  stop(): void {
    this.#stop();
  }
}

export function recordOutcomes(bus: Bus): OutcomeRecorder {
  return new OutcomeRecorder(bus);
}

/** Waits until the message with this id is handled by the bus's consumers. */
export async function waitForHandled(bus: Bus, id: string, options: WaitOptions = {}): Promise<Outcome> {
  return waitForOutcome(
    bus,
    (o) => o.kind === 'handled' && o.envelope.id === id,
    `message ${id} to be handled`,
    options,
  );
}

/** Waits until the message with this id is dead-lettered; resolves with the reason and error. */
export async function waitForDeadLetter(
  bus: Bus,
  id: string,
  options: WaitOptions = {},
): Promise<Extract<Outcome, { kind: 'dead-lettered' }>> {
  const o = await waitForOutcome(
    bus,
    (x) => x.kind === 'dead-lettered' && x.id === id,
    `message ${id} to be dead-lettered`,
    options,
  );
  return o as Extract<Outcome, { kind: 'dead-lettered' }>;
}

function waitForOutcome(
  bus: Bus,
  match: (o: Outcome) => boolean,
  what: string,
  options: WaitOptions,
): Promise<Outcome> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const stop = bus.onOutcome((o) => {
      if (match(o)) {
        clearTimeout(timer);
        stop();
        resolve(o);
      }
    });
  });
}

export interface CapturedMessage {
  topic: string;
  envelope: Envelope;
}

/** Captures every envelope the bus publishes (after validation, before the broker). */
export function capturePublished(bus: Bus): { messages: CapturedMessage[]; stop(): void } {
  const messages: CapturedMessage[] = [];
  const stop = bus.onPublished((envelope, topic) => messages.push({ topic, envelope }));
  return { messages, stop };
}

/** Polls `condition` until it is true or the deadline passes (for broker-side state in tests). */
export async function eventually<T>(
  condition: () => T | Promise<T>,
  options: WaitOptions & { intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await condition();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${options.what ?? 'condition'}${last ? `: last error ${(last as Error).message}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 25));
  }
}

export {
  CE_HEADER_ATTRIBUTES,
  checkDecode,
  envelopeProblems,
  FUZZ_SEED,
  prototypeChanges,
} from './decode-contract.js';
export {
  type ContractRunner,
  type StoreContractOptions,
  storeContract,
} from './store-contract.js';
