/**
 * SASL/SCRAM over TLS on Kafka (the SASL_SSL listener of kafka-tls): both SCRAM mechanisms and the URL
 * form log in, a wrong password fails at once with a typed error, and no password shows in logs, errors,
 * their causes or health.
 */
import { type Bus, ConfigError, ConnectionError, connect } from '@omnibus/core';
import { kafka, transportFromUrl } from '@omnibus/kafka';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, errorTexts, leaks } from './capture.js';
import { brokerUp, KAFKA_SCRAM_USER, KAFKA_TLS_SCRIPT, kafkaScramPassword, PORTS, pem } from './material.js';

const CONNECT_TIMEOUT_MS = 30_000;
const BROKER = `127.0.0.1:${PORTS.kafkaSasl}`;
let ca: Buffer;
let password: string;
const buses: Bus[] = [];

describe('SASL/SCRAM on Kafka', () => {
  beforeAll(async () => {
    await brokerUp(KAFKA_TLS_SCRIPT);
    ca = await pem('ca.crt');
    password = await kafkaScramPassword();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close().catch(() => {})));
  });

  it.each(['scram-sha-512', 'scram-sha-256'] as const)('logs in with %s', async (mechanism) => {
    const b = await connect({
      transport: kafka({
        brokers: [BROKER],
        ssl: { ca },
        sasl: { mechanism, username: KAFKA_SCRAM_USER, password },
      }),
      service: 'sasl-test',
    });
    buses.push(b);
    const health = await b.health();
    expect(health.ok).toBe(true);
    expect(health.transport.details).toMatchObject({ tls: 'verified', sasl: mechanism });
  });

  it('logs in from a kafka+ssl:// URL with the credentials in it', async () => {
    const url = `kafka+ssl://${KAFKA_SCRAM_USER}:${encodeURIComponent(password)}@${BROKER}?sasl=scram-sha-512`;
    const b = await connect({ transport: transportFromUrl(url, { ssl: { ca } }), service: 'sasl-test' });
    buses.push(b);
    expect((await b.health()).ok).toBe(true);
  });

  it('never shows a password: a wrong one and the right one, in logs, errors, causes and health', async () => {
    const wrong = `wrong-${password.split('').reverse().join('')}`;
    const logger = captureLogger();
    const texts: string[] = [];
    const sasl = (pw: string) => ({
      mechanism: 'scram-sha-512' as const,
      username: KAFKA_SCRAM_USER,
      password: pw,
    });

    // The wrong password: refused at once (waiting cannot fix credentials) and typed.
    const started = performance.now();
    const refused = await connect({
      transport: kafka({
        brokers: [BROKER],
        ssl: { ca },
        sasl: sasl(wrong),
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
      }),
      service: 'sasl-test',
      logger,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectionError);
    expect((refused as ConnectionError).retryable).toBe(false);
    expect((refused as ConnectionError).details).toMatchObject({ auth: 'failed' });
    expect((refused as Error).message).toMatch(/SASL SCRAM SHA512 authentication failed/);
    expect(performance.now() - started).toBeLessThan(CONNECT_TIMEOUT_MS / 2);
    texts.push(...errorTexts(refused));

    // The same through the URL form, and a URL the parser rejects: the error quotes the URL redacted.
    const urlRefused = await connect({
      transport: transportFromUrl(
        `kafka+ssl://${KAFKA_SCRAM_USER}:${encodeURIComponent(wrong)}@${BROKER}?sasl=scram-sha-512`,
        { ssl: { ca }, connectTimeoutMs: CONNECT_TIMEOUT_MS },
      ),
      service: 'sasl-test',
      logger,
    }).catch((e: unknown) => e);
    expect(urlRefused).toBeInstanceOf(ConnectionError);
    texts.push(...errorTexts(urlRefused));
    const badUrl = (() => {
      try {
        transportFromUrl(`kafka+ssl://${KAFKA_SCRAM_USER}:${encodeURIComponent(wrong)}@${BROKER}/not/a/path`);
      } catch (e) {
        return e;
      }
    })();
    expect(badUrl).toBeInstanceOf(ConfigError);
    expect((badUrl as Error).message).toContain(`${KAFKA_SCRAM_USER}:***@`);
    texts.push(...errorTexts(badUrl));

    // The right password: connect, use the connection, read health.
    const b = await connect({
      transport: kafka({ brokers: [BROKER], ssl: { ca }, sasl: sasl(password) }),
      service: 'sasl-test',
      logger,
    });
    buses.push(b);
    const health = await b.health();
    expect(health.ok).toBe(true);
    texts.push(JSON.stringify(health));
    await b.close();
    texts.push(...logger.lines);

    // The client did log (kafkajs's connection and authentication lines), so the search saw real lines.
    expect(logger.lines.length).toBeGreaterThan(0);
    expect(leaks(texts, [password, wrong])).toEqual([]);
  });
});
