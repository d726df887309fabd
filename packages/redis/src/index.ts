/** @omnibus/redis: an idempotency store on Redis, shared by every replica of a service. */
export type { RedisStoreOptions } from './options.js';
export type { RedisClient } from './scripts.js';
export { RedisIdempotencyStore, redisStore } from './store.js';
