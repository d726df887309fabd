/**
 * A service that exposes its Omnibus metrics to Prometheus at `/metrics` (OpenTelemetry's Prometheus
 * exporter, the project's own well-kept exporter), with the Kubernetes probes `/livez` and `/readyz` on
 * the same port. Runs on the memory transport unless OMNIBUS_URL names a broker; PORT picks the port.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Bus, connect, healthCheck } from '@omnibus/core';
import * as api from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { transportFromEnv } from './transport.js';

export interface MetricsService {
  bus: Bus;
  url: string;
  close(): Promise<void>;
}

/** Connects a bus with metrics and serves /metrics, /livez and /readyz on `port` (0: any free port). */
export async function startMetricsService(port = 0, canaryTopic = 'health-canary'): Promise<MetricsService> {
  // The exporter answers scrapes through our own server, so the probes share its port.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  const { transport } = await transportFromEnv('prometheus-example');
  const bus = await connect({
    transport,
    service: 'metrics-example',
    telemetry: { api, meterProvider, tracing: false },
  });
  const health = await healthCheck(bus, { canary: { topic: canaryTopic, timeoutMs: 5000 } });
  const server: Server = createServer((req, res) => {
    if (req.url?.split('?')[0] === '/metrics') exporter.getMetricsRequestHandler(req, res);
    else health.handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    bus,
    url,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await health.close();
      await bus.close();
      await meterProvider.shutdown();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const service = await startMetricsService(Number(process.env.PORT ?? 9464));
  await service.bus.subscribe({ topic: 'orders', group: 'metrics-example', handlers: { '#': () => {} } });
  setInterval(() => {
    service.bus.publish('orders', { type: 'order.placed', data: { at: Date.now() } }).catch(console.error);
  }, 1000);
  console.log(`metrics at ${service.url}/metrics, probes at ${service.url}/livez and /readyz`);
}
