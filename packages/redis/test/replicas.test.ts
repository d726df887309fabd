/**
 * Replicas as separate processes (test/replica.ts) sharing one RabbitMQ group and the Redis store:
 * duplicates raced across processes run their effect once, and a replica SIGKILLed mid-handler is
 * taken over by another once its lease runs out.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { type Bus, connect, silentLogger } from '@omnibus/core';
import { rabbitmq } from '@omnibus/rabbitmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Fixture } from '../../rabbitmq/test/helpers.js';
import {
  AMQP_URL,
  deletePrefix,
  REDIS_URL,
  rawClient,
  requireRedis,
  startReplica,
  stopReplica,
  unique,
  waitFor,
} from './helpers.js';

const raw = rawClient();
const fixture = new Fixture();
const children: ChildProcess[] = [];
const prefixes: string[] = [];
let bus: Bus;

beforeAll(async () => {
  await requireRedis();
  bus = await connect({
    // Generous: on a loaded shared machine a first AMQP handshake can take more than the default 10 s.
    transport: rabbitmq({ url: AMQP_URL, connectTimeoutMs: 30_000 }),
    service: 'replica-test-publisher',
    logger: silentLogger,
  });
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => stopReplica(c)));
});

afterAll(async () => {
  await bus?.close({ drainTimeoutMs: 5_000 });
  // The fixture's transport is only there so cleanup knows the delay tiers the replicas declared.
  await fixture
    .transport({ connectTimeoutMs: 30_000 })
    .then(() => fixture.cleanup())
    .catch(() => {});
  for (const p of prefixes) await deletePrefix(raw, p).catch(() => {});
  raw.disconnect();
});

function scenario(label: string) {
  const base = unique(label);
  prefixes.push(`${base}:`);
  const topic = `${base}-topic`;
  const group = 'replicas';
  fixture.track(topic, group);
  return {
    topic,
    env: {
      REDIS_URL,
      AMQP_URL,
      TOPIC: topic,
      GROUP: group,
      KEY_PREFIX: `${base}:idem:`,
      EFFECTS: `${base}:effects`,
      STATS: `${base}:stats`,
      LEASE_MS: '3000',
    },
  };
}

function replica(env: Record<string, string>) {
  const child = startReplica(env);
  children.push(child);
  return child;
}

async function publishEachTwice(topic: string, ids: string[]): Promise<void> {
  // Both copies back to back, so the two replicas (round-robin) get them at about the same time.
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids
        .slice(i, i + 50)
        .flatMap((id) => [
          bus.publish(topic, { type: 'effect.test', data: { id } }, { id }),
          bus.publish(topic, { type: 'effect.test', data: { id } }, { id }),
        ]),
    );
  }
}

async function stats(key: string): Promise<Record<string, number>> {
  const h = await raw.hgetall(key);
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Number(v)]));
}

// Replica processes connect to a shared broker on a shared machine: each case gets minutes, not 60 s.
const CASE_TIMEOUT_MS = 300_000;

describe('two replica processes on one group, Redis store', () => {
  it(
    'race on the same 1,000 messages, each published twice with one id: every effect exactly once',
    async () => {
      const { topic, env } = scenario('race');
      const a = replica({ ...env, REPLICA: 'a', MAX_DELAY_MS: '20' });
      const b = replica({ ...env, REPLICA: 'b', MAX_DELAY_MS: '20' });
      await Promise.all([a.ready, b.ready]);

      const ids = Array.from({ length: 1000 }, () => randomUUID());
      await publishEachTwice(topic, ids);

      await waitFor(
        async () => (await raw.hlen(env.EFFECTS)) === ids.length,
        async () => `effects for all ${ids.length} ids`,
        120_000,
      );
      // Every duplicate copy is settled too (acked as a duplicate), so no late run can still come.
      await waitFor(
        async () => {
          const s = await stats(env.STATS);
          return (
            (s['a:handled'] ?? 0) +
              (s['b:handled'] ?? 0) +
              (s['a:duplicate'] ?? 0) +
              (s['b:duplicate'] ?? 0) >=
            2000
          );
        },
        'both copies of every message to be handled or acknowledged as duplicates',
        120_000,
      );
      const effects = await raw.hgetall(env.EFFECTS);
      const counts = ids.map((id) => Number(effects[id] ?? 0));
      expect(counts.filter((c) => c !== 1)).toEqual([]);

      const s = await stats(env.STATS);
      // Both processes worked, and the store really arbitrated between them.
      expect(s['a:handled']).toBeGreaterThan(0);
      expect(s['b:handled']).toBeGreaterThan(0);
      expect((s['a:handled'] ?? 0) + (s['b:handled'] ?? 0)).toBe(ids.length);
      expect((s['a:claim-done'] ?? 0) + (s['b:claim-done'] ?? 0)).toBeGreaterThan(0);
      // Copies that met while the other replica was running them: the overlap did happen.
      expect((s['a:claim-held'] ?? 0) + (s['b:claim-held'] ?? 0)).toBeGreaterThan(0);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'the same race without the store runs some effects twice (the test can fail)',
    async () => {
      const { topic, env } = scenario('control');
      const a = replica({ ...env, REPLICA: 'a', MAX_DELAY_MS: '20', NO_STORE: '1' });
      const b = replica({ ...env, REPLICA: 'b', MAX_DELAY_MS: '20', NO_STORE: '1' });
      await Promise.all([a.ready, b.ready]);
      const ids = Array.from({ length: 200 }, () => randomUUID());
      await publishEachTwice(topic, ids);
      await waitFor(
        async () => {
          const s = await stats(env.STATS);
          return (s['a:handled'] ?? 0) + (s['b:handled'] ?? 0) >= 2 * ids.length;
        },
        'both copies of every message to be handled',
        60_000,
      );
      const effects = await raw.hgetall(env.EFFECTS);
      expect(ids.filter((id) => Number(effects[id]) === 2).length).toBe(ids.length);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'a replica SIGKILLed mid-handler: another takes over after the lease, effect once',
    async () => {
      const { topic, env } = scenario('kill');
      const id = randomUUID();
      const a = replica({ ...env, REPLICA: 'a', HANG_ID: id });
      await a.ready;
      await bus.publish(topic, { type: 'effect.test', data: { id } }, { id });
      await waitFor(
        async () => (await raw.hget(env.STATS, 'hang-replica')) === 'a',
        'replica a to start the handler',
      );
      const claimedAt = Number(await raw.hget(env.STATS, 'hang-started-at'));

      const b = replica({ ...env, REPLICA: 'b' });
      await b.ready;
      const exited = new Promise((resolve) => a.once('exit', (_code, signal) => resolve(signal)));
      a.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');

      await waitFor(
        async () => (await raw.hget(env.EFFECTS, id)) === '1',
        'replica b to run the message',
        60_000,
      );
      const ranAt = Number(await raw.hget(`${env.EFFECTS}:at`, id));
      // B could not run it while A's lease stood (A claimed just before it noted the start).
      expect(ranAt - claimedAt).toBeGreaterThanOrEqual(Number(env.LEASE_MS) - 100);
      // B's outcome is reported after its completion and ack.
      await waitFor(async () => (await stats(env.STATS))['b:handled'] === 1, "replica b's handled outcome");
      const s = await stats(env.STATS);
      expect(s['a:handled']).toBeUndefined();
      // And it stays once: B's completion is recorded, a further redelivery would be a duplicate.
      expect(await raw.get(`${env.KEY_PREFIX}replicas:${id}`)).toMatch(/^d/);
      expect(await raw.hget(env.EFFECTS, id)).toBe('1');
    },
    CASE_TIMEOUT_MS,
  );
});
