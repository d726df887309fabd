/** Picks the harness named by OMNIBUS_TRANSPORT; an unknown name is an error, never a silent skip. */
import type { TransportHarness } from './harness.js';

export async function loadHarness(
  name = process.env.OMNIBUS_TRANSPORT ?? 'memory',
): Promise<TransportHarness> {
  switch (name) {
    case 'memory':
      return (await import('./transports/memory.js')).harness;
    case 'rabbitmq':
      return (await import('./transports/rabbitmq.js')).harness;
    case 'kafka':
      return (await import('./transports/kafka.js')).harness;
    case 'sqs':
      return (await import('./transports/sqs.js')).harness;
    case 'nats':
      return (await import('./transports/nats.js')).harness;
    case 'sns':
      return (await import('./transports/sns.js')).harness;
    case 'rabbitmq-cluster':
      return (await import('./transports/rabbitmq-cluster.js')).harness;
    case 'kafka-cluster':
      return (await import('./transports/kafka-cluster.js')).harness;
    case 'rabbitmq-tls':
      return (await import('./transports/rabbitmq-tls.js')).harness;
    case 'kafka-tls':
      return (await import('./transports/kafka-tls.js')).harness;
    case 'kafka-sasl':
      return (await import('./transports/kafka-sasl.js')).harness;
    default:
      throw new Error(
        `unknown OMNIBUS_TRANSPORT ${JSON.stringify(name)} (memory, rabbitmq, kafka, sqs, sns, nats, rabbitmq-cluster, kafka-cluster, rabbitmq-tls, kafka-tls, kafka-sasl)`,
      );
  }
}
