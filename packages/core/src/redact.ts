/** Keeps credentials out of errors and logs: URLs lose their password, known secret fields are masked. */

// The password runs to the last `@` before whitespace or a quote: raw passwords may contain `@` or `/`
// (AWS secret keys do), and over-masking a message is better than leaking part of a secret.
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+)(:[^\s"']*)?@/gi;
const SECRET_KEYS = /pass(word)?|secret|token|credential|api[-_]?key|private[-_]?key/i;

/** Replaces `user:password@` in every URL inside the text with `user:***@`. */
export function redactText(text: string): string {
  return text.replace(URL_CREDENTIALS, (_m, scheme: string, user: string, pass?: string) =>
    pass ? `${scheme}${user}:***@` : `${scheme}${user}@`,
  );
}

export function redactUrl(url: string): string {
  return redactText(url);
}

/** A copy of a plain object with secret-looking fields masked and URLs redacted; safe to log. */
export function redactObject(value: unknown, depth = 0): unknown {
  if (depth > 6) return '[…]';
  if (typeof value === 'string') return redactText(value);
  if (Array.isArray(value)) return value.map((v) => redactObject(v, depth + 1));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEYS.test(k) && v !== undefined ? '***' : redactObject(v, depth + 1);
    }
    return out;
  }
  return value;
}
