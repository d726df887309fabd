/**
 * TLS for every adapter: one strict schema for the options a client gives (CA, client certificate,
 * server name, verification), one loud warning when verification is off, and one reading of Node's TLS
 * errors so a certificate problem fails at once with a message that says what to fix.
 */
import { z } from 'zod';
import type { Logger } from '../logger.js';

/** PEM text as a string or a Buffer holding it (what `fs.readFileSync` returns). */
const pem = (what: string) =>
  z.union([z.string(), z.instanceof(Buffer)]).superRefine((value, ctx) => {
    const text =
      typeof value === 'string' ? value : value.toString('latin1', 0, Math.min(value.length, 4096));
    if (!text.includes('-----BEGIN ')) {
      // The usual mistake is a file name: say so, without echoing the value (it may be a key).
      ctx.addIssue({
        code: 'custom',
        message: `expected PEM ${what} contents ("-----BEGIN …"), e.g. readFileSync(path); a file name is not read`,
      });
    }
  });

/**
 * The TLS options an adapter passes to `tls.connect`. Server certificates are verified unless
 * `rejectUnauthorized` is false (and then a warning is logged on every connection).
 */
const tlsOptionsSchema = z.strictObject({
  /** The CA certificate(s) that sign the broker's certificate; Node's built-in CAs when absent. */
  ca: z.union([pem('certificate'), z.array(pem('certificate')).min(1)]).optional(),
  /** A client certificate, for brokers that require mutual TLS (give `key` with it). */
  cert: pem('certificate').optional(),
  /** The client certificate's private key. */
  key: pem('private key').optional(),
  /** Decrypts `key` when it is encrypted. */
  passphrase: z.string().optional(),
  /** The name checked against the broker's certificate (and sent as SNI); the host name by default. */
  servername: z.string().min(1).optional(),
  /** false turns verification of the broker's certificate off: anyone on the path can read and change traffic. */
  rejectUnauthorized: z.boolean().default(true),
});

/** The schema refined so that cert and key come together (a lone one fails at the TLS handshake). */
export const tlsSchema = tlsOptionsSchema.superRefine((o, ctx) => {
  if ((o.cert === undefined) !== (o.key === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [o.cert === undefined ? 'cert' : 'key'],
      message: 'a client certificate needs both cert and key',
    });
  }
});

export type TlsOptions = z.input<typeof tlsOptionsSchema>;
export type ResolvedTlsOptions = z.output<typeof tlsOptionsSchema>;

export const INSECURE_TLS_WARNING =
  'TLS certificate verification is OFF (rejectUnauthorized: false): the broker is not authenticated, so ' +
  'anyone on the network path can impersonate it and read or change every message and credential. ' +
  'Use this only against a local test broker; give the broker CA in `ca` instead.';

/** Logs the insecure-TLS warning when verification is off; call once per connection. */
export function warnIfInsecure(
  logger: Logger,
  tls: { rejectUnauthorized?: boolean } | boolean | undefined,
  fields: Record<string, unknown>,
): boolean {
  if (typeof tls !== 'object' || tls.rejectUnauthorized !== false) return false;
  logger.warn({ ...fields, tlsVerification: 'off' }, INSECURE_TLS_WARNING);
  return true;
}

// Node's certificate-verification codes (from OpenSSL's X509_V_ERR_* names) and its own TLS codes.
const CERTIFICATE_CODES =
  /^(UNABLE_TO_|CERT_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|INVALID_CA|PATH_LENGTH_EXCEEDED|INVALID_PURPOSE|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME_INVALID)/;
const HANDSHAKE_CODES = /^(ERR_SSL_|ERR_TLS_|EPROTO$)/;

export interface TlsFailure {
  /** 'certificate': the broker's certificate was not trusted; 'handshake': TLS itself failed. */
  kind: 'certificate' | 'handshake';
  code: string;
  /** What went wrong and what to change, for an error message. */
  explanation: string;
}

/**
 * Recognises a TLS failure anywhere in an error's cause chain (clients wrap socket errors in their own),
 * or undefined. A certificate failure never heals by retrying: callers fail at once.
 */
export function tlsFailure(err: unknown): TlsFailure | undefined {
  let current: unknown = err;
  for (let depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const e = current as { code?: unknown; cause?: unknown; originalError?: unknown; message?: unknown };
    const code = typeof e.code === 'string' ? e.code : undefined;
    if (code && CERTIFICATE_CODES.test(code)) {
      return {
        kind: 'certificate',
        code,
        explanation:
          code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH'
            ? `the broker's certificate does not name the host connected to (${code}): connect by a name the certificate lists, or set tls servername`
            : `the broker's certificate is not trusted (${code}): give the CA that signed it in the tls ca option`,
      };
    }
    if (code && HANDSHAKE_CODES.test(code)) {
      return {
        kind: 'handshake',
        code,
        explanation: `the TLS handshake failed (${code}); is this a TLS port, and does the broker accept this client's certificate?`,
      };
    }
    current = e.cause ?? e.originalError;
  }
  return undefined;
}
