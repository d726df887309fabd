/** The SQS transport's options and URL form, validated once with zod; a bad value is a ConfigError naming its path. */
import { ConfigError, redactUrl } from '@omnibus/core';
import { z } from 'zod';

// Not strict: the AWS SDK tags credential objects it has seen with extra fields (e.g. `$source`).
const credentialsSchema = z.object({
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1).optional(),
});

type FifoPredicate = (topic: string) => boolean;

export const sqsOptionsSchema = z
  .object({
    /** A custom endpoint (ElasticMQ, LocalStack); absent: AWS's endpoint for the region. */
    endpoint: z.string().url().optional(),
    /** Absent: the AWS provider chain (AWS_REGION, profile); `us-east-1` for a custom endpoint. */
    region: z.string().min(1).optional(),
    /** Absent: the AWS provider chain. */
    credentials: credentialsSchema.optional(),
    /** Topics whose queues are FIFO: a list, a predicate, or `true` for every topic. */
    fifoTopics: z
      .union([
        z.literal(true),
        z.array(z.string().min(1)),
        z.custom<FifoPredicate>((v) => typeof v === 'function', {
          message: 'expected a function (topic) => boolean',
        }),
      ])
      .optional(),
    /** Long-poll wait per ReceiveMessage call. */
    waitTimeSeconds: z.number().int().min(0).max(20).default(20),
    /** Concurrent long-poll loops per subscription. */
    pollers: z.number().int().min(1).max(32).default(2),
    /** Lease of a received message; the transport extends it while the handler runs. */
    visibilityTimeoutSeconds: z.number().int().min(5).max(43_200).default(30),
    /** Native redrive safety net, kept well above the core's attempts so it only catches crash loops. */
    maxReceiveCount: z.number().int().min(1).max(1000).default(50),
    /** How long a partial batch waits for more publishes (or acks) before it is sent. */
    batchLingerMs: z.number().min(0).max(1000).default(5),
    /** SendMessageBatch calls in flight per standard queue (FIFO queues send one at a time to keep order). */
    maxBatchesInFlight: z.number().int().min(1).max(64).default(8),
    /** create: make missing queues; verify: require them; none: assume them (no checks, no writes). */
    provision: z.enum(['create', 'verify', 'none']).default('create'),
    /** SDK attempts per request (its own retry with backoff). */
    maxAttempts: z.number().int().min(1).max(10).default(3),
    /** Whether accepted messages survive a broker restart (true for SQS; depends on configuration for emulators). */
    persistent: z.boolean().default(true),
  })
  .strict();

export type SqsOptions = z.input<typeof sqsOptionsSchema>;
export type ResolvedSqsOptions = z.output<typeof sqsOptionsSchema>;

function fieldOf(path: readonly PropertyKey[]): string {
  return path.map(String).join('.') || 'options';
}

export function parseOptions(input: unknown): ResolvedSqsOptions {
  const result = sqsOptionsSchema.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ConfigError(fieldOf(issue.path), issue.message);
  }
  return result.data;
}

export function fifoPredicate(fifoTopics: ResolvedSqsOptions['fifoTopics']): FifoPredicate {
  if (fifoTopics === true) return () => true;
  if (typeof fifoTopics === 'function') return fifoTopics;
  if (Array.isArray(fifoTopics)) {
    const set = new Set(fifoTopics);
    return (topic) => set.has(topic);
  }
  return () => false;
}

const NUMERIC_PARAMS = new Set([
  'waitTimeSeconds',
  'pollers',
  'visibilityTimeoutSeconds',
  'maxReceiveCount',
  'batchLingerMs',
  'maxBatchesInFlight',
  'maxAttempts',
]);

/**
 * URL forms:
 * - `sqs://` or `sqs://<region>`: AWS's endpoint; region from the host or the provider chain.
 * - `sqs+http://[key:secret@]host:port` and `sqs+https://…`: a custom endpoint (ElasticMQ, LocalStack);
 *   user and password, when present, become static credentials.
 * Query parameters set options: `region`, `provision`, `fifoTopics` (comma list, or `*` for all),
 * `persistent` and the numeric options by name. Options passed alongside the URL win.
 */
export function optionsFromUrl(url: string, options: Record<string, unknown> = {}): SqsOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('url', `not a URL: ${redactUrl(url)}`);
  }
  const fromUrl: Record<string, unknown> = {};
  const scheme = parsed.protocol.replace(/:$/, '');
  if (scheme === 'sqs') {
    if (parsed.hostname) fromUrl.region = decodeURIComponent(parsed.hostname);
  } else if (scheme === 'sqs+http' || scheme === 'sqs+https') {
    if (!parsed.hostname) throw new ConfigError('url', `no host in ${redactUrl(url)}`);
    const port = parsed.port ? `:${parsed.port}` : '';
    fromUrl.endpoint = `${scheme.slice(4)}://${parsed.hostname}${port}${parsed.pathname === '/' ? '' : parsed.pathname}`;
    if (parsed.username || parsed.password) {
      fromUrl.credentials = {
        accessKeyId: decodeURIComponent(parsed.username),
        secretAccessKey: decodeURIComponent(parsed.password),
      };
    }
  } else {
    throw new ConfigError('url', `scheme must be sqs:, sqs+http: or sqs+https:, got ${scheme}:`);
  }
  for (const [name, value] of parsed.searchParams) {
    if (name === 'region' || name === 'provision') fromUrl[name] = value;
    else if (name === 'fifoTopics')
      fromUrl.fifoTopics = value === '*' ? true : value.split(',').filter(Boolean);
    else if (name === 'persistent') fromUrl.persistent = value === 'true' || value === '1';
    else if (NUMERIC_PARAMS.has(name)) {
      const n = Number(value);
      if (value === '' || !Number.isFinite(n))
        throw new ConfigError(`url.${name}`, `expected a number, got "${value}"`);
      fromUrl[name] = n;
    } else throw new ConfigError(`url.${name}`, 'unknown query parameter');
  }
  return { ...fromUrl, ...options } as SqsOptions;
}
