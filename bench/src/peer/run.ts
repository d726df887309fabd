/**
 * The peer comparison: Omnibus (with a defineMessage zod schema) against message-queue-toolkit (with its
 * own zod message schema) on the same broker, publish and consume throughput, repetitions alternating
 * (Omnibus, peer, Omnibus, peer, …), each side in a worker process of its own.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TransportName } from '../lib/load.js';
import { sizeLabel } from '../lib/payload.js';
import type { RunOptions, ThroughputResult, TransportResult } from '../lib/runner.js';
import type { TransportBench } from '../lib/side.js';
import { type Figure, figure, ratio, round } from '../lib/stats.js';
import { Worker } from '../lib/workers.js';
import { isPeer, loadPeer, type PeerBench } from './side.js';
import type { PeerSideKind } from './worker.js';

export const PEER_LIBRARY = 'message-queue-toolkit';

/** One figure on both sides; `ratio` is Omnibus/peer (throughput: ≥ 1 is better; CPU: ≤ 1 is better). */
export interface PeerPair {
  omnibus: Figure;
  peer: Figure;
  ratio: Figure;
}

export interface PeerSizeResult {
  size: number;
  messages: number;
  publish: PeerPair;
  consume: PeerPair;
  /** CPU µs per message of each side's process, user + system. */
  publishCpuUs: PeerPair;
  consumeCpuUs: PeerPair;
}

export interface PeerResult {
  library: typeof PEER_LIBRARY;
  /** `unavailable`: no side for this transport (`reason` says why); `failed`: it ran and failed. */
  status: 'ok' | 'failed' | 'unavailable';
  reason?: string;
  error?: string;
  measuredAt: string;
  durationS: number;
  reps: number;
  settings?: PeerBench['settings'];
  sizes: PeerSizeResult[];
}

const WORKER = join(fileURLToPath(import.meta.url), '..', 'worker.ts');
const KINDS: readonly PeerSideKind[] = ['omnibus-schema', 'peer'];

/** The peer comparison for one transport, or undefined where message-queue-toolkit has no counterpart. */
export async function comparePeer(
  name: TransportName,
  bench: TransportBench,
  o: RunOptions,
): Promise<PeerResult | undefined> {
  const peer = await loadPeer(name);
  if (!peer) return undefined;
  const base = {
    library: PEER_LIBRARY,
    measuredAt: new Date().toISOString(),
    durationS: 0,
    reps: o.reps,
    sizes: [],
  } as const;
  if (!isPeer(peer)) {
    o.log(`${name}: no ${PEER_LIBRARY} side: ${peer.unavailable}`);
    return { ...base, sizes: [], status: 'unavailable', reason: peer.unavailable };
  }
  const workers = {
    'omnibus-schema': new Worker(name, 'omnibus-schema', WORKER),
    peer: new Worker(name, 'peer', WORKER),
  };
  try {
    return await runPeer(bench, peer, o, (kind, size, n, label) =>
      workers[kind].run<ThroughputResult>({ op: 'throughput', size, n, label }),
    );
  } finally {
    await Promise.all([workers['omnibus-schema'].close(), workers.peer.close()]);
  }
}

/** Stores the peer figures next to the transport's main ones (a --peer-only run needs those already). */
export function keepPeer(
  main: TransportResult | undefined,
  peer: PeerResult | undefined,
  log: (line: string) => void,
): void {
  if (!peer) return;
  if (main) main.peer = peer;
  else log(`${PEER_LIBRARY}: no main figures of this transport in latest.json to keep the peer figures with`);
}

async function runPeer(
  bench: TransportBench,
  peer: PeerBench,
  o: RunOptions,
  throughput: (kind: PeerSideKind, size: number, n: number, label: string) => Promise<ThroughputResult>,
): Promise<PeerResult> {
  const started = performance.now();
  const result: PeerResult = {
    library: PEER_LIBRARY,
    status: 'ok',
    measuredAt: new Date().toISOString(),
    durationS: 0,
    reps: o.reps,
    settings: peer.settings,
    sizes: [],
  };
  // A failed repetition is run once more (fresh client, fresh topic), as in the main comparison.
  const again = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      o.log(
        `${what} failed, repeating it once: ${String(err instanceof Error ? err.message : err).split('\n')[0]}`,
      );
      return fn();
    }
  };
  try {
    for (const size of o.sizes) {
      const n = Math.max(50, Math.round(bench.sizing.count(size) * o.scale));
      o.log(`${bench.name} ${sizeLabel(size)} vs ${PEER_LIBRARY}: warm-up`);
      for (const kind of KINDS) {
        await again(`${kind} warm-up`, () => throughput(kind, size, Math.min(n, 500), 'zwarm'));
      }
      const s = {
        publish: { 'omnibus-schema': [] as number[], peer: [] as number[] },
        consume: { 'omnibus-schema': [] as number[], peer: [] as number[] },
        publishCpu: { 'omnibus-schema': [] as number[], peer: [] as number[] },
        consumeCpu: { 'omnibus-schema': [] as number[], peer: [] as number[] },
      };
      for (let rep = 0; rep < o.reps; rep++) {
        for (const kind of KINDS) {
          const r = await again(`${kind} rep ${rep + 1}`, () => throughput(kind, size, n, `z${rep}`));
          s.publish[kind].push(r.publish);
          s.consume[kind].push(r.consume);
          s.publishCpu[kind].push(r.publishCpuUs);
          s.consumeCpu[kind].push(r.consumeCpuUs);
          o.log(
            `${bench.name} ${sizeLabel(size)} rep ${rep + 1}/${o.reps} ${kind === 'peer' ? PEER_LIBRARY : 'Omnibus + schema'}: publish ${fmt(r.publish)} msg/s (${r.publishCpuUs.toFixed(1)} µs CPU/msg), consume ${fmt(r.consume)} msg/s (${r.consumeCpuUs.toFixed(1)} µs CPU/msg)`,
          );
        }
      }
      const pair = (k: keyof typeof s): PeerPair => {
        const omnibus = figure(s[k]['omnibus-schema']);
        const p = figure(s[k].peer);
        return { omnibus, peer: p, ratio: ratio(omnibus, p) };
      };
      result.sizes.push({
        size,
        messages: n,
        publish: pair('publish'),
        consume: pair('consume'),
        publishCpuUs: pair('publishCpu'),
        consumeCpuUs: pair('consumeCpu'),
      });
    }
  } catch (err) {
    result.status = 'failed';
    result.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    o.log(`${bench.name} vs ${PEER_LIBRARY}: FAILED: ${result.error}`);
  }
  result.durationS = round((performance.now() - started) / 1000, 1);
  return result;
}

function fmt(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}
