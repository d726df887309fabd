/**
 * A node of a 3-node cluster dies (SIGKILL of its real process) in the middle of 20,000 messages published
 * and consumed through Omnibus: nothing whose publish resolved is lost (counted by unique ids), the time
 * until messages flow again is measured and written to reliability/results/cluster-<broker>.json, and the
 * node, started again, rejoins its cluster. Runs only in the conformance:*-cluster projects.
 */

import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Bus, connect, defineMessage, OmnibusError } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { names, rabbitmq } from '@omnibus/rabbitmq';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadHarness } from '../load-harness.js';
import {
  type ClusterKind,
  killNode,
  type NodeIndex,
  nodeIndexOfRabbit,
  PORTS,
  RABBITMQ_CLUSTER_URL,
  RABBITMQ_NODE_NAMES,
  rabbitQueue,
  rabbitRejoined,
  startNode,
} from './nodes.js';

const harness = await loadHarness();
if (harness.name !== 'rabbitmq-cluster' && harness.name !== 'kafka-cluster') {
  throw new Error(`node-kill runs only against a cluster harness, not ${harness.name}`);
}
const kind: ClusterKind = harness.name;
const broker = kind === 'rabbitmq-cluster' ? 'rabbitmq' : 'kafka';

const TOTAL = Number(process.env.OMNIBUS_NODE_KILL_MESSAGES ?? 20_000);
const WINDOW = 250;
const GROUP = 'survivors';
const RESULTS = fileURLToPath(
  new URL(`../../../reliability/results/cluster-${broker}.json`, import.meta.url),
);

/**
 * The transport as a service would run it: for RabbitMQ the adapter's defaults with every node in the URL
 * (the conformance harness also turns on replay streams, which a service need not).
 */
const transport = () =>
  kind === 'rabbitmq-cluster'
    ? rabbitmq({ url: RABBITMQ_CLUSTER_URL, reconnect: { initialMs: 100, maxMs: 2_000 } })
    : harness.create();

const Tick = defineMessage({ type: 'cluster.tick', version: 1, schema: z.object({ seq: z.number().int() }) });

// ---- which node to kill: the one leading the queue / a partition -------------------------------------

interface Placement {
  leader: NodeIndex;
  members: string;
}

function kafkaAdmin() {
  return new Kafka({
    clientId: 'omnibus-node-kill',
    brokers: PORTS['kafka-cluster'].map((p) => `127.0.0.1:${p}`),
    logLevel: logLevel.NOTHING,
  }).admin();
}

async function kafkaPartitions(topic: string) {
  const admin = kafkaAdmin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    return meta.topics[0]!.partitions;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Where the queue / partitions are led from; with `healthy`, also checks they are replicated on all three nodes. */
async function placement(topic: string, healthy = true): Promise<Placement> {
  if (kind === 'rabbitmq-cluster') {
    const q = await rabbitQueue(names.groupQueue(topic, GROUP));
    expect(q.type).toBe('quorum');
    // The quorum queue is replicated on all three nodes.
    if (healthy) expect([...q.members].sort()).toEqual([...RABBITMQ_NODE_NAMES].sort());
    return {
      leader: nodeIndexOfRabbit(q.leader),
      members: `leader ${q.leader}; members ${q.members.join(',')}; online ${q.online.join(',')}`,
    };
  }
  const partitions = await kafkaPartitions(topic);
  for (const p of partitions) {
    if (!healthy) break;
    expect(p.replicas).toHaveLength(3);
    expect(p.isr).toHaveLength(3);
  }
  const p0 = partitions.find((p) => p.partitionId === 0)!;
  return {
    leader: p0.leader as NodeIndex,
    members: partitions.map((p) => `p${p.partitionId}:leader ${p.leader} isr ${p.isr.join('/')}`).join('; '),
  };
}

/** The killed node is back: a cluster member again, and a replica in sync again. */
async function rejoined(topic: string, node: NodeIndex): Promise<boolean> {
  if (kind === 'rabbitmq-cluster') return rabbitRejoined(names.groupQueue(topic, GROUP), node);
  const partitions = await kafkaPartitions(topic);
  return partitions.every((p) => p.isr.includes(node));
}

// ---- the scenario ---------------------------------------------------------------------------------------

const buses: Bus[] = [];
beforeAll(async () => {
  await harness.setup();
});
afterAll(async () => {
  for (const b of buses.splice(0)) await b.close({ drainTimeoutMs: 5_000 }).catch(() => {});
  await harness.teardown();
});

describe(`node kill: ${kind}`, () => {
  it(`SIGKILL of the leading node in the middle of ${TOTAL} messages: nothing lost, the node rejoins`, async () => {
    const topic = `conf-nodekill-${randomBytes(4).toString('hex')}`;
    const started = Date.now();
    const handledAt = new Map<string, number>();
    let handlerCalls = 0;

    const consumer = await connect({
      transport: transport(),
      service: 'node-kill-consumer',
      publishTimeoutMs: 30_000,
    });
    buses.push(consumer);
    await consumer.subscribe({
      topic,
      group: GROUP,
      concurrency: 32,
      handlers: {
        [Tick.type]: Tick.handle((_d, ctx) => {
          handlerCalls++;
          if (!handledAt.has(ctx.envelope.id)) handledAt.set(ctx.envelope.id, Date.now());
        }),
      },
    });
    const producer = await connect({
      transport: transport(),
      service: 'node-kill-producer',
      publishTimeoutMs: 30_000,
    });
    buses.push(producer);
    // The queue / topic exists once one message went through: then we know where it is led from.
    const first = await producer.publish(topic, Tick, { seq: -1 });
    const publishedAt = new Map<string, number>([[first.id, Date.now()]]);
    await eventually(() => handledAt.has(first.id), { timeoutMs: 60_000, what: 'the first message' });
    const before = await placement(topic);

    const resolvedAt = new Map<string, number>();
    const rejected = new Map<string, number>();
    let lastError = '';
    let killStartedAt = 0;
    let killedAt = 0;
    /** Publishes one message until a publish resolves; returns when it did (a rejected one is retried). */
    const publishOne = async (seq: number) => {
      for (;;) {
        const startedAt = Date.now();
        try {
          const r = await producer.publish(topic, Tick, { seq });
          publishedAt.set(r.id, startedAt);
          resolvedAt.set(r.id, Date.now());
          return;
        } catch (err) {
          const code = err instanceof OmnibusError ? err.code : 'OTHER';
          lastError = String((err as Error).message).slice(0, 300);
          rejected.set(code, (rejected.get(code) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    };
    // A line every 10 s: where a stuck run stands (published, handled, rejections by code).
    const progress = setInterval(() => {
      console.log(
        `[node-kill ${kind}] +${Math.round((Date.now() - started) / 1000)}s published ${publishedAt.size}, ` +
          `handled ${handledAt.size}, rejections ${JSON.stringify(Object.fromEntries(rejected))}` +
          `${lastError ? `, last error: ${lastError}` : ''}`,
      );
    }, 10_000);
    let killing: Promise<void> | undefined;
    try {
      for (let i = 0; i < TOTAL; i += WINDOW) {
        const window = Promise.all(
          Array.from({ length: Math.min(WINDOW, TOTAL - i) }, (_, j) => publishOne(i + j)),
        );
        // The kill lands while a window of publishes is in flight and the consumer is busy.
        if (killing === undefined && i >= TOTAL / 2) {
          killStartedAt = Date.now();
          killing = killNode(kind, before.leader).then(() => {
            killedAt = Date.now();
          });
        }
        await window;
      }
      await killing;
    } catch (err) {
      clearInterval(progress);
      throw err;
    }
    const publishedAllAt = Date.now();
    const ids = [...publishedAt.keys()];
    expect(ids.length).toBe(TOTAL + 1);

    try {
      await eventually(() => ids.every((id) => handledAt.has(id)), {
        timeoutMs: 300_000,
        intervalMs: 250,
        what: `all ${ids.length} published messages handled`,
      });
    } finally {
      clearInterval(progress);
    }
    const lost = ids.filter((id) => !handledAt.has(id));
    expect(lost).toEqual([]);
    const drainedAt = Date.now();

    // Publishing flows again when the first publish begun after the kill (the pid is gone) resolves.
    const resolvedAfterKill = ids
      .filter((id) => publishedAt.get(id)! >= killedAt)
      .map((id) => resolvedAt.get(id)!);
    expect(resolvedAfterKill.length).toBeGreaterThan(0);
    const publishRecoveryMs = Math.min(...resolvedAfterKill) - killStartedAt;
    // Consuming flows again at the end of the longest pause in handling after the kill.
    const times = [...handledAt.values()].filter((t) => t >= killStartedAt).sort((a, b) => a - b);
    let longestPauseMs = times.length > 0 ? times[0]! - killStartedAt : 0;
    let consumeRecoveredAt = times[0] ?? killStartedAt;
    for (let k = 1; k < times.length; k++) {
      if (times[k]! - times[k - 1]! > longestPauseMs) {
        longestPauseMs = times[k]! - times[k - 1]!;
        consumeRecoveredAt = times[k]!;
      }
    }
    const consumeRecoveryMs = consumeRecoveredAt - killStartedAt;
    const recoveryMs = Math.max(publishRecoveryMs, consumeRecoveryMs);

    const during = await placement(topic, false).catch(() => undefined);

    // Start the node again: it rejoins the cluster and its replica catches up.
    const restartAt = Date.now();
    await startNode(kind, before.leader);
    await eventually(() => rejoined(topic, before.leader), {
      timeoutMs: 180_000,
      intervalMs: 1_000,
      what: `node ${before.leader} to rejoin`,
    });
    const rejoinMs = Date.now() - restartAt;
    const after = await placement(topic);

    const result = {
      broker,
      cluster: kind,
      date: new Date().toISOString(),
      messages: ids.length,
      handledUnique: ids.filter((id) => handledAt.has(id)).length,
      lost: lost.length,
      handlerCalls,
      redeliveries: handlerCalls - handledAt.size,
      publishRejections: Object.fromEntries(rejected),
      killedNode: before.leader,
      killedRole: kind === 'rabbitmq-cluster' ? 'quorum queue leader' : 'leader of partition 0',
      placementBefore: before.members,
      placementAfterKill: during?.members,
      placementAfterRejoin: after.members,
      recoveryMs,
      publishRecoveryMs,
      consumeRecoveryMs,
      longestConsumptionPauseAfterKillMs: longestPauseMs,
      publishPhaseMs: publishedAllAt - started,
      totalUntilDrainedMs: drainedAt - started,
      rejoinMs,
      loadAverage1m: Number(loadavg()[0]!.toFixed(1)),
      cores: 2,
    };
    mkdirSync(fileURLToPath(new URL('../../../reliability/results/', import.meta.url)), { recursive: true });
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log(
      `[node-kill ${kind}] killed node ${before.leader} (${result.killedRole}); ${ids.length} messages, ` +
        `${result.lost} lost, ${result.redeliveries} redelivered; time to recover ${recoveryMs} ms ` +
        `(publishing ${publishRecoveryMs} ms, consuming ${consumeRecoveryMs} ms); rejoined in ${rejoinMs} ms; publish rejections ` +
        `${JSON.stringify(result.publishRejections)} → ${RESULTS}`,
    );
  });
});
