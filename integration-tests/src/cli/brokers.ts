/**
 * The brokers the CLI and console tests run against: the URL a user would pass, a transport for the test's
 * own consumer, and the cleanup of what a test topic left behind.
 */
import { DeleteQueueCommand, GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import type { Transport } from '@omnibus/core';
import { transportFromUrl as kafkaFromUrl } from '@omnibus/kafka';
import { transportFromUrl as natsFromUrl, names as natsNames } from '@omnibus/nats';
import { transportFromUrl as rabbitFromUrl, names as rabbitNames } from '@omnibus/rabbitmq';
import { transportFromUrl as sqsFromUrl } from '@omnibus/sqs';
import { connect as amqpConnect } from 'amqplib';
import { Kafka, logLevel } from 'kafkajs';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const SQS_URL = 'sqs+http://omnibus:omnibus@127.0.0.1:9324';
export const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
export const KAFKA_URL = `kafka://${KAFKA_BROKERS.join(',')}`;
const NATS_SERVER = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
export const NATS_URL = `nats://${NATS_SERVER}`;

export interface OpsBroker {
  name: string;
  url: string;
  create(): Transport;
  /** Deletes what a topic and group left on the broker. */
  cleanup(topic: string, group: string): Promise<void>;
}

export const OPS_BROKERS: OpsBroker[] = [
  {
    name: 'rabbitmq',
    url: AMQP_URL,
    create: () => rabbitFromUrl(AMQP_URL),
    async cleanup(topic, group) {
      const conn = await amqpConnect(AMQP_URL);
      try {
        const ch = await conn.createChannel();
        // The delay tiers are shared by the vhost (omnibus.delay.*): other runs may be using them.
        const queues = [rabbitNames.groupQueue(topic, group), rabbitNames.deadLetterQueue(topic, group)];
        for (const q of queues) await ch.deleteQueue(q);
        await ch.deleteExchange(rabbitNames.exchange(topic));
        await ch.close();
      } finally {
        await conn.close();
      }
    },
  },
  {
    name: 'sqs',
    url: SQS_URL,
    create: () => sqsFromUrl(SQS_URL, { region: 'us-east-1' }),
    async cleanup(topic) {
      const client = new SQSClient({
        endpoint: 'http://127.0.0.1:9324',
        region: 'us-east-1',
        credentials: { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' },
      });
      for (const name of [topic, `${topic}-dlq`]) {
        try {
          const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: name }));
          await client.send(new DeleteQueueCommand({ QueueUrl }));
        } catch {
          // never created
        }
      }
      client.destroy();
    },
  },
  {
    name: 'kafka',
    url: KAFKA_URL,
    create: () => kafkaFromUrl(KAFKA_URL),
    async cleanup(topic) {
      const admin = new Kafka({ brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      try {
        const existing = await admin.listTopics();
        const mine = existing.filter((t) => t === topic || t.startsWith(`${topic}.`));
        if (mine.length > 0) await admin.deleteTopics({ topics: mine });
        const groups = (await admin.listGroups()).groups
          .map((g) => g.groupId)
          .filter((g) => g.startsWith(`${topic}.`));
        if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {});
      } finally {
        await admin.disconnect();
      }
    },
  },
  {
    name: 'nats',
    url: NATS_URL,
    create: () => natsFromUrl(NATS_URL),
    async cleanup(topic) {
      const nc = await natsConnect({ servers: [NATS_SERVER] });
      try {
        const jsm = await jetstreamManager(nc);
        for (const s of [natsNames.stream(topic), natsNames.deadLetterStream(topic)])
          await jsm.streams.delete(s).catch(() => false);
      } finally {
        await nc.close();
      }
    },
  },
];
