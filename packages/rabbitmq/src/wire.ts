/**
 * Maps between the core's WireMessage (bytes + string headers) and AMQP 0-9-1 messages: the CloudEvents
 * attributes that have a native AMQP property travel in it (message_id, type, app_id, timestamp,
 * content_type, correlation_id), the rest as `cloudEvents_` headers, and whatever arrives is read defensively,
 * including the earlier form that carried every attribute as a header.
 */
import { type BinaryModeOptions, CE_SPEC_VERSION, setHeader, type WireMessage } from '@omnibus/core';
import type { Message, Options } from 'amqplib';

export const CE_PREFIX = 'cloudEvents_';
/**
 * The CloudEvents AMQP binding carries `datacontenttype` in the AMQP `content_type` property; in the
 * WireMessage it travels under this pseudo-header and never becomes an AMQP table entry.
 */
export const CONTENT_TYPE_HEADER = 'content-type';

// Header names built once: a name concatenated per message is a fresh string, slower to look up.
const SPEC_VERSION_HEADER = `${CE_PREFIX}specversion`;
const TYPE_HEADER = `${CE_PREFIX}type`;
const ID_HEADER = `${CE_PREFIX}id`;
const CORRELATION_HEADER = `${CE_PREFIX}correlationid`;
const SOURCE_HEADER = `${CE_PREFIX}source`;
const TIME_HEADER = `${CE_PREFIX}time`;
const PARTITION_KEY_HEADER = `${CE_PREFIX}partitionkey`;

// AMQP timestamps are whole seconds. Messages sent or read together mostly share one time string, so the
// last conversion each way is remembered rather than parsing or formatting the same time again.
let lastTimeText = '';
let lastTimeMs = Number.NaN;
let lastSeconds = Number.NaN;
let lastSecondsText = '';

function timeMs(text: string): number {
  if (text !== lastTimeText) {
    lastTimeMs = Date.parse(text);
    lastTimeText = text;
  }
  return lastTimeMs;
}

function secondsText(seconds: number): string {
  if (seconds !== lastSeconds) {
    lastSecondsText = new Date(seconds * 1000).toISOString();
    lastSeconds = seconds;
  }
  return lastSecondsText;
}

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
      // An invalid Date has no ISO form (toISOString throws): dropped like any value without a text.
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
      // amqplib's typed values, e.g. `{ '!': 'timestamp', value: 1700000000 }` (seconds).
      if ('!' in value && 'value' in value && typeof value.value === 'number') return String(value.value);
      return undefined;
    default:
      return undefined;
  }
}

/**
 * The WireMessage for a received AMQP message; never throws, whatever the bytes and headers are. The native
 * properties become the CloudEvents headers the core's binary mode reads, unless the message carries those
 * headers itself (the earlier wire form, or a foreign CloudEvents publisher): headers win.
 */
export function wireFromAmqp(msg: Message): WireMessage {
  const headers: Record<string, string> = {};
  const p = msg.properties;
  const raw = p.headers;
  if (raw && typeof raw === 'object') {
    for (const name of Object.keys(raw)) {
      const value = raw[name];
      // Omnibus publishers send only strings: take those as they are, convert the rest.
      const v = typeof value === 'string' ? value : headerString(value);
      if (v !== undefined) setHeader(headers, name, v);
    }
  }
  const ct = headerString(p.contentType);
  if (ct !== undefined) headers[CONTENT_TYPE_HEADER] = ct;
  const id = headerString(p.messageId);
  if (id !== undefined && id !== '') {
    // A message id is what makes a message without CloudEvents headers an event: a plain AMQP publisher
    // that sets message_id, type and app_id is read as a CloudEvents 1.0 event.
    if (headers[SPEC_VERSION_HEADER] === undefined) headers[SPEC_VERSION_HEADER] = CE_SPEC_VERSION;
    if (headers[ID_HEADER] === undefined) headers[ID_HEADER] = id;
    if (headers[TYPE_HEADER] === undefined) {
      // Without a type property the routing key stands in: the topic's bindings matched on it.
      const type = headerString(p.type) ?? msg.fields.routingKey;
      if (type) headers[TYPE_HEADER] = type;
    }
    if (headers[SOURCE_HEADER] === undefined) {
      const source = headerString(p.appId);
      if (source !== undefined) headers[SOURCE_HEADER] = source;
    }
    if (headers[CORRELATION_HEADER] === undefined) {
      const correlation = headerString(p.correlationId);
      // Equal to the id is the default, which the slim form leaves implicit.
      if (correlation !== undefined && correlation !== id) headers[CORRELATION_HEADER] = correlation;
    }
    if (headers[TIME_HEADER] === undefined && typeof p.timestamp === 'number') {
      headers[TIME_HEADER] = secondsText(p.timestamp);
    }
  }
  return { body: msg.content, headers, key: headers[PARTITION_KEY_HEADER] };
}

export interface AmqpPublish {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/**
 * WireMessage → exchange, routing key, body and AMQP properties. The attributes with a native property go
 * there and not into the header table (each table entry is encoded and decoded per message); the time's
 * milliseconds stay in the `cloudEvents_time` header only when the whole seconds of `timestamp` lose some.
 * `mandatory` asks the broker to return the message when no queue is bound for it (onNoSubscribers 'reject').
 */
export function amqpFromWire(exchange: string, wire: WireMessage, mandatory: boolean): AmqpPublish {
  const h = wire.headers;
  const headers: Record<string, string> = {};
  for (const name in h) {
    switch (name) {
      case CONTENT_TYPE_HEADER:
      case ID_HEADER:
      case TYPE_HEADER:
      case SOURCE_HEADER:
      case CORRELATION_HEADER:
      case TIME_HEADER:
        continue;
      default:
        headers[name] = h[name]!;
    }
  }
  const type = h[TYPE_HEADER];
  const id = h[ID_HEADER];
  const options: Options.Publish = {
    persistent: true,
    mandatory,
    headers,
    contentType: h[CONTENT_TYPE_HEADER],
    messageId: id,
    // Always set, even when it is the id (the CloudEvents default): plain AMQP readers look for it here.
    correlationId: h[CORRELATION_HEADER] ?? id,
    type,
    appId: h[SOURCE_HEADER],
    timestamp: undefined,
  };
  const time = h[TIME_HEADER];
  if (time !== undefined) {
    const ms = timeMs(time);
    if (Number.isNaN(ms)) {
      headers[TIME_HEADER] = time;
    } else {
      options.timestamp = Math.floor(ms / 1000);
      if (ms % 1000 !== 0) headers[TIME_HEADER] = time;
    }
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
