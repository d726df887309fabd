import type { PeekedMessage } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import { describeDeadLetter, PREVIEW_MAX_CHARS, redactHeaders } from './view.js';

function deadLetter(data: unknown, contentType = 'application/json'): PeekedMessage {
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  return {
    id: 'm-1',
    envelope: {
      id: 'm-1',
      type: 'order.placed',
      source: 'checkout',
      time: 1_000,
      correlationId: 'c-1',
      version: 1,
      contentType,
      headers: { authorization: 'Basic dXNlcjpwdw==', 'x-tenant': 'acme' },
      data: new TextEncoder().encode(text),
    },
    deadLetter: {
      reason: 'max-attempts',
      error: 'connect amqp://app:hunter2@db failed',
      attempts: 5,
      originalTopic: 'orders',
      originalGroup: 'billing',
      deadLetteredAt: 2_000,
    },
    headers: {},
  };
}

describe('console view', () => {
  it('masks credential headers by the core rules and the HTTP credential names, and keeps the rest', () => {
    expect(
      redactHeaders({
        Authorization: 'Bearer abc',
        cookie: 'sid=1',
        'x-api-key': 'k',
        'x-callback': 'https://u:pw@example.com/hook',
        'x-tenant': 'acme',
      }),
    ).toEqual({
      Authorization: '***',
      cookie: '***',
      'x-api-key': '***',
      'x-callback': 'https://u:***@example.com/hook',
      'x-tenant': 'acme',
    });
  });

  it('describes a dead letter with its failure, masking secrets in the payload, headers and error', () => {
    const v = describeDeadLetter(deadLetter({ card: { token: 'tok_live_1' }, total: 42 }));
    expect(v).toMatchObject({
      id: 'm-1',
      type: 'order.placed',
      reason: 'max-attempts',
      attempts: 5,
      deadLetteredAtMs: 2_000,
      timeMs: 1_000,
      error: 'connect amqp://app:***@db failed',
      headers: { authorization: '***', 'x-tenant': 'acme' },
      truncated: false,
    });
    expect(JSON.parse(v.preview)).toEqual({ card: { token: '***' }, total: 42 });
  });

  it('cuts a long preview and says so', () => {
    const v = describeDeadLetter(deadLetter('x'.repeat(PREVIEW_MAX_CHARS + 10), 'text/plain'));
    expect(v.truncated).toBe(true);
    expect(v.preview).toBe(`${'x'.repeat(PREVIEW_MAX_CHARS)}…`);
  });
});
