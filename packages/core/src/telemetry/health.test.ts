import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, ConfigError, connect, healthCheck, memoryTransport, type Transport } from '../index.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function bus(transport: Transport = memoryTransport()): Promise<Bus> {
  const b = await connect({ transport, service: 'probe' });
  cleanup.push(() => b.close({ drainTimeoutMs: 100 }));
  return b;
}

describe('healthCheck', () => {
  it('serves liveness and canary readiness over HTTP for Kubernetes probes', async () => {
    const b = await bus();
    const health = await healthCheck(b, { canary: { topic: `health-${Math.random()}`, timeoutMs: 2000 } });
    cleanup.push(() => health.close());
    const url = await serve(health.handler);
    const live = await fetch(`${url}/livez`);
    expect(live.status).toBe(200);
    expect(((await live.json()) as { ok: boolean }).ok).toBe(true);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { canary: { ok: boolean; roundTripMs: number } };
    expect(body.canary.ok).toBe(true);
    expect(body.canary.roundTripMs).toBeGreaterThanOrEqual(0);
    expect((await fetch(`${url}/other`)).status).toBe(404);
  });

  it('is not ready when the canary is not consumed in time, while still live', async () => {
    const b = await bus();
    const health = await healthCheck(b, { canary: { topic: `health-${Math.random()}`, timeoutMs: 200 } });
    cleanup.push(() => health.close());
    // The canary's consumer stops: published canaries are no longer seen.
    await health.close();
    const report = await health.ready();
    expect(report.ok).toBe(false);
    expect(report.canary?.error).toMatch(/canary not consumed within 200 ms/);
    expect((await health.live()).ok).toBe(true);
  });

  it('answers 503 on both probes once the bus is closed', async () => {
    const b = await connect({ transport: memoryTransport(), service: 'probe' });
    const health = await healthCheck(b);
    const url = await serve(health.handler);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    await b.close();
    expect((await fetch(`${url}/livez`)).status).toBe(503);
    expect((await fetch(`${url}/readyz`)).status).toBe(503);
  });

  it('rejects a canary without a topic, naming the field', async () => {
    const b = await bus();
    await expect(healthCheck(b, { canary: { topic: '' } })).rejects.toThrow(ConfigError);
    await expect(healthCheck(b, { canary: { topic: '' } })).rejects.toThrow(/canary.topic/);
  });
});
