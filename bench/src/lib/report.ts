/** bench/results/latest.json (merged across runs) and the BENCHMARKS.md page generated from it. */
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { peerSection } from '../peer/report.js';
import { type Machine, nodeMajor, nodeRun } from './machine.js';
import { sizeLabel } from './payload.js';
import type { Pair, TransportResult } from './runner.js';
import type { Figure } from './stats.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');
const LATEST = join(RESULTS_DIR, 'latest.json');
const PAGE = join(ROOT, 'BENCHMARKS.md');
const NOTES_START = '<!-- notes:start -->';
const NOTES_END = '<!-- notes:end -->';

export interface StageRow {
  stage: string;
  what: string;
  /** µs per message (median of repetitions, with spread). */
  usPerMessage: Figure;
  /** Median µs per message above the baseline row. */
  deltaUs: number;
}

export interface StageResults {
  measuredAt: string;
  messages: number;
  rows: StageRow[];
  micro: StageRow[];
}

export interface SoakSample {
  messages: number;
  elapsedS: number;
  rssMiB: number;
  heapUsedMiB: number;
  /** Entries held by the bounded idempotency store at the sample. */
  storeEntries: number;
}

export interface SoakResult {
  transport: string;
  measuredAt: string;
  messages: number;
  maxEntries: number;
  durationS: number;
  throughput: number;
  samples: SoakSample[];
  /** RSS growth over the second half of the run, MiB (near 0: memory levelled off). */
  secondHalfRssGrowthMiB: number;
  secondHalfHeapGrowthMiB: number;
  status: 'ok' | 'failed';
  error?: string;
  /** The Node.js version the soak ran under (absent in files written before it was recorded). */
  node?: string;
}

/** The figures of runs under another Node.js major than the machine's (`pnpm bench --node 24`). */
export interface NodeResults {
  /** The exact version, e.g. v24.11.1. */
  machineNode: string;
  transports: Record<string, TransportResult>;
  stages?: StageResults;
}

export interface Results {
  generatedAt: string;
  /** `machine.node` is the Node.js of the main figures (`transports`, `stages`). */
  machine: Machine;
  transports: Record<string, TransportResult>;
  stages?: StageResults;
  /** Keyed by Node.js major ("24"); merged per transport like `transports`, never the main major. */
  byNode?: Record<string, NodeResults>;
}

export function readResults(): Results {
  if (existsSync(LATEST)) {
    try {
      const r = JSON.parse(readFileSync(LATEST, 'utf8')) as Results;
      if (r && typeof r === 'object' && r.transports) return r;
    } catch {
      // a broken file is replaced
    }
  }
  return { generatedAt: '', machine: undefined as unknown as Machine, transports: {} };
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp.json`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export function writeResults(r: Results): void {
  r.generatedAt = new Date().toISOString();
  writeAtomic(LATEST, `${JSON.stringify(r, null, 2)}\n`);
}

/**
 * Where this process's figures go: the main ones, or (under another Node.js major than the machine's)
 * `byNode[major]`, created when missing.
 */
export function resultsForThisNode(r: Results): {
  transports: Record<string, TransportResult>;
  setStages(s: StageResults): void;
} {
  const run = nodeRun();
  if (run.isMain) {
    return {
      transports: r.transports,
      setStages: (s) => {
        r.stages = s;
      },
    };
  }
  r.byNode ??= {};
  const entry = r.byNode[run.major] ?? { machineNode: run.version, transports: {} };
  entry.machineNode = run.version;
  r.byNode[run.major] = entry;
  return {
    transports: entry.transports,
    setStages: (s) => {
      entry.stages = s;
    },
  };
}

/** soak-<transport>.json for the main Node.js, soak-<transport>.node<major>.json for another. */
function soakFile(transport: string, major?: string): string {
  return join(RESULTS_DIR, major ? `soak-${transport}.node${major}.json` : `soak-${transport}.json`);
}

export function readSoak(transport: string, major?: string): SoakResult | undefined {
  const file = soakFile(transport, major);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SoakResult;
  } catch {
    return undefined;
  }
}

export function writeSoak(s: SoakResult): void {
  const run = nodeRun();
  s.node ??= run.version;
  writeAtomic(soakFile(s.transport, run.isMain ? undefined : run.major), `${JSON.stringify(s, null, 2)}\n`);
}

/** The soaks to show: the main Node.js's, then those of other majors, per transport. */
function allSoaks(mainNode: string): SoakResult[] {
  const majors = existsSync(RESULTS_DIR)
    ? [
        ...new Set(
          readdirSync(RESULTS_DIR)
            .map((f) => /^soak-[a-z]+\.node(\d+)\.json$/.exec(f)?.[1])
            .filter((m): m is string => !!m && m !== nodeMajor(mainNode)),
        ),
      ].sort((a, b) => Number(a) - Number(b))
    : [];
  return ['memory', 'kafka'].flatMap((t) =>
    [readSoak(t), ...majors.map((m) => readSoak(t, m))].filter((s): s is SoakResult => !!s),
  );
}

// ---- BENCHMARKS.md ---------------------------------------------------------------------------

const ORDER = ['memory', 'rabbitmq', 'kafka', 'sqs', 'nats'];

function num(v: number, digits = 0): string {
  if (!Number.isFinite(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function spread(f: Figure, digits = 0): string {
  if (!Number.isFinite(f.median)) return '–';
  return `${num(f.median, digits)} <sub>(${num(f.min, digits)}–${num(f.max, digits)})</sub>`;
}

function ratioCell(p: Pair, higherIsBetter: boolean, target?: number): string {
  const r = p.ratio;
  if (!Number.isFinite(r.median)) return '–';
  const mark = target !== undefined && higherIsBetter && r.median < target ? ' ⚠' : '';
  return `**${r.median.toFixed(2)}**${mark} <sub>(${r.min.toFixed(2)}–${r.max.toFixed(2)})</sub>`;
}

function machineLines(r: Results): string[] {
  const m = r.machine;
  const lines = [
    `- CPU: ${m.cpuModel}, ${m.cores} cores available to Node`,
    `- Memory: ${m.memoryGiB} GiB`,
    `- OS: ${m.os}`,
    `- Node.js: ${m.node}`,
  ];
  const versions = ORDER.map((t) => r.transports[t])
    .filter((t): t is TransportResult => !!t && t.transport !== 'memory' && !!t.brokerVersion)
    .map((t) => `${t.transport} ${t.brokerVersion}`);
  if (versions.length > 0)
    lines.push(`- Brokers (single node, on the same machine, 127.0.0.1): ${versions.join('; ')}`);
  lines.push(
    `- Load average when the last main run ended: ${m.loadAverage.join(' / ')} (other work shared the machine: treat small differences as noise)`,
  );
  return lines;
}

function throughputTable(r: Results): string[] {
  const lines = [
    '| transport | size | msgs/rep | publish raw (msg/s) | publish Omnibus (msg/s) | publish Omnibus/raw | publishBatch Omnibus (msg/s) | publishBatch Omnibus/raw | consume raw (msg/s) | consume Omnibus (msg/s) | consume Omnibus/raw |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const name of ORDER) {
    const t = r.transports[name];
    if (!t) continue;
    if (t.status !== 'ok' && t.sizes.length === 0) {
      lines.push(`| ${name} | – | – | failed: ${firstLine(t.error)} | | | | | | | |`);
      continue;
    }
    for (const s of t.sizes) {
      lines.push(
        `| ${name} | ${sizeLabel(s.size)} | ${num(s.messages)} | ${spread(s.publish.raw)} | ${spread(s.publish.omnibus)} | ${ratioCell(s.publish, true, 0.9)} | ${s.publishBatch ? spread(s.publishBatch.omnibus) : '–'} | ${s.publishBatch ? ratioCell(s.publishBatch, true, 0.9) : '–'} | ${spread(s.consume.raw)} | ${spread(s.consume.omnibus)} | ${ratioCell(s.consume, true, 0.9)} |`,
      );
    }
  }
  return lines;
}

/** Targets of the naive-service figures (issue 15): one at a time, and concurrent per transport. */
const NAIVE_SERIAL_TARGET = 0.9;
const NAIVE_CONCURRENT_TARGET: Record<string, number> = { kafka: 10 };
const NAIVE_BATCHED_TARGET = 0.9;

function naiveTable(r: Results): string[] {
  const rows = ORDER.map((name) => r.transports[name]).filter(
    (t): t is TransportResult & { naive: NonNullable<TransportResult['naive']> } => !!t?.naive,
  );
  if (rows.length === 0) return ['_Not measured yet (`pnpm bench --only naive`)._'];
  const first = rows[0]!.naive;
  const lines = [
    `A service that publishes one ${sizeLabel(first.size)} event per request through \`bus.publish()\` with the adapter's default settings, against the raw client used the naive way: one message per call (\`send()\`, \`SendMessage\`, …), each awaited. One request at a time (each awaiting its publish), and ${first.concurrency} requests at once; each run lasts ${num(first.durationMs / 1000, 1)} s. Where the raw client batches on its own terms (SQS: SendMessageBatch of 10, 8 calls in flight), the concurrent figure is also set against that batched client. Targets: one at a time ≥ ${NAIVE_SERIAL_TARGET.toFixed(2)} of naive; ${first.concurrency} at once ≥ ${NAIVE_CONCURRENT_TARGET.kafka}× naive on Kafka and ≥ ${NAIVE_BATCHED_TARGET.toFixed(2)} of the batched client on SQS (⚠ below).`,
    '',
    `| transport | one at a time raw (msg/s) | one at a time Omnibus (msg/s) | Omnibus/naive | ${first.concurrency} concurrent raw (msg/s) | ${first.concurrency} concurrent Omnibus (msg/s) | Omnibus/naive | raw batched client (msg/s) | Omnibus/batched | CPU µs/msg raw / Omnibus (one at a time) |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const t of rows) {
    const n = t.naive;
    const vsBatched = n.concurrentVsBatched;
    lines.push(
      `| ${t.transport} | ${spread(n.serial.raw)} | ${spread(n.serial.omnibus)} | ${ratioCell(n.serial, true, NAIVE_SERIAL_TARGET)} | ${spread(n.concurrent.raw)} | ${spread(n.concurrent.omnibus)} | ${ratioCell(n.concurrent, true, NAIVE_CONCURRENT_TARGET[t.transport])} | ${vsBatched ? spread(vsBatched.raw) : '–'} | ${vsBatched ? ratioCell(vsBatched, true, NAIVE_BATCHED_TARGET) : '–'} | ${num(n.serialCpuUs.raw.median, 1)} / ${num(n.serialCpuUs.omnibus.median, 1)} |`,
    );
  }
  return lines;
}

/** The other Node.js majors measured, oldest first (a leftover entry for the main major is skipped). */
function otherNodes(r: Results): [string, NodeResults][] {
  const main = nodeMajor(r.machine.node);
  return Object.entries(r.byNode ?? {})
    .filter(([major]) => major !== main)
    .sort(([a], [b]) => Number(a) - Number(b));
}

function byNodeSection(r: Results): string[] {
  const others = otherNodes(r);
  const intro = [
    'On Node 20, the first use of AsyncLocalStorage (Omnibus keeps the message context in it) switches on a',
    'process-wide promise hook; Node 24 (AsyncContextFrame) does not pay that cost. The tables above are from the',
    `machine's own Node.js (${r.machine.node}); \`pnpm bench … --node <major>\` measures under another one (fetched`,
    'with `npx node@<major>`) and keeps those figures apart. Omnibus/raw ratios, median <sub>(min–max)</sub>:',
  ];
  if (others.length === 0) {
    return [...intro, '', '_No other Node.js version measured yet (`pnpm bench memory --node 24`)._'];
  }
  const columns: { label: string; transports: Record<string, TransportResult> }[] = [
    { label: `Node ${r.machine.node}`, transports: r.transports },
    ...others.map(([, n]) => ({ label: `Node ${n.machineNode}`, transports: n.transports })),
  ];
  const head = [...columns.map((c) => `publish ${c.label}`), ...columns.map((c) => `consume ${c.label}`)];
  const lines = [
    ...intro,
    '',
    ...others.map(([, n]) => `- Node ${n.machineNode}: ${measuredOn(n.transports)}`),
    '',
    `| transport | size | ${head.join(' | ')} |`,
    `|---|---|${head.map(() => '--:').join('|')}|`,
  ];
  for (const name of ORDER) {
    const sizes = [
      ...new Set(columns.flatMap((c) => c.transports[name]?.sizes.map((s) => s.size) ?? [])),
    ].sort((a, b) => a - b);
    for (const size of sizes) {
      const at = columns.map((c) => c.transports[name]?.sizes.find((s) => s.size === size));
      lines.push(
        `| ${name} | ${sizeLabel(size)} | ${[
          ...at.map((s) => (s ? ratioCell(s.publish, true, 0.9) : '–')),
          ...at.map((s) => (s ? ratioCell(s.consume, true, 0.9) : '–')),
        ].join(' | ')} |`,
      );
    }
  }
  return lines;
}

/** "memory (2026-11-28 02:11 UTC, 3 repetitions), kafka (…, failed)" */
function measuredOn(transports: Record<string, TransportResult>): string {
  return ORDER.map((name) => transports[name])
    .filter((t): t is TransportResult => !!t)
    .map(
      (t) =>
        `${t.transport} (${t.measuredAt.slice(0, 16).replace('T', ' ')} UTC, ${t.reps} repetitions${t.status === 'ok' ? '' : `, **${t.status}**: ${firstLine(t.error)}`})`,
    )
    .join('; ');
}

function cpuTable(r: Results): string[] {
  const lines = [
    '| transport | size | bytes on the wire raw / Omnibus | publish CPU raw (µs/msg) | publish CPU Omnibus (µs/msg) | Omnibus/raw | publishBatch CPU Omnibus (µs/msg) | consume CPU raw (µs/msg) | consume CPU Omnibus (µs/msg) | Omnibus/raw |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const name of ORDER) {
    const t = r.transports[name];
    if (!t) continue;
    for (const s of t.sizes) {
      if (!s.publishCpuUs) continue;
      const w = s.wireBytes ? `${num(s.wireBytes.raw)} / ${num(s.wireBytes.omnibus)}` : '–';
      lines.push(
        `| ${name} | ${sizeLabel(s.size)} | ${w} | ${spread(s.publishCpuUs.raw, 1)} | ${spread(s.publishCpuUs.omnibus, 1)} | ${ratioCell(s.publishCpuUs, false)} | ${s.publishBatchCpuUs ? spread(s.publishBatchCpuUs.omnibus, 1) : '–'} | ${spread(s.consumeCpuUs.raw, 1)} | ${spread(s.consumeCpuUs.omnibus, 1)} | ${ratioCell(s.consumeCpuUs, false)} |`,
      );
    }
  }
  return lines;
}

function latencyTable(r: Results): string[] {
  const lines = [
    '| transport | size | rate (msg/s) | p50 raw (ms) | p50 Omnibus (ms) | p50 Omnibus/raw | p99 raw (ms) | p99 Omnibus (ms) | p99 Omnibus/raw |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const name of ORDER) {
    const t = r.transports[name];
    if (!t) continue;
    for (const s of t.sizes) {
      if (!Number.isFinite(s.latencyP50.raw.median)) continue;
      const d = name === 'memory' ? 3 : 2;
      lines.push(
        `| ${name} | ${sizeLabel(s.size)} | ${num(s.latencyRate)} | ${spread(s.latencyP50.raw, d)} | ${spread(s.latencyP50.omnibus, d)} | ${ratioCell(s.latencyP50, false)} | ${spread(s.latencyP99.raw, d)} | ${spread(s.latencyP99.omnibus, d)} | ${ratioCell(s.latencyP99, false)} |`,
      );
    }
  }
  return lines;
}

function settingsLines(r: Results): string[] {
  const lines: string[] = [];
  for (const name of ORDER) {
    const t = r.transports[name];
    if (!t) continue;
    const when = `${t.measuredAt.slice(0, 16).replace('T', ' ')} UTC, ${t.reps} repetitions each, ${num(t.durationS)} s`;
    lines.push(`- **${name}** (${when}${t.status === 'ok' ? '' : `, **${t.status}**`})`);
    lines.push(`  - raw: ${t.settings.raw}`);
    lines.push(`  - Omnibus: ${t.settings.omnibus}`);
    lines.push(`  - durability on both sides: ${t.settings.durability}`);
    if (t.status !== 'ok') lines.push(`  - error: \`${firstLine(t.error)}\``);
  }
  return lines;
}

function stagesTable(s: StageResults): string[] {
  const lines = [
    `Memory transport, ${num(s.messages)} messages per repetition, consume side only (publishing not measured), CPU µs per message (user + system): median <sub>(min–max)</sub> of the repetitions, which alternate across the variants.`,
    '',
    '| subscription | what it adds | µs/msg | Δ vs baseline (µs) |',
    '|---|---|--:|--:|',
  ];
  for (const row of s.rows) {
    lines.push(
      `| ${row.stage} | ${row.what} | ${spread(row.usPerMessage, 2)} | ${row.deltaUs === 0 && row.stage === 'baseline' ? '–' : num(row.deltaUs, 2)} |`,
    );
  }
  if (s.micro.length > 0) {
    lines.push(
      '',
      'Single operations in isolation (µs per call):',
      '',
      '| operation | what | µs/call | Δ (µs) |',
      '|---|---|--:|--:|',
    );
    for (const row of s.micro) {
      lines.push(`| ${row.stage} | ${row.what} | ${spread(row.usPerMessage, 3)} | ${num(row.deltaUs, 3)} |`);
    }
  }
  return lines;
}

function soakLines(s: SoakResult): string[] {
  const lines = [
    `**${s.transport}** (${s.measuredAt.slice(0, 16).replace('T', ' ')} UTC${s.node ? `, Node ${s.node}` : ''}): ${num(s.messages)} messages published and handled in ${num(s.durationS)} s (${num(s.throughput)} msg/s end to end), idempotency store \`memoryStore({ maxEntries: ${num(s.maxEntries)} })\`${s.status === 'ok' ? '' : `, **${s.status}**: ${firstLine(s.error)}`}. RSS growth over the second half: ${num(s.secondHalfRssGrowthMiB, 1)} MiB; heap growth: ${num(s.secondHalfHeapGrowthMiB, 1)} MiB.`,
    '',
    '| messages handled | elapsed (s) | RSS (MiB) | heap used (MiB) | store entries |',
    '|--:|--:|--:|--:|--:|',
  ];
  for (const x of s.samples) {
    lines.push(
      `| ${num(x.messages)} | ${num(x.elapsedS, 1)} | ${num(x.rssMiB, 1)} | ${num(x.heapUsedMiB, 1)} | ${num(x.storeEntries)} |`,
    );
  }
  return lines;
}

function firstLine(text: string | undefined): string {
  return (text ?? '').split('\n')[0]!.slice(0, 200);
}

function existingNotes(): string {
  if (!existsSync(PAGE)) return '';
  const text = readFileSync(PAGE, 'utf8');
  const a = text.indexOf(NOTES_START);
  const b = text.indexOf(NOTES_END);
  if (a < 0 || b < a) return '';
  return text.slice(a + NOTES_START.length, b).trim();
}

export async function writeReport(r: Results): Promise<string> {
  const notes = existingNotes();
  const out: string[] = [
    '# Benchmarks',
    '',
    'Raw client against Omnibus on the same broker, in the same run. Generated by `pnpm bench` from',
    '`bench/results/latest.json`; the analysis between the `notes` markers is kept when the page is regenerated.',
    '',
    '## How to read and reproduce',
    '',
    '- `pnpm bench [memory|rabbitmq|kafka|sqs …]` starts the brokers it needs (`scripts/brokers/up.sh`) and runs',
    '  every figure through the raw client and through Omnibus, alternating (raw, Omnibus, raw, Omnibus, …).',
    '  `pnpm bench soak [memory|kafka]` runs the million-message soak; `pnpm bench profile <transport>`',
    '  writes CPU profiles (`node --cpu-prof`) of the Omnibus path and lists the hot spots in `packages/core/src`.',
    "  `--node <major>` (e.g. `--node 24`) runs any of them under that Node.js major instead of the machine's.",
    "- Each side runs in a worker process of its own, so the raw client never pays for Omnibus's heap or for",
    '  the promise hooks that AsyncLocalStorage switches on (Node 20) once a handler has run.',
    '- Each figure is the **median** of the repetitions, the spread (min–max) in small print. A ratio is',
    '  Omnibus/raw of the medians, its spread the range of the per-repetition ratios (each Omnibus repetition',
    '  against the raw one just before it). Throughput: higher is better, target ≥ 0.90 (⚠ below). Latency:',
    '  lower is better.',
    '- Publish: N messages with a fixed window of unconfirmed publishes, timed until the last confirm (Omnibus:',
    '  one `bus.publish()` per message; publishBatch: `bus.publishBatch()` in batches like the raw batch call). Consume:',
    '  the same N messages read back from the backlog that run left, timed from the first message received to',
    '  the last (consumer start-up and group joins excluded), each acknowledged after its handler. Latency:',
    '  publish to handler, one message at a time at a fixed rate with the consumer running.',
    '- Omnibus publishes plain `{ type, data }` messages (no schema) and subscribes with one untyped handler, so',
    '  both sides do the same work; schema validation and the other pipeline features are priced separately below.',
    '',
    '## Machine',
    '',
    ...machineLines(r),
    '',
    '## Throughput',
    '',
    ...throughputTable(r),
    '',
    '## A service publishing one event per request (naive client)',
    '',
    ...naiveTable(r),
    '',
    '## Omnibus against message-queue-toolkit',
    '',
    ...peerSection(r),
    '',
    '## Omnibus/raw by Node.js version',
    '',
    ...byNodeSection(r),
    '',
    '## Client CPU per message',
    '',
    'CPU time (user + system) of the benchmark process per message, from the same repetitions as the',
    'throughput table: what the client library costs, whatever the broker and the other load on the machine',
    'do to wall-clock figures. Lower is better. Bytes on the wire: body plus header names and values of one',
    'message as the core counts them (the CloudEvents envelope is the difference).',
    '',
    ...cpuTable(r),
    '',
    '## End-to-end latency at a fixed rate',
    '',
    ...latencyTable(r),
    '',
    '## Settings per transport',
    '',
    ...settingsLines(r),
    '',
  ];
  if (r.stages) out.push('## Cost of each pipeline stage', '', ...stagesTable(r.stages), '');
  const soaks = allSoaks(r.machine.node);
  if (soaks.length > 0) {
    out.push(
      '## Soak: memory levels off',
      '',
      '`pnpm bench soak [memory|kafka]`: Omnibus publishes and handles one million 200-byte messages at once, the',
      'publisher never more than 20 000 ahead of the consumer, with a bounded idempotency store on the',
      'subscription (concurrency 64). Heap is sampled after a forced collection (`--expose-gc`); RSS includes',
      'the tsx loader. The memory transport keeps 10 000 messages per topic for replay.',
      '',
    );
    for (const s of soaks) out.push(...soakLines(s), '');
  }
  out.push('## Analysis', '', NOTES_START, notes || '_No analysis recorded yet._', NOTES_END, '');
  writeFileSync(PAGE, out.join('\n'));
  return 'BENCHMARKS.md';
}
