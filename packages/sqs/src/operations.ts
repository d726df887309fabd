/**
 * The operations API on SQS: peek by receiving with a zero visibility timeout, redrive by receive,
 * SendMessage to the group's queue and DeleteMessage, purge by PurgeQueue. Queues are only looked up,
 * never created, by an operation.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  type Message,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SendMessageCommandInput,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { ConfigError, isOmnibusError, type WireMessage } from '@omnibus/core';
import {
  type GroupRef,
  type OperationTarget,
  type PeekedWire,
  type PurgeResult,
  type RedriveResult,
  type RedriveSpec,
  redriveHeaders,
  type TransportOperations,
} from '@omnibus/core/kit';
import { attributesToHeaders, headersToAttributes } from './attributes.js';
import { describeError, isQueueMissing } from './aws-errors.js';
import { DLQ_SUFFIX, FIFO_SUFFIX } from './naming.js';
import { GROUP_TAG, type QueueInfo, type QueueRegistry } from './queues.js';

/** How long a redrive hides the dead letters it has in hand; a crashed redrive's come back after this. */
export const REDRIVE_VISIBILITY_SECONDS = 30;
/** Receives in a row that bring nothing new before a peek stops looking (SQS samples its servers). */
const PEEK_EMPTY_ROUNDS = 2;

export interface SqsOperationsDeps {
  client: SQSClient;
  registry: QueueRegistry;
  /** The registry key of a group's queue: the topic itself, or the group's own queue in SNS mode. */
  queueKey(topic: string, group: string): string;
  sns: boolean;
  /** Wraps SDK failures into Omnibus errors with the endpoint named. */
  brokerError(err: unknown, what: string): unknown;
}

interface Queues {
  info: QueueInfo;
  deadLetterUrl: string;
}

export class SqsOperations implements TransportOperations {
  constructor(private readonly deps: SqsOperationsDeps) {}

  async #queues(ref: GroupRef): Promise<Queues> {
    const key = this.deps.queueKey(ref.topic, ref.group);
    try {
      const info = await this.deps.registry.resolve(key, 'verify');
      return { info, deadLetterUrl: await this.deps.registry.deadLetterUrl(info) };
    } catch (err) {
      if (isQueueMissing(err) || isOmnibusError(err))
        throw new ConfigError('group', `no SQS queues for ${ref.topic}/${ref.group}: ${describeError(err)}`);
      throw this.deps.brokerError(err, `looking up the queues of ${ref.topic}/${ref.group}`);
    }
  }

  /**
   * Queues not ending in `-dlq`, with the group from the queue's tag (point-to-point) or from the
   * `<topic>--<group>` name (SNS mode). Queue names have `.` and other characters SQS refuses turned
   * into `_`, so a topic is listed under its queue name.
   */
  async listGroups(): Promise<GroupRef[]> {
    const out: GroupRef[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.deps.client.send(
          new ListQueuesCommand({ MaxResults: 1000, NextToken: token }),
        );
        token = res.NextToken;
        for (const url of res.QueueUrls ?? []) {
          const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1)).replace(FIFO_SUFFIX, '');
          if (name.endsWith(DLQ_SUFFIX)) continue;
          if (this.deps.sns) {
            const at = name.indexOf('--');
            if (at > 0) out.push({ topic: name.slice(0, at), group: name.slice(at + 2) });
            continue;
          }
          const tags = await this.deps.client.send(new ListQueueTagsCommand({ QueueUrl: url }));
          const group = tags.Tags?.[GROUP_TAG];
          if (group) out.push({ topic: name, group });
        }
      } while (token);
    } catch (err) {
      throw this.deps.brokerError(err, 'listing queues');
    }
    return out;
  }

  /**
   * Receives with VisibilityTimeout 0, so every message stays available to consumers; each receive
   * raises its ApproximateReceiveCount, and SQS samples its servers, so a peek may miss messages.
   */
  async peek(target: OperationTarget, limit: number): Promise<PeekedWire[]> {
    const q = await this.#queues(target);
    const url = target.source === 'dead-letter' ? q.deadLetterUrl : q.info.url;
    const found = new Map<string, PeekedWire>();
    let empty = 0;
    try {
      while (found.size < limit && empty < PEEK_EMPTY_ROUNDS) {
        const messages = await this.#receive(url, Math.min(10, limit - found.size), 0);
        await this.#showAgain(url, messages);
        let fresh = 0;
        for (const m of messages) {
          if (!m.MessageId || found.has(m.MessageId)) continue;
          found.set(m.MessageId, {
            wire: wireOf(m),
            position: m.MessageId,
            deliveryCount: Number(m.Attributes?.ApproximateReceiveCount) || undefined,
          });
          fresh++;
        }
        empty = fresh === 0 ? empty + 1 : 0;
      }
    } catch (err) {
      throw this.deps.brokerError(err, `peeking at ${target.topic}/${target.group}`);
    }
    return [...found.values()].slice(0, limit);
  }

  /**
   * Visibility 0 once more, per message: some emulators (fauxqs) read a receive's VisibilityTimeout of 0
   * as "the queue's default" and would hide the peeked messages. On SQS itself the messages are already
   * visible and the call fails harmlessly (MessageNotInflight), which is ignored.
   */
  async #showAgain(url: string, messages: Message[]): Promise<void> {
    const entries = messages
      .filter((m) => m.ReceiptHandle)
      .map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }));
    if (entries.length === 0) return;
    await this.deps.client
      .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: entries }))
      .catch(() => {});
  }

  #receive(url: string, max: number, visibilitySeconds: number): Promise<Message[]> {
    return this.deps.client
      .send(
        new ReceiveMessageCommand({
          QueueUrl: url,
          MaxNumberOfMessages: max,
          VisibilityTimeout: visibilitySeconds,
          WaitTimeSeconds: 1,
          MessageAttributeNames: ['All'],
          MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId', 'SentTimestamp'],
        }),
      )
      .then((r) => r.Messages ?? []);
  }

  /**
   * Receives dead letters (hidden for REDRIVE_VISIBILITY_SECONDS), sends each selected one to the group's
   * queue and deletes it only once SQS accepted the copy. Kept ones are made visible again at the end.
   * A crash leaves the ones in hand hidden until their visibility runs out, then back in the queue.
   */
  async redrive(spec: RedriveSpec): Promise<RedriveResult> {
    const q = await this.#queues(spec);
    let total: number | null = null;
    try {
      const a = await this.deps.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: q.deadLetterUrl,
          AttributeNames: ['ApproximateNumberOfMessages'],
        }),
      );
      total = Number(a.Attributes?.ApproximateNumberOfMessages ?? Number.NaN);
      if (!Number.isFinite(total)) total = null;
    } catch {
      total = null;
    }
    const seen = new Set<string>();
    const kept = new Map<string, string>();
    let scanned = 0;
    let redriven = 0;
    try {
      while (!spec.signal?.aborted) {
        const messages = await this.#receive(q.deadLetterUrl, 10, REDRIVE_VISIBILITY_SECONDS);
        let fresh = 0;
        for (const m of messages) {
          if (!m.MessageId || !m.ReceiptHandle) continue;
          if (seen.has(m.MessageId)) {
            // A kept one whose visibility ran out during a long walk: remember its newest handle.
            if (kept.has(m.MessageId)) kept.set(m.MessageId, m.ReceiptHandle);
            continue;
          }
          seen.add(m.MessageId);
          fresh++;
          await spec.pace?.();
          if (spec.signal?.aborted) {
            kept.set(m.MessageId, m.ReceiptHandle);
            continue;
          }
          scanned++;
          const wire = wireOf(m);
          if (spec.select(wire)) {
            await this.deps.client.send(new SendMessageCommand(this.#copy(q.info, m, wire)));
            await this.deps.client.send(
              new DeleteMessageCommand({ QueueUrl: q.deadLetterUrl, ReceiptHandle: m.ReceiptHandle }),
            );
            redriven++;
          } else {
            kept.set(m.MessageId, m.ReceiptHandle);
          }
          spec.onProgress?.({ scanned, redriven, total });
        }
        if (fresh === 0) break;
      }
    } catch (err) {
      throw this.deps.brokerError(err, `redriving ${spec.topic}/${spec.group}`);
    } finally {
      await Promise.allSettled(
        [...kept.values()].map((ReceiptHandle) =>
          this.deps.client.send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: q.deadLetterUrl,
              ReceiptHandle,
              VisibilityTimeout: 0,
            }),
          ),
        ),
      );
    }
    return { scanned, redriven, kept: scanned - redriven };
  }

  /** The message for the group's queue: same body, dead-letter state removed, FIFO group kept. */
  #copy(info: QueueInfo, m: Message, wire: WireMessage): SendMessageCommandInput {
    const attributes = headersToAttributes(redriveHeaders(wire.headers));
    const input: SendMessageCommandInput = { QueueUrl: info.url, MessageBody: m.Body ?? '' };
    if (Object.keys(attributes).length > 0) input.MessageAttributes = attributes;
    if (info.names.fifo) {
      input.MessageGroupId = m.Attributes?.MessageGroupId ?? 'omnibus-redrive';
      // The dead letter's own id: a redrive repeated within SQS's 5-minute window sends it only once.
      input.MessageDeduplicationId = m.MessageId;
    }
    return input;
  }

  /** PurgeQueue; SQS allows one per queue per 60 s and reports no count, so the count is read before. */
  async purge(target: OperationTarget): Promise<PurgeResult> {
    const q = await this.#queues(target);
    const url = target.source === 'dead-letter' ? q.deadLetterUrl : q.info.url;
    try {
      const a = await this.deps.client.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages'] }),
      );
      await this.deps.client.send(new PurgeQueueCommand({ QueueUrl: url }));
      const n = Number(a.Attributes?.ApproximateNumberOfMessages);
      return { purged: Number.isFinite(n) ? n : null };
    } catch (err) {
      throw this.deps.brokerError(err, `purging ${target.topic}/${target.group}`);
    }
  }
}

function wireOf(m: Message): WireMessage {
  return { body: Buffer.from(m.Body ?? '', 'utf8'), headers: attributesToHeaders(m.MessageAttributes) };
}
