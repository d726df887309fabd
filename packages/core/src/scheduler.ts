/**
 * Runs tasks with bounded concurrency; with `ordered`, tasks that share a key run one at a time in
 * arrival order (a key's lane), while different keys run in parallel.
 */

type Task = () => Promise<void>;

export class KeyedScheduler {
  readonly concurrency: number;
  readonly ordered: boolean;
  #running = 0;
  #queued = 0;
  // Ready work: either a lone task or the key of a lane whose head may run next.
  readonly #ready: (Task | string)[] = [];
  #readyHead = 0;
  readonly #lanes = new Map<string, Task[]>();
  #idleWaiters: (() => void)[] = [];

  constructor(concurrency: number, ordered: boolean) {
    this.concurrency = concurrency;
    this.ordered = ordered;
  }

  /** Tasks submitted and not yet finished (queued + running). */
  get size(): number {
    return this.#queued + this.#running;
  }

  submit(key: string | undefined, task: Task): void {
    this.#queued++;
    if (this.ordered && key !== undefined) {
      const lane = this.#lanes.get(key);
      if (lane) {
        lane.push(task);
        return;
      }
      this.#lanes.set(key, [task]);
      this.#ready.push(key);
    } else {
      this.#ready.push(task);
    }
    this.#pump();
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (this.#running < this.concurrency && this.#readyHead < this.#ready.length) {
      const item = this.#ready[this.#readyHead]!;
      this.#readyHead++;
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready.splice(0, this.#readyHead);
        this.#readyHead = 0;
      }
      if (typeof item === 'string') {
        const task = this.#lanes.get(item)!.shift()!;
        this.#run(task, item);
      } else {
        this.#run(item, undefined);
      }
    }
  }

  #run(task: Task, laneKey: string | undefined): void {
    this.#queued--;
    this.#running++;
    const done = () => {
      this.#running--;
      if (laneKey !== undefined) {
        const lane = this.#lanes.get(laneKey)!;
        if (lane.length > 0) this.#ready.push(laneKey);
        else this.#lanes.delete(laneKey);
      }
      this.#pump();
      if (this.size === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const w of waiters) w();
      }
    };
    task().then(done, done);
  }
}
