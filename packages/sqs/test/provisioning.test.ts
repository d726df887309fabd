/** Queue naming, creation (standard and FIFO, with dead-letter queue and redrive), options and URLs. */
import { GetQueueAttributesCommand, GetQueueUrlCommand, ListQueueTagsCommand } from '@aws-sdk/client-sqs';
import { ConfigError, ConnectionError, UnsupportedError } from '@omnibus/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GROUP_TAG, optionsFromUrl, queueNames, SqsTransport, sqs, transportFromUrl } from '../src/index.js';
import {
  CREDENTIALS,
  closeAll,
  ENDPOINT,
  REGION,
  raw,
  requireBroker,
  spec,
  transport,
  uniqueTopic,
} from './helpers.js';

async function attributesOf(name: string): Promise<Record<string, string>> {
  const { QueueUrl } = await raw.send(new GetQueueUrlCommand({ QueueName: name }));
  const res = await raw.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['All'] }));
  return res.Attributes ?? {};
}

describe('queue names', () => {
  it('maps characters SQS refuses to underscores and derives the dead-letter queue', () => {
    expect(queueNames('orders.eu', false)).toEqual({
      main: 'orders_eu',
      deadLetter: 'orders_eu-dlq',
      fifo: false,
    });
    expect(queueNames('orders.eu', true)).toEqual({
      main: 'orders_eu.fifo',
      deadLetter: 'orders_eu-dlq.fifo',
      fifo: true,
    });
    expect(queueNames('a b/c:d', false).main).toBe('a_b_c_d');
  });

  it('rejects a topic whose queues cannot fit 80 characters, counting -dlq and .fifo', () => {
    expect(queueNames('x'.repeat(76), false).deadLetter).toHaveLength(80);
    expect(() => queueNames('x'.repeat(77), false)).toThrow(ConfigError);
    expect(queueNames('x'.repeat(71), true).deadLetter).toHaveLength(80);
    expect(() => queueNames('x'.repeat(72), true)).toThrow(/at most 71/);
    expect(() => queueNames('', false)).toThrow(ConfigError);
  });
});

describe('options and URLs', () => {
  it('names the bad option in the ConfigError', () => {
    expect(() => sqs({ waitTimeSeconds: 25 })).toThrow(ConfigError);
    expect(() => sqs({ waitTimeSeconds: 25 })).toThrow(/waitTimeSeconds/);
    expect(() => sqs({ provision: 'maybe' as 'create' })).toThrow(/provision/);
    expect(() => sqs({ credentials: { accessKeyId: '', secretAccessKey: 'x' } })).toThrow(
      /credentials\.accessKeyId/,
    );
    expect(() => sqs({ pollerz: 2 } as never)).toThrow(ConfigError);
  });

  it('reads sqs:// and sqs+http:// URLs; explicit options win', () => {
    expect(optionsFromUrl('sqs://eu-west-1')).toEqual({ region: 'eu-west-1' });
    expect(optionsFromUrl('sqs://')).toEqual({});
    expect(
      optionsFromUrl('sqs+http://key:s%2Fecret@127.0.0.1:9324?region=us-east-1&pollers=3&fifoTopics=a,b', {
        pollers: 4,
      }),
    ).toEqual({
      endpoint: 'http://127.0.0.1:9324',
      region: 'us-east-1',
      credentials: { accessKeyId: 'key', secretAccessKey: 's/ecret' },
      pollers: 4,
      fifoTopics: ['a', 'b'],
    });
    expect(optionsFromUrl('sqs+https://sqs.local?fifoTopics=*').fifoTopics).toBe(true);
    expect(() => optionsFromUrl('amqp://x')).toThrow(ConfigError);
    expect(() => optionsFromUrl('sqs+http://h:1?colour=red')).toThrow(/url\.colour/);
  });

  it('keeps the secret out of a URL error', () => {
    try {
      optionsFromUrl('sqs+http://key:hunter2@h:1?pollers=x');
      expect.unreachable();
    } catch (err) {
      expect(String((err as Error).message)).not.toContain('hunter2');
    }
  });

  it('a misspelt option is a ConfigError naming it', () => {
    let err: unknown;
    try {
      sqs({ endpoint: ENDPOINT, visibilityTimeoutSecond: 30 } as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toMatch(/visibilityTimeoutSecond/);
    expect(() => transportFromUrl(`sqs+http://127.0.0.1:9324?conectTimeoutMs=5`)).toThrow(/conectTimeoutMs/);
  });

  it("refuses onNoSubscribers 'reject' with a ConfigError saying that a queue keeps messages", () => {
    expect(() => sqs({ endpoint: ENDPOINT, onNoSubscribers: 'reject' })).toThrow(ConfigError);
    expect(() => sqs({ endpoint: ENDPOINT, onNoSubscribers: 'reject' })).toThrow(
      /onNoSubscribers.*queue keeps every message/,
    );
    expect(() => transportFromUrl('sqs+http://127.0.0.1:9324?onNoSubscribers=reject')).toThrow(ConfigError);
    expect(sqs({ endpoint: ENDPOINT, onNoSubscribers: 'accept' }).capabilities.rejectsUnroutable).toBe(false);
  });

  it('reads connectTimeoutMs and onNoSubscribers from the URL', () => {
    expect(optionsFromUrl('sqs+http://h:1?connectTimeoutMs=1500&onNoSubscribers=accept')).toMatchObject({
      connectTimeoutMs: 1500,
      onNoSubscribers: 'accept',
    });
    expect(() => optionsFromUrl('sqs+http://h:1?persistent=maybe')).toThrow(/persistent/);
  });

  it('claims group-wide ordering only when every topic is FIFO', () => {
    expect(sqs({ endpoint: ENDPOINT }).capabilities.ordering).toBe('process');
    expect(sqs({ endpoint: ENDPOINT, fifoTopics: ['orders'] }).capabilities.ordering).toBe('process');
    expect(sqs({ endpoint: ENDPOINT, fifoTopics: true }).capabilities.ordering).toBe('group');
  });
});

describe('provisioning on ElasticMQ', () => {
  beforeAll(requireBroker);
  afterEach(closeAll);

  it('a URL-built transport reaches the broker', async () => {
    const t = transportFromUrl(
      `sqs+http://${CREDENTIALS.accessKeyId}:${CREDENTIALS.secretAccessKey}@${new URL(ENDPOINT).host}?region=${REGION}`,
    );
    expect(t).toBeInstanceOf(SqsTransport);
    await t.connect({ logger: (await import('@omnibus/core')).silentLogger, service: 'x' });
    expect((await t.health()).ok).toBe(true);
    await t.close();
  });

  it('connect fails with ConnectionError on a closed port', async () => {
    const t = sqs({
      endpoint: 'http://127.0.0.1:1',
      region: REGION,
      credentials: CREDENTIALS,
      maxAttempts: 1,
    });
    await expect(
      t.connect({ logger: (await import('@omnibus/core')).silentLogger, service: 'x' }),
    ).rejects.toThrow(ConnectionError);
    expect((await t.health()).ok).toBe(false);
  });

  it('creates a sanitised standard queue with a dead-letter queue and a redrive safety net', async () => {
    const topic = `${uniqueTopic('names')}.eu`;
    const t = await transport({ maxReceiveCount: 40 });
    await t.provision(topic, [{ group: 'billing', patterns: ['#'] }]);
    const names = queueNames(topic, false);
    expect(names.main).toMatch(/_eu$/);
    const main = await attributesOf(names.main);
    const dlq = await attributesOf(names.deadLetter);
    const redrive = JSON.parse(main.RedrivePolicy!) as {
      deadLetterTargetArn: string;
      maxReceiveCount: unknown;
    };
    expect(redrive.deadLetterTargetArn).toBe(dlq.QueueArn);
    expect(Number(redrive.maxReceiveCount)).toBe(40);
    expect(main.FifoQueue ?? 'false').toBe('false');
    expect(t.capabilities.maxMessageBytes).toBe(Number(main.MaximumMessageSize ?? 262_144));
  });

  it('creates FIFO queues (and a FIFO dead-letter queue) for FIFO topics', async () => {
    const topic = uniqueTopic('fifo');
    const t = await transport({ fifoTopics: [topic] });
    await t.provision(topic, []);
    const names = queueNames(topic, true);
    expect(names.main.endsWith('.fifo')).toBe(true);
    expect((await attributesOf(names.main)).FifoQueue).toBe('true');
    expect((await attributesOf(names.deadLetter)).FifoQueue).toBe('true');
  });

  it('provision "verify" refuses a missing queue; "create" is idempotent', async () => {
    const topic = uniqueTopic('verify');
    const verifying = await transport({ provision: 'verify' });
    await expect(verifying.subscribe(spec(topic, 'g'), () => {})).rejects.toThrow(ConfigError);
    const creating = await transport();
    await creating.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    await creating.provision(topic, [{ group: 'g', patterns: ['#'] }]);
    const sub = await verifying.subscribe(spec(topic, 'g'), () => {});
    await sub.close();
  });

  it('one group per queue: the tag refuses a second group, even from another transport', async () => {
    const topic = uniqueTopic('group');
    const first = await transport();
    const sub = await first.subscribe(spec(topic, 'billing'), () => {});
    const { QueueUrl } = await raw.send(new GetQueueUrlCommand({ QueueName: queueNames(topic, false).main }));
    const tags = await raw.send(new ListQueueTagsCommand({ QueueUrl }));
    expect(tags.Tags?.[GROUP_TAG]).toBe('billing');

    const second = await transport();
    const refused = second.subscribe(spec(topic, 'shipping'), () => {});
    await expect(refused).rejects.toThrow(UnsupportedError);
    await expect(refused).rejects.toThrow(/belongs to consumer group "billing".*SNS/s);
    // The same group from another process is a competing consumer, which is fine.
    const again = await second.subscribe(spec(topic, 'billing'), () => {});
    await again.close();
    await sub.close();
    await expect(
      first.provision(topic, [
        { group: 'a', patterns: ['#'] },
        { group: 'b', patterns: ['#'] },
      ]),
    ).rejects.toThrow(UnsupportedError);
  });

  it('refuses replay and group-less subscriptions with UnsupportedError', async () => {
    const t = await transport();
    const topic = uniqueTopic('replay');
    await expect(t.subscribe({ ...spec(topic, 'g'), replay: 'earliest' }, () => {})).rejects.toThrow(
      UnsupportedError,
    );
    await expect(t.subscribe({ topic, patterns: ['#'], maxInFlight: 1 }, () => {})).rejects.toThrow(
      UnsupportedError,
    );
  });
});
