/**
 * Reading a scenario's dead letters back with each broker's own client (never through Omnibus, whose
 * dead-lettering is what is being checked), and removing what a scenario created on the broker.
 */
import { CHAOS_HOST_ADDR, RABBITMQ_PASSWORD_ENV, RABBITMQ_USER, type TransportName } from './brokers.js';

const KAFKA_BROKER = `${CHAOS_HOST_ADDR}:9492`;
const SQS_ENDPOINT = `http://${CHAOS_HOST_ADDR}:9334`;
const NATS_SERVER = '127.0.0.1:4223';

/** The envelope ids in the dead-letter destination of topic/group. */
export async function readDeadLetterIds(
  name: TransportName,
  topic: string,
  group: string,
): Promise<string[]> {
  switch (name) {
    case 'rabbitmq':
      return rabbitDeadLetters(topic, group);
    case 'kafka':
      return kafkaDeadLetters(topic, group);
    case 'sqs':
      return sqsDeadLetters(topic);
    case 'nats':
      return natsDeadLetters(topic, group);
  }
}

/** Deletes the queues, topics or streams of topic/group (best effort: a leftover is only clutter). */
export async function cleanup(name: TransportName, topic: string, group: string): Promise<void> {
  switch (name) {
    case 'rabbitmq':
      return rabbitCleanup(topic, group);
    case 'kafka':
      return kafkaCleanup(topic, group);
    case 'sqs':
      return sqsCleanup(topic);
    case 'nats':
      return natsCleanup(topic);
  }
}

// ---- RabbitMQ ---------------------------------------------------------------------------------------

async function rabbitChannel() {
  const amqp = await import('amqplib');
  const password = process.env[RABBITMQ_PASSWORD_ENV] ?? '';
  const conn = await amqp.connect(`amqp://${RABBITMQ_USER}:${encodeURIComponent(password)}@127.0.0.1:5673`);
  conn.on('error', () => {});
  const ch = await conn.createChannel();
  ch.on('error', () => {});
  return { conn, ch };
}

async function rabbitDeadLetters(topic: string, group: string): Promise<string[]> {
  const { names } = await import('@omnibus/rabbitmq');
  const { conn, ch } = await rabbitChannel();
  try {
    const ids: string[] = [];
    const queue = names.deadLetterQueue(topic, group);
    // A queue that was never declared means no dead letters (checkQueue fails and closes the channel).
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (msg === false) break;
      const id = msg.properties.messageId as string | undefined;
      if (id) ids.push(id);
    }
    return ids;
  } finally {
    await conn.close().catch(() => {});
  }
}

async function rabbitCleanup(topic: string, group: string): Promise<void> {
  const { names } = await import('@omnibus/rabbitmq');
  const { conn, ch } = await rabbitChannel();
  try {
    // The delay tiers are shared by the vhost (omnibus.delay.*), not the group's: they stay.
    const queues = [names.groupQueue(topic, group), names.deadLetterQueue(topic, group)];
    for (const q of queues) await ch.deleteQueue(q).catch(() => {});
    await ch.deleteExchange(names.exchange(topic)).catch(() => {});
  } finally {
    await conn.close().catch(() => {});
  }
}

// ---- Kafka ------------------------------------------------------------------------------------------

async function kafkaClient() {
  const { Kafka, logLevel } = await import('kafkajs');
  return new Kafka({
    clientId: 'omnibus-chaos-checker',
    brokers: [KAFKA_BROKER],
    logLevel: logLevel.NOTHING,
  });
}

/** Every record of the dead-letter topic, read from the beginning up to the high watermarks of now. */
async function kafkaDeadLetters(topic: string, group: string): Promise<string[]> {
  const { deadLetterTopic } = await import('@omnibus/kafka');
  const dlq = deadLetterTopic(topic, group);
  const kafka = await kafkaClient();
  const admin = kafka.admin();
  await admin.connect();
  let total = 0;
  try {
    const existing = await admin.listTopics();
    if (!existing.includes(dlq)) return [];
    const offsets = await admin.fetchTopicOffsets(dlq);
    for (const o of offsets) total += Number(o.high) - Number(o.low);
  } finally {
    await admin.disconnect();
  }
  if (total === 0) return [];
  const ids: string[] = [];
  const consumer = kafka.consumer({ groupId: `omnibus-chaos-dlq-${Date.now()}`, maxWaitTimeInMs: 250 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [dlq], fromBeginning: true });
    let seen = 0;
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen++;
          const id = message.headers?.ce_id;
          if (id !== undefined) ids.push(String(Array.isArray(id) ? id[0] : id));
          if (seen >= total) resolve();
        },
      });
    });
    const timeout = new Promise<void>((_, reject) =>
      setTimeout(
        () => reject(new Error(`read ${seen} of ${total} dead letters within 60 s`)),
        60_000,
      ).unref(),
    );
    await Promise.race([done, timeout]);
  } finally {
    await consumer.disconnect();
  }
  return ids;
}

async function kafkaCleanup(topic: string, group: string): Promise<void> {
  const kafka = await kafkaClient();
  const admin = kafka.admin();
  await admin.connect();
  try {
    const mine = (await admin.listTopics()).filter((t) => t === topic || t.startsWith(`${topic}.${group}.`));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine });
  } finally {
    await admin.disconnect();
  }
}

// ---- SQS (ElasticMQ) ----------------------------------------------------------------------------------

async function sqsClient() {
  const { SQSClient } = await import('@aws-sdk/client-sqs');
  return new SQSClient({
    endpoint: SQS_ENDPOINT,
    region: 'us-east-1',
    credentials: { accessKeyId: 'chaos', secretAccessKey: 'chaos' },
  });
}

/** Receives the dead-letter queue dry (hiding what it read for 5 minutes, so nothing comes twice). */
async function sqsDeadLetters(topic: string): Promise<string[]> {
  const { queueNames } = await import('@omnibus/sqs');
  const { GetQueueUrlCommand, ReceiveMessageCommand } = await import('@aws-sdk/client-sqs');
  const client = await sqsClient();
  try {
    const url = await client
      .send(new GetQueueUrlCommand({ QueueName: queueNames(topic, false).deadLetter }))
      .then((r) => r.QueueUrl)
      .catch(() => undefined);
    if (!url) return [];
    const ids: string[] = [];
    for (let empty = 0; empty < 2; ) {
      const got = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          VisibilityTimeout: 300,
        }),
      );
      const messages = got.Messages ?? [];
      if (messages.length === 0) empty++;
      for (const m of messages) {
        const id = (JSON.parse(m.Body ?? '{}') as { id?: string }).id;
        if (id) ids.push(id);
      }
    }
    return ids;
  } finally {
    client.destroy();
  }
}

async function sqsCleanup(topic: string): Promise<void> {
  const { queueNames } = await import('@omnibus/sqs');
  const { DeleteQueueCommand, GetQueueUrlCommand } = await import('@aws-sdk/client-sqs');
  const client = await sqsClient();
  try {
    const n = queueNames(topic, false);
    for (const name of [n.main, n.deadLetter]) {
      const url = await client
        .send(new GetQueueUrlCommand({ QueueName: name }))
        .then((r) => r.QueueUrl)
        .catch(() => undefined);
      if (url) await client.send(new DeleteQueueCommand({ QueueUrl: url }));
    }
  } finally {
    client.destroy();
  }
}

// ---- NATS JetStream ---------------------------------------------------------------------------------

async function natsConnection() {
  const { connect } = await import('@nats-io/transport-node');
  return connect({ servers: [NATS_SERVER] });
}

async function natsDeadLetters(topic: string, group: string): Promise<string[]> {
  const { names } = await import('@omnibus/nats');
  const { jetstream, jetstreamManager, DeliverPolicy } = await import('@nats-io/jetstream');
  const nc = await natsConnection();
  try {
    const jsm = await jetstreamManager(nc);
    const stream = names.deadLetterStream(topic);
    const info = await jsm.streams.info(stream).catch(() => undefined);
    if (!info) return [];
    const total = info.state.messages;
    const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
    const subject = names.deadLetterSubject(topic, group);
    const ids: string[] = [];
    let seen = 0;
    const deadline = Date.now() + 60_000;
    while (seen < total && Date.now() < deadline) {
      const batch = await consumer.fetch({ max_messages: Math.min(500, total - seen), expires: 1_000 });
      for await (const m of batch) {
        seen++;
        if (m.subject !== subject) continue;
        const id = m.headers?.get('ce_id');
        if (id) ids.push(id);
      }
    }
    if (seen < total) throw new Error(`read ${seen} of ${total} dead letters within 60 s`);
    return ids;
  } finally {
    await nc.close();
  }
}

async function natsCleanup(topic: string): Promise<void> {
  const { names } = await import('@omnibus/nats');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await natsConnection();
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of [names.stream(topic), names.deadLetterStream(topic)]) {
      await jsm.streams.delete(stream).catch(() => false);
    }
  } finally {
    await nc.close();
  }
}
