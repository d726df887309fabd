/**
 * The IdempotencyStore contract as a test suite any store can run: the memory store, and the shared
 * stores (Redis, PostgreSQL) with their cross-replica and fencing cases.
 *
 * It takes the test runner's `describe` and `it` rather than importing vitest, so this entry point
 * costs nothing at run time for users who do not test with vitest (or do not test at all). Assertions
 * throw plain errors that say what was expected.
 */
import type { IdempotencyStore } from '../idempotency.js';
import { uuidv7 } from '../uuid.js';

/** The two functions of a test runner the suite needs (vitest's, jest's and node:test's all fit). */
export interface ContractRunner {
  describe(name: string, body: () => void): unknown;
  it(name: string, body: () => Promise<void>, timeoutMs?: number): unknown;
}

export interface StoreContractOptions<S extends IdempotencyStore = IdempotencyStore> {
  /** A fresh store for one test. */
  create(): S | Promise<S>;
  /**
   * Another store on the same backend, as a second replica would build it. When given, the
   * cross-replica cases run (a claim is seen by every replica, one replica takes over another's lease).
   */
  replica?: () => S | Promise<S>;
  /** Closes what `create`/`replica` opened (called for every store a test made, even when it failed). */
  dispose?: (store: S) => void | Promise<void>;
  /**
   * The store fences its claims: a holder whose lease expired and was taken by another cannot complete
   * over the new holder (`complete` rejects) nor drop its claim (`release` is a no-op). Needs `replica`.
   */
  fencing?: boolean;
  /** A lease or ttl short enough to watch expire (default 150 ms). */
  shortMs?: number;
  /** How long to wait for a short lease to expire before failing (default 10 s). */
  expiryTimeoutMs?: number;
  /** Per-test timeout handed to `it` (default 30 s). */
  testTimeoutMs?: number;
}

const LONG_MS = 60_000;

/** Registers the contract's tests under `describe(name)`. */
export function storeContract<S extends IdempotencyStore>(
  runner: ContractRunner,
  name: string,
  options: StoreContractOptions<S>,
): void {
  const shortMs = options.shortMs ?? 150;
  const expiryTimeoutMs = options.expiryTimeoutMs ?? 10_000;
  const testTimeoutMs = options.testTimeoutMs ?? 30_000;

  /** Runs a test with stores it can open; every store opened is disposed afterwards. */
  const test = (title: string, body: (open: Opener<S>) => Promise<void>) =>
    runner.it(
      title,
      async () => {
        const opened: S[] = [];
        const open: Opener<S> = {
          store: async () => track(opened, await options.create()),
          replica: async () => {
            if (!options.replica) throw new Error('store contract: this case needs options.replica');
            return track(opened, await options.replica());
          },
        };
        try {
          await body(open);
        } finally {
          for (const s of opened) await options.dispose?.(s);
        }
      },
      testTimeoutMs,
    );

  // Each test uses its own keys, so suites on one shared backend never collide.
  const key = (label: string) => `contract-${label}:${uuidv7()}`;

  /** Claims `k` until it comes back 'new' (its lease or ttl ran out); fails after the deadline. */
  async function untilClaimable(store: IdempotencyStore, k: string, leaseMs = LONG_MS): Promise<void> {
    const deadline = Date.now() + expiryTimeoutMs;
    let last: string | undefined;
    while (Date.now() < deadline) {
      last = await store.claim(k, leaseMs);
      if (last === 'new') return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`store contract: ${k} was still '${last}' after ${expiryTimeoutMs} ms`);
  }

  /**
   * Waits until a lease of `shortMs` taken now has run out on the store's own clock, by watching a
   * sentinel key claimed at the same moment (no fixed sleep, and right even when the backend's clock
   * is not this process's).
   */
  async function shortLeasePassed(store: IdempotencyStore): Promise<void> {
    const sentinel = key('sentinel');
    equal(await store.claim(sentinel, shortMs), 'new', 'sentinel claim');
    await untilClaimable(store, sentinel);
  }

  runner.describe(name, () => {
    test('an unknown key is new, then held while its lease lasts', async (open) => {
      const store = await open.store();
      const k = key('held');
      equal(await store.claim(k, LONG_MS), 'new', 'first claim');
      equal(await store.claim(k, LONG_MS), 'held', 'second claim');
    });

    test('a completed key is done', async (open) => {
      const store = await open.store();
      const k = key('done');
      equal(await store.claim(k, LONG_MS), 'new', 'claim');
      await store.complete(k, LONG_MS);
      equal(await store.claim(k, LONG_MS), 'done', 'claim after complete');
      equal(await store.claim(k, LONG_MS), 'done', 'claim after complete, again');
    });

    test('a released key can be claimed again', async (open) => {
      const store = await open.store();
      const k = key('released');
      equal(await store.claim(k, LONG_MS), 'new', 'claim');
      await store.release(k);
      equal(await store.claim(k, LONG_MS), 'new', 'claim after release');
      equal(await store.claim(k, LONG_MS), 'held', 'claim after the new claim');
    });

    test('release after complete leaves the key done', async (open) => {
      const store = await open.store();
      const k = key('release-done');
      await store.claim(k, LONG_MS);
      await store.complete(k, LONG_MS);
      await store.release(k);
      equal(await store.claim(k, LONG_MS), 'done', 'claim after complete then release');
    });

    test('release of a key never claimed changes nothing', async (open) => {
      const store = await open.store();
      const other = key('other');
      equal(await store.claim(other, LONG_MS), 'new', 'claim of another key');
      await store.release(key('never-claimed'));
      equal(await store.claim(other, LONG_MS), 'held', 'the other key after the stray release');
    });

    test('keys are independent', async (open) => {
      const store = await open.store();
      const a = key('a');
      const b = key('b');
      equal(await store.claim(a, LONG_MS), 'new', 'claim a');
      equal(await store.claim(b, LONG_MS), 'new', 'claim b');
      await store.complete(a, LONG_MS);
      equal(await store.claim(b, LONG_MS), 'held', 'b after a completed');
      await store.release(b);
      equal(await store.claim(a, LONG_MS), 'done', 'a after b released');
    });

    test('keys with colons, spaces and non-ASCII characters are kept apart', async (open) => {
      const store = await open.store();
      const base = key('chars');
      const keys = [`${base}:a:b`, `${base}:a`, `${base}: a`, `${base}:ä`, `${base}:a🙂`, `${base}:*`];
      for (const k of keys) equal(await store.claim(k, LONG_MS), 'new', `claim ${k}`);
      await store.complete(keys[0]!, LONG_MS);
      equal(await store.claim(keys[1]!, LONG_MS), 'held', 'a key that is a prefix of a completed one');
    });

    test('an expired lease can be claimed again (its holder crashed)', async (open) => {
      const store = await open.store();
      const k = key('lease');
      equal(await store.claim(k, shortMs), 'new', 'claim with a short lease');
      await untilClaimable(store, k);
      equal(await store.claim(k, LONG_MS), 'held', 'claim after the takeover');
    });

    test('a completed key is forgotten after its ttl', async (open) => {
      const store = await open.store();
      const k = key('ttl');
      equal(await store.claim(k, LONG_MS), 'new', 'claim');
      await store.complete(k, shortMs);
      equal(await store.claim(k, LONG_MS), 'done', 'claim right after complete');
      await untilClaimable(store, k);
    });

    test('complete outlives the lease: the key stays done after the lease would have ended', async (open) => {
      const store = await open.store();
      const k = key('outlive');
      equal(await store.claim(k, shortMs), 'new', 'claim with a short lease');
      await store.complete(k, LONG_MS);
      await shortLeasePassed(store);
      equal(await store.claim(k, LONG_MS), 'done', 'claim once the lease has passed');
    });

    test('a holder past its lease that nobody took over can still complete', async (open) => {
      const store = await open.store();
      const k = key('late');
      equal(await store.claim(k, shortMs), 'new', 'claim with a short lease');
      await shortLeasePassed(store);
      await store.complete(k, LONG_MS);
      equal(await store.claim(k, LONG_MS), 'done', 'claim after the late complete');
    });

    test('concurrent claims of one key: exactly one is new', async (open) => {
      const stores = [await open.store()];
      if (options.replica) stores.push(await open.replica());
      const k = key('race');
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => stores[i % stores.length]!.claim(k, LONG_MS)),
      );
      const fresh = results.filter((r) => r === 'new').length;
      if (fresh !== 1 || results.some((r) => r === 'done')) {
        throw new Error(`store contract: 24 concurrent claims gave ${JSON.stringify(results)}`);
      }
    });

    if (options.replica) {
      test('a claim is held, and a completion done, for every replica', async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('shared');
        equal(await a.claim(k, LONG_MS), 'new', 'claim on replica A');
        equal(await b.claim(k, LONG_MS), 'held', 'claim on replica B while A holds it');
        await a.complete(k, LONG_MS);
        equal(await b.claim(k, LONG_MS), 'done', 'claim on replica B after A completed');
      });

      test("a replica takes over another's expired lease", async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('takeover');
        equal(await a.claim(k, shortMs), 'new', 'claim on A with a short lease');
        await untilClaimable(b, k);
        await b.complete(k, LONG_MS);
        equal(await a.claim(k, LONG_MS), 'done', 'claim on A after B completed');
      });
    }

    if (options.fencing) {
      test("fencing: a replica's release does not drop another replica's claim", async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('foreign-release');
        equal(await a.claim(k, LONG_MS), 'new', 'claim on A');
        await b.release(k);
        equal(await b.claim(k, LONG_MS), 'held', 'claim on B after its stray release');
      });
      test('fencing: a holder whose lease was taken over cannot complete over the new holder', async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('fenced');
        equal(await a.claim(k, shortMs), 'new', 'claim on A with a short lease');
        await untilClaimable(b, k);
        let rejected: unknown;
        await a.complete(k, LONG_MS).catch((err: unknown) => {
          rejected = err;
        });
        if (!rejected) throw new Error("store contract: A's complete after B took over did not reject");
        // B's claim stands: still held for everyone, and B can complete it.
        equal(await a.claim(k, LONG_MS), 'held', 'claim on A after its rejected complete');
        await b.complete(k, LONG_MS);
        equal(await a.claim(k, LONG_MS), 'done', 'claim on A after B completed');
      });

      test('fencing: a holder whose lease was taken over cannot release the new holder', async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('fenced-release');
        equal(await a.claim(k, shortMs), 'new', 'claim on A with a short lease');
        await untilClaimable(b, k);
        await a.release(k);
        equal(await a.claim(k, LONG_MS), 'held', "claim after A's stale release");
      });

      test('fencing: a stale complete does not turn a later completion into something else', async (open) => {
        const a = await open.store();
        const b = await open.replica();
        const k = key('fenced-done');
        equal(await a.claim(k, shortMs), 'new', 'claim on A with a short lease');
        await untilClaimable(b, k);
        await b.complete(k, LONG_MS);
        const stale = await a.complete(k, shortMs).then(
          () => 'resolved',
          () => 'rejected',
        );
        equal(stale, 'rejected', "A's complete after B completed");
        // A's short ttl must not have replaced B's completion.
        await shortLeasePassed(a);
        equal(await a.claim(k, LONG_MS), 'done', 'claim after the stale complete');
      });
    }
  });
}

interface Opener<S> {
  store(): Promise<S>;
  replica(): Promise<S>;
}

function track<S>(list: S[], store: S): S {
  list.push(store);
  return store;
}

function equal(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) {
    throw new Error(`store contract: ${what}: expected '${String(expected)}', got '${String(actual)}'`);
  }
}
