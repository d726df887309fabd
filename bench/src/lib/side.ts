/** What each transport's benchmark provides: the same operations through the raw client and through Omnibus. */
import type { BenchData } from './payload.js';

export type SideKind = 'raw' | 'omnibus';

/**
 * Throughput runs batch where the broker rewards it; latency runs send each message on its own (Kafka
 * linger 0); service runs use the adapter's defaults, as a service that never tuned them would.
 */
export type SideMode = 'throughput' | 'latency' | 'service';

export interface Consuming {
  close(): Promise<void>;
}

export interface Side {
  /** 'peer': message-queue-toolkit, in the peer comparison (peer/). */
  readonly kind: SideKind | 'peer';
  /** Creates what keeps a backlog for `topic` before anything is published (queue, binding, group). */
  prepare(topic: string): Promise<void>;
  /** Publishes `count` messages the way this side publishes fastest; resolves once all are confirmed. */
  publishMany(topic: string, count: number, size: number): Promise<void>;
  /**
   * Omnibus only: publishes `count` messages with `bus.publishBatch()` (the batch API, one transport
   * call per batch), for comparison with the raw client's batch calls.
   */
  publishBatches?(topic: string, count: number, size: number): Promise<void>;
  /** Publishes one message; resolves once the broker confirmed it. */
  publishOne(topic: string, data: BenchData): Promise<void>;
  /** Consumes the topic; `onMessage` runs for every decoded message, which is acked when it returns. */
  subscribe(topic: string, onMessage: (data: BenchData) => void): Promise<Consuming>;
  /** Deletes what a run left on the broker (queues, topics, groups). */
  cleanup(topic: string): Promise<void>;
  close(): Promise<void>;
}

/** Per-transport sizing: counts are chosen so that the whole run stays within minutes on 2 cores. */
export interface Sizing {
  /** Messages per publish/consume repetition, by message size. */
  count(size: number): number;
  /** Latency run: messages per second and measured seconds. */
  latencyRate: number;
  latencyMs: number;
  /** Naive-service runs: length of each timed run. */
  naiveMs: number;
}

export interface TransportBench {
  readonly name: 'memory' | 'rabbitmq' | 'kafka' | 'sqs' | 'nats';
  /** How the raw client and Omnibus are configured, for the report. */
  readonly settings: { raw: string; omnibus: string; durability: string };
  readonly sizing: Sizing;
  /**
   * Naive-service figures: also measure the raw client's own batched publish (`publishMany`) as the
   * ceiling for the concurrent load (SQS, where the emulator, not the client, sets the limit).
   */
  readonly naiveAgainstBatched?: boolean;
  /** Creates one side, connected. */
  side(kind: SideKind, mode: SideMode): Promise<Side>;
  /** Bytes per message on the wire, raw vs Omnibus (the envelope's share of the broker's work). */
  wireBytes(size: number): { raw: number; omnibus: number };
  /** Broker version as the broker reports it (or as its launcher pins it). */
  brokerVersion(): Promise<string | undefined>;
}

/** A unique, broker-legal topic name for one benchmark step. */
export function topicName(transport: string, parts: (string | number)[]): string {
  const run = RUN_ID;
  return ['omnibus-bench', transport, run, ...parts].join('-');
}

const RUN_ID = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`;
