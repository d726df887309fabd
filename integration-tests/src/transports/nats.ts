/**
 * The NATS JetStream harness: the shared server (NATS_URL, else scripts/brokers/nats.sh on 127.0.0.1:4222)
 * and, for the broker-restart scenario, a private server (scripts/brokers/nats-private.sh on 127.0.0.1:4223).
 * Dead letters and poison messages go through the official client directly, never through the transport.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import type { Transport, WireMessage } from '@omnibus/core';
import { NatsTransport, names, nats } from '@omnibus/nats';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../../scripts/brokers/nats.sh', import.meta.url));
const PRIVATE_SCRIPT = fileURLToPath(new URL('../../../scripts/brokers/nats-private.sh', import.meta.url));
const FROM_ENV = process.env.NATS_URL;
const SERVER = (FROM_ENV ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
const PRIVATE_SERVER = '127.0.0.1:4223';
// Conformance topics are named conf-<label>-<hex>; the streams created during this run are deleted afterwards.
const TOPIC_PREFIX = 'conf-';

let streamsBefore = new Set<string>();

async function raw<T>(server: string, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: [server], timeout: 3_000, reconnect: false });
  try {
    return await fn(nc);
  } finally {
    await nc.close().catch(() => {});
  }
}

/** Waits until the server answers a JetStream request, not just a TCP connect. */
async function answering(server: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await raw(server, async (nc) => (await jetstreamManager(nc)).getAccountInfo());
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return false;
}

async function listStreams(): Promise<string[]> {
  return raw(SERVER, async (nc) => {
    const jsm = await jetstreamManager(nc);
    const out: string[] = [];
    for await (const s of jsm.streams.names()) out.push(s);
    return out;
  });
}

async function privateServerUp(): Promise<void> {
  await run('bash', [PRIVATE_SCRIPT, 'up'], { timeout: 120_000 });
}

/** A transport on the private server that `restart()` restarts; it starts that server before connecting. */
function createForRestart(): Transport {
  const t = nats({ servers: [PRIVATE_SERVER] });
  const connectToServer = t.connect.bind(t);
  t.connect = async (ctx) => {
    await privateServerUp();
    await connectToServer(ctx);
  };
  return t;
}

export const harness: TransportHarness = {
  name: 'nats',

  async setup() {
    if (!(await answering(SERVER, 3_000))) {
      if (FROM_ENV) throw new Error(`no NATS server with JetStream at NATS_URL=${FROM_ENV}`);
      await run('bash', [SCRIPT, 'up'], { timeout: 120_000 });
      if (!(await answering(SERVER, 30_000))) throw new Error(`NATS at ${SERVER} does not answer`);
    }
    streamsBefore = new Set(await listStreams());
  },

  async teardown() {
    const created = (await listStreams().catch(() => [])).filter(
      (s) => s.startsWith(TOPIC_PREFIX) && !streamsBefore.has(s),
    );
    if (created.length === 0) return;
    await raw(SERVER, async (nc) => {
      const jsm = await jetstreamManager(nc);
      // Cleanup only: a stream left behind does not affect later runs (names are random).
      for (const s of created) await jsm.streams.delete(s).catch(() => false);
    }).catch(() => {});
  },

  // Without Nats-Msg-Id: the duplicate-delivery scenario publishes two messages with one id on purpose
  // (a twin the broker cannot tell apart), which the stream would otherwise store once. The stream's
  // deduplication itself is held by packages/nats/test/dedupe.test.ts.
  create: () => nats({ servers: [SERVER], deduplicate: false }),

  // The transport's own connect deadline is what makes this fail fast.
  createUnreachable: () => nats({ servers: ['127.0.0.1:1'], connectTimeoutMs: 2_000 }),

  createForRestart,

  async readDeadLetters(topic, group, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    return raw(SERVER, async (nc) => {
      const jsm = await jetstreamManager(nc);
      const js = jetstream(nc);
      const stream = names.deadLetterStream(topic);
      // The dead-letter stream is created by the first dead letter: wait for it.
      while ((await jsm.streams.info(stream).catch(() => undefined)) === undefined) {
        if (Date.now() > deadline) return [];
        await new Promise((r) => setTimeout(r, 100));
      }
      // No subject filter (an ordered consumer with one needs NATS 2.10): other groups' are skipped here.
      const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
      const subject = names.deadLetterSubject(topic, group);
      const found: WireMessage[] = [];
      while (found.length < count && Date.now() < deadline) {
        const batch = await consumer.fetch({ max_messages: count - found.length, expires: 1_000 });
        for await (const m of batch) {
          if (m.subject !== subject) continue;
          const headers: Record<string, string> = {};
          if (m.headers) for (const k of m.headers.keys()) headers[k] = m.headers.get(k);
          found.push({ body: Buffer.from(m.data), headers });
        }
      }
      return found;
    });
  },

  async publishRaw(topic, body, options = {}) {
    // A poison test may publish before anyone subscribed: create the stream as the transport would.
    const t = new NatsTransport({ servers: [SERVER] });
    await t.connect({ logger: (await import('@omnibus/core')).silentLogger, service: 'raw' });
    await t.provision(topic, []);
    await t.close();
    await raw(SERVER, async (nc) => {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(options.headers ?? {})) h.set(k, v);
      if (options.type) h.set('ce_type', options.type);
      if (options.key !== undefined) h.set('ce_partitionkey', options.key);
      await jetstream(nc).publish(names.subject(topic, options.type), body, { headers: h });
    });
  },

  async restart() {
    await privateServerUp();
    await run('bash', [PRIVATE_SCRIPT, 'restart'], { timeout: 120_000 });
    if (!(await answering(PRIVATE_SERVER, 60_000)))
      throw new Error('the private NATS server did not come back');
  },
};

/**
 * Hooks for the transport contract suite (src/contract): the harness's transport with options added, and
 * one at a closed port with the adapter's defaults. No delay-tier hook (delays are exact) and no holding
 * hook (nothing is queued in the client: a publish is on the wire at once).
 */
export const contractHooks: ContractHooks = {
  createWith: (options) => nats({ servers: [SERVER], ...options }),
  createUnreachable: (options) => nats({ servers: ['127.0.0.1:1'], ...options }),
};
