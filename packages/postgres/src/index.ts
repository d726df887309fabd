/** @omnibus/postgres: a shared idempotency store, a transactional outbox with its relay, and an inbox, on PostgreSQL. */
export type { ConnectionOptions, Queryable } from './db.js';
export { type InboxHandler, type InboxOptions, inbox } from './inbox.js';
export { Outbox, type OutboxOptions, outbox, type StoredMeta } from './outbox.js';
export { Relay, type RelayOptions, type RelayStats, startRelay } from './relay.js';
export {
  DEFAULT_IDEMPOTENCY_TABLE,
  DEFAULT_OUTBOX_TABLE,
  ensureSchema,
  OUTBOX_BUCKETS,
  type SchemaNames,
  schemaSql,
} from './schema.js';
export { PostgresIdempotencyStore, type PostgresStoreOptions, postgresStore } from './store.js';
