/**
 * Before a conformance or contract project runs in the containers mode (`OMNIBUS_CONTAINERS=1`): start the
 * broker in a container and point the suite's variable at it. Otherwise nothing happens: `scripts/brokers/`
 * has started the brokers, or the variables name brokers of the user's own.
 */
import type { TestProject } from 'vitest/node';
import { type BrokerKind, containersMode, startContainer } from './containers.js';

const ENV: Record<BrokerKind, string> = { rabbitmq: 'AMQP_URL', kafka: 'KAFKA_BROKERS', sqs: 'SQS_ENDPOINT' };
const CONTAINER_ENV: Record<BrokerKind, string> = {
  rabbitmq: 'OMNIBUS_RABBITMQ_CONTAINER',
  kafka: 'OMNIBUS_KAFKA_CONTAINER',
  sqs: 'OMNIBUS_SQS_CONTAINER',
};

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const transport = project.config.env?.OMNIBUS_TRANSPORT as string | undefined;
  if (transport !== 'rabbitmq' && transport !== 'kafka' && transport !== 'sqs') return undefined;
  if (!containersMode()) return undefined;
  const container = await startContainer(transport);
  // Set before the workers start, so they inherit the container's address.
  process.env[ENV[transport]] = container.url;
  process.env[CONTAINER_ENV[transport]] = container.id;
  return () => container.stop();
}
