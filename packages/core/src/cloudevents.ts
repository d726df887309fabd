/**
 * CloudEvents 1.0 mappings of the envelope, so non-Omnibus consumers can read our messages:
 * binary content mode (attributes as prefixed headers; Kafka `ce_`, AMQP `cloudEvents_`) and
 * structured content mode (one `application/cloudevents+json` body; used on SQS).
 */
import { isUtf8 } from 'node:buffer';
import { CONTROL_HEADER_PREFIX, type RawEnvelope, type WireMessage } from './envelope.js';
import { DecodeError } from './errors.js';

export const CE_SPEC_VERSION = '1.0';
export const STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json';

export interface BinaryModeOptions {
  /** Header prefix for CloudEvents attributes: `ce_` (Kafka, HTTP-style) or `cloudEvents_` (AMQP). */
  prefix: string;
  /** Header carrying the data content type; Kafka's binding uses `content-type`. */
  contentTypeHeader?: string;
  /** Headers that belong to the broker rather than the user (dropped from user headers on decode). */
  isBrokerHeader?: (name: string) => boolean;
}

const EXT = {
  correlationId: 'correlationid',
  causationId: 'causationid',
  version: 'schemaversion',
  key: 'partitionkey',
} as const;

// Messages published or read together mostly share one millisecond: remember the last conversion
// each way rather than format or parse the same time again.
let lastFormattedMs = Number.NaN;
let lastFormatted = '';
let lastParsed = '';
let lastParsedMs = 0;

function isoTime(ms: number): string {
  if (ms !== lastFormattedMs) {
    lastFormatted = new Date(ms).toISOString();
    lastFormattedMs = ms;
  }
  return lastFormatted;
}

function parseTime(value: string | undefined): number {
  if (value === undefined) return Date.now();
  if (value === lastParsed) return lastParsedMs;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new DecodeError(`CloudEvents time is not RFC 3339: ${JSON.stringify(value)}`);
  lastParsed = value;
  lastParsedMs = ms;
  return ms;
}

/** The header names of one binary-mode mapping, built once per options object. */
interface BinaryNames {
  prefix: string;
  specversion: string;
  id: string;
  type: string;
  source: string;
  time: string;
  contentType: string;
  correlationId: string;
  causationId: string;
  version: string;
  key: string;
}

const namesByOptions = new WeakMap<BinaryModeOptions, BinaryNames>();
let lastNames: BinaryNames | undefined;

function binaryNames(options: BinaryModeOptions): BinaryNames {
  let names = namesByOptions.get(options);
  if (!names) {
    const p = options.prefix;
    const contentType = options.contentTypeHeader ?? `${p}datacontenttype`;
    // A caller building a fresh options object per call still gets the last names for the same mapping.
    if (lastNames?.prefix === p && lastNames.contentType === contentType) return lastNames;
    names = {
      prefix: p,
      specversion: `${p}specversion`,
      id: `${p}id`,
      type: `${p}type`,
      source: `${p}source`,
      time: `${p}time`,
      contentType,
      correlationId: `${p}${EXT.correlationId}`,
      causationId: `${p}${EXT.causationId}`,
      version: `${p}${EXT.version}`,
      key: `${p}${EXT.key}`,
    };
    namesByOptions.set(options, names);
    lastNames = names;
  }
  return names;
}

function parseVersion(value: unknown): number {
  if (value === undefined || value === null || value === '') return 1;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new DecodeError(`schemaversion must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Sets one user header as an own property. A plain assignment of `__proto__` would go to the prototype
 * setter instead (and silently lose the header); defining it keeps it as data like any other name.
 */
export function setHeader<T = string>(headers: Record<string, T>, name: string, value: T): void {
  if (name === '__proto__') {
    Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
  } else headers[name] = value;
}

function required(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '')
    throw new DecodeError(`missing CloudEvents attribute "${name}"`);
  return value;
}

/**
 * Envelope → headers + body, CloudEvents binary mode. Control headers are added by the caller. Pass the
 * same options object every time: the header names are worked out once per object.
 */
export function toBinary(env: RawEnvelope, options: BinaryModeOptions): WireMessage {
  const n = binaryNames(options);
  const headers: Record<string, string> = { ...env.headers };
  headers[n.specversion] = CE_SPEC_VERSION;
  headers[n.id] = env.id;
  headers[n.type] = env.type;
  headers[n.source] = env.source;
  headers[n.time] = isoTime(env.time);
  headers[n.contentType] = env.contentType;
  // Extensions equal to what a decoder assumes when they are absent stay off the wire (see fromBinary).
  if (env.correlationId !== env.id) headers[n.correlationId] = env.correlationId;
  if (env.version !== 1) headers[n.version] = String(env.version);
  if (env.causationId) headers[n.causationId] = env.causationId;
  if (env.key !== undefined) headers[n.key] = env.key;
  if (env.traceparent) headers.traceparent = env.traceparent;
  if (env.tracestate) headers.tracestate = env.tracestate;
  return { body: env.data, headers, key: env.key };
}

/**
 * Headers + body → envelope. Throws DecodeError when required attributes are missing or malformed. Absent
 * extensions take their defaults: `correlationid` the event's id, `schemaversion` 1 (what toBinary omits);
 * messages that still carry them explicitly decode the same.
 */
export function fromBinary(msg: WireMessage, options: BinaryModeOptions): RawEnvelope {
  const n = binaryNames(options);
  const p = n.prefix;
  const h = msg.headers;
  const spec = h[n.specversion];
  if (spec === undefined) throw new DecodeError('not a CloudEvent: no specversion header');
  if (spec !== CE_SPEC_VERSION) throw new DecodeError(`unsupported CloudEvents specversion ${spec}`);
  const headers: Record<string, string> = {};
  const isBrokerHeader = options.isBrokerHeader;
  for (const name in h) {
    if (name.startsWith(p) || name === n.contentType || name === 'traceparent' || name === 'tracestate')
      continue;
    if (name.startsWith(CONTROL_HEADER_PREFIX)) continue;
    if (isBrokerHeader?.(name)) continue;
    setHeader(headers, name, h[name]!);
  }
  const id = required(h[n.id], 'id');
  return {
    id,
    type: required(h[n.type], 'type'),
    source: required(h[n.source], 'source'),
    time: parseTime(h[n.time]),
    key: h[n.key] ?? msg.key,
    correlationId: h[n.correlationId] ?? id,
    causationId: h[n.causationId],
    traceparent: h.traceparent,
    tracestate: h.tracestate,
    version: parseVersion(h[n.version]),
    contentType: h[n.contentType] ?? 'application/json',
    headers,
    data: msg.body,
  };
}

function isJsonType(contentType: string): boolean {
  const base = contentType.split(';')[0]!.trim().toLowerCase();
  return base === 'application/json' || base.endsWith('+json') || base === 'text/json';
}

/**
 * Envelope → one JSON document, CloudEvents structured mode. JSON data is embedded as is (no re-parse);
 * anything else travels as `data_base64`. User headers stay outside the body (the transport maps them
 * to its own attributes).
 */
export function toStructured(env: RawEnvelope): WireMessage {
  const attrs: Record<string, unknown> = {
    specversion: CE_SPEC_VERSION,
    id: env.id,
    type: env.type,
    source: env.source,
    time: isoTime(env.time),
    datacontenttype: env.contentType,
  };
  // As in binary mode, extensions equal to their defaults are left out.
  if (env.correlationId !== env.id) attrs[EXT.correlationId] = env.correlationId;
  if (env.version !== 1) attrs[EXT.version] = env.version;
  if (env.causationId) attrs[EXT.causationId] = env.causationId;
  if (env.key !== undefined) attrs[EXT.key] = env.key;
  if (env.traceparent) attrs.traceparent = env.traceparent;
  if (env.tracestate) attrs.tracestate = env.tracestate;
  let body: string;
  const head = JSON.stringify(attrs);
  if (isJsonType(env.contentType) && env.data.byteLength > 0) {
    body = `${head.slice(0, -1)},"data":${Buffer.from(env.data.buffer, env.data.byteOffset, env.data.byteLength).toString('utf8')}}`;
  } else {
    body = `${head.slice(0, -1)},"data_base64":${JSON.stringify(Buffer.from(env.data).toString('base64'))}}`;
  }
  return { body: Buffer.from(body, 'utf8'), headers: { ...env.headers }, key: env.key };
}

export function fromStructured(msg: WireMessage): RawEnvelope {
  let doc: Record<string, unknown>;
  if (!isUtf8(msg.body)) throw new DecodeError('structured CloudEvent is not valid UTF-8');
  try {
    const parsed: unknown = JSON.parse(Buffer.from(msg.body).toString('utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    doc = parsed as Record<string, unknown>;
  } catch (err) {
    throw new DecodeError(`structured CloudEvent is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (doc.specversion !== CE_SPEC_VERSION) {
    throw new DecodeError(
      `not a CloudEvents ${CE_SPEC_VERSION} document (specversion ${JSON.stringify(doc.specversion)})`,
    );
  }
  const id = required(doc.id, 'id');
  const contentType = typeof doc.datacontenttype === 'string' ? doc.datacontenttype : 'application/json';
  const data = structuredData(doc, contentType);
  const headers: Record<string, string> = {};
  for (const name in msg.headers) {
    if (!name.startsWith(CONTROL_HEADER_PREFIX)) setHeader(headers, name, msg.headers[name]!);
  }
  if (doc.time !== undefined && typeof doc.time !== 'string') {
    throw new DecodeError(`CloudEvents time must be an RFC 3339 string, got ${typeof doc.time}`);
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return {
    id,
    type: required(doc.type, 'type'),
    source: required(doc.source, 'source'),
    time: parseTime(str(doc.time)),
    key: str(doc[EXT.key]) ?? msg.key,
    correlationId: str(doc[EXT.correlationId]) ?? id,
    causationId: str(doc[EXT.causationId]),
    traceparent: str(doc.traceparent),
    tracestate: str(doc.tracestate),
    version: parseVersion(doc[EXT.version]),
    contentType,
    headers,
    data,
  };
}

// Standard base64 with padding, as the CloudEvents JSON format writes `data_base64`.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The data bytes of a structured document; a member that cannot be turned back into bytes is a DecodeError. */
function structuredData(doc: Record<string, unknown>, contentType: string): Uint8Array {
  const base64 = doc.data_base64;
  if (base64 !== undefined) {
    if (doc.data !== undefined) throw new DecodeError('structured CloudEvent has both data and data_base64');
    // Buffer.from skips characters outside the alphabet: checked first, so bytes are never quietly lost.
    if (typeof base64 !== 'string' || !BASE64.test(base64)) {
      throw new DecodeError('structured CloudEvent data_base64 is not base64');
    }
    return Buffer.from(base64, 'base64');
  }
  const data = doc.data;
  if (data === undefined) return Buffer.alloc(0);
  if (isJsonType(contentType)) {
    let text: string;
    try {
      text = JSON.stringify(data);
    } catch (err) {
      // A document nested deeper than the stack can re-encode (JSON.parse itself is iterative).
      throw new DecodeError(`structured CloudEvent data cannot be re-encoded: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return Buffer.from(text, 'utf8');
  }
  // Any other content type travels as a JSON string (or as data_base64); an object here has no bytes.
  if (typeof data !== 'string') {
    throw new DecodeError(`structured CloudEvent data of content type ${contentType} must be a string`);
  }
  return Buffer.from(data, 'utf8');
}
