/** The ambient message context (correlation, causation, trace) carried through async calls. */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

export interface MessageContextData {
  correlationId: string;
  /** Id of the message being handled; becomes the causation id of anything published inside. */
  causationId?: string | undefined;
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

const storage = new AsyncLocalStorage<MessageContextData>();

export function currentContext(): MessageContextData | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` with a correlation context, for entry points such as HTTP handlers: every publish inside
 * carries this correlation id (and trace context when given).
 */
export function runWithContext<R>(context: Partial<MessageContextData>, fn: () => R): R {
  const parent = storage.getStore();
  const merged: MessageContextData = {
    ...parent,
    ...context,
    correlationId: context.correlationId ?? parent?.correlationId ?? randomBytes(16).toString('hex'),
  };
  return storage.run(merged, fn);
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A W3C traceparent for a new span: child of `parent` when given (same trace id), else a new trace. */
export function childTraceparent(parent?: string): string {
  const span = randomBytes(8).toString('hex');
  const m = parent ? TRACEPARENT.exec(parent) : null;
  if (m) return `00-${m[2]}-${span}-${m[4]}`;
  return `00-${randomBytes(16).toString('hex')}-${span}-01`;
}

export function isValidTraceparent(value: string): boolean {
  return TRACEPARENT.test(value);
}

/** Runs a handler inside the context of the message it handles (internal). */
export function runInMessageContext<R>(
  env: {
    id: string;
    correlationId: string;
    traceparent?: string | undefined;
    tracestate?: string | undefined;
  },
  fn: () => R,
): R {
  return storage.run(
    {
      correlationId: env.correlationId,
      causationId: env.id,
      traceparent: env.traceparent,
      tracestate: env.tracestate,
    },
    fn,
  );
}
