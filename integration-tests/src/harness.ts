/** What each transport provides to run the conformance suite against a real broker. */
import type { Capabilities, Transport, WireMessage } from '@omnibus/core';

export interface TransportHarness {
  readonly name: string;
  /** Start/ensure the broker is reachable; throws (never skips) when it is not. */
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A fresh, not yet connected transport pointed at the test broker. */
  create(): Transport;
  /** A transport pointed at a closed port: connecting or publishing must fail. */
  createUnreachable(): Transport;
  /** Reads `count` dead-lettered messages of topic/group with the broker's own client (waits up to timeoutMs). */
  readDeadLetters(topic: string, group: string, count: number, timeoutMs: number): Promise<WireMessage[]>;
  /** Publishes arbitrary bytes with the broker's own client, bypassing Omnibus (poison tests). */
  publishRaw(
    topic: string,
    body: Buffer,
    options?: { type?: string; headers?: Record<string, string>; key?: string },
  ): Promise<void>;
  /** Stops and restarts the broker process, keeping its data; absent where there is no hook. */
  restart?(): Promise<void>;
  /**
   * A transport on the broker that `restart()` restarts, where that is not the one `create()` uses
   * (RabbitMQ restarts a private node so the shared broker is never disturbed).
   */
  createForRestart?(): Transport;
  /** Closes, from the broker's side, every connection this harness's transports hold; absent where there is no hook. */
  dropConnections?(): Promise<void>;
  /**
   * Where the transport keeps order only on specially configured topics (SQS FIFO), the name of such a
   * topic derived from `base`; the per-key order scenario publishes there.
   */
  orderedTopic?(base: string): string;
  /** Capability overrides for what the harness's broker really does (e.g. SQS persistence). */
  readonly capabilities?: Partial<Capabilities>;
}
