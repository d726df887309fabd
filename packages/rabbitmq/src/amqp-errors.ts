/** Turns AMQP close codes and RabbitMQ's error texts into Omnibus errors that say what to do. */
import { ConfigError, redactText } from '@omnibus/core';

export const AmqpCode = {
  ACCESS_REFUSED: 403,
  NOT_FOUND: 404,
  RESOURCE_LOCKED: 405,
  PRECONDITION_FAILED: 406,
} as const;

export function amqpCode(err: unknown): number | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') return err.code;
  return undefined;
}

export function errorText(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}

/** Which option controls a queue or exchange argument, so the ConfigError names the field to change. */
const ARGUMENT_OPTION: Record<string, string> = {
  'x-queue-type': 'queueType',
  'x-delivery-limit': 'deliveryLimit',
  'x-single-active-consumer': 'singleActiveConsumer',
  'x-message-ttl': 'delayTiersMs',
  'x-dead-letter-strategy': 'queueType',
  'x-overflow': 'queueType',
  'x-max-age': 'streams.maxAge',
  'x-max-length-bytes': 'streams.maxLengthBytes',
};

/**
 * RabbitMQ refuses to redeclare an object with different arguments (406 PRECONDITION_FAILED, e.g.
 * "inequivalent arg 'x-queue-type' for queue 'orders.billing' in vhost '/': received … but current is …").
 * Arguments cannot be changed in place, so the message explains the ways out.
 */
export function declareConflict(err: unknown, kind: 'queue' | 'exchange', name: string): ConfigError {
  const text = errorText(err);
  const m = /inequivalent arg '([^']+)' for (?:queue|exchange) '[^']*'[^:]*:\s*(.*)$/.exec(text);
  const arg = m?.[1];
  const detail = m?.[2]?.replace(/["\s]+$/, '') ?? text;
  const option = arg ? ARGUMENT_OPTION[arg] : undefined;
  const field = option ?? 'provision';
  const what = arg ? `a different "${arg}" (${detail})` : `different settings (${detail})`;
  const match = option ? `set the transport option "${option}" to match the existing queue, or ` : '';
  const fix =
    kind === 'queue'
      ? `RabbitMQ cannot change queue arguments in place (it reports the first difference it finds). Either ` +
        `${match}migrate: stop its consumers, drain or move its messages (e.g. with a shovel to a new group), ` +
        `delete the queue and let Omnibus declare it again; provision: 'none' consumes it as it is.`
      : 'RabbitMQ cannot change an exchange in place: delete it (its bindings go with it) and let Omnibus ' +
        'declare it again as a durable topic exchange.';
  return new ConfigError(field, `${kind} "${name}" already exists with ${what}. ${fix}`, { cause: err });
}

export function missingObject(err: unknown, kind: 'queue' | 'exchange', name: string): ConfigError {
  return new ConfigError(
    'provision',
    `${kind} "${name}" does not exist, and with provision 'verify' or 'none' Omnibus does not create it: ` +
      `create it with provision: 'create' or transport.provision(), or ask whoever owns the broker's topology.`,
    { cause: err },
  );
}
