/**
 * What the contract suite needs from a transport's harness beyond the conformance harness: transports
 * built with extra adapter options. Each `src/transports/<name>.ts` may export `contractHooks`; a hook a
 * harness leaves out turns the scenarios that need it into skips with the reason (see requirements.ts).
 */
import type { Transport } from '@omnibus/core';

export interface ContractHooks {
  /**
   * A fresh, not yet connected transport like `harness.create()`, with these options added. Only the
   * option names every adapter shares are passed (`onNoSubscribers`). Throws what the constructor throws.
   */
  createWith(options: Record<string, unknown>): Transport;
  /**
   * Like `createWith({})` but with the delay tiers set to `tiersMs` (short ones, so a delay longer than
   * the largest tier can be waited for). Absent where the adapter's tiers cannot be configured.
   */
  createWithDelayTiers?(tiersMs: readonly number[]): Transport;
  /**
   * A transport pointed at a closed port, with these options (`connectTimeoutMs`) and otherwise the
   * adapter's defaults: no shortened client retries, so the connect deadline is what ends the attempt.
   * Absent where there is no network connection to fail (memory).
   */
  createUnreachable?(options: Record<string, unknown>): Transport;
  /**
   * A transport whose publishes wait queued in the client long enough (a long linger, a full batch
   * window) that abandoning one at once withdraws it. Absent where nothing is ever queued in the client.
   */
  createHoldingPublishes?(): Transport;
}

/** The hooks the named transport's harness module exports, or none. */
export async function loadContractHooks(name: string): Promise<ContractHooks | undefined> {
  // Typed loosely on purpose: a harness that exports no hooks yet still loads, and its scenarios skip.
  let module: unknown;
  switch (name) {
    case 'memory':
      module = await import('../transports/memory.js');
      break;
    case 'rabbitmq':
      module = await import('../transports/rabbitmq.js');
      break;
    case 'kafka':
      module = await import('../transports/kafka.js');
      break;
    case 'sqs':
      module = await import('../transports/sqs.js');
      break;
    case 'nats':
      module = await import('../transports/nats.js');
      break;
    case 'sns':
      module = await import('../transports/sns.js');
      break;
    default:
      throw new Error(
        `unknown OMNIBUS_TRANSPORT ${JSON.stringify(name)} (memory, rabbitmq, kafka, sqs, sns, nats)`,
      );
  }
  return (module as { contractHooks?: ContractHooks }).contractHooks;
}
