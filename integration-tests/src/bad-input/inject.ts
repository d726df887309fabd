/**
 * Foreign producers for the bad-input catalogue: each broker's own client (amqplib, kafkajs, the AWS SDK,
 * the NATS client or a bare NATS socket, the memory broker object) writes exactly the bytes and headers a
 * case describes into the topic an Omnibus subscription consumes. Nothing here goes through Omnibus.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import {
  CreateTopicCommand,
  PublishCommand,
  SNSClient,
  type MessageAttributeValue as SnsAttribute,
} from '@aws-sdk/client-sns';
import {
  GetQueueUrlCommand,
  type MessageAttributeValue,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { jetstream } from '@nats-io/jetstream';
import { connect as natsConnect, headers as natsHeaders } from '@nats-io/transport-node';
import { memoryBroker } from '@omnibus/core';
import { names as natsNames } from '@omnibus/nats';
import { names as amqpNames } from '@omnibus/rabbitmq';
import { queueNames } from '@omnibus/sqs';
import { connect as amqpConnect } from 'amqplib';
import { Kafka, logLevel } from 'kafkajs';

/** What a foreign producer sends: bytes, headers (bytes where the broker carries bytes) and the routing type. */
export interface RawMessage {
  body: Buffer;
  headers: Record<string, string | Buffer>;
  /** The type the broker routes by (AMQP routing key, NATS subject, SNS filter attribute); absent: none. */
  routeType?: string | undefined;
}

export interface Injector {
  /** CloudEvents binary mode (attributes in headers) or structured mode (one JSON document as the body). */
  readonly structured: boolean;
  /** Header prefix of the binary-mode attributes. */
  readonly prefix: string;
  /** Header carrying the data content type in binary mode. */
  readonly contentTypeHeader: string;
  /** Sends one message; rejects with the broker's (or its client's) own error when it refuses it. */
  send(topic: string, message: RawMessage): Promise<void>;
  close(): Promise<void>;
}

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' };

/** Defines every header as an own property, `__proto__` included (a plain assignment would drop it). */
function own<T>(entries: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(entries)) {
    Object.defineProperty(out, k, {
      value: entries[k],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function memory(): Injector {
  return {
    structured: false,
    prefix: 'ce_',
    contentTypeHeader: 'ce_datacontenttype',
    async send(topic, m) {
      const headers: Record<string, string> = {};
      for (const k of Object.keys(m.headers)) {
        const v = m.headers[k]!;
        // The in-process broker carries JS strings: there are no header bytes to be invalid.
        if (typeof v !== 'string') throw new Error('prevented: memory headers are JS strings, not bytes');
        Object.defineProperty(headers, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      memoryBroker('conformance').publish(topic, { body: m.body, headers });
    },
    async close() {},
  };
}

async function rabbitmq(): Promise<Injector> {
  const conn = await amqpConnect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  conn.on('error', () => {});
  const ch = await conn.createConfirmChannel();
  ch.on('error', () => {});
  return {
    structured: false,
    prefix: 'cloudEvents_',
    contentTypeHeader: 'content-type',
    async send(topic, m) {
      const { 'content-type': contentType, ...rest } = own(m.headers);
      ch.publish(amqpNames.exchange(topic), m.routeType ?? '', m.body, {
        persistent: true,
        headers: own(rest),
        ...(contentType !== undefined ? { contentType: String(contentType) } : {}),
      });
      await ch.waitForConfirms();
    },
    async close() {
      await conn.close().catch(() => {});
    },
  };
}

async function kafka(): Promise<Injector> {
  const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim());
  const producer = new Kafka({ clientId: 'bad-input', brokers, logLevel: logLevel.NOTHING }).producer({
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  return {
    structured: false,
    prefix: 'ce_',
    contentTypeHeader: 'content-type',
    async send(topic, m) {
      await producer.send({ topic, acks: -1, messages: [{ value: m.body, headers: own(m.headers) }] });
    },
    async close() {
      await producer.disconnect().catch(() => {});
    },
  };
}

/** One HPUB on a bare socket: the only way to put header bytes the NATS client would not write. */
async function hpub(server: string, subject: string, headerBlock: Buffer, body: Buffer): Promise<void> {
  const [host, port] = server.split(':') as [string, string];
  const socket = net.connect({ host, port: Number(port) });
  try {
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      socket.on('error', reject);
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        if (seen.startsWith('INFO') && !seen.includes('CONNECT_SENT')) {
          seen += 'CONNECT_SENT';
          const head = Buffer.concat([Buffer.from('NATS/1.0\r\n'), headerBlock, Buffer.from('\r\n')]);
          socket.write(
            Buffer.concat([
              Buffer.from(
                'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n',
              ),
              Buffer.from(`HPUB ${subject} ${head.length} ${head.length + body.length}\r\n`),
              head,
              body,
              Buffer.from('\r\nPING\r\n'),
            ]),
          );
        }
        if (seen.includes('-ERR'))
          reject(new Error(`nats server refused: ${seen.slice(seen.indexOf('-ERR'))}`));
        else if (seen.includes('PONG')) resolve();
      });
    });
  } finally {
    socket.destroy();
  }
}

async function nats(): Promise<Injector> {
  const server = (process.env.NATS_URL ?? '127.0.0.1:4222').replace(/^nats:\/\//i, '');
  const nc = await natsConnect({ servers: [server], timeout: 3_000 });
  const js = jetstream(nc);
  return {
    structured: false,
    prefix: 'ce_',
    contentTypeHeader: 'content-type',
    async send(topic, m) {
      const subject = natsNames.subject(topic, m.routeType);
      const entries = Object.keys(m.headers).map((k) => [k, m.headers[k]!] as const);
      if (entries.some(([, v]) => typeof v !== 'string')) {
        // Header bytes the client cannot express go out on a bare socket; the stream stores them as sent.
        const block = Buffer.concat(
          entries.map(([k, v]) =>
            Buffer.concat([Buffer.from(`${k}: `), Buffer.from(v), Buffer.from('\r\n')]),
          ),
        );
        await hpub(server, subject, block, m.body);
        return;
      }
      const h = natsHeaders();
      for (const [k, v] of entries) h.set(k, v as string);
      await js.publish(subject, m.body, { headers: h });
    },
    async close() {
      await nc.close().catch(() => {});
    },
  };
}

/** Headers as SQS/SNS message attributes: strings as String, bytes as Binary (the only byte carrier). */
function attributes(headers: Record<string, string | Buffer>): Record<string, MessageAttributeValue> {
  const out: Record<string, MessageAttributeValue> = {};
  for (const k of Object.keys(headers)) {
    const v = headers[k]!;
    const value: MessageAttributeValue =
      typeof v === 'string' ? { DataType: 'String', StringValue: v } : { DataType: 'Binary', BinaryValue: v };
    Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function sqsInjector(): Injector {
  const endpoint = process.env.SQS_ENDPOINT ?? 'http://127.0.0.1:9324';
  const client = new SQSClient({ endpoint, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
  const urls = new Map<string, string>();
  return {
    structured: true,
    prefix: '',
    contentTypeHeader: 'datacontenttype',
    async send(topic, m) {
      let url = urls.get(topic);
      if (!url) {
        const res = await client.send(new GetQueueUrlCommand({ QueueName: queueNames(topic, false).main }));
        url = res.QueueUrl!;
        urls.set(topic, url);
      }
      await client.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: m.body.toString('utf8'),
          MessageAttributes: attributes(m.headers),
        }),
      );
    },
    async close() {
      client.destroy();
    },
  };
}

function snsInjector(): Injector {
  const endpoint = process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566';
  const client = new SNSClient({ endpoint, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
  return {
    structured: true,
    prefix: '',
    contentTypeHeader: 'datacontenttype',
    async send(topic, m) {
      // CreateTopic is idempotent: it answers the ARN of the topic the transport created.
      const { TopicArn } = await client.send(
        new CreateTopicCommand({ Name: topic.replace(/[^A-Za-z0-9_-]/g, '_') }),
      );
      const attrs = attributes(m.headers) as Record<string, SnsAttribute>;
      // The group's subscription filters on this attribute, as a producer that wants delivery sets it.
      if (m.routeType !== undefined) attrs['omnibus-type'] = { DataType: 'String', StringValue: m.routeType };
      await client.send(
        new PublishCommand({ TopicArn, Message: m.body.toString('utf8'), MessageAttributes: attrs }),
      );
    },
    async close() {
      client.destroy();
    },
  };
}

export async function injectorFor(transport: string): Promise<Injector> {
  switch (transport) {
    case 'memory':
      return memory();
    case 'rabbitmq':
      return rabbitmq();
    case 'kafka':
      return kafka();
    case 'nats':
      return nats();
    case 'sqs':
      return sqsInjector();
    case 'sns':
      return snsInjector();
    default:
      throw new Error(`no foreign producer for transport ${transport}`);
  }
}

export const uniqueId = () => randomUUID();
