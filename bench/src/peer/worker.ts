/**
 * One side of the peer comparison in a process of its own, driven by peer/run.ts like lib/workers.ts
 * drives worker.ts. Usage (internal): peer/worker.ts <transport> <omnibus-schema|peer>
 *   omnibus-schema: the transport's Omnibus side, publishing and subscribing through a defineMessage schema;
 *   peer: message-queue-toolkit with its own zod message schema.
 */
import { loadBench, type TransportName } from '../lib/load.js';
import { useMessageDefinition } from '../lib/omnibus-side.js';
import { throughputOnce } from '../lib/runner.js';
import type { TransportBench } from '../lib/side.js';
import type { WorkerReply, WorkerRequest } from '../lib/workers.js';
import { BenchMessage } from './schema.js';
import { isPeer, loadPeer } from './side.js';

export type PeerSideKind = 'omnibus-schema' | 'peer';

const [transport, kind] = process.argv.slice(2) as [TransportName, PeerSideKind];
const bench: TransportBench = await sideBench(await loadBench(transport));

async function sideBench(b: TransportBench): Promise<TransportBench> {
  if (kind === 'omnibus-schema') {
    useMessageDefinition(BenchMessage);
    return b;
  }
  const peer = await loadPeer(transport);
  if (!isPeer(peer)) throw new Error(`no message-queue-toolkit side for ${transport}`);
  // throughputOnce asks the bench for a side; here every side is the peer's.
  return { ...b, side: () => peer.side() };
}

let queue: Promise<void> = Promise.resolve();
process.on('message', (m: WorkerRequest) => {
  queue = queue.then(async () => {
    let reply: WorkerReply;
    try {
      const { job } = m;
      if (job.op !== 'throughput')
        throw new Error(`the peer worker runs throughput jobs only, not ${job.op}`);
      // The kind given only selects which side bench.side() builds; the peer bench ignores it.
      const result = await throughputOnce(bench, 'omnibus', job.size, job.n, job.label);
      reply = { id: m.id, ok: true, result };
    } catch (err) {
      reply = { id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    }
    process.send?.(reply);
  });
});
process.on('disconnect', () => {
  void queue.finally(() => setTimeout(() => process.exit(0), 100));
});
