/** Shared test plumbing: the real broker's URL, unique names, a raw amqplib client, waiting with a deadline. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { type Delivery, type RawEnvelope, silentLogger, type TransportSubscription } from '@omnibus/core';
import { type Channel, type ChannelModel, type ConfirmChannel, connect, type GetMessage } from 'amqplib';
import { names, type RabbitMqOptions, RabbitMqTransport } from '../src/index.js';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export function unique(label: string): string {
  return `rmq-test-${label}-${randomBytes(4).toString('hex')}`;
}

export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Transports, raw connections and broker objects a test file made, torn down in afterAll. */
export class Fixture {
  readonly transports: RabbitMqTransport[] = [];
  readonly topics = new Set<string>();
  readonly groups: [string, string][] = [];
  readonly extraQueues = new Set<string>();
  #raw: ChannelModel | undefined;

  async transport(
    options: Partial<RabbitMqOptions> = {},
    service = 'adapter-test',
  ): Promise<RabbitMqTransport> {
    const t = new RabbitMqTransport({
      url: AMQP_URL,
      reconnect: { initialMs: 50, maxMs: 1_000 },
      ...options,
    });
    this.transports.push(t);
    await t.connect({ logger: silentLogger, service });
    return t;
  }

  track(topic: string, ...groups: string[]): void {
    this.topics.add(topic);
    for (const g of groups) this.groups.push([topic, g]);
  }

  async raw(): Promise<ChannelModel> {
    if (!this.#raw) {
      this.#raw = await connect(AMQP_URL);
      this.#raw.on('error', () => {});
    }
    return this.#raw;
  }

  /** A fresh raw channel (a failed check closes a channel, so each check gets its own). */
  async channel(): Promise<Channel> {
    const ch = await (await this.raw()).createChannel();
    ch.on('error', () => {});
    return ch;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    const ch = await (await this.raw()).createConfirmChannel();
    ch.on('error', () => {});
    return ch;
  }

  async queueExists(name: string): Promise<boolean> {
    const ch = await this.channel();
    try {
      await ch.checkQueue(name);
      return true;
    } catch {
      return false;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async depth(queue: string): Promise<number> {
    const ch = await this.channel();
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /** basic.get until `count` messages came or the deadline passed; acks what it read. */
  async drain(queue: string, count: number, timeoutMs = 15_000): Promise<GetMessage[]> {
    const ch = await this.channel();
    const out: GetMessage[] = [];
    try {
      await waitFor(
        async () => {
          const m = await ch.get(queue, { noAck: false });
          if (m) {
            out.push(m);
            ch.ack(m);
          }
          return out.length >= count;
        },
        `${count} messages on ${queue}`,
        timeoutMs,
      );
      return out;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async cleanup(): Promise<void> {
    const tiers = new Set(this.transports.flatMap((t) => t.options.delayTiersMs));
    await Promise.all(this.transports.splice(0).map((t) => t.close().catch(() => {})));
    const ch = await this.channel();
    for (const [topic, group] of this.groups) {
      for (const q of [
        names.groupQueue(topic, group),
        names.deadLetterQueue(topic, group),
        ...[...tiers].map((t) => names.retryQueue(topic, group, t)),
      ]) {
        await ch.deleteQueue(q).catch(() => {});
      }
    }
    for (const topic of this.topics) {
      await ch.deleteQueue(names.streamQueue(topic)).catch(() => {});
      await ch.deleteExchange(names.exchange(topic)).catch(() => {});
    }
    for (const q of this.extraQueues) await ch.deleteQueue(q).catch(() => {});
    await ch.close().catch(() => {});
    await this.#raw?.close().catch(() => {});
    this.#raw = undefined;
  }
}

/** Collects deliveries; the test settles them. */
export class Inbox {
  readonly deliveries: Delivery[] = [];
  readonly onDelivery = (d: Delivery) => {
    this.deliveries.push(d);
  };
  sub: TransportSubscription | undefined;

  async waitForCount(n: number, timeoutMs = 15_000): Promise<Delivery[]> {
    await waitFor(
      () => this.deliveries.length >= n,
      `${n} deliveries (have ${this.deliveries.length})`,
      timeoutMs,
    );
    return this.deliveries;
  }
}

export function envelope(type: string, overrides: Partial<RawEnvelope> = {}): RawEnvelope {
  const id = `01900000-0000-7000-8000-${randomBytes(6).toString('hex')}`;
  return {
    id,
    type,
    source: 'adapter-test',
    time: Date.now(),
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: Buffer.from(JSON.stringify({ n: 1 })),
    ...overrides,
  };
}

const run = promisify(execFile);

/** Closes, on the broker side, the one connection this test's transport opened (never anyone else's). */
export async function closeOwnConnection(connectionName: string): Promise<void> {
  const { stdout } = await run(
    'rabbitmqctl',
    ['-q', 'list_connections', '--no-table-headers', 'pid', 'client_properties'],
    { timeout: 30_000 },
  );
  const line = stdout.split('\n').find((l) => l.includes(`{"connection_name","${connectionName}"}`));
  if (!line) throw new Error(`connection ${connectionName} not found on the broker`);
  const pid = line.split('\t')[0]!;
  await run('rabbitmqctl', ['-q', 'close_connection', pid, 'adapter test: simulated connection loss'], {
    timeout: 30_000,
  });
}
