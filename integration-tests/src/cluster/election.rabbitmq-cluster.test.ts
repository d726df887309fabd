/**
 * The race behind the RabbitMQ node-kill failures, made certain instead of likely: the node leading a
 * quorum queue is SIGKILLed while a second node is frozen (SIGSTOP), so the one survivor cannot elect a new
 * leader and the queue's record still names the dead node. The transport reconnects to the survivor and
 * publishes; RabbitMQ sets that confirm channel up against the dead node and nacks. Once the frozen node is
 * let go (SIGCONT) the queue elects a leader, and publishing must resume even though the channel that was
 * set up during the election refuses for as long as it lives. Nothing whose publish resolved is lost. The
 * numbers go to reliability/results/cluster-rabbitmq-election.json. RabbitMQ only (the file name keeps it to
 * the rabbitmq-cluster project): the cause is in how a RabbitMQ channel caches a quorum queue's members.
 */

import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Bus, connect, defineMessage, OmnibusError } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { names, rabbitmq } from '@omnibus/rabbitmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from '../load-harness.js';
import {
  freezeNode,
  killNode,
  nodeIndexOfRabbit,
  RABBITMQ_CLUSTER_URL,
  rabbitQueue,
  rabbitRejoined,
  startNode,
  thawNode,
} from './nodes.js';

const harness = await loadHarness();
const KIND = 'rabbitmq-cluster';
if (harness.name !== KIND) throw new Error(`this scenario runs only against ${KIND}, not ${harness.name}`);
const GROUP = 'electors';
/** The longest freeze: the survivor declares a silent peer down after net_ticktime (10 s) and would pause. */
const MAX_FREEZE_MS = 6_000;
/** How long the election stays held back after the first refusal: long enough for channels to be refused in a row. */
const HOLD_AFTER_REFUSAL_MS = 2_000;
const RESULTS = fileURLToPath(
  new URL('../../../reliability/results/cluster-rabbitmq-election.json', import.meta.url),
);

const Tick = defineMessage({
  type: 'election.tick',
  version: 1,
  schema: z.object({ seq: z.number().int() }),
});

const buses: Bus[] = [];
beforeAll(async () => {
  await harness.setup();
});
afterAll(async () => {
  for (const b of buses.splice(0)) await b.close({ drainTimeoutMs: 5_000 }).catch(() => {});
  await harness.teardown();
});

describe('quorum queue election held back: rabbitmq-cluster', () => {
  it('a confirm channel set up while the queue had no leader is replaced: publishing resumes after the election', async () => {
    const topic = `conf-election-${randomBytes(4).toString('hex')}`;
    const queue = names.groupQueue(topic, GROUP);
    const transport = () =>
      rabbitmq({ url: RABBITMQ_CLUSTER_URL, reconnect: { initialMs: 100, maxMs: 2_000 } });
    const handled = new Set<string>();
    const consumer = await connect({ transport: transport(), service: 'election-consumer' });
    buses.push(consumer);
    await consumer.subscribe({
      topic,
      group: GROUP,
      handlers: { [Tick.type]: Tick.handle((_d, ctx) => void handled.add(ctx.envelope.id)) },
    });
    const producer = await connect({
      transport: transport(),
      service: 'election-producer',
      publishTimeoutMs: 5_000,
    });
    buses.push(producer);
    const resolved: string[] = [(await producer.publish(topic, Tick, { seq: -1 })).id];
    const resolvedAt: number[] = [Date.now()];
    await eventually(() => handled.has(resolved[0]!), { timeoutMs: 60_000, what: 'the first message' });

    // Both clients are on node 1 (first in the URL), where the queue was declared and is led from.
    const leader = nodeIndexOfRabbit((await rabbitQueue(queue)).leader);
    expect(leader, 'the group queue should be led from node 1, where it was declared').toBe(1);
    const survivor = 2; // the transport's next host
    const frozen = 3;

    const refusals = new Map<string, number>();
    let lastError = '';
    let stop = false;
    let seq = 0;
    /** One publish at a time, each retried (after 100 ms) until it resolves. */
    const publishing = (async () => {
      while (!stop) {
        try {
          resolved.push((await producer.publish(topic, Tick, { seq })).id);
          resolvedAt.push(Date.now());
          seq++;
        } catch (err) {
          const code = err instanceof OmnibusError ? err.code : 'OTHER';
          refusals.set(code, (refusals.get(code) ?? 0) + 1);
          lastError = String((err as Error).message).slice(0, 200);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();

    let frozenAt = 0;
    let thawedAt = 0;
    let resolvedAtThaw = 0;
    let frozenMs = 0;
    try {
      await eventually(() => resolved.length >= 20, {
        timeoutMs: 30_000,
        what: '20 publishes before the kill',
      });
      await freezeNode(KIND, frozen);
      frozenAt = Date.now();
      await killNode(KIND, leader);
      // Hold the election back until the survivor has refused publishes for a while (several channels in a
      // row, each set up without a leader), or until the freeze must end.
      let firstRefusalAt = 0;
      await eventually(
        () => {
          const now = Date.now();
          if (firstRefusalAt === 0 && (refusals.get('PUBLISH_FAILED') ?? 0) > 0) firstRefusalAt = now;
          if (firstRefusalAt > 0 && now - firstRefusalAt >= HOLD_AFTER_REFUSAL_MS) return true;
          return now - frozenAt > MAX_FREEZE_MS;
        },
        { timeoutMs: MAX_FREEZE_MS + 5_000, intervalMs: 50, what: 'refusals or the end of the freeze' },
      );
    } finally {
      if (frozenAt > 0) {
        await thawNode(KIND, frozen);
        thawedAt = Date.now();
        frozenMs = thawedAt - frozenAt;
        resolvedAtThaw = resolved.length;
      }
    }
    const refusedWhileFrozen = refusals.get('PUBLISH_FAILED') ?? 0;
    // The race happened: the survivor nacked a publish while the queue had no leader.
    expect(
      refusedWhileFrozen,
      `no nack while frozen; rejections ${JSON.stringify([...refusals])}`,
    ).toBeGreaterThan(0);

    try {
      await eventually(() => resolved.length > resolvedAtThaw + 100, {
        timeoutMs: 60_000,
        intervalMs: 50,
        what: `100 publishes resolved after the thaw (last error: ${lastError})`,
      });
    } finally {
      stop = true;
      await publishing;
    }
    const h = await producer.health();
    const replaced = Number(h.transport.details?.publishChannelsReplaced ?? 0);
    expect(replaced).toBeGreaterThan(0);

    await eventually(() => resolved.every((id) => handled.has(id)), {
      timeoutMs: 120_000,
      intervalMs: 250,
      what: `all ${resolved.length} resolved publishes handled`,
    });
    const lost = resolved.filter((id) => !handled.has(id));
    expect(lost).toEqual([]);
    const during = await rabbitQueue(queue, leader);

    const restartAt = Date.now();
    await startNode(KIND, leader);
    await eventually(() => rabbitRejoined(queue, leader), {
      timeoutMs: 180_000,
      intervalMs: 1_000,
      what: `node ${leader} to rejoin`,
    });
    const rejoinMs = Date.now() - restartAt;

    const result = {
      broker: 'rabbitmq',
      cluster: KIND,
      scenario: `SIGKILL of the queue leader (node ${leader}) with node ${frozen} frozen; clients move to node ${survivor}`,
      date: new Date().toISOString(),
      published: resolved.length,
      lost: lost.length,
      publishRejections: Object.fromEntries(refusals),
      refusedWhileFrozen,
      publishChannelsReplaced: replaced,
      frozenMs,
      // From the thaw (the queue can elect again) until the first publish resolved after it.
      recoveryAfterThawMs: resolvedAt[resolvedAtThaw]! - thawedAt,
      leaderAfter: during.leader,
      rejoinMs,
      loadAverage1m: Number(loadavg()[0]!.toFixed(1)),
      cores: 2,
    };
    mkdirSync(fileURLToPath(new URL('../../../reliability/results/', import.meta.url)), { recursive: true });
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`[election ${KIND}] ${JSON.stringify(result)}`);
  });
});
