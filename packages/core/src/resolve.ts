/**
 * `connect(url)`: the URL scheme names the adapter package, which is loaded from the application's own
 * dependencies (resolved from the working directory, not from the core's folder, which pnpm keeps apart).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from './errors.js';
import { memoryTransport } from './memory/transport.js';
import { redactUrl } from './redact.js';
import type { Transport, TransportFactory } from './transport.js';

const ADAPTERS: Record<string, string> = {
  amqp: '@omnibus/rabbitmq',
  amqps: '@omnibus/rabbitmq',
  kafka: '@omnibus/kafka',
  'kafka+ssl': '@omnibus/kafka',
  sqs: '@omnibus/sqs',
  'sqs+http': '@omnibus/sqs',
  'sqs+https': '@omnibus/sqs',
  // SQS with SNS fan-out (@omnibus/sqs's `fanOut: 'sns'` mode).
  sns: '@omnibus/sqs',
  'sns+http': '@omnibus/sqs',
  'sns+https': '@omnibus/sqs',
  nats: '@omnibus/nats',
  tls: '@omnibus/nats',
};

export function schemeOf(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (!m) {
    // Without a scheme redactUrl finds no URL, yet the text may still hold `user:password@`.
    const masked = url.replace(/:.*@/s, ':***@');
    throw new ConfigError('transport', `not a URL: ${JSON.stringify(masked)}`);
  }
  return m[1]!.toLowerCase();
}

/**
 * The adapter package a URL's scheme needs (`@omnibus/rabbitmq` for `amqp://`), or undefined for
 * `memory://`; throws ConfigError for a URL or scheme connect() would refuse. For tools that install or
 * load adapters on their own (the omnibus CLI).
 */
export function adapterPackage(url: string): string | undefined {
  const scheme = schemeOf(url);
  if (scheme === 'memory') return undefined;
  const pkg = ADAPTERS[scheme];
  if (!pkg) {
    throw new ConfigError(
      'transport',
      `unknown URL scheme "${scheme}:" (expected memory, amqp, amqps, kafka, sqs, sqs+http, sns, sns+http, nats, tls) in ${redactUrl(url)}`,
    );
  }
  return pkg;
}

export async function resolveTransport(url: string, options?: Record<string, unknown>): Promise<Transport> {
  const scheme = schemeOf(url);
  if (scheme === 'memory') return memoryFromUrl(url, options);
  const pkg = ADAPTERS[scheme];
  if (!pkg) {
    throw new ConfigError(
      'transport',
      `unknown URL scheme "${scheme}:" (expected memory, amqp, amqps, kafka, sqs, sqs+http, sns, sns+http, nats, tls) in ${redactUrl(url)}`,
    );
  }
  const mod = await importAdapter(pkg);
  const factory = mod.transportFromUrl as TransportFactory | undefined;
  if (typeof factory !== 'function')
    throw new ConfigError('transport', `${pkg} does not export transportFromUrl`);
  return factory(url, options);
}

/**
 * `memory://name` with `transportOptions`: the URL names the broker, the options configure the rest and are
 * checked by the memory transport's own strict schema (reported under `transportOptions.`).
 */
function memoryFromUrl(url: string, options: Record<string, unknown> = {}): Transport {
  const fromUrl = url.slice('memory://'.length);
  // A query or path here would otherwise become part of the broker's name, and its options be ignored.
  if (/[?#/]/.test(fromUrl)) {
    throw new ConfigError(
      'transport',
      `a memory:// URL names a broker and nothing else (options go in transportOptions): ${redactUrl(url)}`,
    );
  }
  if (fromUrl && options.name !== undefined && options.name !== fromUrl) {
    throw new ConfigError('transportOptions.name', `conflicts with the broker named in the URL (${fromUrl})`);
  }
  try {
    const name = fromUrl !== '' ? fromUrl : ((options.name as string | undefined) ?? 'default');
    return memoryTransport({ ...options, name });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const field = err.field ? `transportOptions.${err.field}` : 'transportOptions';
    const detail = (
      err.field && err.message.startsWith(`${err.field}: `)
        ? err.message.slice(err.field.length + 2)
        : err.message
    ).replace(/did you mean `([^`]+)`/, 'did you mean `transportOptions.$1`');
    throw new ConfigError(field, detail, { cause: err });
  }
}

async function importAdapter(pkg: string): Promise<Record<string, unknown>> {
  // The application's dependencies first: that is where the user installed the adapter.
  let entry: string | undefined;
  try {
    const req = createRequire(join(process.cwd(), 'noop.js'));
    const manifestPath = req.resolve(`${pkg}/package.json`);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      exports?: Record<string, { import?: string | { default?: string } } | undefined>;
      module?: string;
      main?: string;
    };
    const esm = manifest.exports?.['.']?.import;
    const target = (typeof esm === 'string' ? esm : esm?.default) ?? manifest.module ?? manifest.main;
    if (typeof target === 'string') entry = join(dirname(manifestPath), target);
  } catch {
    entry = undefined;
  }
  try {
    return (await import(entry ? pathToFileURL(entry).href : pkg)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: string }).code;
    // Only a package that cannot be found at all means "install it"; a broken install says so itself.
    if (!entry && (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND')) {
      throw new ConfigError(
        'transport',
        `this URL needs the ${pkg} package: install it (npm install ${pkg})`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}
