import { ConfigError } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import { resolveOptions, splitHosts } from './options.js';

describe('several hosts', () => {
  it('a URL with a host list becomes one URL per host with the same credentials, vhost and query', () => {
    expect(splitHosts('amqp://u:p@10.0.0.1:5672,10.0.0.2:5673, node3/vh?heartbeat=5')).toEqual([
      'amqp://u:p@10.0.0.1:5672/vh?heartbeat=5',
      'amqp://u:p@10.0.0.2:5673/vh?heartbeat=5',
      'amqp://u:p@node3/vh?heartbeat=5',
    ]);
    expect(splitHosts('amqps://h1,h2')).toEqual(['amqps://h1', 'amqps://h2']);
    expect(splitHosts('amqp://u:p@one:5672/vh')).toEqual(['amqp://u:p@one:5672/vh']);
  });

  it('reads our options from the query once and keeps them out of every host URL', () => {
    const o = resolveOptions({ url: 'amqp://u:p@h1:5681,h2:5682/?prefetch=7&heartbeat=5' });
    expect(o.urls).toEqual(['amqp://u:p@h1:5681/?heartbeat=5', 'amqp://u:p@h2:5682/?heartbeat=5']);
    expect(o.url).toBe(o.urls[0]);
    expect(o.prefetch).toBe(7);
  });

  it('takes a list of URLs', () => {
    const o = resolveOptions({ urls: ['amqp://a:1@h1:5681', 'amqp://b:2@h2:5682'], heartbeatSeconds: 3 });
    expect(o.urls).toEqual(['amqp://a:1@h1:5681?heartbeat=3', 'amqp://b:2@h2:5682?heartbeat=3']);
  });

  it('a single URL resolves to a list of one', () => {
    expect(resolveOptions({ url: 'amqp://127.0.0.1' }).urls).toEqual(['amqp://127.0.0.1']);
  });

  it('rejects both url and urls, neither, an empty list, an empty host and a bad entry, naming the field', () => {
    const field = (input: unknown) => {
      try {
        resolveOptions(input);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(field({ url: 'amqp://h1', urls: ['amqp://h2'] })).toMatch(/urls.*either url or urls/);
    expect(field({})).toMatch(/url.*required/);
    expect(field({ urls: [] })).toMatch(/urls/);
    expect(field({ url: 'amqp://u:secret@h1,,h3' })).toMatch(/empty host/);
    expect(field({ url: 'amqp://u:secret@h1,,h3' })).not.toContain('secret');
    expect(field({ urls: ['amqp://h1', 'http://h2'] })).toMatch(/urls\.1.*amqp/);
  });
});

describe("onNoSubscribers: 'reject'", () => {
  it('is refused with streams on, since the replay stream receives every type', () => {
    const err = (() => {
      try {
        resolveOptions({ url: 'amqp://127.0.0.1', onNoSubscribers: 'reject', streams: true });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('onNoSubscribers');
    expect(resolveOptions({ url: 'amqp://127.0.0.1', onNoSubscribers: 'reject' }).onNoSubscribers).toBe(
      'reject',
    );
  });
});

describe('tls', () => {
  const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const fieldOf = (options: Record<string, unknown>) => {
    try {
      resolveOptions(options);
    } catch (err) {
      if (err instanceof ConfigError) return err.field;
      throw err;
    }
    return undefined;
  };

  it('verifies the broker by default', () => {
    expect(resolveOptions({ url: 'amqps://h', tls: { ca: CA } }).tls).toEqual({
      ca: CA,
      rejectUnauthorized: true,
    });
  });

  it('refuses TLS options for a plain amqp:// URL, which would ignore them', () => {
    expect(fieldOf({ url: 'amqp://u:secret@h', tls: { ca: CA } })).toBe('tls');
    expect(fieldOf({ urls: ['amqps://h1', 'amqp://h2'], tls: {} })).toBe('tls');
    expect(() => resolveOptions({ url: 'amqp://u:secret@h', tls: { ca: CA } })).toThrow(/u:\*\*\*@h/);
  });

  it('names the TLS field that is wrong', () => {
    expect(fieldOf({ url: 'amqps://h', tls: { ca: 'ca.pem' } })).toBe('tls.ca');
    expect(fieldOf({ url: 'amqps://h', tls: { verify: false } })).toBe('tls.verify');
    expect(fieldOf({ url: 'amqps://h', tls: { cert: CA } })).toBe('tls.key');
  });
});
