/** Test helpers that keep everything a library could leak a secret into: log lines, errors and their causes. */
import type { Logger } from '@omnibus/core';

/** Every value below turned into text: errors with their message, stack, code and causes. */
function toText(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Error) {
      const e = v as Error & Record<string, unknown>;
      return { ...e, name: e.name, message: e.message, stack: e.stack, cause: e.cause };
    }
    if (typeof v === 'object' && v !== null) {
      if (seen.has(v)) return '[circular]';
      seen.add(v);
    }
    if (typeof v === 'bigint') return String(v);
    if (Buffer.isBuffer(v)) return v.toString('utf8');
    return v;
  });
}

/** A logger that records every line at every level, fields included, as text. */
export function captureLogger(): Logger & { lines: string[]; warnings: { msg: string; fields: object }[] } {
  const lines: string[] = [];
  const warnings: { msg: string; fields: object }[] = [];
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, msg?: string): void => {
      lines.push(`${level} ${msg ?? ''} ${toText(fields)}`);
      if (level === 'warn') warnings.push({ msg: msg ?? '', fields });
    };
  return { lines, warnings, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/**
 * Everything an error shows: its message, String(), stack and fields, then the same for each cause
 * (`cause`, kafkajs's `originalError`, an AggregateError's `errors`).
 */
export function errorTexts(err: unknown): string[] {
  const out: string[] = [];
  const queue: unknown[] = [err];
  for (let i = 0; i < queue.length && i < 50; i++) {
    const e = queue[i];
    if (e === undefined || e === null) continue;
    out.push(String(e), toText(e));
    if (typeof e === 'object') {
      const o = e as {
        message?: unknown;
        stack?: unknown;
        cause?: unknown;
        originalError?: unknown;
        errors?: unknown;
      };
      if (typeof o.message === 'string') out.push(o.message);
      if (typeof o.stack === 'string') out.push(o.stack);
      queue.push(o.cause, o.originalError);
      if (Array.isArray(o.errors)) queue.push(...o.errors);
    }
  }
  return out;
}

/** The texts (one per place) that contain any of the secrets; empty when nothing leaked. */
export function leaks(texts: readonly string[], secrets: readonly string[]): string[] {
  return texts.filter((t) => secrets.some((s) => t.includes(s) || t.includes(encodeURIComponent(s))));
}
