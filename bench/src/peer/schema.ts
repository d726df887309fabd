/**
 * The zod schemas of the peer comparison: the same benchmark message validated by Omnibus (through a
 * `defineMessage` definition) and by message-queue-toolkit (through its own message schema, which carries
 * the id, type and timestamp fields that library routes and deduplicates by).
 */

import { randomUUID } from 'node:crypto';
import { defineMessage } from '@omnibus/core';
import { z } from 'zod';
import { type BenchData, MESSAGE_TYPE } from '../lib/payload.js';

const fields = {
  seq: z.number().int().nonnegative(),
  t: z.number(),
  warm: z.boolean().optional(),
  pad: z.string(),
};

/** Omnibus's side: the data only; the envelope (id, type, time) is the CloudEvents attributes. */
export const BenchMessage = defineMessage<BenchData>({
  type: MESSAGE_TYPE,
  version: 1,
  schema: z.object(fields),
});

/** message-queue-toolkit's side: its envelope fields live in the message body, beside the data. */
export const PeerMessageSchema = z.object({
  id: z.string(),
  type: z.literal(MESSAGE_TYPE),
  timestamp: z.string(),
  ...fields,
});

export type PeerMessage = z.infer<typeof PeerMessageSchema>;

export function peerMessage(data: BenchData): PeerMessage {
  return { id: randomUUID(), type: MESSAGE_TYPE, timestamp: new Date().toISOString(), ...data };
}
