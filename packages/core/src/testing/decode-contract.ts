/**
 * The promise every transport's `decode()` keeps for any input, checkable from a test (fuzzing or by
 * hand): it returns a well-formed envelope or throws DecodeError — never another error — and it leaves
 * every built-in prototype as it found it.
 */
import type { RawEnvelope, WireMessage } from '../envelope.js';
import { DecodeError } from '../errors.js';

const GUARDED: readonly [string, object][] = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
];

interface Snapshot {
  label: string;
  proto: object;
  deep: boolean;
  parent: object | null;
  keys: (string | symbol)[];
  descriptors: (PropertyDescriptor | undefined)[];
}

// Taken once; checking against it allocates only the key lists (fuzzing calls it for every input).
const PRISTINE: Snapshot[] = GUARDED.map(([label, proto]) => {
  const keys = Reflect.ownKeys(proto);
  return {
    label,
    proto,
    deep: proto === Object.prototype || proto === Array.prototype,
    parent: Object.getPrototypeOf(proto),
    keys,
    descriptors: keys.map((k) => Reflect.getOwnPropertyDescriptor(proto, k)),
  };
});

function sameDescriptor(proto: object, key: string | symbol, d: PropertyDescriptor | undefined): boolean {
  const now = Reflect.getOwnPropertyDescriptor(proto, key);
  return now?.value === d?.value && now?.get === d?.get && now?.set === d?.set;
}

/** Names of built-in prototype properties added, removed or replaced since this module was loaded. */
export function prototypeChanges(): string[] {
  const changed: string[] = [];
  for (const snap of PRISTINE) {
    if (Object.getPrototypeOf(snap.proto) !== snap.parent) changed.push(`${snap.label} [[Prototype]]`);
    const keys = Reflect.ownKeys(snap.proto);
    const same = keys.length === snap.keys.length && keys.every((k, i) => k === snap.keys[i]);
    if (!same) {
      for (const k of keys) if (!snap.keys.includes(k)) changed.push(`${snap.label}.${String(k)} (added)`);
      for (const k of snap.keys) if (!keys.includes(k)) changed.push(`${snap.label}.${String(k)} (removed)`);
    }
    // Replaced values (e.g. Object.prototype.toString reassigned) show only in the descriptors; compared on
    // the two prototypes every object and array lookup goes through, to keep the check cheap.
    if (!snap.deep) continue;
    for (let i = 0; i < snap.keys.length; i++) {
      const k = snap.keys[i]!;
      if (typeof k === 'string' && !sameDescriptor(snap.proto, k, snap.descriptors[i])) {
        changed.push(`${snap.label}.${k} (replaced)`);
      }
    }
  }
  return changed;
}

/** Problems with a decoded envelope's shape (empty when it is well-formed). */
export function envelopeProblems(env: RawEnvelope): string[] {
  const problems: string[] = [];
  const nonEmpty = (v: unknown) => typeof v === 'string' && v !== '';
  const optional = (v: unknown) => v === undefined || typeof v === 'string';
  if (!nonEmpty(env.id)) problems.push('id is not a non-empty string');
  if (!nonEmpty(env.type)) problems.push('type is not a non-empty string');
  if (!nonEmpty(env.source)) problems.push('source is not a non-empty string');
  if (typeof env.correlationId !== 'string') problems.push('correlationId is not a string');
  if (typeof env.contentType !== 'string') problems.push('contentType is not a string');
  if (typeof env.time !== 'number' || !Number.isFinite(env.time))
    problems.push('time is not a finite number');
  if (!Number.isInteger(env.version) || env.version < 1) problems.push('version is not a positive integer');
  for (const f of ['key', 'causationId', 'traceparent', 'tracestate'] as const) {
    if (!optional(env[f])) problems.push(`${f} is neither a string nor absent`);
  }
  if (!(env.data instanceof Uint8Array)) problems.push('data is not bytes');
  if (!env.headers || Object.getPrototypeOf(env.headers) !== Object.prototype) {
    problems.push('headers is not a plain object');
  } else {
    for (const name of Object.keys(env.headers)) {
      if (typeof env.headers[name] !== 'string')
        problems.push(`header ${JSON.stringify(name)} is not a string`);
    }
  }
  return problems;
}

/**
 * Runs `decode` on one input and says what it came to: 'envelope' or 'decode-error'. Anything else — another
 * error type, a malformed envelope, a changed prototype — throws an Error describing it.
 */
export function checkDecode(
  decode: (wire: WireMessage) => RawEnvelope,
  wire: WireMessage,
): 'envelope' | 'decode-error' {
  let env: RawEnvelope;
  try {
    env = decode(wire);
  } catch (err) {
    const changed = prototypeChanges();
    if (changed.length > 0) throw new Error(`decode changed built-in prototypes: ${changed.join(', ')}`);
    if (err instanceof DecodeError) return 'decode-error';
    throw new Error(
      `decode threw ${(err as Error)?.constructor?.name ?? typeof err} instead of DecodeError: ${String(err)}`,
      { cause: err },
    );
  }
  const changed = prototypeChanges();
  if (changed.length > 0) throw new Error(`decode changed built-in prototypes: ${changed.join(', ')}`);
  const problems = envelopeProblems(env);
  if (problems.length > 0) throw new Error(`decode returned a malformed envelope: ${problems.join('; ')}`);
  return 'envelope';
}

/** The fuzz runs' seed: random per run, printed by fast-check on failure; OMNIBUS_FUZZ_SEED replays one. */
export const FUZZ_SEED = Number(process.env.OMNIBUS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The CloudEvents attributes the binary mode carries as headers, without the transport's prefix. */
export const CE_HEADER_ATTRIBUTES = [
  'specversion',
  'id',
  'type',
  'source',
  'time',
  'schemaversion',
  'correlationid',
  'partitionkey',
] as const;
