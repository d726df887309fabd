/**
 * The operations API (`bus.operations`) on every transport's real broker: a peek leaves dead letters in
 * place, a filtered redrive moves only what it selects back to the group, a purge needs its confirmation.
 * A transport without operations must refuse each call with UnsupportedError.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import {
  type Bus,
  ConfigError,
  connect,
  type MessageContext,
  NonRetryableError,
  UnsupportedError,
} from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { names as natsNames } from '@omnibus/nats';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadHarness } from './load-harness.js';

const harness = await loadHarness();
const supported = harness.create().operations !== undefined;
const buses: Bus[] = [];
const made: string[] = [];

async function deleteKafkaTopics(topics: string[]): Promise<void> {
  const admin = new Kafka({
    brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','),
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    const all = await admin.listTopics();
    const mine = all.filter((t) => topics.some((m) => t === m || t.startsWith(`${m}.`)));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine });
    const groups = (await admin.listGroups()).groups
      .map((g) => g.groupId)
      .filter((g) => topics.some((m) => g.startsWith(`${m}.`)));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

async function deleteNatsStreams(topics: string[]): Promise<void> {
  const nc = await natsConnect({
    servers: [(process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '')],
  });
  try {
    const jsm = await jetstreamManager(nc);
    for (const t of topics)
      for (const s of [natsNames.stream(t), natsNames.deadLetterStream(t)])
        await jsm.streams.delete(s).catch(() => false);
  } finally {
    await nc.close();
  }
}

async function bus(): Promise<Bus> {
  const b = await connect({ transport: harness.create(), service: 'operations', drainTimeoutMs: 5_000 });
  buses.push(b);
  return b;
}

describe(`operations: ${harness.name}`, () => {
  beforeAll(() => harness.setup());
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 5_000 }).catch(() => {})));
  });
  afterAll(async () => {
    await harness.teardown();
    // The Kafka and NATS harnesses delete only their conformance topics; these are this file's own.
    if (harness.name === 'kafka') await deleteKafkaTopics(made);
    if (harness.name === 'nats') await deleteNatsStreams(made);
  });

  const works = async () => {
    const topic = `ops-${randomBytes(4).toString('hex')}`;
    made.push(topic);
    const group = 'audit';
    const b = await bus();
    let failing = true;
    const handled: string[] = [];
    const handler = async (_d: unknown, ctx: MessageContext) => {
      if (failing) throw new NonRetryableError('rejected by audit');
      handled.push(ctx.envelope.id);
    };
    const sub = await b.subscribe({
      topic,
      group,
      handlers: { 'ops.event': handler },
      retry: { attempts: 1 },
      startFrom: 'earliest',
    });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await b.publish(topic, { type: 'ops.event', data: { i } })).id);
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 3, {
      timeoutMs: 60_000,
      what: '3 dead letters',
    });
    const peeked = await b.operations.peek({ topic, group, source: 'dead-letter' });
    expect(peeked.map((p) => p.id).sort()).toEqual([...ids].sort());
    expect(peeked.every((p) => p.deadLetter?.reason === 'non-retryable' && p.deadLetter.attempts === 1)).toBe(
      true,
    );
    expect(peeked[0]!.deadLetter!.error).toContain('rejected by audit');
    // Still all there (SQS counts are approximate and lag a receive, hence the wait).
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 3, { timeoutMs: 15_000 });

    failing = false;
    const result = await b.operations.redrive({ topic, group, filter: { ids: [ids[2]!] } });
    expect(result).toEqual({ scanned: 3, redriven: 1, kept: 2 });
    await eventually(() => handled.includes(ids[2]!), { timeoutMs: 60_000, what: 'the redriven message' });
    expect(handled).toEqual([ids[2]]);

    await expect(b.operations.purge({ topic, group, source: 'dead-letter', confirm: topic })).rejects.toThrow(
      ConfigError,
    );
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 2, { timeoutMs: 30_000 });
    await sub.close();
    const purged = await b.operations.purge({
      topic,
      group,
      source: 'dead-letter',
      confirm: `${topic}/${group}/dead-letter`,
    });
    expect(purged.purged).toBe(2);
    await eventually(async () => (await b.stats(topic, group)).deadLettered === 0, { timeoutMs: 30_000 });
    expect(await b.operations.peek({ topic, group, source: 'dead-letter' })).toEqual([]);
  };

  const refuses = async () => {
    const b = await bus();
    const ref = { topic: 'ops-none', group: 'g' };
    await expect(b.operations.groups()).rejects.toThrow(UnsupportedError);
    await expect(b.operations.peek(ref)).rejects.toThrow(UnsupportedError);
    await expect(b.operations.redrive(ref)).rejects.toThrow(UnsupportedError);
    await expect(b.operations.purge({ ...ref, source: 'group', confirm: 'ops-none/g' })).rejects.toThrow(
      UnsupportedError,
    );
  };

  // One test per transport: the whole cycle where it has operations, the refusal where it has none.
  it(
    supported
      ? 'peeks dead letters in place, redrives by id to the group only, purges when confirmed'
      : 'refuses every operation with UnsupportedError',
    supported ? works : refuses,
    180_000,
  );
});
