/**
 * The private brokers the chaos run owns, per transport: how a client process reaches them (from the host
 * or from the chaos network namespace), what order they promise, the settings that make recovery quick
 * (and what those cost), and the broker-side hooks the nemesis and the checker need: the broker's OS pid,
 * a start after a kill, the dead-letter ids read back with the broker's own client, and clean-up.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Transport } from '@omnibus/core';

const run = promisify(execFile);

export type TransportName = 'rabbitmq' | 'kafka' | 'sqs' | 'nats';
export const TRANSPORTS: readonly TransportName[] = ['rabbitmq', 'kafka', 'sqs', 'nats'];

/** Where a client process runs: on the host (loopback), or inside the chaos namespace (behind the veth). */
export type Where = 'host' | 'ns';

/** The host end of the chaos veth pair (scripts/brokers/chaos-net.sh). */
export const CHAOS_HOST_ADDR = '10.201.0.1';
export const CHAOS_NAMESPACE = 'omnibus-chaos';

export const SCRIPTS_DIR = fileURLToPath(new URL('../../scripts/brokers/', import.meta.url));

/** The RabbitMQ user the chaos run creates on its private node: guest may only connect from loopback. */
export const RABBITMQ_USER = 'omnibus-chaos';
export const RABBITMQ_NODE = 'omnibus-test@localhost';
/** The password travels to client processes in this variable only; it is made fresh for every run. */
export const RABBITMQ_PASSWORD_ENV = 'OMNIBUS_CHAOS_RABBITMQ_PASSWORD';

export interface BrokerProfile {
  /** The broker script in scripts/brokers (up, down, pid). */
  script: string;
  /**
   * Where per-key order holds with `ordered: true` (the transport's ordering capability): across the group
   * (Kafka: a partition's records in order, whichever process reads them), within one consumer process
   * (RabbitMQ, NATS: a crashed consumer's messages come back after later ones were handled elsewhere), or
   * nowhere (an SQS standard queue).
   */
  orderScope: 'group' | 'process' | 'none';
  /** What the chaos run changes from the adapter's defaults so that recovery is quick, and the price. */
  recoverySettings: string;
}

export const PROFILES: Record<TransportName, BrokerProfile> = {
  rabbitmq: {
    script: 'rabbitmq-private.sh',
    orderScope: 'process',
    recoverySettings:
      "adapter defaults (quorum queue, confirms). A killed consumer's TCP connection closes at once, so " +
      'its unacknowledged messages are requeued without waiting for a heartbeat.',
  },
  kafka: {
    script: 'kafka-private.sh',
    orderScope: 'group',
    recoverySettings:
      "sessionTimeoutMs 10 000 (default 30 000) and heartbeatIntervalMs 1 000: a killed member's " +
      'partitions move after 10 s instead of 30 s. Price: a consumer that cannot heartbeat for 10 s (a long GC ' +
      'pause, a blocked event loop) is evicted and its uncommitted records are handled again elsewhere.',
  },
  sqs: {
    script: 'elasticmq-private.sh',
    orderScope: 'none',
    recoverySettings:
      'visibilityTimeoutSeconds 10 (default 30): messages held by a killed consumer come back after 10 s. ' +
      "Price: more ChangeMessageVisibility calls from the adapter's lease heartbeat for handlers that run " +
      'long, and a redelivery 10 s after a consumer that stalls without extending its lease.',
  },
  nats: {
    script: 'nats-private.sh',
    orderScope: 'process',
    recoverySettings:
      'ackWaitMs 10 000 (default 60 000): messages held by a killed consumer are redelivered after 10 s. ' +
      'Price: a handler that runs longer than 10 s without the adapter extending the lease sees its message ' +
      'delivered a second time.',
  },
};

function hostFor(where: Where): string {
  return where === 'ns' ? CHAOS_HOST_ADDR : '127.0.0.1';
}

/** A fresh transport to the transport's private broker, as a client at `where` reaches it. */
export async function createTransport(name: TransportName, where: Where): Promise<Transport> {
  const host = hostFor(where);
  switch (name) {
    case 'rabbitmq': {
      const { rabbitmq } = await import('@omnibus/rabbitmq');
      const password = process.env[RABBITMQ_PASSWORD_ENV];
      if (!password) throw new Error(`${RABBITMQ_PASSWORD_ENV} is not set`);
      return rabbitmq({
        url: `amqp://${RABBITMQ_USER}:${encodeURIComponent(password)}@${host}:5673`,
        reconnect: { initialMs: 100, maxMs: 2_000 },
      });
    }
    case 'kafka': {
      const { kafka } = await import('@omnibus/kafka');
      // kafka-private listens on the veth's host address only, for host and namespace clients alike.
      return kafka({
        brokers: [`${CHAOS_HOST_ADDR}:9492`],
        sessionTimeoutMs: 10_000,
        heartbeatIntervalMs: 1_000,
      });
    }
    case 'sqs': {
      const { sqs } = await import('@omnibus/sqs');
      return sqs({
        endpoint: `http://${CHAOS_HOST_ADDR}:9334`,
        region: 'us-east-1',
        visibilityTimeoutSeconds: 10,
      });
    }
    case 'nats': {
      const { nats } = await import('@omnibus/nats');
      return nats({ servers: [`${host}:4223`], ackWaitMs: 10_000 });
    }
  }
}

/** Runs a broker script; its output goes back to the caller for the run's log. */
export async function brokerScript(
  name: TransportName,
  action: string,
  timeoutMs = 300_000,
): Promise<string> {
  try {
    const { stdout, stderr } = await run('bash', [SCRIPTS_DIR + PROFILES[name].script, action], {
      timeout: timeoutMs,
    });
    return `${stdout}${stderr}`.trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`${PROFILES[name].script} ${action} failed: ${e.stdout ?? ''}${e.stderr ?? String(err)}`);
  }
}

/** The broker's OS pid (what SIGKILL and SIGSTOP hit). */
export async function brokerPid(name: TransportName): Promise<number> {
  const out = await brokerScript(name, 'pid', 30_000);
  const pid = Number(out.split('\n').pop());
  if (!Number.isInteger(pid) || pid <= 0)
    throw new Error(`${PROFILES[name].script} pid: no running broker (${out})`);
  return pid;
}

/** The RabbitMQ user of this run, with a fresh password read by rabbitmqctl from stdin (never argv). */
export async function ensureRabbitUser(password: string): Promise<void> {
  const ctl = (args: string[], input?: string) =>
    new Promise<void>((resolve, reject) => {
      const child = execFile(
        'rabbitmqctl',
        ['-q', '-n', RABBITMQ_NODE, ...args],
        { timeout: 60_000 },
        (err) => (err ? reject(new Error(`rabbitmqctl ${args[0]} failed: ${String(err)}`)) : resolve()),
      );
      child.stdin?.end(input ?? '');
    });
  await ctl(['delete_user', RABBITMQ_USER]).catch(() => {});
  await ctl(['add_user', RABBITMQ_USER], `${password}\n`);
  await ctl(['set_permissions', '-p', '/', RABBITMQ_USER, '.*', '.*', '.*']);
}
