/**
 * The README's option tables and the JSDoc of the option interfaces cite the defaults; the schemas in
 * options.ts state them. This holds them together: every default the schemas fill has a README row, and
 * every literal default cited (README or JSDoc) is the schema's.
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

/** `(default 8)`, `(default 10 s)`, `(default 'ack': …)` in the JSDoc of each field of an interface in bus.ts. */
function jsdocDefaults(name: string): Map<string, unknown> {
  const source = readFileSync(new URL('./bus.ts', import.meta.url), 'utf8');
  const start = source.indexOf(`export interface ${name} {`);
  expect(start, name).toBeGreaterThan(-1);
  const body = source.slice(start, source.indexOf('\n}', start));
  const out = new Map<string, unknown>();
  for (const m of body.matchAll(/\(default ([^):;,]+)[^)]*\)[^/]*\*\/\s*\n\s*(\w+)\??:/g)) {
    const [cited, field] = [m[1]!.trim(), m[2]!];
    const seconds = /^(\d+) s$/.exec(cited);
    const value = seconds ? Number(seconds[1]) * 1000 : literal(cited.replace(/^'(.*)'$/, "`'$1'`"));
    if (value !== undefined) out.set(field, value);
  }
  return out;
}

describe('JSDoc of the option interfaces', () => {
  it.each([
    ['ConnectOptions', parseOptions(connectSchema, { transport: 'memory://', service: 's' })],
    ['SubscribeOptions', parseOptions(subscribeSchema, { topic: 't', group: 'g', handlers })],
    ['ReplayOptions', parseOptions(replaySchema, { topic: 't', from: 'earliest', handlers })],
  ])('%s cites the schema defaults', (name, parsed) => {
    const cited = jsdocDefaults(name);
    expect(cited.size).toBeGreaterThan(0);
    const defaults = leaves(parsed);
    for (const [field, value] of cited) expect(defaults.get(field), `${name}.${field}`).toEqual(value);
  });
});
