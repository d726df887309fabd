/**
 * Where things live on the server: a topic is a stream `<topic>` over subjects `<topic>.>`; a message of
 * type T is published to `<topic>.t.T`, a group's delayed retries to `<topic>.r.<group>`, and dead letters
 * to the stream `<topic>_dlq` at `<topic>_dlq.<group>`. A group is a durable pull consumer named `<group>`.
 */
import { ConfigError } from '@omnibus/core';

// Stream and consumer names may not hold `.`, `*`, `>`, whitespace or path separators.
const NAME = /^[A-Za-z0-9_-]{1,200}$/;
// A type is used as subject tokens only when every dot-separated word is a plain token.
const SUBJECT_TOKENS = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function checkName(what: 'topic' | 'group', name: string): void {
  if (!NAME.test(name))
    throw new ConfigError(what, `${JSON.stringify(name)} must be 1–200 of A–Z, a–z, 0–9, "_" or "-" on NATS`);
}

export const names = {
  stream: (topic: string) => topic,
  /** The subject a message of this type is published to; types that are not plain tokens share `_`. */
  subject: (topic: string, type: string | undefined) =>
    `${topic}.t.${type !== undefined && SUBJECT_TOKENS.test(type) ? type : '_'}`,
  retrySubject: (topic: string, group: string) => `${topic}.r.${group}`,
  retryPrefix: (topic: string) => `${topic}.r.`,
  deadLetterStream: (topic: string) => `${topic}_dlq`,
  deadLetterSubject: (topic: string, group: string) => `${topic}_dlq.${group}`,
};
