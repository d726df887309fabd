/**
 * Property-based fuzzing of the core's decode path: CloudEvents binary mode under every binding's options,
 * structured mode, the codecs and the memory transport's decode. Whatever the bytes and headers, the answer
 * is an envelope or a DecodeError, never another error, and no built-in prototype changes. The seed is
 * printed on failure; OMNIBUS_FUZZ_SEED replays it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromBinary, fromStructured, setHeader, toBinary, toStructured } from './cloudevents.js';
import { CodecRegistry } from './codec.js';
import type { RawEnvelope, WireMessage } from './envelope.js';
import { DecodeError } from './errors.js';
import { memoryTransport } from './memory/transport.js';
import { CE_HEADER_ATTRIBUTES, checkDecode, FUZZ_SEED, prototypeChanges } from './testing/decode-contract.js';

const SEED = FUZZ_SEED;
const params = (numRuns: number) => ({ seed: SEED, numRuns });
// Every fuzzed call must finish well inside the suite's budget: a decode that hangs fails the test.
const TIMEOUT_MS = 60_000;

/** Every binding the adapters use (copied here: the core never imports an adapter). */
const BINDINGS = {
  memory: { prefix: 'ce_' },
  kafka: { prefix: 'ce_', contentTypeHeader: 'content-type' },
  nats: {
    prefix: 'ce_',
    contentTypeHeader: 'content-type',
    isBrokerHeader: (n: string) => /^nats-/i.test(n),
  },
  rabbitmq: { prefix: 'cloudEvents_', contentTypeHeader: 'content-type' },
} as const;

const TRICKY_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'];
const TRICKY_VALUES = [
  '',
  '1.0',
  '0.3',
  '1',
  '0',
  '-1',
  'NaN',
  'Infinity',
  '1e309',
  '9007199254740993',
  'yesterday',
  '2024-02-30T25:61:61Z',
  '\uD800',
  '\uFFFD',
  'application/json',
  'application/xml',
  'text/plain',
  '00-zz-zz-01',
  '{"__proto__":{"polluted":true}}',
  'x'.repeat(1_000),
];

const text = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...TRICKY_VALUES) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer().map(String) },
);

/** Deeply nested JSON text (arrays or objects): mostly shallow, now and then 10,000 to 100,000 levels. */
const deepJson = fc
  .tuple(
    fc.oneof(
      // Deep documents cost up to 0.2 s each to refuse: rare here, and checked at 100,000 levels below.
      { weight: 300, arbitrary: fc.integer({ min: 1, max: 300 }) },
      { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 100_000 }) },
    ),
    fc.boolean(),
  )
  .map(([depth, objects]) =>
    objects ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}${']'.repeat(depth)}`,
  );

const jsonWithTrickyKeys = fc
  .dictionary(
    fc.oneof(fc.constantFrom(...TRICKY_NAMES), fc.string({ maxLength: 8 })),
    fc.jsonValue({ maxDepth: 2 }),
    { maxKeys: 4 },
  )
  .map((o) =>
    JSON.stringify(o).replace(/^\{/, '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}},'),
  )
  .map((s) => s.replace(/,}$/, '}'));

const body = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 3,
    arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8')),
  },
  { weight: 2, arbitrary: jsonWithTrickyKeys.map((s) => Buffer.from(s, 'utf8')) },
  { weight: 1, arbitrary: deepJson.map((s) => Buffer.from(s, 'utf8')) },
);

const envelope: fc.Arbitrary<RawEnvelope> = fc.record({
  id: fc.string({ minLength: 1, maxLength: 36 }),
  type: fc.string({ minLength: 1, maxLength: 20 }),
  source: fc.string({ minLength: 1, maxLength: 20 }),
  time: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  key: fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
  correlationId: fc.string({ maxLength: 36 }),
  causationId: fc.option(fc.string({ minLength: 1, maxLength: 36 }), { nil: undefined }),
  traceparent: fc.option(fc.string({ minLength: 1, maxLength: 60 }), { nil: undefined }),
  tracestate: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: undefined }),
  version: fc.integer({ min: 1, max: 1_000_000 }),
  contentType: fc.constantFrom(
    'application/json',
    'application/octet-stream',
    'text/plain',
    'application/x+json',
  ),
  headers: fc.constant({}),
  data: body,
});

type Edit = { name: string; value: string | null };
const edits = (prefix: string) =>
  fc.array(
    fc.record({
      name: fc.oneof(
        fc.constantFrom(
          ...CE_HEADER_ATTRIBUTES.map((a) => `${prefix}${a}`),
          'content-type',
          'traceparent',
          'tracestate',
          'x-omnibus-attempts',
          ...TRICKY_NAMES,
        ),
        fc.string({ unit: 'binary', maxLength: 12 }),
      ),
      // null deletes the header
      value: fc.option(text, { nil: null }),
    }),
    { maxLength: 5 },
  );

function applyEdits(headers: Record<string, string>, list: Edit[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(headers)) setHeader(out, name, headers[name]!);
  for (const e of list) {
    if (e.value === null) delete out[e.name];
    else setHeader(out, e.name, e.value);
  }
  return out;
}

/** A binary-mode wire: a valid event with edits, or headers and bytes from nowhere. */
function binaryWire(options: (typeof BINDINGS)[keyof typeof BINDINGS]): fc.Arbitrary<WireMessage> {
  return fc.oneof(
    fc.tuple(envelope, edits(options.prefix)).map(([env, list]) => {
      const w = toBinary(env, options);
      return { body: w.body, headers: applyEdits(w.headers, list), key: w.key };
    }),
    fc.tuple(edits(options.prefix), body).map(([list, b]) => ({ body: b, headers: applyEdits({}, list) })),
  );
}

const codecs = new CodecRegistry();

/**
 * Decodes the data too, the way the consumer would, inside the checked call (so one prototype check covers
 * both); a DecodeError from the codec is an accepted answer, nothing else is.
 */
function withData(decode: (w: WireMessage) => RawEnvelope): (w: WireMessage) => RawEnvelope {
  return (w) => {
    const env = decode(w);
    try {
      codecs.require(env.contentType).decode(env.data);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
    }
    return env;
  };
}

describe('decode fuzzing (core)', () => {
  for (const [name, options] of Object.entries(BINDINGS)) {
    it(
      `binary mode as ${name} binds it: 6,000 inputs give an envelope or a DecodeError`,
      () => {
        const seen = { envelope: 0, 'decode-error': 0 };
        fc.assert(
          fc.property(binaryWire(options), (wire) => {
            seen[
              checkDecode(
                withData((w) => fromBinary(w, options)),
                wire,
              )
            ]++;
          }),
          params(5_000),
        );
        // Both answers must really occur, or the generator tests only one side.
        expect(seen.envelope).toBeGreaterThan(100);
        expect(seen['decode-error']).toBeGreaterThan(100);
      },
      TIMEOUT_MS,
    );
  }

  it(
    'the memory transport decode: 3,000 inputs',
    () => {
      const t = memoryTransport({ name: `fuzz-${SEED}` });
      fc.assert(
        fc.property(binaryWire(BINDINGS.memory), (wire) => {
          checkDecode((w) => t.decode(w), wire);
        }),
        params(3_000),
      );
    },
    TIMEOUT_MS,
  );

  const docEdits = fc.array(
    fc.record({
      name: fc.oneof(
        fc.constantFrom(
          'specversion',
          'id',
          'type',
          'source',
          'time',
          'datacontenttype',
          'data',
          'data_base64',
          'schemaversion',
          'partitionkey',
          'correlationid',
          ...TRICKY_NAMES,
        ),
        fc.string({ maxLength: 8 }),
      ),
      value: fc.option(fc.oneof(fc.jsonValue({ maxDepth: 2 }), text), { nil: null }),
    }),
    { maxLength: 4 },
  );

  /** Structured-mode bodies: a valid document with edits, deep data, or byte-level damage. */
  const structuredWire: fc.Arbitrary<WireMessage> = fc.oneof(
    fc
      .tuple(envelope, docEdits, fc.array(fc.tuple(fc.constantFrom(...TRICKY_NAMES, 'tenant'), text)))
      .map(([env, list, hdrs]) => {
        const written = Buffer.from(toStructured(env).body).toString('utf8');
        let doc: Record<string, unknown>;
        try {
          doc = JSON.parse(written) as Record<string, unknown>;
        } catch {
          // Bytes that are not JSON under a JSON content type: the producer wrote broken JSON; keep it.
          return { body: Buffer.from(written, 'utf8'), headers: {} };
        }
        for (const e of list) {
          if (e.value === null) delete doc[e.name];
          else
            Object.defineProperty(doc, e.name, {
              value: e.value,
              enumerable: true,
              writable: true,
              configurable: true,
            });
        }
        const headers: Record<string, string> = {};
        for (const [n, v] of hdrs) setHeader(headers, n, v);
        let edited: string;
        try {
          edited = JSON.stringify(doc);
        } catch {
          edited = written; // data too deep to write again: the document as the producer wrote it
        }
        return { body: Buffer.from(edited, 'utf8'), headers };
      }),
    fc.tuple(envelope, deepJson).map(([env, deep]) => {
      const text = Buffer.from(
        toStructured({ ...env, contentType: 'application/json', data: Buffer.from('0') }).body,
      )
        .toString('utf8')
        .replace(/"data":0}$/, `"data":${deep}}`);
      return { body: Buffer.from(text, 'utf8'), headers: {} };
    }),
    fc.tuple(envelope, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([env, at, bytes]) => {
      const b = Buffer.from(toStructured(env).body);
      const i = at % Math.max(1, b.length);
      return { body: Buffer.concat([b.subarray(0, i), bytes, b.subarray(i + bytes.length)]), headers: {} };
    }),
    body.map((b) => ({ body: b, headers: {} })),
  );

  it(
    'structured mode (SQS, SNS): 12,000 inputs give an envelope or a DecodeError',
    () => {
      const seen = { envelope: 0, 'decode-error': 0 };
      fc.assert(
        fc.property(structuredWire, (wire) => {
          seen[checkDecode(withData(fromStructured), wire)]++;
        }),
        params(12_000),
      );
      expect(seen.envelope).toBeGreaterThan(100);
      expect(seen['decode-error']).toBeGreaterThan(100);
    },
    TIMEOUT_MS,
  );

  it('100,000 levels of nesting: a DecodeError or an envelope on every path, never a stack overflow', () => {
    const depth = 100_000;
    for (const deep of [
      `${'['.repeat(depth)}${']'.repeat(depth)}`,
      `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
    ]) {
      const doc = `{"specversion":"1.0","id":"1","type":"t","source":"s","data":${deep}}`;
      expect(checkDecode(withData(fromStructured), { body: Buffer.from(doc), headers: {} })).toBe(
        'decode-error',
      );
      const headers = { ce_specversion: '1.0', ce_id: '1', ce_type: 't', ce_source: 's' };
      // Binary mode carries the bytes as they are; JSON.parse is iterative, so the data decodes too.
      expect(
        checkDecode(
          withData((w) => fromBinary(w, BINDINGS.kafka)),
          { body: Buffer.from(deep), headers },
        ),
      ).toBe('envelope');
    }
  });

  it(
    'codecs by content type: 5,000 bodies decode or give a DecodeError',
    () => {
      fc.assert(
        fc.property(
          body,
          fc.oneof(fc.constantFrom('application/json', 'application/cloudevents+json', 'text/json'), text),
          (b, contentType) => {
            try {
              codecs.require(contentType).decode(b);
            } catch (err) {
              if (!(err instanceof DecodeError)) throw err;
            }
            expect(prototypeChanges()).toEqual([]);
          },
        ),
        params(5_000),
      );
    },
    TIMEOUT_MS,
  );
});
