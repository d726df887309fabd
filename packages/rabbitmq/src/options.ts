/**
 * The RabbitMQ transport's options: one strict schema (each default stated once, here), parsed with the
 * kit's `parseOptions`, plus the same options read from the URL's query string.
 */
import { ConfigError, redactText } from '@omnibus/core';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DELAY_TIERS_MS,
  delayTiersSchema,
  parseOptions,
  tlsSchema,
} from '@omnibus/core/kit';
import { z } from 'zod';
import { DEFAULT_DELAY_QUEUE_PREFIX } from './naming.js';

/** RabbitMQ 3.8+ accepts up to 128 MiB by default; 16 MiB keeps a single message from starving a node. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const streamSchema = z.strictObject({
  /** Retention by age, RabbitMQ syntax (`7D`, `12h`, `30m`). */
  maxAge: z
    .string()
    .regex(/^\d+(Y|M|D|h|m|s)$/, 'expected a number followed by Y, M, D, h, m or s, e.g. "7D"')
    .optional(),
  /** Retention by size, in bytes. */
  maxLengthBytes: z.number().int().positive().optional(),
});

const reconnectSchema = z
  .strictObject({
    initialMs: z.number().int().positive().default(100),
    maxMs: z.number().int().positive().default(10_000),
  })
  .refine((r) => r.maxMs >= r.initialMs, { message: 'must be ≥ reconnect.initialMs', path: ['maxMs'] });

const optionsSchema = z.strictObject({
  /**
   * `amqp://user:pass@host:port/vhost?…`; several hosts of one cluster share the credentials, vhost and
   * query: `amqp://user:pass@h1:5672,h2:5672,h3:5672/vhost`. Hosts are tried in order; after a lost
   * connection the next host is tried first.
   */
  url: z.string().min(1).optional(),
  /** The same as several hosts in `url`, one full URL per cluster node (each may carry its own credentials). */
  urls: z.array(z.string().min(1)).min(1).optional(),
  /** Upper bound on per-subscription prefetch; the subscription's maxInFlight is used when lower. */
  prefetch: z.number().int().min(1).max(65_535).optional(),
  /** Most publishes awaiting a broker confirm at once (per connection). */
  confirmWindow: z.number().int().min(1).max(100_000).default(1_000),
  queueType: z.enum(['quorum', 'classic']).default('quorum'),
  /** Quorum `x-delivery-limit`: a crash-loop safety net, kept well above any retry policy's attempts. */
  deliveryLimit: z.number().int().min(1).default(50),
  delayTiersMs: delayTiersSchema.default(DEFAULT_DELAY_TIERS_MS),
  /**
   * Names of the shared delay-tier queues and exchanges (`<prefix>.<tierMs>`), one set per vhost. Transports
   * with the same prefix share them; a different prefix keeps an application's retries (and the permissions
   * they need) apart from another's in the same vhost.
   */
  delayQueuePrefix: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[^\s]+$/, 'expected a name without spaces, e.g. "omnibus.delay"')
    .default(DEFAULT_DELAY_QUEUE_PREFIX),
  provision: z.enum(['create', 'verify', 'none']).default('create'),
  /**
   * A publish whose type no group queue is bound for: 'accept' resolves (RabbitMQ drops it), 'reject'
   * fails with UNROUTABLE (published `mandatory`, the broker's basic.return decides).
   */
  onNoSubscribers: z.enum(['accept', 'reject']).default('accept'),
  /**
   * The first connect and each reconnect attempt; also how long provision, stats and close wait for a
   * connection that is being re-established.
   */
  connectTimeoutMs: z.number().int().positive().default(DEFAULT_CONNECT_TIMEOUT_MS),
  reconnect: reconnectSchema.default({ initialMs: 100, maxMs: 10_000 }),
  /** Declares group queues with `x-single-active-consumer`: per-key order holds across processes. */
  singleActiveConsumer: z.boolean().default(false),
  /** Opt-in replay: a stream queue per topic (costs disk). */
  streams: z.union([z.boolean(), streamSchema]).default(false),
  maxMessageBytes: z
    .number()
    .int()
    .positive()
    .max(512 * 1024 * 1024)
    .default(DEFAULT_MAX_MESSAGE_BYTES),
  heartbeatSeconds: z.number().int().min(0).optional(),
  /**
   * TLS for `amqps://` URLs, passed to `tls.connect`: `ca` (the broker's CA, PEM), `cert` + `key` (a client
   * certificate), `passphrase`, `servername`, `rejectUnauthorized` (default true: the broker's certificate
   * is verified; false logs a warning on every connection).
   */
  tls: tlsSchema.optional(),
  /** Shown in the management UI and `rabbitmqctl list_connections user_provided_name`. */
  connectionName: z.string().min(1).optional(),
});

export type RabbitMqOptions = z.input<typeof optionsSchema>;

type Parsed = z.output<typeof optionsSchema>;

export interface ResolvedOptions extends Omit<Parsed, 'streams' | 'heartbeatSeconds' | 'url' | 'urls'> {
  /** The first of `urls`. */
  url: string;
  /** One URL per host, in the order connect tries them (a single host: one entry). */
  urls: string[];
  streams: { maxAge?: string | undefined; maxLengthBytes?: number | undefined } | undefined;
}

/** How each option that makes sense in a URL is read from its query string (the value is then validated). */
const URL_PARAMETERS: Record<string, 'int' | 'bool' | 'string' | 'ints'> = {
  prefetch: 'int',
  confirmWindow: 'int',
  queueType: 'string',
  deliveryLimit: 'int',
  delayTiersMs: 'ints',
  delayQueuePrefix: 'string',
  provision: 'string',
  onNoSubscribers: 'string',
  connectTimeoutMs: 'int',
  singleActiveConsumer: 'bool',
  streams: 'bool',
  maxMessageBytes: 'int',
  connectionName: 'string',
};

/** Query parameters amqplib itself reads from the URL (left in it). */
const AMQPLIB_PARAMETERS = new Set(['heartbeat', 'frameMax', 'channelMax', 'locale']);

export function resolveOptions(input: unknown): ResolvedOptions {
  if (typeof input !== 'object' || input === null) throw new ConfigError('options', 'expected an object');
  const given = input as Record<string, unknown>;
  if (given.url !== undefined && given.urls !== undefined) {
    throw new ConfigError('urls', 'give either url or urls, not both');
  }
  if (given.url === undefined && given.urls === undefined) {
    throw new ConfigError('url', 'required: the broker URL (or urls, one per cluster node)');
  }
  // Several hosts in one URL become one URL per host; the query (our options) is read once, from the first.
  const raw =
    typeof given.url === 'string'
      ? splitHosts(given.url)
      : Array.isArray(given.urls)
        ? (given.urls as unknown[])
        : undefined;
  const field = given.url !== undefined ? 'url' : 'urls';
  const parsed = raw?.map((u, i) =>
    typeof u === 'string'
      ? optionsFromUrl(u, field === 'urls' ? `urls.${i}` : 'url')
      : { url: u, params: {} },
  );
  const params = parsed?.[0]?.params ?? {};
  // An explicit option wins over the URL, so a deployment can tune one without rewriting a secret-bearing URL.
  const o = parseOptions(optionsSchema, {
    ...params,
    ...given,
    ...(field === 'url'
      ? { url: parsed?.[0]?.url ?? given.url, urls: undefined }
      : { urls: parsed?.map((p) => p.url) ?? given.urls }),
  });
  const { heartbeatSeconds, streams, url: _url, urls: _urls, ...rest } = o;
  if (o.onNoSubscribers === 'reject' && streams !== false) {
    // The replay stream is bound to every type of its topic, so with streams on nothing is ever unroutable.
    throw new ConfigError(
      'onNoSubscribers',
      "'reject' cannot tell with streams on: the topic's replay stream receives every type; turn streams off or use 'accept'",
    );
  }
  const urls = (parsed ?? []).map((p) => withHeartbeat(p.url as string, heartbeatSeconds));
  if (o.tls !== undefined) {
    // amqplib hands these to tls.connect only for amqps://: on amqp:// they would be ignored in silence.
    const plain = urls.findIndex((u) => !u.toLowerCase().startsWith('amqps:'));
    if (plain >= 0) {
      throw new ConfigError(
        'tls',
        `TLS options need amqps:// URLs, but ${redactText(urls[plain]!)} is plain amqp://`,
      );
    }
  }
  return {
    ...rest,
    url: urls[0]!,
    urls,
    streams: streams === true ? {} : streams === false ? undefined : streams,
  };
}

/**
 * `amqp://u:p@h1:1,h2:2/vh?q` → one URL per host with the same credentials, vhost and query. A URL with one
 * host is returned as is.
 */
export function splitHosts(raw: string): string[] {
  const m = /^(amqps?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/i.exec(raw);
  if (!m || !m[3]!.includes(',')) return [raw];
  const [, scheme, auth = '', hosts, tail] = m;
  return hosts!.split(',').map((host) => {
    if (host.trim() === '')
      throw new ConfigError('url', `an empty host in the host list of ${redactText(raw)}`);
    return `${scheme}${auth}${host.trim()}${tail}`;
  });
}

/** Splits our options out of the URL's query string; what stays is the URL amqplib is given. */
function optionsFromUrl(raw: string, field = 'url'): { url: string; params: Record<string, unknown> } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(field, `not a valid URL: ${redactText(raw)}`);
  }
  if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') {
    throw new ConfigError(field, `expected an amqp:// or amqps:// URL, got ${url.protocol}//`);
  }
  if (!url.hostname) throw new ConfigError(field, 'the URL names no host');
  const hb = url.searchParams.get('heartbeat');
  if (hb !== null && !/^\d+$/.test(hb)) {
    throw new ConfigError(field, `heartbeat must be a whole number of seconds, got ${JSON.stringify(hb)}`);
  }
  const params: Record<string, unknown> = {};
  let ours = false;
  for (const [name, value] of url.searchParams) {
    const kind = URL_PARAMETERS[name];
    if (kind === undefined) {
      if (AMQPLIB_PARAMETERS.has(name)) continue;
      const known = [...Object.keys(URL_PARAMETERS), ...AMQPLIB_PARAMETERS].join(', ');
      throw new ConfigError(`${field}.${name}`, `unknown query parameter (known: ${known})`);
    }
    ours = true;
    params[name] = fromQuery(name, value, kind);
  }
  if (!ours) return { url: raw, params };
  for (const name of Object.keys(params)) url.searchParams.delete(name);
  return { url: url.toString(), params };
}

function fromQuery(name: string, value: string, kind: 'int' | 'bool' | 'string' | 'ints'): unknown {
  switch (kind) {
    case 'string':
      return value;
    case 'bool':
      if (value === 'true' || value === '1') return true;
      if (value === 'false' || value === '0') return false;
      throw new ConfigError(`url.${name}`, `expected true or false, got ${JSON.stringify(value)}`);
    case 'int':
      return toInt(name, value);
    case 'ints':
      return value.split(',').map((v) => toInt(name, v.trim()));
  }
}

function toInt(name: string, value: string): number {
  if (!/^-?\d+$/.test(value)) {
    throw new ConfigError(`url.${name}`, `expected a whole number, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

function withHeartbeat(raw: string, heartbeatSeconds: number | undefined): string {
  if (heartbeatSeconds === undefined) return raw;
  const url = new URL(raw);
  url.searchParams.set('heartbeat', String(heartbeatSeconds));
  return url.toString();
}
