/** The SQS transport's options and URL form, validated once with zod; a bad value is a ConfigError naming its path. */
import { ConfigError, redactUrl } from '@omnibus/core';
import { DEFAULT_CONNECT_TIMEOUT_MS, parseOptions } from '@omnibus/core/kit';
import { z } from 'zod';

// Deliberately not strict: the AWS SDK writes tracking fields (e.g. `$source`) into credential objects
// it has used, so the same object handed to a second transport would otherwise be refused.
const credentialsSchema = z.object({
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1).optional(),
});

type FifoPredicate = (topic: string) => boolean;

/** Every option and its one default; the README's options table follows this schema. */
export const sqsOptionsSchema = z.strictObject({
  /**
   * 'none': point-to-point, one queue per topic serving one group. 'sns': the topic is an SNS topic and each
   * group gets its own SQS queue subscribed to it (raw delivery), so several groups each receive every message.
   */
  fanOut: z.enum(['none', 'sns']).default('none'),
  /**
   * A custom endpoint (ElasticMQ, fauxqs, LocalStack); absent: the SDK's `AWS_ENDPOINT_URL_SQS` /
   * `AWS_ENDPOINT_URL` (SNS: `AWS_ENDPOINT_URL_SNS`), else AWS's endpoint for the region.
   */
  endpoint: z.string().url().optional(),
  /** Absent: the AWS provider chain (AWS_REGION, profile); `us-east-1` for a custom endpoint. */
  region: z.string().min(1).optional(),
  /** Absent: the AWS SDK's default credential provider chain (environment, profile, IMDS, …). */
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
  /**
   * 0 (default): adaptive — a publish (or ack) goes at once when no batch call is in flight, and what
   * arrives meanwhile is batched. > 0: a partial batch waits this long for more before it is sent.
   */
  batchLingerMs: z.number().min(0).max(1000).default(0),
  /** SendMessageBatch calls in flight per standard queue (FIFO queues send one at a time to keep order). */
  maxBatchesInFlight: z.number().int().min(1).max(64).default(8),
  /** create: make missing queues; verify: require them; none: assume them (no checks, no writes). */
  provision: z.enum(['create', 'verify', 'none']).default('create'),
  /** SDK attempts per request (its own retry with backoff); a publish still ends at its caller's deadline. */
  maxAttempts: z.number().int().min(1).max(10).default(3),
  /** Whether accepted messages survive a broker restart (true for SQS; depends on configuration for emulators). */
  persistent: z.boolean().default(true),
  /** connect() gives up after this long, whatever the SDK's own retries and timeouts would do. */
  connectTimeoutMs: z.number().int().positive().default(DEFAULT_CONNECT_TIMEOUT_MS),
  /**
   * A publish whose type no group receives. Only 'accept' is possible here: the topic is a queue, which
   * keeps every message for a consumer that comes later (checked in the transport's constructor).
   */
  onNoSubscribers: z.enum(['accept', 'reject']).default('accept'),
});

export type SqsOptions = z.input<typeof sqsOptionsSchema>;
export type ResolvedSqsOptions = z.output<typeof sqsOptionsSchema>;

/** Parses the options; also refuses what the schema allows in general but SQS cannot do. */
export function resolveOptions(input: unknown): ResolvedSqsOptions {
  const options = parseOptions(sqsOptionsSchema, input ?? {});
  if (options.onNoSubscribers === 'reject') {
    throw new ConfigError(
      'onNoSubscribers',
      "SQS cannot reject a publish nobody subscribes to: the topic is a queue, and a queue keeps every message for a consumer that subscribes later (only 'accept' is possible)",
    );
  }
  return options;
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
  'connectTimeoutMs',
]);
const TEXT_PARAMS = new Set(['region', 'provision', 'onNoSubscribers', 'fanOut']);

/**
 * URL forms:
 * - `sqs://` or `sqs://<region>`: AWS's endpoint; region from the host or the provider chain.
 * - `sqs+http://[key:secret@]host:port` and `sqs+https://…`: a custom endpoint (ElasticMQ, LocalStack);
 *   user and password, when present, become static credentials.
 * - `sns://[region]`, `sns+http://host:port`, `sns+https://…`: the same, in SNS fan-out mode (`fanOut: 'sns'`).
 * Query parameters set options: `region`, `provision`, `onNoSubscribers`, `fifoTopics` (comma list, or
 * `*` for all), `persistent` and the numeric options by name. Options passed alongside the URL win.
 */
export function optionsFromUrl(url: string, options: Record<string, unknown> = {}): SqsOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('url', `not a URL: ${redactUrl(url)}`);
  }
  const fromUrl: Record<string, unknown> = {};
  let scheme = parsed.protocol.replace(/:$/, '');
  if (scheme === 'sns' || scheme.startsWith('sns+')) {
    fromUrl.fanOut = 'sns';
    scheme = `sqs${scheme.slice(3)}`;
  }
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
    throw new ConfigError(
      'url',
      `scheme must be sqs:, sqs+http:, sqs+https:, sns:, sns+http: or sns+https:, got ${parsed.protocol}`,
    );
  }
  for (const [name, value] of parsed.searchParams) {
    if (TEXT_PARAMS.has(name)) fromUrl[name] = value;
    else if (name === 'fifoTopics')
      fromUrl.fifoTopics = value === '*' ? true : value.split(',').filter(Boolean);
    else if (name === 'persistent') {
      if (value !== 'true' && value !== 'false' && value !== '1' && value !== '0')
        throw new ConfigError('url.persistent', `expected true or false, got "${value}"`);
      fromUrl.persistent = value === 'true' || value === '1';
    } else if (NUMERIC_PARAMS.has(name)) {
      const n = Number(value);
      if (value === '' || !Number.isFinite(n))
        throw new ConfigError(`url.${name}`, `expected a number, got "${value}"`);
      fromUrl[name] = n;
    } else throw new ConfigError(`url.${name}`, 'unknown query parameter');
  }
  return { ...fromUrl, ...options } as SqsOptions;
}
