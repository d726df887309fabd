/**
 * Broker objects per group with shared delay tiers: many groups on one topic cost two queues each plus one
 * queue per tier for the vhost, a retry comes back to the group it left (and to no other), a chained delay
 * too, a dead letter lands in its own group's queue, and per-group tier queues left by earlier versions
 * still drain into their group. Everything created here is deleted in afterAll, passed or failed.
 *
 * The main case runs 200 groups with classic queues: 400 quorum queues would hold about 1,200 file
 * descriptors (three each, measured on RabbitMQ 3.10.8), more than the shared node's limit of 927. The
 * quorum case runs the same checks with 20 groups. OMNIBUS_MANY_GROUPS_QUORUM=200 runs the quorum case at
 * full size on a node that has the descriptors.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ControlHeader, type Delivery } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { names } from '../src/index.js';
import { amqpFromWire } from '../src/wire.js';
import { envelope, Fixture, unique, waitFor } from './helpers.js';

const run = promisify(execFile);
const fx = new Fixture();
afterAll(() => fx.cleanup(), 120_000);

const TIERS_MS = [300, 1_000];

/** Queue names on the broker, read-only (`rabbitmqctl list_queues`; the management plugin is not here). */
async function listQueues(): Promise<string[]> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_queues', '--no-table-headers', 'name'], {
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.split('\n').filter((l) => l.length > 0);
}

/** The node's open file descriptors, read-only, for the figures printed at the end of each case. */
async function fileDescriptors(): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['status'], { timeout: 60_000 });
  return /Total: (\d+), limit: (\d+)/.exec(stdout)?.slice(1).join(' of ') ?? 'unknown';
}

const cases: { queueType: 'classic' | 'quorum'; groups: number }[] = [
  { queueType: 'classic', groups: 200 },
  { queueType: 'quorum', groups: Number(process.env.OMNIBUS_MANY_GROUPS_QUORUM ?? 20) },
];

describe.each(cases)('$groups groups with $queueType queues on one topic', ({ queueType, groups: count }) => {
  it('two queues per group plus the shared tiers; retries and a dead letter reach their own group only', async () => {
    const fdsBefore = await fileDescriptors();
    const topic = unique(`many-${queueType}`);
    const groups = Array.from({ length: count }, (_, i) => `g${String(i).padStart(3, '0')}`);
    // Tracked before anything is created, so that afterAll deletes whatever got made.
    fx.track(topic, ...groups);
    const t = await fx.transport({ queueType, delayTiersMs: TIERS_MS });
    await t.provision(
      topic,
      groups.map((group) => ({ group, patterns: ['#'] })),
    );

    // Counted on the broker: 2 per group + 1 per tier, and no per-group tier queue anywhere.
    const tiers = TIERS_MS.map((ms) => names.delayTier(ms, queueType, fx.delayQueuePrefix));
    const ours = (await listQueues()).filter((q) => q.startsWith(`${topic}.`) || tiers.includes(q));
    expect(ours.length).toBe(2 * count + TIERS_MS.length);
    expect(new Set(ours)).toEqual(
      new Set([
        ...groups.flatMap((g) => [names.groupQueue(topic, g), names.deadLetterQueue(topic, g)]),
        ...tiers,
      ]),
    );
    const fdsProvisioned = await fileDescriptors();

    // One message to the topic: every group queue gets a copy.
    const env = envelope('order.placed');
    await t.publish(topic, [t.encode(env)]);

    // A sample of groups consumes it and retries it, each through a different path (short tier, long tier,
    // chained past the largest tier), marking the copy with its own group's name.
    const sample = groups.filter((_, i) => i % Math.max(1, Math.floor(count / 10)) === 0);
    const delayOf = (i: number) => [200, 800, 2_300][i % 3]!;
    const received = new Map<string, Delivery[]>();
    for (const g of sample) {
      received.set(g, []);
      await t.subscribe({ topic, group: g, patterns: ['#'], maxInFlight: 4 }, (d) => {
        received.get(g)!.push(d);
      });
    }
    await waitFor(
      () => sample.every((g) => received.get(g)!.length >= 1),
      'the first delivery in each sampled group',
    );
    const handedOffAt = Date.now();
    await Promise.all(
      sample.map((g, i) =>
        received.get(g)![0]!.retryLater(delayOf(i), {
          [ControlHeader.attempts]: '1',
          [ControlHeader.lastError]: `failed in ${g}`,
        }),
      ),
    );
    await waitFor(
      () => sample.every((g) => received.get(g)!.length >= 2),
      'each sampled group getting its retry back',
      30_000,
    );
    for (const [i, g] of sample.entries()) {
      const back = received.get(g)![1]!;
      expect(t.decode(back.wire).id).toBe(env.id);
      // Its own copy, not another group's: the mark names this group.
      expect(back.wire.headers[ControlHeader.lastError]).toBe(`failed in ${g}`);
      expect(back.previousAttempts).toBe(1);
      expect(back.group).toBe(g);
      // A chained delay came back no earlier than asked (the tier rounds up, never down).
      if (delayOf(i) > Math.max(...TIERS_MS))
        expect(Date.now() - handedOffAt).toBeGreaterThanOrEqual(delayOf(i));
    }
    // Every copy is home and the tiers are empty, so nothing can still arrive: the groups that did not
    // retry hold exactly the one original each (a stray copy would make it two).
    await waitFor(
      async () => (await Promise.all(tiers.map((q) => fx.depth(q)))).every((n) => n === 0),
      'the tiers empty',
    );
    const others = groups.filter((g) => !sample.includes(g));
    const depths = await Promise.all(others.map((g) => fx.depth(names.groupQueue(topic, g))));
    expect(depths.every((n) => n === 1)).toBe(true);
    for (const g of sample) expect(received.get(g)).toHaveLength(2);

    // One sampled group dead-letters its retried copy: it lands in that group's DLQ and in no other.
    const victim = sample[1] ?? sample[0]!;
    await received.get(victim)![1]!.deadLetter({ [ControlHeader.reason]: 'non-retryable' });
    for (const g of sample) if (g !== victim) await received.get(g)![1]!.ack();
    await waitFor(
      async () => (await fx.depth(names.deadLetterQueue(topic, victim))) === 1,
      'the dead letter',
    );
    const dlqDepths = await Promise.all(
      groups.filter((g) => g !== victim).map((g) => fx.depth(names.deadLetterQueue(topic, g))),
    );
    expect(dlqDepths.every((n) => n === 0)).toBe(true);
    const [dead] = await fx.drain(names.deadLetterQueue(topic, victim), 1);
    expect(dead!.properties.messageId).toBe(env.id);

    console.info(
      `[many-groups] ${count} ${queueType} groups: ${ours.length} queues (2 × ${count} + ${TIERS_MS.length} tiers; ` +
        `per-group tiers would have made ${(2 + TIERS_MS.length) * count}); node file descriptors ` +
        `before ${fdsBefore}, provisioned ${fdsProvisioned}`,
    );
  }, 180_000);
});

describe('migration from per-group tier queues', () => {
  it("a message left in an earlier version's per-group tier queue still comes back to its group", async () => {
    const topic = unique('legacy');
    fx.track(topic, 'g');
    const legacy = names.legacyRetryQueue(topic, 'g', 500);
    fx.extraQueues.add(legacy);
    const t = await fx.transport({ delayTiersMs: [500] });
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    // The queue as earlier versions declared it, holding a retry when the new version starts.
    const ch = await fx.confirmChannel();
    await ch.assertQueue(legacy, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': 500,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': names.groupQueue(topic, 'g'),
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    const env = envelope('order.placed');
    const out = amqpFromWire('', t.encode(env), false);
    ch.sendToQueue(legacy, out.content, {
      ...out.options,
      headers: { ...out.options.headers, [ControlHeader.attempts]: '1' },
    });
    await ch.waitForConfirms();
    await ch.close();

    const got: Delivery[] = [];
    await t.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 2 }, (d) => got.push(d));
    await waitFor(() => got.length >= 1, 'the message from the legacy tier');
    expect(t.decode(got[0]!.wire).id).toBe(env.id);
    expect(got[0]!.previousAttempts).toBe(1);
    await got[0]!.ack();
    // Empty now, and nothing writes to it any more: safe to delete.
    await waitFor(async () => (await fx.depth(legacy)) === 0, 'the legacy tier empty');
  });
});
