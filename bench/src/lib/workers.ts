/**
 * Runs each side of a transport's benchmark in a worker process of its own, driven over IPC, so the raw
 * client never shares a process with Omnibus: on Node 20, AsyncLocalStorage turns on promise hooks for
 * the whole process the first time it is used, and a shared heap would make each side pay for the
 * other's garbage.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NaiveJob, NaiveOnceResult } from './naive.js';
import type { Executor, ThroughputResult } from './runner.js';

export type WorkerJob =
  | { op: 'throughput'; size: number; n: number; label: string }
  | { op: 'publishBatch'; size: number; n: number; label: string }
  | { op: 'latency'; size: number; durationMs: number; rep: number }
  | { op: 'naive'; naive: NaiveJob };

export interface WorkerRequest {
  id: number;
  job: WorkerJob;
}

export type WorkerReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string };

const WORKER = join(fileURLToPath(import.meta.url), '..', '..', 'worker.ts');
const JOB_TIMEOUT_MS = 15 * 60_000;

/** One side's worker process; `script` is the entry it runs (worker.ts, or peer/worker.ts). */
export class Worker {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #next = 0;
  #exited: Error | undefined;

  constructor(transport: string, kind: string, script = WORKER) {
    // The same Node flags as this process (tsx's loader).
    this.#child = fork(script, [transport, kind], { execArgv: process.execArgv, stdio: 'inherit' });
    this.#child.on('message', (m: WorkerReply) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    this.#child.on('exit', (code, signal) => {
      this.#exited = new Error(`${transport} ${kind} worker exited (${signal ?? code})`);
      for (const p of this.#pending.values()) p.reject(this.#exited);
      this.#pending.clear();
    });
  }

  run<T>(job: WorkerJob): Promise<T> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker job ${job.op} did not finish within ${JOB_TIMEOUT_MS / 60_000} min`));
      }, JOB_TIMEOUT_MS);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#child.send({ id, job } satisfies WorkerRequest);
    });
  }

  async close(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.disconnect();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Two workers, one per side, for one transport. */
export function workerProcesses(transport: string): Executor {
  const workers = { raw: new Worker(transport, 'raw'), omnibus: new Worker(transport, 'omnibus') };
  return {
    throughput: (kind, size, n, label) =>
      workers[kind].run<ThroughputResult>({ op: 'throughput', size, n, label }),
    publishBatch: (size, n, label) =>
      workers.omnibus.run<{ publish: number; publishCpuUs: number }>({ op: 'publishBatch', size, n, label }),
    latency: (kind, size, durationMs, rep) =>
      workers[kind].run<number[]>({ op: 'latency', size, durationMs, rep }),
    naive: (job) => workers[job.kind].run<NaiveOnceResult>({ op: 'naive', naive: job }),
    close: async () => {
      await Promise.all([workers.raw.close(), workers.omnibus.close()]);
    },
  };
}
