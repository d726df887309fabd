/**
 * The in-memory transport: a real broker model in one process (groups, fan-out, pattern routing,
 * redelivery, delays, dead-letter queues, replay log), for tests, demos and local development.
 * Brokers are shared by name, so several buses in one process can talk through `memory://name`.
 */
import { fromBinary, toBinary } from '../cloudevents.js';
import { ControlHeader, type RawEnvelope, type WireMessage } from '../envelope.js';
import { ConfigError, ConnectionError, ErrorCode, PublishError, UnsupportedError } from '../errors.js';
import { matchesPattern } from '../pattern.js';
import type {
  Capabilities,
  Delivery,
  HealthReport,
  SubscribeSpec,
  Transport,
  TransportSubscription,
} from '../transport.js';

const PREFIX = 'ce_';
const TYPE_HEADER = `${PREFIX}type`;
const BINARY_MODE = { prefix: PREFIX };

interface Stored {
  wire: WireMessage;
  redelivered: boolean;
}

interface Consumer {
  maxInFlight: number;
  inFlight: number;
  paused: boolean;
  closed: boolean;
  deliver: (m: Stored) => void;
  unacked: Set<Stored>;
}

class GroupQueue {
  /** Waiting messages are `ready[readyHead…]`: taking one is O(1) however long the backlog. */
  readonly ready: Stored[] = [];
  #readyHead = 0;
  readonly dlq: WireMessage[] = [];
  readonly consumers: Consumer[] = [];
  readonly timers = new Set<NodeJS.Timeout>();
  delayed = 0;
  #rr = 0;
  #scheduled = false;

  constructor(
    readonly name: string,
    public patterns: readonly string[],
  ) {}

  wants(type: string | undefined): boolean {
    return type !== undefined && this.patterns.some((p) => matchesPattern(p, type));
  }

  /** Messages waiting for a consumer. */
  get readyCount(): number {
    return this.ready.length - this.#readyHead;
  }

  enqueue(m: Stored, front = false): void {
    if (!front) this.ready.push(m);
    else if (this.#readyHead > 0) this.ready[--this.#readyHead] = m;
    else this.ready.unshift(m);
    this.schedule();
  }

  /** Dispatch asynchronously, as a broker would: never inside the caller's stack. */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.dispatch();
    });
  }

  dispatch(): void {
    while (this.#readyHead < this.ready.length) {
      const n = this.consumers.length;
      let chosen: Consumer | undefined;
      for (let i = 0; i < n; i++) {
        const c = this.consumers[(this.#rr + i) % n]!;
        if (!c.closed && !c.paused && c.inFlight < c.maxInFlight) {
          chosen = c;
          this.#rr = (this.#rr + i + 1) % n;
          break;
        }
      }
      if (!chosen) return;
      // Array#shift copies the whole backlog on every call; a head index (compacted now and then) does not.
      const m = this.ready[this.#readyHead++]!;
      if (this.#readyHead === this.ready.length) {
        this.ready.length = 0;
        this.#readyHead = 0;
      } else if (this.#readyHead > 1024 && this.#readyHead * 2 > this.ready.length) {
        this.ready.splice(0, this.#readyHead);
        this.#readyHead = 0;
      }
      chosen.inFlight++;
      chosen.unacked.add(m);
      chosen.deliver(m);
    }
  }
}

/** Fills the replay log's dropped slots until they are compacted away, so their messages can be freed. */
const DROPPED: WireMessage = { body: new Uint8Array(0), headers: {} };

class TopicState {
  readonly groups = new Map<string, GroupQueue>();
  // The replay log is `#log[#logHead…]`: dropping the oldest message is O(1), where splicing it off
  // the front would copy the whole log on every publish once the retention is reached.
  #log: WireMessage[] = [];
  #logHead = 0;

  /** The retained messages, oldest first. */
  get log(): WireMessage[] {
    if (this.#logHead > 0) {
      this.#log.splice(0, this.#logHead);
      this.#logHead = 0;
    }
    return this.#log;
  }

  append(wire: WireMessage, retention: number): void {
    this.#log.push(wire);
    while (this.#log.length - this.#logHead > retention) this.#log[this.#logHead++] = DROPPED;
    if (this.#logHead > 1024 && this.#logHead * 2 > this.#log.length) {
      this.#log.splice(0, this.#logHead);
      this.#logHead = 0;
    }
  }
}

/** One named in-process broker. */
export class MemoryBroker {
  readonly topics = new Map<string, TopicState>();
  /** Messages kept per topic for replay (oldest dropped first). */
  constructor(readonly retention: number) {}

  topic(name: string): TopicState {
    let t = this.topics.get(name);
    if (!t) {
      t = new TopicState();
      this.topics.set(name, t);
    }
    return t;
  }

  group(topic: string, group: string, patterns: readonly string[]): GroupQueue {
    const t = this.topic(topic);
    let q = t.groups.get(group);
    if (!q) {
      q = new GroupQueue(`${topic}.${group}`, patterns);
      t.groups.set(group, q);
    } else {
      // Bindings accumulate, as they do on a broker.
      q.patterns = [...new Set([...q.patterns, ...patterns])];
    }
    return q;
  }

  publish(topic: string, wire: WireMessage): void {
    const t = this.topic(topic);
    const type = wire.headers[TYPE_HEADER];
    t.append(wire, this.retention);
    for (const q of t.groups.values()) {
      if (q.wants(type)) q.enqueue({ wire: copy(wire), redelivered: false });
    }
  }

  /** Dead-lettered messages of a group, as stored (for tests and tools). */
  deadLetters(topic: string, group: string): WireMessage[] {
    return this.topics.get(topic)?.groups.get(group)?.dlq.map(copy) ?? [];
  }
}

function copy(w: WireMessage): WireMessage {
  return { body: Buffer.from(w.body), headers: { ...w.headers }, key: w.key };
}

const brokers = new Map<string, MemoryBroker>();

export function memoryBroker(name = 'default', retention = 100_000): MemoryBroker {
  let b = brokers.get(name);
  if (!b) {
    b = new MemoryBroker(retention);
    brokers.set(name, b);
  }
  return b;
}

export interface MemoryTransportOptions {
  /** Broker name; transports with the same name share messages (default 'default'). */
  name?: string;
  /** Largest message accepted, in bytes (default 1 MiB). */
  maxMessageBytes?: number;
  /** Messages kept per topic for replay (default 100 000). */
  retention?: number;
}

export class MemoryTransport implements Transport {
  readonly name = 'memory';
  readonly capabilities: Capabilities;
  readonly broker: MemoryBroker;
  #connected = false;
  readonly #subs = new Set<TransportSubscription>();

  constructor(options: MemoryTransportOptions = {}) {
    const maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes <= 0) {
      throw new ConfigError('maxMessageBytes', 'must be a positive integer');
    }
    this.broker = memoryBroker(options.name ?? 'default', options.retention ?? 100_000);
    this.capabilities = {
      consumerGroups: true,
      fanOut: true,
      patternRouting: true,
      ordering: 'process',
      replay: true,
      nativeDelay: true,
      maxDelayMs: Number.MAX_SAFE_INTEGER,
      delayTiersMs: [],
      nativeDeadLetter: true,
      maxMessageBytes,
      persistent: false,
      keyAffinity: false,
    };
  }

  async connect(): Promise<void> {
    this.#connected = true;
  }

  encode(env: RawEnvelope): WireMessage {
    return toBinary(env, BINARY_MODE);
  }

  decode(wire: WireMessage): RawEnvelope {
    return fromBinary(wire, BINARY_MODE);
  }

  async publish(topic: string, messages: readonly WireMessage[]): Promise<void> {
    if (!this.#connected) throw new PublishError(ErrorCode.CLOSED, 'memory transport is not connected');
    for (const m of messages) this.broker.publish(topic, m);
  }

  async provision(
    topic: string,
    groups: readonly { group: string; patterns: readonly string[] }[],
  ): Promise<void> {
    for (const g of groups) this.broker.group(topic, g.group, g.patterns);
  }

  async subscribe(spec: SubscribeSpec, onDelivery: (d: Delivery) => void): Promise<TransportSubscription> {
    if (!this.#connected) throw new ConnectionError('memory transport is not connected');
    if (spec.replay !== undefined) return this.#replay(spec, onDelivery);
    if (!spec.group) throw new UnsupportedError('a subscription needs a group (or replay)');
    const group = spec.group;
    const q = this.broker.group(spec.topic, group, spec.patterns);
    const consumer: Consumer = {
      maxInFlight: spec.maxInFlight,
      inFlight: 0,
      paused: false,
      closed: false,
      unacked: new Set(),
      deliver: (m) => onDelivery(this.#delivery(spec.topic, group, q, consumer, m)),
    };
    q.consumers.push(consumer);
    q.schedule();
    const sub: TransportSubscription = {
      pause: () => {
        consumer.paused = true;
      },
      resume: () => {
        consumer.paused = false;
        q.schedule();
      },
      close: async () => {
        consumer.closed = true;
        q.consumers.splice(q.consumers.indexOf(consumer), 1);
        // Whatever this consumer still holds goes back to the queue, as on a broker when a channel closes.
        for (const m of consumer.unacked) q.enqueue({ wire: m.wire, redelivered: true }, true);
        consumer.unacked.clear();
        this.#subs.delete(sub);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  #delivery(topic: string, group: string, q: GroupQueue, consumer: Consumer, m: Stored): Delivery {
    let settled = false;
    const settle = () => {
      if (settled) throw new Error('delivery settled twice');
      settled = true;
      if (!consumer.unacked.delete(m)) return false;
      consumer.inFlight--;
      q.schedule();
      return true;
    };
    const attempts = Number(m.wire.headers[ControlHeader.attempts] ?? 0);
    return {
      wire: m.wire,
      topic,
      group,
      previousAttempts: Number.isFinite(attempts) ? attempts : 0,
      redelivered: m.redelivered,
      receivedAt: Date.now(),
      ack: async () => {
        settle();
      },
      release: async () => {
        if (settle()) q.enqueue({ wire: m.wire, redelivered: true }, true);
      },
      retryLater: async (delayMs, headers) => {
        if (!settle()) return;
        const wire: WireMessage = { ...m.wire, headers: { ...m.wire.headers, ...headers } };
        q.delayed++;
        const timer = setTimeout(() => {
          q.timers.delete(timer);
          q.delayed--;
          q.enqueue({ wire, redelivered: true });
        }, delayMs);
        q.timers.add(timer);
      },
      deadLetter: async (headers) => {
        if (!settle()) return;
        q.dlq.push({ ...m.wire, headers: { ...m.wire.headers, ...headers } });
      },
    };
  }

  async #replay(spec: SubscribeSpec, onDelivery: (d: Delivery) => void): Promise<TransportSubscription> {
    const log = this.broker.topic(spec.topic).log;
    const from = spec.replay!;
    let start = 0;
    if (from === 'latest') start = log.length;
    else if (typeof from === 'object' && 'offset' in from) start = Number(from.offset);
    else if (typeof from === 'object' && 'timestamp' in from) {
      start = log.findIndex((w) => Date.parse(w.headers[`${PREFIX}time`] ?? '') >= from.timestamp);
      if (start < 0) start = log.length;
    }
    // Replay walks a snapshot of the log in order, one window of deliveries at a time.
    const snapshot = log.slice(start);
    let next = 0;
    let inFlight = 0;
    let paused = false;
    let closed = false;
    const pump = () => {
      while (!closed && !paused && inFlight < spec.maxInFlight && next < snapshot.length) {
        const wire = copy(snapshot[next++]!);
        if (!spec.patterns.some((p) => matchesPattern(p, wire.headers[TYPE_HEADER] ?? ''))) continue;
        inFlight++;
        const done = async () => {
          inFlight--;
          setImmediate(pump);
        };
        onDelivery({
          wire,
          topic: spec.topic,
          group: '',
          previousAttempts: 0,
          redelivered: false,
          receivedAt: Date.now(),
          ack: done,
          release: done,
          retryLater: done,
          deadLetter: done,
        });
      }
    };
    setImmediate(pump);
    return {
      pause: () => {
        paused = true;
      },
      resume: () => {
        paused = false;
        setImmediate(pump);
      },
      close: async () => {
        closed = true;
      },
    };
  }

  async health(): Promise<HealthReport> {
    return { ok: this.#connected, transport: this.name, details: { topics: this.broker.topics.size } };
  }

  async stats(topic: string, group?: string): Promise<Record<string, number>> {
    const t = this.broker.topics.get(topic);
    if (!t) return { ready: 0, inFlight: 0, delayed: 0, deadLettered: 0, consumers: 0 };
    const queues = group ? [t.groups.get(group)].filter((q): q is GroupQueue => !!q) : [...t.groups.values()];
    let ready = 0;
    let inFlight = 0;
    let delayed = 0;
    let deadLettered = 0;
    let consumers = 0;
    for (const q of queues) {
      ready += q.readyCount;
      delayed += q.delayed;
      deadLettered += q.dlq.length;
      consumers += q.consumers.length;
      for (const c of q.consumers) inFlight += c.inFlight;
    }
    return { ready, inFlight, delayed, deadLettered, consumers };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#subs].map((s) => s.close()));
    this.#connected = false;
  }
}

export function memoryTransport(options: MemoryTransportOptions = {}): MemoryTransport {
  return new MemoryTransport(options);
}
