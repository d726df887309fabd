/** Typed message definitions: a type name, a schema version, a zod schema and upcasters from older versions. */
import type { Codec } from './codec.js';
import type { Envelope } from './envelope.js';
import { ConfigError, UnknownVersionError, ValidationError } from './errors.js';

/** The part of a zod schema Omnibus uses; zod 3.25+ and 4 both fit. */
export interface SchemaLike<T> {
  safeParse(data: unknown): { success: true; data: T } | { success: false; error: unknown };
}

/**
 * Turns data written at one version into the next version's shape. Unannotated, `previous` is whatever an
 * older producer wrote (the schema validates the final result); `Upcaster<V1, V2>` types both sides.
 */
// biome-ignore lint/suspicious/noExplicitAny: an upcaster receives whatever an older producer wrote; its own parameter type documents it.
export type Upcaster<From = any, To = unknown> = (previous: From) => To;

export interface MessageOptions<T> {
  type: string;
  /** Current schema version (default 1). */
  version?: number;
  schema: SchemaLike<T>;
  /** `upcast[n]` turns version n data into version n+1 data. */
  upcast?: Record<number, Upcaster>;
  /** Codec for the data (default JSON). */
  codec?: Codec;
}

/** What a handler receives besides the data. */
export interface MessageContext<T = unknown> {
  envelope: Envelope<T>;
  /** 1 for the first handler invocation, counting every retry on every broker. */
  attempt: number;
  redelivered: boolean;
  receivedAt: number;
  /**
   * Processing time: when this handler invocation started (ms since epoch). The event time is
   * `envelope.time`; their difference is the message's age at handling.
   */
  processingStartedAt: number;
  topic: string;
  group: string;
  /** Aborted when the handler timeout elapses or the subscription is force-closed. */
  signal: AbortSignal;
}

export type Handler<T = unknown> = (data: T, ctx: MessageContext<T>) => unknown;

/** A handler bound to a message definition: data is upcast and validated before it runs. */
export interface TypedHandler<T = unknown> {
  readonly definition: MessageDefinition<T>;
  readonly fn: Handler<T>;
}

export interface MessageDefinition<T> {
  readonly type: string;
  readonly version: number;
  readonly schema: SchemaLike<T>;
  readonly codec: Codec | undefined;
  /** Upcasts `data` written at `version` to the current version and validates it. */
  parse(data: unknown, version?: number): T;
  /** Binds a handler to this definition, for `subscribe({ handlers: { [Def.type]: Def.handle(fn) } })`. */
  handle(fn: Handler<T>): TypedHandler<T>;
}

export type InferMessage<D> = D extends MessageDefinition<infer T> ? T : never;

const TYPE_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function defineMessage<T>(options: MessageOptions<T>): MessageDefinition<T> {
  const { type, schema, codec } = options;
  const version = options.version ?? 1;
  if (typeof type !== 'string' || !TYPE_NAME.test(type)) {
    throw new ConfigError(
      'type',
      `must be dot-separated words of letters, digits, _ or -; got ${JSON.stringify(type)}`,
    );
  }
  if (!Number.isInteger(version) || version < 1) {
    throw new ConfigError('version', `must be a positive integer; got ${String(version)}`);
  }
  if (!schema || typeof schema.safeParse !== 'function') {
    throw new ConfigError('schema', 'must be a zod schema (an object with safeParse)');
  }
  const upcast = options.upcast ?? {};
  for (const k of Object.keys(upcast)) {
    const n = Number(k);
    if (!Number.isInteger(n) || n < 1 || n >= version) {
      throw new ConfigError(`upcast.${k}`, `upcasters are keyed by an older version (1..${version - 1})`);
    }
  }

  const definition: MessageDefinition<T> = {
    type,
    version,
    schema,
    codec,
    parse(data, from = version) {
      if (from > version) throw new UnknownVersionError(type, from, version);
      let value = data;
      for (let v = from; v < version; v++) {
        const step = upcast[v];
        if (!step) throw new ValidationError(`${type}: no upcaster from version ${v} to ${v + 1}`);
        try {
          value = step(value);
        } catch (err) {
          throw new ValidationError(`${type}: upcaster from version ${v} failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
      const result = schema.safeParse(value);
      if (!result.success) {
        const issues = (result.error as { issues?: unknown[] })?.issues ?? [];
        throw new ValidationError(
          `${type} v${version} failed validation: ${summariseIssues(issues, result.error)}`,
          {
            issues,
            cause: result.error,
          },
        );
      }
      return result.data;
    },
    handle(fn) {
      return { definition, fn };
    },
  };
  return definition;
}

function summariseIssues(issues: unknown[], error: unknown): string {
  if (issues.length === 0) return String((error as Error)?.message ?? error);
  return issues
    .slice(0, 5)
    .map((i) => {
      const issue = i as { path?: (string | number)[]; message?: string };
      const path = issue.path && issue.path.length > 0 ? issue.path.join('.') : '(root)';
      return `${path}: ${issue.message ?? 'invalid'}`;
    })
    .join('; ');
}

/** A handler of any message type: a registry holds many, each checked by its own definition at runtime. */
// biome-ignore lint/suspicious/noExplicitAny: handler data types differ per entry; `unknown` would reject every typed handler.
export type AnyHandler = TypedHandler<any> | Handler<any>;

/** A message definition of any data type, for lists that mix types (publishBatch). */
// biome-ignore lint/suspicious/noExplicitAny: as above, definitions are contravariant in their data type.
export type AnyMessageDefinition = MessageDefinition<any>;

export function isTypedHandler(h: unknown): h is TypedHandler {
  return typeof h === 'object' && h !== null && 'definition' in h && 'fn' in h;
}
