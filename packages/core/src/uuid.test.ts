import { describe, expect, it } from 'vitest';
import { uuidv7, uuidv7Time } from './uuid.js';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('has the UUID format with version 7 and the RFC 9562 variant', () => {
    for (let i = 0; i < 500; i++) {
      const id = uuidv7();
      expect(id).toMatch(FORMAT);
      const bytes = Buffer.from(id.replace(/-/g, ''), 'hex');
      expect(bytes[6]! >> 4).toBe(7);
      expect(bytes[8]! >> 6).toBe(0b10);
    }
  });

  it('is unique', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => uuidv7()));
    expect(ids.size).toBe(10_000);
  });

  it('is strictly increasing within one millisecond, past the 12-bit counter', () => {
    const now = Date.now() + 60_000; // a millisecond no other test in this file uses
    const ids = Array.from({ length: 5000 }, () => uuidv7(now));
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
    // The counter lives in rand_a, right after the time: the first ids all carry `now`.
    expect(uuidv7Time(ids[0]!)).toBe(now);
    // 4096 values fit in the counter; beyond that the time moves on by a millisecond, never backwards.
    expect(uuidv7Time(ids[4999]!)).toBe(now + 1);
  });

  it('never goes backwards when the clock does', () => {
    const later = Date.now() + 120_000;
    const a = uuidv7(later);
    const b = uuidv7(later - 5000);
    expect(b > a).toBe(true);
    expect(uuidv7Time(b)).toBe(later);
  });

  it('starts a new millisecond with a small counter and sorts by time', () => {
    const t = Date.now() + 180_000;
    const a = uuidv7(t);
    const b = uuidv7(t + 1);
    expect(b > a).toBe(true);
    // A new millisecond starts the counter at 0..7, leaving room for 4088 more ids in it.
    const counter = Number.parseInt(b.slice(15, 18), 16);
    expect(counter).toBeLessThan(8);
  });

  it('encodes the creation time in the first 48 bits (uuidv7Time reads it back)', () => {
    const before = Date.now();
    const id = uuidv7();
    const t = uuidv7Time(id);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Math.max(Date.now(), before) + 240_000);
  });

  it('encodes every byte of a 48-bit time', () => {
    const t = 0xfedcba987654; // far future: the state of this module moves on to it
    const id = uuidv7(t);
    expect(id.slice(0, 13)).toBe('fedcba98-7654');
    expect(uuidv7Time(id)).toBe(t);
  });
});
