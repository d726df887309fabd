/** Hooks around publishing and handling, composed in the order given. */
import type { Envelope } from './envelope.js';
import type { MessageContext } from './message.js';

/** Sees (and may change) every envelope before it is encoded; call `next` to continue. */
export type PublishMiddleware = (envelope: Envelope, next: () => Promise<void>) => Promise<void>;

/** Wraps every handler invocation (inside the message context); call `next` to run the handler. */
export type ConsumeMiddleware = (ctx: MessageContext, next: () => Promise<void>) => Promise<void>;

export interface Middleware {
  publish?: PublishMiddleware;
  consume?: ConsumeMiddleware;
}
