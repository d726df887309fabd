/**
 * Fuzzing the Kafka decode path: a record as kafkajs hands it over (header values as Buffers, strings or
 * arrays of them, repeated names, any bytes) → the driver's FetchedRecord → the transport's decode. The
 * answer is an envelope or a DecodeError, never another error, and no prototype changes.
 * OMNIBUS_FUZZ_SEED replays a run.
 */
import { CE_HEADER_ATTRIBUTES, checkDecode, FUZZ_SEED } from '@omnibus/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FetchedRecord } from './driver.js';
import { KafkaTransport } from './transport.js';

const transport = new KafkaTransport({ brokers: ['127.0.0.1:1'] });

const name = fc.oneof(
  fc.constantFrom(
    ...CE_HEADER_ATTRIBUTES.map((n) => `ce_${n}`),
    'content-type',
    '__proto__',
    'constructor',
    'traceparent',
  ),
  fc.string({ unit: 'binary', maxLength: 12 }),
);
const bytes = fc.oneof(
  fc.constantFrom('1.0', '', 'application/json', '2024-01-01T00:00:00Z', '-1').map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b)),
);
const headerValue = fc.oneof(
  { weight: 5, arbitrary: bytes },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }) },
  { weight: 1, arbitrary: fc.array(bytes, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

// kafkajs builds its header object with computed keys, so `__proto__` arrives as an own property.
const headers = fc.array(fc.tuple(name, headerValue), { maxLength: 8 }).map((entries) => {
  let h: Record<string, unknown> = {};
  for (const [k, v] of entries) h = { ...h, [k]: v };
  return h;
});
const valid = fc.record({
  ce_specversion: fc.constant(Buffer.from('1.0')),
  ce_id: fc.string({ minLength: 1 }).map((s) => Buffer.from(s)),
  ce_type: fc.string({ minLength: 1 }).map((s) => Buffer.from(s)),
  ce_source: fc.string({ minLength: 1 }).map((s) => Buffer.from(s)),
});

const record = fc
  .tuple(
    fc.oneof(
      headers,
      fc.tuple(valid, headers).map(([a, b]) => ({ ...a, ...b })),
    ),
    fc.option(fc.uint8Array({ maxLength: 64 }), { nil: null }),
    fc.option(fc.uint8Array({ maxLength: 8 }), { nil: null }),
    fc.oneof(fc.integer({ min: 0 }).map(String), fc.string({ maxLength: 5 })),
  )
  .map(([h, value, key, timestamp]) => ({
    offset: '0',
    timestamp,
    headers: h,
    value: value && Buffer.from(value),
    key: key && Buffer.from(key),
  }));

describe('decode fuzzing (kafka)', () => {
  it('12,000 records: FetchedRecord never throws, decode gives an envelope or a DecodeError', () => {
    const seen = { envelope: 0, 'decode-error': 0 };
    fc.assert(
      fc.property(record, (m) => {
        const r = new FetchedRecord(m as never);
        seen[checkDecode((w) => transport.decode(w), { body: r.value, headers: r.headers, key: r.key })]++;
        // The copy a retry or dead letter is written from: own byte values only, whatever the names were.
        const raw = r.rawHeaders;
        expect(Object.getPrototypeOf(raw)).toBe(Object.prototype);
        for (const k of Object.keys(raw)) expect(raw[k]).toBeInstanceOf(Uint8Array);
      }),
      { seed: FUZZ_SEED, numRuns: 12_000 },
    );
    expect(seen.envelope).toBeGreaterThan(100);
    expect(seen['decode-error']).toBeGreaterThan(100);
  }, 60_000);
});
