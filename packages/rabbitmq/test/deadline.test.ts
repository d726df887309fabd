/**
 * The one publish deadline (the caller's, through the bus) and the connect deadline, against the real
 * broker: a publish still queued in the adapter when the caller gives up is withdrawn (TIMEOUT) and never
 * written; one already written is OUTCOME_UNKNOWN, and the broker does get it. Faults come from a TCP relay
 * in front of the shared broker (cut, or holding the broker's replies); the broker itself is never touched.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Bus, connect, ErrorCode, PublishError } from '@omnibus/core';
import { afterAll, describe, expect, it } from 'vitest';
import { names } from '../src/index.js';
import { Fixture, Relay, type TestTransport, unique, waitFor } from './helpers.js';

const fx = new Fixture();
const relays: Relay[] = [];
afterAll(async () => {
  for (const r of relays) await r.down();
  await fx.cleanup();
});

const TYPE = 'order.placed';

/** A bus over a transport that reaches the broker through a relay; the bus holds the only deadline. */
async function busThroughRelay(
  publishTimeoutMs: number,
  options: { confirmWindow?: number } = {},
): Promise<{ bus: Bus; t: TestTransport; relay: Relay; topic: string; queue: string }> {
  const relay = new Relay();
  relays.push(relay);
  await relay.up();
  const topic = unique('deadline');
  fx.track(topic, 'g');
  const t = await fx.transport({ url: relay.url(), connectTimeoutMs: 1_000, ...options });
  const bus = await connect({ transport: t, service: 'deadline-test', publishTimeoutMs });
  await bus.provision(topic, [{ group: 'g', types: [TYPE] }]);
  // The exchange is declared and the confirm channel open: later publishes go straight to the publisher.
  await publish(bus, topic, 'first');
  return { bus, t, relay, topic, queue: names.groupQueue(topic, 'g') };
}

function publish(bus: Bus, topic: string, probe: string): Promise<{ id: string }> {
  return bus.publish(topic, { type: TYPE, data: { probe } }, { headers: { probe } });
}

/**
 * Reads the queue with the raw client (straight to the broker, not through the relay) until `marker`
 * arrives, and returns every probe read. Whatever was published before the marker on the same channel
 * is ahead of it in the queue, so a message missing here was never written.
 */
async function probesUntil(queue: string, marker: string): Promise<string[]> {
  const ch = await fx.channel();
  const probes: string[] = [];
  try {
    await waitFor(async () => {
      const m = await ch.get(queue, { noAck: false });
      if (!m) return false;
      ch.ack(m);
      probes.push(String(m.properties.headers?.probe));
      return probes.includes(marker);
    }, `${marker} on ${queue}`);
  } finally {
    await ch.close().catch(() => {});
  }
  return probes;
}

async function failure(p: Promise<unknown>): Promise<PublishError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PublishError);
  return err as PublishError;
}

describe('publish deadline', () => {
  it('a publish queued while the connection is down is withdrawn at the deadline (TIMEOUT) and never written', async () => {
    const { bus, t, relay, topic, queue } = await busThroughRelay(1_500);
    await relay.down();
    await waitFor(async () => !(await t.health()).ok, 'the transport notices the outage');

    const started = Date.now();
    const err = await failure(publish(bus, topic, 'withdrawn'));
    expect(err.code).toBe(ErrorCode.TIMEOUT);
    expect(err.message).toMatch(/never sent/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await t.health()).details.publishesQueued).toBe(0);

    await relay.up();
    await waitFor(async () => (await t.health()).ok, 'reconnected');
    await publish(bus, topic, 'marker');
    expect(await probesUntil(queue, 'marker')).toEqual(['first', 'marker']);
    await bus.close();
  }, 60_000);

  it('with the confirm held, the written publish is OUTCOME_UNKNOWN (and arrives); the one queued behind it is withdrawn', async () => {
    const { bus, t, relay, topic, queue } = await busThroughRelay(1_000, { confirmWindow: 1 });
    relay.holdReplies();

    // A fills the window of one and waits for a confirm the relay holds back; B waits in the adapter's queue.
    const a = failure(publish(bus, topic, 'A'));
    const b = failure(publish(bus, topic, 'B'));
    await waitFor(async () => (await t.health()).details.publishesQueued === 1, 'B queued behind A');
    const [errA, errB] = await Promise.all([a, b]);
    expect(errA.code).toBe(ErrorCode.OUTCOME_UNKNOWN);
    expect(errA.message).toMatch(/may duplicate/);
    expect(errB.code).toBe(ErrorCode.TIMEOUT);

    // The unknown one did reach the broker: a caller's retry of it would have duplicated it.
    await waitFor(async () => (await fx.depth(queue)) === 2, 'first and A in the queue');
    relay.releaseReplies();
    await publish(bus, topic, 'marker');
    expect(await probesUntil(queue, 'marker')).toEqual(['first', 'A', 'marker']);
    await bus.close();
  }, 60_000);
});

describe('connect deadline', () => {
  it('connect() to a server that never answers fails within connectTimeoutMs, and the process can exit', async () => {
    // Accepts TCP connections and never says a word, like a hung broker or a wrong port behind a proxy.
    const accepted = new Set<Socket>();
    const silent: Server = createServer((s) => {
      accepted.add(s);
      s.on('close', () => accepted.delete(s));
      s.on('error', () => {});
      // Reads (and ignores) the protocol header, so the client's end of the socket is seen here.
      s.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const script = fileURLToPath(new URL('./fixtures/connect-deadline.ts', import.meta.url));
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--conditions=omnibus-source', script, String(port)],
        {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let errOut = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      child.stderr.on('data', (c: Buffer) => {
        errOut += c.toString();
      });
      let reportedAt = 0;
      child.stdout.once('data', () => {
        reportedAt = Date.now();
      });
      const exitCode = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      const exitedAt = Date.now();
      expect(errOut).toBe('');
      const report = JSON.parse(out) as { elapsedMs: number; name: string; code: string; message: string };
      expect(report).toMatchObject({ name: 'ConnectionError', code: 'CONNECTION' });
      expect(report.message).toMatch(/within 1000 ms/);
      expect(report.message).not.toContain('guest:guest');
      expect(report.elapsedMs).toBeGreaterThanOrEqual(950);
      expect(report.elapsedMs).toBeLessThan(2_500);
      // Nothing left open: the process ends by itself right after reporting (no timer, no socket).
      expect(exitCode).toBe(0);
      expect(exitedAt - reportedAt).toBeLessThan(1_000);
      await waitFor(() => accepted.size === 0, 'the client closed its socket');
    } finally {
      for (const s of accepted) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  }, 30_000);
});
