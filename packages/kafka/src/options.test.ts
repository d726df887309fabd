import { ConfigError } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import { optionsFromUrl, resolveOptions } from './options.js';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const brokers = ['127.0.0.1:9396'];

function fieldOf(options: Record<string, unknown>): string | undefined {
  try {
    resolveOptions({ brokers, ...options });
  } catch (err) {
    if (err instanceof ConfigError) return err.field;
    throw err;
  }
  return undefined;
}

describe('ssl and sasl options', () => {
  it('takes true or TLS options that verify the broker by default', () => {
    expect(resolveOptions({ brokers, ssl: true }).ssl).toBe(true);
    expect(resolveOptions({ brokers, ssl: { ca: CA } }).ssl).toEqual({ ca: CA, rejectUnauthorized: true });
  });

  it('names the field of each mistake', () => {
    expect(fieldOf({ ssl: { ca: './ca.crt' } })).toBe('ssl.ca');
    expect(fieldOf({ ssl: { rejectUnauthorized: 0 } })).toBe('ssl.rejectUnauthorized');
    expect(fieldOf({ sasl: { mechanism: 'scram-sha-1', username: 'u', password: 'p' } })).toBe(
      'sasl.mechanism',
    );
    expect(fieldOf({ sasl: { mechanism: 'plain', username: '', password: 'p' } })).toBe('sasl.username');
    expect(fieldOf({ sasl: { mechanism: 'plain', username: 'u', password: '' } })).toBe('sasl.password');
    expect(fieldOf({ sasl: { mechanism: 'plain', user: 'u', password: 'p' } })).toBe('sasl.user');
  });

  it('reads kafka+ssl:// with credentials; explicit options win and errors never quote the password', () => {
    const o = optionsFromUrl('kafka+ssl://omnibus:s%40cret@127.0.0.1:9396?sasl=scram-sha-512', {
      ssl: { ca: CA },
    });
    expect(o).toMatchObject({
      brokers,
      ssl: { ca: CA },
      sasl: { mechanism: 'scram-sha-512', username: 'omnibus', password: 's@cret' },
    });
    expect(() => optionsFromUrl('kafka+ssl://omnibus:s3cret@h:1/x/y')).toThrow(/omnibus:\*\*\*@/);
    expect(() => optionsFromUrl('kafka+ssl://omnibus:s3cret@h:1/x/y')).not.toThrow(/s3cret/);
    expect(() => optionsFromUrl('kafka://h:1?sasl=scram-sha-512')).toThrow(ConfigError);
  });
});
