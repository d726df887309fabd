/**
 * Several hosts: the first connect skips a dead one, and when the connected host goes away the transport
 * reconnects to the next. Each "host" is a local TCP relay in front of the shared broker, so a host can die
 * for good without touching the broker (the real SIGKILL of a cluster node is integration-tests'
 * node-kill scenario).
 */
import { ConnectionError, type Delivery, silentLogger } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { RabbitMqTransport } from '../src/index.js';
import { AMQP_URL, envelope, Fixture, Relay, unique, waitFor } from './helpers.js';

const fx = new Fixture();
afterAll(() => fx.cleanup());

function hostOf(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 5672}`;
}

describe('several hosts', () => {
  it('the first connect skips a host that refuses, given as a host list in one URL', async () => {
    const broker = new URL(AMQP_URL);
    const url = `${broker.protocol}//${broker.username}:${broker.password}@127.0.0.1:1,${hostOf(AMQP_URL)}${broker.pathname}`;
    const t = await fx.transport({ url, connectTimeoutMs: 5_000 });
    const h = await t.health();
    expect(h.ok).toBe(true);
    expect(String(h.details.url)).toContain(hostOf(AMQP_URL));
    expect(h.details.urls).toHaveLength(2);
  });

  it('when the connected host dies, publishing and consuming move to the next host and nothing is lost', async () => {
    const first = new Relay();
    const second = new Relay();
    await first.up();
    await second.up();
    const topic = unique('failover');
    fx.track(topic, 'g');
    const t = await fx.transport({
      url: undefined,
      urls: [first.url(), second.url()],
      connectTimeoutMs: 2_000,
    });
    expect(String((await t.health()).details.url)).toContain(`:${first.port}`);
    const handled = new Set<string>();
    await t.subscribe({ topic, group: 'g', patterns: ['#'], maxInFlight: 10 }, (d: Delivery) => {
      handled.add(t.decode(d.wire).id);
      void d.ack();
    });
    const published: string[] = [];
    const publishSome = async (n: number) => {
      const envs = Array.from({ length: n }, () => envelope('order.placed'));
      await t.publish(
        topic,
        envs.map((e) => t.encode(e)),
      );
      for (const e of envs) published.push(e.id);
    };
    await publishSome(50);
    await waitFor(() => handled.size >= 10, 'consumption through the first host');

    // The first host is gone for good: only a move to the second brings the transport back.
    await first.down();
    await publishSome(50);
    const h = await t.health();
    expect(h.ok).toBe(true);
    expect(String(h.details.url)).toContain(`:${second.port}`);
    expect(Number(h.details.reconnects)).toBeGreaterThanOrEqual(1);
    await waitFor(() => published.every((id) => handled.has(id)), 'every published message handled', 30_000);
    await t.close();
    await second.down();
  }, 60_000);

  it('with every host down, connect fails within connectTimeoutMs naming each host, no credentials', async () => {
    const t = new RabbitMqTransport({
      url: 'amqp://guest:s3cret@127.0.0.1:1,127.0.0.1:2',
      connectTimeoutMs: 2_000,
    });
    const started = Date.now();
    const err = await t.connect({ logger: silentLogger, service: 'nowhere' }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(err).toBeInstanceOf(ConnectionError);
    const message = (err as Error).message;
    expect(message).toContain('127.0.0.1:1');
    expect(message).toContain('127.0.0.1:2');
    expect(message).not.toContain('s3cret');
  });
});
