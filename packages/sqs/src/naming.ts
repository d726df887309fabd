/** Maps Omnibus topic names to SQS queue names, which allow only `[A-Za-z0-9_-]` and 80 characters. */
import { ConfigError } from '@omnibus/core';

/** SQS's limit on a queue name, the `.fifo` suffix included. */
export const MAX_QUEUE_NAME_LENGTH = 80;
export const FIFO_SUFFIX = '.fifo';
export const DLQ_SUFFIX = '-dlq';

export interface QueueNames {
  /** The queue that carries the topic (and is claimed by its one group). */
  main: string;
  /** Where the group's dead letters go; FIFO when the main queue is. */
  deadLetter: string;
  fifo: boolean;
}

/**
 * Every character SQS refuses becomes `_` (so `orders.eu` → `orders_eu`). The mapping is not
 * one-to-one: `a.b` and `a_b` share a queue, which is why it is documented rather than hidden.
 * The dead-letter name must fit as well, so the budget is 80 minus `-dlq` minus `.fifo` when FIFO.
 */
export function queueNames(topic: string, fifo: boolean): QueueNames {
  if (topic.length === 0) throw new ConfigError('topic', 'must not be empty');
  const base = topic.replace(/[^A-Za-z0-9_-]/g, '_');
  const budget = MAX_QUEUE_NAME_LENGTH - DLQ_SUFFIX.length - (fifo ? FIFO_SUFFIX.length : 0);
  if (base.length > budget) {
    throw new ConfigError(
      'topic',
      `"${topic}" is ${base.length} characters; an SQS ${fifo ? 'FIFO ' : ''}topic may have at most ${budget} ` +
        `so that its queue and its dead-letter queue "<topic>${DLQ_SUFFIX}${fifo ? FIFO_SUFFIX : ''}" fit SQS's 80-character limit`,
    );
  }
  const suffix = fifo ? FIFO_SUFFIX : '';
  return { main: `${base}${suffix}`, deadLetter: `${base}${DLQ_SUFFIX}${suffix}`, fifo };
}
