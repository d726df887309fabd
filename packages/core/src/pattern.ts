/** AMQP-style type patterns: words separated by `.`, `*` matches exactly one word, `#` zero or more. */

export function isPattern(s: string): boolean {
  return s.includes('*') || s.includes('#');
}

function matchWords(p: readonly string[], t: readonly string[], i: number, j: number): boolean {
  while (i < p.length) {
    const w = p[i]!;
    if (w === '#') {
      // Try every possible length of the run `#` swallows.
      for (let k = j; k <= t.length; k++) if (matchWords(p, t, i + 1, k)) return true;
      return false;
    }
    if (j >= t.length || (w !== '*' && w !== t[j])) return false;
    i++;
    j++;
  }
  return j === t.length;
}

export function matchesPattern(pattern: string, type: string): boolean {
  if (pattern === '#') return true;
  if (!isPattern(pattern)) return pattern === type;
  return matchWords(pattern.split('.'), type.split('.'), 0, 0);
}
