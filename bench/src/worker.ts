/**
 * One side (raw or Omnibus) of one transport's benchmark, in a process of its own; lib/workers.ts forks
 * it and sends it repetitions to run. Usage (internal): worker.ts <transport> <raw|omnibus>
 */
import { loadBench, type TransportName } from './lib/load.js';
import { naiveOnce } from './lib/naive.js';
import { latencyOnce, publishBatchOnce, throughputOnce } from './lib/runner.js';
import type { SideKind } from './lib/side.js';
import type { WorkerReply, WorkerRequest } from './lib/workers.js';

const [transport, kind] = process.argv.slice(2) as [TransportName, SideKind];
const bench = await loadBench(transport);

// Jobs arrive one at a time (the parent awaits each), so they simply run in order.
let queue: Promise<void> = Promise.resolve();
process.on('message', (m: WorkerRequest) => {
  queue = queue.then(async () => {
    let reply: WorkerReply;
    try {
      const { job } = m;
      const result =
        job.op === 'throughput'
          ? await throughputOnce(bench, kind, job.size, job.n, job.label)
          : job.op === 'publishBatch'
            ? await publishBatchOnce(bench, job.size, job.n, job.label)
            : job.op === 'naive'
              ? await naiveOnce(bench, job.naive)
              : await latencyOnce(bench, kind, job.size, job.durationMs, job.rep);
      reply = { id: m.id, ok: true, result };
    } catch (err) {
      reply = { id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    }
    process.send?.(reply);
  });
});
// The parent disconnects when the transport is done; clients may keep sockets open, so leave anyway.
process.on('disconnect', () => {
  void queue.finally(() => setTimeout(() => process.exit(0), 100));
});
