/**
 * A nack from the real broker: the refused publish rejects with PUBLISH_FAILED and the confirm channel that
 * carried it is replaced (broker side: a new channel number on the same connection, the old one closed), so
 * a retry goes out on a channel the broker set up afresh. The cause this guards against needs a cluster (a
 * channel stuck refusing after a quorum queue lost its leader: integration-tests/src/cluster/node-kill.test.ts);
 * here a full quorum queue with `reject-publish` makes the broker nack on one node.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PublishError } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { names } from '../src/index.js';
import { envelope, Fixture, unique } from './helpers.js';

const run = promisify(execFile);
const fx = new Fixture();
afterAll(() => fx.cleanup());

/**
 * The channels the broker has open on the connection named `connectionName`, by channel process id (listing
 * only; amqplib reuses a closed channel's number, so numbers cannot tell a new channel from the old one).
 */
async function channelPids(connectionName: string): Promise<string[]> {
  const ctl = async (args: string[]) =>
    (await run('rabbitmqctl', ['-q', ...args, '--no-table-headers'], { timeout: 30_000 })).stdout;
  const conn = (await ctl(['list_connections', 'pid', 'client_properties']))
    .split('\n')
    .find((l) => l.includes(`{"connection_name","${connectionName}"}`));
  if (!conn) throw new Error(`connection ${connectionName} not found on the broker`);
  const pid = conn.split('\t')[0]!;
  return (await ctl(['list_channels', 'connection', 'pid']))
    .split('\n')
    .map((l) => l.split('\t'))
    .filter(([c]) => c === pid)
    .map(([, p]) => p!);
}

describe('a refused publish (nack)', () => {
  it('rejects with PUBLISH_FAILED and moves publishing to a new confirm channel', async () => {
    const topic = unique('nack');
    fx.track(topic);
    const connectionName = unique('conn');
    const t = await fx.transport({ connectionName });
    // A queue of our own that holds one message and refuses the rest, bound to the topic's exchange.
    const full = unique('full');
    fx.extraQueues.add(full);
    await t.publish(topic, [t.encode(envelope('warm.up'))]); // declares the exchange; nothing bound yet
    const ch = await fx.channel();
    await ch.assertQueue(full, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-max-length': 1, 'x-overflow': 'reject-publish' },
    });
    await ch.bindQueue(full, names.exchange(topic), '#');
    await ch.close();

    // The transport's admin channel and its confirm channel.
    const before = await channelPids(connectionName);
    expect(before).toHaveLength(2);
    // One at a time until the broker refuses one (the limit is enforced once the queue is at it).
    let refused: unknown;
    const accepted: string[] = [];
    for (let i = 0; i < 5 && refused === undefined; i++) {
      const env = envelope('order.placed');
      try {
        await t.publish(topic, [t.encode(env)]);
        accepted.push(env.id);
      } catch (err) {
        refused = err;
      }
    }
    expect(refused).toBeInstanceOf(PublishError);
    expect((refused as PublishError).code).toBe('PUBLISH_FAILED');
    expect((refused as PublishError).retryable).toBe(true);
    expect((await t.health()).details.publishChannelsReplaced).toBe(1);

    // Each accepted publish is in the queue once; the refused one is not.
    const held = await fx.drain(full, accepted.length);
    expect(held.map((m) => m.properties.messageId).sort()).toEqual([...accepted].sort());
    expect(await fx.depth(full)).toBe(0);

    // Room again: the retry is confirmed on a new channel; the refusing one is closed, not left open.
    const retried = envelope('order.placed');
    await t.publish(topic, [t.encode(retried)]);
    const after = await channelPids(connectionName);
    expect(after).toHaveLength(2);
    expect(after.filter((p) => !before.includes(p))).toHaveLength(1);
    const [m] = await fx.drain(full, 1);
    expect(m!.properties.messageId).toBe(retried.id);
  });
});
