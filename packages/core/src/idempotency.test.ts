import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { MemoryIdempotencyStore, memoryStore } from './idempotency.js';

/** A store on a clock the test moves by hand. */
function clocked(options: { ttlMs?: number; maxEntries?: number } = {}) {
  const clock = { now: 1_000_000 };
  const store = memoryStore({ ...options, now: () => clock.now });
  return { clock, store };
}

describe('MemoryIdempotencyStore', () => {
  it('claim: an unknown key is new, then held while leased', async () => {
    const { store } = clocked();
    expect(await store.claim('g:1', 1000)).toBe('new');
    expect(await store.claim('g:1', 1000)).toBe('held');
    expect(await store.claim('g:2', 1000)).toBe('new');
  });

  it('claim after complete is done', async () => {
    const { store } = clocked();
    await store.claim('g:1', 1000);
    await store.complete('g:1', 60_000);
    expect(await store.claim('g:1', 1000)).toBe('done');
  });

  it('a lease that expired can be claimed again (the first holder crashed)', async () => {
    const { clock, store } = clocked();
    expect(await store.claim('k', 1000)).toBe('new');
    clock.now += 999;
    expect(await store.claim('k', 1000)).toBe('held');
    clock.now += 1;
    expect(await store.claim('k', 1000)).toBe('new');
    // The new claim has its own lease, counted from now.
    clock.now += 999;
    expect(await store.claim('k', 1000)).toBe('held');
    expect(store.size).toBe(1);
  });

  it('complete remembers the key for ttlMs, then forgets it', async () => {
    const { clock, store } = clocked();
    await store.claim('k', 1000);
    await store.complete('k', 5000);
    clock.now += 4999;
    expect(await store.claim('k', 1000)).toBe('done');
    clock.now += 1;
    expect(await store.claim('k', 1000)).toBe('new');
  });

  it('complete without a ttl uses the store ttlMs', async () => {
    const { clock, store } = clocked({ ttlMs: 2000 });
    expect(store.ttlMs).toBe(2000);
    await store.claim('k', 100);
    await store.complete('k');
    clock.now += 1999;
    expect(await store.claim('k', 100)).toBe('done');
    clock.now += 1;
    expect(await store.claim('k', 100)).toBe('new');
  });

  it('complete works on a key that was never claimed', async () => {
    const { store } = clocked();
    await store.complete('k', 1000);
    expect(await store.claim('k', 1000)).toBe('done');
  });

  it('release drops a held claim so a redelivery can run the handler', async () => {
    const { store } = clocked();
    await store.claim('k', 1000);
    await store.release('k');
    expect(store.size).toBe(0);
    expect(await store.claim('k', 1000)).toBe('new');
  });

  it('release never drops a completed key', async () => {
    const { store } = clocked();
    await store.claim('k', 1000);
    await store.complete('k', 60_000);
    await store.release('k');
    expect(await store.claim('k', 1000)).toBe('done');
    expect(store.size).toBe(1);
  });

  it('release of an unknown key is harmless', async () => {
    const { store } = clocked();
    await store.release('nope');
    expect(store.size).toBe(0);
  });

  it('claimSync answers like claim', () => {
    const { store } = clocked();
    expect(store.claimSync('k', 1000)).toBe('new');
    expect(store.claimSync('k', 1000)).toBe('held');
  });

  it('two claims at once: exactly one is new', async () => {
    const store = memoryStore();
    const results = await Promise.all(Array.from({ length: 10 }, () => store.claim('g:same', 5000)));
    expect(results.filter((r) => r === 'new')).toHaveLength(1);
    expect(results.filter((r) => r === 'held')).toHaveLength(9);
  });

  describe('bounded by maxEntries', () => {
    it('never holds more than maxEntries keys', async () => {
      const { store } = clocked({ maxEntries: 3 });
      for (let i = 0; i < 10; i++) await store.claim(`k${i}`, 60_000);
      expect(store.size).toBe(3);
    });

    it('forgets the oldest entries first when none expired', async () => {
      const { store } = clocked({ maxEntries: 3 });
      for (const k of ['a', 'b', 'c', 'd']) await store.claim(k, 60_000);
      expect(store.size).toBe(3);
      // 'a' was forgotten: it is new again; b, c, d are still held.
      expect(await store.claim('b', 60_000)).toBe('held');
      expect(await store.claim('c', 60_000)).toBe('held');
      expect(await store.claim('d', 60_000)).toBe('held');
      expect(await store.claim('a', 60_000)).toBe('new');
    });

    it('evicts expired entries before older live ones', async () => {
      const { clock, store } = clocked({ maxEntries: 3 });
      await store.claim('old-live', 60_000);
      await store.claim('short', 10);
      await store.claim('live', 60_000);
      clock.now += 11; // 'short' expired; 'old-live' is the oldest but still leased
      await store.claim('new', 60_000);
      expect(store.size).toBe(3);
      expect(await store.claim('old-live', 60_000)).toBe('held');
      expect(await store.claim('live', 60_000)).toBe('held');
      expect(await store.claim('new', 60_000)).toBe('held');
    });

    it('evicts only as many expired entries as needed', async () => {
      const { clock, store } = clocked({ maxEntries: 3 });
      await store.claim('x1', 10);
      await store.claim('x2', 10);
      await store.claim('live', 60_000);
      clock.now += 11;
      await store.claim('new', 60_000);
      // One eviction made room: x1 (the first expired) went, x2 stays until room is needed.
      expect(store.size).toBe(3);
    });

    it('an entry that expires exactly now is evicted before older live ones', async () => {
      const { clock, store } = clocked({ maxEntries: 2 });
      await store.claim('live', 60_000);
      await store.claim('short', 10);
      clock.now += 10;
      await store.claim('new', 60_000);
      expect(await store.claim('live', 60_000)).toBe('held');
      expect(await store.claim('new', 60_000)).toBe('held');
    });

    it('keeps evicting expired entries first as time goes on', async () => {
      const { clock, store } = clocked({ maxEntries: 3 });
      // A claim that is released leaves nothing behind.
      await store.claim('tmp', 5);
      await store.release('tmp');
      await store.claim('p', 1000);
      await store.claim('q', 1000);
      await store.claim('short', 20);
      clock.now += 6;
      // Nothing has expired yet: the oldest ('p') makes room.
      await store.claim('n1', 1000);
      expect(store.size).toBe(3);
      clock.now += 15;
      // Now 'short' has expired: it goes, although 'q' is older.
      await store.claim('n2', 1000);
      expect(await store.claim('q', 1000)).toBe('held');
      expect(await store.claim('n1', 1000)).toBe('held');
      expect(await store.claim('n2', 1000)).toBe('held');
      expect(await store.claim('p', 1000)).toBe('new');
    });

    it('re-claiming an expired key makes it the newest', async () => {
      const { clock, store } = clocked({ maxEntries: 2 });
      await store.claim('a', 10);
      await store.claim('b', 60_000);
      clock.now += 10;
      expect(await store.claim('a', 60_000)).toBe('new');
      await store.claim('c', 60_000);
      // 'b' is now the oldest, so it made room, not the re-claimed 'a'.
      expect(await store.claim('a', 60_000)).toBe('held');
      expect(await store.claim('b', 60_000)).toBe('new');
    });

    it('complete moves a key to the newest end of the eviction order', async () => {
      const { store } = clocked({ maxEntries: 2 });
      await store.claim('a', 60_000);
      await store.claim('b', 60_000);
      await store.complete('a', 60_000); // a is now newer than b
      await store.claim('c', 60_000);
      expect(await store.claim('a', 60_000)).toBe('done');
      expect(await store.claim('b', 60_000)).toBe('new');
    });
  });

  describe('options', () => {
    it('defaults to a 24 h ttl and 100 000 entries', () => {
      const store = new MemoryIdempotencyStore();
      expect(store.ttlMs).toBe(86_400_000);
      expect(store.maxEntries).toBe(100_000);
    });

    it.each([
      [{ ttlMs: 0 }, 'ttlMs'],
      [{ ttlMs: -5 }, 'ttlMs'],
      [{ ttlMs: Number.NaN }, 'ttlMs'],
      [{ ttlMs: Number.POSITIVE_INFINITY }, 'ttlMs'],
      [{ maxEntries: 0 }, 'maxEntries'],
      [{ maxEntries: 1.5 }, 'maxEntries'],
    ])('rejects %o naming the field', (options, field) => {
      let error: unknown;
      try {
        memoryStore(options);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field).toBe(field);
      expect((error as ConfigError).message).toMatch(
        /^(ttlMs: must be a positive number|maxEntries: must be a positive integer)$/,
      );
    });

    it('accepts the smallest valid bounds', () => {
      const store = memoryStore({ ttlMs: 1, maxEntries: 1 });
      expect(store.maxEntries).toBe(1);
    });
  });
});
