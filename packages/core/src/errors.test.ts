import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  ConnectionError,
  DecodeError,
  ErrorCode,
  errorMessage,
  HandlerTimeoutError,
  isOmnibusError,
  NonRetryableError,
  OmnibusError,
  PublishError,
  UnknownVersionError,
  UnsupportedError,
  ValidationError,
} from './errors.js';

describe('errors', () => {
  it('share one base class with a stable code, a retryable flag and the cause', () => {
    const cause = new Error('root');
    const cases: [OmnibusError, string, boolean][] = [
      [new ConfigError('retry.attempts', 'must be positive', { cause }), ErrorCode.CONFIG, false],
      [new ConnectionError('down', { cause }), ErrorCode.CONNECTION, true],
      [new PublishError('TIMEOUT', 't', { cause }), ErrorCode.TIMEOUT, true],
      [new PublishError('PUBLISH_FAILED', 'f', { cause }), ErrorCode.PUBLISH_FAILED, true],
      [new PublishError('TOO_LARGE', 'l', { cause }), ErrorCode.TOO_LARGE, false],
      [new PublishError('UNROUTABLE', 'u', { cause }), ErrorCode.UNROUTABLE, false],
      [new ValidationError('v', { cause }), ErrorCode.VALIDATION, false],
      [new DecodeError('d', { cause }), ErrorCode.DECODE, false],
      [new NonRetryableError('n', { cause, retryable: true }), ErrorCode.NON_RETRYABLE, false],
      [new UnsupportedError('x', { cause }), ErrorCode.UNSUPPORTED, false],
    ];
    for (const [err, code, retryable] of cases) {
      expect(err).toBeInstanceOf(OmnibusError);
      expect(err).toBeInstanceOf(Error);
      expect(isOmnibusError(err)).toBe(true);
      expect(err.code).toBe(code);
      expect(err.retryable).toBe(retryable);
      expect(err.cause).toBe(cause);
      expect(err.name).toBe(err.constructor.name);
    }
  });

  it('ConfigError names the field first', () => {
    const err = new ConfigError('retry.attempts', 'must be positive');
    expect(err.field).toBe('retry.attempts');
    expect(err.message).toBe('retry.attempts: must be positive');
    expect(new ConfigError('', 'plain').message).toBe('plain');
  });

  it('an error without a cause has none', () => {
    expect('cause' in new DecodeError('d')).toBe(false);
  });

  it('timeouts and newer versions are retryable', () => {
    expect(new HandlerTimeoutError(50)).toMatchObject({ code: 'HANDLER_TIMEOUT', retryable: true });
    expect(new HandlerTimeoutError(50).message).toBe('handler did not settle within 50 ms');
    expect(new UnknownVersionError('t', 3, 2)).toMatchObject({ code: 'UNKNOWN_VERSION', retryable: true });
  });

  it('ValidationError keeps its issues', () => {
    expect(new ValidationError('v', { issues: [1, 2] }).issues).toEqual([1, 2]);
    expect(new ValidationError('v').issues).toEqual([]);
  });

  it('details default to an empty object', () => {
    expect(new PublishError('TOO_LARGE', 'x', { details: { size: 3 } }).details).toEqual({ size: 3 });
    expect(new PublishError('TOO_LARGE', 'x').details).toEqual({});
  });

  it('errorMessage reads errors and anything else', () => {
    expect(errorMessage(new Error('m'))).toBe('m');
    expect(errorMessage('s')).toBe('s');
    expect(errorMessage(42)).toBe('42');
    expect(isOmnibusError(new Error('x'))).toBe(false);
  });
});
