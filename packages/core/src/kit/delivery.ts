/**
 * The settle state machine every transport's delivery shares, so that "exactly one settle action" means
 * the same thing on every broker:
 *
 *   open ──ack | retryLater | deadLetter | release──→ settling ──ok──→ settled
 *                                                         └──rejects──→ failed ──release──→ settling …
 *
 * - The first settle call moves `open` to `settling` and runs the transport's action.
 * - Any further call while `settling` or `settled` rejects with `ALREADY_SETTLED` and touches nothing.
 * - When the action rejects, the delivery is `failed`: the message was not settled, so the one thing
 *   still allowed is `release()` (give it back to the broker); anything else rejects as above.
 * - `onSettled` runs once, when the delivery stops being the transport's business: when it is settled,
 *   or when the fallback `release()` after a failure settles or fails. Transports free their in-flight
 *   slot there. (The consumer always follows a failed settle with `release()`.)
 */

import type { WireMessage } from '../envelope.js';
import { ErrorCode, errorMessage, OmnibusError } from '../errors.js';
import type { LogFields, Logger } from '../logger.js';
import type { Delivery } from '../transport.js';
import { readAttempts } from './control-headers.js';

export type SettleState = 'open' | 'settling' | 'settled' | 'failed';

export interface BaseDeliveryInit {
  wire: WireMessage;
  topic: string;
  group: string;
  redelivered: boolean;
  /** Defaults to the attempts header (missing → 0). */
  previousAttempts?: number | undefined;
  receivedAt?: number | undefined;
}

export abstract class BaseDelivery implements Delivery {
  readonly wire: WireMessage;
  readonly topic: string;
  readonly group: string;
  readonly previousAttempts: number;
  readonly redelivered: boolean;
  readonly receivedAt: number;
  #state: SettleState = 'open';
  #freed = false;

  constructor(init: BaseDeliveryInit) {
    this.wire = init.wire;
    this.topic = init.topic;
    this.group = init.group;
    this.redelivered = init.redelivered;
    this.previousAttempts = init.previousAttempts ?? readAttempts(init.wire.headers);
    this.receivedAt = init.receivedAt ?? Date.now();
  }

  get state(): SettleState {
    return this.#state;
  }

  ack(): Promise<void> {
    return this.#settle('ack', () => this.doAck());
  }

  retryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void> {
    return this.#settle('retryLater', () => this.doRetryLater(delayMs, controlHeaders));
  }

  deadLetter(controlHeaders: Record<string, string>): Promise<void> {
    return this.#settle('deadLetter', () => this.doDeadLetter(controlHeaders));
  }

  release(): Promise<void> {
    return this.#settle('release', () => this.doRelease());
  }

  /** Remove the message from the broker. */
  protected abstract doAck(): Promise<void>;
  /** Hand the message to delayed redelivery (confirmed), then remove the original. */
  protected abstract doRetryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void>;
  /** Write the message to the dead-letter destination (confirmed), then remove the original. */
  protected abstract doDeadLetter(controlHeaders: Record<string, string>): Promise<void>;
  /** Give the message back unprocessed; no attempt is consumed. */
  protected abstract doRelease(): Promise<void>;
  /** Called once per delivery when the transport is done with it (free an in-flight slot here). */
  protected onSettled(): void {}

  #settle(action: string, run: () => Promise<void>): Promise<void> {
    const state = this.#state;
    if (state !== 'open' && !(state === 'failed' && action === 'release')) {
      return Promise.reject(
        new OmnibusError(
          ErrorCode.ALREADY_SETTLED,
          `${action}() on a delivery that is already ${state === 'failed' ? 'failed (only release() may follow)' : state}`,
          { details: { state, action } },
        ),
      );
    }
    this.#state = 'settling';
    let pending: Promise<void>;
    try {
      pending = run();
    } catch (err) {
      pending = Promise.reject(err);
    }
    return pending.then(
      () => {
        this.#state = 'settled';
        this.#free();
      },
      (err: unknown) => {
        this.#state = 'failed';
        // A failed release has no further fallback: the broker redelivers on its own (lease, reconnect).
        if (action === 'release') this.#free();
        throw err;
      },
    );
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.onSettled();
  }
}

/**
 * Hands a delivery to the core's callback. The callback is not supposed to throw; if it does, the
 * message must not be lost or left holding a slot, so it is released (once, by the state machine).
 */
export function handOver(
  onDelivery: (delivery: Delivery) => void,
  delivery: BaseDelivery,
  logger: Logger,
  fields: LogFields = {},
): void {
  try {
    onDelivery(delivery);
  } catch (err) {
    logger.error({ ...fields, err: errorMessage(err) }, 'delivery callback threw; releasing the message');
    if (delivery.state === 'open' || delivery.state === 'failed') delivery.release().catch(() => {});
  }
}
