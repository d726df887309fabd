/** Broker object names for a topic and its groups, in one place so the harness and tests agree with the adapter. */

export const names = {
  exchange: (topic: string) => topic,
  groupQueue: (topic: string, group: string) => `${topic}.${group}`,
  deadLetterQueue: (topic: string, group: string) => `${topic}.${group}.dlq`,
  retryQueue: (topic: string, group: string, tierMs: number) => `${topic}.${group}.retry.${tierMs}`,
  streamQueue: (topic: string) => `${topic}.stream`,
};

/** RabbitMQ limits queue and exchange names to 255 bytes of UTF-8. */
export const MAX_NAME_BYTES = 255;
