/** The operations API on the memory transport: listing, peek, filtered redrive and guarded purge. */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, connect } from './bus.js';
import { ConfigError, NonRetryableError } from './errors.js';
import { memoryTransport } from './memory/transport.js';
import type { MessageContext } from './message.js';
import { eventually } from './testing/index.js';

const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 1000 })));
});

async function setup() {
  const bus = await connect({ transport: memoryTransport({ name: `ops-${randomUUID()}` }), service: 'ops' });
  buses.push(bus);
  return { bus, topic: `t-${randomUUID().slice(0, 8)}`, group: 'workers' };
}

/** Dead-letters every message of the group once, then returns how many arrived afterwards (redriven). */
async function deadLetterAll(bus: Bus, topic: string, group: string, types: string[]) {
  const handled: string[] = [];
  let failing = true;
  const fail = async (_data: unknown, ctx: MessageContext) => {
    if (failing) throw new NonRetryableError('boom: bad data');
    handled.push(ctx.envelope.id);
  };
  const sub = await bus.subscribe({
    topic,
    group,
    handlers: Object.fromEntries(types.map((t) => [t, fail])),
    retry: { attempts: 1 },
  });
  return {
    handled,
    sub,
    heal: () => {
      failing = false;
    },
  };
}

describe('operations on the memory transport', () => {
  it('lists groups, peeks dead letters with their reason, redrives by type and purges only when confirmed', async () => {
    const { bus, topic, group } = await setup();
    const c = await deadLetterAll(bus, topic, group, ['a.one', 'a.two']);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await bus.publish(topic, { type: 'a.one', data: { i } })).id);
    const two = (await bus.publish(topic, { type: 'a.two', data: { i: 9 } })).id;
    await eventually(async () => expect((await bus.stats(topic, group)).deadLettered).toBe(4));

    const groups = await bus.operations.groups();
    expect(groups.find((g) => g.topic === topic && g.group === group)?.stats.deadLettered).toBe(4);

    const peeked = await bus.operations.peek({ topic, group, source: 'dead-letter', limit: 10 });
    expect(peeked.map((p) => p.id)).toEqual([...ids, two]);
    expect(peeked[0]!.deadLetter).toMatchObject({
      reason: 'non-retryable',
      attempts: 1,
      originalGroup: group,
    });
    expect(peeked[0]!.deadLetter!.error).toContain('boom');
    expect(peeked[0]!.envelope?.type).toBe('a.one');
    // A peek consumes nothing.
    expect((await bus.stats(topic, group)).deadLettered).toBe(4);

    c.heal();
    const progress: number[] = [];
    const result = await bus.operations.redrive({
      topic,
      group,
      filter: { types: ['a.two'] },
      onProgress: (p) => progress.push(p.scanned),
    });
    expect(result).toEqual({ scanned: 4, redriven: 1, kept: 3 });
    expect(progress).toEqual([1, 2, 3, 4]);
    await eventually(() => expect(c.handled).toEqual([two]));

    const byId = await bus.operations.redrive({ topic, group, filter: { ids: [ids[1]!] } });
    expect(byId.redriven).toBe(1);
    await eventually(() => expect(c.handled).toEqual([two, ids[1]]));

    await expect(
      bus.operations.purge({ topic, group, source: 'dead-letter', confirm: 'yes' }),
    ).rejects.toThrow(ConfigError);
    expect((await bus.stats(topic, group)).deadLettered).toBe(2);
    const purged = await bus.operations.purge({
      topic,
      group,
      source: 'dead-letter',
      confirm: `${topic}/${group}/dead-letter`,
    });
    expect(purged.purged).toBe(2);
    expect((await bus.stats(topic, group)).deadLettered).toBe(0);
    await c.sub.close();
  });

  it('redrives by reason and dead-letter time, and peeks the group queue without taking messages', async () => {
    const { bus, topic, group } = await setup();
    const c = await deadLetterAll(bus, topic, group, ['b']);
    await bus.publish(topic, { type: 'b', data: 1 });
    await eventually(async () => expect((await bus.stats(topic, group)).deadLettered).toBe(1));
    await c.sub.close();
    const none = await bus.operations.redrive({ topic, group, filter: { reasons: ['max-attempts'] } });
    expect(none.redriven).toBe(0);
    const later = await bus.operations.redrive({ topic, group, filter: { fromMs: Date.now() + 60_000 } });
    expect(later.redriven).toBe(0);
    const all = await bus.operations.redrive({
      topic,
      group,
      filter: { reasons: ['non-retryable'], toMs: Date.now() + 1 },
    });
    expect(all.redriven).toBe(1);
    // No consumer now: the redriven message waits in the group, where a peek sees it without taking it.
    const waiting = await bus.operations.peek({ topic, group });
    expect(waiting).toHaveLength(1);
    expect(waiting[0]!.deadLetter).toBeUndefined();
    expect((await bus.stats(topic, group)).depth).toBe(1);
    await expect(
      bus.operations.purge({ topic, group, source: 'group', confirm: `${topic}/${group}/dead-letter` }),
    ).rejects.toThrow(/confirm/);
    expect(
      (await bus.operations.purge({ topic, group, source: 'group', confirm: `${topic}/${group}` })).purged,
    ).toBe(1);
    expect((await bus.stats(topic, group)).depth).toBe(0);
  });

  it('refuses bad arguments with ConfigError', async () => {
    const { bus, topic, group } = await setup();
    await bus.provision(topic, [{ group }]);
    await expect(bus.operations.peek({ topic, group: '' })).rejects.toThrow(ConfigError);
    await expect(bus.operations.peek({ topic, group, limit: 0 })).rejects.toThrow(ConfigError);
    await expect(bus.operations.peek({ topic, group, source: 'dlq' as never })).rejects.toThrow(ConfigError);
  });
});
