import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, connect } from '../bus.js';
import { NonRetryableError } from '../errors.js';
import { memoryStore } from '../idempotency.js';
import { memoryTransport } from '../memory/transport.js';
import { capturePublished, eventually, recordOutcomes, waitForDeadLetter, waitForHandled } from './index.js';

const buses: Bus[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 1000 })));
});

async function setup() {
  const bus = await connect({
    transport: memoryTransport({ name: `testing-${randomUUID()}` }),
    service: 'svc',
  });
  buses.push(bus);
  await bus.subscribe({
    topic: 't',
    group: 'g',
    retry: { attempts: 1 },
    handlers: {
      ok: () => {},
      bad: () => {
        throw new NonRetryableError('bad message');
      },
    },
  });
  return bus;
}

describe('recordOutcomes', () => {
  it('records handled and dead-lettered outcomes; settled() waits for all the ids', async () => {
    const bus = await setup();
    const rec = recordOutcomes(bus);
    const a = await bus.publish('t', { type: 'ok', data: 1 });
    const b = await bus.publish('t', { type: 'bad', data: 1 });
    await rec.settled([a.id, b.id]);
    expect(rec.handled().map((o) => (o as { envelope: { id: string } }).envelope.id)).toEqual([a.id]);
    expect(rec.deadLettered().map((o) => [o.id, o.reason, o.error])).toEqual([
      [b.id, 'non-retryable', 'bad message'],
    ]);
    expect(rec.outcomes).toHaveLength(2);
  });

  it('settled() resolves at once for ids already settled', async () => {
    const bus = await setup();
    const rec = recordOutcomes(bus);
    const a = await bus.publish('t', { type: 'ok', data: 1 });
    await rec.settled([a.id]);
    await rec.settled([a.id], { timeoutMs: 1 });
    await rec.settled([]);
  });

  it('settled() rejects after its deadline, saying how many are missing', async () => {
    const bus = await setup();
    const rec = recordOutcomes(bus);
    const a = await bus.publish('t', { type: 'ok', data: 1 });
    await expect(rec.settled([a.id, 'never-published'], { timeoutMs: 100 })).rejects.toThrow(
      /timed out after 100 ms waiting for 1 message\(s\) to be handled or dead-lettered/,
    );
  });

  it('a duplicate does not count as settled', async () => {
    const bus = await connect({
      transport: memoryTransport({ name: `testing-${randomUUID()}` }),
      service: 'svc',
    });
    buses.push(bus);
    await bus.subscribe({
      topic: 't',
      group: 'g',
      idempotency: { store: memoryStore() },
      handlers: { ok: () => {} },
    });
    const first = recordOutcomes(bus);
    const { id } = await bus.publish('t', { type: 'ok', data: 1 });
    await first.settled([id]);
    const later = recordOutcomes(bus);
    await bus.publish('t', { type: 'ok', data: 1 }, { id });
    await later.until((o) => o.some((x) => x.kind === 'duplicate'));
    await expect(later.settled([id], { timeoutMs: 50 })).rejects.toThrow(/timed out/);
  });

  it('until() resolves when the predicate holds and rejects after the deadline', async () => {
    const bus = await setup();
    const rec = recordOutcomes(bus);
    const waiting = rec.until((o) => o.length === 2, { timeoutMs: 5000 });
    await bus.publish('t', { type: 'ok', data: 1 });
    await bus.publish('t', { type: 'ok', data: 2 });
    await waiting;
    await expect(rec.until((o) => o.length === 3, { timeoutMs: 50, what: 'a third' })).rejects.toThrow(
      'timed out after 50 ms waiting for a third (2 seen)',
    );
  });

  it('stop() stops recording', async () => {
    const bus = await setup();
    const rec = recordOutcomes(bus);
    const other = recordOutcomes(bus);
    rec.stop();
    const a = await bus.publish('t', { type: 'ok', data: 1 });
    await other.settled([a.id]);
    expect(rec.outcomes).toHaveLength(0);
  });
});

describe('waitForHandled / waitForDeadLetter', () => {
  it('resolve with the outcome of that message', async () => {
    const bus = await setup();
    const ok = await bus.publish('t', { type: 'ok', data: 1 });
    const handled = waitForHandled(bus, ok.id);
    const bad = await bus.publish('t', { type: 'bad', data: 1 });
    const dead = waitForDeadLetter(bus, bad.id);
    expect(await handled).toMatchObject({ kind: 'handled', attempt: 1 });
    expect(await dead).toMatchObject({
      kind: 'dead-lettered',
      id: bad.id,
      reason: 'non-retryable',
      error: 'bad message',
    });
  });

  it('ignore other messages and reject after the deadline', async () => {
    const bus = await setup();
    const handled = waitForHandled(bus, 'other-id', { timeoutMs: 200 });
    const dead = waitForDeadLetter(bus, 'other-id', { timeoutMs: 200 });
    await bus.publish('t', { type: 'ok', data: 1 });
    await bus.publish('t', { type: 'bad', data: 1 });
    await expect(handled).rejects.toThrow(
      'timed out after 200 ms waiting for message other-id to be handled',
    );
    await expect(dead).rejects.toThrow('waiting for message other-id to be dead-lettered');
  });
});

describe('capturePublished', () => {
  it('captures every published envelope with its topic until stopped', async () => {
    const bus = await setup();
    const cap = capturePublished(bus);
    const a = await bus.publish('t', { type: 'ok', data: { n: 1 } }, { key: 'k' });
    await bus.publish('other', { type: 'ok', data: 2 });
    cap.stop();
    await bus.publish('t', { type: 'ok', data: 3 });
    expect(cap.messages.map((m) => [m.topic, m.envelope.data])).toEqual([
      ['t', { n: 1 }],
      ['other', 2],
    ]);
    expect(cap.messages[0]!.envelope).toMatchObject({ id: a.id, key: 'k', type: 'ok' });
  });
});

describe('eventually', () => {
  it('returns the first truthy value', async () => {
    let n = 0;
    const v = await eventually(() => (++n >= 3 ? { n } : undefined), { intervalMs: 1 });
    expect(v).toEqual({ n: 3 });
  });

  it('accepts async conditions and retries through errors', async () => {
    let n = 0;
    const v = await eventually(
      async () => {
        n++;
        if (n < 3) throw new Error('not yet');
        return 'ready';
      },
      { intervalMs: 1 },
    );
    expect(v).toBe('ready');
  });

  it('rejects after the deadline, naming what it waited for and the last error', async () => {
    await expect(
      eventually(
        () => {
          throw new Error('broker says no');
        },
        { timeoutMs: 30, intervalMs: 5, what: 'the queue' },
      ),
    ).rejects.toThrow('timed out waiting for the queue: last error broker says no');
    await expect(eventually(() => false, { timeoutMs: 30, intervalMs: 5 })).rejects.toThrow(
      /^timed out waiting for condition$/,
    );
  });
});
