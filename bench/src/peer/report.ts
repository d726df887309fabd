/** The "Omnibus against message-queue-toolkit" section of BENCHMARKS.md, from each transport's `peer` figures. */

import { sizeLabel } from '../lib/payload.js';
import type { Results } from '../lib/report.js';
import type { Figure } from '../lib/stats.js';
import type { PeerPair } from './run.js';

const ORDER = ['memory', 'rabbitmq', 'kafka', 'sqs', 'nats'];

function num(v: number, digits = 0): string {
  if (!Number.isFinite(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function spread(f: Figure, digits = 0): string {
  if (!Number.isFinite(f.median)) return '–';
  return `${num(f.median, digits)} <sub>(${num(f.min, digits)}–${num(f.max, digits)})</sub>`;
}

/** Omnibus/peer; throughput below 1 (Omnibus behind) is marked. */
function ratioCell(p: PeerPair, higherIsBetter: boolean): string {
  const r = p.ratio;
  if (!Number.isFinite(r.median)) return '–';
  const mark = higherIsBetter && r.median < 1 ? ' ⚠' : '';
  return `**${r.median.toFixed(2)}**${mark} <sub>(${r.min.toFixed(2)}–${r.max.toFixed(2)})</sub>`;
}

function firstLine(text: string | undefined): string {
  return (text ?? '').split('\n')[0]!.slice(0, 200);
}

export function peerSection(r: Results): string[] {
  const entries = ORDER.map((name) => [name, r.transports[name]?.peer] as const).filter(([, p]) => !!p);
  const lines = [
    'message-queue-toolkit (`@message-queue-toolkit/*`, devDependencies of `bench/` only) is the closest',
    'TypeScript library to Omnibus: one publisher/consumer abstraction over several brokers, zod-validated',
    'messages. It is here so that "faster than the raw client allows" is read next to what a user would',
    'otherwise pick. Both sides validate every message with zod on publish and on consume (Omnibus with a',
    '`defineMessage` schema, the peer with its own message schema), keep the same number of publishes in',
    'flight, and run on the same broker objects (quorum queue on RabbitMQ, standard queue on SQS), alternating',
    '(Omnibus, peer, …), each in a worker process of its own. Ratios are Omnibus/peer of the medians:',
    'throughput ≥ 1 means Omnibus is faster (⚠ below 1), CPU ≤ 1 means Omnibus spends less. The cost of the',
    'schema check itself is priced separately under "Cost of each pipeline stage" (the `validation` row).',
    '',
  ];
  if (entries.length === 0) return [...lines, '_Not measured yet (`pnpm bench rabbitmq sqs`)._'];
  lines.push(
    '| transport | size | msgs/rep | publish Omnibus (msg/s) | publish peer (msg/s) | publish Omnibus/peer | consume Omnibus (msg/s) | consume peer (msg/s) | consume Omnibus/peer | publish CPU Omnibus/peer | consume CPU Omnibus/peer |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  );
  for (const [name, p] of entries) {
    if (!p) continue;
    if (p.status === 'unavailable') {
      lines.push(`| ${name} | – | – | | | not measured: ${p.reason ?? ''} | | | | | |`);
      continue;
    }
    if (p.sizes.length === 0) {
      lines.push(`| ${name} | – | – | | | ${p.status}: ${firstLine(p.error)} | | | | | |`);
      continue;
    }
    for (const s of p.sizes) {
      lines.push(
        `| ${name} | ${sizeLabel(s.size)} | ${num(s.messages)} | ${spread(s.publish.omnibus)} | ${spread(s.publish.peer)} | ${ratioCell(s.publish, true)} | ${spread(s.consume.omnibus)} | ${spread(s.consume.peer)} | ${ratioCell(s.consume, true)} | ${ratioCell(s.publishCpuUs, false)} | ${ratioCell(s.consumeCpuUs, false)} |`,
      );
    }
  }
  lines.push('', 'What each side does that the other does not, and how each is configured:', '');
  for (const [name, p] of entries) {
    if (!p?.settings) continue;
    const when = `${p.measuredAt.slice(0, 16).replace('T', ' ')} UTC, ${p.reps} repetitions each, ${num(p.durationS)} s`;
    lines.push(`- **${name}** (${when}${p.status === 'ok' ? '' : `, **${p.status}**`})`);
    lines.push(`  - differences: ${p.settings.differences}`);
    lines.push(`  - message-queue-toolkit: ${p.settings.peer}`);
    lines.push(`  - Omnibus: ${p.settings.omnibus}`);
  }
  return lines;
}
