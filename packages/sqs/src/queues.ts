/**
 * Finds or creates the queues a topic needs (its queue, its dead-letter queue, the native redrive
 * between them) and claims a queue for one consumer group with a queue tag, so that a second group
 * fails loudly even when it runs in another process.
 */
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueueTagsCommand,
  type QueueAttributeName,
  type SQSClient,
  TagQueueCommand,
} from '@aws-sdk/client-sqs';
import { ConfigError, type Logger, UnsupportedError } from '@omnibus/core';
import { awsErrorCode, describeError, isQueueMissing } from './aws-errors.js';
import { type QueueNames, queueNames } from './naming.js';

/** The tag that records which consumer group owns a queue. */
export const GROUP_TAG = 'omnibus:group';
/** SQS's historical default and ElasticMQ's limit; a queue's own MaximumMessageSize replaces it when read. */
export const DEFAULT_MAX_MESSAGE_BYTES = 262_144;
const DEAD_LETTER_RETENTION_SECONDS = 1_209_600; // 14 days, SQS's maximum: dead letters wait for a human

export type ProvisionMode = 'create' | 'verify' | 'none';

export interface QueueInfo {
  topic: string;
  names: QueueNames;
  url: string;
  maxMessageBytes: number;
}

export interface QueueRegistryOptions {
  provision: ProvisionMode;
  isFifo: (topic: string) => boolean;
  visibilityTimeoutSeconds: number;
  maxReceiveCount: number;
  /** Told about every queue resolved, so capabilities can follow the queues' real size limit. */
  onResolved?: (info: QueueInfo) => void;
}

// Tag values allow letters, digits, spaces and `_ . : / = + - @`, at most 256 characters.
function tagValue(group: string): string {
  return group.replace(/[^\p{L}\p{N} _.:/=+\-@]/gu, '_').slice(0, 256);
}

export class QueueRegistry {
  private readonly queues = new Map<string, Promise<QueueInfo>>();
  /** Topics whose queue has resolved (and not been invalidated since), for callers that must not wait. */
  private readonly ready = new Map<string, QueueInfo>();
  private readonly deadLetterUrls = new Map<string, Promise<string>>();
  private readonly claims = new Map<string, Promise<void>>();

  constructor(
    private readonly client: SQSClient,
    private readonly opts: QueueRegistryOptions,
    private readonly logger: () => Logger,
  ) {}

  names(topic: string): QueueNames {
    return queueNames(topic, this.opts.isFifo(topic));
  }

  /** The topic's queue, created or checked per the provision mode (once; failures are not cached). */
  resolve(topic: string, mode: ProvisionMode = this.opts.provision): Promise<QueueInfo> {
    const names = this.names(topic);
    let pending = this.queues.get(names.main);
    if (!pending) {
      const loading = this.load(topic, names, mode);
      pending = loading;
      this.queues.set(names.main, loading);
      loading.then(
        (info) => {
          // Only if it was not invalidated while loading.
          if (this.queues.get(names.main) === loading) this.ready.set(topic, info);
          this.opts.onResolved?.(info);
        },
        () => this.queues.delete(names.main),
      );
    }
    return pending;
  }

  /** The topic's queue if it has already been resolved, without waiting (undefined otherwise). */
  resolved(topic: string): QueueInfo | undefined {
    return this.ready.get(topic);
  }

  /** Forget what is known about a topic's queues (they vanished, e.g. an emulator restarted without storage). */
  invalidate(topic: string): void {
    const names = this.names(topic);
    this.queues.delete(names.main);
    // Every topic that maps onto this queue (`a.b` and `a_b` share one) must resolve it again.
    for (const [t, info] of this.ready) if (info.names.main === names.main) this.ready.delete(t);
    this.deadLetterUrls.delete(names.deadLetter);
    for (const key of this.claims.keys()) if (key.startsWith(`${names.main}\u0000`)) this.claims.delete(key);
  }

  deadLetterUrl(info: QueueInfo): Promise<string> {
    let pending = this.deadLetterUrls.get(info.names.deadLetter);
    if (!pending) {
      pending = this.queueUrl(info.names.deadLetter);
      this.deadLetterUrls.set(info.names.deadLetter, pending);
      pending.catch(() => this.deadLetterUrls.delete(info.names.deadLetter));
    }
    return pending;
  }

  /**
   * SQS gives every consumer of a queue a share of its messages: one queue serves exactly one group.
   * The first group to subscribe tags the queue; any other group is refused, across processes too.
   * The tag is read back after writing, so of two groups racing for a fresh queue one loses.
   */
  claimGroup(info: QueueInfo, group: string, mode: ProvisionMode = this.opts.provision): Promise<void> {
    const key = `${info.names.main}\u0000${group}`;
    let pending = this.claims.get(key);
    if (!pending) {
      pending = this.doClaim(info, group, mode);
      this.claims.set(key, pending);
      pending.catch(() => this.claims.delete(key));
    }
    return pending;
  }

  private async doClaim(info: QueueInfo, group: string, mode: ProvisionMode): Promise<void> {
    const wanted = tagValue(group);
    let owner: string | undefined;
    try {
      owner = await this.readGroupTag(info.url);
    } catch (err) {
      if (isQueueMissing(err)) throw err;
      // Without permission to read tags the claim cannot be checked; say so rather than fail the subscription.
      this.logger().warn(
        { queue: info.names.main, error: describeError(err) },
        'cannot read the queue group tag',
      );
      return;
    }
    if (owner === undefined && mode !== 'none') {
      try {
        await this.client.send(new TagQueueCommand({ QueueUrl: info.url, Tags: { [GROUP_TAG]: wanted } }));
        owner = await this.readGroupTag(info.url);
      } catch (err) {
        if (isQueueMissing(err)) throw err;
        this.logger().warn(
          { queue: info.names.main, error: describeError(err) },
          'cannot tag the queue with its group',
        );
        return;
      }
    }
    if (owner !== undefined && owner !== wanted) {
      throw new UnsupportedError(
        `SQS queue "${info.names.main}" (topic "${info.topic}") belongs to consumer group "${owner}"; ` +
          `group "${group}" cannot subscribe to it. An SQS queue serves one group: its consumers compete ` +
          'for messages, so a second group would silently receive only part of them. Fan-out to several ' +
          "groups needs SNS: use the transport's SNS mode (fanOut: 'sns').",
        { details: { topic: info.topic, queue: info.names.main, owner, group } },
      );
    }
  }

  private async readGroupTag(url: string): Promise<string | undefined> {
    const res = await this.client.send(new ListQueueTagsCommand({ QueueUrl: url }));
    return res.Tags?.[GROUP_TAG];
  }

  private async load(topic: string, names: QueueNames, mode: ProvisionMode): Promise<QueueInfo> {
    let url: string;
    if (mode === 'create') {
      url = await this.create(names);
    } else {
      url = await this.mustExist(names.main, mode);
      if (mode === 'verify')
        this.deadLetterUrls.set(
          names.deadLetter,
          Promise.resolve(await this.mustExist(names.deadLetter, mode)),
        );
    }
    const maxMessageBytes = await this.readMaxMessageBytes(url);
    return { topic, names, url, maxMessageBytes };
  }

  private async create(names: QueueNames): Promise<string> {
    const fifo: Record<string, string> = names.fifo ? { FifoQueue: 'true' } : {};
    const dlqUrl = await this.createQueue(names.deadLetter, {
      ...fifo,
      MessageRetentionPeriod: String(DEAD_LETTER_RETENTION_SECONDS),
    });
    this.deadLetterUrls.set(names.deadLetter, Promise.resolve(dlqUrl));
    const arnRes = await this.client.send(
      new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }),
    );
    const arn = arnRes.Attributes?.QueueArn;
    const attributes: Record<string, string> = {
      ...fifo,
      VisibilityTimeout: String(this.opts.visibilityTimeoutSeconds),
    };
    if (arn) {
      attributes.RedrivePolicy = JSON.stringify({
        deadLetterTargetArn: arn,
        maxReceiveCount: this.opts.maxReceiveCount,
      });
    } else {
      this.logger().warn(
        { queue: names.deadLetter },
        'dead-letter queue has no ARN: no native redrive policy',
      );
    }
    return this.createQueue(names.main, attributes);
  }

  /** CreateQueue is idempotent only for identical attributes; an existing queue configured otherwise is kept. */
  private async createQueue(name: string, attributes: Record<string, string>): Promise<string> {
    try {
      const res = await this.client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
      if (!res.QueueUrl) throw new Error(`CreateQueue ${name} returned no QueueUrl`);
      return res.QueueUrl;
    } catch (err) {
      const code = awsErrorCode(err);
      if (code !== 'QueueNameExists' && code !== 'QueueAlreadyExists' && !/already exists/i.test(String(err)))
        throw err;
      this.logger().info({ queue: name }, 'queue exists with other attributes; keeping them');
      return this.queueUrl(name);
    }
  }

  private async mustExist(name: string, mode: ProvisionMode): Promise<string> {
    try {
      return await this.queueUrl(name);
    } catch (err) {
      if (isQueueMissing(err)) {
        throw new ConfigError('provision', `SQS queue "${name}" does not exist and provision is "${mode}"`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  private async queueUrl(name: string): Promise<string> {
    const res = await this.client.send(new GetQueueUrlCommand({ QueueName: name }));
    if (!res.QueueUrl) throw new Error(`GetQueueUrl ${name} returned no QueueUrl`);
    return res.QueueUrl;
  }

  private async readMaxMessageBytes(url: string): Promise<number> {
    try {
      const res = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ['MaximumMessageSize' as QueueAttributeName],
        }),
      );
      const n = Number(res.Attributes?.MaximumMessageSize);
      return Number.isInteger(n) && n > 0 ? n : DEFAULT_MAX_MESSAGE_BYTES;
    } catch (err) {
      if (isQueueMissing(err)) throw err;
      return DEFAULT_MAX_MESSAGE_BYTES;
    }
  }
}
