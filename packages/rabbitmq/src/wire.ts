/**
 * Maps between the core's WireMessage (bytes + string headers) and AMQP 0-9-1 messages: CloudEvents binary
 * mode with `cloudEvents_` headers, the native AMQP properties, and defensive reading of whatever arrives.
 */
import { type BinaryModeOptions, setHeader, type WireMessage } from '@omnibus/core';
import type { Message, Options } from 'amqplib';

export const CE_PREFIX = 'cloudEvents_';
/**
 * The CloudEvents AMQP binding carries `datacontenttype` in the AMQP `content_type` property; in the
 * WireMessage it travels under this pseudo-header and never becomes an AMQP table entry.
 */
export const CONTENT_TYPE_HEADER = 'content-type';

// Header names built once: a name concatenated per message is a fresh string, slower to look up.
const TYPE_HEADER = `${CE_PREFIX}type`;
const ID_HEADER = `${CE_PREFIX}id`;
const CORRELATION_HEADER = `${CE_PREFIX}correlationid`;
const SOURCE_HEADER = `${CE_PREFIX}source`;
const TIME_HEADER = `${CE_PREFIX}time`;
const PARTITION_KEY_HEADER = `${CE_PREFIX}partitionkey`;

const BROKER_HEADER_PREFIXES = ['x-first-death-', 'x-last-death-', 'x-opt-'];
const BROKER_HEADERS = new Set(['x-death', 'x-delivery-count', 'x-received-from', 'x-stream-offset']);

/** Headers RabbitMQ adds (dead-lettering history, delivery counts, stream offsets, shovel/federation marks). */
export function isBrokerHeader(name: string): boolean {
  if (BROKER_HEADERS.has(name)) return true;
  for (const p of BROKER_HEADER_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

export const binaryMode: BinaryModeOptions = {
  prefix: CE_PREFIX,
  contentTypeHeader: CONTENT_TYPE_HEADER,
  isBrokerHeader,
};

/**
 * One AMQP header value as a string, or undefined when it has no faithful string form (tables, arrays such
 * as `x-death`): foreign publishers and the broker put numbers, booleans, byte arrays and timestamps there.
 */
export function headerString(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value);
    case 'object':
      if (value === null) return undefined;
      if (Buffer.isBuffer(value)) return value.toString('utf8');
      if (value instanceof Date) return value.toISOString();
      // amqplib's typed values, e.g. `{ '!': 'timestamp', value: 1700000000 }` (seconds).
      if ('!' in value && 'value' in value && typeof value.value === 'number') return String(value.value);
      return undefined;
    default:
      return undefined;
  }
}

/** The WireMessage for a received AMQP message; never throws, whatever the bytes and headers are. */
export function wireFromAmqp(msg: Message): WireMessage {
  const headers: Record<string, string> = {};
  const raw = msg.properties.headers;
  if (raw && typeof raw === 'object') {
    for (const name of Object.keys(raw)) {
      const value = raw[name];
      // Omnibus publishers send only strings: take those as they are, convert the rest.
      const v = typeof value === 'string' ? value : headerString(value);
      if (v !== undefined) setHeader(headers, name, v);
    }
  }
  const ct = headerString(msg.properties.contentType);
  if (ct !== undefined) headers[CONTENT_TYPE_HEADER] = ct;
  return { body: msg.content, headers, key: headers[PARTITION_KEY_HEADER] };
}

export interface AmqpPublish {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/**
 * WireMessage → exchange, routing key, body and AMQP properties (persistent, native CloudEvents properties).
 * `mandatory` asks the broker to return the message when no queue is bound for it (onNoSubscribers 'reject').
 */
export function amqpFromWire(exchange: string, wire: WireMessage, mandatory: boolean): AmqpPublish {
  const h = wire.headers;
  // A copy without the content-type pseudo-header: amqplib writes every key of `headers` into the table.
  const headers: Record<string, string> = {};
  for (const name in h) if (name !== CONTENT_TYPE_HEADER) headers[name] = h[name]!;
  const type = h[TYPE_HEADER];
  const options: Options.Publish = {
    persistent: true,
    mandatory,
    headers,
    contentType: h[CONTENT_TYPE_HEADER],
    messageId: h[ID_HEADER],
    correlationId: h[CORRELATION_HEADER],
    type,
    appId: h[SOURCE_HEADER],
    timestamp: undefined,
  };
  const time = h[TIME_HEADER];
  if (time !== undefined) {
    const ms = Date.parse(time);
    // AMQP timestamps are whole seconds; the CloudEvents time header keeps the milliseconds.
    if (!Number.isNaN(ms)) options.timestamp = Math.floor(ms / 1000);
  }
  return { exchange, routingKey: type ?? '', content: toBuffer(wire.body), options };
}

/**
 * Properties for re-publishing a received message (retry tier, dead-letter): same body and properties,
 * broker bookkeeping removed so the next hop starts clean, control headers replaced.
 */
export function republishOptions(
  msg: Message,
  controlHeaders: Record<string, string>,
  drop: readonly string[] = [],
): Options.Publish {
  const headers: Record<string, unknown> = {};
  const raw = msg.properties.headers;
  if (raw && typeof raw === 'object') {
    for (const name of Object.keys(raw)) if (!isBrokerHeader(name)) headers[name] = raw[name];
  }
  for (const name of drop) delete headers[name];
  Object.assign(headers, controlHeaders);
  const p = msg.properties;
  const options: Options.Publish = { persistent: true, mandatory: true, headers };
  if (p.contentType !== undefined) options.contentType = p.contentType;
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding;
  if (p.messageId !== undefined) options.messageId = p.messageId;
  if (p.correlationId !== undefined) options.correlationId = p.correlationId;
  if (p.type !== undefined) options.type = p.type;
  if (p.appId !== undefined) options.appId = p.appId;
  if (p.timestamp !== undefined) options.timestamp = p.timestamp;
  if (p.replyTo !== undefined) options.replyTo = p.replyTo;
  if (p.priority !== undefined) options.priority = p.priority;
  return options;
}

function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}
