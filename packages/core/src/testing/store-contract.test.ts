import { describe, expect, it } from 'vitest';
import type { IdempotencyStore } from '../idempotency.js';
import { memoryStore } from '../idempotency.js';
import { storeContract } from './index.js';

storeContract({ describe, it }, 'store contract: memoryStore', { create: () => memoryStore() });

describe('store contract: it can fail', () => {
  // A store that forgets completions: the suite must catch it, or it proves nothing.
  const forgetful = (): IdempotencyStore => {
    const inner = memoryStore();
    return {
      claim: (k, lease) => inner.claim(k, lease),
      complete: async () => {},
      release: (k) => inner.release(k),
    };
  };

  it('reports a store whose completions are lost', async () => {
    const registered: { name: string; body: () => Promise<void> }[] = [];
    storeContract(
      { describe: (_n, body) => body(), it: (name, body) => registered.push({ name, body }) },
      'forgetful',
      { create: forgetful },
    );
    const failures: string[] = [];
    for (const t of registered) await t.body().catch(() => failures.push(t.name));
    expect(failures).toContain('a completed key is done');
    expect(failures).toContain(
      'complete outlives the lease: the key stays done after the lease would have ended',
    );
  });

  it('reports a store that hands one key to two concurrent claimers', async () => {
    const registered: { name: string; body: () => Promise<void> }[] = [];
    const naive = (): IdempotencyStore => {
      const inner = memoryStore();
      return {
        // Steals a held lease: two concurrent claimers both get 'new'.
        claim: async (k, lease) => {
          const first = await inner.claim(k, lease);
          if (first !== 'held') return first;
          await inner.release(k);
          return inner.claim(k, lease);
        },
        complete: (k, ttl) => inner.complete(k, ttl),
        release: (k) => inner.release(k),
      };
    };
    storeContract(
      { describe: (_n, body) => body(), it: (name, body) => registered.push({ name, body }) },
      'naive',
      { create: naive },
    );
    const race = registered.find((t) => t.name.startsWith('concurrent claims'));
    await expect(race!.body()).rejects.toThrow(/concurrent claims/);
  });

  it('reports a shared store without fencing, and passes its replica cases', async () => {
    // Two "replicas" that are one memory store: shared, but a stale holder can complete over the new one.
    const shared = memoryStore();
    const registered: { name: string; body: () => Promise<void> }[] = [];
    storeContract(
      { describe: (_n, body) => body(), it: (name, body) => registered.push({ name, body }) },
      'shared memory',
      { create: () => shared, replica: () => shared, fencing: true, shortMs: 50 },
    );
    const failures: string[] = [];
    for (const t of registered) await t.body().catch(() => failures.push(t.name));
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.every((n) => n.startsWith('fencing:'))).toBe(true);
    expect(registered.some((t) => t.name.startsWith('a claim is held, and a completion done'))).toBe(true);
  });
});
