/**
 * The RabbitMQ harness. Everything runs on the shared broker (`AMQP_URL`, default 127.0.0.1:5672) except
 * the broker-restart scenario, which runs on a private node (127.0.0.1:5673, started and restarted by
 * scripts/brokers/rabbitmq-private.sh) so the shared broker is never disturbed.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type Delivery,
  redactText,
  type SubscribeSpec,
  type Transport,
  type TransportSubscription,
  type WireMessage,
} from '@omnibus/core';
import type { PublishCall } from '@omnibus/core/kit';
import {
  DEFAULT_DELAY_QUEUE_PREFIX,
  names,
  type RabbitMqOptions,
  RabbitMqTransport,
  wireFromAmqp,
} from '@omnibus/rabbitmq';
import { type Channel, type ChannelModel, connect, type GetMessage } from 'amqplib';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
// What the transports under test are given (the cluster harness: every node); the raw client uses AMQP_URL.
const TRANSPORT_URL = process.env.OMNIBUS_RABBITMQ_TRANSPORT_URL ?? AMQP_URL;
const RESTART_URL = process.env.OMNIBUS_RABBITMQ_RESTART_URL ?? 'amqp://guest:guest@127.0.0.1:5673';
const PRIVATE_NODE_SCRIPT = fileURLToPath(
  new URL('../../../scripts/brokers/rabbitmq-private.sh', import.meta.url),
);
const run = promisify(execFile);
// The node rabbitmqctl talks to (the cluster harness points it at its own nodes); default: the shared one.
const CTL_NODE = process.env.OMNIBUS_RABBITMQCTL_NODE;
const ctlArgs = (args: string[]) => (CTL_NODE ? ['-n', CTL_NODE, ...args] : args);

// Exported so a variant harness (TLS) can add its options before the first transport is made.
export const BASE: Partial<RabbitMqOptions> = {
  // Fast recovery keeps the restart scenario short; streams make the replay scenario run.
  reconnect: { initialMs: 100, maxMs: 2_000 },
  streams: { maxAge: '1h' },
  // Delay tiers of this run's own (they are shared by every group in the vhost), so teardown can delete them.
  delayQueuePrefix: `omnibus-conformance-${process.pid}-${Date.now().toString(36)}.delay`,
};

/** Topics and groups this run created on the shared broker, deleted at teardown. */
const created = new Map<string, Set<string>>();
/** The shared delay tiers (exchange and queue of one name) this run's transports declared. */
const tiers = new Set<string>();

/** Connection names of the transports this harness created on the shared broker. */
const ownConnections = new Set<string>();

/** Records what it declares so teardown can remove it from the shared broker. */
class TrackedTransport extends RabbitMqTransport {
  constructor(options: RabbitMqOptions) {
    super(options);
    ownConnections.add(this.connectionName);
  }
  #note(topic: string, group?: string): void {
    const groups = created.get(topic) ?? new Set<string>();
    if (group !== undefined) groups.add(group);
    created.set(topic, groups);
    const o = this.options;
    if (o.delayQueuePrefix !== DEFAULT_DELAY_QUEUE_PREFIX) {
      for (const t of o.delayTiersMs) tiers.add(names.delayTier(t, o.queueType, o.delayQueuePrefix));
    }
  }
  override async publish(topic: string, messages: readonly WireMessage[], call: PublishCall): Promise<void> {
    this.#note(topic);
    return super.publish(topic, messages, call);
  }
  override async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    this.#note(topic);
    for (const g of groups) this.#note(topic, g.group);
    return super.provision(topic, groups);
  }
  override async subscribe(
    spec: SubscribeSpec,
    onDelivery: (d: Delivery) => void,
  ): Promise<TransportSubscription> {
    this.#note(spec.topic, spec.group);
    return super.subscribe(spec, onDelivery);
  }
}

let privateNode: Promise<void> | undefined;
/** Starts the private node once per run (the script is idempotent); never touches the shared broker. */
function privateNodeUp(): Promise<void> {
  privateNode ??= run('bash', [PRIVATE_NODE_SCRIPT, 'up'], { timeout: 180_000 }).then(
    () => undefined,
    (err: unknown) => {
      privateNode = undefined;
      throw new Error(
        `could not start the private RabbitMQ node (${PRIVATE_NODE_SCRIPT} up): ${String(err)}`,
      );
    },
  );
  return privateNode;
}

/** rabbitmqctl against the broker `create()` uses: inside its container in the containers mode. */
function rabbitmqctl(args: string[], options: { timeout: number }) {
  const container = process.env.OMNIBUS_RABBITMQ_CONTAINER;
  return container
    ? run('docker', ['exec', container, 'rabbitmqctl', ...args], options)
    : run('rabbitmqctl', args, options);
}

/** A transport on the private node that `restart()` restarts; it starts that node before connecting. */
export function createForRestart(): Transport {
  const t = new RabbitMqTransport({ ...BASE, url: RESTART_URL });
  const connectToNode = t.connect.bind(t);
  t.connect = async (ctx) => {
    await privateNodeUp();
    await connectToNode(ctx);
  };
  return t;
}

let raw: ChannelModel | undefined;
async function rawConnection(): Promise<ChannelModel> {
  if (!raw) {
    try {
      raw = await connect(AMQP_URL);
    } catch (err) {
      throw new Error(`RabbitMQ is not reachable at ${redactText(AMQP_URL)}: ${String(err)}`);
    }
    raw.on('error', () => {});
    raw.on('close', () => {
      raw = undefined;
    });
  }
  return raw;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await (await rawConnection()).createChannel();
  ch.on('error', () => {});
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => {});
  }
}

export const harness: TransportHarness = {
  name: 'rabbitmq',

  async setup() {
    // Fails (never skips) when the broker is down: the raw connection is the proof it is there.
    await rawConnection();
  },

  async teardown() {
    if (process.env.OMNIBUS_KEEP_TOPOLOGY !== '1') {
      await withChannel(async (ch) => {
        for (const [topic, groups] of created) {
          for (const group of groups) {
            for (const q of [names.groupQueue(topic, group), names.deadLetterQueue(topic, group)]) {
              await ch.deleteQueue(q).catch(() => {});
            }
          }
          await ch.deleteQueue(names.streamQueue(topic)).catch(() => {});
          await ch.deleteExchange(names.exchange(topic)).catch(() => {});
        }
        for (const tier of tiers) {
          await ch.deleteQueue(tier).catch(() => {});
          await ch.deleteExchange(tier).catch(() => {});
        }
      }).catch(() => {});
      created.clear();
      tiers.clear();
    }
    await raw?.close().catch(() => {});
    raw = undefined;
  },

  create() {
    return new TrackedTransport({ ...BASE, url: TRANSPORT_URL });
  },

  createForRestart,

  async dropConnections() {
    // Server-side close of this run's own connections only (never anyone else's on the shared broker).
    const { stdout } = await rabbitmqctl(
      ctlArgs(['-q', 'list_connections', '--no-table-headers', 'pid', 'client_properties']),
      { timeout: 30_000 },
    );
    let closed = 0;
    for (const line of stdout.split('\n')) {
      const name = /\{"connection_name","([^"]+)"\}/.exec(line)?.[1];
      if (!name || !ownConnections.has(name)) continue;
      const pid = line.split('\t')[0]!;
      await rabbitmqctl(
        ctlArgs(['-q', 'close_connection', pid, 'conformance: connection killed by the broker']),
        {
          timeout: 30_000,
        },
      );
      closed++;
    }
    if (closed === 0) throw new Error('no connection of this run was open on the broker');
  },

  createUnreachable() {
    return new RabbitMqTransport({
      url: 'amqp://guest:guest@127.0.0.1:1',
      connectTimeoutMs: 2_000,
    });
  },

  async readDeadLetters(topic, group, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const queue = names.deadLetterQueue(topic, group);
    const out: WireMessage[] = [];
    let ch: Channel | undefined;
    try {
      while (out.length < count && Date.now() <= deadline) {
        if (!ch) {
          ch = await (await rawConnection()).createChannel();
          ch.on('error', () => {});
        }
        let m: GetMessage | false;
        try {
          m = await ch.get(queue, { noAck: false });
        } catch {
          // A queue nobody declared yet closes the channel (404): that is "nothing dead-lettered yet".
          ch = undefined;
          await sleep(100);
          continue;
        }
        if (m) {
          out.push(wireFromAmqp(m));
          ch.ack(m);
        } else {
          await sleep(50);
        }
      }
    } finally {
      await ch?.close().catch(() => {});
    }
    return out;
  },

  async publishRaw(topic, body, options = {}) {
    const conn = await rawConnection();
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => {});
    try {
      // The exchange may not exist if nothing subscribed yet; declaring it matches what the adapter does.
      await ch.assertExchange(names.exchange(topic), 'topic', { durable: true });
      const headers: Record<string, string> = { ...options.headers };
      if (options.key !== undefined) headers.cloudEvents_partitionkey = options.key;
      ch.publish(names.exchange(topic), options.type ?? '', body, { persistent: true, headers });
      await ch.waitForConfirms();
    } finally {
      await ch.close().catch(() => {});
    }
  },

  async restart() {
    await privateNodeUp();
    await run('bash', [PRIVATE_NODE_SCRIPT, 'restart'], { timeout: 180_000 });
  },
};

/**
 * Hooks for the transport contract suite (src/contract): the harness's transport with options added, one
 * at a closed port with the adapter's defaults, and one whose confirm window of 1 keeps later publishes
 * queued in the client.
 */
export const contractHooks: ContractHooks = {
  // 'reject' needs streams off (the replay stream would receive every type): that combination is refused.
  createWith: (options) =>
    new TrackedTransport({
      ...BASE,
      url: AMQP_URL,
      ...(options.onNoSubscribers === 'reject' ? { streams: false } : {}),
      ...options,
    } as RabbitMqOptions),
  createWithDelayTiers: (tiersMs) =>
    new TrackedTransport({ ...BASE, url: AMQP_URL, delayTiersMs: [...tiersMs] }),
  createUnreachable: (options) =>
    new RabbitMqTransport({ url: 'amqp://guest:guest@127.0.0.1:1', ...options } as RabbitMqOptions),
  createHoldingPublishes: () => new TrackedTransport({ ...BASE, url: AMQP_URL, confirmWindow: 1 }),
};
