/**
 * Picks the demo's transport from OMNIBUS_URL: the memory transport when it is unset, otherwise the
 * adapter for the URL's scheme. (Applications can also pass the URL straight to `connect`.)
 */
import { memoryTransport, type Transport } from '@omnibus/core';

export async function transportFromEnv(name: string): Promise<{ transport: Transport; label: string }> {
  const url = process.env.OMNIBUS_URL;
  if (!url) return { transport: memoryTransport({ name }), label: 'memory (in-process)' };
  const scheme = url.slice(0, url.indexOf(':'));
  if (scheme === 'memory') return { transport: memoryTransport({ name }), label: 'memory (in-process)' };
  if (scheme === 'amqp' || scheme === 'amqps') {
    const { transportFromUrl } = await import('@omnibus/rabbitmq');
    return { transport: transportFromUrl(url), label: 'RabbitMQ' };
  }
  if (scheme.startsWith('kafka')) {
    const { transportFromUrl } = await import('@omnibus/kafka');
    return { transport: transportFromUrl(url), label: 'Kafka' };
  }
  if (scheme.startsWith('sqs')) {
    const { transportFromUrl } = await import('@omnibus/sqs');
    return { transport: transportFromUrl(url), label: 'SQS' };
  }
  throw new Error(`OMNIBUS_URL has an unknown scheme "${scheme}:" (memory, amqp, kafka, sqs)`);
}
