/**
 * Liveness and readiness for Kubernetes probes: liveness says the broker connections are up; readiness
 * can also prove that messages flow end to end (a canary published to a health topic and consumed back
 * within a deadline), and a node:http handler serves both.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Bus, BusHealth, Subscription } from '../bus.js';
import { ConfigError, errorMessage } from '../errors.js';
import { uuidv7 } from '../uuid.js';

export interface HealthCheckOptions {
  /**
   * An end-to-end canary for readiness: each readiness check publishes one message to `topic` and waits
   * until this process consumes it (group `group`, default `health-<service>`) within `timeoutMs`.
   * Use a topic of its own; on RabbitMQ and Kafka each service instance should use its own group, so
   * that every instance sees its own canaries.
   */
  canary?: { topic: string; group?: string; timeoutMs?: number } | undefined;
  /** Paths the HTTP handler answers (default `/livez` and `/readyz`). */
  livePath?: string;
  readyPath?: string;
}

export interface ProbeReport {
  ok: boolean;
  /** The bus's own report: connections and subscriptions. */
  bus: BusHealth;
  /** Readiness with a canary: how long the round trip took, or why it failed. */
  canary?: { ok: boolean; roundTripMs?: number; error?: string };
}

export interface HealthCheck extends AsyncDisposable {
  /** Liveness: the bus is open and its transport's connections are up. */
  live(): Promise<ProbeReport>;
  /** Readiness: live, and (with a canary) a message published now was consumed within the deadline. */
  ready(): Promise<ProbeReport>;
  /** A node:http-compatible handler: 200 or 503 with the report as JSON; 404 for other paths. */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Stops the canary subscription. */
  close(): Promise<void>;
}

const CANARY_TYPE = 'omnibus.health.canary';

/** Builds the probes; with a canary, subscribes to its topic first (so call it after `connect`). */
export async function healthCheck(bus: Bus, options: HealthCheckOptions = {}): Promise<HealthCheck> {
  const livePath = options.livePath ?? '/livez';
  const readyPath = options.readyPath ?? '/readyz';
  const canary = options.canary;
  if (canary !== undefined && (typeof canary.topic !== 'string' || canary.topic === '')) {
    throw new ConfigError('canary.topic', 'must be a non-empty string');
  }
  const timeoutMs = canary?.timeoutMs ?? 5000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ConfigError('canary.timeoutMs', 'must be a positive number of ms');
  }
  // Canary ids this process waits for, and who waits.
  const waiting = new Map<string, () => void>();
  let sub: Subscription | undefined;
  if (canary) {
    const group = canary.group ?? `health-${bus.service}`;
    await bus.provision(canary.topic, [{ group, types: [CANARY_TYPE] }]);
    sub = await bus.subscribe({
      topic: canary.topic,
      group,
      retry: { attempts: 1 },
      deadLetter: false,
      unmatched: 'ack',
      handlers: {
        [CANARY_TYPE]: (_data, ctx) => {
          waiting.get(ctx.envelope.id)?.();
        },
      },
    });
  }

  const live = async (): Promise<ProbeReport> => {
    const report = await bus.health();
    return { ok: report.ok, bus: report };
  };

  let inFlight: Promise<ProbeReport> | undefined;
  const roundTrip = async (): Promise<ProbeReport> => {
    const base = await live();
    if (!canary || !base.ok) return base;
    const id = uuidv7();
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const seen = new Promise<void>((resolve) => waiting.set(id, resolve));
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`canary not consumed within ${timeoutMs} ms`)), timeoutMs);
      });
      await Promise.race([
        bus
          .publish(canary.topic, { type: CANARY_TYPE, data: { at: started } }, { id, timeoutMs })
          .then(() => seen),
        expired,
      ]);
      return { ok: true, bus: base.bus, canary: { ok: true, roundTripMs: Date.now() - started } };
    } catch (err) {
      return { ok: false, bus: base.bus, canary: { ok: false, error: errorMessage(err) } };
    } finally {
      clearTimeout(timer);
      waiting.delete(id);
    }
  };
  // Probes that overlap share one canary round trip.
  const ready = (): Promise<ProbeReport> => {
    inFlight ??= roundTrip().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    const probe = path === livePath ? live : path === readyPath ? ready : undefined;
    if (!probe) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    probe().then(
      (report) => {
        res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify(report));
      },
      (err: unknown) => {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, error: errorMessage(err) }));
      },
    );
  };

  const close = async (): Promise<void> => {
    await sub?.close();
  };
  return { live, ready, handler, close, [Symbol.asyncDispose]: close };
}
