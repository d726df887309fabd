/** Codecs turn message data into bytes and back; chosen by content type. */
import { isUtf8 } from 'node:buffer';
import { DecodeError } from './errors.js';

export interface Codec {
  readonly contentType: string;
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

export const jsonCodec: Codec = {
  contentType: 'application/json',
  encode(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError('JSON codec cannot encode undefined');
    return Buffer.from(text, 'utf8');
  },
  decode(bytes) {
    // JSON is UTF-8 (RFC 8259): a body that is not would reach the handler with U+FFFD in place of bytes.
    if (!isUtf8(bytes)) throw new DecodeError('body is not valid UTF-8, so not JSON');
    try {
      return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
    } catch (err) {
      throw new DecodeError(`body is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  },
};

/** Bytes in, bytes out: for payloads that are already encoded (protobuf, Avro, images). */
export const rawCodec: Codec = {
  contentType: 'application/octet-stream',
  encode(value) {
    if (value instanceof Uint8Array) return value;
    if (typeof value === 'string') return Buffer.from(value, 'utf8');
    throw new TypeError('raw codec encodes only Uint8Array or string data');
  },
  decode(bytes) {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  },
};

export class CodecRegistry {
  readonly #byType = new Map<string, Codec>();
  /** Lookups by the exact content-type string seen, so the common case skips normalising it. */
  readonly #seen = new Map<string, Codec>();

  constructor(codecs: readonly Codec[] = []) {
    for (const c of [jsonCodec, rawCodec, ...codecs]) this.#byType.set(baseType(c.contentType), c);
  }

  get(contentType: string): Codec | undefined {
    const seen = this.#seen.get(contentType);
    if (seen !== undefined) return seen;
    const codec = this.#lookup(contentType);
    // Bounded: a peer sending endless distinct content types must not grow this map.
    if (codec && this.#seen.size < 256) this.#seen.set(contentType, codec);
    return codec;
  }

  #lookup(contentType: string): Codec | undefined {
    const base = baseType(contentType);
    const exact = this.#byType.get(base);
    if (exact) return exact;
    if (base.endsWith('+json')) return this.#byType.get('application/json');
    return undefined;
  }

  /** The codec for a content type, or a DecodeError naming the unknown type. */
  require(contentType: string): Codec {
    const codec = this.get(contentType);
    if (!codec) throw new DecodeError(`no codec registered for content type ${JSON.stringify(contentType)}`);
    return codec;
  }
}

function baseType(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}
