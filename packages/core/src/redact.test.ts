import { describe, expect, it } from 'vitest';
import { redactObject, redactText, redactUrl } from './redact.js';

describe('redactText / redactUrl', () => {
  it.each([
    ['amqp://user:secret@rabbit:5672/vhost', 'amqp://user:***@rabbit:5672/vhost'],
    ['amqps://guest:guest@localhost', 'amqps://guest:***@localhost'],
    ['kafka+ssl://svc:s3cr3t@broker:9093', 'kafka+ssl://svc:***@broker:9093'],
    ['sqs+https://AKIA:wJalr/abc@host', 'sqs+https://AKIA:***@host'],
    ['amqp://user@rabbit', 'amqp://user@rabbit'],
    ['amqp://rabbit:5672', 'amqp://rabbit:5672'],
    ['amqp://user:@rabbit', 'amqp://user:***@rabbit'],
  ])('%s → %s', (input, expected) => {
    expect(redactUrl(input)).toBe(expected);
  });

  it('redacts every URL inside a text and leaves the rest', () => {
    expect(
      redactText('connect to amqp://a:pw1@h1 failed, then AMQP://b:pw2@h2/v: ECONNREFUSED user:name'),
    ).toBe('connect to amqp://a:***@h1 failed, then AMQP://b:***@h2/v: ECONNREFUSED user:name');
  });

  it('stops at whitespace and quotes', () => {
    expect(redactText('"amqp://u:pw@h" and \'kafka://v:pw2@k\' then a@b')).toBe(
      '"amqp://u:***@h" and \'kafka://v:***@k\' then a@b',
    );
  });

  it('redacts a password that contains @ or : completely', () => {
    const out = redactText('amqp://user:p@ss:w0rd@rabbit:5672/vhost');
    expect(out).not.toContain('ss');
    expect(out).not.toContain('w0rd');
    expect(out).toBe('amqp://user:***@rabbit:5672/vhost');
  });
});

describe('redactObject', () => {
  it('masks secret-looking fields at any depth and redacts URLs in strings', () => {
    const out = redactObject({
      url: 'amqp://u:pw@h',
      password: 'hunter2',
      nested: { apiKey: 'k', api_key: 'k2', token: 't', clientSecret: 's', privateKey: 'p', name: 'svc' },
      list: ['sqs://a:b@c', { credentials: { user: 'x' } }],
      passphrase: 'pp',
      count: 3,
      missingSecret: undefined,
    });
    expect(out).toEqual({
      url: 'amqp://u:***@h',
      password: '***',
      nested: {
        apiKey: '***',
        api_key: '***',
        token: '***',
        clientSecret: '***',
        privateKey: '***',
        name: 'svc',
      },
      list: ['sqs://a:***@c', { credentials: '***' }],
      passphrase: '***',
      count: 3,
      missingSecret: undefined,
    });
  });

  it('leaves non-plain objects and primitives alone', () => {
    const date = new Date(0);
    expect(redactObject(date)).toBe(date);
    expect(redactObject(42)).toBe(42);
    expect(redactObject(null)).toBe(null);
  });

  it('stops at a depth limit instead of recursing forever', () => {
    const deep: Record<string, unknown> = {};
    let cur = deep;
    for (let i = 0; i < 20; i++) {
      cur.next = {};
      cur = cur.next as Record<string, unknown>;
    }
    expect(JSON.stringify(redactObject(deep))).toContain('[…]');
  });
});
