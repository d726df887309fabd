/**
 * The transport contract suite: the rules of `Transport` (packages/core/src/transport.ts) checked on every
 * transport directly, below the bus, against its real broker. The conformance suite checks what users see;
 * this one checks what the core relies on: in-flight limits, settle semantics, delays, dead letters,
 * pause, close, the publish deadline, unroutable publishes, stats and the connect deadline.
 */
import {
  type Capabilities,
  ConfigError,
  ConnectionError,
  ControlHeader,
  ErrorCode,
  OmnibusError,
  PublishError,
  type Transport,
  type TransportSubscription,
} from '@omnibus/core';
import { PublishDeadline, type TransportStats, tierFor } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadHarness } from '../load-harness.js';
import { loadContractHooks } from './hooks.js';
import {
  CONTEXT,
  envelope,
  Inbox,
  OTHER_TYPE,
  publish,
  sameBytes,
  sleep,
  subscribe,
  topicName,
  within,
} from './probe.js';
import { type ContractScenario, unsupported } from './requirements.js';

const harness = await loadHarness();
const hooks = await loadContractHooks(harness.name);
const caps: Capabilities = { ...harness.create().capabilities, ...harness.capabilities };

/** How long past its bound a broker may take to hand a message over (consumer polls, group joins). */
const SLACK_MS = 10_000;
/**
 * An absence (no delivery while paused, nothing more after a settle) can only be watched over a window;
 * each use pairs it with a positive check that the message was really there to be delivered.
 */
const QUIET_MS = 1_500;
const WAIT = { timeoutMs: 30_000 };

const transports: Transport[] = [];
const subscriptions: TransportSubscription[] = [];

/** A connected transport from the harness (or from `make`), closed after the test. */
async function open(make: () => Transport = () => harness.create()): Promise<Transport> {
  const t = make();
  transports.push(t);
  await t.connect(CONTEXT);
  return t;
}

async function subscribed(
  t: Transport,
  topic: string,
  group: string,
  inbox: Inbox,
  maxInFlight?: number,
): Promise<TransportSubscription> {
  const sub = await subscribe(t, topic, group, inbox, maxInFlight);
  subscriptions.push(sub);
  return sub;
}

function scenario(
  name: string,
  needs: ContractScenario | undefined,
  fn: () => Promise<void>,
  timeoutMs?: number,
) {
  const reason = needs ? unsupported(needs, caps, hooks) : undefined;
  it.skipIf(reason !== undefined)(
    reason ? `${name} (not applicable: ${harness.name} ${reason})` : name,
    fn,
    timeoutMs,
  );
}

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(OmnibusError);
  return (err as OmnibusError).code;
}

const STATS_KEYS = ['deadLettered', 'delayed', 'depth', 'extras', 'inFlight', 'lag', 'oldestAgeMs'];

function expectStatsShape(stats: TransportStats): void {
  expect(Object.keys(stats).sort()).toEqual(STATS_KEYS);
  for (const key of STATS_KEYS) {
    if (key === 'extras') continue;
    const value = stats[key as keyof TransportStats];
    if (value !== null) {
      expect(typeof value, key).toBe('number');
      expect(Number.isFinite(value) && (value as number) >= 0, `${key} = ${String(value)}`).toBe(true);
    }
  }
  expect(typeof stats.extras).toBe('object');
  for (const [name, value] of Object.entries(stats.extras)) {
    expect(Number.isFinite(value), `extras.${name}`).toBe(true);
  }
}

/**
 * Node's timers count in whole milliseconds from the event loop's cached time, so a timer of d ms can fire
 * up to 1 ms before d has passed on the precise clock; "not before its delay" is checked at that grain.
 */
const TIMER_GRAIN_MS = 1;

describe(`transport contract: ${harness.name}`, () => {
  beforeAll(async () => {
    await harness.setup();
  });
  afterEach(async () => {
    await Promise.allSettled(subscriptions.splice(0).map((s) => s.close()));
    await Promise.allSettled(transports.splice(0).map((t) => t.close()));
  });
  afterAll(async () => {
    await harness.teardown();
  });

  scenario('never hands over more than maxInFlight unsettled deliveries', undefined, async () => {
    const topic = topicName('inflight');
    const t = await open();
    const inbox = new Inbox(t);
    await subscribed(t, topic, 'g', inbox, 3);
    const ids = await publish(t, topic, 12);
    // Hold everything: the transport must stop at 3 with 9 still waiting at the broker.
    await eventually(() => inbox.live.length >= 3, { ...WAIT, what: '3 live deliveries' });
    const { depth } = await t.stats(topic, 'g');
    // Where depth is known, first see the other 9 waiting at the broker (Kafka's lag may count more).
    if (typeof depth === 'number')
      await eventually(async () => ((await t.stats(topic, 'g')).depth ?? 0) >= 9, WAIT);
    else await sleep(QUIET_MS);
    expect(inbox.received).toHaveLength(3);
    // Then settle one at a time, at random moments, until all are done; the limit holds throughout.
    while (inbox.ids().size < ids.length || inbox.live.length > 0) {
      const next = await eventually(() => inbox.live[0], { ...WAIT, intervalMs: 5, what: 'a delivery' });
      await sleep(Math.random() * 20);
      await inbox.settle(next, (d) => d.ack());
    }
    expect(inbox.ids()).toEqual(new Set(ids));
    expect(inbox.maxLive).toBe(3);
  });

  scenario('release redelivers without costing an attempt', undefined, async () => {
    const topic = topicName('release');
    const t = await open();
    const inbox = new Inbox(t);
    await subscribed(t, topic, 'g', inbox);
    const [id] = (await publish(t, topic, 1)) as [string];

    const first = await inbox.nth(id, 1, WAIT.timeoutMs);
    expect(first.delivery.previousAttempts).toBe(0);
    await inbox.settle(first, (d) => d.release());
    const second = await inbox.nth(id, 2, WAIT.timeoutMs);
    expect(second.delivery.redelivered).toBe(true);
    expect(second.delivery.previousAttempts).toBe(0);

    // With attempts already counted in the header, a release keeps the count as it was.
    await inbox.settle(second, (d) => d.retryLater(0, { [ControlHeader.attempts]: '2' }));
    const third = await inbox.nth(id, 3, WAIT.timeoutMs + (caps.delayTiersMs[0] ?? 0));
    expect(third.delivery.previousAttempts).toBe(2);
    await inbox.settle(third, (d) => d.release());
    const fourth = await inbox.nth(id, 4, WAIT.timeoutMs);
    expect(fourth.delivery.previousAttempts).toBe(2);
    expect(fourth.delivery.redelivered).toBe(true);
    await inbox.settle(fourth, (d) => d.ack());
  });

  scenario(
    'a retry is not delivered before its delay, comes within its tier, and carries the control headers',
    undefined,
    async () => {
      const topic = topicName('retry');
      const t = await open();
      const inbox = new Inbox(t);
      await subscribed(t, topic, 'g', inbox);
      const DELAY_MS = 1_200;
      const bound = caps.delayTiersMs.length > 0 ? tierFor(DELAY_MS, caps.delayTiersMs) : DELAY_MS;
      const control = {
        [ControlHeader.attempts]: '1',
        [ControlHeader.firstFailureAt]: String(Date.now()),
        [ControlHeader.lastError]: 'boom',
      };
      const ids = await publish(t, topic, 2);
      const asked = new Map<string, number>();
      for (const id of ids) {
        const first = await inbox.nth(id, 1, WAIT.timeoutMs);
        // Measured from the settle call: the delay is what the consumer asked for at that moment.
        asked.set(id, performance.now());
        await inbox.settle(first, (d) => d.retryLater(DELAY_MS, control));
      }
      for (const id of ids) {
        const first = inbox.of(id)[0]!;
        const again = await inbox.nth(id, 2, bound + SLACK_MS + WAIT.timeoutMs);
        const waited = again.at - asked.get(id)!;
        expect(waited, 'delivered before its delay').toBeGreaterThanOrEqual(DELAY_MS - TIMER_GRAIN_MS);
        expect(waited, `later than its tier (${bound} ms) allows`).toBeLessThanOrEqual(bound + SLACK_MS);
        expect(again.delivery.wire.headers).toMatchObject(control);
        expect(again.delivery.previousAttempts).toBe(1);
        expect(t.decode(again.delivery.wire)).toEqual(t.decode(first.delivery.wire));
        await inbox.settle(again, (d) => d.ack());
      }
    },
    90_000,
  );

  scenario(
    'a delay longer than the largest tier is chained through several hops, never shortened',
    'chained-delay',
    async () => {
      const TIERS = [300, 600];
      const topic = topicName('chain');
      const t = await open(() => hooks!.createWithDelayTiers!(TIERS));
      expect(t.capabilities.delayTiersMs).toEqual(TIERS);
      const inbox = new Inbox(t);
      await subscribed(t, topic, 'g', inbox);
      const DELAY_MS = 2_000;
      const [id] = (await publish(t, topic, 1)) as [string];
      const first = await inbox.nth(id, 1, WAIT.timeoutMs);
      const asked = performance.now();
      await inbox.settle(first, (d) => d.retryLater(DELAY_MS, { [ControlHeader.attempts]: '1' }));
      const again = await inbox.nth(id, 2, DELAY_MS + SLACK_MS + WAIT.timeoutMs);
      const waited = again.at - asked;
      expect(waited, 'delivered before its delay').toBeGreaterThanOrEqual(DELAY_MS - TIMER_GRAIN_MS);
      expect(waited).toBeLessThanOrEqual(DELAY_MS + TIERS[1]! + SLACK_MS);
      expect(again.delivery.previousAttempts).toBe(1);
      await inbox.settle(again, (d) => d.ack());
    },
    90_000,
  );

  scenario('dead-letter keeps body and headers and adds the failure metadata', undefined, async () => {
    const topic = topicName('dlq');
    const t = await open();
    const inbox = new Inbox(t);
    await subscribed(t, topic, 'g', inbox);
    const [id] = (await publish(t, topic, 1, () => ({
      key: 'k-dl',
      headers: { tenant: 'acme', trace: 't-1' },
    }))) as [string];
    const got = await inbox.nth(id, 1, WAIT.timeoutMs);
    const metadata = {
      [ControlHeader.reason]: 'max-attempts',
      [ControlHeader.error]: 'boom',
      [ControlHeader.attempts]: '3',
      [ControlHeader.originalTopic]: topic,
      [ControlHeader.originalGroup]: 'g',
      [ControlHeader.deadLetteredAt]: String(Date.now()),
    };
    await inbox.settle(got, (d) => d.deadLetter(metadata));
    const [dead, ...more] = await harness.readDeadLetters(topic, 'g', 1, WAIT.timeoutMs);
    expect(dead, 'the dead letter, read with the raw client').toBeDefined();
    expect(more).toEqual([]);
    expect(sameBytes(dead!.body, got.delivery.wire.body)).toBe(true);
    expect(dead!.headers).toMatchObject({ ...got.delivery.wire.headers, ...metadata });
    expect(t.decode(dead!)).toEqual(t.decode(got.delivery.wire));
    // The original is gone from the group: a later message arrives, the dead-lettered one never again.
    const [later] = (await publish(t, topic, 1)) as [string];
    await inbox.nth(later, 1, WAIT.timeoutMs);
    expect(inbox.of(id)).toHaveLength(1);
  });

  scenario(
    'pause stops deliveries, the backlog counts in depth, resume restarts them',
    undefined,
    async () => {
      const topic = topicName('pause');
      const t = await open();
      const inbox = new Inbox(t);
      inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
      const sub = await subscribed(t, topic, 'g', inbox);
      // A first message proves the subscription is live before it is paused.
      const [warm] = (await publish(t, topic, 1)) as [string];
      await inbox.nth(warm, 1, WAIT.timeoutMs);
      await eventually(() => inbox.live.length === 0, WAIT);
      sub.pause();
      const held = await publish(t, topic, 4);
      const deliveredWhilePaused = () => held.filter((id) => inbox.of(id).length > 0);
      const stats = await t.stats(topic, 'g');
      expectStatsShape(stats);
      if (stats.depth !== null) {
        // At least the 4 held back (a Kafka lag may still count the first one until its offset is
        // committed); a delivery of one of them ends the wait early, and fails below.
        await eventually(
          async () => deliveredWhilePaused().length > 0 || ((await t.stats(topic, 'g')).depth ?? 0) >= 4,
          { ...WAIT, what: 'depth 4' },
        );
      }
      await sleep(QUIET_MS);
      expect(deliveredWhilePaused(), 'delivered while paused').toEqual([]);
      if (stats.depth !== null) expect((await t.stats(topic, 'g')).depth).toBeGreaterThanOrEqual(4);
      sub.resume();
      await eventually(() => held.every((id) => inbox.of(id).length > 0), { ...WAIT, what: 'held messages' });
      await eventually(() => inbox.live.length === 0, WAIT);
    },
  );

  scenario(
    'close resolves, and unsettled deliveries go back to the group for another subscriber',
    undefined,
    async () => {
      const topic = topicName('close');
      const a = await open();
      const first = new Inbox(a);
      const subA = await subscribed(a, topic, 'g', first, 3);
      const ids = await publish(a, topic, 5);
      await eventually(() => first.live.length >= 3, { ...WAIT, what: '3 unsettled deliveries' });
      expect(first.live).toHaveLength(3);
      const unsettled = first.live.map((r) => r.id);
      await within(subA.close(), 20_000, 'closing the subscription');
      await within(a.close(), 20_000, 'closing the transport');

      const b = await open();
      const second = new Inbox(b);
      second.onReceive = (r) => void second.settle(r, (d) => d.ack());
      await subscribed(b, topic, 'g', second);
      await eventually(() => ids.every((id) => second.of(id).length > 0), {
        timeoutMs: 60_000,
        what: 'every message at the second subscriber',
      });
      expect(unsettled.every((id) => second.of(id).length > 0)).toBe(true);
    },
    120_000,
  );

  scenario(
    'a second settle call rejects with ALREADY_SETTLED and does nothing to the broker',
    undefined,
    async () => {
      const topic = topicName('twice');
      const t = await open();
      const inbox = new Inbox(t);
      await subscribed(t, topic, 'g', inbox);
      const [acked, released, dead] = (await publish(t, topic, 3)) as [string, string, string];
      const meta = { [ControlHeader.reason]: 'non-retryable', [ControlHeader.error]: 'boom' };

      // Acked, then every other action (one of them in the same tick, while the ack is settling).
      const a = await inbox.nth(acked, 1, WAIT.timeoutMs);
      const settling = a.delivery.ack();
      expect(await code(a.delivery.release())).toBe(ErrorCode.ALREADY_SETTLED);
      await settling;
      expect(await code(a.delivery.ack())).toBe(ErrorCode.ALREADY_SETTLED);
      expect(await code(a.delivery.release())).toBe(ErrorCode.ALREADY_SETTLED);
      expect(await code(a.delivery.retryLater(0, { [ControlHeader.attempts]: '1' }))).toBe(
        ErrorCode.ALREADY_SETTLED,
      );
      expect(await code(a.delivery.deadLetter(meta))).toBe(ErrorCode.ALREADY_SETTLED);

      // Released, then an ack: the ack must not remove the message, it comes back.
      const r = await inbox.nth(released, 1, WAIT.timeoutMs);
      await r.delivery.release();
      expect(await code(r.delivery.ack())).toBe(ErrorCode.ALREADY_SETTLED);
      const back = await inbox.nth(released, 2, WAIT.timeoutMs);
      await inbox.settle(back, (d) => d.ack());

      // Dead-lettered, then a release: the message stays dead-lettered, once, and is not redelivered.
      const d = await inbox.nth(dead, 1, WAIT.timeoutMs);
      await d.delivery.deadLetter(meta);
      expect(await code(d.delivery.release())).toBe(ErrorCode.ALREADY_SETTLED);

      const [later] = (await publish(t, topic, 1)) as [string];
      const l = await inbox.nth(later, 1, WAIT.timeoutMs);
      await inbox.settle(l, (x) => x.ack());
      const deadLetters = await harness.readDeadLetters(topic, 'g', 2, 5_000);
      expect(deadLetters.map((w) => t.decode(w).id)).toEqual([dead]);
      expect(inbox.of(acked)).toHaveLength(1);
      expect(inbox.of(dead)).toHaveLength(1);
    },
    90_000,
  );

  scenario('a publish under a PublishDeadline resolves once confirmed', undefined, async () => {
    const topic = topicName('deadline');
    const t = await open();
    const inbox = new Inbox(t);
    inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
    await subscribed(t, topic, 'g', inbox);
    const call = new PublishDeadline(Date.now() + 20_000);
    const e = envelope();
    await within(t.publish(topic, [t.encode(e)], call), 20_000, 'the publish');
    expect(call.abandoned).toBe(false);
    await inbox.nth(e.id, 1, WAIT.timeoutMs);
  });

  scenario(
    "a publish abandoned at once gets a verdict, and a 'withdrawn' one never arrives",
    undefined,
    async () => {
      const topic = topicName('abandon');
      const t = await open();
      const inbox = new Inbox(t);
      inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
      await subscribed(t, topic, 'g', inbox);
      const e = envelope({ key: 'same-key' });
      const call = new PublishDeadline(Date.now() + 20_000);
      const publishing = t.publish(topic, [t.encode(e)], call);
      publishing.catch(() => {});
      const verdict = call.abandon();
      expect(['withdrawn', 'unknown']).toContain(verdict);
      // A later message on the same key, and then the producer flushed: a withdrawn one must stay away.
      const [later] = (await publish(t, topic, 1, () => ({ key: 'same-key' }))) as [string];
      await inbox.nth(later, 1, WAIT.timeoutMs);
      if (verdict === 'withdrawn') {
        await sleep(QUIET_MS);
        expect(inbox.of(e.id), 'a withdrawn publish was written').toEqual([]);
      }
    },
  );

  scenario(
    'a publish still queued in the client is withdrawn when abandoned, and never written',
    'withdrawn-publish',
    async () => {
      const topic = topicName('withdraw');
      const reader = await open();
      const inbox = new Inbox(reader);
      inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
      await subscribed(reader, topic, 'g', inbox);
      const holding = await open(() => hooks!.createHoldingPublishes!());
      // Publishes ahead of it keep the client busy (linger, confirm window), so the probe waits queued.
      const ahead = Array.from({ length: 20 }, () => envelope({ key: 'same-key' }));
      const sending = ahead.map((a) =>
        holding.publish(topic, [holding.encode(a)], new PublishDeadline(Date.now() + 30_000)),
      );
      for (const p of sending) p.catch(() => {}); // awaited below; no unhandled rejection if the test fails first
      const e = envelope({ key: 'same-key' });
      const call = new PublishDeadline(Date.now() + 30_000);
      holding.publish(topic, [holding.encode(e)], call).catch(() => {});
      await new Promise((r) => setImmediate(r));
      expect(call.abandon()).toBe('withdrawn');
      // Withdrawing one publish leaves the others alone.
      await within(Promise.all(sending), 30_000, 'the publishes ahead of the withdrawn one');
      // Closing flushes the producer: whatever it still held would be written now.
      await within(holding.close(), 20_000, 'closing the holding transport');
      await eventually(() => ahead.every((a) => inbox.of(a.id).length > 0), { ...WAIT, what: 'the others' });
      const [later] = (await publish(reader, topic, 1, () => ({ key: 'same-key' }))) as [string];
      await inbox.nth(later, 1, WAIT.timeoutMs);
      await sleep(QUIET_MS);
      expect(inbox.of(e.id), 'a withdrawn publish was written').toEqual([]);
    },
  );

  scenario(
    "onNoSubscribers defaults to 'accept': a publish nobody receives resolves",
    undefined,
    async () => {
      const t = await open();
      await within(publish(t, topicName('nobody'), 1), 20_000, 'a publish to a topic without groups');
      // A topic with a group that wants other types: still accepted.
      const topic = topicName('othertype');
      const inbox = new Inbox(t);
      await subscribed(t, topic, 'g', inbox);
      await within(
        publish(t, topic, 1, () => ({ type: OTHER_TYPE })),
        20_000,
        'a publish of a type no group wants',
      );
    },
  );

  scenario(
    "onNoSubscribers 'reject' refuses a publish nobody receives with UNROUTABLE",
    'reject-unroutable',
    async () => {
      const t = await open(() => hooks!.createWith({ onNoSubscribers: 'reject' }));
      const topic = topicName('reject');
      const inbox = new Inbox(t);
      inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
      await subscribed(t, topic, 'g', inbox);
      const err = await publish(t, topic, 1, () => ({ type: OTHER_TYPE })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PublishError);
      expect((err as PublishError).code).toBe(ErrorCode.UNROUTABLE);
      // Routable messages still go through on the same transport.
      const [ok] = (await publish(t, topic, 1)) as [string];
      await inbox.nth(ok, 1, WAIT.timeoutMs);
    },
  );

  scenario(
    "a transport that cannot tell refuses onNoSubscribers 'reject' at construction",
    'refuse-reject-option',
    async () => {
      // The option itself is known (so the refusal below is about 'reject', not an unknown key).
      expect(hooks!.createWith({ onNoSubscribers: 'accept' }).capabilities.rejectsUnroutable).toBe(false);
      const err = (() => {
        try {
          hooks!.createWith({ onNoSubscribers: 'reject' });
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/onNoSubscribers/);
    },
  );

  scenario(
    'stats have every key, each a number or null, for a group and for a topic',
    undefined,
    async () => {
      const topic = topicName('stats');
      const t = await open();
      const inbox = new Inbox(t);
      inbox.onReceive = (r) => void inbox.settle(r, (d) => d.ack());
      await subscribed(t, topic, 'g', inbox);
      const [id] = (await publish(t, topic, 1)) as [string];
      await inbox.nth(id, 1, WAIT.timeoutMs);
      expectStatsShape(await t.stats(topic, 'g'));
      expectStatsShape(await t.stats(topic));
    },
  );

  scenario(
    'connecting to a closed port fails within connectTimeoutMs with a ConnectionError',
    'connect-deadline',
    async () => {
      const TIMEOUT_MS = 1_500;
      const t = hooks!.createUnreachable!({ connectTimeoutMs: TIMEOUT_MS });
      const started = Date.now();
      const err = await t.connect(CONTEXT).catch((e: unknown) => e);
      const took = Date.now() - started;
      await t.close().catch(() => {});
      expect(err).toBeInstanceOf(ConnectionError);
      expect(took).toBeLessThan(TIMEOUT_MS + 1_000);
    },
  );
});
