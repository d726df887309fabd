/**
 * The Omnibus side of every transport's benchmark: one Bus, untyped publishes (typed ones in the peer
 * comparison's worker), one handler per subscription.
 */
import {
  type Bus,
  connect,
  type Handler,
  type MessageDefinition,
  type TelemetryOptions,
  type Transport,
  uuidv7,
  wireSize,
} from '@omnibus/core';
import { type BenchData, encodeData, MESSAGE_TYPE, makeData } from './payload.js';
import type { Side } from './side.js';
import { windowed } from './window.js';

export const GROUP = 'bench';

export interface OmnibusSideOptions {
  transport: Transport;
  /** Publishes unconfirmed at once in throughput runs (the same window the raw client gets). */
  window: number;
  concurrency: number;
  prefetch: number;
  /** publishBatch runs: messages per batch, and batches unsettled at once. */
  batch: { size: number; outstanding: number };
  cleanup(topic: string): Promise<void>;
}

/**
 * Set by the peer comparison's worker (peer/worker.ts, a process of its own): publish and subscribe
 * through this definition, so its zod schema runs on both ends like the peer's. Unset, messages are untyped.
 */
let definition: MessageDefinition<BenchData> | undefined;

export function useMessageDefinition(def: MessageDefinition<BenchData>): void {
  definition = def;
}

/** `bus.publish()` of one message, through the definition when one is set. */
function publishData(bus: Bus, topic: string, data: BenchData): Promise<unknown> {
  return definition ? bus.publish(topic, definition, data) : bus.publish(topic, { type: MESSAGE_TYPE, data });
}

export async function omnibusSide(o: OmnibusSideOptions): Promise<Side> {
  const bus = await connect({
    transport: o.transport,
    service: 'omnibus-bench',
    ...(process.env.OMNIBUS_BENCH_OTEL === '1' ? { telemetry: await sdkTelemetry() } : {}),
  });
  return {
    kind: 'omnibus',
    prepare: (topic) => bus.provision(topic, [{ group: GROUP }]),
    publishMany: (topic, count, size) =>
      windowed(count, o.window, (i) => publishData(bus, topic, makeData(i, size))),
    publishBatches: (topic, count, size) => {
      const batches = Math.ceil(count / o.batch.size);
      return windowed(batches, o.batch.outstanding, (b) => {
        const items = [];
        for (let i = b * o.batch.size; i < Math.min(count, (b + 1) * o.batch.size); i++) {
          items.push({ type: MESSAGE_TYPE, data: makeData(i, size) });
        }
        return bus.publishBatch(topic, items);
      });
    },
    publishOne: async (topic, data) => {
      await publishData(bus, topic, data);
    },
    subscribe: async (topic, onMessage) => {
      const handler: Handler<BenchData> = (data) => {
        onMessage(data);
      };
      const sub = await bus.subscribe({
        topic,
        group: GROUP,
        handlers: { [MESSAGE_TYPE]: definition ? definition.handle(handler) : handler },
        concurrency: o.concurrency,
        prefetch: o.prefetch,
      });
      return { close: () => sub.close({ drainTimeoutMs: 10_000 }) };
    },
    cleanup: o.cleanup,
    close: () => bus.close({ drainTimeoutMs: 10_000 }),
  };
}

/**
 * Bytes a message occupies on the wire (body + header names and values, as the core counts them):
 * the raw client's message against the CloudEvents envelope Omnibus sends for the same data.
 */
export function wireBytes(
  transport: Transport,
  size: number,
  rawHeaders: Record<string, string>,
): { raw: number; omnibus: number } {
  const data = makeData(123_456, size);
  const id = uuidv7();
  const omnibus = transport.encode({
    id,
    type: MESSAGE_TYPE,
    source: 'omnibus-bench',
    time: Date.now(),
    key: undefined,
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: {},
    data: encodeData(data),
  });
  return {
    raw: wireSize({ body: encodeData(data), headers: rawHeaders }),
    omnibus: wireSize(omnibus),
  };
}

/**
 * OMNIBUS_BENCH_OTEL=1: the cost with an OpenTelemetry SDK registered — every span sampled and handed to a
 * batch processor whose exporter drops it (the export itself is not Omnibus's cost), metrics into a
 * MeterProvider with a reader that collects every 10 s.
 */
async function sdkTelemetry(): Promise<TelemetryOptions> {
  const api = await import('@opentelemetry/api');
  const { BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace');
  const { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } =
    await import('@opentelemetry/sdk-metrics');
  const exporter = {
    export: (_s: unknown, done: (r: { code: number }) => void) => done({ code: 0 }),
    shutdown: async () => {},
  };
  const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter })] });
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
        exportIntervalMillis: 10_000,
      }),
    ],
  });
  return { api, tracerProvider, meterProvider };
}
