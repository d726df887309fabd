/** @omnibus/kafka: the Apache Kafka transport for Omnibus (kafkajs underneath). */
import type { Transport } from '@omnibus/core';
import { type KafkaTransportOptions, optionsFromUrl } from './options.js';
import { KafkaTransport } from './transport.js';

export { deadLetterTopic, groupId, retryGroupId, retryTopic } from './naming.js';
export type { KafkaTransportOptions } from './options.js';
export { KafkaTransport } from './transport.js';

/** A Kafka transport; options are validated here and a bad one throws ConfigError naming it. */
export function kafka(options: KafkaTransportOptions = {}): KafkaTransport {
  return new KafkaTransport(options);
}

/** Builds the transport from `kafka://host:port[,host:port…][?option=value…]` (see README). */
export function transportFromUrl(url: string, options?: Record<string, unknown>): Transport {
  return new KafkaTransport(optionsFromUrl(url, options));
}
