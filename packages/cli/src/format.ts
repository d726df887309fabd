/** Output for people and scripts: times, tables, message previews and the redrive progress bar. */
import type { PeekedMessage } from '@omnibus/core';

/**
 * A point in time from the command line: an ISO 8601 date or time, epoch milliseconds, or a duration
 * ago (`90s`, `15m`, `2h`, `7d`). Returns ms since epoch, or undefined when the text is none of these.
 */
export function parseTime(text: string, nowMs = Date.now()): number | undefined {
  const t = text.trim();
  const ago = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(t);
  if (ago) {
    const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 'ms'];
    return nowMs - Number(ago[1]) * unitMs;
  }
  if (/^\d{12,}$/.test(t)) return Number(t);
  if (!/^\d{4}-\d{2}-\d{2}/.test(t)) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

export function iso(ms: number | undefined | null): string {
  return ms === undefined || ms === null || !Number.isFinite(ms) ? '-' : new Date(ms).toISOString();
}

/** A plain text table: a header row and left-aligned columns two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The data as text: JSON parsed and re-printed where it is JSON, UTF-8 otherwise, base64 for binary. */
export function dataPreview(m: PeekedMessage): unknown {
  const bytes = m.envelope?.data;
  if (!bytes) return null;
  const text = Buffer.from(bytes).toString('utf8');
  if (m.envelope?.contentType.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      // not JSON after all: shown as text
    }
  }
  // Bytes that are not valid UTF-8 decode to U+FFFD: show those as base64 instead.
  return text.includes('\uFFFD') ? { base64: Buffer.from(bytes).toString('base64') } : text;
}

/** A peeked message as plain JSON (bytes decoded for reading), the same shape `--json` prints. */
export function messageJson(m: PeekedMessage): Record<string, unknown> {
  const e = m.envelope;
  return {
    id: m.id,
    type: e?.type ?? null,
    source: e?.source ?? null,
    time: e ? iso(e.time) : null,
    key: e?.key ?? null,
    correlationId: e?.correlationId ?? null,
    version: e?.version ?? null,
    contentType: e?.contentType ?? null,
    headers: e?.headers ?? {},
    data: dataPreview(m),
    decodeError: m.decodeError ?? null,
    deadLetter: m.deadLetter
      ? {
          ...m.deadLetter,
          firstFailureAt: iso(m.deadLetter.firstFailureAt),
          lastFailureAt: iso(m.deadLetter.lastFailureAt),
          deadLetteredAt: iso(m.deadLetter.deadLetteredAt),
        }
      : null,
    position: m.position ?? null,
    deliveryCount: m.deliveryCount ?? null,
    brokerHeaders: m.headers,
  };
}

/** A one-line progress bar on stderr, redrawn in place; only for a terminal. */
export class ProgressBar {
  #lastDrawMs = 0;
  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly label: string,
  ) {}

  update(done: number, total: number | null, detail: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.#lastDrawMs < 100) return;
    this.#lastDrawMs = now;
    const width = 30;
    let bar: string;
    if (total && total > 0) {
      const filled = Math.min(width, Math.round((done / total) * width));
      bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}`;
    } else bar = `${done}`;
    this.stream.write(`\r${this.label} ${bar} ${detail}\u001b[K`);
  }

  end(): void {
    this.stream.write('\n');
  }
}
