/** Readiness with an end-to-end canary on the real broker OMNIBUS_TRANSPORT names. */
import { randomBytes } from 'node:crypto';
import { type Bus, connect, healthCheck } from '@omnibus/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHarness } from '../load-harness.js';

const harness = await loadHarness();
let bus: Bus | undefined;
beforeAll(() => harness.setup());
afterAll(async () => {
  await bus?.close({ drainTimeoutMs: 2000 });
  await harness.teardown();
});

describe(`health on ${harness.name}`, () => {
  it('is live and ready, the canary published and consumed through the broker', async () => {
    bus = await connect({ transport: harness.create(), service: 'health-probe', publishTimeoutMs: 30_000 });
    const health = await healthCheck(bus, {
      canary: { topic: `health-${randomBytes(4).toString('hex')}`, timeoutMs: 30_000 },
    });
    expect((await health.live()).ok).toBe(true);
    const ready = await health.ready();
    expect(ready.canary).toMatchObject({ ok: true });
    expect(ready.ok).toBe(true);
    // A second probe needs a second canary: readiness is measured each time, not remembered.
    expect((await health.ready()).canary?.ok).toBe(true);
    await health.close();
  });
});
