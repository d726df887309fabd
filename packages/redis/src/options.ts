/** The Redis store's options: validated once at construction, defaults stated in one place. */
import { ConfigError, parseOptions } from '@omnibus/core';
import { z } from 'zod';
import type { RedisClient } from './scripts.js';

const positiveInt = z.number().int().positive();

const optionsSchema = z
  .object({
    /** `redis://[user:password@]host:port[/db]` or `rediss://…`; the store owns this connection. */
    url: z.string().min(1).optional(),
    /** An ioredis client (or Cluster) the application already has; the store never closes it. */
    client: z
      .custom<RedisClient>(
        (v) =>
          typeof v === 'object' && v !== null && typeof (v as { evalsha?: unknown }).evalsha === 'function',
        'an ioredis client (Redis or Cluster)',
      )
      .optional(),
    /** Prepended to every claim key, e.g. to share one Redis between services. */
    keyPrefix: z.string().max(256).default('omnibus:idem:'),
    /** How long a completed key is remembered when `complete` is called without a ttl (default 24 h). */
    ttlMs: positiveInt.default(86_400_000),
    /** Upper bound on claims whose token this store remembers (its in-flight claims); oldest forgotten first. */
    maxTrackedClaims: positiveInt.default(100_000),
    /** Owned connection only: how long one call may take before it fails (default 5 s). */
    commandTimeoutMs: positiveInt.default(5_000),
    /** Owned connection only: how long connecting may take (default 10 s). */
    connectTimeoutMs: positiveInt.default(10_000),
  })
  .strict();

export type RedisStoreOptions = z.input<typeof optionsSchema>;
export type ResolvedOptions = z.output<typeof optionsSchema>;

export function resolveOptions(options: unknown): ResolvedOptions {
  const resolved = parseOptions(optionsSchema, options ?? {});
  if (resolved.url === undefined && resolved.client === undefined) {
    throw new ConfigError('url', 'give either url or client');
  }
  if (resolved.url !== undefined && resolved.client !== undefined) {
    throw new ConfigError('client', 'give either url or client, not both');
  }
  if (resolved.url !== undefined && !/^rediss?:\/\//i.test(resolved.url)) {
    throw new ConfigError('url', 'expected a redis:// or rediss:// URL');
  }
  return resolved;
}
