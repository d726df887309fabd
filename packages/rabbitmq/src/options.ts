/** The RabbitMQ transport's options: validated once at construction, with the defaults stated in one place. */
import { ConfigError, redactText } from '@omnibus/core';
import { z } from 'zod';

export const DEFAULT_DELAY_TIERS_MS = [1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000] as const;

/** RabbitMQ 3.8+ accepts up to 128 MiB by default; 16 MiB keeps a single message from starving a node. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const streamSchema = z
  .object({
    /** Retention by age, RabbitMQ syntax (`7D`, `12h`, `30m`). */
    maxAge: z
      .string()
      .regex(/^\d+(Y|M|D|h|m|s)$/, 'expected a number followed by Y, M, D, h, m or s, e.g. "7D"')
      .optional(),
    /** Retention by size, in bytes. */
    maxLengthBytes: z.number().int().positive().optional(),
  })
  .strict();

const reconnectSchema = z
  .object({
    initialMs: z.number().int().positive().optional(),
    maxMs: z.number().int().positive().optional(),
  })
  .strict();

const optionsSchema = z
  .object({
    url: z.string().min(1),
    /** Upper bound on per-subscription prefetch; the subscription's maxInFlight is used when lower. */
    prefetch: z.number().int().min(1).max(65_535).optional(),
    /** Most publishes awaiting a broker confirm at once (per connection). */
    confirmWindow: z.number().int().min(1).max(100_000).optional(),
    queueType: z.enum(['quorum', 'classic']).optional(),
    /** Quorum `x-delivery-limit`: a crash-loop safety net, kept well above any retry policy's attempts. */
    deliveryLimit: z.number().int().min(1).optional(),
    delayTiersMs: z.array(z.number().int().positive()).min(1).optional(),
    provision: z.enum(['create', 'verify', 'none']).optional(),
    /** How long a publish may wait (outage, full window, missing confirm) before it fails. */
    publishTimeoutMs: z.number().int().positive().optional(),
    connectTimeoutMs: z.number().int().positive().optional(),
    reconnect: reconnectSchema.optional(),
    /** Declares group queues with `x-single-active-consumer`: per-key order holds across processes. */
    singleActiveConsumer: z.boolean().optional(),
    /** Opt-in replay: a stream queue per topic (costs disk). */
    streams: z.union([z.boolean(), streamSchema]).optional(),
    maxMessageBytes: z
      .number()
      .int()
      .positive()
      .max(512 * 1024 * 1024)
      .optional(),
    heartbeatSeconds: z.number().int().min(0).optional(),
    /** Passed to `tls.connect` for `amqps:` URLs (ca, cert, key, passphrase, servername, rejectUnauthorized…). */
    tls: z.record(z.string(), z.unknown()).optional(),
    /** Shown in the management UI and `rabbitmqctl list_connections user_provided_name`. */
    connectionName: z.string().min(1).optional(),
  })
  .strict();

export type RabbitMqOptions = z.input<typeof optionsSchema>;

export interface ResolvedOptions {
  url: string;
  prefetch: number | undefined;
  confirmWindow: number;
  queueType: 'quorum' | 'classic';
  deliveryLimit: number;
  delayTiersMs: readonly number[];
  provision: 'create' | 'verify' | 'none';
  publishTimeoutMs: number;
  connectTimeoutMs: number;
  reconnect: { initialMs: number; maxMs: number };
  singleActiveConsumer: boolean;
  streams: { maxAge?: string | undefined; maxLengthBytes?: number | undefined } | undefined;
  maxMessageBytes: number;
  tls: Record<string, unknown> | undefined;
  connectionName: string | undefined;
}

export function resolveOptions(input: unknown): ResolvedOptions {
  const parsed = optionsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.');
    throw new ConfigError(field || 'options', redactText(issue.message));
  }
  const o = parsed.data;
  const url = validateUrl(o.url, o.heartbeatSeconds);
  const tiers = [...new Set(o.delayTiersMs ?? DEFAULT_DELAY_TIERS_MS)].sort((a, b) => a - b);
  const reconnect = { initialMs: o.reconnect?.initialMs ?? 100, maxMs: o.reconnect?.maxMs ?? 10_000 };
  if (reconnect.maxMs < reconnect.initialMs) {
    throw new ConfigError('reconnect.maxMs', `must be ≥ reconnect.initialMs (${reconnect.initialMs})`);
  }
  return {
    url,
    prefetch: o.prefetch,
    confirmWindow: o.confirmWindow ?? 1_000,
    queueType: o.queueType ?? 'quorum',
    deliveryLimit: o.deliveryLimit ?? 50,
    delayTiersMs: tiers,
    provision: o.provision ?? 'create',
    publishTimeoutMs: o.publishTimeoutMs ?? 30_000,
    connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
    reconnect,
    singleActiveConsumer: o.singleActiveConsumer ?? false,
    streams: o.streams === true ? {} : o.streams === false || o.streams === undefined ? undefined : o.streams,
    maxMessageBytes: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    tls: o.tls,
    connectionName: o.connectionName,
  };
}

function validateUrl(raw: string, heartbeatSeconds: number | undefined): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('url', `not a valid URL: ${redactText(raw)}`);
  }
  if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') {
    throw new ConfigError('url', `expected an amqp:// or amqps:// URL, got ${url.protocol}//`);
  }
  if (!url.hostname) throw new ConfigError('url', 'the URL names no host');
  const hb = url.searchParams.get('heartbeat');
  if (hb !== null && !/^\d+$/.test(hb)) {
    throw new ConfigError('url', `heartbeat must be a whole number of seconds, got ${JSON.stringify(hb)}`);
  }
  // An explicit option wins over the URL so deployments can tune it without rewriting secrets-bearing URLs.
  if (heartbeatSeconds !== undefined) url.searchParams.set('heartbeat', String(heartbeatSeconds));
  return heartbeatSeconds === undefined ? raw : url.toString();
}
