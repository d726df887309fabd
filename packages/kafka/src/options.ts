/** Options of the Kafka transport: one strict zod schema validated at construction, and the `kafka://` URL form. */
import { ConfigError, redactUrl } from '@omnibus/core';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DELAY_TIERS_MS,
  delayTiersSchema,
  parseOptions,
  tlsSchema,
} from '@omnibus/core/kit';
import { z } from 'zod';

const hostPort = z.string().regex(/^[^\s:/,]+:\d{1,5}$/, 'expected "host:port"');
const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

// Kafka's broker default message.max.bytes; read from the broker at connect when it allows it.
export const DEFAULT_BROKER_MESSAGE_MAX_BYTES = 1_048_588;

const retrySchema = z.strictObject({
  retries: nonNegativeInt.default(8),
  initialRetryTimeMs: positiveInt.default(300),
  maxRetryTimeMs: positiveInt.default(30_000),
});

export const kafkaOptionsSchema = z
  .strictObject({
    /** Bootstrap brokers, `host:port`. Defaults to the KAFKA_BROKERS environment variable. */
    brokers: z.array(hostPort).min(1).optional(),
    /** Client id sent to the broker; defaults to `omnibus-<service>`. */
    clientId: z.string().min(1).optional(),
    /**
     * TLS to the brokers: `true` (Node's built-in CAs) or `{ ca, cert, key, passphrase, servername,
     * rejectUnauthorized }`. Broker certificates are verified unless rejectUnauthorized is false, which logs
     * a warning at every connect.
     */
    ssl: z.union([z.boolean(), tlsSchema]).optional(),
    /** SASL authentication; use it with `ssl` (PLAIN and SCRAM over plaintext expose the exchange). */
    sasl: z
      .strictObject({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string().min(1),
        password: z.string().min(1),
      })
      .optional(),
    /** `connect()` fails with a ConnectionError when the cluster has not answered within this time. */
    connectTimeoutMs: positiveInt.default(DEFAULT_CONNECT_TIMEOUT_MS),
    /** One TCP (and TLS) connection attempt to one broker. */
    connectionTimeoutMs: positiveInt.default(3_000),
    requestTimeoutMs: positiveInt.default(30_000),
    /** Client-level retry of requests once connected (admin, consumers). */
    retry: retrySchema.default(retrySchema.parse({})),

    /** Partitions of topics this transport creates. */
    partitions: positiveInt.default(3),
    replicationFactor: positiveInt.default(1),
    /** Partitions of each retry-tier topic; defaults to `partitions`. */
    retryPartitions: positiveInt.optional(),
    /** Partitions of each dead-letter topic; defaults to `partitions`. */
    deadLetterPartitions: positiveInt.optional(),
    /** Topic-level configs for topics this transport creates, e.g. `{ 'retention.ms': '604800000' }`. */
    topicConfig: z.record(z.string(), z.string()).default({}),
    /** Create a topic on first publish when it does not exist (the broker's auto-creation stays off). */
    autoCreateTopics: z.boolean().default(true),
    /**
     * A publish whose type no group receives. Only 'accept' is possible on Kafka: a topic keeps its records
     * for groups that join later, so "nobody receives this" is not knowable at publish time.
     */
    onNoSubscribers: z.enum(['accept', 'reject']).default('accept'),

    /** Idempotent producer (no duplicates from the client's own retries); requires acks 'all'. */
    idempotent: z.boolean().default(true),
    acks: z.enum(['all', 'leader', 'none']).default('all'),
    compression: z.enum(['none', 'gzip']).default('none'),
    /**
     * 0 (default): adaptive — a publish goes at once when no request is in flight, and what arrives
     * meanwhile goes together when it returns. > 0: publishes wait up to this long for company.
     */
    lingerMs: nonNegativeInt.default(0),
    /** A request is sent as soon as this many bytes are gathered (a bigger single message goes alone). */
    batchMaxBytes: positiveInt.default(512 * 1024),
    /** Records per produce request at most; a request is sent as soon as this many are gathered. */
    batchMaxMessages: positiveInt.default(1_000),
    /** Requests in flight at once per transport; more publishes wait and are gathered meanwhile. */
    maxInFlightSends: positiveInt.default(1),
    /** Largest wire message accepted; defaults to the broker's message.max.bytes minus record overhead. */
    maxMessageBytes: positiveInt.optional(),

    /** Fixed delays (ms) of the retry-tier topics; a delay goes to the smallest tier covering it, longer ones are chained. */
    delayTiersMs: delayTiersSchema.default(DEFAULT_DELAY_TIERS_MS),
    /** How often settled offsets are committed. */
    commitIntervalMs: positiveInt.default(1_000),
    sessionTimeoutMs: positiveInt.default(30_000),
    heartbeatIntervalMs: positiveInt.default(3_000),
    rebalanceTimeoutMs: positiveInt.default(60_000),
    /** Longest a fetch waits for data; also bounds how soon a resumed or sought partition is fetched. */
    maxWaitTimeMs: positiveInt.default(1_000),
    /** Fetch wait of the retry-tier consumer: how late after its due time a retry may start. */
    retryMaxWaitTimeMs: positiveInt.default(250),
    maxBytesPerPartition: positiveInt.default(1_048_576),
    partitionsConsumedConcurrently: positiveInt.default(3),
    /** Delay before re-creating a consumer the client gave up on (e.g. after a long broker outage). */
    consumerRestartDelayMs: positiveInt.default(2_000),
  })
  .superRefine((o, ctx) => {
    if (o.idempotent && o.acks !== 'all') {
      ctx.addIssue({
        code: 'custom',
        path: ['acks'],
        message: "the idempotent producer requires acks 'all'",
      });
    }
    if (o.heartbeatIntervalMs >= o.sessionTimeoutMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['heartbeatIntervalMs'],
        message: 'must be lower than sessionTimeoutMs',
      });
    }
    if (o.onNoSubscribers === 'reject') {
      ctx.addIssue({
        code: 'custom',
        path: ['onNoSubscribers'],
        message:
          "'reject' is not possible on Kafka: a topic keeps its records for consumer groups that join later, " +
          "so the broker cannot tell that nobody will read a message; use 'accept' (and provision groups first)",
      });
    }
  });

export type KafkaTransportOptions = z.input<typeof kafkaOptionsSchema>;
export type ResolvedKafkaOptions = z.output<typeof kafkaOptionsSchema> & { brokers: string[] };

/** Validates options once; a bad or unknown one throws ConfigError naming it. */
export function resolveOptions(input: unknown): ResolvedKafkaOptions {
  // TLS options first and on their own: inside the `true | {…}` union a mistake would be reported as "ssl".
  const ssl = (input as { ssl?: unknown } | undefined)?.ssl;
  if (typeof ssl === 'object' && ssl !== null) parseOptions(tlsSchema, ssl, 'ssl');
  const options = parseOptions(kafkaOptionsSchema, input ?? {});
  let brokers = options.brokers;
  if (!brokers) {
    const env = process.env.KAFKA_BROKERS;
    if (!env) throw new ConfigError('brokers', 'required (or set KAFKA_BROKERS)');
    brokers = env
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean);
    const bad = brokers.find((b) => !hostPort.safeParse(b).success);
    if (bad !== undefined || brokers.length === 0) {
      throw new ConfigError(
        'brokers',
        `KAFKA_BROKERS must be comma-separated host:port, got ${JSON.stringify(bad ?? env)}`,
      );
    }
  }
  return { ...options, brokers };
}

// How each URL query parameter is read; the schema then validates the value like any other option.
const URL_NUMBERS = new Set([
  'connectTimeoutMs',
  'connectionTimeoutMs',
  'requestTimeoutMs',
  'partitions',
  'replicationFactor',
  'retryPartitions',
  'deadLetterPartitions',
  'lingerMs',
  'batchMaxBytes',
  'batchMaxMessages',
  'maxInFlightSends',
  'maxMessageBytes',
  'commitIntervalMs',
  'sessionTimeoutMs',
  'heartbeatIntervalMs',
  'rebalanceTimeoutMs',
  'maxWaitTimeMs',
  'retryMaxWaitTimeMs',
  'maxBytesPerPartition',
  'partitionsConsumedConcurrently',
  'consumerRestartDelayMs',
]);
const URL_RETRY_NUMBERS = new Set(['retries', 'initialRetryTimeMs', 'maxRetryTimeMs']);
const URL_BOOLEANS = new Set(['ssl', 'idempotent', 'autoCreateTopics']);
const URL_STRINGS = new Set(['clientId', 'acks', 'compression', 'onNoSubscribers']);

/** A number as written in a URL; anything else stays a string so the schema reports it by name. */
function urlNumber(value: string): number | string {
  return value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
}

/**
 * `kafka://[user:password@]host:port[,host:port…][?option=value…]`; `kafka+ssl://` turns TLS on.
 * Credentials need `sasl=plain|scram-sha-256|scram-sha-512`. `delayTiersMs=1000,5000`,
 * `retry.retries=3`, `topicConfig.retention.ms=604800000`. Explicit options win over the URL.
 */
export function optionsFromUrl(url: string, options: Record<string, unknown> = {}): KafkaTransportOptions {
  const match = /^(kafka|kafka\+ssl):\/\/(?:([^@/?]*)@)?([^/?]*)\/?(?:\?(.*))?$/i.exec(url);
  if (!match)
    throw new ConfigError('url', `expected kafka://host:port[,host:port…][?options], got ${redactUrl(url)}`);
  const [, scheme, userinfo, hosts, query] = match;
  const out: Record<string, unknown> = {};
  const retry: Record<string, unknown> = {};
  const topicConfig: Record<string, string> = {};
  if (hosts) out.brokers = hosts.split(',').filter(Boolean);
  if (scheme!.toLowerCase() === 'kafka+ssl') out.ssl = true;
  let mechanism: string | undefined;
  for (const [name, value] of new URLSearchParams(query ?? '')) {
    if (name === 'sasl') mechanism = value;
    else if (name === 'delayTiersMs') out.delayTiersMs = value.split(',').map(urlNumber);
    else if (URL_NUMBERS.has(name)) out[name] = urlNumber(value);
    else if (name.startsWith('retry.') && URL_RETRY_NUMBERS.has(name.slice(6)))
      retry[name.slice(6)] = urlNumber(value);
    else if (name.startsWith('topicConfig.') && name.length > 12) topicConfig[name.slice(12)] = value;
    else if (URL_BOOLEANS.has(name)) {
      if (value !== 'true' && value !== 'false')
        throw new ConfigError(name, `expected true or false, got ${JSON.stringify(value)}`);
      out[name] = value === 'true';
    } else if (URL_STRINGS.has(name)) out[name] = value;
    else throw new ConfigError(name, 'unknown kafka:// URL option');
  }
  if (Object.keys(retry).length > 0) out.retry = retry;
  if (Object.keys(topicConfig).length > 0) out.topicConfig = topicConfig;
  if (userinfo) {
    const [user, ...rest] = userinfo.split(':');
    out.sasl = {
      mechanism: mechanism ?? 'plain',
      username: decodeURIComponent(user ?? ''),
      password: decodeURIComponent(rest.join(':')),
    };
  } else if (mechanism) {
    throw new ConfigError('sasl', 'a SASL mechanism needs user:password in the URL');
  }
  return { ...out, ...options } as KafkaTransportOptions;
}
