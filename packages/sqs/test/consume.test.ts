/** Consuming: in-flight budget, settlement (ack, retryLater, deadLetter, release), FIFO order, chained delays. */
import {
  DeleteQueueCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SendMessageCommandInput,
} from '@aws-sdk/client-sqs';
import { ControlHeader, type Delivery, ErrorCode, readDeadLetterInfo } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { attributesToHeaders, headersToAttributes, queueNames } from '../src/index.js';
import {
  closeAll,
  envelope,
  Inbox,
  publish,
  raw,
  requireBroker,
  spec,
  transport,
  uniqueTopic,
} from './helpers.js';

async function queueUrl(name: string): Promise<string> {
  return (await raw.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
}

describe('consuming from ElasticMQ', () => {
  beforeAll(requireBroker);
  afterEach(closeAll);

  it('never holds more than maxInFlight unsettled deliveries', async () => {
    const topic = uniqueTopic('inflight');
    const t = await transport({ pollers: 3 });
    const inbox = new Inbox(t);
    const sub = await t.subscribe(spec(topic, 'g', { maxInFlight: 3 }), inbox.push);
    await publish(
      t,
      topic,
      Array.from({ length: 12 }, (_, i) => t.encode(envelope({ i }))),
    );
    await inbox.waitFor(3);
    // Give the pollers every chance to overshoot: the queue still holds 9 visible messages.
    await eventually(async () => (await t.stats(topic)).depth === 9, { timeoutMs: 10_000, what: '9 ready' });
    expect(inbox.deliveries).toHaveLength(3);
    await Promise.all(inbox.deliveries.slice(0, 3).map((d) => d.ack()));
    await inbox.waitFor(6);
    expect(inbox.deliveries.length).toBeLessThanOrEqual(6);
    await sub.close();
  });

  it('ack deletes through DeleteMessageBatch; stats see the queue drain', async () => {
    const topic = uniqueTopic('ack');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(
      t,
      topic,
      Array.from({ length: 15 }, (_, i) => t.encode(envelope({ i }))),
    );
    await inbox.waitFor(15);
    const deletes: number[] = [];
    t.sdkClient.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'DeleteMessageBatchCommand') {
          deletes.push((args.input as { Entries: unknown[] }).Entries.length);
        }
        return next(args);
      },
      { step: 'initialize' },
    );
    await Promise.all(inbox.deliveries.map((d) => d.ack()));
    expect(deletes.reduce((a, b) => a + b, 0)).toBe(15);
    expect(deletes.length).toBeLessThan(15);
    await eventually(
      async () => {
        const s = await t.stats(topic);
        return s.depth === 0 && s.inFlight === 0;
      },
      { timeoutMs: 10_000, what: 'an empty queue' },
    );
    // The one stats shape: what SQS does not know is null, this process's figures are extras.
    expect(await t.stats(topic)).toMatchObject({
      delayed: 0,
      deadLettered: 0,
      lag: null,
      oldestAgeMs: null,
      extras: { consumers: 1 },
    });
    // A second settle is the kit's ALREADY_SETTLED, on SQS as everywhere, and touches nothing.
    await expect(inbox.deliveries[0]!.ack()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    await expect(inbox.deliveries[1]!.release()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
  });

  it('dead-letters body and headers with the failure metadata to <topic>-dlq, then removes the original', async () => {
    const topic = uniqueTopic('dlq');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'billing'), inbox.push);
    const env = envelope({ order: 42 }, { headers: { tenant: 'acme' } });
    await publish(t, topic, [t.encode(env)]);
    await inbox.waitFor(1);
    const original = inbox.deliveries[0]!;
    await original.deadLetter({
      [ControlHeader.reason]: 'max-attempts',
      [ControlHeader.error]: 'payment provider says no',
      [ControlHeader.attempts]: '3',
      [ControlHeader.firstFailureAt]: '1700000000000',
      [ControlHeader.lastFailureAt]: '1700000001000',
      [ControlHeader.originalTopic]: topic,
      [ControlHeader.originalGroup]: 'billing',
      [ControlHeader.deadLetteredAt]: '1700000001000',
    });
    const url = await queueUrl(queueNames(topic, false).deadLetter);
    const res = await raw.send(
      new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 5, MessageAttributeNames: ['All'] }),
    );
    const [dead] = res.Messages ?? [];
    expect(dead?.Body).toBe(Buffer.from(original.wire.body).toString('utf8'));
    const headers = attributesToHeaders(dead!.MessageAttributes);
    expect(headers.tenant).toBe('acme');
    expect(readDeadLetterInfo(headers)).toMatchObject({
      reason: 'max-attempts',
      error: 'payment provider says no',
      attempts: 3,
      originalTopic: topic,
      originalGroup: 'billing',
      firstFailureAt: 1700000000000,
    });
    expect(t.decode({ body: Buffer.from(dead!.Body!), headers }).id).toBe(env.id);
    await eventually(
      async () => {
        const s = await t.stats(topic);
        return s.depth === 0 && s.inFlight === 0 && s.deadLettered === 0;
      },
      { timeoutMs: 10_000, what: 'the original gone (and the dead letter received)' },
    );
  });

  it('retryLater on a standard queue: a delayed copy with the new control headers, not before its delay', async () => {
    const topic = uniqueTopic('retry');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(t, topic, [t.encode(envelope({ n: 1 }, { headers: { tenant: 'acme' } }))]);
    await inbox.waitFor(1);
    const first = inbox.deliveries[0]!;
    expect(first.previousAttempts).toBe(0);
    expect(first.redelivered).toBe(false);
    const requested = 1500;
    const handedOffAt = Date.now();
    await first.retryLater(requested, {
      [ControlHeader.attempts]: '2',
      [ControlHeader.firstFailureAt]: '1700000000000',
      [ControlHeader.lastError]: 'flaky',
    });
    await inbox.waitFor(2, 15_000);
    const second = inbox.deliveries[1]!;
    expect(inbox.arrivedAt[1]! - handedOffAt).toBeGreaterThanOrEqual(requested);
    expect(second.previousAttempts).toBe(2);
    expect(second.redelivered).toBe(true);
    expect(second.wire.headers[ControlHeader.firstFailureAt]).toBe('1700000000000');
    expect(second.wire.headers[ControlHeader.lastError]).toBe('flaky');
    expect(t.decode(second.wire).headers).toEqual({ tenant: 'acme' });
    await second.ack();
  });

  it('release gives the message back at once without consuming an attempt', async () => {
    const topic = uniqueTopic('release');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(t, topic, [t.encode(envelope({ n: 1 }))]);
    await inbox.waitFor(1);
    await inbox.deliveries[0]!.release();
    await inbox.waitFor(2, 10_000);
    const again = inbox.deliveries[1]!;
    expect(again.redelivered).toBe(true);
    expect(again.previousAttempts).toBe(0);
    await again.ack();
  });

  it('without an attempts header, previousAttempts falls back to the receive count', async () => {
    const topic = uniqueTopic('recvcount');
    const t = await transport({ visibilityTimeoutSeconds: 5 });
    await t.provision(topic, []);
    const url = await queueUrl(queueNames(topic, false).main);
    await publish(t, topic, [t.encode(envelope({ n: 1 }))]);
    // A consumer that crashed: received, never settled, lease left to lapse.
    await eventually(
      async () =>
        ((
          await raw.send(
            new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 1, WaitTimeSeconds: 1 }),
          )
        ).Messages?.length ?? 0) > 0,
      { timeoutMs: 10_000, what: 'a first receive' },
    );
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await inbox.waitFor(1, 15_000);
    expect(inbox.deliveries[0]!.previousAttempts).toBe(1);
    expect(inbox.deliveries[0]!.redelivered).toBe(true);
    await inbox.deliveries[0]!.ack();
  });

  it('a message whose due-at is ahead goes round again unseen and is delivered only when due', async () => {
    const topic = uniqueTopic('dueat');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    const dueAt = Date.now() + 2500;
    const wire = t.encode(envelope({ n: 1 }));
    const input: SendMessageCommandInput = {
      QueueUrl: await queueUrl(queueNames(topic, false).main),
      MessageBody: Buffer.from(wire.body).toString('utf8'),
      MessageAttributes: headersToAttributes({
        [ControlHeader.dueAt]: String(dueAt),
        [ControlHeader.attempts]: '1',
      }),
    };
    await raw.send(new SendMessageCommand(input));
    await inbox.waitFor(1, 15_000);
    expect(inbox.arrivedAt[0]!).toBeGreaterThanOrEqual(dueAt);
    expect(inbox.deliveries[0]!.previousAttempts).toBe(1);
    await inbox.deliveries[0]!.ack();
  });

  it('recreates a queue that vanished under a running subscription (an emulator restarted without storage)', async () => {
    const topic = uniqueTopic('vanish');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(t, topic, [t.encode(envelope({ n: 1 }))]);
    await inbox.waitFor(1);
    await inbox.deliveries[0]!.ack();
    await raw.send(new DeleteQueueCommand({ QueueUrl: await queueUrl(queueNames(topic, false).main) }));
    await publish(t, topic, [t.encode(envelope({ n: 2 }))]);
    await inbox.waitFor(2, 30_000);
    expect(inbox.data(1)).toEqual({ n: 2 });
    await inbox.deliveries[1]!.ack();
  });

  it('keeps the lease of a slow delivery alive (heartbeat), so it is not delivered twice', async () => {
    const topic = uniqueTopic('lease');
    const t = await transport({ visibilityTimeoutSeconds: 5 });
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(t, topic, [t.encode(envelope({ n: 1 }))]);
    await inbox.waitFor(1);
    // Hold it for well over its 5 s visibility timeout.
    const heldUntil = Date.now() + 9000;
    await eventually(async () => Date.now() > heldUntil && (await t.stats(topic)).inFlight === 1, {
      timeoutMs: 15_000,
      intervalMs: 250,
      what: '9 s with the message still in flight',
    });
    expect(inbox.deliveries).toHaveLength(1);
    await inbox.deliveries[0]!.ack();
  });
});

describe('FIFO topics on ElasticMQ', () => {
  beforeAll(requireBroker);
  afterEach(closeAll);

  it('keeps per-key order across keys, with a delayed retry in the middle of one key', async () => {
    const topic = uniqueTopic('order');
    const KEYS = 5;
    const PER_KEY = 12;
    const t = await transport({ fifoTopics: [topic], pollers: 2 });
    const handled = new Map<string, number[]>();
    let retried = false;
    let retryAt = 0;
    let retriedSeenAt = 0;
    const onDelivery = (d: Delivery) => {
      const env = t.decode(d.wire);
      const { seq } = JSON.parse(Buffer.from(env.data).toString('utf8')) as { seq: number };
      const key = env.key!;
      void (async () => {
        await new Promise((r) => setTimeout(r, Math.random() * 10));
        if (key === 'key-2' && seq === 3 && !retried) {
          retried = true;
          retryAt = Date.now();
          await d.retryLater(1200, { [ControlHeader.attempts]: '1' });
          return;
        }
        if (key === 'key-2' && seq === 3) {
          retriedSeenAt = Date.now();
          expect(d.previousAttempts).toBe(1);
        }
        handled.set(key, [...(handled.get(key) ?? []), seq]);
        await d.ack();
      })();
    };
    await t.subscribe(spec(topic, 'g', { maxInFlight: 16 }), onDelivery);
    for (let seq = 0; seq < PER_KEY; seq++) {
      await Promise.all(
        Array.from({ length: KEYS }, (_, k) =>
          publish(t, topic, [t.encode(envelope({ seq }, { key: `key-${k}` }))]),
        ),
      );
    }
    await eventually(() => [...handled.values()].reduce((n, s) => n + s.length, 0) === KEYS * PER_KEY, {
      timeoutMs: 45_000,
      what: 'every message handled',
    });
    for (let k = 0; k < KEYS; k++) {
      expect(handled.get(`key-${k}`), `key-${k}`).toEqual(Array.from({ length: PER_KEY }, (_, i) => i));
    }
    expect(retried).toBe(true);
    expect(retriedSeenAt - retryAt).toBeGreaterThanOrEqual(1200);
  });

  it('dead-letters into the FIFO dead-letter queue with the message group kept', async () => {
    const topic = uniqueTopic('fifodlq');
    const t = await transport({ fifoTopics: [topic] });
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    await publish(t, topic, [t.encode(envelope({ n: 1 }, { key: 'k-9' }))]);
    await inbox.waitFor(1);
    await inbox.deliveries[0]!.deadLetter({ [ControlHeader.reason]: 'validation' });
    const res = await raw.send(
      new ReceiveMessageCommand({
        QueueUrl: await queueUrl(queueNames(topic, true).deadLetter),
        WaitTimeSeconds: 5,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['MessageGroupId'],
      }),
    );
    const [dead] = res.Messages ?? [];
    expect(dead?.Attributes?.MessageGroupId).toBe('k-9');
    expect(attributesToHeaders(dead!.MessageAttributes)[ControlHeader.reason]).toBe('validation');
  });
});
