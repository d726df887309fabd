/**
 * Owns the one AMQP connection: the first connect (fails fast), reconnection with capped, jittered backoff
 * after any loss, and hooks so topology, the confirm channel and consumers are restored on every new one.
 * With several hosts (the nodes of a cluster) the first connect tries them in order within one deadline,
 * and a reconnect starts with the host after the one that was lost, moving on at each failed attempt.
 */
import { ConnectionError, type Logger, redactText } from '@omnibus/core';
import { tlsFailure, warnIfInsecure, withConnectDeadline } from '@omnibus/core/kit';
import { type ChannelModel, connect } from 'amqplib';
import { errorText } from './amqp-errors.js';
import { coalesceWrites } from './coalesce.js';

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectionManagerOptions {
  /** One URL per host, tried in this order. */
  urls: readonly string[];
  socketOptions: Record<string, unknown>;
  /** TLS verification is off (`tls.rejectUnauthorized: false`): every new connection logs a warning. */
  insecureTls?: boolean;
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
  readonly #safeUrls: readonly string[];
  /** The host of the open connection, or the one to try next. */
  #host = 0;
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
    if (opts.urls.length === 0) throw new Error('ConnectionManager needs at least one URL');
    this.#safeUrls = opts.urls.map((u) => redactText(u));
  }

  /** Where to report: the current host, and the others of the cluster when there are several. */
  get #safeUrl(): string {
    const current = this.#safeUrls[this.#host]!;
    return this.#safeUrls.length === 1 ? current : `${current} (hosts: ${this.#safeUrls.join(', ')})`;
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
      url: this.#safeUrls[this.#host],
      ...(this.#safeUrls.length > 1 ? { urls: this.#safeUrls } : {}),
      serverVersion: this.#serverVersion,
      ...(this.#safeUrls[this.#host]!.toLowerCase().startsWith('amqps:')
        ? { tls: this.#opts.insecureTls ? 'unverified' : 'verified' }
        : {}),
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
      model = await this.#openFirst();
    } catch (err) {
      this.#state = 'idle';
      if (err instanceof ConnectionError) throw err;
      // A certificate the client does not trust stays untrusted: fail now, and say which option fixes it.
      const tls = tlsFailure(err);
      if (tls) {
        throw new ConnectionError(`cannot connect to RabbitMQ at ${this.#safeUrl}: ${tls.explanation}`, {
          cause: err,
          retryable: false,
          details: { tls: tls.kind, code: tls.code },
        });
      }
      // Refused credentials stay refused: retrying the same connect cannot help.
      const refused = /ACCESS.REFUSED/.test(errorText(err));
      throw new ConnectionError(`cannot connect to RabbitMQ at ${this.#safeUrl}: ${errorText(err)}`, {
        cause: err,
        ...(refused ? { retryable: false, details: { auth: 'failed' } } : {}),
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
  #open(host = this.#host, timeoutMs = this.#opts.connectTimeoutMs): Promise<ChannelModel> {
    const { socketOptions } = this.#opts;
    const url = this.#opts.urls[host]!;
    let late = false;
    const connecting = connect(url, { ...socketOptions, timeout: timeoutMs });
    connecting.then(
      (model) => {
        if (!late) return;
        model.on('error', () => {});
        model.close().catch(() => {});
      },
      () => {},
    );
    return withConnectDeadline(connecting, timeoutMs, `RabbitMQ at ${this.#safeUrls[host]}`, () => {
      late = true;
    });
  }

  /**
   * The first connect: each host in order, all within one connectTimeoutMs. A refused port fails at once
   * and the next host is tried; a silent one gets its share of the time left, so one dead host cannot use
   * up the whole deadline.
   */
  async #openFirst(): Promise<ChannelModel> {
    const n = this.#opts.urls.length;
    if (n === 1) return this.#open(0);
    const deadline = Date.now() + this.#opts.connectTimeoutMs;
    const errors: string[] = [];
    for (let i = 0; i < n; i++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        const model = await this.#open(i, Math.max(1, Math.floor(left / (n - i))));
        this.#host = i;
        return model;
      } catch (err) {
        errors.push(`${this.#safeUrls[i]}: ${errorText(err)}`);
      }
    }
    throw new ConnectionError(
      `cannot connect to RabbitMQ at any of ${n} hosts within ${this.#opts.connectTimeoutMs} ms (${errors.join('; ')})`,
      { retryable: true },
    );
  }

  async #install(model: ChannelModel): Promise<void> {
    this.#model = model;
    this.#generation++;
    const generation = this.#generation;
    this.#state = 'open';
    this.#blocked = undefined;
    this.#serverVersion = model.connection.serverProperties?.version;
    if (!coalesceWrites(model)) {
      this.#opts.logger.debug(
        { transport: 'rabbitmq' },
        'amqplib internals differ: socket writes not coalesced',
      );
    }
    if (this.#opts.insecureTls) {
      warnIfInsecure(
        this.#opts.logger,
        { rejectUnauthorized: false },
        { transport: 'rabbitmq', url: this.#safeUrls[this.#host], generation },
      );
    }
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
    // The host just lost is likely down: start with the next one.
    this.#host = (this.#host + 1) % this.#opts.urls.length;
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
    const host = this.#host;
    try {
      model = await this.#open(host);
    } catch (err) {
      this.#lastError = `${this.#safeUrls[host]}: ${errorText(err)}`;
      this.#opts.logger.debug(
        { transport: 'rabbitmq', attempt: attempt + 1, err: this.#lastError },
        'reconnect attempt failed',
      );
      this.#host = (host + 1) % this.#opts.urls.length;
      if ((this.#state as ConnectionState) !== 'closed') this.#scheduleReconnect(attempt + 1);
      return;
    }
    if ((this.#state as ConnectionState) === 'closed') {
      model.on('error', () => {});
      await model.close().catch(() => {});
      return;
    }
    this.#reconnects++;
    this.#opts.logger.info(
      { transport: 'rabbitmq', reconnects: this.#reconnects, url: this.#safeUrls[host] },
      'RabbitMQ reconnected',
    );
    await this.#install(model);
  }
}
