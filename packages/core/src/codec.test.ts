import { describe, expect, it } from 'vitest';
import { type Codec, CodecRegistry, jsonCodec, rawCodec } from './codec.js';
import { DecodeError } from './errors.js';

describe('jsonCodec', () => {
  it('round-trips JSON values as UTF-8', () => {
    const value = { a: 1, b: ['x', null, true], s: 'grüß 👋' };
    const bytes = jsonCodec.encode(value);
    expect(Buffer.from(bytes).toString('utf8')).toBe(JSON.stringify(value));
    expect(jsonCodec.decode(bytes)).toEqual(value);
    expect(jsonCodec.contentType).toBe('application/json');
  });

  it('decodes a view into a larger buffer', () => {
    const big = Buffer.from('....{"ok":true}....');
    expect(jsonCodec.decode(big.subarray(4, 15))).toEqual({ ok: true });
  });

  it('refuses to encode undefined', () => {
    expect(() => jsonCodec.encode(undefined)).toThrow(TypeError);
  });

  it('turns invalid JSON into a DecodeError', () => {
    expect(() => jsonCodec.decode(Buffer.from('{nope'))).toThrow(DecodeError);
    expect(() => jsonCodec.decode(new Uint8Array(0))).toThrow(/not valid JSON/);
  });
});

describe('rawCodec', () => {
  it('passes bytes through and encodes strings as UTF-8', () => {
    const bytes = Uint8Array.from([1, 2, 3]);
    expect(rawCodec.encode(bytes)).toBe(bytes);
    expect(Buffer.from(rawCodec.encode('hé')).toString('utf8')).toBe('hé');
    const decoded = rawCodec.decode(bytes) as Buffer;
    expect(Buffer.isBuffer(decoded)).toBe(true);
    expect([...decoded]).toEqual([1, 2, 3]);
    expect(rawCodec.contentType).toBe('application/octet-stream');
  });

  it('refuses anything else', () => {
    expect(() => rawCodec.encode({ a: 1 })).toThrow(TypeError);
    expect(() => rawCodec.encode(42)).toThrow(TypeError);
  });
});

describe('CodecRegistry', () => {
  const text: Codec = {
    contentType: 'text/plain',
    encode: (v) => Buffer.from(String(v)),
    decode: (b) => Buffer.from(b).toString(),
  };

  it('knows JSON and raw bytes out of the box', () => {
    const r = new CodecRegistry();
    expect(r.get('application/json')).toBe(jsonCodec);
    expect(r.get('application/octet-stream')).toBe(rawCodec);
    expect(r.get('text/plain')).toBeUndefined();
  });

  it('ignores parameters and case', () => {
    const r = new CodecRegistry();
    expect(r.get('Application/JSON; charset=utf-8')).toBe(jsonCodec);
    expect(r.get('  application/json  ')).toBe(jsonCodec);
  });

  it('falls back to the JSON codec for +json types', () => {
    const r = new CodecRegistry();
    expect(r.get('application/vnd.acme.order+json')).toBe(jsonCodec);
    expect(r.get('application/cloudevents+json; charset=utf-8')).toBe(jsonCodec);
    expect(r.get('application/vnd.acme+xml')).toBeUndefined();
  });

  it('adds user codecs, which may replace a built-in one', () => {
    const myJson: Codec = { ...jsonCodec, contentType: 'application/json' };
    const vendor: Codec = { ...jsonCodec, contentType: 'application/vnd.acme+json' };
    const r = new CodecRegistry([text, myJson, vendor]);
    expect(r.get('text/plain; charset=utf-8')).toBe(text);
    expect(r.get('application/json')).toBe(myJson);
    expect(r.get('application/other+json')).toBe(myJson);
    expect(r.get('application/vnd.acme+json')).toBe(vendor);
  });

  it('require() names an unknown content type in a DecodeError', () => {
    const r = new CodecRegistry();
    expect(r.require('application/json')).toBe(jsonCodec);
    expect(() => r.require('application/x-protobuf')).toThrow(DecodeError);
    expect(() => r.require('application/x-protobuf')).toThrow('"application/x-protobuf"');
  });
});

describe('jsonCodec and invalid UTF-8', () => {
  it('refuses a body that is not UTF-8 instead of handing U+FFFD to the handler', () => {
    const body = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    expect(() => jsonCodec.decode(body)).toThrow(DecodeError);
    expect(() => jsonCodec.decode(body)).toThrow(/UTF-8/);
  });
});
