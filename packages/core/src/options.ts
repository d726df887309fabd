/**
 * Option schemas, validated once and strictly: a bad value or an unknown key fails at start-up with a
 * ConfigError naming the field (and, for a near miss, the key that was probably meant). Every default is
 * stated here, once; the bus and the docs read it from these schemas.
 */
import { z } from 'zod';
import { backoffSchema } from './backoff.js';
import type { PayloadStore } from './claim-check.js';
import type { Codec } from './codec.js';
import { ConfigError } from './errors.js';
import type { IdempotencyStore } from './idempotency.js';
import type { Logger } from './logger.js';
import type { Middleware } from './middleware.js';
import type { TelemetryOptions } from './telemetry/telemetry.js';
import type { Transport } from './transport.js';

const positiveInt = z.number().int().positive();

/**
 * An object option whose inner defaults also apply when the whole object is left out (`retry` omitted
 * still means 5 attempts): the defaults stay stated once, on the fields, not repeated for the object.
 */
function defaultedObject<S extends z.ZodType>(schema: S) {
  return z.preprocess((v) => (v === undefined ? {} : v), schema);
}

/** Shared by subscribe and replay, so the default is written once. */
const handlerTimeoutMs = positiveInt.default(30_000);

const handlersSchema = z
  .record(z.string(), z.any())
  .refine((h) => Object.keys(h).length > 0, 'at least one handler');

function isFunction(v: unknown): boolean {
  return typeof v === 'function';
}

/** How long completed message ids are remembered when neither subscribe nor the store says. */
const DEFAULT_IDEMPOTENCY_TTL_MS = 86_400_000;
/** How much longer than the handler timeout an idempotency claim is leased by default. */
const LEASE_MARGIN_MS = 5000;

export const subscribeSchema = z
  .strictObject({
    topic: z.string().min(1),
    group: z
      .string()
      .min(1)
      .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only'),
    handlers: handlersSchema,
    concurrency: positiveInt.default(8),
    ordered: z.boolean().default(false),
    /** Default: 2 × concurrency (filled in below). */
    prefetch: positiveInt.optional(),
    retry: defaultedObject(
      z.strictObject({
        attempts: positiveInt.default(5),
        backoff: defaultedObject(backoffSchema),
        inProcessMaxDelayMs: z.number().int().nonnegative().default(1000),
      }),
    ),
    handlerTimeoutMs,
    deadLetter: z.boolean().default(true),
    unmatched: z.enum(['ack', 'dead-letter']).default('ack'),
    idempotency: z
      .strictObject({
        store: z.custom<IdempotencyStore>(
          (v) => typeof v === 'object' && v !== null && 'claim' in v,
          'an IdempotencyStore',
        ),
        /** Default: handlerTimeoutMs + 5 s (filled in below). */
        leaseMs: positiveInt.optional(),
        /** Default: the store's own `ttlMs` if it has one, else 24 h (filled in below). */
        ttlMs: positiveInt.optional(),
      })
      .optional(),
    circuitBreaker: z
      .strictObject({
        failureThreshold: positiveInt.default(5),
        cooldownMs: positiveInt.default(10_000),
        onStateChange: z
          .custom<(state: 'closed' | 'open' | 'half-open') => void>(isFunction, 'a function')
          .optional(),
        now: z.custom<() => number>(isFunction, 'a function').optional(),
      })
      .optional(),
    startFrom: z.enum(['earliest', 'latest']).optional(),
    exclusive: z.boolean().default(false),
  })
  .transform((o) => {
    const idem = o.idempotency;
    const storeTtlMs = (idem?.store as { ttlMs?: unknown } | undefined)?.ttlMs;
    return {
      ...o,
      prefetch: o.prefetch ?? o.concurrency * 2,
      idempotency: idem && {
        store: idem.store,
        leaseMs: idem.leaseMs ?? o.handlerTimeoutMs + LEASE_MARGIN_MS,
        // A store may carry its own retention (memoryStore({ ttlMs })); subscribe's ttlMs wins when given.
        ttlMs: idem.ttlMs ?? (typeof storeTtlMs === 'number' ? storeTtlMs : DEFAULT_IDEMPOTENCY_TTL_MS),
      },
    };
  });

const replayFromSchema = z.union([
  z.enum(['earliest', 'latest']),
  z.strictObject({ offset: z.union([z.string().min(1), z.number().int().nonnegative()]) }),
  z.strictObject({ timestamp: z.number().nonnegative() }),
]);

export const replaySchema = z.strictObject({
  topic: z.string().min(1),
  from: replayFromSchema,
  handlers: handlersSchema,
  /** A replay reads in order by default: one handler at a time. */
  concurrency: positiveInt.default(1),
  handlerTimeoutMs,
});

const serviceSchema = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ., _ and - only');

/** What the Bus itself takes (connect's options without the transport). */
export const busOptionsSchema = z.strictObject({
  service: serviceSchema,
  logger: z
    .custom<Logger>(
      (v) => typeof v === 'object' && v !== null && typeof (v as { warn?: unknown }).warn === 'function',
      'a logger (debug, info, warn, error)',
    )
    .optional(),
  codecs: z.array(z.custom<Codec>((v) => typeof v === 'object' && v !== null)).optional(),
  middleware: z.array(z.custom<Middleware>((v) => typeof v === 'object' && v !== null)).optional(),
  publishTimeoutMs: positiveInt.default(10_000),
  drainTimeoutMs: positiveInt.default(30_000),
  telemetry: z
    .custom<TelemetryOptions>(
      (v) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as { api?: { trace?: unknown } }).api?.trace === 'object' &&
        typeof (v as { api?: { metrics?: unknown } }).api?.metrics === 'object',
      "{ api } with the @opentelemetry/api module (import * as api from '@opentelemetry/api')",
    )
    .optional(),
});

export const connectSchema = z.strictObject({
  transport: z.union([
    z.string().min(1),
    z.custom<Transport>((v) => typeof v === 'object' && v !== null, 'a transport instance or a URL'),
  ]),
  ...busOptionsSchema.shape,
  transportOptions: z.record(z.string(), z.unknown()).optional(),
  claimCheck: z
    .strictObject({
      store: z.custom<PayloadStore>(
        (v) => typeof v === 'object' && v !== null && typeof (v as PayloadStore).put === 'function',
        'a PayloadStore (put, get, delete)',
      ),
      thresholdBytes: positiveInt.optional(),
      keyPrefix: z.string().optional(),
      deleteAfterAck: z.boolean().optional(),
    })
    .optional(),
});

/** Per-call options of publish and publishBatch (not part of the envelope). */
const publishCallShape = {
  /** Abandons the publish when aborted, as the deadline would. */
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'an AbortSignal').optional(),
  /** This call's deadline instead of the bus's publishTimeoutMs. */
  timeoutMs: positiveInt.optional(),
};

/** The envelope fields a caller may set on one message. */
const messageOptionsShape = {
  key: z.string().optional(),
  id: z.string().min(1).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  correlationId: z.string().optional(),
  causationId: z.string().optional(),
  time: z.number().finite().optional(),
  contentType: z.string().min(1).optional(),
};

export const publishOptionsSchema = z.strictObject({ ...messageOptionsShape, ...publishCallShape });
export const publishCallSchema = z.strictObject(publishCallShape);
/** A publishBatch item's own options: envelope fields only; the signal and deadline belong to the batch. */
export const batchItemOptionsSchema = z.strictObject(messageOptionsShape);

const PUBLISH_KEYS: ReadonlySet<string> = new Set(Object.keys(publishOptionsSchema.shape));
const BATCH_ITEM_KEYS: ReadonlySet<string> = new Set(Object.keys(batchItemOptionsSchema.shape));

/**
 * Checks publish options without allocating, for the per-message path: answers true only when the options
 * certainly satisfy `publishOptionsSchema`; anything else goes to the schema itself for the exact error.
 */
function looksLikeValidPublishOptions(o: object, keys: ReadonlySet<string>): boolean {
  for (const k in o) {
    if (!keys.has(k)) return false;
    const v = (o as Record<string, unknown>)[k];
    if (v === undefined) continue;
    switch (k) {
      case 'time':
        if (typeof v !== 'number' || !Number.isFinite(v)) return false;
        break;
      case 'timeoutMs':
        if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return false;
        break;
      case 'signal':
        if (!(v instanceof AbortSignal)) return false;
        break;
      case 'headers':
        if (typeof v !== 'object' || v === null) return false;
        for (const h in v) if (typeof (v as Record<string, unknown>)[h] !== 'string') return false;
        break;
      case 'id':
      case 'contentType':
        if (typeof v !== 'string' || v === '') return false;
        break;
      default:
        if (typeof v !== 'string') return false;
    }
  }
  return true;
}

/** Validates one publish's options (ConfigError naming `options.<key>`); cheap when they are fine. */
export function checkPublishOptions(options: unknown, prefix = 'options'): void {
  if (options === undefined) return;
  if (typeof options === 'object' && options !== null && looksLikeValidPublishOptions(options, PUBLISH_KEYS))
    return;
  parseOptions(publishOptionsSchema, options, prefix);
}

/** The same for one publishBatch item's options, which hold only envelope fields. */
export function checkBatchItemOptions(options: unknown, index: number): void {
  if (options === undefined) return;
  if (
    typeof options === 'object' &&
    options !== null &&
    looksLikeValidPublishOptions(options, BATCH_ITEM_KEYS)
  )
    return;
  parseOptions(batchItemOptionsSchema, options, `items.${index}.options`);
}

/**
 * Parses with a zod schema; turns an issue into a ConfigError naming its path. An unknown key is reported
 * first, with its full path and the closest known key suggested when it is a near miss.
 */
export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // An unknown key first: a misspelt required key also shows up as "missing", and the misspelling is the news.
  const issues = result.error.issues;
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  const at = [prefix, ...issue.path.map(String)].filter(Boolean);
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    const known = knownKeys(schema, issue.path);
    const field = [...at, keys[0]!].join('.');
    const near = known ? closest(keys[0]!, known) : undefined;
    const others = keys.length > 1 ? ` (also unknown: ${keys.slice(1).join(', ')})` : '';
    const hint = near ? `; did you mean \`${[...at, near].join('.')}\`?` : '';
    throw new ConfigError(field, `unknown option${others}${hint}`, { cause: result.error });
  }
  throw new ConfigError(at.join('.'), issue.message, { cause: result.error });
}

type AnySchema = { _zod?: { def: ZodDef }; _def?: ZodDef };
interface ZodDef {
  type?: string;
  typeName?: string;
  shape?: Record<string, AnySchema> | (() => Record<string, AnySchema>);
  innerType?: AnySchema;
  in?: AnySchema;
  out?: AnySchema;
  schema?: AnySchema;
  valueType?: AnySchema;
  element?: AnySchema;
  options?: AnySchema[];
}

function defOf(s: AnySchema): ZodDef | undefined {
  return s._zod?.def ?? s._def;
}

/** The object schemas a value at this schema may be checked against, wrappers (default, pipe…) removed. */
function objectShapes(s: AnySchema | undefined, depth = 0): Record<string, AnySchema>[] {
  const def = s && defOf(s);
  if (!def || depth > 20) return [];
  const kind = def.type ?? def.typeName;
  if (kind === 'object' || kind === 'ZodObject') {
    const shape = typeof def.shape === 'function' ? def.shape() : def.shape;
    return shape ? [shape] : [];
  }
  if (kind === 'pipe') {
    // A preprocess is a transform piped into the schema that checks: the shape is on the checking side.
    return [...objectShapes(def.out, depth + 1), ...objectShapes(def.in, depth + 1)];
  }
  if (kind === 'union' || kind === 'ZodUnion')
    return (def.options ?? []).flatMap((o) => objectShapes(o, depth + 1));
  const inner = def.innerType ?? def.schema;
  return inner ? objectShapes(inner, depth + 1) : [];
}

/** The keys the schema knows at `path` (where an unrecognized_keys issue points), if it can tell. */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let candidates: AnySchema[] = [schema as unknown as AnySchema];
  for (const segment of path) {
    const next: AnySchema[] = [];
    for (const c of candidates) {
      for (const shape of objectShapes(c)) {
        const child = shape[String(segment)];
        if (child) next.push(child);
      }
      // Records and arrays: every key or index leads to the same value schema.
      const def = unwrapped(c);
      const value = def?.valueType ?? def?.element;
      if (value) next.push(value);
    }
    candidates = next;
  }
  const keys = candidates.flatMap((c) => objectShapes(c).flatMap((s) => Object.keys(s)));
  return keys.length > 0 ? [...new Set(keys)] : undefined;
}

function unwrapped(s: AnySchema): ZodDef | undefined {
  let def = defOf(s);
  for (let i = 0; def && i < 20; i++) {
    const inner = def.innerType ?? def.schema ?? (def.type === 'pipe' ? def.out : undefined);
    if (!inner) return def;
    def = defOf(inner);
  }
  return def;
}

/**
 * The known key closest to a misspelt one, if it is a near miss: at most one edit for short keys, two
 * for longer ones (a swap of two neighbours counts as one edit; case is ignored).
 */
export function closest(key: string, known: readonly string[]): string | undefined {
  const allowed = key.length <= 4 ? 1 : key.length <= 8 ? 2 : 3;
  let best: string | undefined;
  let bestDistance = allowed + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}
