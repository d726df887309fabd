/**
 * A circuit breaker around handlers: after consecutive failures it opens and holds messages (without
 * consuming their attempts) until a cool-down passes, then lets one probe through; success closes it.
 */

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit (default 5). */
  failureThreshold?: number;
  /** How long the circuit stays open before a probe (default 10 s). */
  cooldownMs?: number;
  onStateChange?: (state: CircuitState) => void;
  now?: () => number;
}

export class CircuitBreaker {
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  #state: CircuitState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #probeInFlight = false;
  #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #disposed = false;
  readonly #onStateChange: ((s: CircuitState) => void) | undefined;
  readonly #now: () => number;

  constructor(options: CircuitBreakerOptions = {}) {
    this.failureThreshold = options.failureThreshold ?? 5;
    this.cooldownMs = options.cooldownMs ?? 10_000;
    this.#onStateChange = options.onStateChange;
    this.#now = options.now ?? Date.now;
  }

  get state(): CircuitState {
    return this.#state;
  }

  /**
   * Resolves when a handler may run: at once when closed; when open, after the cool-down, one caller at
   * a time as the probe. Returns true if the caller is the probe.
   */
  async admit(): Promise<boolean> {
    for (;;) {
      if (this.#state === 'closed' || this.#disposed) return false;
      if (this.#state === 'open') {
        const remainingMs = this.cooldownMs - (this.#now() - this.#openedAt);
        if (remainingMs <= 0) this.#set('half-open');
        // A timer may fire a little before the clock shows the full cool-down: never wait without one.
        else if (!this.#timer) this.#arm(remainingMs);
      }
      if (this.#state === 'half-open' && !this.#probeInFlight) {
        this.#probeInFlight = true;
        return true;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  success(): void {
    this.#failures = 0;
    this.#probeInFlight = false;
    if (this.#state !== 'closed') this.#set('closed');
  }

  /**
   * Records a failure. Returns true when it happened while the circuit was already open or probing:
   * such failures say the dependency is still down, not that the message is bad, so they consume no attempt.
   */
  failure(): boolean {
    if (this.#state === 'half-open') {
      this.#probeInFlight = false;
      this.#open();
      return true;
    }
    if (this.#state === 'open') return true;
    this.#failures++;
    if (this.#failures >= this.failureThreshold) this.#open();
    return false;
  }

  /**
   * Ends an admitted call that said nothing about the dependency (the message itself was rejected, or the
   * consumer is shutting down). A probe's slot passes to the next caller; the state does not change.
   */
  neutral(): void {
    if (!this.#probeInFlight) return;
    this.#probeInFlight = false;
    this.#wake();
  }

  /** Frees everyone waiting (shutdown): from now on admit() no longer blocks. */
  dispose(): void {
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wake();
  }

  #open(): void {
    this.#openedAt = this.#now();
    this.#set('open');
    this.#arm(this.cooldownMs);
  }

  #arm(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#wake();
    }, ms);
    this.#timer.unref?.();
  }

  #set(state: CircuitState): void {
    this.#state = state;
    this.#onStateChange?.(state);
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
