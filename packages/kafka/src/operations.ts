/**
 * The operations API on Kafka. A dead-letter topic is a log, so "removed" means "behind the redrive
 * group's committed offset": a redrive reads the dead-letter topic with its own consumer group,
 * re-publishes each selected record to the group's shortest retry tier (due at once, so only that group
 * gets it), and commits past it only once the broker confirmed the copy. Peek reads with a throwaway
 * group that commits nothing.
 */
import { randomUUID } from 'node:crypto';
import { ConfigError, ControlHeader, UnsupportedError, type WireMessage } from '@omnibus/core';
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
import type {
  ConsumedRecord,
  ConsumerConfig,
  DriverConsumer,
  DriverProducer,
  KafkaDriver,
  PartitionOffsets,
} from './driver.js';
import { deadLetterTopic, groupId, redriveGroupId, retryTopic } from './naming.js';
import type { ResolvedKafkaOptions } from './options.js';

export interface KafkaOperationsDeps {
  parts(): { driver: KafkaDriver; producer: DriverProducer };
  options: ResolvedKafkaOptions;
}

/** Where reading starts and stops in one partition: [from, to). */
interface Span {
  partition: number;
  from: number;
  to: number;
}

export class KafkaOperations implements TransportOperations {
  constructor(private readonly deps: KafkaOperationsDeps) {}

  /**
   * Topics with a dead-letter topic `<topic>.<group>.dlq` (created for every group that subscribed);
   * where topic names overlap, the longest topic that prefixes the name wins.
   */
  async listGroups(): Promise<GroupRef[]> {
    const topics = await this.deps.parts().driver.listTopics();
    const plain = topics.filter(
      (t) => !t.endsWith('.dlq') && !/\.retry\.\d+$/.test(t) && !t.startsWith('__'),
    );
    const out: GroupRef[] = [];
    for (const dlq of topics) {
      if (!dlq.endsWith('.dlq')) continue;
      const owner = plain
        .filter((t) => dlq.startsWith(`${t}.`) && dlq.length > t.length + 5)
        .sort((a, b) => b.length - a.length)[0];
      if (owner) out.push({ topic: owner, group: dlq.slice(owner.length + 1, -'.dlq'.length) });
    }
    return out.sort((a, b) => (a.topic + a.group).localeCompare(b.topic + b.group));
  }

  async #existing(topic: string, field: string): Promise<void> {
    const topics = await this.deps.parts().driver.listTopics();
    if (!topics.includes(topic)) throw new ConfigError(field, `kafka topic "${topic}" does not exist`);
  }

  /** From the group's committed offset (or the log start) to the end, per partition. */
  async #spans(topic: string, group: string): Promise<Span[]> {
    const { driver } = this.deps.parts();
    const offsets: PartitionOffsets[] = await driver.topicOffsets(topic);
    const committed = new Map((await driver.groupOffsets(group, topic)).map((c) => [c.partition, c.offset]));
    return offsets.map((p) => {
      const c = committed.get(p.partition) ?? -1;
      return { partition: p.partition, from: c < 0 ? p.low : Math.max(c, p.low), to: p.high };
    });
  }

  #consumerConfig(group: string, topic: string): ConsumerConfig {
    const o = this.deps.options;
    return {
      groupId: group,
      topics: [topic],
      fromBeginning: true,
      sessionTimeoutMs: o.sessionTimeoutMs,
      rebalanceTimeoutMs: o.rebalanceTimeoutMs,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      maxWaitTimeMs: o.maxWaitTimeMs,
      maxBytesPerPartition: o.maxBytesPerPartition,
      partitionsConsumedConcurrently: 1,
      restartDelayMs: o.consumerRestartDelayMs,
    };
  }

  /**
   * Reads every record of `spans` in order (one partition at a time through one consumer), calling
   * `each` for each; `each` returns false to stop. Resolves once every span is read or `each` stopped.
   */
  async #read(
    consumerGroup: string,
    topic: string,
    spans: Span[],
    each: (partition: number, record: ConsumedRecord, consumer: DriverConsumer) => Promise<boolean>,
  ): Promise<void> {
    const open = new Map(spans.filter((s) => s.from < s.to).map((s) => [s.partition, s]));
    if (open.size === 0) return;
    const { driver } = this.deps.parts();
    let finish!: () => void;
    let fail!: (err: Error) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    let stopped = false;
    const consumer: DriverConsumer = driver.consumer(this.#consumerConfig(consumerGroup, topic), {
      onAssignment: (_member, assignment) => {
        for (const p of assignment.get(topic) ?? []) {
          const span = open.get(p);
          if (span) consumer.seek(topic, p, String(span.from));
        }
      },
      onBatch: async (batch, control) => {
        const span = open.get(batch.partition);
        for (const record of batch.records) {
          if (stopped || !control.isActive()) return;
          const offset = Number(record.offset);
          if (!span || offset < span.from) {
            control.resolve(record.offset);
            continue;
          }
          if (offset >= span.to) break;
          let more: boolean;
          try {
            more = await each(batch.partition, record, consumer);
          } catch (err) {
            stopped = true;
            fail(err as Error);
            return;
          }
          control.resolve(record.offset);
          span.from = offset + 1;
          if (!more) {
            stopped = true;
            finish();
            return;
          }
          if (span.from >= span.to) {
            open.delete(batch.partition);
            if (open.size === 0) {
              stopped = true;
              finish();
              return;
            }
          }
        }
      },
      onCrash: (error, restarting) => {
        if (!restarting) fail(error);
      },
    });
    try {
      await consumer.start();
      await done;
    } finally {
      stopped = true;
      await consumer.stop().catch(() => {});
    }
  }

  async peek(target: OperationTarget, limit: number): Promise<PeekedWire[]> {
    const { driver } = this.deps.parts();
    const dead = target.source === 'dead-letter';
    const topic = dead ? deadLetterTopic(target.topic, target.group) : target.topic;
    await this.#existing(topic, dead ? 'group' : 'topic');
    const spans = await this.#spans(
      topic,
      dead ? redriveGroupId(target.topic, target.group) : groupId(target.topic, target.group),
    );
    const found: PeekedWire[] = [];
    // A group of its own that commits nothing, deleted afterwards: the group's position is untouched.
    const throwaway = `omnibus-peek-${randomUUID()}`;
    try {
      await this.#read(throwaway, topic, spans, async (partition, record) => {
        found.push({ wire: wireOf(record), position: `${partition}:${record.offset}` });
        return found.length < limit;
      });
    } finally {
      await driver.deleteGroups([throwaway]).catch(() => {});
    }
    return found;
  }

  /**
   * Reads the dead letters past the redrive group's offset, up to the end they had when it started. A
   * selected record goes to the shortest retry tier of the group, due now; one the filter leaves out is
   * appended to the dead-letter topic again (so it stays ahead of the redrive group's offset). Either
   * way the offset is committed only after the broker confirmed the write: a redrive killed at any
   * point leaves the record in hand behind both or neither commit, never lost.
   */
  async redrive(spec: RedriveSpec): Promise<RedriveResult> {
    const { producer } = this.deps.parts();
    const dlq = deadLetterTopic(spec.topic, spec.group);
    await this.#existing(dlq, 'group');
    const tiers = this.deps.options.delayTiersMs;
    if (tiers.length === 0)
      throw new UnsupportedError('redrive on Kafka goes through the retry tiers; this transport has none');
    const back = retryTopic(spec.topic, spec.group, Math.min(...tiers));
    await this.#existing(back, 'group');
    const redriveGroup = redriveGroupId(spec.topic, spec.group);
    const spans = await this.#spans(dlq, redriveGroup);
    const total = spans.reduce((n, s) => n + Math.max(0, s.to - s.from), 0);
    let scanned = 0;
    let redriven = 0;
    await this.#read(redriveGroup, dlq, spans, async (partition, record, consumer) => {
      await spec.pace?.();
      if (spec.signal?.aborted) return false;
      scanned++;
      const wire = wireOf(record);
      if (spec.select(wire)) {
        const headers: Record<string, string | Uint8Array> = redriveHeaders(wire.headers);
        headers[ControlHeader.dueAt] = String(Date.now());
        await producer.send([{ topic: back, records: [{ key: record.key, body: record.value, headers }] }]);
        redriven++;
      } else {
        await producer.send([
          {
            topic: dlq,
            records: [{ key: record.key, body: record.value, headers: record.rawHeaders, partition }],
          },
        ]);
      }
      await consumer.commit([{ topic: dlq, partition, offset: String(Number(record.offset) + 1) }]);
      spec.onProgress?.({ scanned, redriven, total });
      return true;
    });
    return { scanned, redriven, kept: scanned - redriven };
  }

  /**
   * Dead letters: the redrive group's offsets move to the end of the dead-letter topic (the records stay
   * in the log until retention removes them). A group: its offsets move to the end of the topic, which
   * Kafka refuses while the group has running members.
   */
  async purge(target: OperationTarget): Promise<PurgeResult> {
    const { driver } = this.deps.parts();
    const dead = target.source === 'dead-letter';
    const topic = dead ? deadLetterTopic(target.topic, target.group) : target.topic;
    await this.#existing(topic, dead ? 'group' : 'topic');
    const group = dead ? redriveGroupId(target.topic, target.group) : groupId(target.topic, target.group);
    const spans = await this.#spans(topic, group);
    const purged = spans.reduce((n, s) => n + Math.max(0, s.to - s.from), 0);
    try {
      await driver.setGroupOffsets(
        group,
        topic,
        spans.map((s) => ({ partition: s.partition, offset: String(s.to) })),
      );
    } catch (err) {
      throw new UnsupportedError(
        `kafka refused to move the offsets of group "${group}" (stop its consumers first): ${(err as Error).message}`,
        { cause: err },
      );
    }
    return { purged };
  }
}

function wireOf(record: ConsumedRecord): WireMessage {
  return { body: record.value, headers: { ...record.headers }, key: record.key };
}
