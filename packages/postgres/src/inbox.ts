/**
 * The inbox: a handler whose effects are database writes runs inside a transaction that also marks the
 * message's idempotency claim done, so the writes and "this message was handled" commit together or not
 * at all. With the claim's fencing token checked in that transaction, a replica that lost its lease
 * cannot commit its writes beside the replica that took over.
 */
import { ConfigError, LeaseLostError, type MessageContext } from '@omnibus/core';
import type * as pg from 'pg';
import { dbError } from './db.js';
import type { PostgresIdempotencyStore } from './store.js';

/** A handler that writes through the transaction it is given. */
export type InboxHandler<T> = (data: T, ctx: MessageContext<T>, tx: pg.PoolClient) => unknown;

export interface InboxOptions {
  /** How long the completed claim is remembered (default: the store's ttlMs). */
  ttlMs?: number;
}

/**
 * Wraps a handler so it runs in a transaction on the store's pool, committed together with the
 * completion of the message's claim. The subscription must use this same store for idempotency:
 * `subscribe({ idempotency: { store }, handlers: { [T.type]: T.handle(inbox(store, fn)) } })`.
 */
export function inbox<T>(
  store: PostgresIdempotencyStore,
  handler: InboxHandler<T>,
  options: InboxOptions = {},
): (data: T, ctx: MessageContext<T>) => Promise<void> {
  return async (data, ctx) => {
    const key = `${ctx.group}:${ctx.envelope.id}`;
    if (!store.holds(key)) {
      throw new ConfigError(
        'idempotency.store',
        `inbox handler for ${ctx.topic}/${ctx.group}: the subscription must use the same PostgreSQL store for idempotency`,
      );
    }
    let client: pg.PoolClient;
    try {
      client = await store.pool.connect();
    } catch (err) {
      throw dbError('inbox (connect)', err);
    }
    // A connection cut while the handler works between statements is reported on the client; the
    // next statement then fails and the transaction is abandoned.
    const onError = () => {};
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const state = await store.ownState(client, key);
      // An earlier run of this very claim committed, and only its answer was lost (the commit's reply,
      // or the completion after it): the effects are in; running again would double them.
      if (state === 'done') {
        await client.query('COMMIT');
        store.committedIn(key);
        return;
      }
      if (state === undefined) throw new LeaseLostError(key);
      await handler(data, ctx, client);
      await store.completeIn(client, key, options.ttlMs);
      await client.query('COMMIT');
      store.committedIn(key);
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => {
        broken = e instanceof Error ? e : new Error(String(e));
      });
      throw err;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  };
}
