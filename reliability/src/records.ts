/**
 * The append-only record files the client processes write and the checker reads. One line per event,
 * tab-separated, written with a single write(2) each: once the call returns, the line is in the kernel's
 * page cache and survives a SIGKILL of the writer (only a machine crash could lose it).
 */
import { closeSync, existsSync, openSync, readSync, writeSync } from 'node:fs';
import { defineMessage } from '@omnibus/core';
import { z } from 'zod';

/** The one message type of the chaos run: a key, that key's sequence number, and padding. */
export const Tick = defineMessage({
  type: 'chaos.tick',
  version: 1,
  schema: z.object({ key: z.string(), seq: z.number().int().nonnegative(), pad: z.string() }),
});

export class RecordFile {
  readonly #fd: number;
  constructor(path: string) {
    this.#fd = openSync(path, 'a');
  }
  write(...fields: (string | number)[]): void {
    writeSync(this.#fd, `${fields.join('\t')}\n`);
  }
  close(): void {
    closeSync(this.#fd);
  }
}

/** What a client process is told to do, passed as JSON in OMNIBUS_CHAOS_ROLE. */
export interface ProducerRole {
  transport: 'rabbitmq' | 'kafka' | 'sqs' | 'nats';
  where: 'host' | 'ns';
  topic: string;
  /** The n-th producer of this scenario: sequence numbers start at generation × 1 000 000. */
  generation: number;
  count: number;
  ratePerSec: number;
  keys: number;
  payloadBytes: number;
  /** Publishes awaiting the broker at once. */
  window: number;
  recordFile: string;
}

export interface ConsumerRole {
  transport: 'rabbitmq' | 'kafka' | 'sqs' | 'nats';
  where: 'host' | 'ns';
  topic: string;
  group: string;
  concurrency: number;
  prefetch: number;
  handlerDelayMs: [number, number];
  /** Every message whose seq % poisonEvery === poisonEvery - 1 fails for good (dead-lettered). */
  poisonEvery: number;
  /** Set: the Redis idempotency store with this key prefix. */
  storePrefix?: string | undefined;
  recordFile: string;
}

/** True for the messages the consumer refuses for good, so that dead-lettering runs under faults too. */
export function isPoison(seq: number, poisonEvery: number): boolean {
  return poisonEvery > 0 && seq % poisonEvery === poisonEvery - 1;
}

/**
 * Follows a growing record file: each call parses only the lines appended since the last one, so that
 * polling a file of many thousand lines stays cheap.
 */
export class RecordTail {
  readonly #offsets = new Map<string, number>();
  readonly #rest = new Map<string, string>();
  readonly #rows = new Map<string, string[][]>();

  rows(path: string): string[][] {
    let rows = this.#rows.get(path);
    if (!rows) {
      rows = [];
      this.#rows.set(path, rows);
    }
    if (!existsSync(path)) return rows;
    const offset = this.#offsets.get(path) ?? 0;
    const fd = openSync(path, 'r');
    try {
      const chunks: Buffer[] = [];
      let position = offset;
      for (;;) {
        const buf = Buffer.alloc(1 << 20);
        const n = readSync(fd, buf, 0, buf.length, position);
        if (n === 0) break;
        chunks.push(buf.subarray(0, n));
        position += n;
      }
      this.#offsets.set(path, position);
      const text = (this.#rest.get(path) ?? '') + Buffer.concat(chunks).toString('utf8');
      const lines = text.split('\n');
      // The last piece has no newline yet: keep it for the next call.
      this.#rest.set(path, lines.pop() ?? '');
      for (const l of lines) if (l.length > 0) rows.push(l.split('\t'));
    } finally {
      closeSync(fd);
    }
    return rows;
  }
}
