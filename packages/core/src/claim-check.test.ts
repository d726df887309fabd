/** Claim check on the memory transport: large payloads by reference, deletion policy, unavailable payloads dead-lettered. */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Bus, connect } from './bus.js';
import { CLAIM_CHECK_HEADER, claimCheck, MemoryPayloadStore, type PayloadStore } from './claim-check.js';
import { ControlHeader } from './envelope.js';
import { ConfigError, ErrorCode } from './errors.js';
import { PublishDeadline } from './kit/publish.js';
import { memoryBroker, memoryTransport } from './memory/transport.js';
import { defineMessage } from './message.js';
import { eventually } from './testing/index.js';

const Blob = defineMessage({
  type: 'blob.stored',
  schema: z.object({ text: z.string(), n: z.number().int() }),
});

const LIMIT = 64 * 1024;
const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 2000 })));
});

async function setup(store: PayloadStore, extra: { deleteAfterAck?: boolean; thresholdBytes?: number } = {}) {
  const broker = `cc-${randomUUID()}`;
  const transport = claimCheck(memoryTransport({ name: broker, maxMessageBytes: LIMIT }), {
    store,
    ...extra,
  });
  const bus = await connect({ transport, service: 'svc' });
  buses.push(bus);
  return { bus, broker, transport, topic: `t-${randomUUID().slice(0, 8)}` };
}

/** Counts store calls; optionally loses every object (as if it had expired) or fails reads. */
class SpyStore extends MemoryPayloadStore {
  puts = 0;
  gets = 0;
  deletes = 0;
  constructor(private readonly mode: 'ok' | 'lose' | 'fail' = 'ok') {
    super();
  }
  override async put(key: string, body: Uint8Array) {
    this.puts++;
    if (this.mode !== 'lose') await super.put(key, body);
  }
  override async get(key: string) {
    this.gets++;
    if (this.mode === 'fail') throw new Error('store unreachable');
    return super.get(key);
  }
  override async delete(key: string) {
    this.deletes++;
    await super.delete(key);
  }
}

describe('claim check', () => {
  it('a message over the limit travels by reference and reaches the handler whole; small ones travel as they are', async () => {
    const store = new SpyStore();
    const { bus, broker, transport, topic } = await setup(store);
    expect(transport.capabilities.maxMessageBytes).toBe(store.maxObjectBytes);
    const seen: { text: string; n: number }[] = [];
    await bus.subscribe({
      topic,
      group: 'g',
      handlers: { [Blob.type]: Blob.handle((d) => void seen.push(d)) },
    });
    const big = 'x'.repeat(5 * 1024 * 1024);
    await bus.publish(topic, Blob, { text: big, n: 1 });
    await bus.publish(topic, Blob, { text: 'small', n: 2 });
    await eventually(() => seen.length === 2, { what: 'both messages handled' });
    expect(seen.find((d) => d.n === 1)?.text).toBe(big);
    expect(seen.find((d) => d.n === 2)?.text).toBe('small');
    expect(store.puts).toBe(1);
    // What the broker carried: one small reference with the marker header, one plain message.
    const log = memoryBroker(broker).topic(topic).log;
    expect(log.map((w) => w.headers[CLAIM_CHECK_HEADER] !== undefined)).toEqual([true, false]);
    expect(log[0]!.body.byteLength).toBeLessThan(1024);
    // Fan-out transport: another group may still need the payload, so it is not deleted.
    expect(store.deletes).toBe(0);
    expect(store.size).toBe(1);
  });

  it('deletes the payload after the ack when told to', async () => {
    const store = new SpyStore();
    const { bus, topic } = await setup(store, { deleteAfterAck: true });
    let handled = 0;
    await bus.subscribe({ topic, group: 'g', handlers: { [Blob.type]: Blob.handle(() => void handled++) } });
    await bus.publish(topic, Blob, { text: 'y'.repeat(200_000), n: 1 });
    await eventually(() => handled === 1 && store.size === 0, { what: 'handled and deleted' });
    expect(store.deletes).toBe(1);
  });

  it('retries keep the reference: the payload is fetched again for the next attempt', async () => {
    const store = new SpyStore();
    const { bus, topic } = await setup(store, { deleteAfterAck: true });
    let calls = 0;
    await bus.subscribe({
      topic,
      group: 'g',
      // A delay above the in-process limit: the retry goes through the transport, reference and all.
      retry: { attempts: 3, backoff: { initialMs: 50, maxMs: 50 }, inProcessMaxDelayMs: 0 },
      handlers: {
        [Blob.type]: Blob.handle((d) => {
          calls++;
          expect(d.text.length).toBe(100_000);
          if (calls === 1) throw new Error('once');
        }),
      },
    });
    await bus.publish(topic, Blob, { text: 'z'.repeat(100_000), n: 1 });
    await eventually(() => calls === 2 && store.size === 0, { what: 'second attempt handled, then deleted' });
    expect(store.gets).toBe(2);
  });

  for (const [mode, reason] of [
    ['lose', /not found in store "memory"/],
    ['fail', /could not be read from store "memory": store unreachable/],
  ] as const) {
    it(`a payload that is ${mode === 'lose' ? 'missing' : 'unreadable'} dead-letters the message with reason claim-check; the consumer keeps going`, async () => {
      const store = new SpyStore(mode);
      const { bus, broker, topic } = await setup(store);
      const seen: number[] = [];
      await bus.subscribe({
        topic,
        group: 'g',
        handlers: { [Blob.type]: Blob.handle((d) => void seen.push(d.n)) },
      });
      await bus.publish(topic, Blob, { text: 'q'.repeat(100_000), n: 1 });
      await bus.publish(topic, Blob, { text: 'fine', n: 2 });
      const dead = await eventually(() => memoryBroker(broker).deadLetters(topic, 'g')[0], {
        what: 'a dead letter',
      });
      expect(dead.headers[ControlHeader.reason]).toBe('claim-check');
      expect(dead.headers[ControlHeader.error]).toMatch(reason);
      expect(dead.headers[ControlHeader.originalGroup]).toBe('g');
      // The dead letter is still the reference, so the payload can be restored and redriven by hand.
      expect(dead.headers[CLAIM_CHECK_HEADER]).toMatch(/^omnibus-claim-check\//);
      await eventually(() => seen.includes(2), { what: 'the next message handled' });
      expect(seen).toEqual([2]);
    });
  }

  it('refuses a payload over the store limit with TOO_LARGE, and a bad threshold with a ConfigError', async () => {
    const store = new MemoryPayloadStore(100_000);
    const { bus, topic } = await setup(store);
    await expect(bus.publish(topic, Blob, { text: 'w'.repeat(200_000), n: 1 })).rejects.toMatchObject({
      code: ErrorCode.TOO_LARGE,
    });
    expect(() => claimCheck(memoryTransport(), { store, thresholdBytes: 0 })).toThrow(ConfigError);
    expect(() => claimCheck(memoryTransport(), { store: undefined as never })).toThrow(ConfigError);
  });

  it('the default threshold leaves headroom under the inner limit; an explicit one wins', () => {
    const store = new MemoryPayloadStore();
    const t = claimCheck(memoryTransport({ maxMessageBytes: LIMIT }), { store }) as unknown as {
      thresholdBytes: number;
    };
    expect(t.thresholdBytes).toBe(LIMIT - 8192);
    const small = claimCheck(memoryTransport({ maxMessageBytes: 4096 }), { store }) as unknown as {
      thresholdBytes: number;
    };
    expect(small.thresholdBytes).toBe(4096 - 512);
    const explicit = claimCheck(memoryTransport(), { store, thresholdBytes: 1000 }) as unknown as {
      thresholdBytes: number;
    };
    expect(explicit.thresholdBytes).toBe(1000);
  });

  it('a publish given up while its payload is being stored is withdrawn: the broker never sees it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    class SlowStore extends MemoryPayloadStore {
      override async put(key: string, body: Uint8Array) {
        await gate;
        await super.put(key, body);
      }
    }
    const broker = `cc-${randomUUID()}`;
    const t = claimCheck(memoryTransport({ name: broker, maxMessageBytes: LIMIT }), {
      store: new SlowStore(),
    });
    const topic = `t-${randomUUID().slice(0, 8)}`;
    const wire = t.encode({
      id: randomUUID(),
      type: 'blob.stored',
      source: 'svc',
      time: Date.now(),
      correlationId: 'c',
      version: 1,
      contentType: 'application/octet-stream',
      headers: {},
      data: new Uint8Array(LIMIT * 2),
    });
    const call = new PublishDeadline(Date.now() + 60_000);
    const sent = t.publish(topic, [wire], call);
    expect(call.abandon()).toBe('withdrawn');
    release();
    await expect(sent).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
    expect(memoryBroker(broker).topic(topic).log).toHaveLength(0);
  });
});
