/**
 * Declares (or verifies) the broker objects a topic and its groups need, on a dedicated channel that may
 * die on a refused declare without harming publishing or consuming, and re-declares them after reconnects.
 *
 * Shared delay tiers. A group owns two queues, `<topic>.<group>` and `<topic>.<group>.dlq`. Delayed retries
 * of every group in the vhost wait in one queue per tier, `<delayQueuePrefix>.<tierMs>` (default
 * `omnibus.delay.<tierMs>`), and find their way home by routing key:
 * - A retry is published to the tier's fanout exchange (same name as its queue) with the routing key set to
 *   the name of the group queue it came from. The fanout ignores the key and puts the message in the tier.
 *   (The default exchange cannot be the way in: it routes by that very key, straight to the group queue.)
 * - The tier queue has a fixed `x-message-ttl`, `x-dead-letter-exchange: ''` and no dead-letter routing
 *   key, so an expired message is dead-lettered with the routing key it was published with, and the default
 *   exchange hands it to the queue of that name: only the group it came from sees it again, and no binding
 *   per group is needed (measured here: `x-death` shows the tier, the message arrives in the group queue).
 * - One queue per tier, not one queue with per-message expiry: RabbitMQ expires messages only at the head
 *   of a queue, so a long delay at the head would hold back every shorter one behind it. With one TTL per
 *   queue, arrival order is expiry order and every delay is exact. Delays longer than the largest tier hop
 *   through it again (the kit's `planDelay` / `nextHop`), as before.
 * - Per vhost, not per topic: a tier holds nothing topic-specific (the routing key already names topic and
 *   group), so tiers per topic would multiply quorum queues (each a Raft group holding file descriptors,
 *   three on RabbitMQ 3.10) by the number of topics for no isolation that the routing key does not already
 *   give. Applications that must not share tiers (or whose permissions are scoped by name) set their own
 *   `delayQueuePrefix`.
 * - What sharing costs: every retry of the vhost goes through the same few queues, so one tier queue's
 *   throughput bounds a tier's retries for the whole vhost; and per-group delayed counts are no longer
 *   readable over AMQP (stats report the tiers' total instead).
 * - A message whose group queue is deleted while it waits cannot be routed back. A quorum tier
 *   (at-least-once dead-lettering) keeps it, not ready, and retries the route until a queue of that name
 *   exists again or the tier is purged (seen here on 3.10.8); a classic tier drops it, as RabbitMQ drops any
 *   unroutable dead letter.
 * - Migration: per-group tier queues `<topic>.<group>.retry.<tierMs>` left by earlier versions are no longer
 *   declared or written to, but keep their arguments, so what they hold still expires back into its group
 *   queue on time. Delete them once they are empty (`names.legacyRetryQueue`).
 */
import { ConfigError, type Logger } from '@omnibus/core';
import type { Channel } from 'amqplib';
import { AmqpCode, amqpCode, declareConflict, errorText, missingObject } from './amqp-errors.js';
import type { ConnectionManager } from './connection.js';
import { MAX_NAME_BYTES, names } from './naming.js';
import type { ResolvedOptions } from './options.js';

/** Serialises RPCs on one long-lived channel and replaces it after the broker closes it on an error. */
export class AdminChannel {
  readonly #conn: ConnectionManager;
  #chain: Promise<unknown> = Promise.resolve();
  #current: { ch: Channel; generation: number; alive: boolean } | undefined;

  constructor(conn: ConnectionManager) {
    this.#conn = conn;
  }

  run<T>(fn: (ch: Channel) => Promise<T>, deadline?: number): Promise<T> {
    const result = this.#chain.then(() => this.#exec(fn, deadline));
    this.#chain = result.catch(() => {});
    return result;
  }

  async #exec<T>(fn: (ch: Channel) => Promise<T>, deadline: number | undefined): Promise<T> {
    const model = await this.#conn.whenOpen(deadline);
    let cur = this.#current;
    if (!cur?.alive || cur.generation !== this.#conn.generation) {
      const ch = await model.createChannel();
      const entry = { ch, generation: this.#conn.generation, alive: true };
      // A refused declare closes the channel with an error event; the caller already gets the rejection.
      ch.on('error', () => {});
      ch.on('close', () => {
        entry.alive = false;
      });
      this.#current = cur = entry;
    }
    return fn(cur.ch);
  }

  async close(): Promise<void> {
    const cur = this.#current;
    this.#current = undefined;
    if (cur?.alive) await cur.ch.close().catch(() => {});
  }
}

function checkName(name: string, field: string): void {
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
    throw new ConfigError(field, `"${name}" is longer than RabbitMQ's ${MAX_NAME_BYTES}-byte name limit`);
  }
}

export class Topology {
  readonly #opts: ResolvedOptions;
  readonly #conn: ConnectionManager;
  readonly #admin: AdminChannel;
  readonly #logger: Logger;
  /** What this process declared, so it can be declared again on a broker that lost it. */
  readonly #known = new Map<string, Map<string, Set<string>>>();
  readonly #knownStreams = new Set<string>();
  /** Declarations already done on the current connection. */
  #done = new Map<string, Promise<void>>();
  #doneGeneration = -1;
  /** Topics whose exchange declaration has completed on the current connection (see exchangeReady). */
  #readyExchanges = new Set<string>();

  constructor(opts: ResolvedOptions, conn: ConnectionManager, admin: AdminChannel, logger: Logger) {
    this.#opts = opts;
    this.#conn = conn;
    this.#admin = admin;
    this.#logger = logger;
  }

  groupQueueArgs(topic: string, group: string): Record<string, unknown> {
    const args: Record<string, unknown> = {
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': names.deadLetterQueue(topic, group),
    };
    if (this.#opts.queueType === 'quorum') {
      args['x-queue-type'] = 'quorum';
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
      args['x-delivery-limit'] = this.#opts.deliveryLimit;
    }
    if (this.#opts.singleActiveConsumer) args['x-single-active-consumer'] = true;
    return args;
  }

  /** A shared tier queue: fixed TTL, dead-lettered by the routing key each message was published with. */
  delayTierArgs(tierMs: number): Record<string, unknown> {
    const args: Record<string, unknown> = { 'x-message-ttl': tierMs, 'x-dead-letter-exchange': '' };
    if (this.#opts.queueType === 'quorum') {
      args['x-queue-type'] = 'quorum';
      // Kept until the group queue confirms it; a missing group queue leaves it held, not lost.
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
    return args;
  }

  /** The shared tier (exchange and queue) a delay of `tierMs` waits in. */
  delayTier(tierMs: number): string {
    return names.delayTier(tierMs, this.#opts.queueType, this.#opts.delayQueuePrefix);
  }

  deadLetterQueueArgs(): Record<string, unknown> {
    return this.#opts.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {};
  }

  streamArgs(): Record<string, unknown> {
    const args: Record<string, unknown> = { 'x-queue-type': 'stream' };
    const s = this.#opts.streams;
    if (s?.maxAge) args['x-max-age'] = s.maxAge;
    if (s?.maxLengthBytes) args['x-max-length-bytes'] = s.maxLengthBytes;
    return args;
  }

  /**
   * True when ensureExchange(topic) would resolve at once (its declaration already succeeded on this
   * connection): lets the publish path skip a promise and an await per call.
   */
  exchangeReady(topic: string): boolean {
    return this.#doneGeneration === this.#conn.generation && this.#readyExchanges.has(topic);
  }

  /** Makes sure the topic's exchange exists before publishing to it (a missing one would kill the channel). */
  ensureExchange(topic: string, deadline?: number): Promise<void> {
    const key = `x|${topic}`;
    const done = this.#once(key, async () => {
      checkName(topic, 'topic');
      const create = this.#opts.provision === 'create';
      await this.#admin.run(async (ch) => {
        try {
          if (create) await ch.assertExchange(names.exchange(topic), 'topic', { durable: true });
          else await ch.checkExchange(names.exchange(topic));
        } catch (err) {
          throw this.#declareError(err, 'exchange', topic);
        }
      }, deadline);
      if (create && this.#opts.streams) await this.#declareStream(topic, deadline);
    });
    if (!this.#readyExchanges.has(topic)) {
      const ready = this.#readyExchanges;
      const map = this.#done;
      // Ready only while this declaration is still the remembered one (not forgotten, same connection).
      done.then(
        () => {
          if (map === this.#done && map.get(key) === done) ready.add(topic);
        },
        () => {},
      );
    }
    return done;
  }

  /**
   * The shared delay tiers, once per connection (create: declared; verify: checked). Hand-offs call it before
   * each retry, which costs a map lookup once done, and lets a tier deleted by an operator come back.
   */
  ensureTiers(deadline?: number): Promise<void> {
    if (this.#opts.provision === 'none') return Promise.resolve();
    return this.#once('t|', async () => {
      const tiers = this.#opts.delayTiersMs.map((t) => this.delayTier(t));
      for (const name of tiers) checkName(name, 'delayQueuePrefix');
      const create = this.#opts.provision === 'create';
      await this.#admin.run(async (ch) => {
        for (const [i, name] of tiers.entries()) {
          let kind: 'queue' | 'exchange' = 'exchange';
          try {
            if (create) {
              await ch.assertExchange(name, 'fanout', { durable: true });
              kind = 'queue';
              await ch.assertQueue(name, {
                durable: true,
                arguments: this.delayTierArgs(this.#opts.delayTiersMs[i]!),
              });
              await ch.bindQueue(name, name, '');
            } else {
              await ch.checkExchange(name);
              kind = 'queue';
              await ch.checkQueue(name);
            }
          } catch (err) {
            throw this.#declareError(err, kind, name);
          }
        }
      }, deadline);
    });
  }

  /** Forget the tiers after a hand-off found one missing, so the next hand-off declares them again. */
  forgetTiers(): void {
    this.#done.delete('t|');
  }

  /** Exchange, group queue with its bindings, dead-letter queue and the shared tiers (create); existence (verify). */
  ensureGroup(topic: string, group: string, patterns: readonly string[], deadline?: number): Promise<void> {
    if (this.#opts.provision === 'none') return Promise.resolve();
    const sorted = [...new Set(patterns)].sort();
    const known = this.#known.get(topic) ?? new Map<string, Set<string>>();
    this.#known.set(topic, known);
    const set = known.get(group) ?? new Set<string>();
    for (const p of sorted) set.add(p);
    known.set(group, set);
    return this.#once(`g|${topic}|${group}|${sorted.join(',')}`, async () => {
      // The dead-letter queue's is the longest name a group adds.
      checkName(names.deadLetterQueue(topic, group), 'group');
      await this.ensureTiers(deadline);
      await this.ensureExchange(topic, deadline);
      if (this.#opts.provision === 'create') await this.#declareGroup(topic, group, sorted, deadline);
      else await this.#verifyGroup(topic, group, deadline);
    });
  }

  async ensureStream(topic: string, deadline?: number): Promise<void> {
    await this.ensureExchange(topic, deadline);
    if (this.#opts.provision === 'create') return;
    const name = names.streamQueue(topic);
    await this.#admin.run(async (ch) => {
      try {
        await ch.checkQueue(name);
      } catch (err) {
        throw this.#declareError(err, 'queue', name);
      }
    }, deadline);
  }

  /** Declares again everything this process knows about; runs after a reconnect. */
  async restore(): Promise<void> {
    if (this.#opts.provision !== 'create') return;
    for (const [topic, groups] of this.#known) {
      for (const [group, patterns] of groups) await this.ensureGroup(topic, group, [...patterns]);
    }
    for (const topic of this.#knownStreams) await this.ensureExchange(topic);
  }

  /** Forget what was declared after a queue vanished (deleted by an operator), so it is declared again. */
  forget(topic: string, group?: string): void {
    this.#readyExchanges.delete(topic);
    for (const key of [...this.#done.keys()]) {
      if (key === `x|${topic}` || (group !== undefined && key.startsWith(`g|${topic}|${group}|`))) {
        this.#done.delete(key);
      }
    }
  }

  #once(key: string, fn: () => Promise<void>): Promise<void> {
    if (this.#doneGeneration !== this.#conn.generation) {
      this.#done = new Map();
      this.#readyExchanges = new Set();
      this.#doneGeneration = this.#conn.generation;
    }
    let p = this.#done.get(key);
    if (!p) {
      p = fn();
      const done = this.#done;
      this.#done.set(key, p);
      // A failure is not remembered: the next call tries again (the operator may have fixed the broker).
      p.catch(() => {
        if (done.get(key) === p) done.delete(key);
      });
    }
    return p;
  }

  async #declareStream(topic: string, deadline?: number): Promise<void> {
    this.#knownStreams.add(topic);
    const name = names.streamQueue(topic);
    checkName(name, 'topic');
    await this.#admin.run(async (ch) => {
      try {
        await ch.assertQueue(name, { durable: true, arguments: this.streamArgs() });
      } catch (err) {
        throw this.#declareError(err, 'queue', name);
      }
      await ch.bindQueue(name, names.exchange(topic), '#');
    }, deadline);
  }

  async #declareGroup(topic: string, group: string, patterns: readonly string[], deadline?: number) {
    const queue = names.groupQueue(topic, group);
    const dlq = names.deadLetterQueue(topic, group);
    await this.#admin.run(async (ch) => {
      const declare = async (name: string, args: Record<string, unknown>) => {
        try {
          await ch.assertQueue(name, { durable: true, arguments: args });
        } catch (err) {
          throw this.#declareError(err, 'queue', name);
        }
      };
      // The dead-letter queue first: the group queue's arguments point at it.
      await declare(dlq, this.deadLetterQueueArgs());
      await declare(queue, this.groupQueueArgs(topic, group));
      for (const pattern of patterns) await ch.bindQueue(queue, names.exchange(topic), pattern);
    }, deadline);
    this.#logger.debug({ transport: 'rabbitmq', topic, group, patterns }, 'group topology declared');
  }

  async #verifyGroup(topic: string, group: string, deadline?: number) {
    const queues = [names.groupQueue(topic, group), names.deadLetterQueue(topic, group)];
    await this.#admin.run(async (ch) => {
      for (const name of queues) {
        try {
          await ch.checkQueue(name);
        } catch (err) {
          throw this.#declareError(err, 'queue', name);
        }
      }
    }, deadline);
  }

  #declareError(err: unknown, kind: 'queue' | 'exchange', name: string): Error {
    const code = amqpCode(err);
    if (code === AmqpCode.PRECONDITION_FAILED) return declareConflict(err, kind, name);
    if (code === AmqpCode.NOT_FOUND) return missingObject(err, kind, name);
    if (code === AmqpCode.ACCESS_REFUSED) {
      return new ConfigError('url', `access to ${kind} "${name}" refused: ${errorText(err)}`, { cause: err });
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}
