import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { parseOptions } from '../options.js';
import { INSECURE_TLS_WARNING, tlsFailure, tlsSchema, warnIfInsecure } from './tls.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';

function configError(value: unknown): ConfigError {
  try {
    parseOptions(tlsSchema, value, 'tls');
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('tls options', () => {
  it('verifies by default and takes PEM strings, Buffers and CA lists', () => {
    expect(parseOptions(tlsSchema, {})).toEqual({ rejectUnauthorized: true });
    const o = parseOptions(tlsSchema, { ca: [PEM, Buffer.from(PEM)], cert: PEM, key: Buffer.from(KEY) });
    expect(o.rejectUnauthorized).toBe(true);
    expect(Array.isArray(o.ca)).toBe(true);
  });

  it('names the field of each mistake, without echoing a key', () => {
    const path = configError({ ca: '/etc/ssl/ca.crt' });
    expect(path.field).toBe('tls.ca');
    expect(path.message).toMatch(/expected PEM certificate contents/);
    expect(path.message).not.toContain('/etc/ssl/ca.crt');
    expect(configError({ key: 'not a key', cert: PEM }).field).toBe('tls.key');
    expect(configError({ cert: PEM }).field).toBe('tls.key');
    expect(configError({ key: KEY }).field).toBe('tls.cert');
    expect(configError({ rejectUnauthorized: 'no' }).field).toBe('tls.rejectUnauthorized');
    expect(configError({ servername: '' }).field).toBe('tls.servername');
    const typo = configError({ rejectUnauthorised: false });
    expect(typo.field).toBe('tls.rejectUnauthorised');
    expect(typo.message).toMatch(/did you mean `tls.rejectUnauthorized`/);
  });
});

describe('warnIfInsecure', () => {
  it('warns only when verification is off', () => {
    const warnings: [Record<string, unknown>, string | undefined][] = [];
    const logger: Logger = {
      debug() {},
      info() {},
      error() {},
      warn: (fields, msg) => warnings.push([fields, msg]),
    };
    expect(warnIfInsecure(logger, undefined, {})).toBe(false);
    expect(warnIfInsecure(logger, true, {})).toBe(false);
    expect(warnIfInsecure(logger, { rejectUnauthorized: true }, {})).toBe(false);
    expect(warnings).toEqual([]);
    expect(warnIfInsecure(logger, { rejectUnauthorized: false }, { transport: 't' })).toBe(true);
    expect(warnings).toEqual([[{ transport: 't', tlsVerification: 'off' }, INSECURE_TLS_WARNING]]);
  });
});

describe('tlsFailure', () => {
  const coded = (code: string) => Object.assign(new Error('x'), { code });

  it('finds a certificate error through wrappers', () => {
    const wrapped = new Error('Connection error', { cause: coded('SELF_SIGNED_CERT_IN_CHAIN') });
    expect(tlsFailure(wrapped)).toMatchObject({ kind: 'certificate', code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    const kafkajsStyle = Object.assign(new Error('x'), {
      originalError: coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE'),
    });
    expect(tlsFailure(kafkajsStyle)?.explanation).toMatch(/give the CA that signed it in the tls ca option/);
    expect(tlsFailure(coded('ERR_TLS_CERT_ALTNAME_INVALID'))?.explanation).toMatch(/servername/);
  });

  it('tells a handshake failure, and ignores everything else', () => {
    expect(tlsFailure(coded('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'))?.kind).toBe('handshake');
    expect(tlsFailure(coded('ECONNREFUSED'))).toBeUndefined();
    expect(tlsFailure(new Error('plain'))).toBeUndefined();
    expect(tlsFailure(undefined)).toBeUndefined();
  });
});
