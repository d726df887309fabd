import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { MemoryTransport } from './memory/transport.js';
import { resolveTransport, schemeOf } from './resolve.js';

describe('schemeOf', () => {
  it.each([
    ['amqp://host', 'amqp'],
    ['AMQPS://host', 'amqps'],
    ['kafka+ssl://a:9093,b:9093', 'kafka+ssl'],
    ['sqs+http://localhost:9324', 'sqs+http'],
    ['sns+http://localhost:4566', 'sns+http'],
    ['memory://', 'memory'],
  ])('%s → %s', (url, scheme) => {
    expect(schemeOf(url)).toBe(scheme);
  });

  it.each(['localhost:5672', '://x', '1amqp://x', ''])('%j is not a URL', (url) => {
    expect(() => schemeOf(url)).toThrow(ConfigError);
  });

  it('masks credentials in a malformed URL', () => {
    let message = '';
    try {
      schemeOf('amqp:/admin:p@ss:word@rabbit');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('not a URL');
    expect(message).not.toContain('p@ss');
    expect(message).not.toContain('word');
  });
});

describe('resolveTransport', () => {
  it('memory:// needs no package and names the broker', async () => {
    const t = await resolveTransport('memory://orders-test');
    expect(t).toBeInstanceOf(MemoryTransport);
    expect(t.name).toBe('memory');
  });

  it.each(['memory://orders?maxMessageBytes=10', 'memory://?retention=lots', 'memory://a/b'])(
    '%s is refused: a query or path is not silently part of the broker name',
    async (url) => {
      const err = await resolveTransport(url).catch((e: Error) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe('transport');
      expect((err as Error).message).toContain('transportOptions');
    },
  );

  it('an unknown scheme lists the known ones and hides the password', async () => {
    const err = await resolveTransport('redis://u:pw-123@host').catch((e: Error) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('unknown URL scheme "redis:"');
    expect((err as Error).message).toContain('amqp');
    expect((err as Error).message).not.toContain('pw-123');
  });
});
