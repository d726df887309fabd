/** The Prometheus example on the broker OMNIBUS_TRANSPORT names: a scrape over HTTP shows the bus's metrics. */
import { randomBytes } from 'node:crypto';
import { eventually, recordOutcomes } from '@omnibus/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { type MetricsService, startMetricsService } from '../../../examples/src/prometheus.js';

let service: MetricsService | undefined;
afterAll(async () => {
  await service?.close();
});

describe('Prometheus example', () => {
  it('exposes counters, histograms and subscription gauges at /metrics, and ready probes', async () => {
    // The example reads OMNIBUS_URL; the memory transport is what the scrape itself is about.
    const run = randomBytes(4).toString('hex');
    service = await startMetricsService(0, `health-${run}`);
    const topic = `prom-${run}`;
    const seen = recordOutcomes(service.bus);
    await service.bus.subscribe({ topic, group: 'g', handlers: { x: () => {} } });
    await service.bus.publish(topic, { type: 'x', data: 1 }, { time: Date.now() - 1500 });
    await eventually(() => seen.handled().some((o) => o.topic === topic), { timeoutMs: 10_000 });

    const res = await fetch(`${service.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const sample = (name: string) =>
      text.split('\n').find((l) => l.startsWith(name) && !l.startsWith('#')) ?? `${name} missing`;
    expect(sample('messaging_client_sent_messages')).toMatch(/ [1-9]\d*$/);
    expect(sample('messaging_client_consumed_messages')).toMatch(/ [1-9]\d*$/);
    expect(sample('omnibus_messages_handled')).toMatch(/ [1-9]\d*$/);
    expect(text).toMatch(/^messaging_process_duration_count\{[^}]*\} [1-9]/m);
    expect(text).toMatch(/^omnibus_message_age_sum\{[^}]*\} ([1-9]|0\.\d*[1-9])/m);
    expect(text).toMatch(
      new RegExp(`^omnibus_subscription_depth[^ ]*messaging_destination_name="${topic}"`, 'm'),
    );

    expect((await fetch(`${service.url}/livez`)).status).toBe(200);
    expect((await fetch(`${service.url}/readyz`)).status).toBe(200);
  });
});
