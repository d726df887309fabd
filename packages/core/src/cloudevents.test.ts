import { describe, expect, it } from 'vitest';
import {
  CE_SPEC_VERSION,
  fromBinary,
  fromStructured,
  STRUCTURED_CONTENT_TYPE,
  toBinary,
  toStructured,
} from './cloudevents.js';
import { ControlHeader, type RawEnvelope } from './envelope.js';
import { DecodeError } from './errors.js';

const json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8');

function envelope(overrides: Partial<RawEnvelope> = {}): RawEnvelope {
  return {
    id: '0190b6d2-0000-7000-8000-000000000001',
    type: 'order.placed',
    source: 'checkout',
    time: Date.UTC(2024, 4, 17, 10, 11, 12, 345),
    key: 'customer-7',
    correlationId: 'corr-1',
    causationId: 'cause-1',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tracestate: 'vendor=abc',
    version: 3,
    contentType: 'application/json',
    headers: { tenant: 'acme', 'x-request-id': 'r-1' },
    data: json({ orderId: 'o-1', totalCents: 4200 }),
    ...overrides,
  };
}

/** Compares envelopes with data as text (Buffers and Uint8Arrays differ in class only). */
function comparable(e: RawEnvelope) {
  return { ...e, data: Buffer.from(e.data).toString('utf8') };
}

describe('CloudEvents binary mode', () => {
  const kafka = { prefix: 'ce_', contentTypeHeader: 'content-type' };
  const amqp = { prefix: 'cloudEvents_' };

  it('writes every attribute as a prefixed header, with ms-precision RFC 3339 time', () => {
    const w = toBinary(envelope(), amqp);
    expect(w.headers).toEqual({
      tenant: 'acme',
      'x-request-id': 'r-1',
      cloudEvents_specversion: '1.0',
      cloudEvents_id: '0190b6d2-0000-7000-8000-000000000001',
      cloudEvents_type: 'order.placed',
      cloudEvents_source: 'checkout',
      cloudEvents_time: '2024-05-17T10:11:12.345Z',
      cloudEvents_datacontenttype: 'application/json',
      cloudEvents_correlationid: 'corr-1',
      cloudEvents_causationid: 'cause-1',
      cloudEvents_schemaversion: '3',
      cloudEvents_partitionkey: 'customer-7',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'vendor=abc',
    });
    expect(w.key).toBe('customer-7');
    expect(Buffer.from(w.body).toString()).toBe('{"orderId":"o-1","totalCents":4200}');
  });

  it('uses the content-type header the binding asks for', () => {
    const w = toBinary(envelope({ contentType: 'application/avro' }), kafka);
    expect(w.headers['content-type']).toBe('application/avro');
    expect(w.headers.ce_datacontenttype).toBeUndefined();
    expect(fromBinary(w, kafka).contentType).toBe('application/avro');
  });

  it.each([
    ['kafka', kafka],
    ['amqp', amqp],
  ])('round-trips every attribute and user header (%s)', (_name, options) => {
    const env = envelope();
    expect(comparable(fromBinary(toBinary(env, options), options))).toEqual(comparable(env));
  });

  it('round-trips a minimal envelope: optional attributes stay absent', () => {
    const env = envelope({
      key: undefined,
      causationId: undefined,
      traceparent: undefined,
      tracestate: undefined,
      headers: {},
    });
    const w = toBinary(env, kafka);
    expect(Object.keys(w.headers).sort()).toEqual(
      [
        'ce_specversion',
        'ce_id',
        'ce_type',
        'ce_source',
        'ce_time',
        'content-type',
        'ce_correlationid',
        'ce_schemaversion',
      ].sort(),
    );
    expect(comparable(fromBinary(w, kafka))).toEqual(comparable(env));
  });

  it('leaves out extensions equal to their defaults, and decoding restores them', () => {
    const env = envelope({ correlationId: envelope().id, causationId: undefined, version: 1 });
    const w = toBinary(env, kafka);
    expect(w.headers).not.toHaveProperty('ce_correlationid');
    expect(w.headers).not.toHaveProperty('ce_schemaversion');
    expect(w.headers).not.toHaveProperty('ce_causationid');
    const decoded = fromBinary(w, kafka);
    expect(decoded.correlationId).toBe(env.id);
    expect(decoded.version).toBe(1);
    expect(decoded.causationId).toBeUndefined();
    expect(comparable(decoded)).toEqual(comparable(env));
  });

  it('decodes a message that still carries the default extensions (the earlier wire form) the same', () => {
    const env = envelope({ correlationId: envelope().id, causationId: undefined, version: 1 });
    const slim = toBinary(env, kafka);
    const old = { ...slim, headers: { ...slim.headers, ce_correlationid: env.id, ce_schemaversion: '1' } };
    expect(comparable(fromBinary(old, kafka))).toEqual(comparable(fromBinary(slim, kafka)));
    expect(comparable(fromBinary(old, kafka))).toEqual(comparable(env));
  });

  it('keeps an empty-string key (only undefined means no key)', () => {
    const w = toBinary(envelope({ key: '' }), kafka);
    expect(w.headers.ce_partitionkey).toBe('');
    expect(fromBinary(w, kafka).key).toBe('');
  });

  it('keeps control, broker and CloudEvents headers out of user headers', () => {
    const w = toBinary(envelope(), kafka);
    w.headers[ControlHeader.attempts] = '2';
    w.headers[ControlHeader.lastError] = 'boom';
    w.headers['x-broker-internal'] = 'yes';
    const decoded = fromBinary(w, { ...kafka, isBrokerHeader: (n) => n.startsWith('x-broker-') });
    expect(decoded.headers).toEqual({ tenant: 'acme', 'x-request-id': 'r-1' });
  });

  it('falls back sensibly for optional attributes', () => {
    const before = Date.now();
    const decoded = fromBinary(
      {
        body: json({}),
        headers: { ce_specversion: '1.0', ce_id: 'id-1', ce_type: 't', ce_source: 's' },
        key: 'record-key',
      },
      { prefix: 'ce_' },
    );
    expect(decoded.correlationId).toBe('id-1');
    expect(decoded.version).toBe(1);
    expect(decoded.contentType).toBe('application/json');
    expect(decoded.key).toBe('record-key');
    expect(decoded.time).toBeGreaterThanOrEqual(before);
    expect(decoded.time).toBeLessThanOrEqual(Date.now());
  });

  it.each(['id', 'type', 'source'])('a missing %s is a DecodeError naming it', (attr) => {
    const w = toBinary(envelope(), kafka);
    delete w.headers[`ce_${attr}`];
    expect(() => fromBinary(w, kafka)).toThrow(DecodeError);
    expect(() => fromBinary(w, kafka)).toThrow(`"${attr}"`);
  });

  it('an empty id is a DecodeError', () => {
    const w = toBinary(envelope(), kafka);
    w.headers.ce_id = '';
    expect(() => fromBinary(w, kafka)).toThrow(DecodeError);
  });

  it('a message without CloudEvents headers is a DecodeError', () => {
    expect(() => fromBinary({ body: Buffer.from('garbage'), headers: { foo: 'bar' } }, kafka)).toThrow(
      DecodeError,
    );
  });

  it('another specversion is a DecodeError', () => {
    const w = toBinary(envelope(), kafka);
    w.headers.ce_specversion = '0.3';
    expect(() => fromBinary(w, kafka)).toThrow(/specversion 0.3/);
  });

  it.each(['yesterday', ''])('a malformed time %j is a DecodeError', (time) => {
    const w = toBinary(envelope(), kafka);
    w.headers.ce_time = time;
    expect(() => fromBinary(w, kafka)).toThrow(DecodeError);
  });

  it.each(['0', '-1', '1.5', 'two'])('a schemaversion of %j is a DecodeError', (v) => {
    const w = toBinary(envelope(), kafka);
    w.headers.ce_schemaversion = v;
    expect(() => fromBinary(w, kafka)).toThrow(DecodeError);
  });
});

describe('CloudEvents structured mode', () => {
  it('writes one application/cloudevents+json document with JSON data embedded as is', () => {
    expect(STRUCTURED_CONTENT_TYPE).toBe('application/cloudevents+json');
    const w = toStructured(envelope());
    const doc = JSON.parse(Buffer.from(w.body).toString('utf8'));
    expect(doc).toEqual({
      specversion: CE_SPEC_VERSION,
      id: '0190b6d2-0000-7000-8000-000000000001',
      type: 'order.placed',
      source: 'checkout',
      time: '2024-05-17T10:11:12.345Z',
      datacontenttype: 'application/json',
      correlationid: 'corr-1',
      causationid: 'cause-1',
      schemaversion: 3,
      partitionkey: 'customer-7',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'vendor=abc',
      data: { orderId: 'o-1', totalCents: 4200 },
    });
    // User headers travel beside the body, not inside it.
    expect(w.headers).toEqual({ tenant: 'acme', 'x-request-id': 'r-1' });
    expect(w.key).toBe('customer-7');
  });

  it('round-trips every attribute and user header', () => {
    const env = envelope();
    expect(comparable(fromStructured(toStructured(env)))).toEqual(comparable(env));
  });

  it('leaves out extensions equal to their defaults; documents with or without them decode the same', () => {
    const env = envelope({ correlationId: envelope().id, causationId: undefined, version: 1 });
    const slim = toStructured(env);
    const doc = JSON.parse(Buffer.from(slim.body).toString());
    expect(doc).not.toHaveProperty('correlationid');
    expect(doc).not.toHaveProperty('schemaversion');
    expect(doc).not.toHaveProperty('causationid');
    expect(comparable(fromStructured(slim))).toEqual(comparable(env));
    const old = { ...slim, body: json({ ...doc, correlationid: env.id, schemaversion: 1 }) };
    expect(comparable(fromStructured(old))).toEqual(comparable(env));
  });

  it.each(['application/vnd.acme+json', 'text/json', 'Application/JSON; charset=utf-8'])(
    'embeds %s data as JSON',
    (contentType) => {
      const w = toStructured(envelope({ contentType, data: json([1, 2]) }));
      const doc = JSON.parse(Buffer.from(w.body).toString());
      expect(doc.data).toEqual([1, 2]);
      expect(doc.data_base64).toBeUndefined();
      expect(Buffer.from(fromStructured(w).data).toString()).toBe('[1,2]');
    },
  );

  it('carries non-JSON data as data_base64 and restores the exact bytes', () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255, 10]);
    const env = envelope({ contentType: 'application/octet-stream', data: bytes });
    const w = toStructured(env);
    const doc = JSON.parse(Buffer.from(w.body).toString());
    expect(doc.data_base64).toBe(bytes.toString('base64'));
    expect(doc.data).toBeUndefined();
    const back = fromStructured(w);
    expect(Buffer.from(back.data).equals(bytes)).toBe(true);
    expect(back.contentType).toBe('application/octet-stream');
  });

  it('empty JSON data travels as empty data_base64, not as broken JSON', () => {
    const w = toStructured(envelope({ data: new Uint8Array(0) }));
    expect(JSON.parse(Buffer.from(w.body).toString()).data_base64).toBe('');
    expect(fromStructured(w).data.byteLength).toBe(0);
  });

  it('embeds a data view that is a slice of a larger buffer correctly', () => {
    const big = Buffer.from('xxxx{"a":1}yyyy');
    const slice = big.subarray(4, 11);
    const w = toStructured(envelope({ data: slice }));
    expect(JSON.parse(Buffer.from(w.body).toString()).data).toEqual({ a: 1 });
  });

  it('reads documents written by other producers', () => {
    const body = json({
      specversion: '1.0',
      id: 'ext-1',
      type: 'order.placed',
      source: '/other/system',
      data: 'plain text',
      datacontenttype: 'text/plain',
    });
    const before = Date.now();
    const e = fromStructured({ body, headers: { [ControlHeader.attempts]: '3', tenant: 'acme' } });
    expect(e.correlationId).toBe('ext-1');
    expect(e.version).toBe(1);
    expect(e.causationId).toBeUndefined();
    expect(e.key).toBeUndefined();
    expect(e.time).toBeGreaterThanOrEqual(before);
    expect(Buffer.from(e.data).toString()).toBe('plain text');
    expect(e.headers).toEqual({ tenant: 'acme' });
  });

  it('defaults to JSON data and an empty body when data is absent', () => {
    const e = fromStructured({
      body: json({ specversion: '1.0', id: 'i', type: 't', source: 's' }),
      headers: {},
      key: 'group-key',
    });
    expect(e.contentType).toBe('application/json');
    expect(e.data.byteLength).toBe(0);
    expect(e.key).toBe('group-key');
  });

  it('ignores attributes of the wrong type', () => {
    const e = fromStructured({
      body: json({
        specversion: '1.0',
        id: 'i',
        type: 't',
        source: 's',
        datacontenttype: 42,
        correlationid: 7,
        causationid: false,
        traceparent: 1,
        partitionkey: {},
      }),
      headers: {},
    });
    expect(e.contentType).toBe('application/json');
    expect(e.correlationId).toBe('i');
    expect(e.causationId).toBeUndefined();
    expect(e.traceparent).toBeUndefined();
    expect(e.key).toBeUndefined();
  });

  it.each([
    ['not JSON', Buffer.from('garbage{')],
    ['a JSON array', json([1, 2])],
    ['JSON null', json(null)],
    ['a JSON string', json('x')],
  ])('%s is a DecodeError', (_what, body) => {
    expect(() => fromStructured({ body, headers: {} })).toThrow(DecodeError);
  });

  it('a document without specversion 1.0 is a DecodeError', () => {
    expect(() => fromStructured({ body: json({ id: 'i', type: 't', source: 's' }), headers: {} })).toThrow(
      DecodeError,
    );
    expect(() =>
      fromStructured({ body: json({ specversion: '0.3', id: 'i', type: 't', source: 's' }), headers: {} }),
    ).toThrow(/0\.3/);
  });

  it.each(['id', 'type', 'source'])('a missing %s is a DecodeError naming it', (attr) => {
    const doc = JSON.parse(Buffer.from(toStructured(envelope()).body).toString());
    delete doc[attr];
    expect(() => fromStructured({ body: json(doc), headers: {} })).toThrow(DecodeError);
    expect(() => fromStructured({ body: json(doc), headers: {} })).toThrow(`"${attr}"`);
  });

  it('a malformed time or schemaversion is a DecodeError', () => {
    const doc = JSON.parse(Buffer.from(toStructured(envelope()).body).toString());
    expect(() => fromStructured({ body: json({ ...doc, time: 'soon' }), headers: {} })).toThrow(DecodeError);
    expect(() => fromStructured({ body: json({ ...doc, schemaversion: 0 }), headers: {} })).toThrow(
      DecodeError,
    );
  });
});

describe('CloudEvents decoding of hostile input', () => {
  const kafka = { prefix: 'ce_', contentTypeHeader: 'content-type' };
  const attrs = { ce_specversion: '1.0', ce_id: 'x-1', ce_type: 't', ce_source: 's' };

  it('keeps a user header named __proto__ as an own header without touching any prototype', () => {
    const headers: Record<string, string> = { ...attrs };
    Object.defineProperty(headers, '__proto__', { value: 'p', enumerable: true, writable: true });
    headers.constructor = 'c' as never;
    const env = fromBinary({ body: Buffer.alloc(0), headers }, kafka);
    expect(Object.getPrototypeOf(env.headers)).toBe(Object.prototype);
    expect(Object.keys(env.headers).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(env.headers, '__proto__')?.value).toBe('p');
    expect(env.headers.constructor).toBe('c');
  });

  it('turns data nested too deeply to re-encode into a DecodeError, not a stack overflow', () => {
    const depth = 100_000;
    const body = Buffer.from(
      `{"specversion":"1.0","id":"1","type":"t","source":"s","data":${'['.repeat(depth)}${']'.repeat(depth)}}`,
    );
    expect(() => fromStructured({ body, headers: {} })).toThrow(DecodeError);
  });

  it('refuses non-string data for a content type that is not JSON instead of sending "[object Object]"', () => {
    const doc = { specversion: '1.0', id: '1', type: 't', source: 's', datacontenttype: 'text/plain' };
    const ok = fromStructured({ body: json({ ...doc, data: 'hello' }), headers: {} });
    expect(Buffer.from(ok.data).toString()).toBe('hello');
    expect(() => fromStructured({ body: json({ ...doc, data: { a: 1 } }), headers: {} })).toThrow(
      DecodeError,
    );
  });

  it('refuses data_base64 that is not base64 and a document with both data members', () => {
    const doc = { specversion: '1.0', id: '1', type: 't', source: 's' };
    expect(() => fromStructured({ body: json({ ...doc, data_base64: 'not base64!' }), headers: {} })).toThrow(
      DecodeError,
    );
    expect(() =>
      fromStructured({ body: json({ ...doc, data: 1, data_base64: 'AQ==' }), headers: {} }),
    ).toThrow(DecodeError);
    expect(
      Buffer.from(fromStructured({ body: json({ ...doc, data_base64: 'AQI=' }), headers: {} }).data),
    ).toEqual(Buffer.from([1, 2]));
  });

  it('refuses a time that is not a string rather than replacing it with the time of receipt', () => {
    const doc = { specversion: '1.0', id: '1', type: 't', source: 's', time: 1700000000000 };
    expect(() => fromStructured({ body: json(doc), headers: {} })).toThrow(DecodeError);
  });

  it('keeps a structured-mode header named __proto__ as an own header', () => {
    const headers: Record<string, string> = {};
    Object.defineProperty(headers, '__proto__', { value: 'p', enumerable: true, writable: true });
    const env = fromStructured({
      body: json({ specversion: '1.0', id: '1', type: 't', source: 's' }),
      headers,
    });
    expect(Object.getPrototypeOf(env.headers)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(env.headers, '__proto__')?.value).toBe('p');
  });
});
