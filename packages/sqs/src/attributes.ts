/**
 * Headers ↔ SQS message attributes. SQS allows at most 10 attributes, restricts their names and
 * refuses empty values, so when the headers do not fit as plain attributes they all travel packed
 * as JSON in the single attribute `omnibus-headers`.
 */
import type { MessageAttributeValue } from '@aws-sdk/client-sqs';
import { setHeader } from '@omnibus/core';

export const PACKED_HEADERS_ATTRIBUTE = 'omnibus-headers';
/** SNS mode's copy of the envelope type, for subscription filter policies; never a header. */
export const TYPE_ATTRIBUTE = 'omnibus-type';
export const MAX_ATTRIBUTES = 10;
const STRING = 'String';

// SQS attribute names: letters, digits, `_`, `-`, `.`; no leading, trailing or doubled `.`;
// `AWS.` and `Amazon.` prefixes are reserved (any case); at most 256 characters.
const NAME_CHARS = /^[A-Za-z0-9_.-]{1,256}$/;
const RESERVED_PREFIX = /^(aws|amazon)\./i;
// Values (and bodies) must be XML 1.0 characters; a lone surrogate matches none of these ranges.
const XML_TEXT = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]+$/u;

export function isValidAttributeName(name: string): boolean {
  return (
    NAME_CHARS.test(name) &&
    !name.startsWith('.') &&
    !name.endsWith('.') &&
    !name.includes('..') &&
    !RESERVED_PREFIX.test(name)
  );
}

export function isValidAttributeValue(value: string): boolean {
  return XML_TEXT.test(value);
}

/** JSON.stringify already escapes control characters and lone surrogates; these two remain outside XML. */
function xmlSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\uFFFE\uFFFF]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** Headers as SQS attributes: one attribute each when they all qualify, otherwise all packed in one. */
export function headersToAttributes(
  headers: Record<string, string>,
  maxAttributes = MAX_ATTRIBUTES,
): Record<string, MessageAttributeValue> {
  const names = Object.keys(headers);
  const attrs: Record<string, MessageAttributeValue> = {};
  if (names.length === 0) return attrs;
  let plain = names.length <= maxAttributes;
  if (plain) {
    for (const name of names) {
      if (
        name === PACKED_HEADERS_ATTRIBUTE ||
        name === TYPE_ATTRIBUTE ||
        !isValidAttributeName(name) ||
        !isValidAttributeValue(headers[name]!)
      ) {
        plain = false;
        break;
      }
    }
  }
  if (!plain) {
    attrs[PACKED_HEADERS_ATTRIBUTE] = { DataType: STRING, StringValue: xmlSafeJson(headers) };
    return attrs;
  }
  // setHeader: a header named `__proto__` stays an attribute instead of becoming the object's prototype.
  for (const name of names) setHeader(attrs, name, { DataType: STRING, StringValue: headers[name]! });
  return attrs;
}

function attributeText(value: MessageAttributeValue): string {
  if (value.StringValue !== undefined) return value.StringValue;
  if (value.BinaryValue !== undefined) return Buffer.from(value.BinaryValue).toString('base64');
  return '';
}

/**
 * SQS attributes → headers. Never throws: a message from a foreign producer may carry anything, and
 * delivery must still reach the core (whose decode then decides). A packed attribute that is not a
 * JSON object of strings is kept as a plain header.
 */
export function attributesToHeaders(
  attrs: Record<string, MessageAttributeValue> | undefined,
): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!attrs) return headers;
  // Own names only, and only attribute-shaped values: a foreign producer's attribute named `__proto__`
  // or `constructor` must neither pull in inherited names nor stop the receive loop.
  for (const name of Object.keys(attrs)) {
    if (name === TYPE_ATTRIBUTE) continue;
    const value: unknown = attrs[name];
    if (value === null || typeof value !== 'object') continue;
    const text = attributeText(value as MessageAttributeValue);
    if (name === PACKED_HEADERS_ATTRIBUTE) {
      const unpacked = parsePacked(text);
      if (unpacked) {
        for (const k of Object.keys(unpacked)) setHeader(headers, k, unpacked[k]!);
        continue;
      }
    }
    setHeader(headers, name, text);
  }
  return headers;
}

function parsePacked(text: string): Record<string, string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== 'string') return undefined;
    setHeader(out, k, v);
  }
  return out;
}

/** The size SQS charges an entry against MaximumMessageSize: body plus each attribute's name, type and value. */
export function sqsMessageBytes(body: string, attrs: Record<string, MessageAttributeValue>): number {
  let size = Buffer.byteLength(body, 'utf8');
  for (const name in attrs) {
    const a = attrs[name]!;
    size += Buffer.byteLength(name, 'utf8') + Buffer.byteLength(a.DataType ?? '', 'utf8');
    if (a.StringValue !== undefined) size += Buffer.byteLength(a.StringValue, 'utf8');
    if (a.BinaryValue !== undefined) size += a.BinaryValue.byteLength;
  }
  return size;
}
