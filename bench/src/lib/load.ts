/** The benchmark definition of each transport, loaded on demand (an adapter is imported only when used). */
import type { TransportBench } from './side.js';

export const TRANSPORTS = ['memory', 'rabbitmq', 'kafka', 'sqs', 'nats'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export async function loadBench(name: TransportName): Promise<TransportBench> {
  switch (name) {
    case 'memory':
      return (await import('../transports/memory.js')).memoryBench;
    case 'rabbitmq':
      return (await import('../transports/rabbitmq.js')).rabbitmqBench;
    case 'kafka':
      return (await import('../transports/kafka.js')).kafkaBench;
    case 'sqs':
      return (await import('../transports/sqs.js')).sqsBench;
    case 'nats':
      return (await import('../transports/nats.js')).natsBench;
  }
}
