/**
 * SNS fan-out mode against fauxqs (SNS + SQS, AWS_ENDPOINT_URL or 127.0.0.1:4566): the filter policy a
 * group's patterns become, what SNS provisions, idempotence across transports, URL forms.
 */
import { randomBytes } from 'node:crypto';
import { ListSubscriptionsByTopicCommand, SNSClient } from '@aws-sdk/client-sns';
import {
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import {
  ConfigError,
  connect,
  type Delivery,
  defineMessage,
  matchesPattern,
  silentLogger,
} from '@omnibus/core';
import { noDeadline, PublishDeadline } from '@omnibus/core/kit';
import { eventually } from '@omnibus/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  filterPolicy,
  groupQueueKey,
  optionsFromUrl,
  queueNames,
  type SqsTransport,
  sqs,
  transportFromUrl,
} from '../src/index.js';
import { envelope, spec } from './helpers.js';

const ENDPOINT = process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566';
const cfg = {
  endpoint: ENDPOINT,
  region: 'us-east-1',
  credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
};
const rawSqs = new SQSClient(cfg);
const rawSns = new SNSClient(cfg);
const open: SqsTransport[] = [];

async function transport(): Promise<SqsTransport> {
  const t = sqs({ fanOut: 'sns', endpoint: ENDPOINT, waitTimeSeconds: 1 });
  await t.connect({ logger: silentLogger, service: 'sns-test' });
  open.push(t);
  return t;
}
const topicOf = (label: string) => `sns-test-${label}-${randomBytes(4).toString('hex')}`;

describe('filter policies from patterns', () => {
  it('exact types and literal `a.b.#` patterns become an exact policy; anything else none', () => {
    expect(JSON.parse(filterPolicy(['order.placed', 'order.shipped'])!)).toEqual({
      'omnibus-type': ['order.placed', 'order.shipped'],
    });
    expect(JSON.parse(filterPolicy(['order.#'])!)).toEqual({
      'omnibus-type': ['order', { prefix: 'order.' }],
    });
    // `*` is one word exactly; a prefix would also take `order.a.b`: no filter rather than a wrong one.
    expect(filterPolicy(['order.*'])).toBeUndefined();
    expect(filterPolicy(['#'])).toBeUndefined();
    expect(filterPolicy(['a.#.b'])).toBeUndefined();
    expect(filterPolicy(['x', '*.y'])).toBeUndefined();
    expect(filterPolicy([])).toBeUndefined();
  });

  it('a `a.b.#` policy matches exactly the types the pattern matches', () => {
    const types = ['order', 'order.placed', 'order.a.b', 'orders', 'orderx.y', 'other.order'];
    const policy = JSON.parse(filterPolicy(['order.#'])!)['omnibus-type'] as (string | { prefix: string })[];
    const snsMatches = (t: string) =>
      policy.some((v) => (typeof v === 'string' ? v === t : t.startsWith(v.prefix)));
    for (const t of types) expect(snsMatches(t)).toBe(matchesPattern('order.#', t));
  });

  it('group queue names fit SQS limits and stay distinct when shortened', () => {
    const long = 'x'.repeat(70);
    const a = groupQueueKey(long, 'group-a', true);
    const b = groupQueueKey(long, 'group-b', true);
    expect(a).not.toBe(b);
    expect(() => queueNames(a, true)).not.toThrow();
    expect(groupQueueKey('orders', 'billing', false)).toBe('orders--billing');
  });

  it('URL forms: sns://region and sns+http://host:port select the fan-out mode', () => {
    expect(optionsFromUrl('sns://eu-west-1')).toEqual({ fanOut: 'sns', region: 'eu-west-1' });
    expect(optionsFromUrl('sns+http://127.0.0.1:4566')).toEqual({
      fanOut: 'sns',
      endpoint: 'http://127.0.0.1:4566',
    });
    expect(optionsFromUrl('sqs://?fanOut=sns')).toEqual({ fanOut: 'sns' });
    expect(() => optionsFromUrl('snz://x')).toThrow(ConfigError);
    expect(() => sqs({ fanOut: 'fan' as never })).toThrow(ConfigError);
    expect(sqs({ fanOut: 'sns', endpoint: ENDPOINT }).capabilities.fanOut).toBe(true);
    expect(sqs({ endpoint: ENDPOINT }).capabilities.fanOut).toBe(false);
  });
});

describe('SNS mode on fauxqs', () => {
  beforeAll(async () => {
    await eventually(() => rawSqs.send(new ListQueuesCommand({ MaxResults: 1 })).then(() => true), {
      timeoutMs: 30_000,
      what: `fauxqs at ${ENDPOINT} (scripts/brokers/fauxqs.sh up)`,
    });
  });
  afterAll(async () => {
    await Promise.allSettled(open.splice(0).map((t) => t.close()));
  });

  it('provisions a raw-delivery subscription with the filter, a policy for the topic and a dead-letter queue, idempotently', async () => {
    const topic = topicOf('prov');
    const a = await transport();
    const b = await transport();
    await a.provision(topic, [{ group: 'billing', patterns: ['order.#'] }]);
    // A second process doing the same, and a second group with no expressible filter.
    await b.provision(topic, [
      { group: 'billing', patterns: ['order.#'] },
      { group: 'audit', patterns: ['*.placed'] },
    ]);
    const names = queueNames(groupQueueKey(topic, 'billing', false), false);
    const { QueueUrl } = await rawSqs.send(new GetQueueUrlCommand({ QueueName: names.main }));
    const attrs = (
      await rawSqs.send(
        new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['Policy', 'RedrivePolicy'] }),
      )
    ).Attributes!;
    const policy = JSON.parse(attrs.Policy!) as {
      Statement: { Principal: unknown; Condition: { ArnEquals: Record<string, string> } }[];
    };
    expect(policy.Statement).toHaveLength(1);
    expect(policy.Statement[0]!.Principal).toEqual({ Service: 'sns.amazonaws.com' });
    expect(JSON.parse(attrs.RedrivePolicy!).deadLetterTargetArn).toMatch(new RegExp(`${names.deadLetter}$`));
    const subs = await rawSns.send(
      new ListSubscriptionsByTopicCommand({
        TopicArn: policy.Statement[0]!.Condition.ArnEquals['aws:SourceArn'],
      }),
    );
    expect(subs.Subscriptions).toHaveLength(2);
  });

  it('two groups each get every message; a filtered group never sees other types', async () => {
    const topic = topicOf('fan');
    const t = await transport();
    const got: Record<string, string[]> = { billing: [], audit: [] };
    const take = (group: string) => (d: Delivery) => {
      got[group]!.push(t.decode(d.wire).type);
      void d.ack();
    };
    await t.subscribe(spec(topic, 'billing', { patterns: ['order.#'] }), take('billing'));
    await t.subscribe(spec(topic, 'audit', { patterns: ['#'] }), take('audit'));
    await t.publish(
      topic,
      [
        t.encode(envelope({ i: 1 }, { type: 'order.placed' })),
        t.encode(envelope({ i: 2 }, { type: 'user.created' })),
        t.encode(envelope({ i: 3 }, { type: 'order' })),
      ],
      noDeadline(),
    );
    await eventually(() => got.audit!.length === 3 && got.billing!.length === 2, {
      timeoutMs: 20_000,
      what: 'audit 3, billing 2',
    });
    expect(got.billing!.sort()).toEqual(['order', 'order.placed']);
    // And nothing else arrives for billing (the filter, not the core, kept user.created out).
    const { QueueUrl } = await rawSqs.send(
      new GetQueueUrlCommand({ QueueName: queueNames(groupQueueKey(topic, 'billing', false), false).main }),
    );
    const counts = await rawSqs.send(
      new GetQueueAttributesCommand({
        QueueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    expect(Number(counts.Attributes!.ApproximateNumberOfMessages)).toBe(0);
    const stats = await t.stats(topic, 'billing');
    expect(stats.depth).toBe(0);
  });

  it('a publish given up before it is sent is withdrawn (TIMEOUT, never delivered)', async () => {
    const topic = topicOf('withdraw');
    const t = await transport();
    const got: unknown[] = [];
    await t.subscribe(spec(topic, 'billing'), (d) => {
      got.push((JSON.parse(Buffer.from(t.decode(d.wire).data).toString('utf8')) as { i: number }).i);
      void d.ack();
    });
    const call = new PublishDeadline(Date.now() + 60_000);
    const first = t.publish(topic, [t.encode(envelope({ i: 1 }))], call);
    expect(call.abandon()).toBe('withdrawn');
    await expect(first).rejects.toMatchObject({ code: 'TIMEOUT', details: { outcome: 'not-sent' } });
    await t.publish(topic, [t.encode(envelope({ i: 2 }))], noDeadline());
    await eventually(() => got.includes(2), { timeoutMs: 20_000, what: 'the second message' });
    expect(got).toEqual([2]);
  });

  it('an sns+http:// URL builds the SNS mode: two groups of two buses each get the message', async () => {
    const topic = topicOf('url');
    const Ping = defineMessage({ type: 'ping.sent', schema: z.object({ n: z.number() }) });
    const url = `sns+http://${new URL(ENDPOINT).host}?waitTimeSeconds=1`;
    const seen: string[] = [];
    const buses = await Promise.all(
      ['a', 'b'].map((service) => connect({ transport: transportFromUrl(url), service })),
    );
    try {
      for (const [i, b] of buses.entries()) {
        await b.subscribe({
          topic,
          group: `g${i}`,
          handlers: { [Ping.type]: Ping.handle(() => void seen.push(`g${i}`)) },
        });
      }
      await buses[0]!.publish(topic, Ping, { n: 1 });
      await eventually(() => seen.length === 2, { timeoutMs: 20_000, what: 'both groups' });
      expect(seen.sort()).toEqual(['g0', 'g1']);
    } finally {
      await Promise.all(buses.map((b) => b.close({ drainTimeoutMs: 2000 })));
    }
  });
});
