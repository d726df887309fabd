/**
 * Owns the one AMQP connection: the first connect (fails fast), reconnection with capped, jittered backoff
 * after any loss, and hooks so topology, the confirm channel and consumers are restored on every new one.
 */
import { ConnectionError, type Logger, redactText } from '@omnibus/core';
import { withConnectDeadline } from '@omnibus/core/kit';
import { type ChannelModel, connect } from 'amqplib';
import { errorText } from './amqp-errors.js';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectionManagerOptions {
  url: string;
  socketOptions: Record<string, unknown>;
  connectTimeoutMs: number;
  reconnect: { initialMs: number; maxMs: number };
  logger: Logger;
}

interface Waiter {
  resolve(model: ChannelModel): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/** Why waiting for a connection ended without one: the caller maps it to its own error. */
export class NoConnectionError extends ConnectionError {
  constructor(
    readonly reason: 'closed' | 'timeout' | 'not-connected',
    message: string,
  ) {
    super(message, { retryable: reason === 'timeout', details: { reason } });
  }
}

export class ConnectionManager {
  readonly #opts: ConnectionManagerOptions;
  readonly #safeUrl: string;
  #state: ConnectionState = 'idle';
  #model: ChannelModel | undefined;
  #generation = 0;
  #reconnects = 0;
  #blocked: string | undefined;
  #lastError: string | undefined;
  #serverVersion: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #waiters = new Set<Waiter>();
  readonly #openHooks: ((model: ChannelModel, generation: number) => Promise<void> | void)[] = [];
  readonly #lostHooks: ((generation: number) => void)[] = [];

  constructor(opts: ConnectionManagerOptions) {
    this.#opts = opts;
    this.#safeUrl = redactText(opts.url);
  }

  get state(): ConnectionState {
    return this.#state;
  }
  /** Increases with every new connection; channels remember theirs to tell live from stale. */
  get generation(): number {
    return this.#generation;
  }
  get current(): ChannelModel | undefined {
    return this.#state === 'open' ? this.#model : undefined;
  }

  /** Runs after every (re)connect, in registration order, before the next hook. */
  onOpen(hook: (model: ChannelModel, generation: number) => Promise<void> | void): void {
    this.#openHooks.push(hook);
  }
  /** Runs synchronously when a connection is lost. */
  onLost(hook: (generation: number) => void): void {
    this.#lostHooks.push(hook);
  }

  details(): Record<string, unknown> {
    return {
      state: this.#state,
      url: this.#safeUrl,
      serverVersion: this.#serverVersion,
      reconnects: this.#reconnects,
      blocked: this.#blocked,
      lastError: this.#lastError,
    };
  }

  async start(): Promise<void> {
    if (this.#state === 'closed') throw new NoConnectionError('closed', 'the transport is closed');
    if (this.#state !== 'idle') return;
    this.#state = 'connecting';
    let model: ChannelModel;
    try {
      model = await this.#open();
    } catch (err) {
      this.#state = 'idle';
      if (err instanceof ConnectionError) throw err;
      throw new ConnectionError(`cannot connect to RabbitMQ at ${this.#safeUrl}: ${errorText(err)}`, {
        cause: err,
      });
    }
    if ((this.#state as ConnectionState) === 'closed') {
      await model.close().catch(() => {});
      throw new NoConnectionError('closed', 'the transport was closed while connecting');
    }
    await this.#install(model);
  }

  /** The open connection, waiting (until `deadline`, ms since epoch) while it is being re-established. */
  whenOpen(deadline?: number): Promise<ChannelModel> {
    if (this.#state === 'open' && this.#model) return Promise.resolve(this.#model);
    if (this.#state === 'closed')
      return Promise.reject(new NoConnectionError('closed', 'the transport is closed'));
    if (this.#state === 'idle') {
      return Promise.reject(new NoConnectionError('not-connected', 'the transport is not connected yet'));
    }
    return new Promise<ChannelModel>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined };
      // An infinite deadline (an internal send that waits as long as it takes) arms no timer.
      if (deadline !== undefined && Number.isFinite(deadline)) {
        waiter.timer = setTimeout(
          () => {
            this.#waiters.delete(waiter);
            reject(
              new NoConnectionError(
                'timeout',
                `RabbitMQ at ${this.#safeUrl} is unreachable (${this.#lastError ?? 'reconnecting'})`,
              ),
            );
          },
          Math.max(0, deadline - Date.now()),
        );
      }
      this.#waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#timer);
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new NoConnectionError('closed', 'the transport is closed'));
    }
    this.#waiters.clear();
    const model = this.#model;
    this.#model = undefined;
    if (model) await model.close().catch(() => {});
  }

  /**
   * One connection attempt, bounded by the kit's connect deadline. amqplib's own socket timeout (same
   * length) destroys a socket that stays silent, so a failed attempt leaves no socket or timer behind; a
   * connection that still opens after the deadline is closed at once.
   */
  #open(): Promise<ChannelModel> {
    const { url, socketOptions, connectTimeoutMs } = this.#opts;
    let late = false;
    const connecting = connect(url, { ...socketOptions, timeout: connectTimeoutMs });
    connecting.then(
      (model) => {
        if (!late) return;
        model.on('error', () => {});
        model.close().catch(() => {});
      },
      () => {},
    );
    return withConnectDeadline(connecting, connectTimeoutMs, `RabbitMQ at ${this.#safeUrl}`, () => {
      late = true;
    });
  }

  async #install(model: ChannelModel): Promise<void> {
    this.#model = model;
    this.#generation++;
    const generation = this.#generation;
    this.#state = 'open';
    this.#blocked = undefined;
    this.#serverVersion = model.connection.serverProperties?.version;
    // Without these listeners a channel-level error or a dropped socket would crash the process.
    model.on('error', (err: Error) => {
      this.#lastError = errorText(err);
      this.#opts.logger.warn({ transport: 'rabbitmq', err: this.#lastError }, 'RabbitMQ connection error');
    });
    model.on('close', (err?: Error) => this.#onClose(model, generation, err));
    model.on('blocked', (reason: string) => {
      this.#blocked = reason;
      this.#opts.logger.warn(
        { transport: 'rabbitmq', reason },
        'RabbitMQ blocked publishing (resource alarm)',
      );
    });
    model.on('unblocked', () => {
      this.#blocked = undefined;
      this.#opts.logger.info({ transport: 'rabbitmq' }, 'RabbitMQ unblocked publishing');
    });
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.resolve(model);
    }
    this.#waiters.clear();
    for (const hook of this.#openHooks) {
      if (this.#generation !== generation || this.#state !== 'open') return;
      try {
        await hook(model, generation);
      } catch (err) {
        this.#opts.logger.error(
          { transport: 'rabbitmq', err: errorText(err) },
          'restoring state after (re)connect failed',
        );
      }
    }
  }

  #onClose(model: ChannelModel, generation: number, err: Error | undefined): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    if (this.#state === 'closed') return;
    this.#state = 'reconnecting';
    if (err) this.#lastError = errorText(err);
    this.#opts.logger.warn(
      { transport: 'rabbitmq', err: this.#lastError },
      'RabbitMQ connection lost; reconnecting',
    );
    for (const hook of this.#lostHooks) {
      try {
        hook(generation);
      } catch (hookErr) {
        this.#opts.logger.error(
          { transport: 'rabbitmq', err: errorText(hookErr) },
          'connection-lost hook failed',
        );
      }
    }
    this.#scheduleReconnect(0);
  }

  #scheduleReconnect(attempt: number): void {
    const { initialMs, maxMs } = this.#opts.reconnect;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
    // Jitter spreads the reconnect storm of many clients after a broker restart.
    const delay = Math.min(maxMs, base * (0.75 + Math.random() * 0.5));
    this.#timer = setTimeout(() => {
      void this.#reconnect(attempt);
    }, delay);
  }

  async #reconnect(attempt: number): Promise<void> {
    if (this.#state === 'closed') return;
    let model: ChannelModel;
    try {
      model = await this.#open();
    } catch (err) {
      this.#lastError = errorText(err);
      this.#opts.logger.debug(
        { transport: 'rabbitmq', attempt: attempt + 1, err: this.#lastError },
        'reconnect attempt failed',
      );
      if ((this.#state as ConnectionState) !== 'closed') this.#scheduleReconnect(attempt + 1);
      return;
    }
    if ((this.#state as ConnectionState) === 'closed') {
      model.on('error', () => {});
      await model.close().catch(() => {});
      return;
    }
    this.#reconnects++;
    this.#opts.logger.info({ transport: 'rabbitmq', reconnects: this.#reconnects }, 'RabbitMQ reconnected');
    await this.#install(model);
  }
}
