/**
 * The containers mode (`pnpm test:containers`): the conformance suites run against brokers that
 * testcontainers starts, instead of the ones `scripts/brokers/` starts. It is never chosen because a Docker
 * socket happens to exist: only `OMNIBUS_CONTAINERS=1` (set by `pnpm test:containers`) switches it on.
 *
 * Images come from environment variables. `OMNIBUS_IMAGES=local` selects the images `scripts/docker.sh setup`
 * builds on a Debian base made with debootstrap (for machines that reach no image registry, like CI here);
 * otherwise the official images (rabbitmq, apache/kafka, softwaremill/elasticmq-native) are used. Each of
 * `OMNIBUS_RABBITMQ_IMAGE`, `OMNIBUS_KAFKA_IMAGE`, `OMNIBUS_ELASTICMQ_IMAGE` overrides one.
 *
 * Ryuk (testcontainers' reaper) needs an image from a registry, so it is off: every container carries the
 * label `omnibus.test=<run id>` and the runner removes them all afterwards, even when the suite failed.
 */
import { createServer } from 'node:net';

export type BrokerKind = 'rabbitmq' | 'kafka' | 'sqs';

export function containersMode(): boolean {
  return process.env.OMNIBUS_CONTAINERS === '1';
}

const local = () => process.env.OMNIBUS_IMAGES === 'local';

function imageFor(kind: BrokerKind): string {
  const override = {
    rabbitmq: process.env.OMNIBUS_RABBITMQ_IMAGE,
    kafka: process.env.OMNIBUS_KAFKA_IMAGE,
    sqs: process.env.OMNIBUS_ELASTICMQ_IMAGE,
  }[kind];
  if (override) return override;
  if (local()) {
    return {
      rabbitmq: 'omnibus/rabbitmq:3.10',
      kafka: `omnibus/kafka:${process.env.OMNIBUS_KAFKA_VERSION ?? '4.1.2'}`,
      sqs: `omnibus/elasticmq:${process.env.OMNIBUS_ELASTICMQ_VERSION ?? '1.7.1'}`,
    }[kind];
  }
  return {
    rabbitmq: 'rabbitmq:3.13-management',
    kafka: 'apache/kafka:4.1.0',
    sqs: 'softwaremill/elasticmq-native:1.7.1',
  }[kind];
}

/** A free TCP port on 127.0.0.1, for brokers that must advertise the port clients use. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface StartedBroker {
  url: string;
  /** The container's id, for `docker restart` / `docker kill` in fault scenarios. */
  id: string;
  stop(): Promise<void>;
}

/** Starts a container for the broker and returns its address on 127.0.0.1. */
export async function startContainer(kind: BrokerKind): Promise<StartedBroker> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const image = imageFor(kind);
  const labels = { 'omnibus.test': process.env.OMNIBUS_TEST_RUN ?? 'manual' };
  let container: import('testcontainers').StartedTestContainer;
  let url: string;
  if (kind === 'rabbitmq') {
    container = await new GenericContainer(image)
      .withLabels(labels)
      .withExposedPorts(5672)
      .withWaitStrategy(Wait.forLogMessage(/Server startup complete|Time to start RabbitMQ/))
      .withStartupTimeout(180_000)
      .start();
    url = `amqp://guest:guest@127.0.0.1:${container.getMappedPort(5672)}`;
  } else if (kind === 'kafka') {
    // Kafka advertises the address clients must use, so the host port is chosen first and kept inside.
    const port = await freePort();
    const env: Record<string, string> = local()
      ? { KAFKA_PORT: String(port), KAFKA_ADVERTISED_HOST: '127.0.0.1' }
      : {
          KAFKA_NODE_ID: '1',
          KAFKA_PROCESS_ROLES: 'broker,controller',
          KAFKA_LISTENERS: `PLAINTEXT://0.0.0.0:${port},CONTROLLER://0.0.0.0:9093`,
          KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${port}`,
          KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
          KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
          KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
          KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
          KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS: '1',
          KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
          KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
          KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
          KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
        };
    container = await new GenericContainer(image)
      .withLabels(labels)
      .withExposedPorts({ container: port, host: port })
      .withEnvironment(env)
      .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
      .withStartupTimeout(180_000)
      .start();
    url = `127.0.0.1:${port}`;
  } else {
    // Queue URLs carry the server's own address: it must be the one the host reaches.
    const port = await freePort();
    let c = new GenericContainer(image).withLabels(labels).withExposedPorts({ container: port, host: port });
    c = local()
      ? c.withEnvironment({ SQS_PORT: String(port) })
      : c.withCommand([
          `-Dnode-address.port=${port}`,
          `-Drest-sqs.bind-port=${port}`,
          '-Dnode-address.host=127.0.0.1',
          '-Dgenerate-node-address=false',
        ]);
    container = await c.withWaitStrategy(Wait.forHttp('/health', port)).withStartupTimeout(180_000).start();
    url = `http://127.0.0.1:${port}`;
  }
  return {
    url,
    id: container.getId(),
    stop: async () => void (await container.stop({ timeout: 10_000 })),
  };
}
