/**
 * Test instruments for driving a Transport directly: messages built the way the bus builds them, an
 * inbox that records every delivery and counts the live (handed over, not yet settled) ones, and waits
 * with deadlines.
 */
import { randomBytes } from 'node:crypto';
import {
  type Delivery,
  type RawEnvelope,
  silentLogger,
  type Transport,
  type TransportSubscription,
  uuidv7,
  type WireMessage,
} from '@omnibus/core';
import { PublishDeadline } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';

export const TYPE = 'contract.probe';
export const OTHER_TYPE = 'contract.other';
export const CONTEXT = { logger: silentLogger, service: 'contract' };

/** Topic names start with `conf-`, the prefix the harnesses clean up after a run. */
export function topicName(label: string): string {
  return `conf-contract-${label}-${randomBytes(4).toString('hex')}`;
}

export function envelope(overrides: Partial<RawEnvelope> = {}): RawEnvelope {
  const id = overrides.id ?? uuidv7();
  return {
    id,
    type: TYPE,
    source: 'contract',
    time: Date.now(),
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: { tenant: 'acme' },
    data: Buffer.from(JSON.stringify({ id, note: 'contract probe' })),
    ...overrides,
  };
}

/** Publishes `count` messages, one publish call each (as the bus does), and returns their ids in order. */
export async function publish(
  t: Transport,
  topic: string,
  count: number,
  overrides: (i: number) => Partial<RawEnvelope> = (i) => ({ key: `k-${i}` }),
): Promise<string[]> {
  const envelopes = Array.from({ length: count }, (_, i) => envelope(overrides(i)));
  await Promise.all(
    envelopes.map((e) => t.publish(topic, [t.encode(e)], new PublishDeadline(Date.now() + 30_000))),
  );
  return envelopes.map((e) => e.id);
}

export interface Received {
  readonly delivery: Delivery;
  readonly id: string;
  /**
   * When the transport handed it over, on the monotonic clock (`performance.now()`): delays are measured
   * as intervals, and Date.now()'s whole milliseconds could make a timer that fired on time look early.
   */
  readonly at: number;
  settled: boolean;
}

/** Records every delivery of one or more subscriptions; the test settles them through `settle`. */
export class Inbox {
  readonly received: Received[] = [];
  /** Most deliveries that were live (handed over, settle not yet resolved) at one moment. */
  maxLive = 0;
  /** Called for each delivery after it is recorded (e.g. to settle it at once). */
  onReceive: ((r: Received) => void) | undefined;

  constructor(readonly transport: Transport) {}

  readonly onDelivery = (delivery: Delivery): void => {
    const r: Received = {
      delivery,
      id: this.transport.decode(delivery.wire).id,
      at: performance.now(),
      settled: false,
    };
    this.received.push(r);
    this.maxLive = Math.max(this.maxLive, this.live.length);
    this.onReceive?.(r);
  };

  /** Deliveries handed over whose settle has not resolved. */
  get live(): Received[] {
    return this.received.filter((r) => !r.settled);
  }

  ids(): Set<string> {
    return new Set(this.received.map((r) => r.id));
  }

  of(id: string): Received[] {
    return this.received.filter((r) => r.id === id);
  }

  /** Runs one settle action; the delivery counts as live until the action resolves. */
  async settle(r: Received, action: (d: Delivery) => Promise<void>): Promise<void> {
    await action(r.delivery);
    r.settled = true;
  }

  /** Waits for the `n`-th delivery of `id` (1-based) and returns it. */
  async nth(id: string, n: number, timeoutMs: number): Promise<Received> {
    return eventually(() => this.of(id)[n - 1], {
      timeoutMs,
      intervalMs: 5,
      what: `delivery #${n} of ${id}`,
    });
  }
}

/** Subscribes a group to the probe types, starting from the earliest message where that means something. */
export function subscribe(
  t: Transport,
  topic: string,
  group: string,
  inbox: Inbox,
  maxInFlight = 10,
): Promise<TransportSubscription> {
  return t.subscribe(
    { topic, group, patterns: [TYPE], maxInFlight, startFrom: 'earliest' },
    inbox.onDelivery,
  );
}

/** Resolves with the promise's value, or rejects when it has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

export function sameBytes(a: WireMessage['body'], b: WireMessage['body']): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
