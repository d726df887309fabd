/** Which contract scenarios a transport's capabilities or harness rule out, declared in one place. */
import type { Capabilities } from '@omnibus/core';
import type { ContractHooks } from './hooks.js';

export type ContractScenario =
  | 'chained-delay'
  | 'withdrawn-publish'
  | 'connect-deadline'
  | 'reject-unroutable'
  | 'refuse-reject-option';

export function unsupported(
  scenario: ContractScenario,
  caps: Capabilities,
  hooks: ContractHooks | undefined,
): string | undefined {
  switch (scenario) {
    case 'chained-delay':
      if (caps.delayTiersMs.length === 0) return 'delays exactly (no tiers to chain through)';
      return hooks?.createWithDelayTiers ? undefined : 'has no harness hook to shorten its delay tiers';
    case 'withdrawn-publish':
      return hooks?.createHoldingPublishes ? undefined : 'never holds a publish queued in the client';
    case 'connect-deadline':
      return hooks?.createUnreachable ? undefined : 'has no network connection that could fail';
    case 'reject-unroutable':
      if (!caps.rejectsUnroutable) return 'cannot tell an unroutable publish (refuses the option instead)';
      return hooks ? undefined : 'has no harness hook to pass options';
    case 'refuse-reject-option':
      if (caps.rejectsUnroutable) return 'rejects unroutable publishes (tested instead)';
      return hooks ? undefined : 'has no harness hook to pass options';
  }
}
