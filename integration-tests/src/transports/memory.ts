/** The memory transport's harness: the broker is in-process, so "raw client" access is the broker object. */
import { memoryBroker, memoryTransport } from '@omnibus/core';
import type { ContractHooks } from '../contract/hooks.js';
import type { TransportHarness } from '../harness.js';

const BROKER = 'conformance';

export const harness: TransportHarness = {
  name: 'memory',
  async setup() {},
  async teardown() {},
  create: () => memoryTransport({ name: BROKER }),
  createUnreachable() {
    // A memory transport that never connected behaves like a closed port: every publish is refused.
    const t = memoryTransport({ name: BROKER });
    t.connect = async () => {
      throw new Error('connect ECONNREFUSED (memory transport configured as unreachable)');
    };
    return t;
  },
  async readDeadLetters(topic, group, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = memoryBroker(BROKER).deadLetters(topic, group);
      if (found.length >= count || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  async publishRaw(topic, body, options = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.type) headers.ce_type = options.type;
    memoryBroker(BROKER).publish(topic, { body, headers, key: options.key });
  },
};

/** Hooks for the transport contract suite (src/contract): the same broker, with adapter options added. */
export const contractHooks: ContractHooks = {
  createWith: (options) => memoryTransport({ name: BROKER, ...options }),
};
