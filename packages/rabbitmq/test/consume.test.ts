/** Consuming on RabbitMQ: deliveries, tier queues, dead-letter properties, garbage, the native delivery limit, pause, replay (the shared delivery rules are in integration-tests/src/contract). */
import { ConfigError, ControlHeader, DecodeError, type SubscribeSpec, UnsupportedError } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { names } from '../src/index.js';
import { envelope, Fixture, Inbox, type TestTransport, unique, waitFor } from './helpers.js';

const fx = new Fixture();
afterAll(() => fx.cleanup());

const spec = (topic: string, group: string, patterns: string[] = ['#'], maxInFlight = 10) => ({
  topic,
  group,
  patterns,
  maxInFlight,
});

/**
 * Subscribes with a prefetch of 50 and a handler that acks and calls pause() at the 10th delivery, when
 * dozens more are already on their way; then publishes 200 (once subscribed, so the handler can reach the
 * subscription) and waits for those 10.
 */
async function pausedAtTenth(t: TestTransport, topic: string, subSpec: SubscribeSpec) {
  const inbox = new Inbox();
  const sub = await t.subscribe(subSpec, (d) => {
    inbox.onDelivery(d);
    void d.ack();
    if (inbox.deliveries.length === 10) sub.pause();
  });
  const envs = Array.from({ length: 200 }, () => envelope('order.placed'));
  await t.publish(
    topic,
    envs.map((e) => t.encode(e)),
  );
  await inbox.waitForCount(10);
  return { sub, inbox, envs };
}

describe('consume', () => {
  it('delivers what was published, decodes it, and ack removes it', async () => {
    const topic = unique('basic');
    fx.track(topic, 'g');
    const t = await fx.transport();
    const inbox = new Inbox();
    const sub = await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    const env = envelope('order.placed', { key: 'k1', headers: { tenant: 'acme' } });
    await t.publish(topic, [t.encode(env)]);
    const [d] = await inbox.waitForCount(1);
    expect(d!.topic).toBe(topic);
    expect(d!.group).toBe('g');
    expect(d!.previousAttempts).toBe(0);
    expect(d!.redelivered).toBe(false);
    const back = t.decode(d!.wire);
    expect(back).toMatchObject({
      id: env.id,
      type: env.type,
      source: env.source,
      time: env.time,
      key: 'k1',
      correlationId: env.correlationId,
      version: 1,
      contentType: 'application/json',
      headers: { tenant: 'acme' },
    });
    expect(Buffer.from(back.data).toString()).toBe('{"n":1}');
    await d!.ack();
    // A second settle call is refused and touches nothing on the broker (the kit's one state machine).
    await expect(d!.release()).rejects.toMatchObject({ code: 'ALREADY_SETTLED' });
    await waitFor(async () => (await t.stats(topic, 'g')).depth === 0, 'queue empty');
    await sub.close();
  });

  it('routes by type pattern and fans out to every group', async () => {
    const topic = unique('fanout');
    fx.track(topic, 'orders', 'all');
    const t = await fx.transport();
    const orders = new Inbox();
    const all = new Inbox();
    await t.subscribe(spec(topic, 'orders', ['order.*']), orders.onDelivery);
    await t.subscribe(spec(topic, 'all', ['#']), all.onDelivery);
    await t.publish(topic, [t.encode(envelope('order.placed')), t.encode(envelope('invoice.sent.v1'))]);
    await all.waitForCount(2);
    await orders.waitForCount(1);
    for (const d of [...orders.deliveries, ...all.deliveries]) await d.ack();
    expect(orders.deliveries.map((d) => t.decode(d.wire).type)).toEqual(['order.placed']);
    await waitFor(async () => (await t.stats(topic, 'orders')).depth === 0, 'orders empty');
    expect(orders.deliveries).toHaveLength(1);
  });

  it('retryLater goes through the delay tier and comes back after the delay with the control headers', async () => {
    const topic = unique('retry');
    fx.track(topic, 'g');
    const t = await fx.transport({ delayTiersMs: [1_000, 5_000] });
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    const env = envelope('order.placed', { headers: { tenant: 'acme' } });
    await t.publish(topic, [t.encode(env)]);
    const [first] = await inbox.waitForCount(1);
    const handedOff = Date.now();
    await first!.retryLater(700, {
      [ControlHeader.attempts]: '1',
      [ControlHeader.firstFailureAt]: String(handedOff),
      [ControlHeader.lastError]: 'boom',
    });
    // The copy waits in the shared tier, the original is gone from the group queue as soon as the hand-off is confirmed.
    expect(await fx.depth(names.delayTier(1_000, 'quorum', fx.delayQueuePrefix))).toBe(1);
    const [, again] = await inbox.waitForCount(2, 10_000);
    expect(Date.now() - handedOff).toBeGreaterThanOrEqual(1_000);
    expect(again!.previousAttempts).toBe(1);
    expect(again!.wire.headers).toMatchObject({
      [ControlHeader.attempts]: '1',
      [ControlHeader.lastError]: 'boom',
      tenant: 'acme',
    });
    // Broker bookkeeping from the TTL expiry never leaks into user headers.
    const decoded = t.decode(again!.wire);
    expect(decoded.id).toBe(env.id);
    expect(decoded.headers).toEqual({ tenant: 'acme' });
    expect(Object.keys(decoded.headers).some((h) => h.startsWith('x-'))).toBe(false);
    await again!.ack();
  });

  it('a shared tier deleted by an operator fails that hand-off (the original stays) and is declared again for the next', async () => {
    const topic = unique('tier-gone');
    fx.track(topic, 'g');
    const t = await fx.transport({ delayTiersMs: [500] });
    const tier = names.delayTier(500, 'quorum', fx.delayQueuePrefix);
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    await t.publish(topic, [t.encode(envelope('order.placed'))]);
    const [first] = await inbox.waitForCount(1);
    const ch = await fx.channel();
    await ch.deleteQueue(tier);
    await ch.close();
    // The copy has nowhere to go: returned (mandatory), so the original is not acked.
    await expect(first!.retryLater(300, {})).rejects.toMatchObject({ code: 'UNROUTABLE' });
    await first!.release();
    const [, again] = await inbox.waitForCount(2);
    await again!.retryLater(300, { [ControlHeader.attempts]: '1' });
    expect(await fx.queueExists(tier)).toBe(true);
    const [, , back] = await inbox.waitForCount(3, 10_000);
    expect(back!.previousAttempts).toBe(1);
    await back!.ack();
  });

  it('deadLetter moves body and headers with the failure metadata to <topic>.<group>.dlq', async () => {
    const topic = unique('dlq');
    fx.track(topic, 'g');
    const t = await fx.transport();
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    const env = envelope('order.placed', {
      data: Buffer.from('{"orderId":"o-1"}'),
      headers: { tenant: 'acme' },
    });
    await t.publish(topic, [t.encode(env)]);
    const [d] = await inbox.waitForCount(1);
    await d!.deadLetter({
      [ControlHeader.reason]: 'max-attempts',
      [ControlHeader.error]: 'it broke',
      [ControlHeader.attempts]: '3',
      [ControlHeader.originalTopic]: topic,
      [ControlHeader.originalGroup]: 'g',
    });
    const [dead] = await fx.drain(names.deadLetterQueue(topic, 'g'), 1);
    expect(dead!.content.toString()).toBe('{"orderId":"o-1"}');
    expect(dead!.properties.messageId).toBe(env.id);
    expect(dead!.properties.type).toBe('order.placed');
    expect(dead!.properties.appId).toBe(env.source);
    expect(dead!.properties.headers).toMatchObject({
      cloudEvents_specversion: '1.0',
      tenant: 'acme',
      [ControlHeader.reason]: 'max-attempts',
      [ControlHeader.error]: 'it broke',
      [ControlHeader.attempts]: '3',
      [ControlHeader.originalTopic]: topic,
      [ControlHeader.originalGroup]: 'g',
    });
    expect(await fx.depth(names.groupQueue(topic, 'g'))).toBe(0);
  });

  it('garbage published with raw amqplib is delivered, decode throws DecodeError, and it can be dead-lettered', async () => {
    const topic = unique('garbage');
    fx.track(topic, 'g');
    const t = await fx.transport();
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    const ch = await fx.confirmChannel();
    const bytes = Buffer.from([0xff, 0x00, 0x13, 0x37]);
    ch.publish(topic, 'order.placed', bytes, {
      headers: {
        weird: 42,
        blob: Buffer.from('hi'),
        flag: true,
        nested: { a: 1 },
        list: [1, 2],
        nothing: null,
      },
    });
    ch.publish(topic, 'order.placed', Buffer.from('{}'), { headers: { cloudEvents_specversion: '1.0' } });
    await ch.waitForConfirms();
    await ch.close();
    const [a, b] = await inbox.waitForCount(2);
    expect(a!.wire.headers).toEqual({ weird: '42', blob: 'hi', flag: 'true' });
    expect(Buffer.from(a!.wire.body)).toEqual(bytes);
    expect(() => t.decode(a!.wire)).toThrow(DecodeError);
    expect(() => t.decode(b!.wire)).toThrow(DecodeError);
    await a!.deadLetter({ [ControlHeader.reason]: 'decode' });
    await b!.deadLetter({ [ControlHeader.reason]: 'decode' });
    const dead = await fx.drain(names.deadLetterQueue(topic, 'g'), 2);
    expect(dead[0]!.content).toEqual(bytes);
    expect(dead[0]!.properties.headers).toMatchObject({ weird: 42, [ControlHeader.reason]: 'decode' });
  });

  it('a foreign CloudEvent with non-string header values decodes', async () => {
    const topic = unique('foreign');
    fx.track(topic, 'g');
    const t = await fx.transport();
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    const ch = await fx.confirmChannel();
    ch.publish(topic, 'order.placed', Buffer.from('{"x":1}'), {
      contentType: 'application/json',
      headers: {
        cloudEvents_specversion: '1.0',
        cloudEvents_id: 'ext-1',
        cloudEvents_type: 'order.placed',
        cloudEvents_source: 'legacy',
        cloudEvents_schemaversion: 2,
        retries: 3,
      },
    });
    await ch.waitForConfirms();
    await ch.close();
    const [d] = await inbox.waitForCount(1);
    const env = t.decode(d!.wire);
    expect(env).toMatchObject({ id: 'ext-1', version: 2, source: 'legacy', headers: { retries: '3' } });
    await d!.ack();
  });

  it('the quorum delivery limit dead-letters a crash-looping message natively', async () => {
    const topic = unique('limit');
    fx.track(topic, 'g');
    const t = await fx.transport({ deliveryLimit: 2 });
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g'), inbox.onDelivery);
    await t.publish(topic, [t.encode(envelope('order.placed'))]);
    for (let n = 1; n <= 3; n++) {
      const ds = await inbox.waitForCount(n);
      await ds[n - 1]!.release();
    }
    const [dead] = await fx.drain(names.deadLetterQueue(topic, 'g'), 1);
    expect(dead!.properties.headers?.['x-first-death-reason']).toBe('delivery_limit');
  });

  it('pause stops deliveries (the consumer is gone) and resume brings them back', async () => {
    const topic = unique('pause');
    fx.track(topic, 'g');
    const t = await fx.transport();
    const inbox = new Inbox();
    const sub = await t.subscribe(spec(topic, 'g'), (d) => {
      inbox.onDelivery(d);
      void d.ack();
    });
    await waitFor(async () => (await t.stats(topic, 'g')).extras.consumers === 1, 'consumer registered');
    sub.pause();
    await waitFor(async () => (await t.stats(topic, 'g')).extras.consumers === 0, 'consumer cancelled');
    await t.publish(
      topic,
      Array.from({ length: 5 }, () => t.encode(envelope('order.placed'))),
    );
    expect((await t.stats(topic, 'g')).depth).toBe(5);
    expect(inbox.deliveries).toHaveLength(0);
    sub.resume();
    await inbox.waitForCount(5);
    await waitFor(async () => (await t.stats(topic, 'g')).depth === 0, 'all consumed');
  });

  it.each(['classic', 'quorum'] as const)(
    'pause in the middle of a backlog (%s): nothing more is handed over, and resume goes on in order',
    async (queueType) => {
      const topic = unique('pause-mid');
      fx.track(topic, 'g');
      const t = await fx.transport({ queueType });
      const { sub, inbox, envs } = await pausedAtTenth(t, topic, spec(topic, 'g', ['#'], 50));
      if (queueType === 'classic') {
        // A classic queue stops counting a consumer at its cancel. (A quorum queue counts a cancelled
        // consumer until its unsettled messages are settled, the held ones among them.)
        await waitFor(async () => (await t.stats(topic, 'g')).extras.consumers === 0, 'consumer cancelled');
      }
      // Ready in the queue plus held in the process: everything not handed over (once those on the wire
      // have arrived).
      await waitFor(async () => (await t.stats(topic, 'g')).depth === 190, 'depth 190');
      expect(inbox.deliveries).toHaveLength(10);
      sub.resume();
      await inbox.waitForCount(200);
      await waitFor(async () => (await t.stats(topic, 'g')).depth === 0, 'all consumed');
      expect(inbox.deliveries.map((d) => t.decode(d.wire).id)).toEqual(envs.map((e) => e.id));
      if (queueType === 'classic') {
        // Held, not requeued: nothing comes back marked redelivered. (A quorum queue marks some itself:
        // those it had sent toward the consumer when the cancel reached it go back with a delivery count.)
        expect(inbox.deliveries.filter((d) => d.redelivered)).toEqual([]);
      }
    },
  );

  it('pause in the middle of a replay: nothing more is handed over, and resume goes on from the next offset', async () => {
    const topic = unique('pause-replay');
    fx.track(topic, 'keeper');
    const t = await fx.transport({ streams: true });
    await t.provision(topic, [{ group: 'keeper', patterns: ['#'] }]);
    const { sub, inbox, envs } = await pausedAtTenth(t, topic, {
      topic,
      patterns: ['#'],
      maxInFlight: 50,
      replay: 'earliest',
    });
    await waitFor(
      async () => (await fx.consumers(names.streamQueue(topic))) === 0,
      'stream consumer cancelled',
    );
    expect(inbox.deliveries).toHaveLength(10);
    sub.resume();
    await inbox.waitForCount(200);
    expect(inbox.deliveries.map((d) => t.decode(d.wire).id)).toEqual(envs.map((e) => e.id));
    await sub.close();
  });

  it('an exclusive subscription without singleActiveConsumer is a ConfigError; with it, one consumer is active', async () => {
    const topic = unique('sac');
    fx.track(topic, 'g');
    const plain = await fx.transport();
    await expect(plain.subscribe({ ...spec(topic, 'g'), exclusive: true }, () => {})).rejects.toBeInstanceOf(
      ConfigError,
    );
    const t1 = await fx.transport({ singleActiveConsumer: true });
    const t2 = await fx.transport({ singleActiveConsumer: true });
    const in1 = new Inbox();
    const in2 = new Inbox();
    const s1 = await t1.subscribe({ ...spec(topic, 'g'), exclusive: true }, (d) => {
      in1.onDelivery(d);
      void d.ack();
    });
    await t2.subscribe({ ...spec(topic, 'g'), exclusive: true }, (d) => {
      in2.onDelivery(d);
      void d.ack();
    });
    await t1.publish(
      topic,
      Array.from({ length: 5 }, () => t1.encode(envelope('order.placed'))),
    );
    await in1.waitForCount(5);
    expect(in2.deliveries).toHaveLength(0);
    // The standby takes over when the active consumer leaves.
    await s1.close();
    await t1.publish(topic, [t1.encode(envelope('order.placed'))]);
    await in2.waitForCount(1);
  });

  it('replay reads the topic stream from the start, with no group', async () => {
    const topic = unique('replay');
    fx.track(topic, 'keeper');
    const t = await fx.transport({ streams: true });
    await t.provision(topic, [{ group: 'keeper', patterns: ['#'] }]);
    const envs = Array.from({ length: 5 }, () => envelope('order.placed'));
    await t.publish(
      topic,
      envs.map((e) => t.encode(e)),
    );
    const inbox = new Inbox();
    const sub = await t.subscribe({ topic, patterns: ['#'], maxInFlight: 2, replay: 'earliest' }, (d) => {
      inbox.onDelivery(d);
      void d.ack();
    });
    await inbox.waitForCount(5);
    expect(inbox.deliveries.map((d) => t.decode(d.wire).id)).toEqual(envs.map((e) => e.id));
    expect(inbox.deliveries[0]!.group).toBe('');
    await sub.close();

    const late = new Inbox();
    await t.subscribe({ topic, patterns: ['#'], maxInFlight: 2, replay: 'latest' }, late.onDelivery);
    const fresh = envelope('order.placed');
    await t.publish(topic, [t.encode(fresh)]);
    const [freshOne] = await late.waitForCount(1);
    expect(late.deliveries.map((d) => t.decode(d.wire).id)).toEqual([fresh.id]);
    // A stream has no retry tiers or dead-letter queue; after the refusal only release() is allowed.
    await expect(freshOne!.retryLater(1, {})).rejects.toBeInstanceOf(UnsupportedError);
    await expect(freshOne!.deadLetter({})).rejects.toMatchObject({ code: 'ALREADY_SETTLED' });
    await freshOne!.release();

    const none = await fx.transport();
    await expect(
      none.subscribe({ topic, patterns: ['#'], maxInFlight: 1, replay: 'earliest' }, () => {}),
    ).rejects.toBeInstanceOf(UnsupportedError);
  });

  it('stats report the broker view in the one shape (null where RabbitMQ does not say); health too', async () => {
    const topic = unique('stats');
    fx.track(topic, 'g');
    // Tiers of its own, so that the tiers' total counts this test's retry alone.
    const t = await fx.transport({ delayQueuePrefix: unique('stats-tiers') });
    await t.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await t.publish(topic, [t.encode(envelope('a.b')), t.encode(envelope('a.b'))]);
    expect(await t.stats(topic, 'g')).toEqual({
      depth: 2,
      inFlight: null,
      // Shared by every group: one group's share cannot be read over AMQP.
      delayed: null,
      deadLettered: 0,
      lag: null,
      oldestAgeMs: null,
      extras: { consumers: 0, delayedAllGroups: 0 },
    });
    await t.publish(topic, [t.encode(envelope('a.b'))]);
    const inbox = new Inbox();
    await t.subscribe(spec(topic, 'g', ['#'], 3), inbox.onDelivery);
    const [first, second] = await inbox.waitForCount(3);
    await first!.retryLater(20_000, {});
    await second!.deadLetter({});
    await waitFor(async () => {
      const s = await t.stats(topic, 'g');
      return (
        s.depth === 0 && s.extras.delayedAllGroups === 1 && s.deadLettered === 1 && s.extras.consumers === 1
      );
    }, 'one delayed, one dead-lettered, one held, none waiting');
    expect(await t.stats(topic)).toMatchObject({ depth: null, extras: {} });
    await expect(t.stats(topic, 'nope')).rejects.toBeInstanceOf(ConfigError);
    const h = await t.health();
    expect(h).toMatchObject({
      ok: true,
      transport: 'rabbitmq',
      details: { state: 'open', serverVersion: expect.any(String) },
    });
    expect(JSON.stringify(h)).not.toContain('guest:guest');
  });
});
