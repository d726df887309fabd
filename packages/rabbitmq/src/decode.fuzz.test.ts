/**
 * Fuzzing the RabbitMQ decode path: an AMQP message as amqplib hands it over (header tables holding any
 * field type a foreign publisher can send) → wireFromAmqp → the transport's decode. The answer is an
 * envelope or a DecodeError, never another error, and no prototype changes. OMNIBUS_FUZZ_SEED replays a run.
 */
import { CE_HEADER_ATTRIBUTES, checkDecode, FUZZ_SEED } from '@omnibus/core/testing';
import type { Message } from 'amqplib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RabbitMqTransport } from './transport.js';
import { wireFromAmqp } from './wire.js';

const transport = new RabbitMqTransport({ url: 'amqp://127.0.0.1:1' });

const name = fc.oneof(
  fc.constantFrom(
    ...CE_HEADER_ATTRIBUTES.map((n) => `cloudEvents_${n}`),
    '__proto__',
    'constructor',
    'toString',
    'traceparent',
    'x-omnibus-attempts',
    'x-death',
  ),
  fc.string({ unit: 'binary', maxLength: 12 }),
);
const scalar = fc.oneof(
  fc.constantFrom('1.0', '', 'x', '2024-01-01T00:00:00Z', 'NaN', '-1', '\uD800'),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.double(),
  fc.bigInt(),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
  fc.date({ noInvalidDate: false }),
  fc.integer().map((value) => ({ '!': 'timestamp', value })),
);
// Field values amqplib can decode: scalars, arrays and nested tables.
const value = fc.oneof(
  { weight: 5, arbitrary: scalar },
  { weight: 1, arbitrary: fc.array(scalar, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), scalar, { maxKeys: 3 }) },
);

/** A header table built the way amqplib builds one (plain assignment, so `__proto__` may retarget it). */
const table = fc.array(fc.tuple(name, value), { maxLength: 8 }).map((entries) => {
  const t: Record<string, unknown> = {};
  for (const [k, v] of entries) t[k] = v;
  return t;
});

const validTable = fc.record({
  cloudEvents_specversion: fc.constant('1.0'),
  cloudEvents_id: fc.string({ minLength: 1 }),
  cloudEvents_type: fc.string({ minLength: 1 }),
  cloudEvents_source: fc.string({ minLength: 1 }),
});

const message: fc.Arbitrary<Message> = fc
  .tuple(
    fc.oneof(
      table,
      fc.tuple(validTable, table).map(([a, b]) => ({ ...a, ...b })),
    ),
    fc.option(fc.oneof(fc.constantFrom('application/json', 'text/xml'), fc.string({ maxLength: 10 })), {
      nil: undefined,
    }),
    fc.uint8Array({ maxLength: 64 }),
  )
  .map(
    ([headers, contentType, content]) =>
      ({
        content: Buffer.from(content),
        fields: {},
        properties: { headers, contentType },
      }) as unknown as Message,
  );

describe('decode fuzzing (rabbitmq)', () => {
  it('16,000 AMQP messages: wireFromAmqp never throws, decode gives an envelope or a DecodeError', () => {
    const seen = { envelope: 0, 'decode-error': 0 };
    fc.assert(
      fc.property(message, (m) => {
        seen[checkDecode((w) => transport.decode(w), wireFromAmqp(m))]++;
      }),
      { seed: FUZZ_SEED, numRuns: 16_000 },
    );
    expect(seen.envelope).toBeGreaterThan(100);
    expect(seen['decode-error']).toBeGreaterThan(100);
  }, 60_000);
});
