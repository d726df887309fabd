/**
 * TLS on Kafka (the SSL listener of kafka-tls, which requires a client certificate): the broker is
 * verified by default, an untrusted certificate or a missing client certificate fails at once with a
 * typed error, and turning verification off warns through the bus logger at every connect.
 */
import { type Bus, ConnectionError, connect } from '@omnibus/core';
import { INSECURE_TLS_WARNING } from '@omnibus/core/kit';
import { type KafkaTransportOptions, kafka } from '@omnibus/kafka';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from './capture.js';
import { brokerUp, KAFKA_TLS_SCRIPT, PORTS, pem } from './material.js';

const CONNECT_TIMEOUT_MS = 30_000;
const brokers = [`127.0.0.1:${PORTS.kafkaSsl}`];
let ca: Buffer;
let cert: Buffer;
let key: Buffer;
let wrongCa: Buffer;
const buses: Bus[] = [];

async function failure(options: KafkaTransportOptions): Promise<{ err: unknown; elapsedMs: number }> {
  const started = performance.now();
  const err = await connect({
    transport: kafka({ brokers, connectTimeoutMs: CONNECT_TIMEOUT_MS, ...options }),
    service: 'tls-test',
  }).then(
    (b) => {
      buses.push(b);
      return undefined;
    },
    (e: unknown) => e,
  );
  return { err, elapsedMs: performance.now() - started };
}

describe('TLS on Kafka', () => {
  beforeAll(async () => {
    await brokerUp(KAFKA_TLS_SCRIPT);
    [ca, cert, key, wrongCa] = await Promise.all([
      pem('ca.crt'),
      pem('client.crt'),
      pem('client.key'),
      pem('wrong-ca.crt'),
    ]);
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close().catch(() => {})));
  });

  it('connects with the CA and a client certificate, and reports verified TLS in health()', async () => {
    const logger = captureLogger();
    const b = await connect({
      transport: kafka({ brokers, ssl: { ca, cert, key } }),
      service: 'tls-test',
      logger,
    });
    buses.push(b);
    const health = await b.health();
    expect(health.ok).toBe(true);
    expect(health.transport.details).toMatchObject({ brokers: 1, tls: 'verified' });
    expect(logger.warnings.filter((w) => w.msg === INSECURE_TLS_WARNING)).toEqual([]);
  });

  it('refuses a broker certificate from another CA at once, with a typed error that names the fix', async () => {
    const { err, elapsedMs } = await failure({ ssl: { ca: wrongCa, cert, key } });
    expect(err).toBeInstanceOf(ConnectionError);
    const e = err as ConnectionError;
    expect(e.retryable).toBe(false);
    expect(e.details).toMatchObject({ tls: 'certificate' });
    expect(e.message).toMatch(
      /certificate is not trusted \(\w+\): give the CA that signed it in the tls ca option/,
    );
    expect(elapsedMs).toBeLessThan(CONNECT_TIMEOUT_MS / 2);
  });

  it('fails at once, typed, when the broker requires a client certificate and none is given', async () => {
    const { err, elapsedMs } = await failure({ ssl: { ca } });
    expect(err).toBeInstanceOf(ConnectionError);
    const e = err as ConnectionError;
    expect(e.retryable).toBe(false);
    expect(e.details).toMatchObject({ tls: 'handshake' });
    expect(e.message).toMatch(/TLS handshake failed/);
    expect(elapsedMs).toBeLessThan(CONNECT_TIMEOUT_MS / 2);
  });

  it('with verification off, connects to an untrusted broker and warns once per connect', async () => {
    const logger = captureLogger();
    const insecure = () => logger.warnings.filter((w) => w.msg === INSECURE_TLS_WARNING);
    const options = { brokers, ssl: { ca: wrongCa, cert, key, rejectUnauthorized: false } };
    const first = await connect({ transport: kafka(options), service: 'tls-test', logger });
    buses.push(first);
    expect(insecure()).toHaveLength(1);
    expect(insecure()[0]!.fields).toMatchObject({ transport: 'kafka', tlsVerification: 'off' });
    expect((await first.health()).transport.details).toMatchObject({ tls: 'unverified' });
    const second = await connect({ transport: kafka(options), service: 'tls-test', logger });
    buses.push(second);
    expect(insecure()).toHaveLength(2);
  });
});
