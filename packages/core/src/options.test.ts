import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { connectSchema, parseOptions, subscribeSchema } from './options.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const minimal = { topic: 'orders', group: 'billing', handlers: { 'order.placed': () => {} } };

describe('subscribe options', () => {
  it('fills the documented defaults', () => {
    const o = parseOptions(subscribeSchema, minimal);
    expect(o).toMatchObject({
      concurrency: 8,
      ordered: false,
      retry: {
        attempts: 5,
        backoff: { initialMs: 200, maxMs: 60_000, factor: 2, jitter: true },
        inProcessMaxDelayMs: 1000,
      },
      handlerTimeoutMs: 30_000,
      deadLetter: true,
      unmatched: 'ack',
    });
    expect(o.prefetch).toBeUndefined();
    expect(o.idempotency).toBeUndefined();
    expect(o.circuitBreaker).toBeUndefined();
  });

  it('fills nested defaults inside given objects', () => {
    const o = parseOptions(subscribeSchema, {
      ...minimal,
      retry: { attempts: 2 },
      circuitBreaker: {},
      idempotency: { store: { claim() {} } },
    });
    expect(o.retry.backoff.initialMs).toBe(200);
    expect(o.retry.inProcessMaxDelayMs).toBe(1000);
    expect(o.circuitBreaker).toMatchObject({ failureThreshold: 5, cooldownMs: 10_000 });
    expect(o.idempotency?.ttlMs).toBe(86_400_000);
  });

  it.each([
    [{ topic: '' }, 'topic'],
    [{ group: 'bad group' }, 'group'],
    [{ group: 'a.b' }, 'group'],
    [{ handlers: {} }, 'handlers'],
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 1.5 }, 'concurrency'],
    [{ prefetch: -1 }, 'prefetch'],
    [{ retry: { attempts: 0 } }, 'retry.attempts'],
    [{ retry: { backoff: { initialMs: 500, maxMs: 100 } } }, 'retry.backoff.maxMs'],
    [{ retry: { backoff: { factor: 0.5 } } }, 'retry.backoff.factor'],
    [{ retry: { inProcessMaxDelayMs: -1 } }, 'retry.inProcessMaxDelayMs'],
    [{ handlerTimeoutMs: 0 }, 'handlerTimeoutMs'],
    [{ deadLetter: 'yes' }, 'deadLetter'],
    [{ unmatched: 'drop' }, 'unmatched'],
    [{ idempotency: { store: {} } }, 'idempotency.store'],
    [{ idempotency: { store: { claim() {} }, leaseMs: 0 } }, 'idempotency.leaseMs'],
    [{ circuitBreaker: { failureThreshold: 0 } }, 'circuitBreaker.failureThreshold'],
    [{ circuitBreaker: { onStateChange: 'x' } }, 'circuitBreaker.onStateChange'],
    [{ startFrom: 'middle' }, 'startFrom'],
  ])('%o fails naming %s', (bad, field) => {
    const err = configError(() => parseOptions(subscribeSchema, { ...minimal, ...bad }));
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
    expect(err.code).toBe('CONFIG');
  });
});

describe('connect options', () => {
  it('fills defaults', () => {
    expect(parseOptions(connectSchema, { service: 'checkout' })).toEqual({
      service: 'checkout',
      publishTimeoutMs: 10_000,
      drainTimeoutMs: 30_000,
    });
  });

  it.each([
    [{ service: '' }, 'service'],
    [{ service: 'my service' }, 'service'],
    [{ service: 'svc', publishTimeoutMs: 0 }, 'publishTimeoutMs'],
    [{ service: 'svc', drainTimeoutMs: -1 }, 'drainTimeoutMs'],
  ])('%o fails naming %s', (bad, field) => {
    expect(configError(() => parseOptions(connectSchema, bad)).field).toBe(field);
  });

  it('prefixes the path when asked', () => {
    expect(configError(() => parseOptions(connectSchema, { service: '' }, 'options')).field).toBe(
      'options.service',
    );
  });
});
