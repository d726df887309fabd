/** @omnibus/nats: the NATS JetStream transport for Omnibus (the official @nats-io/jetstream client underneath). */
import type { Transport } from '@omnibus/core';
import { type NatsTransportOptions, optionsFromUrl } from './options.js';
import { NatsTransport } from './transport.js';

export { names } from './naming.js';
export type { NatsTransportOptions } from './options.js';
export { NatsTransport } from './transport.js';

/** A NATS JetStream transport; options are validated here and a bad one throws ConfigError naming it. */
export function nats(options: NatsTransportOptions = {}): NatsTransport {
  return new NatsTransport(options);
}

/** Builds the transport from `nats://[user:pass@]host:port[,host:port…][?option=value…]` (see README). */
export function transportFromUrl(url: string, options?: Record<string, unknown>): Transport {
  return new NatsTransport(optionsFromUrl(url, options));
}
