/** @omnibus/rabbitmq: the RabbitMQ (amqplib) transport for Omnibus. */
import type { Transport } from '@omnibus/core';
import type { RabbitMqOptions } from './options.js';
import { RabbitMqTransport } from './transport.js';

export { DEFAULT_DELAY_QUEUE_PREFIX, names } from './naming.js';
export { DEFAULT_MAX_MESSAGE_BYTES, type RabbitMqOptions } from './options.js';
export { RabbitMqTransport } from './transport.js';
export { CE_PREFIX, isBrokerHeader, wireFromAmqp } from './wire.js';

/** A RabbitMQ transport; options are validated now and a bad one throws ConfigError naming the field. */
export function rabbitmq(options: RabbitMqOptions): RabbitMqTransport {
  return new RabbitMqTransport(options);
}

/** What `connect(url)` calls for `amqp://` and `amqps://` URLs; options may also be query parameters. */
export function transportFromUrl(url: string, options: Record<string, unknown> = {}): Transport {
  return new RabbitMqTransport({ ...options, url } as RabbitMqOptions);
}
