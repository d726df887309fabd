/**
 * What the peer comparison needs of each transport: a side built on message-queue-toolkit, the closest
 * TypeScript peer, loaded only where that library has an adapter that installs and runs here.
 * Versions (bench/package.json): core 25.4.0, because 27.0.0 needs @message-queue-toolkit/schemas ^7.2.0,
 * which is not published; amqp 23.1.0 declares amqplib ^0.10.8 as its peer and runs on the 2.3.1 the
 * other sides use (pnpm warns about the range only).
 */
import type { TransportName } from '../lib/load.js';
import type { Side } from '../lib/side.js';

export interface PeerBench {
  /** How the peer is configured, and what each side does that the other does not (for the report). */
  readonly settings: { peer: string; omnibus: string; differences: string };
  /** Unconfirmed publishes at once on both sides (the Omnibus side's window in the main comparison). */
  readonly window: number;
  /** A connected message-queue-toolkit side. */
  side(): Promise<Side>;
}

/** A transport without a peer side, and why (shown in the table instead of figures). */
export interface NoPeer {
  unavailable: string;
}

export async function loadPeer(name: TransportName): Promise<PeerBench | NoPeer | undefined> {
  switch (name) {
    case 'rabbitmq':
      return (await import('./rabbitmq.js')).rabbitmqPeer;
    case 'sqs':
      return (await import('./sqs.js')).sqsPeer;
    case 'kafka':
      // Checked against the registry on 2026-11-30: the only release, 2.0.1, needs Node.js ≥ 22.22, a
      // @message-queue-toolkit/core ≥ 27 whose dependency @message-queue-toolkit/schemas ^7.2.0 is not
      // published, and @lokalise/node-core ^14.9.1, also not published (the newest is 14.8.1).
      return {
        unavailable:
          '@message-queue-toolkit/kafka 2.0.1 does not install: it needs @lokalise/node-core ^14.9.1 and @message-queue-toolkit/core ≥ 27 (which needs @message-queue-toolkit/schemas ^7.2.0), none of them published (and Node.js ≥ 22.22)',
      };
    case 'nats':
      return { unavailable: 'message-queue-toolkit has no NATS adapter' };
    case 'memory':
      return undefined;
  }
}

export function isPeer(p: PeerBench | NoPeer | undefined): p is PeerBench {
  return !!p && 'side' in p;
}

/** A logger that drops message-queue-toolkit's info chatter but shows its errors. */
export const quietLogger = {
  level: 'warn',
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...args: unknown[]) => {
    console.error('[peer]', ...args);
  },
  fatal: (...args: unknown[]) => {
    console.error('[peer]', ...args);
  },
  silent: () => {},
  child() {
    return quietLogger;
  },
  isLevelEnabled: (level: string) => level === 'error' || level === 'fatal',
};

/** Errors the peer reports (a handler or connection failure) are printed, never swallowed. */
export const errorReporter = {
  report: (e: { error: unknown }) => {
    console.error('[peer] error:', e.error);
  },
};

/** Message-queue-toolkit handlers return an Either; `success` acks the message. */
export const SUCCESS = { result: 'success' as const };
