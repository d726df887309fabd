/** @omnibus/sqs: the Amazon SQS transport for Omnibus (also ElasticMQ and other SQS-compatible brokers). */
import type { Transport } from '@omnibus/core';
import { optionsFromUrl, type SqsOptions } from './options.js';
import { SqsTransport } from './transport.js';

export { attributesToHeaders, headersToAttributes, PACKED_HEADERS_ATTRIBUTE } from './attributes.js';
export { DLQ_SUFFIX, FIFO_SUFFIX, type QueueNames, queueNames } from './naming.js';
export { optionsFromUrl, type ResolvedSqsOptions, type SqsOptions, sqsOptionsSchema } from './options.js';
export { GROUP_TAG } from './queues.js';
export { S3PayloadStore, type S3PayloadStoreOptions, s3PayloadStore } from './s3-store.js';
export { filterPolicy, groupQueueKey } from './sns.js';
export { fifoGroupId, SqsTransport } from './transport.js';

/** An SQS transport; options are validated now (ConfigError names the bad field). */
export function sqs(options: SqsOptions = {}): SqsTransport {
  return new SqsTransport(options);
}

/** `sqs://[region]` (AWS), `sqs+http://host:port` (ElasticMQ, LocalStack), `sns…` for fan-out; see optionsFromUrl. */
export function transportFromUrl(url: string, options?: Record<string, unknown>): Transport {
  return new SqsTransport(optionsFromUrl(url, options));
}
