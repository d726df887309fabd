/**
 * `bus.operations` on the real NATS server, beyond the cycle every transport runs
 * (integration-tests/src/operations.test.ts): groups listed without replays, peeks of a group and of its
 * dead letters that a consumer still gets afterwards, redrives by type, id and all that reach only the
 * group, an aborted redrive and a redrive re-run after a crash that lose and duplicate nothing, and purges
 * of dead letters and of one group that leave the topic's other groups untouched.
 */
import { randomBytes } from 'node:crypto';
import { type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, headers as natsHeaders } from '@nats-io/transport-node';
import {
  type Bus,
  ConfigError,
  connect,
  type MessageContext,
  NonRetryableError,
  type Subscription,
  uuidv7,
} from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { names, nats } from '../src/index.js';
import { NatsOperations } from '../src/operations.js';

const SERVER = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
const buses: Bus[] = [];
const topics: string[] = [];
const closers: (() => Promise<void>)[] = [];

async function bus(): Promise<Bus> {
  const b = await connect({
    transport: nats({ servers: [SERVER] }),
    service: 'nats-operations-test',
    drainTimeoutMs: 5_000,
  });
  buses.push(b);
  return b;
}

function topicName(label: string): string {
  const t = `ops-${label}-${randomBytes(4).toString('hex')}`;
  topics.push(t);
  return t;
}

async function raw<T>(fn: (nc: Awaited<ReturnType<typeof natsConnect>>) => Promise<T>): Promise<T> {
  const nc = await natsConnect({ servers: [SERVER] });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

/** Messages the topic's stream holds at one subject. */
async function countAt(topic: string, subject: string): Promise<number> {
  return raw(async (nc) => {
    const info = await (await jetstreamManager(nc)).streams.info(names.stream(topic), {
      subjects_filter: subject,
    });
    return info.state.subjects?.[subject] ?? 0;
  });
}

/** A group's consumer that dead-letters every message while `failing`, and records what it handled. */
async function consumer(b: Bus, topic: string, group: string, state: { failing: boolean }) {
  const handled: string[] = [];
  const handle = async (_data: unknown, ctx: MessageContext) => {
    if (state.failing) throw new NonRetryableError(`declined ${ctx.envelope.id}`);
    handled.push(ctx.envelope.id);
  };
  const sub: Subscription = await b.subscribe({
    topic,
    group,
    handlers: { 'ops.*': handle },
    retry: { attempts: 1 },
    startFrom: 'earliest',
  });
  return { handled, sub };
}

/** Publishes `types` in order and waits until the group dead-lettered them all. */
async function deadLetter(b: Bus, topic: string, group: string, types: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, type] of types.entries()) ids.push((await b.publish(topic, { type, data: { i } })).id);
  await eventually(async () => (await b.stats(topic, group)).deadLettered === types.length, {
    timeoutMs: 30_000,
    what: `${types.length} dead letters`,
  });
  return ids;
}

afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c().catch(() => {})));
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 5_000 }).catch(() => {})));
});

afterAll(async () => {
  await raw(async (nc) => {
    const jsm = await jetstreamManager(nc);
    for (const t of topics)
      for (const s of [names.stream(t), names.deadLetterStream(t)])
        await jsm.streams.delete(s).catch(() => false);
  });
});

describe('nats operations', () => {
  it('lists durable groups only, and refuses an unknown topic or group with ConfigError', async () => {
    const topic = topicName('list');
    const b = await bus();
    await b.provision(topic, [{ group: 'billing' }, { group: 'audit' }]);
    // A replay reads through an ephemeral consumer: not a group.
    const replay = await b.replay({ topic, from: 'earliest', handlers: { '#': async () => {} } });
    const state = { failing: true };
    const c = await consumer(b, topic, 'billing', state);
    await deadLetter(b, topic, 'billing', ['ops.x']);
    await c.sub.close();

    const listed = (await b.operations.groups()).filter((g) => g.topic === topic);
    expect(listed.map((g) => g.group)).toEqual(['audit', 'billing']);
    expect(listed.find((g) => g.group === 'billing')!.stats.deadLettered).toBe(1);
    // The dead-letter stream is no topic of its own.
    expect((await b.operations.groups()).some((g) => g.topic === names.deadLetterStream(topic))).toBe(false);
    await replay.close();

    for (const ref of [
      { topic: 'ops-no-such-topic', group: 'billing' },
      { topic, group: 'no-such-group' },
    ]) {
      const field = ref.group === 'billing' ? 'topic' : 'group';
      for (const call of [
        () => b.operations.peek(ref),
        () => b.operations.peek({ ...ref, source: 'dead-letter' }),
        () => b.operations.redrive(ref),
        () =>
          b.operations.purge({
            ...ref,
            source: 'dead-letter',
            confirm: `${ref.topic}/${ref.group}/dead-letter`,
          }),
        () => b.operations.purge({ ...ref, source: 'group', confirm: `${ref.topic}/${ref.group}` }),
      ]) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).field).toBe(field);
      }
    }
  });

  it("peeks a group's waiting messages in stream order, own retries in, other groups' out, taking nothing", async () => {
    const topic = topicName('peek');
    const b = await bus();
    await b.provision(topic, [{ group: 'billing' }, { group: 'audit' }]);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await b.publish(topic, { type: 'ops.x', data: { i } })).id);
    // A retry of each group, due now, as a subscription hands it off.
    const retry = async (group: string) => {
      const id = uuidv7();
      const wire = nats().encode({
        id,
        type: 'ops.x',
        source: 'test',
        time: Date.now(),
        key: undefined,
        correlationId: id,
        version: 1,
        contentType: 'application/json',
        headers: {},
        data: Buffer.from('{"retry":true}'),
      });
      await raw(async (nc) => {
        const h = natsHeaders();
        for (const [k, v] of Object.entries(wire.headers)) h.set(k, v);
        await jetstream(nc).publish(names.retrySubject(topic, group), wire.body, { headers: h });
      });
      return id;
    };
    const auditRetry = await retry('audit');
    ids.push(await retry('billing'));
    ids.push((await b.publish(topic, { type: 'ops.y', data: { i: 3 } })).id);

    const peeked = await b.operations.peek({ topic, group: 'billing' });
    expect(peeked.map((p) => p.id)).toEqual(ids);
    const positions = peeked.map((p) => Number(p.position));
    expect(positions).toEqual([...positions].sort((x, y) => x - y));
    expect(peeked.every((p) => p.deliveryCount === 0 && p.envelope !== null)).toBe(true);
    expect((await b.operations.peek({ topic, group: 'billing', limit: 2 })).map((p) => p.id)).toEqual(
      ids.slice(0, 2),
    );
    // Nothing was delivered (no delivery awaits an ack), and the group's consumer gets every one.
    expect((await b.stats(topic, 'billing')).inFlight).toBe(0);
    const c = await consumer(b, topic, 'billing', { failing: false });
    await eventually(() => c.handled.length === ids.length, { timeoutMs: 30_000, what: 'every message' });
    expect([...c.handled].sort()).toEqual([...ids].sort());
    await c.sub.close();
    expect(await b.operations.peek({ topic, group: 'billing' })).toEqual([]);
    // No dead letter yet, so no dead-letter stream: nothing to show, move or purge.
    expect(await b.operations.peek({ topic, group: 'billing', source: 'dead-letter' })).toEqual([]);
    expect(await b.operations.redrive({ topic, group: 'billing' })).toEqual({
      scanned: 0,
      redriven: 0,
      kept: 0,
    });
    expect(
      await b.operations.purge({
        topic,
        group: 'billing',
        source: 'dead-letter',
        confirm: `${topic}/billing/dead-letter`,
      }),
    ).toEqual({ purged: 0 });
    // The other group still has its own waiting, its retry included.
    expect((await b.operations.peek({ topic, group: 'audit' })).map((p) => p.id)).toContain(auditRetry);
  });

  it('peeks dead letters in place, redrives by type, by id and all to that group only, and an abort loses nothing', async () => {
    const topic = topicName('redrive');
    const group = 'billing';
    const b = await bus();
    // Another group on the topic handles everything: redriven copies must not reach it.
    const other = await consumer(b, topic, 'audit', { failing: false });
    const state = { failing: true };
    const failing = await consumer(b, topic, group, state);
    const types = ['ops.x', 'ops.y', 'ops.x', 'ops.x', 'ops.y', 'ops.x', 'ops.x'];
    const ids = await deadLetter(b, topic, group, types);
    await eventually(() => other.handled.length === ids.length, {
      timeoutMs: 30_000,
      what: 'the other group',
    });
    await failing.sub.close();

    const dead = await b.operations.peek({ topic, group, source: 'dead-letter', limit: 1000 });
    expect(dead.map((p) => p.id)).toEqual(ids);
    expect(dead.every((p) => p.deadLetter?.reason === 'non-retryable' && p.deadLetter.attempts === 1)).toBe(
      true,
    );
    expect(
      (await b.operations.peek({ topic, group, source: 'dead-letter', limit: 3 })).map((p) => p.id),
    ).toEqual(ids.slice(0, 3));
    expect((await b.stats(topic, group)).deadLettered).toBe(ids.length);

    state.failing = false;
    const healed = await consumer(b, topic, group, state);
    const byType = await b.operations.redrive({ topic, group, filter: { types: ['ops.y'] } });
    expect(byType).toEqual({ scanned: 7, redriven: 2, kept: 5 });
    const ys = ids.filter((_, i) => types[i] === 'ops.y');
    await eventually(() => healed.handled.length === 2, { timeoutMs: 30_000, what: 'the redriven ops.y' });
    expect([...healed.handled].sort()).toEqual([...ys].sort());

    const byId = await b.operations.redrive({ topic, group, filter: { ids: [ids[3]!] } });
    expect(byId).toEqual({ scanned: 5, redriven: 1, kept: 4 });
    await eventually(() => healed.handled.includes(ids[3]!), { timeoutMs: 30_000, what: 'the redriven id' });

    // Aborted after the first one moved: it is back with the group, the rest still dead letters.
    const abort = new AbortController();
    const progress: number[] = [];
    const aborted = await b.operations.redrive({
      topic,
      group,
      signal: abort.signal,
      onProgress: (p) => {
        progress.push(p.total ?? -1);
        if (p.redriven === 1) abort.abort();
      },
    });
    expect(aborted).toEqual({ scanned: 1, redriven: 1, kept: 0 });
    expect(progress).toEqual([4]);
    const left = (await b.operations.peek({ topic, group, source: 'dead-letter' })).map((p) => p.id);
    expect(left).toHaveLength(3);
    await eventually(() => healed.handled.length === 4, {
      timeoutMs: 30_000,
      what: 'the aborted redrive’s one',
    });
    expect(ids.every((id) => left.includes(id) || healed.handled.includes(id))).toBe(true);

    expect(await b.operations.redrive({ topic, group })).toEqual({ scanned: 3, redriven: 3, kept: 0 });
    await eventually(() => healed.handled.length === ids.length, { timeoutMs: 30_000, what: 'every id' });
    expect([...healed.handled].sort()).toEqual([...ids].sort());
    expect((await b.stats(topic, group)).deadLettered).toBe(0);
    // Every copy went to this group's retry subject; the other group saw each message once.
    expect(await countAt(topic, names.retrySubject(topic, group))).toBe(ids.length);
    expect([...other.handled].sort()).toEqual([...ids].sort());
  });

  it('a redrive run again after a crash between publish and delete stores no second copy', async () => {
    const topic = topicName('rerun');
    const group = 'billing';
    const b = await bus();
    const failing = await consumer(b, topic, group, { failing: true });
    const ids = await deadLetter(b, topic, group, ['ops.x', 'ops.x']);
    await failing.sub.close();

    // The same operations on a connection of their own, with a dead-letter delete that fails as a crash
    // right after the publish ack would leave it.
    const nc = await natsConnect({ servers: [SERVER] });
    closers.push(() => nc.close());
    const real = await jetstreamManager(nc);
    const crashing = Object.create(real) as JetStreamManager;
    Object.defineProperty(crashing, 'streams', {
      value: Object.create(real.streams, {
        deleteMessage: { value: () => Promise.reject(new Error('killed before the delete')) },
      }),
    });
    const js = jetstream(nc);
    const ops = new NatsOperations({
      jsm: () => crashing,
      handOff: async (subject, wire, msgId) => {
        const h = natsHeaders();
        for (const [k, v] of Object.entries(wire.headers)) h.set(k, v);
        await js.publish(subject, wire.body, { headers: h, msgID: msgId });
      },
    });
    await expect(ops.redrive({ topic, group, select: () => true })).rejects.toThrow(
      'killed before the delete',
    );
    const retries = names.retrySubject(topic, group);
    expect(await countAt(topic, retries)).toBe(1);
    expect((await b.stats(topic, group)).deadLettered).toBe(2);

    expect(await b.operations.redrive({ topic, group })).toEqual({ scanned: 2, redriven: 2, kept: 0 });
    // The first dead letter's copy was already stored: the stream dropped the second as a duplicate.
    expect(await countAt(topic, retries)).toBe(2);
    const healed = await consumer(b, topic, group, { failing: false });
    await eventually(() => healed.handled.length === 2, { timeoutMs: 30_000, what: 'both ids' });
    expect([...healed.handled].sort()).toEqual([...ids].sort());
  });

  it('stops at the dead letters there were at its start while the group dead-letters the copies again', async () => {
    const topic = topicName('again');
    const group = 'billing';
    const b = await bus();
    await consumer(b, topic, group, { failing: true });
    const ids = await deadLetter(b, topic, group, ['ops.x', 'ops.x', 'ops.x']);
    // Slow enough for the still-failing consumer to dead-letter each copy before the redrive reads on.
    const result = await b.operations.redrive({ topic, group, ratePerSecond: 10 });
    expect(result).toEqual({ scanned: 3, redriven: 3, kept: 0 });
    const again = await eventually(
      async () => {
        const dead = await b.operations.peek({ topic, group, source: 'dead-letter' });
        return dead.length === 3 ? dead : undefined;
      },
      { timeoutMs: 30_000, what: 'the copies dead-lettered again' },
    );
    expect(again.map((p) => p.id)).toEqual(ids);
  });

  it("purges dead letters when confirmed, and one group's backlog without touching the other groups'", async () => {
    const topic = topicName('purge');
    const b = await bus();
    const failing = await consumer(b, topic, 'billing', { failing: true });
    await deadLetter(b, topic, 'billing', ['ops.x', 'ops.y', 'ops.x']);
    await failing.sub.close();

    await expect(
      b.operations.purge({ topic, group: 'billing', source: 'dead-letter', confirm: `${topic}/billing` }),
    ).rejects.toThrow(ConfigError);
    expect((await b.stats(topic, 'billing')).deadLettered).toBe(3);
    expect(
      await b.operations.purge({
        topic,
        group: 'billing',
        source: 'dead-letter',
        confirm: `${topic}/billing/dead-letter`,
      }),
    ).toEqual({ purged: 3 });
    expect(await b.operations.peek({ topic, group: 'billing', source: 'dead-letter' })).toEqual([]);
    expect((await b.stats(topic, 'billing')).deadLettered).toBe(0);

    // Both groups have the same 4 waiting; billing's purge leaves audit's.
    await b.provision(topic, [{ group: 'audit' }]);
    const waiting: string[] = [];
    for (let i = 0; i < 4; i++) waiting.push((await b.publish(topic, { type: 'ops.x', data: { i } })).id);
    expect(await b.operations.peek({ topic, group: 'billing' })).toHaveLength(4);
    await expect(
      b.operations.purge({
        topic,
        group: 'billing',
        source: 'group',
        confirm: `${topic}/billing/dead-letter`,
      }),
    ).rejects.toThrow(ConfigError);
    expect(await b.operations.peek({ topic, group: 'billing' })).toHaveLength(4);
    expect(
      await b.operations.purge({ topic, group: 'billing', source: 'group', confirm: `${topic}/billing` }),
    ).toEqual({ purged: 4 });
    expect(await b.operations.peek({ topic, group: 'billing' })).toEqual([]);
    expect((await b.operations.peek({ topic, group: 'audit' })).map((p) => p.id)).toEqual(waiting);

    // The group gets what comes after the purge, also through a subscription running across it.
    const billing = await consumer(b, topic, 'billing', { failing: false });
    const before = (await b.publish(topic, { type: 'ops.x', data: {} })).id;
    await eventually(() => billing.handled.includes(before), { timeoutMs: 30_000, what: 'a new message' });
    await eventually(async () => (await b.stats(topic, 'billing')).inFlight === 0, { timeoutMs: 30_000 });
    expect(
      await b.operations.purge({ topic, group: 'billing', source: 'group', confirm: `${topic}/billing` }),
    ).toEqual({ purged: 0 });
    const after = (await b.publish(topic, { type: 'ops.x', data: {} })).id;
    await eventually(() => billing.handled.includes(after), {
      timeoutMs: 30_000,
      what: 'the running subscription to read from the new consumer',
    });
    expect(billing.handled).toEqual([before, after]);
    const audit = await consumer(b, topic, 'audit', { failing: false });
    await eventually(() => audit.handled.length === 6, { timeoutMs: 30_000, what: "audit's messages" });
    expect([...audit.handled].sort()).toEqual([...waiting, before, after].sort());
  });
});
