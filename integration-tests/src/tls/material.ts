/**
 * The TLS test material made by scripts/brokers: certificates from certs.sh and the passwords the TLS
 * brokers' scripts generate. Read from $OMNIBUS_BROKER_DATA, never from the repository.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const DATA = process.env.OMNIBUS_BROKER_DATA ?? '/tmp/omnibus-brokers';
export const CERTS = join(DATA, 'certs');
export const script = (name: string) =>
  fileURLToPath(new URL(`../../../scripts/brokers/${name}`, import.meta.url));
export const RABBITMQ_TLS_SCRIPT = script('rabbitmq-tls.sh');
export const KAFKA_TLS_SCRIPT = script('kafka-tls.sh');

/** Runs a broker script's `up` (idempotent; it waits until the broker answers). */
export async function brokerUp(scriptPath: string): Promise<void> {
  try {
    await run('bash', [scriptPath, 'up'], { timeout: 300_000 });
  } catch (err) {
    throw new Error(`could not start the broker (${scriptPath} up): ${String(err)}`);
  }
}

/** A file of the test PKI (ca.crt, client.key, wrong-ca.crt…); makes the PKI first when missing. */
export async function pem(name: string): Promise<Buffer> {
  const file = join(CERTS, name);
  if (!existsSync(file)) await run('bash', [script('certs.sh'), CERTS], { timeout: 60_000 });
  return readFileSync(file);
}

/** A password a broker script made on its first start, starting that broker when the file is missing. */
async function password(file: string, scriptPath: string): Promise<string> {
  if (!existsSync(file)) await brokerUp(scriptPath);
  return readFileSync(file, 'utf8').trim();
}

/** The RabbitMQ TLS node's user and its password. */
export const RABBITMQ_TLS_USER = 'omnibus-tls';
export const rabbitmqTlsPassword = () =>
  password(join(DATA, 'rabbitmq-tls', 'user.password'), RABBITMQ_TLS_SCRIPT);

/** The Kafka TLS broker's SCRAM user and its password. */
export const KAFKA_SCRAM_USER = 'omnibus';
export const kafkaScramPassword = () => password(join(DATA, 'kafka-tls', 'scram.password'), KAFKA_TLS_SCRIPT);

export const RABBITMQ_TLS_NODE = 'omnibus-tls@localhost';
export const PORTS = { amqp: 5674, amqps: 5675, kafkaSsl: 9395, kafkaSasl: 9396 } as const;
