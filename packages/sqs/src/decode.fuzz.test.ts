/**
 * Fuzzing the SQS (and SNS mode) decode path: a received message's attributes and body as the SDK hands
 * them over → attributesToHeaders → the transport's decode. The answer is an envelope or a DecodeError,
 * never another error, and no prototype changes. OMNIBUS_FUZZ_SEED replays a run.
 */
import type { MessageAttributeValue } from '@aws-sdk/client-sqs';
import { toStructured } from '@omnibus/core';
import { checkDecode } from '@omnibus/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { attributesToHeaders, PACKED_HEADERS_ATTRIBUTE } from './attributes.js';
import { SqsTransport } from './transport.js';

const SEED = Number(process.env.OMNIBUS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const transport = new SqsTransport({ endpoint: 'http://127.0.0.1:1', region: 'us-east-1' });

const name = fc.oneof(
  fc.constantFrom(PACKED_HEADERS_ATTRIBUTE, 'omnibus-type', '__proto__', 'constructor', 'x-omnibus-attempts'),
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/),
);
const packed = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom('__proto__', 'constructor', 'tenant'), fc.string({ maxLength: 6 })),
      fc.oneof(fc.string({ maxLength: 8 }), fc.integer()),
    ),
    { maxLength: 4 },
  )
  .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
const attribute: fc.Arbitrary<MessageAttributeValue> = fc.oneof(
  fc.oneof(fc.string({ maxLength: 20 }), packed).map((StringValue) => ({ DataType: 'String', StringValue })),
  fc.uint8Array({ maxLength: 12 }).map((BinaryValue) => ({ DataType: 'Binary', BinaryValue })),
  fc.constant({ DataType: 'Number' }),
);
// The SDK builds attribute maps from JSON, so every name arrives as an own property.
const attributes = fc.array(fc.tuple(name, attribute), { maxLength: 6 }).map((entries) => {
  const out: Record<string, MessageAttributeValue> = {};
  for (const [k, v] of entries)
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
});

const body = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc
    .record({
      id: fc.string({ minLength: 1 }),
      type: fc.string({ minLength: 1 }),
      source: fc.string({ minLength: 1 }),
      data: fc.uint8Array({ maxLength: 16 }),
      contentType: fc.constantFrom('application/json', 'application/octet-stream'),
    })
    .map((e) =>
      Buffer.from(
        toStructured({
          ...e,
          time: 0,
          correlationId: e.id,
          version: 1,
          headers: {},
          data: Buffer.from(e.data),
        }).body,
      ).toString('utf8'),
    ),
);

describe('decode fuzzing (sqs)', () => {
  it('12,000 messages: attributesToHeaders never throws, decode gives an envelope or a DecodeError', () => {
    const seen = { envelope: 0, 'decode-error': 0 };
    fc.assert(
      fc.property(attributes, body, (attrs, text) => {
        const headers = attributesToHeaders(attrs);
        expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
        seen[checkDecode((w) => transport.decode(w), { body: Buffer.from(text, 'utf8'), headers })]++;
      }),
      { seed: SEED, numRuns: 12_000 },
    );
    expect(seen.envelope).toBeGreaterThan(100);
    expect(seen['decode-error']).toBeGreaterThan(100);
  }, 60_000);
});
