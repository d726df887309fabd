/** The in-flight budget of a Kafka subscription: a saturated consumer resumes a quarter-budget at a time. */
import { type SubscribeSpec, silentLogger } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import type { BatchControl } from './driver.js';
import { resolveOptions } from './options.js';
import { KafkaSubscription, type SubscriptionDeps } from './subscription.js';

function subscription(maxInFlight: number): KafkaSubscription {
  const deps = {
    driver: undefined as never,
    options: resolveOptions({ brokers: ['127.0.0.1:9092'], heartbeatIntervalMs: 20_000 }),
    logger: silentLogger,
    produce: async () => {},
  } satisfies SubscriptionDeps;
  const spec: SubscribeSpec = { topic: 't', group: 'g', patterns: ['#'], maxInFlight };
  return new KafkaSubscription(deps, spec, () => {});
}

function control() {
  let heartbeats = 0;
  const c: BatchControl = {
    resolve: () => {},
    heartbeat: async () => {
      heartbeats++;
    },
    isActive: () => true,
  };
  return { c, heartbeats: () => heartbeats };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('KafkaSubscription in-flight budget', () => {
  it('hands out slots at once up to maxInFlight, then waits until a quarter of the budget is free', async () => {
    const sub = subscription(8);
    const { c, heartbeats } = control();
    for (let i = 0; i < 8; i++) expect(sub.acquire(c)).toBe(true);
    const waiting = sub.acquire(c);
    expect(waiting).toBeInstanceOf(Promise);
    let got: boolean | undefined;
    void (waiting as Promise<boolean>).then((v) => {
      got = v;
    });
    sub.settled();
    await tick();
    // One slot free is not a quarter of eight: the batch keeps waiting, without a heartbeat per settle.
    expect(got).toBeUndefined();
    expect(heartbeats()).toBe(0);
    sub.settled();
    await tick();
    expect(got).toBe(true);
    expect(heartbeats()).toBe(1);
    // The slot it took, and the one left free, which the batch takes synchronously.
    expect(sub.unsettled).toBe(7);
    expect(sub.acquire(c)).toBe(true);
    expect(sub.acquire(c)).toBeInstanceOf(Promise);
    await sub.close();
  });

  it('a budget of one resumes as soon as its message settles', async () => {
    const sub = subscription(1);
    const { c } = control();
    expect(sub.acquire(c)).toBe(true);
    const waiting = sub.acquire(c) as Promise<boolean>;
    sub.settled();
    await expect(waiting).resolves.toBe(true);
    await sub.close();
  });

  it('a waiting batch stops when the subscription pauses', async () => {
    const sub = subscription(2);
    const { c } = control();
    sub.acquire(c);
    sub.acquire(c);
    const waiting = sub.acquire(c) as Promise<boolean>;
    sub.pause();
    await expect(waiting).resolves.toBe(false);
    await sub.close();
  });
});
