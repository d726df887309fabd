import { describe, expect, it } from 'vitest';
import { isPattern, matchesPattern } from './pattern.js';

describe('isPattern', () => {
  it('is true only for strings with * or #', () => {
    expect(isPattern('order.*')).toBe(true);
    expect(isPattern('#')).toBe(true);
    expect(isPattern('order.#')).toBe(true);
    expect(isPattern('order.placed')).toBe(false);
    expect(isPattern('')).toBe(false);
  });
});

describe('matchesPattern', () => {
  const cases: [pattern: string, type: string, expected: boolean][] = [
    // exact types
    ['order.placed', 'order.placed', true],
    ['order.placed', 'order.shipped', false],
    ['order.placed', 'order.placed.v2', false],
    ['order', 'order.placed', false],
    // `*` is exactly one word
    ['order.*', 'order.placed', true],
    ['order.*', 'order', false],
    ['order.*', 'order.placed.eu', false],
    ['*', 'order', true],
    ['*', 'order.placed', false],
    ['*.placed', 'order.placed', true],
    ['*.placed', 'placed', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.c', false],
    ['a.*.c', 'a.b.x.c', false],
    ['a.*.c', 'a.b.c.d', false],
    ['*.*', 'a.b', true],
    ['*.*', 'a', false],
    // `#` is zero or more words
    ['#', 'order.placed', true],
    ['#', 'x', true],
    ['a.#', 'a', true],
    ['a.#', 'a.b', true],
    ['a.#', 'a.b.c', true],
    ['a.#', 'b.a', false],
    ['a.#', 'ab', false],
    ['#.b', 'b', true],
    ['#.b', 'a.b', true],
    ['#.b', 'x.y.b', true],
    ['#.b', 'a.b.c', false],
    ['#.b', 'ab', false],
    ['a.#.c', 'a.c', true],
    ['a.#.c', 'a.b.c', true],
    ['a.#.c', 'a.b.b.c', true],
    ['a.#.c', 'a.b.c.d', false],
    ['a.#.c', 'x.b.c', false],
    ['#.b.#', 'b', true],
    ['#.b.#', 'a.b.c', true],
    ['#.b.#', 'a.c', false],
    ['a.*.#', 'a', false],
    ['a.*.#', 'a.b', true],
    ['a.*.#', 'a.b.c.d', true],
    ['#.*', 'a', true],
    ['#.*', 'a.b.c', true],
  ];

  it.each(cases)('%s vs %s → %s', (pattern, type, expected) => {
    expect(matchesPattern(pattern, type)).toBe(expected);
  });

  it('treats words literally, not as regular expressions', () => {
    expect(matchesPattern('order.pl.ced', 'order.placed')).toBe(false);
    expect(matchesPattern('a.*', 'a.b')).toBe(true);
    expect(matchesPattern('a+.*', 'aa.b')).toBe(false);
  });
});
