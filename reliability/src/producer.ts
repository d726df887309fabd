/**
 * A producer process of the chaos run: publishes `count` messages at a steady rate through Omnibus and
 * records each id whose publish resolved (R lines) or failed (F lines) the moment it does. Killed at will.
 */
import { connect, consoleLogger } from '@omnibus/core';
import { createTransport } from './brokers.js';
import { type ProducerRole, RecordFile, Tick } from './records.js';

const role = JSON.parse(process.env.OMNIBUS_CHAOS_ROLE ?? '') as ProducerRole;
const record = new RecordFile(role.recordFile);
const bus = await connect({
  transport: await createTransport(role.transport, role.where),
  service: `chaos-producer-${role.generation}`,
  logger: consoleLogger(),
});
record.write('START', Date.now(), process.pid);

const pad = 'x'.repeat(role.payloadBytes);
const started = Date.now();
let inFlight = 0;
let wake: (() => void) | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// SIGTERM: stop publishing, wait for the publishes in flight, record them, leave.
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  wake?.();
});

for (let i = 0; i < role.count && !stopping; i++) {
  const due = started + (i * 1000) / role.ratePerSec;
  if (due > Date.now()) await sleep(due - Date.now());
  while (inFlight >= role.window && !stopping) await new Promise<void>((r) => (wake = r));
  if (stopping) break;
  const key = `k${i % role.keys}`;
  const seq = role.generation * 1_000_000 + Math.floor(i / role.keys);
  inFlight++;
  bus
    .publish(role.topic, Tick, { key, seq, pad }, { key })
    .then(
      ({ id }) => record.write('R', id, key, seq, Date.now()),
      (err: unknown) => record.write('F', key, seq, Date.now(), (err as { code?: string }).code ?? 'ERROR'),
    )
    .finally(() => {
      inFlight--;
      wake?.();
    });
}
while (inFlight > 0) await new Promise<void>((r) => (wake = r));
record.write('DONE', Date.now());
await bus.close({ drainTimeoutMs: 5_000 });
process.exit(0);
