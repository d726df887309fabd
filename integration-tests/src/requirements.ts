/** Which scenarios a transport's capabilities rule out, declared in one place. */
import type { Capabilities } from '@omnibus/core';
import type { TransportHarness } from './harness.js';

export type Scenario =
  | 'competing-consumers'
  | 'fan-out'
  | 'per-key-order'
  | 'broker-restart'
  | 'connection-drop'
  | 'replay';

export function unsupported(
  scenario: Scenario,
  caps: Capabilities,
  harness: TransportHarness,
): string | undefined {
  switch (scenario) {
    case 'competing-consumers':
      return caps.consumerGroups ? undefined : 'no consumer groups';
    case 'fan-out':
      return caps.fanOut ? undefined : 'no fan-out to several groups';
    case 'per-key-order':
      return caps.ordering === 'none' && !harness.orderedTopic ? 'keeps no order' : undefined;
    case 'connection-drop':
      return harness.dropConnections ? undefined : 'no hook to close connections from the broker side';
    case 'broker-restart':
      return harness.restart ? undefined : 'no broker restart hook';
    case 'replay':
      return caps.replay ? undefined : 'no replay';
  }
}
