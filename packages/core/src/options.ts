/** Option schemas, validated once: a bad value fails at start-up with a ConfigError naming the field. */
import { z } from 'zod';
import { backoffSchema } from './backoff.js';
import { ConfigError } from './errors.js';

const positiveInt = z.number().int().positive();

export const subscribeSchema = z.object({
  topic: z.string().min(1),
  group: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only'),
  handlers: z.record(z.string(), z.any()).refine((h) => Object.keys(h).length > 0, 'at least one handler'),
  concurrency: positiveInt.default(8),
  ordered: z.boolean().default(false),
  prefetch: positiveInt.optional(),
  retry: z
    .object({
      attempts: positiveInt.default(5),
      backoff: backoffSchema.default({ initialMs: 200, maxMs: 60_000, factor: 2, jitter: true }),
      inProcessMaxDelayMs: z.number().int().nonnegative().default(1000),
    })
    .default({
      attempts: 5,
      backoff: { initialMs: 200, maxMs: 60_000, factor: 2, jitter: true },
      inProcessMaxDelayMs: 1000,
    }),
  handlerTimeoutMs: positiveInt.default(30_000),
  deadLetter: z.boolean().default(true),
  unmatched: z.enum(['ack', 'dead-letter']).default('ack'),
  idempotency: z
    .object({
      store: z.custom<object>(
        (v) => typeof v === 'object' && v !== null && 'claim' in v,
        'an IdempotencyStore',
      ),
      leaseMs: positiveInt.optional(),
      ttlMs: positiveInt.default(86_400_000),
    })
    .optional(),
  circuitBreaker: z
    .object({
      failureThreshold: positiveInt.default(5),
      cooldownMs: positiveInt.default(10_000),
      onStateChange: z
        .custom<(state: 'closed' | 'open' | 'half-open') => void>((v) => typeof v === 'function')
        .optional(),
    })
    .optional(),
  startFrom: z.enum(['earliest', 'latest']).optional(),
  exclusive: z.boolean().optional(),
});

export const connectSchema = z.object({
  service: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ., _ and - only'),
  publishTimeoutMs: positiveInt.default(10_000),
  drainTimeoutMs: positiveInt.default(30_000),
});

/** Parses with a zod schema; turns the first issue into a ConfigError naming its path. */
export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
  throw new ConfigError(path, issue.message, { cause: result.error });
}
