/**
 * The RabbitMQ harness over TLS: the single-node harness pointed at the private node of
 * scripts/brokers/rabbitmq-tls.sh. Every transport under test connects with amqps:// (port 5675), verifies
 * the broker against the test CA and logs in as the node's password user; the harness's own inspection
 * client (dead letters, poison, cleanup) uses the same node's plain AMQP port. Restarts restart that node.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RabbitMqTransport } from '@omnibus/rabbitmq';
import type { TransportHarness } from '../harness.js';
import {
  brokerUp,
  PORTS,
  pem,
  RABBITMQ_TLS_NODE,
  RABBITMQ_TLS_SCRIPT,
  RABBITMQ_TLS_USER,
  rabbitmqTlsPassword,
} from '../tls/material.js';

const run = promisify(execFile);
const password = await rabbitmqTlsPassword();
const auth = `${RABBITMQ_TLS_USER}:${encodeURIComponent(password)}`;
export const TLS_URL = `amqps://${auth}@127.0.0.1:${PORTS.amqps}`;
const tls = { ca: await pem('ca.crt') };

// The single-node harness reads these when first imported.
process.env.AMQP_URL = `amqp://${auth}@127.0.0.1:${PORTS.amqp}`;
process.env.OMNIBUS_RABBITMQ_TRANSPORT_URL = TLS_URL;
process.env.OMNIBUS_RABBITMQCTL_NODE = RABBITMQ_TLS_NODE;
const single = await import('./rabbitmq.js');
Object.assign(single.BASE, { tls });

export const harness: TransportHarness = {
  ...single.harness,
  name: 'rabbitmq-tls',
  // The restart scenario runs on this node too (create() is already on it).
  createForRestart: undefined,

  async setup() {
    await brokerUp(RABBITMQ_TLS_SCRIPT);
    await single.harness.setup();
  },

  createUnreachable() {
    return new RabbitMqTransport({ url: 'amqps://guest:guest@127.0.0.1:1', tls, connectTimeoutMs: 2_000 });
  },

  async restart() {
    await run('bash', [RABBITMQ_TLS_SCRIPT, 'restart'], { timeout: 300_000 });
  },
};
