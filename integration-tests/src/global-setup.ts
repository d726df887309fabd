/**
 * Before a conformance project runs: where a broker's environment variable is unset and Docker is
 * available, start the broker with testcontainers and point the variable at it. Without Docker (this
 * machine, CI here) nothing happens: `scripts/brokers/` has started the brokers already.
 */
import type { TestProject } from 'vitest/node';
import { type BrokerKind, dockerAvailable, startContainer } from './containers.js';

const ENV: Record<BrokerKind, string> = { rabbitmq: 'AMQP_URL', kafka: 'KAFKA_BROKERS', sqs: 'SQS_ENDPOINT' };

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const transport = project.config.env?.OMNIBUS_TRANSPORT as string | undefined;
  if (transport !== 'rabbitmq' && transport !== 'kafka' && transport !== 'sqs') return undefined;
  const variable = ENV[transport];
  if (process.env[variable] || !dockerAvailable()) return undefined;
  const container = await startContainer(transport);
  process.env[variable] = container.url;
  // The restart hooks drive scripts/brokers/, which a container is not: the suite skips that scenario.
  process.env.OMNIBUS_CONTAINERS = '1';
  return () => container.stop();
}
