/**
 * The operations API on NATS JetStream. Every read is a stream message get (STREAM.MSG.GET by sequence
 * and subject, NATS 2.9+): nothing is delivered, no delivery is counted, no consumer is created. A
 * redrive publishes each selected dead letter to the group's retry subject, waits for the stream's ack,
 * then deletes it from the dead-letter stream.
 *
 * What a group is waiting for is read from its consumer's delivery cursor, not its ack floor: on NATS 2.9
 * a consumer created for new messages reports an ack floor of 0 (a peek from there would show the whole
 * history), and the server lists no per-message ack state, so past the floor handled and unhandled
 * messages cannot be told apart. Deliveries in hand and retries being held (`inFlight`) are therefore
 * not shown; what is shown are the messages `depth` counts, other groups' retries left out.
 */
import {
  AckPolicy,
  type ConsumerInfo,
  DeliverPolicy,
  type JetStreamManager,
  type MsgRequest,
  type NextMsgRequest,
  type StoredMsg,
} from '@nats-io/jetstream';
import { ConfigError, ConnectionError, type WireMessage } from '@omnibus/core';
import {
  type GroupRef,
  type OperationTarget,
  type PeekedWire,
  type PurgeResult,
  type RedriveResult,
  type RedriveSpec,
  redriveHeaders,
  type TransportOperations,
} from '@omnibus/core/kit';
import { describe, notFound, streamNotFound } from './errors.js';
import { checkName, names } from './naming.js';
import { toWire } from './subscription.js';

export interface NatsOperationsDeps {
  jsm(): JetStreamManager;
  /** A confirmed publish (resolves once the stream stored it, or dropped it as a duplicate of `msgId`). */
  handOff(subject: string, wire: WireMessage, msgId: string): Promise<void>;
}

export class NatsOperations implements TransportOperations {
  constructor(private readonly deps: NatsOperationsDeps) {}

  /**
   * Durable consumers of the streams this transport creates for topics (subjects `<name>.>`, not a
   * `<topic>_dlq` dead-letter stream). Ephemeral consumers (replays, tails) have no durable name.
   */
  async listGroups(): Promise<GroupRef[]> {
    const jsm = this.deps.jsm();
    const topics = new Set<string>();
    for await (const s of jsm.streams.list()) {
      const subjects = s.config.subjects ?? [];
      if (subjects.length === 1 && subjects[0] === `${s.config.name}.>`) topics.add(s.config.name);
    }
    const out: GroupRef[] = [];
    for (const topic of topics) {
      if (topic.endsWith('_dlq') && topics.has(topic.slice(0, -'_dlq'.length))) continue;
      for await (const c of jsm.consumers.list(names.stream(topic))) {
        const group = c.config.durable_name;
        if (group) out.push({ topic, group });
      }
    }
    return out.sort((a, b) => (a.topic + a.group).localeCompare(b.topic + b.group));
  }

  /** The group's consumer; ConfigError naming the topic or the group when it does not exist. */
  async #consumer(ref: GroupRef): Promise<ConsumerInfo> {
    checkName('topic', ref.topic);
    checkName('group', ref.group);
    try {
      return await this.deps.jsm().consumers.info(names.stream(ref.topic), ref.group);
    } catch (err) {
      if (streamNotFound(err)) throw new ConfigError('topic', `stream "${ref.topic}" does not exist`);
      if (notFound(err))
        throw new ConfigError('group', `consumer "${ref.group}" does not exist on "${ref.topic}"`);
      throw err;
    }
  }

  /**
   * The first message at or after `seq` whose subject matches `subject` (wildcards allowed), or null.
   * The client types this request for direct get only; STREAM.MSG.GET takes it too since NATS 2.9.
   */
  async #next(stream: string, seq: number, subject: string): Promise<StoredMsg | null> {
    const query: NextMsgRequest = { seq, next_by_subj: subject };
    return this.deps.jsm().streams.getMessage(stream, query as unknown as MsgRequest);
  }

  /** The dead-letter stream's message count for the group and its last sequence; null when it has none. */
  async #deadLetters(ref: GroupRef): Promise<{ count: number; lastSeq: number } | null> {
    const subject = names.deadLetterSubject(ref.topic, ref.group);
    try {
      const info = await this.deps
        .jsm()
        .streams.info(names.deadLetterStream(ref.topic), { subjects_filter: subject });
      return { count: info.state.subjects?.[subject] ?? 0, lastSeq: info.state.last_seq };
    } catch (err) {
      // Created by the first dead letter: none yet.
      if (notFound(err)) return null;
      throw err;
    }
  }

  async peek(target: OperationTarget, limit: number): Promise<PeekedWire[]> {
    const consumer = await this.#consumer(target);
    return target.source === 'dead-letter'
      ? this.#peekDeadLetters(target, limit)
      : this.#peekGroup(target, consumer, limit);
  }

  /**
   * From the delivery cursor on, published messages (`<topic>.t.>`) and this group's own retries merged
   * in stream order; other groups' retries share the stream but are never read.
   */
  async #peekGroup(ref: GroupRef, consumer: ConsumerInfo, limit: number): Promise<PeekedWire[]> {
    const stream = names.stream(ref.topic);
    const from = consumer.delivered.stream_seq + 1;
    const subjects = [`${ref.topic}.t.>`, names.retrySubject(ref.topic, ref.group)];
    const heads = await Promise.all(subjects.map((s) => this.#next(stream, from, s)));
    const found: PeekedWire[] = [];
    while (found.length < limit) {
      let i = -1;
      for (let j = 0; j < heads.length; j++) {
        const h = heads[j];
        if (h && (i < 0 || h.seq < heads[i]!.seq)) i = j;
      }
      if (i < 0) break;
      const m = heads[i]!;
      // Past the cursor: never delivered to this group.
      found.push({ wire: toWire(m.header, m.data), position: String(m.seq), deliveryCount: 0 });
      heads[i] = await this.#next(stream, m.seq + 1, subjects[i]!);
    }
    return found;
  }

  async #peekDeadLetters(ref: GroupRef, limit: number): Promise<PeekedWire[]> {
    const stream = names.deadLetterStream(ref.topic);
    const subject = names.deadLetterSubject(ref.topic, ref.group);
    const found: PeekedWire[] = [];
    try {
      let m = await this.#next(stream, 1, subject);
      while (m && found.length < limit) {
        found.push({ wire: toWire(m.header, m.data), position: String(m.seq) });
        if (found.length < limit) m = await this.#next(stream, m.seq + 1, subject);
      }
    } catch (err) {
      if (streamNotFound(err)) return found;
      throw err;
    }
    return found;
  }

  /**
   * Dead letters of the group in stream order, up to the last one there was at the start (a redriven
   * message dead-lettered again is left for the next redrive). A selected one is published to the
   * group's retry subject without a due time, so only that group receives it, at once; once the stream
   * acked the copy, the dead letter is deleted. A crash between the two leaves both: the copy's
   * Nats-Msg-Id is made of the envelope id and the dead letter's sequence, so a redrive run again within
   * the topic stream's duplicate window (`duplicateWindowMs`) does not store that copy a second time.
   */
  async redrive(spec: RedriveSpec): Promise<RedriveResult> {
    await this.#consumer(spec);
    const dead = await this.#deadLetters(spec);
    let scanned = 0;
    let redriven = 0;
    if (!dead) return { scanned, redriven, kept: 0 };
    const jsm = this.deps.jsm();
    const stream = names.deadLetterStream(spec.topic);
    const subject = names.deadLetterSubject(spec.topic, spec.group);
    const back = names.retrySubject(spec.topic, spec.group);
    let seq = 1;
    for (;;) {
      const m = await this.#next(stream, seq, subject);
      if (!m || m.seq > dead.lastSeq) break;
      await spec.pace?.();
      if (spec.signal?.aborted) break;
      seq = m.seq + 1;
      scanned++;
      const wire = toWire(m.header, m.data);
      if (spec.select(wire)) {
        const headers = redriveHeaders(wire.headers);
        const msgId = `${wire.headers.ce_id ?? ''}:redrive:${spec.group}:${m.seq}`;
        await this.deps.handOff(back, { body: wire.body, headers }, msgId);
        await jsm.streams.deleteMessage(stream, m.seq, false).catch((err: unknown) => {
          // Deleted meanwhile (another redrive, a purge): gone either way.
          if (!notFound(err)) throw err;
        });
        redriven++;
      }
      spec.onProgress?.({ scanned, redriven, total: dead.count });
    }
    return { scanned, redriven, kept: scanned - redriven };
  }

  /**
   * Dead letters: the dead-letter stream purged of the group's subject. A group: its messages live in the
   * topic's stream that every group reads, so deleting them would take them from the other groups too;
   * instead the group's consumer is deleted and created again with the same settings, starting after the
   * stream's last message. That drops what the group had not received, its deliveries in hand and its
   * retries being held; messages published meanwhile (after the last sequence read) are kept. A running
   * subscriber's pull fails once and then reads from the new consumer; its acks for the old one are lost,
   * which no longer matters.
   */
  async purge(target: OperationTarget): Promise<PurgeResult> {
    const consumer = await this.#consumer(target);
    const jsm = this.deps.jsm();
    if (target.source === 'dead-letter') {
      try {
        const res = await jsm.streams.purge(names.deadLetterStream(target.topic), {
          filter: names.deadLetterSubject(target.topic, target.group),
        });
        return { purged: res.purged };
      } catch (err) {
        if (streamNotFound(err)) return { purged: 0 };
        throw err;
      }
    }
    const stream = names.stream(target.topic);
    const state = (await jsm.streams.info(stream)).state;
    const lastSeq = state.last_seq;
    // nats-server 2.9's num_pending is at times one short; without deletes inside the stream (this
    // transport makes none) the count past the delivery cursor is exact.
    const waiting = state.num_deleted
      ? consumer.num_pending
      : lastSeq - Math.max(consumer.delivered.stream_seq, state.first_seq - 1);
    const purged = waiting + consumer.num_ack_pending;
    const { opt_start_time: _time, ...config } = consumer.config;
    await jsm.consumers.delete(stream, target.group);
    try {
      await jsm.consumers.add(stream, {
        ...config,
        ack_policy: config.ack_policy ?? AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: lastSeq + 1,
      });
    } catch (err) {
      throw new ConnectionError(
        `purge of ${target.topic}/${target.group}: the group's consumer was deleted but not created again ` +
          `(a subscribe creates it): ${describe(err)}`,
        { cause: err },
      );
    }
    return { purged };
  }
}
