/**
 * The credentials check of a chaos run: faults make clients log errors (connection refused, channel
 * closed, timeouts), and an error that carries a connection URL would print its password. After a broker's
 * scenarios the run searches every log it wrote for each secret it handed to the clients.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One secret found in one log: the file and the 1-based line, never the secret itself. */
export interface Leak {
  file: string;
  line: number;
  /** Which secret (its name, e.g. "RabbitMQ password"). */
  secret: string;
}

/** The forms a secret may take in a log: as given, percent-encoded (in a URL) and in base64 (Basic auth). */
function forms(value: string): string[] {
  return [...new Set([value, encodeURIComponent(value), Buffer.from(value).toString('base64')])];
}

/**
 * Every line of the files in `dir` whose name starts with `prefix` that holds one of `secrets`
 * (name → value). Secrets shorter than 8 characters are refused: they would match ordinary words.
 */
export function findLeaks(dir: string, prefix: string, secrets: Record<string, string>): Leak[] {
  for (const [name, value] of Object.entries(secrets)) {
    if (value.length < 8)
      throw new Error(`the ${name} is too short to search for (${value.length} characters)`);
  }
  const leaks: Leak[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.startsWith(prefix)) continue;
    const lines = readFileSync(join(dir, file), 'utf8').split('\n');
    lines.forEach((text, i) => {
      for (const [name, value] of Object.entries(secrets)) {
        if (forms(value).some((f) => text.includes(f))) leaks.push({ file, line: i + 1, secret: name });
      }
    });
  }
  return leaks;
}
