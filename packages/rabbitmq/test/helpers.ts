/** Shared test plumbing: the real broker's URL, unique names, a raw amqplib client, waiting with a deadline. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { promisify } from 'node:util';
import {
  type Delivery,
  type RawEnvelope,
  silentLogger,
  type TransportSubscription,
  type WireMessage,
} from '@omnibus/core';
import { noDeadline, type PublishCall } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';
import { type Channel, type ChannelModel, type ConfirmChannel, connect, type GetMessage } from 'amqplib';
import { DEFAULT_DELAY_QUEUE_PREFIX, names, type RabbitMqOptions, RabbitMqTransport } from '../src/index.js';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export function unique(label: string): string {
  return `rmq-test-${label}-${randomBytes(4).toString('hex')}`;
}

/** Waits for a broker-side condition with a deadline (the core's `eventually`, in this suite's argument order). */
export function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  return eventually(probe, { what, timeoutMs });
}

/** The adapter as these tests drive it: a publish without a call waits as long as it takes. */
export class TestTransport extends RabbitMqTransport {
  override publish(topic: string, messages: readonly WireMessage[], call: PublishCall = noDeadline()) {
    return super.publish(topic, messages, call);
  }
}

/**
 * Transports, raw connections and broker objects a test file made, torn down in afterAll. Its transports
 * get a delay-tier prefix of their own, so that deleting the tiers cannot touch another run's retries.
 */
export class Fixture {
  readonly delayQueuePrefix = unique('tiers');
  readonly transports: TestTransport[] = [];
  readonly topics = new Set<string>();
  readonly groups: [string, string][] = [];
  readonly extraQueues = new Set<string>();
  #raw: ChannelModel | undefined;

  async transport(options: Partial<RabbitMqOptions> = {}, service = 'adapter-test'): Promise<TestTransport> {
    const t = new TestTransport({
      url: AMQP_URL,
      reconnect: { initialMs: 50, maxMs: 1_000 },
      delayQueuePrefix: this.delayQueuePrefix,
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

  async consumers(queue: string): Promise<number> {
    return (await this.#check(queue)).consumerCount;
  }

  async depth(queue: string): Promise<number> {
    return (await this.#check(queue)).messageCount;
  }

  async #check(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await this.channel();
    try {
      return await ch.checkQueue(queue);
    } finally {
      await ch.close().catch(() => {});
    }
  }

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
    const tiers = new Set(
      this.transports
        .filter((t) => t.options.delayQueuePrefix !== DEFAULT_DELAY_QUEUE_PREFIX)
        .flatMap((t) =>
          t.options.delayTiersMs.map((ms) =>
            names.delayTier(ms, t.options.queueType, t.options.delayQueuePrefix),
          ),
        ),
    );
    await Promise.all(this.transports.splice(0).map((t) => t.close().catch(() => {})));
    const ch = await this.channel();
    for (const [topic, group] of this.groups) {
      for (const q of [names.groupQueue(topic, group), names.deadLetterQueue(topic, group)]) {
        await ch.deleteQueue(q).catch(() => {});
      }
    }
    // Never the default prefix's tiers: other runs on the shared broker may be using them.
    for (const tier of tiers) {
      await ch.deleteQueue(tier).catch(() => {});
      await ch.deleteExchange(tier).catch(() => {});
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

/**
 * A TCP relay to the broker that can be cut (every socket destroyed, port closed) and restored, or hold
 * the broker's replies (confirms, heartbeats) while the client's frames still reach the broker.
 */
export class Relay {
  readonly #target = new URL(AMQP_URL);
  #server: Server | undefined;
  #sockets = new Set<Socket>();
  /** The broker → client direction of each relayed connection. */
  #replies = new Map<Socket, Socket>();
  #holding = false;
  port = 0;

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = tcpConnect(Number(this.#target.port || 5672), this.#target.hostname);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      this.#replies.set(upstream, client);
      upstream.on('close', () => this.#replies.delete(upstream));
      if (!this.#holding) upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Stops passing the broker's replies on (they wait in the relay); the broker still gets every frame. */
  holdReplies(): void {
    this.#holding = true;
    for (const upstream of this.#replies.keys()) {
      upstream.unpipe();
      upstream.pause();
    }
  }

  /** Passes on the held replies and everything after them. */
  releaseReplies(): void {
    this.#holding = false;
    for (const [upstream, client] of this.#replies) upstream.pipe(client);
  }

  url(): string {
    const u = new URL(AMQP_URL);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}
