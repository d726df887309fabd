/**
 * `pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B] [--label L]`
 *
 * Runs the Omnibus publish + consume path in a child process under `node --cpu-prof`, then summarises the
 * profile: where the time goes by component, and the hot spots in Omnibus's own code (packages/core/src).
 * Profiles are kept in .cache/bench-profiles/ (open them in Chrome DevTools); the summary goes to
 * bench/results/profile-<transport>.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadBench, type TransportName } from './lib/load.js';
import { RESULTS_DIR, ROOT } from './lib/report.js';
import { withTimeout } from './lib/runner.js';
import type { TransportBench } from './lib/side.js';
import { topicName } from './lib/side.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    messages: { type: 'string' },
    size: { type: 'string', default: '200' },
    child: { type: 'boolean', default: false },
    'phases-file': { type: 'string' },
    label: { type: 'string', default: '' },
  },
});
const transport = positionals[0] ?? 'memory';
const DEFAULT_MESSAGES: Record<string, number> = {
  memory: 200_000,
  kafka: 100_000,
  rabbitmq: 30_000,
  sqs: 5_000,
};
if (!(transport in DEFAULT_MESSAGES)) {
  console.error('pnpm bench profile [memory|kafka|rabbitmq|sqs] [--messages N] [--size B]');
  process.exit(2);
}
const size = Number(values.size);
const messages = Number(values.messages ?? DEFAULT_MESSAGES[transport]);

async function load(): Promise<TransportBench> {
  return loadBench(transport as TransportName);
}

/** The profiled workload: Omnibus publishes `messages`, then consumes them back. */
async function child(): Promise<void> {
  const bench = await load();
  const side = await bench.side('omnibus', 'throughput');
  const topic = topicName(bench.name, ['profile', side.kind]);
  try {
    await side.prepare(topic);
    const phases: Record<string, [number, number]> = {};
    const mono = () => Number(process.hrtime.bigint() / 1000n);
    let m0 = mono();
    let t0 = performance.now();
    await side.publishMany(topic, messages, size);
    const publishMs = performance.now() - t0;
    phases.publish = [m0, mono()];
    let seen = 0;
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    t0 = 0;
    const sub = await side.subscribe(topic, () => {
      if (seen === 0) {
        t0 = performance.now();
        m0 = mono();
      }
      if (++seen === messages) resolveDone();
    });
    await withTimeout(done, 600_000, () => `consumed ${seen} of ${messages}`);
    const consumeMs = performance.now() - t0;
    phases.consume = [m0, mono()];
    if (values['phases-file']) writeFileSync(values['phases-file'], JSON.stringify(phases));
    await sub.close();
    console.log(
      `profiled ${transport}: publish ${Math.round((messages / publishMs) * 1000)} msg/s, consume ${Math.round((messages / consumeMs) * 1000)} msg/s (${messages} × ${size} B)`,
    );
  } finally {
    await side.close().catch(() => {});
    await side.cleanup(topic);
  }
}

// ---- summary of a .cpuprofile ---------------------------------------------------------------

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  function: string;
  file: string;
  selfMs: number;
  selfPct: number;
  totalMs: number;
  totalPct: number;
}

function component(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'V8/native (program)';
  if (/\/packages\/core\/(src|dist)\//.test(url)) return 'Omnibus core';
  if (/\/packages\/(kafka|rabbitmq|sqs)\/(src|dist)\//.test(url)) return 'Omnibus adapter';
  if (url.includes('/bench/src/')) return 'benchmark harness';
  const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!.startsWith('@aws-sdk') || m[1]!.startsWith('@smithy') ? 'AWS SDK' : m[1]!;
  if (url.startsWith('node:') || url === '') return 'Node.js internals / native';
  return 'other';
}

function short(url: string): string {
  const i = url.indexOf('/packages/');
  if (i >= 0) return url.slice(i + 1);
  const j = url.lastIndexOf('node_modules/');
  return j >= 0 ? url.slice(j + 'node_modules/'.length) : url.replace(/^file:\/\//, '');
}

/** Summary of the samples taken within [from, to] (µs, the profile's monotonic clock), all when absent. */
export function summarise(profile: CpuProfile, window?: [number, number]) {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (n: ProfileNode) =>
    `${n.callFrame.functionName || '(anonymous)'}|${n.callFrame.url}|${n.callFrame.lineNumber}`;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const components = new Map<string, number>();
  let all = 0;
  let busy = 0;
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window[0] || at > window[1])) continue;
    const dt = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(profile.samples[i]!);
    if (!node || dt <= 0) continue;
    all += dt;
    const comp = component(node.callFrame.url, node.callFrame.functionName);
    components.set(comp, (components.get(comp) ?? 0) + dt);
    if (comp !== 'idle') busy += dt;
    self.set(key(node), (self.get(key(node)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = key(byId.get(id)!);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const spots: HotSpot[] = [...total.keys()]
    .filter((k) => /\/packages\/core\/(src|dist)\//.test(k.split('|')[1]!))
    .map((k) => {
      const [fn, url] = k.split('|');
      const s = self.get(k) ?? 0;
      const t = total.get(k) ?? 0;
      return {
        function: fn!,
        file: short(url!),
        selfMs: Math.round(s),
        selfPct: Math.round((s / busy) * 1000) / 10,
        totalMs: Math.round(t),
        totalPct: Math.round((t / busy) * 1000) / 10,
      };
    });
  const bySelf = [...spots].sort((a, b) => b.selfMs - a.selfMs).slice(0, 15);
  const byTotal = [...spots].sort((a, b) => b.totalMs - a.totalMs).slice(0, 15);
  const topAny = [...self.entries()]
    .filter(([k]) => !k.startsWith('(idle)|'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20)
    .map(([k, ms]) => {
      const [fn, url] = k.split('|');
      return {
        function: fn!,
        file: short(url!),
        selfMs: Math.round(ms),
        selfPct: Math.round((ms / busy) * 1000) / 10,
      };
    });
  return {
    sampledMs: Math.round(all),
    busyMs: Math.round(busy),
    components: [...components.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => ({
        component: name,
        ms: Math.round(ms),
        pctOfBusy: Math.round((ms / busy) * 1000) / 10,
      })),
    coreBySelf: bySelf,
    coreByTotal: byTotal,
    topSelfAnywhere: topAny,
  };
}

function printSummary(s: ReturnType<typeof summarise>): void {
  console.log(
    `\nCPU time sampled: ${s.sampledMs} ms, of which busy (not idle) ${s.busyMs} ms\n\nby component (% of busy):`,
  );
  for (const c of s.components) {
    if (c.component !== 'idle')
      console.log(`  ${c.component.padEnd(28)} ${String(c.ms).padStart(7)} ms  ${c.pctOfBusy}%`);
  }
  console.log('\ntop self time anywhere:');
  for (const h of s.topSelfAnywhere)
    console.log(`  ${String(h.selfPct).padStart(5)}%  ${h.function}  (${h.file})`);
  console.log('\nOmnibus core by self time:');
  for (const h of s.coreBySelf)
    console.log(
      `  ${String(h.selfPct).padStart(5)}% self ${String(h.totalPct).padStart(5)}% total  ${h.function}  (${h.file})`,
    );
  console.log('\nOmnibus core by total (inclusive) time:');
  for (const h of s.coreByTotal)
    console.log(
      `  ${String(h.totalPct).padStart(5)}% total ${String(h.selfPct).padStart(5)}% self  ${h.function}  (${h.file})`,
    );
}

async function parent(): Promise<number> {
  const dir = join(ROOT, '.cache', 'bench-profiles', `${transport}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const run = spawnSync(
    process.execPath,
    [
      ...process.execArgv,
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
      process.argv[1]!,
      transport,
      '--child',
      `--messages=${messages}`,
      `--size=${size}`,
      `--phases-file=${join(dir, 'phases.json')}`,
    ],
    { stdio: 'inherit', env: process.env },
  );
  if (run.status !== 0) return run.status ?? 1;
  // The main thread's profile is the biggest one (loader threads write their own, small ones).
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  if (files.length === 0) {
    console.error('no profile written');
    return 1;
  }
  for (const f of files.slice(1)) rmSync(f);
  const profile = JSON.parse(readFileSync(files[0]!, 'utf8')) as CpuProfile;
  const phases = JSON.parse(readFileSync(join(dir, 'phases.json'), 'utf8')) as Record<
    string,
    [number, number]
  >;
  const summary = summarise(profile);
  const byPhase = Object.fromEntries(Object.entries(phases).map(([k, w]) => [k, summarise(profile, w)]));
  console.log('\n===== whole run');
  printSummary(summary);
  for (const [k, v] of Object.entries(byPhase)) {
    console.log(`\n===== ${k} phase only`);
    printSummary(v);
  }
  const label = values.label ? `-${values.label}` : '';
  const out = join(RESULTS_DIR, `profile-${transport}${label}.json`);
  writeFileSync(
    out,
    `${JSON.stringify({ transport, messages, size, measuredAt: new Date().toISOString(), profile: files[0], ...summary, phases: byPhase }, null, 2)}\n`,
  );
  console.log(`\nprofile: ${files[0]}\nsummary: ${out}`);
  return 0;
}

if (values.child) {
  child().then(
    () => setTimeout(() => process.exit(0), 500).unref(),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  parent().then((code) => process.exit(code));
}
