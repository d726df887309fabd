import { describe, expect, it } from 'vitest';
import { ControlHeader, readDeadLetterInfo, wireSize } from './envelope.js';

describe('readDeadLetterInfo', () => {
  it('reads the failure metadata back from headers', () => {
    expect(
      readDeadLetterInfo({
        [ControlHeader.reason]: 'max-attempts',
        [ControlHeader.error]: 'boom',
        [ControlHeader.attempts]: '5',
        [ControlHeader.firstFailureAt]: '100',
        [ControlHeader.lastFailureAt]: '200',
        [ControlHeader.originalTopic]: 'orders',
        [ControlHeader.originalGroup]: 'billing',
        [ControlHeader.deadLetteredAt]: '201',
      }),
    ).toEqual({
      reason: 'max-attempts',
      error: 'boom',
      attempts: 5,
      firstFailureAt: 100,
      lastFailureAt: 200,
      originalTopic: 'orders',
      originalGroup: 'billing',
      deadLetteredAt: 201,
    });
  });

  it('is undefined for a message that was not dead-lettered', () => {
    expect(readDeadLetterInfo({ tenant: 'acme' })).toBeUndefined();
  });

  it('fills what is missing', () => {
    expect(
      readDeadLetterInfo({ [ControlHeader.reason]: 'decode', [ControlHeader.firstFailureAt]: '' }),
    ).toEqual({
      reason: 'decode',
      error: '',
      attempts: 0,
      firstFailureAt: undefined,
      lastFailureAt: undefined,
      originalTopic: '',
      originalGroup: '',
      deadLetteredAt: undefined,
    });
  });
});

describe('wireSize', () => {
  it('counts body, header names and UTF-8 values, and the key', () => {
    expect(wireSize({ body: new Uint8Array(10), headers: {} })).toBe(10);
    expect(wireSize({ body: new Uint8Array(10), headers: { ab: 'cd', x: 'é' } })).toBe(10 + 4 + 1 + 2);
    expect(wireSize({ body: new Uint8Array(0), headers: {}, key: 'kéy' })).toBe(4);
    expect(wireSize({ body: new Uint8Array(0), headers: {}, key: '' })).toBe(0);
  });
});
