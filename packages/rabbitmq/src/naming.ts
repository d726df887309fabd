/** Broker object names for a topic and its groups, in one place so the harness and tests agree with the adapter. */

/** Where the shared delay tiers live unless the `delayQueuePrefix` option says otherwise. */
export const DEFAULT_DELAY_QUEUE_PREFIX = 'omnibus.delay';

export const names = {
  exchange: (topic: string) => topic,
  groupQueue: (topic: string, group: string) => `${topic}.${group}`,
  deadLetterQueue: (topic: string, group: string) => `${topic}.${group}.dlq`,
  /**
   * A shared delay tier: one fanout exchange and one queue of this name per tier for the whole vhost (see
   * topology.ts). Classic tiers get their own names, so that a vhost may hold transports of both queue
   * types without their tier declarations clashing.
   */
  delayTier: (
    tierMs: number,
    queueType: 'quorum' | 'classic' = 'quorum',
    prefix = DEFAULT_DELAY_QUEUE_PREFIX,
  ) => (queueType === 'quorum' ? `${prefix}.${tierMs}` : `${prefix}.classic.${tierMs}`),
  /**
   * The per-group tier queues that versions before the shared tiers declared. Nothing declares them now;
   * the name is here so that a deployment can find them, let them empty (they still dead-letter back to
   * their group's queue) and delete them.
   */
  legacyRetryQueue: (topic: string, group: string, tierMs: number) => `${topic}.${group}.retry.${tierMs}`,
  streamQueue: (topic: string) => `${topic}.stream`,
};

/** RabbitMQ limits queue and exchange names to 255 bytes of UTF-8. */
export const MAX_NAME_BYTES = 255;
