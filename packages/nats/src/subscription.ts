/**
 * One subscription: a fetch loop on a durable pull consumer (a group) or an ordered consumer (replay) that
 * never holds more unsettled deliveries than allowed, and the deliveries it hands to the core.
 */

import type { Consumer, JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import {
  ControlHeader,
  type Delivery,
  type Logger,
  matchesPattern,
  type SubscribeSpec,
  setHeader,
  type TransportSubscription,
  UnsupportedError,
  type WireMessage,
} from '@omnibus/core';
import { BaseDelivery, deadLetterHeaders, handOver, readDueAt, retryHeaders } from '@omnibus/core/kit';
import { describe } from './errors.js';
import { names } from './naming.js';

export interface SubscriptionDeps {
  logger: Logger;
  fetchExpiresMs: number;
  /** A confirmed publish of a copy (retry, dead letter); rejects when the server did not store it. */
  handOff(subject: string, wire: WireMessage, msgId: string): Promise<void>;
  onClosed(sub: NatsSubscription): void;
}

const RETRY_PAUSE_MS = 1_000;
// A message that arrives after pause() goes back after this long, not at once (it would come straight back).
const PAUSED_NAK_MS = 500;
// A retry due within this is delivered rather than held again (nak delays are not exact to the ms).
const DUE_SLACK_MS = 20;

/** Headers and body of a JetStream message as the core's wire form (no copy of the body). */
export function wireFromMsg(msg: JsMsg): WireMessage {
  return toWire(msg.headers, msg.data);
}

/** A delivered or stored message's headers and body as the core's wire form (no copy of the body). */
export function toWire(h: MsgHdrs | undefined, data: Uint8Array): WireMessage {
  const headers: Record<string, string> = {};
  // Nats-Msg-Id, Nats-Expected-Stream…: publish instructions to the server, not part of the message.
  if (h) for (const name of h.keys()) if (!/^nats-/i.test(name)) setHeader(headers, name, h.get(name));
  return { body: Buffer.from(data.buffer, data.byteOffset, data.byteLength), headers };
}

export class NatsSubscription implements TransportSubscription {
  readonly spec: SubscribeSpec;
  readonly replay: boolean;
  readonly deps: SubscriptionDeps;
  readonly #consumer: Consumer;
  readonly #onDelivery: (d: Delivery) => void;
  readonly #retrySubject: string | undefined;
  readonly #retryPrefix: string;
  readonly #logFields: Record<string, unknown>;
  #inFlight = 0;
  #paused = false;
  #closed = false;
  #wake: (() => void) | undefined;
  /** The pull request under way: stopped on pause and close so the server sends nothing more to it. */
  #batch: { stop(): void } | undefined;
  #loop: Promise<void> = Promise.resolve();
  #handoffs = new Set<Promise<unknown>>();

  constructor(
    spec: SubscribeSpec,
    consumer: Consumer,
    onDelivery: (d: Delivery) => void,
    deps: SubscriptionDeps,
  ) {
    this.spec = spec;
    this.replay = spec.group === undefined;
    this.deps = deps;
    this.#consumer = consumer;
    this.#onDelivery = onDelivery;
    this.#retrySubject = this.replay ? undefined : names.retrySubject(spec.topic, spec.group!);
    this.#retryPrefix = names.retryPrefix(spec.topic);
    this.#logFields = { transport: 'nats', topic: spec.topic, group: spec.group };
  }

  get group(): string {
    return this.spec.group ?? '';
  }

  start(): void {
    this.#loop = this.#run();
  }

  pause(): void {
    this.#paused = true;
    // Unsubscribing the pull's inbox withdraws the request: new messages stay waiting on the server.
    this.#batch?.stop();
  }

  resume(): void {
    if (this.#closed) return;
    this.#paused = false;
    this.#signal();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The pull under way is left to finish (at most fetchExpiresMs): withdrawing it could lose what the
    // server already sent to it until ackWaitMs; what arrives now goes back at once (see #onMessage).
    this.#signal();
    await this.#loop;
    // Hand-offs under way finish (or fail and leave the original to redelivery) before the connection goes.
    await Promise.allSettled([...this.#handoffs]);
    this.deps.onClosed(this);
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Pulls only as many messages as there are free slots, and none while paused. */
  async #run(): Promise<void> {
    const max = Math.max(1, this.spec.maxInFlight);
    // Pull again once half the slots are free, not for every freed slot: fewer, fuller pull requests.
    const refill = Math.ceil(max / 2);
    while (!this.#closed) {
      if (this.#paused || max - this.#inFlight < refill) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        continue;
      }
      try {
        const batch = await this.#consumer.fetch({
          max_messages: max - this.#inFlight,
          expires: this.deps.fetchExpiresMs,
        });
        this.#batch = batch;
        for await (const msg of batch) this.#onMessage(msg);
      } catch (err) {
        if (this.#closed) break;
        this.deps.logger.warn({ ...this.#logFields, err: describe(err) }, 'nats: fetch failed; trying again');
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
      } finally {
        this.#batch = undefined;
      }
    }
  }

  #onMessage(msg: JsMsg): void {
    if (this.#closed || this.#paused) {
      // Pulled before the pause or close took effect: give it back unseen (a replay just stops reading).
      if (!this.replay) msg.nak(this.#closed ? undefined : PAUSED_NAK_MS);
      return;
    }
    const subject = msg.subject;
    if (subject.startsWith(this.#retryPrefix)) {
      // Another group's retry travels in the same stream: not ours to see.
      if (subject !== this.#retrySubject) {
        if (!this.replay) msg.ack();
        return;
      }
      const dueAt = readDueAt(
        msg.headers ? { [ControlHeader.dueAt]: msg.headers.get(ControlHeader.dueAt) } : {},
      );
      const wait = dueAt === undefined ? 0 : dueAt - Date.now();
      if (wait > DUE_SLACK_MS) {
        // The server's delayed redelivery is the retry delay: exact, no tiers, kept across restarts.
        msg.nak(wait);
        return;
      }
    } else {
      const type = msg.headers?.get('ce_type');
      // Types no pattern of ours matches are skipped (the consumer reads the whole stream; see README).
      if (type && !this.spec.patterns.some((p) => matchesPattern(p, type))) {
        if (!this.replay) msg.ack();
        return;
      }
    }
    this.#inFlight++;
    handOver(this.#onDelivery, new NatsDelivery(this, msg), this.deps.logger, this.#logFields);
  }

  /** A delivery is done: free its slot and pull again if the loop was waiting for one. */
  freeSlot(): void {
    this.#inFlight--;
    this.#signal();
  }

  track<T>(pending: Promise<T>): Promise<T> {
    this.#handoffs.add(pending);
    const done = () => this.#handoffs.delete(pending);
    pending.then(done, done);
    return pending;
  }
}

/** Header values may not hold line breaks on NATS (an error text could). */
function oneLine(headers: Record<string, string>): Record<string, string> {
  for (const [name, value] of Object.entries(headers))
    if (/[\r\n]/.test(value)) headers[name] = value.replace(/[\r\n]+/g, ' ');
  return headers;
}

/** A message from a group's consumer (or a replay); BaseDelivery holds the settle state machine. */
class NatsDelivery extends BaseDelivery {
  readonly #sub: NatsSubscription;
  readonly #msg: JsMsg;

  constructor(sub: NatsSubscription, msg: JsMsg) {
    super({
      wire: wireFromMsg(msg),
      topic: sub.spec.topic,
      group: sub.group,
      redelivered: msg.redelivered,
    });
    this.#sub = sub;
    this.#msg = msg;
  }

  protected override onSettled(): void {
    this.#sub.freeSlot();
  }

  protected doAck(): Promise<void> {
    // A replay reads through an ordered consumer, which takes no acks.
    if (!this.#sub.replay) this.#msg.ack();
    return Promise.resolve();
  }

  protected doRelease(): Promise<void> {
    if (!this.#sub.replay) this.#msg.nak();
    return Promise.resolve();
  }

  extendLease(): Promise<void> {
    if (!this.#sub.replay) this.#msg.working();
    return Promise.resolve();
  }

  protected async doRetryLater(delayMs: number, controlHeaders: Record<string, string>): Promise<void> {
    if (this.#sub.replay) throw new UnsupportedError('a replay subscription cannot schedule retries');
    // A fresh copy carries the new control headers; the server holds it until due (see #onMessage).
    const headers = oneLine(
      retryHeaders(this.wire.headers, controlHeaders, Date.now() + Math.max(0, delayMs)),
    );
    const msgId = `${this.wire.headers.ce_id ?? this.#msg.seq}:retry:${this.group}:${headers[ControlHeader.attempts] ?? ''}:${this.#msg.seq}`;
    await this.#handOffThenAck(names.retrySubject(this.topic, this.group), headers, msgId);
  }

  protected async doDeadLetter(controlHeaders: Record<string, string>): Promise<void> {
    if (this.#sub.replay) throw new UnsupportedError('a replay subscription has no dead-letter stream');
    const headers = oneLine(deadLetterHeaders(this.wire.headers, controlHeaders));
    const msgId = `${this.wire.headers.ce_id ?? this.#msg.seq}:dlq:${this.group}:${this.#msg.seq}`;
    await this.#handOffThenAck(names.deadLetterSubject(this.topic, this.group), headers, msgId);
  }

  /** Confirmed copy first, then the confirmed ack: a failed hand-off leaves the original unsettled. */
  async #handOffThenAck(subject: string, headers: Record<string, string>, msgId: string): Promise<void> {
    await this.#sub.track(this.#sub.deps.handOff(subject, { body: this.wire.body, headers }, msgId));
    await this.#msg.ackAck();
  }
}
