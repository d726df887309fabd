/** Publishing: batching into SendMessageBatch, size limits, FIFO keys, the wire form and decoding garbage. */
import {
  GetQueueUrlCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { DecodeError, ErrorCode, PublishError, wireSize } from '@omnibus/core';
import { eventually } from '@omnibus/core/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PACKED_HEADERS_ATTRIBUTE, queueNames, type SqsTransport } from '../src/index.js';
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

/** Counts the SDK commands a transport sends, by name, and the entries of each batch. */
function countCommands(t: SqsTransport): { calls: Map<string, number>; batchSizes: number[] } {
  const calls = new Map<string, number>();
  const batchSizes: number[] = [];
  t.sdkClient.middlewareStack.add(
    (next, context) => async (args) => {
      const name = String(context.commandName);
      calls.set(name, (calls.get(name) ?? 0) + 1);
      const entries = (args.input as { Entries?: unknown[] }).Entries;
      if (name === 'SendMessageBatchCommand' && entries) batchSizes.push(entries.length);
      return next(args);
    },
    { step: 'initialize', name: 'omnibusTestCounter' },
  );
  return { calls, batchSizes };
}

async function receiveAll(queueName: string, count: number): Promise<Message[]> {
  const { QueueUrl } = await raw.send(new GetQueueUrlCommand({ QueueName: queueName }));
  const got: Message[] = [];
  await eventually(
    async () => {
      const res = await raw.send(
        new ReceiveMessageCommand({
          QueueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['All'],
        }),
      );
      got.push(...(res.Messages ?? []));
      return got.length >= count;
    },
    { timeoutMs: 20_000, what: `${count} messages in ${queueName}` },
  );
  return got;
}

describe('publishing to ElasticMQ', () => {
  beforeAll(requireBroker);
  afterEach(closeAll);

  it('coalesces concurrent publishes into few SendMessageBatch calls, and every message arrives', async () => {
    const topic = uniqueTopic('batch');
    const t = await transport({ batchLingerMs: 10 });
    await t.provision(topic, []);
    const { calls, batchSizes } = countCommands(t);
    const envs = Array.from({ length: 95 }, (_, i) => envelope({ i }));
    await Promise.all(envs.map((e) => publish(t, topic, [t.encode(e)])));
    const batches = calls.get('SendMessageBatchCommand') ?? 0;
    expect(calls.get('SendMessageCommand') ?? 0).toBe(0);
    // 95 messages need at least 10 calls of 10; a coalescing producer needs not many more.
    expect(batches).toBeGreaterThanOrEqual(10);
    expect(batches).toBeLessThanOrEqual(20);
    expect(Math.max(...batchSizes)).toBe(10);
    const got = await receiveAll(queueNames(topic, false).main, 95);
    const ids = new Set(got.map((m) => (JSON.parse(m.Body!) as { id: string }).id));
    expect(ids).toEqual(new Set(envs.map((e) => e.id)));
  });

  it('writes a CloudEvents structured body and headers as message attributes', async () => {
    const topic = uniqueTopic('wire');
    const t = await transport();
    const env = envelope({ ok: true }, { headers: { tenant: 'acme', 'x-request-id': 'r-1' }, key: 'k-1' });
    await publish(t, topic, [t.encode(env)]);
    const [m] = await receiveAll(queueNames(topic, false).main, 1);
    const body = JSON.parse(m!.Body!) as Record<string, unknown>;
    expect(body).toMatchObject({
      specversion: '1.0',
      id: env.id,
      type: env.type,
      data: { ok: true },
      partitionkey: 'k-1',
    });
    expect(m!.MessageAttributes?.tenant?.StringValue).toBe('acme');
    expect(m!.MessageAttributes?.['x-request-id']?.StringValue).toBe('r-1');
  });

  it('packs more than 10 headers, or names SQS refuses, into one attribute and unpacks them on delivery', async () => {
    const topic = uniqueTopic('packed');
    const t = await transport();
    const headers: Record<string, string> = { 'AWS.reserved': 'x', empty: '' };
    for (let i = 0; i < 12; i++) headers[`h${i}`] = `v${i}`;
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    const env = envelope({ n: 1 }, { headers });
    await publish(t, topic, [t.encode(env)]);
    await inbox.waitFor(1);
    const d = inbox.deliveries[0]!;
    expect(Object.keys(d.wire.headers)).not.toContain(PACKED_HEADERS_ATTRIBUTE);
    expect(t.decode(d.wire).headers).toEqual(headers);
    await d.ack();
  });

  it('rejects a message larger than the queue allows with TOO_LARGE, counting attributes too', async () => {
    const topic = uniqueTopic('large');
    const t = await transport();
    await t.provision(topic, []);
    const limit = t.capabilities.maxMessageBytes;
    const big = envelope(null, { contentType: 'application/octet-stream', data: Buffer.alloc(limit, 1) });
    const wire = t.encode(big);
    // Bytes travel as base64 inside the body, so the core's own size check sees the growth too.
    expect(wireSize(wire)).toBeGreaterThan(limit);
    const err = await publish(t, topic, [wire]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishError);
    expect((err as PublishError).code).toBe(ErrorCode.TOO_LARGE);

    // Body just under the limit, pushed over by its headers.
    const probe = t.encode(envelope(''));
    const text = 'a'.repeat(limit - probe.body.byteLength - 200);
    await publish(t, topic, [t.encode(envelope(text))]);
    const withHeaders = envelope(text, { headers: { pad: 'p'.repeat(400) } });
    await expect(publish(t, topic, [t.encode(withHeaders)])).rejects.toMatchObject({
      code: ErrorCode.TOO_LARGE,
    });
  });

  it('a FIFO publish without a key is refused (UNROUTABLE); with keys it uses MessageGroupId and the envelope id', async () => {
    const topic = uniqueTopic('fifokey');
    const t = await transport({ fifoTopics: [topic] });
    await expect(publish(t, topic, [t.encode(envelope({ n: 0 }))])).rejects.toMatchObject({
      code: ErrorCode.UNROUTABLE,
    });
    const env = envelope({ n: 1 }, { key: 'customer 7 ü' });
    await publish(t, topic, [t.encode(env)]);
    // The same envelope again within 5 minutes is deduplicated by SQS.
    await publish(t, topic, [t.encode(env)]);
    const got = await receiveAll(queueNames(topic, true).main, 1);
    expect(got).toHaveLength(1);
    expect(got[0]!.Attributes?.MessageDeduplicationId).toBe(env.id);
    expect(got[0]!.Attributes?.MessageGroupId).toMatch(/^sha256-[0-9a-f]{64}$/);
  });

  it('a garbage body is delivered, and decode throws DecodeError', async () => {
    const topic = uniqueTopic('garbage');
    const t = await transport();
    const inbox = new Inbox(t);
    await t.subscribe(spec(topic, 'g'), inbox.push);
    const { QueueUrl } = await raw.send(new GetQueueUrlCommand({ QueueName: queueNames(topic, false).main }));
    await raw.send(new SendMessageCommand({ QueueUrl, MessageBody: 'not { json' }));
    await raw.send(
      new SendMessageCommand({
        QueueUrl,
        MessageBody: '{"specversion":"0.3"}',
        MessageAttributes: {
          [PACKED_HEADERS_ATTRIBUTE]: { DataType: 'String', StringValue: '[not an object' },
        },
      }),
    );
    await inbox.waitFor(2);
    for (const d of inbox.deliveries) {
      expect(() => t.decode(d.wire)).toThrow(DecodeError);
      expect(d.previousAttempts).toBe(0);
      await d.ack();
    }
    const packed = inbox.deliveries.find((d) => d.wire.headers[PACKED_HEADERS_ATTRIBUTE] !== undefined);
    expect(packed?.wire.headers[PACKED_HEADERS_ATTRIBUTE]).toBe('[not an object');
  });

  it('a batch entry SQS refuses rejects only its own publish; the rest of the batch arrives', async () => {
    const topic = uniqueTopic('partial');
    const t = await transport({ batchLingerMs: 20 });
    await t.provision(topic, []);
    const { batchSizes } = countCommands(t);
    const good = Array.from({ length: 4 }, (_, i) => envelope({ i }));
    // A NUL character is not allowed in an SQS body: SQS fails this one entry of the batch.
    const bad = { body: Buffer.from('{"bad":"\u0000"}'), headers: {} };
    const results = await Promise.allSettled([
      ...good.slice(0, 2).map((e) => publish(t, topic, [t.encode(e)])),
      publish(t, topic, [bad]),
      ...good.slice(2).map((e) => publish(t, topic, [t.encode(e)])),
    ]);
    expect(batchSizes).toEqual([5]);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({
      code: ErrorCode.PUBLISH_FAILED,
      retryable: false,
    });
    const got = await receiveAll(queueNames(topic, false).main, 4);
    expect(new Set(got.map((m) => (JSON.parse(m.Body!) as { id: string }).id))).toEqual(
      new Set(good.map((e) => e.id)),
    );
  });

  it('a publish after close is refused with CLOSED', async () => {
    const t = await transport();
    await t.close();
    await expect(publish(t, uniqueTopic('closed'), [t.encode(envelope({}))])).rejects.toMatchObject({
      code: ErrorCode.CLOSED,
    });
  });
});
