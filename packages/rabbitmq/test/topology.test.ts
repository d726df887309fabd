/** Topology as named in ARCHITECTURE.md, provisioning modes, refused declares and option validation. */
import { ConfigError, ConnectionError, silentLogger } from '@omnibus/core';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DELAY_TIERS_MS, noDeadline } from '@omnibus/core/kit';
import { afterAll, describe, expect, it } from 'vitest';
import { names, type RabbitMqTransport, rabbitmq, transportFromUrl } from '../src/index.js';
import { Fixture, unique } from './helpers.js';

const fx = new Fixture();
afterAll(() => fx.cleanup());

describe('topology', () => {
  it('provision creates the exchange, group queue, dead-letter queue and the shared delay tiers with their arguments', async () => {
    const topic = unique('topo');
    fx.track(topic, 'billing');
    const t = await fx.transport({ delayTiersMs: [1_000, 5_000] });
    await t.provision(topic, [{ group: 'billing', patterns: ['order.*'] }]);

    const ch = await fx.channel();
    await ch.checkExchange(topic);
    const tier = (ms: number) => names.delayTier(ms, 'quorum', fx.delayQueuePrefix);
    expect(tier(5_000)).toBe(`${fx.delayQueuePrefix}.5000`);
    for (const q of [
      names.groupQueue(topic, 'billing'),
      names.deadLetterQueue(topic, 'billing'),
      tier(1_000),
      tier(5_000),
    ]) {
      expect((await ch.checkQueue(q)).queue).toBe(q);
    }
    // Re-declaring with the exact arguments succeeds only if the broker holds exactly these.
    await ch.assertQueue(names.groupQueue(topic, 'billing'), {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': `${topic}.billing.dlq`,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
        'x-delivery-limit': 50,
      },
    });
    // No dead-letter routing key: an expired retry goes back by the routing key it was published with.
    await ch.assertQueue(tier(5_000), {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': 5_000,
        'x-dead-letter-exchange': '',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    // The tier's way in is a fanout exchange of the same name (declaring it as anything else is refused).
    await ch.assertExchange(tier(5_000), 'fanout', { durable: true });
    await ch.close();
    // Per-group tier queues are a thing of the past.
    expect(await fx.queueExists(names.legacyRetryQueue(topic, 'billing', 5_000))).toBe(false);

    // The binding routes matching types only.
    const pub = await fx.confirmChannel();
    pub.publish(topic, 'order.placed', Buffer.from('a'), { persistent: true });
    pub.publish(topic, 'invoice.sent', Buffer.from('b'), { persistent: true });
    await pub.waitForConfirms();
    await pub.close();
    const got = await fx.drain(names.groupQueue(topic, 'billing'), 1);
    expect(got.map((m) => m.fields.routingKey)).toEqual(['order.placed']);
    expect(await fx.depth(names.groupQueue(topic, 'billing'))).toBe(0);
  });

  it('provisioning twice is idempotent, also from a second transport', async () => {
    const topic = unique('idem');
    fx.track(topic, 'g');
    const a = await fx.transport();
    const b = await fx.transport();
    await a.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await a.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await b.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    expect(await fx.queueExists(names.groupQueue(topic, 'g'))).toBe(true);
  });

  it('queueType classic declares classic queues', async () => {
    const topic = unique('classic');
    fx.track(topic, 'g');
    const t = await fx.transport({ queueType: 'classic', delayTiersMs: [1_000] });
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const ch = await fx.channel();
    await expect(
      ch.assertQueue(names.groupQueue(topic, 'g'), {
        durable: true,
        arguments: { 'x-queue-type': 'quorum' },
      }),
    ).rejects.toThrow(/PRECONDITION_FAILED/);
  });

  it('an existing queue with different arguments gives a ConfigError naming the argument and the way out', async () => {
    const topic = unique('conflict');
    fx.track(topic, 'billing');
    const ch = await fx.channel();
    await ch.assertQueue(names.groupQueue(topic, 'billing'), { durable: true }); // classic, no arguments
    await ch.close();

    const t = await fx.transport();
    const err = await t.provision(topic, [{ group: 'billing', patterns: ['#'] }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    // The broker names the first argument it finds different: here the dead-letter target.
    expect(ce.message).toContain('x-dead-letter-exchange');
    expect(ce.message).toContain(names.groupQueue(topic, 'billing'));
    expect(ce.message).toMatch(/delete the queue/);

    // The refused declare closed only a throwaway channel: the transport keeps working.
    const other = unique('after-conflict');
    fx.track(other, 'g');
    await t.provision(other, [{ group: 'g', patterns: ['#'] }]);
    const h = await t.health();
    expect(h.ok).toBe(true);
  });

  it('a classic queue where a quorum queue is wanted is reported against queueType', async () => {
    const topic = unique('qtype');
    fx.track(topic, 'g');
    const classic = await fx.transport({ queueType: 'classic' });
    await classic.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const quorum = await fx.transport();
    const err = await quorum.provision(topic, [{ group: 'g', patterns: ['#'] }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('queueType');
    expect((err as ConfigError).message).toMatch(/x-queue-type|x-dead-letter-strategy|x-overflow/);
  });

  it('a different delivery limit is reported against deliveryLimit', async () => {
    const topic = unique('limit');
    fx.track(topic, 'g');
    const a = await fx.transport({ deliveryLimit: 50 });
    await a.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const b = await fx.transport({ deliveryLimit: 60 });
    const err = await b.provision(topic, [{ group: 'g', patterns: ['#'] }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('deliveryLimit');
    expect((err as ConfigError).message).toContain('x-delivery-limit');
  });

  it("provision: 'verify' checks without creating and names what is missing", async () => {
    const topic = unique('verify');
    fx.track(topic, 'g');
    const t = await fx.transport({ provision: 'verify' });
    const err = await t.provision(topic, [{ group: 'g', patterns: ['#'] }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(`exchange "${topic}" does not exist`);
    expect(await fx.queueExists(names.groupQueue(topic, 'g'))).toBe(false);

    const creator = await fx.transport();
    await creator.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
  });

  it('streams: true declares a stream queue per topic bound to every type', async () => {
    const topic = unique('stream');
    fx.track(topic);
    const t = await fx.transport({ streams: { maxAge: '1h' } });
    expect(t.capabilities.replay).toBe(true);
    await t.provision(topic, []);
    const ch = await fx.channel();
    await ch.assertQueue(names.streamQueue(topic), {
      durable: true,
      arguments: { 'x-queue-type': 'stream', 'x-max-age': '1h' },
    });
    await ch.close();
  });
});

describe('options', () => {
  it('rejects bad options with a ConfigError naming the field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ url: 'http://localhost' }, 'url'],
      [{ url: 'not a url' }, 'url'],
      [{ url: 'amqp://h', prefetch: 0 }, 'prefetch'],
      [{ url: 'amqp://h', queueType: 'stream' }, 'queueType'],
      [{ url: 'amqp://h', reconnect: { initialMs: 500, maxMs: 10 } }, 'reconnect.maxMs'],
      [{ url: 'amqp://h', delayTiersMs: [1000, -5] }, 'delayTiersMs.1'],
      [{ url: 'amqp://h', streams: { maxAge: 'forever' } }, 'streams.maxAge'],
      [{ url: 'amqp://h?heartbeat=soon' }, 'url'],
      [{ url: 'amqp://h', delayTiersMs: [] }, 'delayTiersMs'],
      [{ url: 'amqp://h', onNoSubscribers: 'drop' }, 'onNoSubscribers'],
      [{ url: 'amqp://h', connectTimeoutMs: 0 }, 'connectTimeoutMs'],
      [{ url: 'amqp://h?confirmWindow=lots' }, 'url.confirmWindow'],
      [{ url: 'amqp://h?queueType=stream' }, 'queueType'],
      [{ url: 'amqp://h?streams=maybe' }, 'url.streams'],
      [{ url: 'amqp://h?confirmWindw=5' }, 'url.confirmWindw'],
      [{ url: 'amqp://h', delayQueuePrefix: '' }, 'delayQueuePrefix'],
      [{ url: 'amqp://h', delayQueuePrefix: 'my tiers' }, 'delayQueuePrefix'],
    ];
    for (const [options, field] of cases) {
      let err: unknown;
      try {
        rabbitmq(options as never);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(options)).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field, JSON.stringify(options)).toBe(field);
    }
  });

  it('never shows the password of a URL in errors', () => {
    expect(() => rabbitmq({ url: 'http://user:hunter2@host' })).toThrow(ConfigError);
    try {
      rabbitmq({ url: 'amqp://user:hunter2@host', prefetch: -1 });
    } catch (e) {
      expect(String(e)).not.toContain('hunter2');
    }
  });

  it('a misspelt option is a ConfigError naming it (the options are strict)', () => {
    expect(() => rabbitmq({ url: 'amqp://h', confirmWindw: 5 } as never)).toThrow(ConfigError);
    expect(() => rabbitmq({ url: 'amqp://h', confirmWindw: 5 } as never)).toThrow(/confirmWindw/);
    expect(() => rabbitmq({ url: 'amqp://h', publishTimeoutMs: 5 } as never)).toThrow(/publishTimeoutMs/);
    expect(() => rabbitmq({ url: 'amqp://h', reconnect: { initalMs: 5 } } as never)).toThrow(/initalMs/);
  });

  it('reads options from the URL query, leaves amqplib its own, and lets an explicit option win', () => {
    const t = transportFromUrl(
      'amqp://u:p@h:5672/vh?heartbeat=5&confirmWindow=20&queueType=classic&delayTiersMs=5000,1000' +
        '&singleActiveConsumer=true&streams=0&onNoSubscribers=reject&connectTimeoutMs=1500&connectionName=x' +
        '&delayQueuePrefix=billing.delay',
      { confirmWindow: 30 },
    ) as RabbitMqTransport;
    expect(t.options).toMatchObject({
      confirmWindow: 30,
      queueType: 'classic',
      delayTiersMs: [1_000, 5_000],
      singleActiveConsumer: true,
      streams: undefined,
      onNoSubscribers: 'reject',
      connectTimeoutMs: 1_500,
      connectionName: 'x',
      delayQueuePrefix: 'billing.delay',
    });
    // Only amqplib's own parameters stay in the URL it is given.
    expect(new URL(t.options.url).search).toBe('?heartbeat=5');
    expect(t.capabilities).toMatchObject({ ordering: 'group', replay: false, delayTiersMs: [1_000, 5_000] });
    // Streams from the URL: replay on.
    expect(transportFromUrl('amqp://h?streams=1').capabilities.replay).toBe(true);
    expect(rabbitmq({ url: 'amqp://h' }).options).toMatchObject({
      delayQueuePrefix: 'omnibus.delay',
      onNoSubscribers: 'accept',
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      delayTiersMs: DEFAULT_DELAY_TIERS_MS,
    });
  });

  it('a closed port fails to connect with a ConnectionError that hides the password', async () => {
    const t = rabbitmq({ url: 'amqp://guest:s3cret@127.0.0.1:1', connectTimeoutMs: 2_000 });
    const err = await t.connect({ logger: silentLogger, service: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(String((err as Error).message)).not.toContain('s3cret');
    expect(String((err as Error).message)).toContain('127.0.0.1:1');
    await expect(t.publish('x', [], noDeadline())).rejects.toThrow(/connect/);
  });
});
