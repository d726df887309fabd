import { describe, expect, it } from 'vitest';
import { attributesToHeaders, PACKED_HEADERS_ATTRIBUTE } from './attributes.js';

describe('attributesToHeaders and hostile names', () => {
  const own = (entries: Record<string, unknown>) => {
    const out: Record<string, never> = {};
    for (const k of Object.keys(entries))
      Object.defineProperty(out, k, { value: entries[k], enumerable: true });
    return out;
  };

  it('keeps a __proto__ attribute as an own header (the SDK hands it over as an own property)', () => {
    const h = attributesToHeaders(own({ ['__proto__']: { DataType: 'String', StringValue: 'p' } }));
    expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(h, '__proto__')?.value).toBe('p');
  });

  it('keeps __proto__ and constructor from packed headers, without touching any prototype', () => {
    const packed = '{"__proto__":"p","constructor":"c","tenant":"t"}';
    const h = attributesToHeaders({
      [PACKED_HEADERS_ATTRIBUTE]: { DataType: 'String', StringValue: packed },
    });
    expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
    expect(Object.keys(h).sort()).toEqual(['__proto__', 'constructor', 'tenant']);
    expect(Object.getOwnPropertyDescriptor(h, '__proto__')?.value).toBe('p');
  });

  it('reads own attributes only and skips values that are not attributes, so one message cannot stop the receive loop', () => {
    // What `attrs.__proto__ = {…}` leaves behind: inherited enumerable names whose values are not attributes.
    const attrs = Object.create({ DataType: 'String', StringValue: 'p' }) as Record<string, never>;
    Object.defineProperty(attrs, 'tenant', {
      value: { DataType: 'String', StringValue: 't' },
      enumerable: true,
    });
    Object.defineProperty(attrs, 'broken', { value: undefined, enumerable: true });
    const h = attributesToHeaders(attrs);
    expect(h).toEqual({ tenant: 't' });
  });
});
