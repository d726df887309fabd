/**
 * TLS on RabbitMQ (the rabbitmq-tls node): the broker is verified by default, an untrusted or misnamed
 * certificate fails at once with a typed error, turning verification off warns on every connection, and
 * the password never shows in logs, errors or health.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type Bus, ConnectionError, connect } from '@omnibus/core';
import { INSECURE_TLS_WARNING } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';
import { RabbitMqTransport, transportFromUrl } from '@omnibus/rabbitmq';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger, errorTexts, leaks } from './capture.js';
import {
  brokerUp,
  PORTS,
  pem,
  RABBITMQ_TLS_NODE,
  RABBITMQ_TLS_SCRIPT,
  RABBITMQ_TLS_USER,
  rabbitmqTlsPassword,
} from './material.js';

const run = promisify(execFile);
const CONNECT_TIMEOUT_MS = 20_000;
const AMQPS = `127.0.0.1:${PORTS.amqps}`;
let ca: Buffer;
let wrongCa: Buffer;
let password: string;
const buses: Bus[] = [];

async function bus(transport: RabbitMqTransport, logger = captureLogger()): Promise<Bus> {
  const b = await connect({ transport, service: 'tls-test', logger });
  buses.push(b);
  return b;
}

/** Connecting fails: the error, and how long it took. */
async function failure(transport: RabbitMqTransport): Promise<{ err: unknown; elapsedMs: number }> {
  const started = performance.now();
  const err = await connect({ transport, service: 'tls-test' }).then(
    (b) => {
      buses.push(b);
      return undefined;
    },
    (e: unknown) => e,
  );
  return { err, elapsedMs: performance.now() - started };
}

/** Closes one transport's connection from the broker's side, as a network fault or a node restart would. */
async function dropConnection(connectionName: string): Promise<void> {
  const ctl = (args: string[]) =>
    run('rabbitmqctl', ['-n', RABBITMQ_TLS_NODE, '-q', ...args], { timeout: 60_000 });
  const { stdout } = await ctl(['list_connections', '--no-table-headers', 'pid', 'client_properties']);
  const line = stdout.split('\n').find((l) => l.includes(`{"connection_name","${connectionName}"}`));
  if (!line) throw new Error(`connection ${connectionName} is not open on ${RABBITMQ_TLS_NODE}`);
  await ctl(['close_connection', line.split('\t')[0]!, 'tls test: connection dropped']);
}

describe('TLS on RabbitMQ', () => {
  beforeAll(async () => {
    await brokerUp(RABBITMQ_TLS_SCRIPT);
    ca = await pem('ca.crt');
    wrongCa = await pem('wrong-ca.crt');
    password = await rabbitmqTlsPassword();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close().catch(() => {})));
  });

  it('verifies the broker against the given CA and reports it in health()', async () => {
    const logger = captureLogger();
    const b = await bus(new RabbitMqTransport({ url: `amqps://guest:guest@${AMQPS}`, tls: { ca } }), logger);
    const health = await b.health();
    expect(health.ok).toBe(true);
    expect(health.transport.details).toMatchObject({ state: 'open', tls: 'verified' });
    expect(logger.warnings).toEqual([]);
  });

  it.each([
    ["Node's built-in CAs only", () => ({})],
    ['the wrong CA', () => ({ ca: wrongCa })],
  ])(
    'refuses a broker certificate not signed by the CA it trusts (%s), at once and typed',
    async (_, tls) => {
      const { err, elapsedMs } = await failure(
        new RabbitMqTransport({
          url: `amqps://guest:guest@${AMQPS}`,
          tls: tls(),
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
        }),
      );
      expect(err).toBeInstanceOf(ConnectionError);
      const e = err as ConnectionError;
      expect(e.retryable).toBe(false);
      expect(e.details).toMatchObject({ tls: 'certificate' });
      expect(e.message).toMatch(
        /certificate is not trusted \(\w+\): give the CA that signed it in the tls ca option/,
      );
      // Not the connect deadline: the handshake's verdict, long before it.
      expect(elapsedMs).toBeLessThan(CONNECT_TIMEOUT_MS / 2);
    },
  );

  it('refuses a certificate that does not name the server it was asked for', async () => {
    const { err } = await failure(
      new RabbitMqTransport({
        url: `amqps://guest:guest@${AMQPS}`,
        tls: { ca, servername: 'not-this-broker.example' },
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
      }),
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).details).toMatchObject({
      tls: 'certificate',
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    expect((err as Error).message).toMatch(/does not name the host/);
  });

  it('with verification off, connects to an untrusted broker and warns through the bus logger once per connection', async () => {
    const logger = captureLogger();
    const transport = new RabbitMqTransport({
      url: `amqps://guest:guest@${AMQPS}`,
      tls: { ca: wrongCa, rejectUnauthorized: false },
      reconnect: { initialMs: 100, maxMs: 1_000 },
    });
    const b = await bus(transport, logger);
    const insecure = () => logger.warnings.filter((w) => w.msg === INSECURE_TLS_WARNING);
    expect(insecure()).toHaveLength(1);
    expect(insecure()[0]!.fields).toMatchObject({ transport: 'rabbitmq', tlsVerification: 'off' });
    expect((await b.health()).transport.details).toMatchObject({ tls: 'unverified' });

    // A new connection (after the broker dropped this one) warns again, once.
    await dropConnection(transport.connectionName);
    await eventually(async () => (await b.health()).transport.details?.reconnects === 1, {
      timeoutMs: 30_000,
      what: 'the reconnect',
    });
    expect(insecure()).toHaveLength(2);
    expect(insecure()[1]!.fields).toMatchObject({ generation: 2 });
  });

  it('never shows the password: not in logs, errors, their causes or health, with a wrong one or the right one', async () => {
    const wrong = `wrong-${password.split('').reverse().join('')}`;
    const logger = captureLogger();
    const texts: string[] = [];
    const url = (pw: string) => `amqps://${RABBITMQ_TLS_USER}:${encodeURIComponent(pw)}@${AMQPS}`;

    // The wrong password: refused by the broker; the error says who was refused, not with what.
    // URL-form transports (what `connect({ transport: url })` builds), made from this package's source.
    const refused = await connect({
      transport: transportFromUrl(url(wrong), { tls: { ca }, connectTimeoutMs: CONNECT_TIMEOUT_MS }),
      service: 'tls-test',
      logger,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectionError);
    expect((refused as Error).message).toMatch(/ACCESS.REFUSED/);
    expect((refused as ConnectionError).retryable).toBe(false);
    expect((refused as ConnectionError).details).toMatchObject({ auth: 'failed' });
    texts.push(...errorTexts(refused));

    // The right password, through the URL form; then a dropped connection so the reconnect path logs too.
    const b = await connect({
      transport: transportFromUrl(url(password), {
        tls: { ca },
        reconnect: { initialMs: 100, maxMs: 1_000 },
      }),
      service: 'tls-test',
      logger,
    });
    buses.push(b);
    const name = (b.transport as unknown as { connectionName?: string }).connectionName;
    expect(name).toBeDefined();
    await dropConnection(name!);
    await eventually(async () => (await b.health()).transport.details?.reconnects === 1, {
      timeoutMs: 30_000,
      what: 'the reconnect',
    });
    texts.push(JSON.stringify(await b.health()));
    texts.push(...logger.lines);

    // The logs did record the connection, user included, so the search below looked at real lines.
    expect(logger.lines.some((l) => l.includes(`${RABBITMQ_TLS_USER}:***@`))).toBe(true);
    expect(leaks(texts, [password, wrong])).toEqual([]);
  });
});
