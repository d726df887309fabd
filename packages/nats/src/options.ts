/** Options of the NATS JetStream transport: one strict zod schema validated at construction, and the `nats://` URL form. */
import { ConfigError, redactUrl } from '@omnibus/core';
import { DEFAULT_CONNECT_TIMEOUT_MS, parseOptions } from '@omnibus/core/kit';
import { z } from 'zod';

const hostPort = z.string().regex(/^[^\s:/,]+:\d{1,5}$/, 'expected "host:port"');
const positiveInt = z.number().int().positive();

export const natsOptionsSchema = z
  .strictObject({
    /** Servers, `host:port`. Defaults to the NATS_URL environment variable, else 127.0.0.1:4222. */
    servers: z.array(hostPort).min(1).optional(),
    user: z.string().min(1).optional(),
    pass: z.string().optional(),
    token: z.string().min(1).optional(),
    /** `true` or Node TLS options, passed to the client as is. */
    tls: z.union([z.boolean(), z.record(z.string(), z.unknown())]).optional(),
    /** Connection name shown by the server; defaults to `omnibus-<service>`. */
    name: z.string().min(1).optional(),
    /** `connect()` fails with a ConnectionError when the server has not answered within this time. */
    connectTimeoutMs: positiveInt.default(DEFAULT_CONNECT_TIMEOUT_MS),
    /** JetStream API requests (stream/consumer management, publish acks) time out after this. */
    requestTimeoutMs: positiveInt.default(10_000),
    /** Stream storage for streams this transport creates. */
    storage: z.enum(['file', 'memory']).default('file'),
    /** Replicas of streams this transport creates (clustered servers only). */
    replicas: positiveInt.default(1),
    /** How long the stream remembers a `Nats-Msg-Id` to drop a duplicate publish (the envelope id). */
    duplicateWindowMs: positiveInt.default(120_000),
    /** Oldest message a stream keeps (0: no age limit). */
    maxAgeMs: z.number().int().nonnegative().default(0),
    /** A delivery not acked within this time is redelivered (handlers extend it with extendLease). */
    ackWaitMs: positiveInt.default(60_000),
    /**
     * Deliveries of one message after which the server stops delivering it. A safety net only: the
     * policy's attempts end far earlier (each retry is a fresh message); releases count too.
     */
    maxDeliver: positiveInt.default(100),
    /** Longest a pull request waits on the server before the next one (at least 1 s); bounds close(). */
    fetchExpiresMs: z.number().int().min(1_000).default(2_000),
    /** Send the envelope id as `Nats-Msg-Id`: the stream stores a re-sent publish once (duplicateWindowMs). */
    deduplicate: z.boolean().default(true),
    /** Create streams on first publish/subscribe when they do not exist. */
    autoCreateStreams: z.boolean().default(true),
    /** Largest wire message accepted; defaults to the server's max_payload minus subject overhead. */
    maxMessageBytes: positiveInt.optional(),
    /**
     * A publish whose type no group receives. Only 'accept' is possible: a stream keeps its messages
     * for groups created later, so "nobody receives this" is not knowable at publish time.
     */
    onNoSubscribers: z.enum(['accept', 'reject']).default('accept'),
  })
  .superRefine((o, ctx) => {
    if (o.onNoSubscribers === 'reject') {
      ctx.addIssue({
        code: 'custom',
        path: ['onNoSubscribers'],
        message:
          "'reject' is not possible on NATS JetStream: a stream keeps its messages for consumers created " +
          "later, so the server cannot tell that nobody will read one; use 'accept' (and provision groups first)",
      });
    }
    if (o.token !== undefined && o.user !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: 'use either token or user/pass, not both' });
    }
  });

export type NatsTransportOptions = z.input<typeof natsOptionsSchema>;
export type ResolvedNatsOptions = z.output<typeof natsOptionsSchema> & { servers: string[] };

/** Validates options once; a bad or unknown one throws ConfigError naming it. */
export function resolveOptions(input: unknown): ResolvedNatsOptions {
  const options = parseOptions(natsOptionsSchema, input ?? {});
  let servers = options.servers;
  if (!servers) {
    const env = process.env.NATS_URL;
    if (!env) servers = ['127.0.0.1:4222'];
    else {
      servers = env
        .split(',')
        .map((s) => s.trim().replace(/^nats:\/\//i, ''))
        .filter(Boolean);
      const bad = servers.find((s) => !hostPort.safeParse(s).success);
      if (bad !== undefined || servers.length === 0) {
        throw new ConfigError(
          'servers',
          `NATS_URL must be comma-separated [nats://]host:port, got ${JSON.stringify(redactUrl(bad ?? env))}`,
        );
      }
    }
  }
  return { ...options, servers };
}

const URL_NUMBERS = new Set([
  'connectTimeoutMs',
  'requestTimeoutMs',
  'replicas',
  'duplicateWindowMs',
  'maxAgeMs',
  'ackWaitMs',
  'maxDeliver',
  'fetchExpiresMs',
  'maxMessageBytes',
]);
const URL_BOOLEANS = new Set(['tls', 'autoCreateStreams', 'deduplicate']);
const URL_STRINGS = new Set(['name', 'storage', 'onNoSubscribers', 'token']);

/** A number as written in a URL; anything else stays a string so the schema reports it by name. */
function urlNumber(value: string): number | string {
  return value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
}

/**
 * `nats://[user:pass@]host:port[,host:port…][?option=value…]`; `tls://` turns TLS on. Explicit options
 * win over the URL.
 */
export function optionsFromUrl(url: string, options: Record<string, unknown> = {}): NatsTransportOptions {
  const match = /^(nats|tls):\/\/(?:([^@/?]*)@)?([^/?]*)\/?(?:\?(.*))?$/i.exec(url);
  if (!match)
    throw new ConfigError('url', `expected nats://host:port[,host:port…][?options], got ${redactUrl(url)}`);
  const [, scheme, userinfo, hosts, query] = match;
  const out: Record<string, unknown> = {};
  if (hosts) out.servers = hosts.split(',').filter(Boolean);
  if (scheme!.toLowerCase() === 'tls') out.tls = true;
  for (const [name, value] of new URLSearchParams(query ?? '')) {
    if (URL_NUMBERS.has(name)) out[name] = urlNumber(value);
    else if (URL_BOOLEANS.has(name)) {
      if (value !== 'true' && value !== 'false')
        throw new ConfigError(name, `expected true or false, got ${JSON.stringify(value)}`);
      out[name] = value === 'true';
    } else if (URL_STRINGS.has(name)) out[name] = value;
    else throw new ConfigError(name, 'unknown nats:// URL option');
  }
  if (userinfo) {
    const [user, ...rest] = userinfo.split(':');
    if (rest.length === 0) out.token = decodeURIComponent(user ?? '');
    else {
      out.user = decodeURIComponent(user ?? '');
      out.pass = decodeURIComponent(rest.join(':'));
    }
  }
  return { ...out, ...options } as NatsTransportOptions;
}
