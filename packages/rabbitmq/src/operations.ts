/**
 * The operations API on RabbitMQ: peek by get-and-return, redrive by get, confirmed publish to the group
 * queue and ack, purge by queue.purge. Each operation runs on a channel of its own.
 */
import { ConfigError, UnsupportedError, type WireMessage } from '@omnibus/core';
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
import type { Channel, ChannelModel, ConfirmChannel, GetMessage } from 'amqplib';
import { AmqpCode, amqpCode } from './amqp-errors.js';
import { names } from './naming.js';
import { republishOptions, wireFromAmqp } from './wire.js';

export class RabbitMqOperations implements TransportOperations {
  constructor(
    /** The transport's open connection, waited for until the deadline (ms since epoch). */
    private readonly connection: (deadline: number) => Promise<ChannelModel>,
    private readonly connectTimeoutMs: number,
  ) {}

  async listGroups(): Promise<GroupRef[]> {
    throw new UnsupportedError(
      'RabbitMQ does not list queues over AMQP (its management API does): name the topic and group instead',
    );
  }

  /** Runs `fn` on a fresh channel that is closed afterwards, which returns anything still unacked. */
  async #withChannel<T, C extends Channel>(open: (m: ChannelModel) => Promise<C>, fn: (ch: C) => Promise<T>) {
    const model = await this.connection(Date.now() + this.connectTimeoutMs);
    const ch = await open(model);
    // A refused operation closes the channel with an error event; the caller gets the rejection instead.
    ch.on('error', () => {});
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async #count(ch: Channel, queue: string, field: string): Promise<number> {
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } catch (err) {
      if (amqpCode(err) === AmqpCode.NOT_FOUND)
        throw new ConfigError(field, `queue "${queue}" does not exist`);
      throw err;
    }
  }

  /**
   * Gets up to `limit` messages without acking them, then returns them all at once. RabbitMQ puts a
   * returned message back in its place, marked redelivered; on a quorum queue its delivery count grows.
   */
  async peek(target: OperationTarget, limit: number): Promise<PeekedWire[]> {
    const queue = queueOf(target);
    // Checked on a channel of its own: a missing queue closes the channel it is asked on.
    await this.#withChannel(
      (m) => m.createChannel(),
      (ch) => this.#count(ch, queue, 'group'),
    );
    return this.#withChannel(
      (m) => m.createChannel(),
      async (ch) => {
        const held: GetMessage[] = [];
        try {
          while (held.length < limit) {
            const msg = await ch.get(queue, { noAck: false });
            if (msg === false) break;
            held.push(msg);
          }
          return held.map((msg) => ({
            wire: wireFromAmqp(msg),
            deliveryCount: deliveryCount(msg),
          }));
        } finally {
          if (held.length > 0) ch.nackAll(true);
        }
      },
    );
  }

  /**
   * Walks the dead letters present at the start. A selected one is published to the group queue (through
   * the default exchange, mandatory, confirmed) and only then acked; one left out is held unacked until
   * the end, so the walk never meets it twice, and then returned in place. A crash at any point returns
   * every unacked dead letter to the queue: the one in hand may then be in both places, none in neither.
   */
  async redrive(spec: RedriveSpec): Promise<RedriveResult> {
    const dlq = names.deadLetterQueue(spec.topic, spec.group);
    const groupQueue = names.groupQueue(spec.topic, spec.group);
    const total = await this.#withChannel(
      (m) => m.createChannel(),
      async (ch) => {
        await this.#count(ch, groupQueue, 'group');
        return this.#count(ch, dlq, 'group');
      },
    );
    return this.#withChannel(
      (m) => m.createConfirmChannel(),
      async (ch: ConfirmChannel) => {
        let returned: string | undefined;
        ch.on('return', (msg: { fields: { replyText?: string } }) => {
          returned = msg.fields.replyText ?? 'unroutable';
        });
        let scanned = 0;
        let redriven = 0;
        let kept = 0;
        try {
          while (scanned < total) {
            await spec.pace?.();
            if (spec.signal?.aborted) break;
            const msg = await ch.get(dlq, { noAck: false });
            if (msg === false) break;
            scanned++;
            const wire = wireFromAmqp(msg);
            if (spec.select(wire)) {
              await publishConfirmed(ch, groupQueue, msg, wire);
              if (returned !== undefined)
                throw new ConfigError('group', `queue "${groupQueue}" refused the message: ${returned}`);
              ch.ack(msg);
              redriven++;
            } else {
              kept++;
            }
            spec.onProgress?.({ scanned, redriven, total });
          }
        } finally {
          // Everything still unacked (the kept ones) goes back to the dead-letter queue.
          if (kept > 0) ch.nackAll(true);
        }
        return { scanned, redriven, kept };
      },
    );
  }

  async purge(target: OperationTarget): Promise<PurgeResult> {
    const queue = queueOf(target);
    return this.#withChannel(
      (m) => m.createChannel(),
      async (ch) => {
        await this.#count(ch, queue, 'group');
        const { messageCount } = await ch.purgeQueue(queue);
        return { purged: messageCount };
      },
    );
  }
}

function queueOf(target: OperationTarget): string {
  return target.source === 'dead-letter'
    ? names.deadLetterQueue(target.topic, target.group)
    : names.groupQueue(target.topic, target.group);
}

function deliveryCount(msg: GetMessage): number | undefined {
  const n = msg.properties.headers?.['x-delivery-count'];
  if (typeof n === 'number') return n;
  return msg.fields.redelivered ? 1 : 0;
}

/** Publishes a copy with the dead-letter state removed straight to `queue`, resolving on the broker's confirm. */
function publishConfirmed(
  ch: ConfirmChannel,
  queue: string,
  msg: GetMessage,
  wire: WireMessage,
): Promise<void> {
  const keep = redriveHeaders(wire.headers);
  const drop = Object.keys(msg.properties.headers ?? {}).filter((h) => !(h in keep));
  // x-death records the dead-lettering RabbitMQ did itself (quorum delivery limit); it starts over too.
  drop.push('x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason');
  const options = republishOptions(msg, {}, drop);
  return new Promise<void>((resolve, reject) => {
    ch.publish('', queue, msg.content, options, (err) => (err ? reject(err) : resolve()));
  });
}
