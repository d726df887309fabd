import { describe, expect, it } from 'vitest';
import { attributesToHeaders, headersToAttributes, PACKED_HEADERS_ATTRIBUTE } from './attributes.js';

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

  it('sends a header named __proto__ as an attribute of its own, and leaves the prototype alone', () => {
    const headers: Record<string, string> = { tenant: 't' };
    Object.defineProperty(headers, '__proto__', { value: 'p', enumerable: true, writable: true });
    const attrs = headersToAttributes(headers);
    expect(Object.getPrototypeOf(attrs)).toBe(Object.prototype);
    expect(Object.keys(attrs).sort()).toEqual(['__proto__', 'tenant']);
    expect(Object.getOwnPropertyDescriptor(attrs, '__proto__')?.value).toEqual({
      DataType: 'String',
      StringValue: 'p',
    });
    // And it comes back as the same header.
    expect(Object.getOwnPropertyDescriptor(attributesToHeaders(attrs), '__proto__')?.value).toBe('p');
  });
});
