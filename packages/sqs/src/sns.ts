/**
 * SNS fan-out mode: a topic is an SNS topic, and each consumer group gets its own SQS queue (with its own
 * dead-letter queue) subscribed to it with raw message delivery, a filter policy on the message type
 * where the group's patterns can be expressed exactly, and a queue policy that lets the topic deliver.
 */
import { createHash } from 'node:crypto';
import {
  CreateTopicCommand,
  GetSubscriptionAttributesCommand,
  ListSubscriptionsByTopicCommand,
  ListTopicsCommand,
  type MessageAttributeValue,
  PublishBatchCommand,
  type PublishBatchRequestEntry,
  SetSubscriptionAttributesCommand,
  type SNSClient,
  SubscribeCommand,
} from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, SetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { ConfigError, ErrorCode, isPattern, type Logger, PublishError } from '@omnibus/core';
import type { AbandonVerdict, PublishCall } from '@omnibus/core/kit';
import { TYPE_ATTRIBUTE } from './attributes.js';
import { awsErrorCode, describeError } from './aws-errors.js';
import { DLQ_SUFFIX, FIFO_SUFFIX, MAX_QUEUE_NAME_LENGTH } from './naming.js';
import type { ProvisionMode, QueueInfo, QueueRegistry } from './queues.js';
import { toPublishError } from './sender.js';

/** SNS's limit on a published message (body + attributes) and on a whole PublishBatch request. */
export const SNS_MAX_MESSAGE_BYTES = 262_144;
const SNS_MAX_BATCH = 10;
// SNS allows at most 150 value combinations in a filter policy; beyond this many patterns the core filters.
const MAX_FILTER_VALUES = 100;
const MAX_TOPIC_NAME_LENGTH = 256;

/** The registry key (and, sanitised, the queue name) of a group's queue on a topic. */
export function groupQueueKey(topic: string, group: string, fifo: boolean): string {
  const key = `${topic}--${group}`;
  const budget = MAX_QUEUE_NAME_LENGTH - DLQ_SUFFIX.length - (fifo ? FIFO_SUFFIX.length : 0);
  if (key.length <= budget) return key;
  // Too long for SQS: a readable head and a hash of the whole, so distinct pairs keep distinct queues.
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 16);
  return `${key.slice(0, budget - hash.length - 1)}-${hash}`;
}

export function topicName(topic: string, fifo: boolean): string {
  if (topic.length === 0) throw new ConfigError('topic', 'must not be empty');
  const base = topic.replace(/[^A-Za-z0-9_-]/g, '_');
  const budget = MAX_TOPIC_NAME_LENGTH - (fifo ? FIFO_SUFFIX.length : 0);
  if (base.length > budget) {
    throw new ConfigError(
      'topic',
      `"${topic}" is ${base.length} characters; an SNS topic name may have at most ${budget}`,
    );
  }
  return fifo ? `${base}${FIFO_SUFFIX}` : base;
}

/**
 * The subscription filter policy for a group's patterns, or undefined when they cannot all be expressed
 * exactly (the core then filters). Exact types match themselves; `a.b.#` (a literal prefix, then `#`)
 * matches `a.b` itself or anything starting with `a.b.`. `*` and inner `#` have no exact SNS form: a
 * `prefix` would also match deeper types, so no filter is set at all rather than a wrong one.
 */
export function filterPolicy(patterns: readonly string[]): string | undefined {
  if (patterns.length === 0) return undefined;
  const values: (string | { prefix: string })[] = [];
  for (const pattern of patterns) {
    if (!isPattern(pattern)) {
      values.push(pattern);
      continue;
    }
    if (!pattern.endsWith('.#')) return undefined;
    const head = pattern.slice(0, -2);
    if (head === '' || isPattern(head)) return undefined;
    values.push(head, { prefix: `${head}.` });
  }
  if (values.length > MAX_FILTER_VALUES) return undefined;
  return JSON.stringify({ [TYPE_ATTRIBUTE]: values });
}

export interface SnsEntry {
  body: string;
  attributes: Record<string, MessageAttributeValue>;
  groupId?: string | undefined;
  deduplicationId?: string | undefined;
  bytes: number;
}

export interface SnsFanOutOptions {
  provision: ProvisionMode;
  isFifo: (topic: string) => boolean;
}

/** Provisioning and publishing for SNS mode; queues themselves come from the transport's QueueRegistry. */
export class SnsFanOut {
  private readonly topicArns = new Map<string, Promise<string>>();
  private readonly groups = new Map<string, Promise<QueueInfo>>();

  constructor(
    private readonly sns: SNSClient,
    private readonly sqs: SQSClient,
    private readonly registry: QueueRegistry,
    private readonly opts: SnsFanOutOptions,
    private readonly logger: () => Logger,
  ) {}

  /** The topic's ARN: created (CreateTopic is idempotent) or, without provisioning, looked up. */
  topicArn(topic: string, mode: ProvisionMode = this.opts.provision): Promise<string> {
    const name = topicName(topic, this.opts.isFifo(topic));
    let pending = this.topicArns.get(name);
    if (!pending) {
      pending = mode === 'create' ? this.createTopic(name) : this.findTopic(name, topic);
      this.topicArns.set(name, pending);
      pending.catch(() => this.topicArns.delete(name));
    }
    return pending;
  }

  forget(topic: string): void {
    this.topicArns.delete(topicName(topic, this.opts.isFifo(topic)));
    for (const key of this.groups.keys()) if (key.startsWith(`${topic}\u0000`)) this.groups.delete(key);
  }

  private async createTopic(name: string): Promise<string> {
    const fifo = name.endsWith(FIFO_SUFFIX);
    const res = await this.sns.send(
      new CreateTopicCommand({ Name: name, ...(fifo ? { Attributes: { FifoTopic: 'true' } } : {}) }),
    );
    if (!res.TopicArn) throw new Error(`CreateTopic ${name} returned no TopicArn`);
    return res.TopicArn;
  }

  private async findTopic(name: string, topic: string): Promise<string> {
    let token: string | undefined;
    do {
      const res = await this.sns.send(new ListTopicsCommand(token ? { NextToken: token } : {}));
      for (const t of res.Topics ?? []) if (t.TopicArn?.endsWith(`:${name}`)) return t.TopicArn;
      token = res.NextToken;
    } while (token);
    throw new ConfigError(
      'provision',
      `SNS topic "${name}" (topic "${topic}") does not exist and provision is "${this.opts.provision}"`,
    );
  }

  /**
   * The group's queue on the topic, subscribed: queue and dead-letter queue (registry), the group claim,
   * the queue policy allowing the topic to send, and the raw-delivery subscription with its filter policy.
   * Once per topic and group per process; every step is idempotent across processes.
   */
  ensureGroup(
    topic: string,
    group: string,
    patterns: readonly string[],
    mode: ProvisionMode = this.opts.provision,
  ): Promise<QueueInfo> {
    const id = `${topic}\u0000${group}`;
    let pending = this.groups.get(id);
    if (!pending) {
      pending = this.doEnsureGroup(topic, group, patterns, mode);
      this.groups.set(id, pending);
      pending.catch(() => this.groups.delete(id));
    }
    return pending;
  }

  private async doEnsureGroup(
    topic: string,
    group: string,
    patterns: readonly string[],
    mode: ProvisionMode,
  ): Promise<QueueInfo> {
    const key = groupQueueKey(topic, group, this.opts.isFifo(topic));
    const info = await this.registry.resolve(key, mode);
    await this.registry.claimGroup(info, group, mode);
    if (mode === 'none') return info;
    const topicArn = await this.topicArn(topic, mode);
    const attrs = await this.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: info.url, AttributeNames: ['QueueArn', 'Policy'] }),
    );
    const queueArn = attrs.Attributes?.QueueArn;
    if (!queueArn) throw new Error(`SQS queue "${info.names.main}" reported no QueueArn`);
    if (mode === 'create') await this.allowTopic(info, queueArn, topicArn, attrs.Attributes?.Policy);
    await this.subscribe(topicArn, queueArn, patterns, mode);
    return info;
  }

  /** Adds (once) the statement that lets this topic, and only it, send to the queue; other statements stay. */
  private async allowTopic(
    info: QueueInfo,
    queueArn: string,
    topicArn: string,
    current?: string,
  ): Promise<void> {
    const sid = `omnibus-sns-${createHash('sha256').update(topicArn).digest('hex').slice(0, 16)}`;
    let policy: { Version: string; Statement: { Sid?: string }[] } = { Version: '2012-10-17', Statement: [] };
    if (current) {
      try {
        const parsed = JSON.parse(current) as typeof policy;
        if (Array.isArray(parsed.Statement)) policy = parsed;
      } catch {
        // an unreadable policy is replaced by ours
      }
    }
    if (policy.Statement.some((s) => s.Sid === sid)) return;
    policy.Statement.push({
      Sid: sid,
      Effect: 'Allow',
      Principal: { Service: 'sns.amazonaws.com' },
      Action: 'sqs:SendMessage',
      Resource: queueArn,
      Condition: { ArnEquals: { 'aws:SourceArn': topicArn } },
    } as { Sid: string });
    await this.sqs.send(
      new SetQueueAttributesCommand({ QueueUrl: info.url, Attributes: { Policy: JSON.stringify(policy) } }),
    );
  }

  /**
   * Subscribe is idempotent for identical attributes; when the group's patterns changed since, SNS refuses
   * a second Subscribe with other attributes, so the existing subscription's filter is updated instead.
   */
  private async subscribe(
    topicArn: string,
    queueArn: string,
    patterns: readonly string[],
    mode: ProvisionMode,
  ): Promise<void> {
    const filter = filterPolicy(patterns);
    const existing = await this.findSubscription(topicArn, queueArn);
    if (existing === undefined) {
      if (mode !== 'create') {
        throw new ConfigError(
          'provision',
          `SQS queue ${queueArn} is not subscribed to SNS topic ${topicArn} and provision is "${mode}"`,
        );
      }
      try {
        await this.sns.send(
          new SubscribeCommand({
            TopicArn: topicArn,
            Protocol: 'sqs',
            Endpoint: queueArn,
            ReturnSubscriptionArn: true,
            Attributes: { RawMessageDelivery: 'true', ...(filter ? { FilterPolicy: filter } : {}) },
          }),
        );
        return;
      } catch (err) {
        // Another process subscribed meanwhile with other attributes: fall through and update them.
        if (awsErrorCode(err) !== 'InvalidParameterException' && awsErrorCode(err) !== 'InvalidParameter')
          throw err;
        const again = await this.findSubscription(topicArn, queueArn);
        if (again === undefined) throw err;
        await this.setFilter(again, filter);
        return;
      }
    }
    if (mode === 'create') await this.setFilter(existing, filter);
  }

  /** Brings an existing subscription to raw delivery and this filter, writing only what differs. */
  private async setFilter(subscriptionArn: string, filter: string | undefined): Promise<void> {
    const res = await this.sns.send(
      new GetSubscriptionAttributesCommand({ SubscriptionArn: subscriptionArn }),
    );
    const current = res.Attributes ?? {};
    if (current.RawMessageDelivery !== 'true') {
      await this.sns.send(
        new SetSubscriptionAttributesCommand({
          SubscriptionArn: subscriptionArn,
          AttributeName: 'RawMessageDelivery',
          AttributeValue: 'true',
        }),
      );
    }
    const same =
      (current.FilterPolicy ?? '') === (filter ?? '') ||
      (filter === undefined && current.FilterPolicy === '{}');
    if (same) return;
    // `{}` removes a filter policy (AWS's documented way); changes take up to 15 minutes to apply on AWS.
    await this.sns.send(
      new SetSubscriptionAttributesCommand({
        SubscriptionArn: subscriptionArn,
        AttributeName: 'FilterPolicy',
        AttributeValue: filter ?? '{}',
      }),
    );
  }

  private async findSubscription(topicArn: string, queueArn: string): Promise<string | undefined> {
    let token: string | undefined;
    do {
      const res = await this.sns.send(
        new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, ...(token ? { NextToken: token } : {}) }),
      );
      for (const s of res.Subscriptions ?? []) {
        if (s.Protocol === 'sqs' && s.Endpoint === queueArn && s.SubscriptionArn?.startsWith('arn:'))
          return s.SubscriptionArn;
      }
      token = res.NextToken;
    } while (token);
    return undefined;
  }

  /**
   * Publishes in PublishBatch calls of up to 10 entries and 256 KiB. Until the first call is sent nothing
   * can have been written (the caller's deadline withdraws); after that the outcome is unknown.
   */
  async publish(topic: string, entries: readonly SnsEntry[], call: PublishCall): Promise<void> {
    call.onAbandon((): AbandonVerdict => 'withdrawn');
    let topicArn: string;
    try {
      topicArn = await this.topicArn(topic);
    } catch (err) {
      if (err instanceof ConfigError) {
        throw new PublishError(ErrorCode.UNROUTABLE, `no SNS topic for "${topic}": ${err.message}`, {
          cause: err,
        });
      }
      throw toPublishError(err, topic);
    }
    const batches: SnsEntry[][] = [];
    let batch: SnsEntry[] = [];
    let bytes = 0;
    for (const entry of entries) {
      if (
        batch.length === SNS_MAX_BATCH ||
        (batch.length > 0 && bytes + entry.bytes > SNS_MAX_MESSAGE_BYTES)
      ) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(entry);
      bytes += entry.bytes;
    }
    if (batch.length > 0) batches.push(batch);
    for (const b of batches) {
      if (call.abandoned) {
        throw new PublishError(ErrorCode.TIMEOUT, `publish to "${topic}" given up before it was sent`, {
          details: { outcome: 'not-sent' },
        });
      }
      call.onAbandon((): AbandonVerdict => 'unknown');
      await this.sendBatch(topic, topicArn, b);
    }
  }

  private async sendBatch(topic: string, topicArn: string, batch: readonly SnsEntry[]): Promise<void> {
    const request: PublishBatchRequestEntry[] = batch.map((e, i) => ({
      Id: String(i),
      Message: e.body,
      ...(Object.keys(e.attributes).length > 0 ? { MessageAttributes: e.attributes } : {}),
      ...(e.groupId !== undefined ? { MessageGroupId: e.groupId } : {}),
      ...(e.deduplicationId !== undefined ? { MessageDeduplicationId: e.deduplicationId } : {}),
    }));
    let failed: { Id?: string; Code?: string; Message?: string; SenderFault?: boolean }[];
    try {
      const res = await this.sns.send(
        new PublishBatchCommand({ TopicArn: topicArn, PublishBatchRequestEntries: request }),
      );
      failed = res.Failed ?? [];
    } catch (err) {
      if (awsErrorCode(err) === 'NotFound' || awsErrorCode(err) === 'NotFoundException') {
        this.forget(topic);
        throw new PublishError(
          ErrorCode.UNROUTABLE,
          `SNS topic for "${topic}" does not exist: ${describeError(err)}`,
          {
            cause: err,
          },
        );
      }
      throw toPublishError(err, topic);
    }
    if (failed.length > 0) {
      const first = failed[0]!;
      this.logger().warn({ topic, failed: failed.length }, 'SNS refused part of a batch');
      throw new PublishError(
        ErrorCode.PUBLISH_FAILED,
        `SNS refused ${failed.length} of ${batch.length} messages to "${topic}": ${first.Code ?? ''} ${first.Message ?? ''}`.trim(),
        { retryable: first.SenderFault !== true, details: { failed: failed.length } },
      );
    }
  }
}
