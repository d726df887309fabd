/**
 * The testcontainers path, for developers with Docker: when a broker's environment variable is unset
 * and a Docker engine answers, the harness starts the broker in a container instead of expecting the
 * one `scripts/brokers/` starts. Not exercised on machines without Docker (CI here has none).
 */
import { existsSync } from 'node:fs';

export type BrokerKind = 'rabbitmq' | 'kafka' | 'sqs';

const IMAGES: Record<BrokerKind, { image: string; port: number }> = {
  rabbitmq: { image: 'rabbitmq:3.13-management', port: 5672 },
  kafka: { image: 'apache/kafka:4.1.0', port: 9092 },
  sqs: { image: 'softwaremill/elasticmq-native:1.7.1', port: 9324 },
};

export function dockerAvailable(): boolean {
  if (process.env.OMNIBUS_NO_CONTAINERS === '1') return false;
  return Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
}

const started = new Map<BrokerKind, Promise<{ url: string; stop(): Promise<void> }>>();

/** Starts (once per process) a container for the broker and returns its address. */
export function startContainer(kind: BrokerKind): Promise<{ url: string; stop(): Promise<void> }> {
  let p = started.get(kind);
  if (!p) {
    p = (async () => {
      const { GenericContainer, Wait } = await import('testcontainers');
      const { image, port } = IMAGES[kind];
      let c = new GenericContainer(image).withExposedPorts(port);
      if (kind === 'kafka') {
        // Kafka must advertise the host-mapped port, known only after start: use a fixed host port.
        c = new GenericContainer(image)
          .withExposedPorts({ container: 9092, host: 9092 })
          .withEnvironment({
            KAFKA_NODE_ID: '1',
            KAFKA_PROCESS_ROLES: 'broker,controller',
            KAFKA_LISTENERS: 'PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093',
            KAFKA_ADVERTISED_LISTENERS: 'PLAINTEXT://127.0.0.1:9092',
            KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
            KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
            KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS: '1',
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
            KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
          })
          .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/));
      } else if (kind === 'rabbitmq') {
        c = c.withWaitStrategy(Wait.forLogMessage(/Server startup complete/));
      } else {
        c = c.withWaitStrategy(Wait.forHttp('/health', 9324));
      }
      const container = await c.start();
      const host = container.getHost();
      const mapped = container.getMappedPort(port);
      const url =
        kind === 'rabbitmq'
          ? `amqp://guest:guest@${host}:${mapped}`
          : kind === 'kafka'
            ? `${host}:${mapped}`
            : `http://${host}:${mapped}`;
      return { url, stop: async () => void (await container.stop()) };
    })();
    started.set(kind, p);
  }
  return p;
}
