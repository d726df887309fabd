/**
 * `pnpm bench [memory] [rabbitmq] [kafka] [sqs] [--reps N] [--scale F] [--sizes 200,16384]
 *  [--only throughput,latency,naive]`
 *
 * Raw client vs Omnibus on the same broker in one run; figures are medians of alternating repetitions.
 * Writes bench/results/latest.json (merged: transports not run keep their last figures) and BENCHMARKS.md.
 * The launcher (scripts/bench.mjs) starts the brokers first. Under another Node.js major than the machine's
 * (`pnpm bench --node 24`), the figures go to `byNode[major]` in latest.json, not to the main `transports`.
 */
import { parseArgs } from 'node:util';
import { loadBench, TRANSPORTS, type TransportName } from './lib/load.js';
import { machine, nodeRun } from './lib/machine.js';
import { readResults, resultsForThisNode, writeReport, writeResults } from './lib/report.js';
import { BENCH_PARTS, type BenchPart, runTransport } from './lib/runner.js';
import { workerProcesses } from './lib/workers.js';
import { comparePeer, keepPeer } from './peer/run.js';
import { runStages } from './stages.js';

const ALL = TRANSPORTS;
type Name = TransportName;

function log(line: string): void {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      reps: { type: 'string', default: '3' },
      scale: { type: 'string', default: '1' },
      sizes: { type: 'string', default: '200,16384' },
      only: { type: 'string', default: BENCH_PARTS.join(',') },
      'no-stages': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      // The message-queue-toolkit comparison (peer/): skipped, or run alone (the main figures kept).
      'no-peer': { type: 'boolean', default: false },
      'peer-only': { type: 'boolean', default: false },
    },
  });
  const names = positionals.length === 0 ? [...ALL] : positionals;
  for (const n of names) {
    if (!(ALL as readonly string[]).includes(n)) {
      console.error(`unknown transport "${n}"; expected one of ${ALL.join(', ')}`);
      return 2;
    }
  }
  const reps = Number(values.reps);
  const scale = Number(values.scale);
  const sizes = values.sizes.split(',').map(Number);
  if (
    !Number.isInteger(reps) ||
    reps < 1 ||
    !(scale > 0) ||
    sizes.some((s) => !Number.isInteger(s) || s < 64)
  ) {
    console.error('--reps must be a positive integer, --scale a positive number, --sizes integers ≥ 64');
    return 2;
  }
  const parts = new Set(values.only.split(',').map((p) => p.trim())) as Set<BenchPart>;
  const badPart = [...parts].find((p) => !BENCH_PARTS.includes(p));
  if (badPart !== undefined || (parts.has('latency') && !parts.has('throughput'))) {
    console.error(
      `--only takes a comma-separated list of ${BENCH_PARTS.join(', ')} (latency only with throughput)`,
    );
    return 2;
  }
  const results = readResults();
  const run = nodeRun();
  // The load average shown is the one at the end of the last main run; other runs keep it.
  const keepLoad = (): number[] | undefined => (run.isMain ? undefined : results.machine?.loadAverage);
  results.machine = { ...machine(), loadAverage: keepLoad() ?? machine().loadAverage };
  const target = resultsForThisNode(results);
  log(
    run.isMain
      ? `Node ${run.version}: main figures`
      : `Node ${run.version}: figures kept apart from the main ones (Node ${run.mainVersion}), under byNode["${run.major}"]`,
  );
  let failed = 0;
  for (const name of names as Name[]) {
    const bench = await loadBench(name);
    log(`${name}: start (${reps} alternating repetitions per figure, scale ${scale})`);
    if (!values['peer-only']) {
      const exec = workerProcesses(name);
      const r = await runTransport(bench, exec, { sizes, reps, scale, log, parts }).finally(() =>
        exec.close(),
      );
      if (r.status !== 'ok') failed++;
      // Parts not run keep their last figures.
      const previous = target.transports[name];
      if (previous && !parts.has('throughput')) r.sizes = previous.sizes;
      if (previous?.naive && !parts.has('naive')) r.naive = previous.naive;
      if (previous?.peer) r.peer = previous.peer;
      target.transports[name] = r;
    }
    if (!values['no-peer'] && (values['peer-only'] || parts.has('throughput'))) {
      const peer = await comparePeer(name, bench, { sizes, reps, scale, log });
      if (peer?.status === 'failed') failed++;
      keepPeer(target.transports[name], peer, log);
    }
    if (name === 'memory' && !values['no-stages'] && !values['peer-only'] && parts.has('throughput')) {
      log('memory: pipeline stage costs');
      target.setStages(await runStages({ scale, reps: Math.max(reps, 5), log }));
    }
    if (!values['no-write']) writeResults(results);
  }
  results.machine = { ...machine(), loadAverage: keepLoad() ?? machine().loadAverage };
  if (!values['no-write']) {
    writeResults(results);
    const file = await writeReport(results);
    log(`wrote bench/results/latest.json and ${file}`);
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Clients sometimes keep sockets or timers open after close(); a finished run must not hang.
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
