/** Broker names for Omnibus concepts on Kafka; pure functions (delay-tier arithmetic is the kit's). */
import { ConfigError } from '@omnibus/core';

// Kafka's legal topic characters; groups use the same so that derived topic names stay legal.
const LEGAL = /^[a-zA-Z0-9._-]+$/;
const MAX_TOPIC_LENGTH = 249;

export function checkName(field: string, value: string): void {
  if (!LEGAL.test(value)) {
    throw new ConfigError(
      field,
      `must contain only letters, digits, '.', '_' and '-', got ${JSON.stringify(value)}`,
    );
  }
  if (value.length > MAX_TOPIC_LENGTH)
    throw new ConfigError(field, `must be at most ${MAX_TOPIC_LENGTH} characters`);
}

export const groupId = (topic: string, group: string): string => `${topic}.${group}`;
/** The group that reads a subscription's retry tiers; separate because a kafkajs group expects one topic set. */
export const retryGroupId = (topic: string, group: string): string => `${topic}.${group}.retry`;
export const retryTopic = (topic: string, group: string, tierMs: number): string =>
  `${topic}.${group}.retry.${tierMs}`;
export const deadLetterTopic = (topic: string, group: string): string => `${topic}.${group}.dlq`;
/** The group whose committed offsets mark how far a group's dead letters have been redriven or purged. */
export const redriveGroupId = (topic: string, group: string): string => `${topic}.${group}.dlq.redrive`;
