/** What the console page is sent about a dead letter: its failure, and its payload and headers redacted. */
import { type PeekedMessage, redactObject, redactText } from '@omnibus/core';
import { dataPreview } from '../format.js';

/** The preview is cut here: the page shows a glimpse, `omnibus dlq show` prints the whole message. */
export const PREVIEW_MAX_CHARS = 4_000;

/**
 * Header names that carry credentials without saying so in the words redact.ts looks for
 * (password, secret, token, credential, api key, private key).
 */
const SENSITIVE_HEADERS = /^(authorization|proxy-authorization|cookie|set-cookie|x-amz-security-token)$/i;

export interface DeadLetterView {
  id: string;
  type: string | null;
  key: string | null;
  /** The event time (ms since epoch). */
  timeMs: number | null;
  reason: string | null;
  attempts: number | null;
  error: string | null;
  deadLetteredAtMs: number | null;
  headers: Record<string, string>;
  /** The data as pretty JSON or text, secrets masked, at most PREVIEW_MAX_CHARS. */
  preview: string;
  truncated: boolean;
}

/** Masks secret-looking headers: the redact.ts rules, plus the HTTP credential headers. */
export function redactHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  const masked = redactObject({ ...headers }) as Record<string, string>;
  for (const k of Object.keys(masked)) if (SENSITIVE_HEADERS.test(k)) masked[k] = '***';
  return masked;
}

export function describeDeadLetter(m: PeekedMessage): DeadLetterView {
  const data = dataPreview(m);
  const text =
    typeof data === 'string' ? redactText(data) : (JSON.stringify(redactObject(data), null, 2) ?? '');
  const e = m.envelope;
  return {
    id: m.id,
    type: e?.type ?? null,
    key: e?.key ?? null,
    timeMs: e?.time ?? null,
    reason: m.deadLetter?.reason ?? null,
    attempts: m.deadLetter?.attempts ?? null,
    error: redactText(m.deadLetter?.error ?? m.decodeError ?? '') || null,
    deadLetteredAtMs: m.deadLetter?.deadLetteredAt ?? null,
    // The envelope's own headers (what the publisher set); the broker's control headers are shown above.
    headers: redactHeaders(e?.headers ?? {}),
    preview: text.length > PREVIEW_MAX_CHARS ? `${text.slice(0, PREVIEW_MAX_CHARS)}…` : text,
    truncated: text.length > PREVIEW_MAX_CHARS,
  };
}
