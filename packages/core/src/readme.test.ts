/**
 * The README's option tables cite the defaults; the schemas in options.ts state them. This holds the two
 * together: every default the schemas fill has a row, and every literal default in a row is the schema's.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { connectSchema, parseOptions, replaySchema, subscribeSchema } from './options.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

/** The `| option | default | meaning |` rows of the table that follows a line starting with `label`. */
function table(label: string): Map<string, string> {
  const start = readme.indexOf(`\n${label}`);
  expect(start, `README has a table after ${label}`).toBeGreaterThan(-1);
  const rows = new Map<string, string>();
  const lines = readme
    .slice(start + 1)
    .split('\n')
    .slice(1);
  let seen = false;
  for (const line of lines) {
    if (!line.startsWith('|')) {
      if (seen) break;
      continue;
    }
    seen = true;
    const [name, value] = line
      .split('|')
      .slice(1, 3)
      .map((c) => c.trim());
    for (const option of name!.match(/`[^`]+`/g) ?? []) rows.set(option.slice(1, -1), value!);
  }
  return rows;
}

/** Leaf values of a parsed options object, by dotted path (functions and stores left out). */
function leaves(value: unknown, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [p, x] of leaves(v, path)) out.set(p, x);
    } else if (typeof v !== 'function') out.set(path, v);
  }
  return out;
}

/** A literal default as the README writes it, or undefined for prose ("2 × concurrency", "off"). */
function literal(cell: string): unknown {
  if (/^-?\d+$/.test(cell)) return Number(cell);
  if (cell === 'true' || cell === 'false') return cell === 'true';
  const quoted = /^`'(.*)'`$/.exec(cell);
  return quoted ? quoted[1] : undefined;
}

function expectTableMatches(rows: Map<string, string>, defaults: Map<string, unknown>, given: string[]) {
  for (const [path, value] of defaults) {
    if (given.includes(path)) continue;
    expect(rows.has(path), `README row for ${path}`).toBe(true);
    const cited = literal(rows.get(path)!);
    if (cited !== undefined) expect(cited, path).toEqual(value);
  }
  let literals = 0;
  for (const [path, cell] of rows) {
    const cited = literal(cell);
    if (cited === undefined) continue;
    literals++;
    expect(defaults.get(path), `schema default of ${path}`).toEqual(cited);
  }
  expect(literals).toBeGreaterThan(0);
}

const handlers = { x: () => {} };

describe('README option tables', () => {
  it('subscribe', () => {
    const parsed = parseOptions(subscribeSchema, {
      topic: 't',
      group: 'g',
      handlers,
      circuitBreaker: {},
      idempotency: { store: { claim() {} } },
    });
    expectTableMatches(table('`subscribe`:'), leaves(parsed), ['topic', 'group', 'idempotency.store']);
  });

  it('connect', () => {
    const parsed = parseOptions(connectSchema, { transport: 'memory://', service: 's' });
    expectTableMatches(table('`connect`:'), leaves(parsed), ['transport', 'service']);
  });

  it('replay', () => {
    const parsed = parseOptions(replaySchema, { topic: 't', from: 'earliest', handlers });
    expectTableMatches(table('`replay`:'), leaves(parsed), ['topic', 'from']);
  });
});
