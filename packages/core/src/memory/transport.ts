/**
 * The in-memory transport: a real broker model in one process (groups, fan-out, pattern routing,
 * redelivery, delays, dead-letter queues, replay log), for tests, demos and local development.
 * Brokers are shared by name, so several buses in one process can talk through `memory://name`.
 */

import { z } from 'zod';
import { fromBinary, toBinary } from '../cloudevents.js';
import type { RawEnvelope, WireMessage } from '../envelope.js';
import { ConnectionError, ErrorCode, PublishError, UnsupportedError } from '../errors.js';
import { retryHeaders } from '../kit/control-headers.js';
import { BaseDelivery } from '../kit/delivery.js';
import {
  type GroupRef,
  type OperationTarget,
  type PeekedWire,
  type PurgeResult,
  type RedriveResult,
  type RedriveSpec,
  redriveHeaders,
  type TransportOperations,
} from '../operations.js';
import { parseOptions } from '../options.js';
import { matchesPattern } from '../pattern.js';
import type {
  Capabilities,
  Delivery,
  HealthReport,
  PublishCall,
  SubscribeSpec,
  Transport,
  TransportStats,
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

  /** After the backlog is emptied from outside (purge). */
  resetHead(): void {
    this.#readyHead = 0;
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

  /** Appends to the topic's log and enqueues for every group that wants the type; false when none did. */
  publish(topic: string, wire: WireMessage): boolean {
    const t = this.topic(topic);
    const type = wire.headers[TYPE_HEADER];
    t.append(wire, this.retention);
    let routed = false;
    for (const q of t.groups.values()) {
      if (q.wants(type)) {
        q.enqueue({ wire: copy(wire), redelivered: false });
        routed = true;
      }
    }
    return routed;
  }

  /** Whether some group of the topic would receive this type. */
  routes(topic: string, type: string | undefined): boolean {
    const t = this.topics.get(topic);
    if (!t) return false;
    for (const q of t.groups.values()) if (q.wants(type)) return true;
    return false;
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
  /**
   * A publish whose type no group receives: 'accept' (default, as on every transport: it is kept in the
   * replay log only) or 'reject' (fails with UNROUTABLE).
   */
  onNoSubscribers?: 'accept' | 'reject';
}

const memoryOptionsSchema = z.strictObject({
  name: z.string().min(1).default('default'),
  maxMessageBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  retention: z.number().int().positive().default(100_000),
  onNoSubscribers: z.enum(['accept', 'reject']).default('accept'),
});

/** A delivery from a group queue: settling frees the consumer's slot, unless close already returned it. */
class MemoryDelivery extends BaseDelivery {
  readonly #q: GroupQueue;
  readonly #consumer: Consumer;
  readonly #m: Stored;

  constructor(topic: string, group: string, q: GroupQueue, consumer: Consumer, m: Stored) {
    super({ wire: m.wire, topic, group, redelivered: m.redelivered });
    this.#q = q;
    this.#consumer = consumer;
    this.#m = m;
  }

  /** Takes the message back from the consumer; false when the subscription closed and already returned it. */
  #take(): boolean {
    if (!this.#consumer.unacked.delete(this.#m)) return false;
    this.#consumer.inFlight--;
    this.#q.schedule();
    return true;
  }

  protected async doAck(): Promise<void> {
    this.#take();
  }

  protected async doRelease(): Promise<void> {
    if (this.#take()) this.#q.enqueue({ wire: this.#m.wire, redelivered: true }, true);
  }

  protected async doRetryLater(delayMs: number, control: Record<string, string>): Promise<void> {
    if (!this.#take()) return;
    const q = this.#q;
    const wire: WireMessage = {
      ...this.#m.wire,
      headers: retryHeaders(this.#m.wire.headers, control, undefined),
    };
    q.delayed++;
    const timer = setTimeout(() => {
      q.timers.delete(timer);
      q.delayed--;
      q.enqueue({ wire, redelivered: true });
    }, delayMs);
    q.timers.add(timer);
  }

  protected async doDeadLetter(control: Record<string, string>): Promise<void> {
    if (!this.#take()) return;
    this.#q.dlq.push({ ...this.#m.wire, headers: { ...this.#m.wire.headers, ...control } });
  }
}

/** A delivery from a replay: nothing to settle on a log, but the state machine is the same. */
class ReplayDelivery extends BaseDelivery {
  readonly #done: () => void;
  constructor(wire: WireMessage, topic: string, done: () => void) {
    super({ wire, topic, group: '', redelivered: false, previousAttempts: 0 });
    this.#done = done;
  }
  protected override onSettled(): void {
    this.#done();
  }
  protected async doAck(): Promise<void> {}
  protected async doRelease(): Promise<void> {}
  protected async doRetryLater(): Promise<void> {}
  protected async doDeadLetter(): Promise<void> {}
}

export class MemoryTransport implements Transport {
  readonly name = 'memory';
  readonly capabilities: Capabilities;
  readonly broker: MemoryBroker;
  #connected = false;
  readonly #subs = new Set<TransportSubscription>();

  readonly #onNoSubscribers: 'accept' | 'reject';

  constructor(options: MemoryTransportOptions = {}) {
    const o = parseOptions(memoryOptionsSchema, options);
    this.broker = memoryBroker(o.name, o.retention);
    this.#onNoSubscribers = o.onNoSubscribers;
    this.capabilities = {
      consumerGroups: true,
      fanOut: true,
      ordering: 'process',
      replay: true,
      delayTiersMs: [],
      maxMessageBytes: o.maxMessageBytes,
      persistent: false,
      rejectsUnroutable: true,
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

  async publish(topic: string, messages: readonly WireMessage[], _call: PublishCall): Promise<void> {
    if (!this.#connected) throw new PublishError(ErrorCode.CLOSED, 'memory transport is not connected');
    if (this.#onNoSubscribers === 'reject') {
      // Checked for every message before any is written, so a refused batch writes nothing.
      for (const m of messages) {
        const type = m.headers[TYPE_HEADER];
        if (!this.broker.routes(topic, type)) {
          throw new PublishError(ErrorCode.UNROUTABLE, `no group of ${topic} receives ${type}`);
        }
      }
    }
    // The broker is in this process: a publish is written at once, so there is never anything to withdraw.
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
      deliver: (m) => onDelivery(new MemoryDelivery(spec.topic, group, q, consumer, m)),
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
        onDelivery(
          new ReplayDelivery(wire, spec.topic, () => {
            inFlight--;
            setImmediate(pump);
          }),
        );
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

  async stats(topic: string, group?: string): Promise<TransportStats> {
    const t = this.broker.topics.get(topic);
    const queues = !t
      ? []
      : group
        ? [t.groups.get(group)].filter((q): q is GroupQueue => !!q)
        : [...t.groups.values()];
    let depth = 0;
    let inFlight = 0;
    let delayed = 0;
    let deadLettered = 0;
    let consumers = 0;
    for (const q of queues) {
      depth += q.readyCount;
      delayed += q.delayed;
      deadLettered += q.dlq.length;
      consumers += q.consumers.length;
      for (const c of q.consumers) inFlight += c.inFlight;
    }
    return { depth, inFlight, delayed, deadLettered, lag: null, oldestAgeMs: null, extras: { consumers } };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#subs].map((s) => s.close()));
    this.#connected = false;
  }

  readonly operations: TransportOperations = new MemoryOperations(this);
}

/** Operations on the in-process broker: exact, since nothing else can touch it meanwhile. */
class MemoryOperations implements TransportOperations {
  constructor(readonly transport: MemoryTransport) {}

  get #broker(): MemoryBroker {
    return this.transport.broker;
  }

  #queue(ref: GroupRef): GroupQueue {
    const q = this.#broker.topics.get(ref.topic)?.groups.get(ref.group);
    if (!q) throw new UnsupportedError(`memory broker has no group ${ref.topic}/${ref.group}`);
    return q;
  }

  async listGroups(): Promise<GroupRef[]> {
    const out: GroupRef[] = [];
    for (const [topic, t] of this.#broker.topics)
      for (const group of t.groups.keys()) out.push({ topic, group });
    return out;
  }

  async peek(target: OperationTarget, limit: number): Promise<PeekedWire[]> {
    const q = this.#queue(target);
    const found =
      target.source === 'dead-letter'
        ? q.dlq.slice(0, limit).map((w) => ({ wire: copy(w) }))
        : q.ready.slice(q.ready.length - q.readyCount, q.ready.length - q.readyCount + limit).map((m) => ({
            wire: copy(m.wire),
            deliveryCount: m.redelivered ? 1 : 0,
          }));
    return found;
  }

  async redrive(spec: RedriveSpec): Promise<RedriveResult> {
    const q = this.#queue(spec);
    const total = q.dlq.length;
    let scanned = 0;
    let redriven = 0;
    // The dead letters present at the start, walked by position; a kept one stays in place.
    let i = 0;
    while (scanned < total && i < q.dlq.length) {
      await spec.pace?.();
      if (spec.signal?.aborted) break;
      const wire = q.dlq[i]!;
      scanned++;
      if (spec.select(wire)) {
        q.enqueue({ wire: { ...copy(wire), headers: redriveHeaders(wire.headers) }, redelivered: false });
        q.dlq.splice(i, 1);
        redriven++;
      } else {
        i++;
      }
      spec.onProgress?.({ scanned, redriven, total });
    }
    return { scanned, redriven, kept: scanned - redriven };
  }

  async purge(target: OperationTarget): Promise<PurgeResult> {
    const q = this.#queue(target);
    if (target.source === 'dead-letter') {
      const purged = q.dlq.length;
      q.dlq.length = 0;
      return { purged };
    }
    const purged = q.readyCount;
    q.ready.length = 0;
    q.resetHead();
    return { purged };
  }
}

export function memoryTransport(options: MemoryTransportOptions = {}): MemoryTransport {
  return new MemoryTransport(options);
}
