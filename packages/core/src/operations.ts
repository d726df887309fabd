/**
 * Operating a bus: list groups with their backlog, peek at waiting and dead-lettered messages, redrive
 * dead letters and purge, through one interface that each transport implements as its broker allows.
 */
import type { DeadLetterInfo, RawEnvelope, WireMessage } from './envelope.js';
import { ControlHeader, readDeadLetterInfo } from './envelope.js';
import { ConfigError, errorMessage, UnsupportedError } from './errors.js';
import type { Transport, TransportStats } from './transport.js';

/** Where in a group a peek or purge looks: its own queue or its dead-letter destination. */
export type MessageSource = 'group' | 'dead-letter';

/** One topic and group, named as the application names them. */
export interface GroupRef {
  topic: string;
  group: string;
}

/** What a transport finds on the broker for one group, before the core adds its figures. */
export interface OperationTarget extends GroupRef {
  source: MessageSource;
}

/** A message as a transport read it during a peek, before the core decodes it. */
export interface PeekedWire {
  wire: WireMessage;
  /** Where the broker keeps it (Kafka `partition:offset`), where that means something. */
  position?: string | undefined;
  /** Deliveries the broker counted before this peek (SQS receive count, RabbitMQ redelivered), if known. */
  deliveryCount?: number | undefined;
}

/** What a transport is asked to redrive: every dead letter `select` accepts, in the order found. */
export interface RedriveSpec extends GroupRef {
  /** True for a dead letter to move back; the others stay where they are. */
  select: (wire: WireMessage) => boolean;
  /** Called after each dead letter is handled (moved or kept), with running totals. */
  onProgress?: ((progress: RedriveProgress) => void) | undefined;
  /** Stops the redrive between two messages; what is already moved stays moved, nothing is lost. */
  signal?: AbortSignal | undefined;
  /** Awaited before each dead letter is handled: the core's rate limit (`ratePerSecond`). */
  pace?: (() => Promise<void>) | undefined;
}

export interface RedriveProgress {
  /** Dead letters looked at so far. */
  scanned: number;
  /** Of those, moved back to the group (publish confirmed, dead letter removed). */
  redriven: number;
  /** Dead letters there were when the redrive started, where the broker says (null when unknown). */
  total: number | null;
}

export interface RedriveResult {
  scanned: number;
  redriven: number;
  /** Looked at and left in the dead-letter destination (the filter did not select them). */
  kept: number;
}

export interface PurgeResult {
  /** Messages removed, where the broker reports the number (null when it does not). */
  purged: number | null;
}

/**
 * What a transport implements to be operated. Every method may throw UnsupportedError where the broker
 * cannot do it; the message says why and what to use instead.
 *
 * Redrive is at least once on every transport: a dead letter is removed only after the broker has
 * confirmed its copy back in the group, so a redrive interrupted at any point (even SIGKILL) leaves each
 * message in the dead-letter destination, in the group, or (for the one in hand) in both.
 */
export interface TransportOperations {
  /** The topics and groups this transport finds on the broker. */
  listGroups(): Promise<GroupRef[]>;
  /** Up to `limit` messages from the front of the group or its dead letters, left where they are. */
  peek(target: OperationTarget, limit: number): Promise<PeekedWire[]>;
  /** Moves the selected dead letters back to their group (not to the topic's other groups). */
  redrive(spec: RedriveSpec): Promise<RedriveResult>;
  /** Deletes every message waiting in the group or its dead letters. */
  purge(target: OperationTarget): Promise<PurgeResult>;
}

/** One group as the operations API lists it: where it is and its broker-side figures. */
export interface GroupOverview extends GroupRef {
  stats: TransportStats;
}

/** A peeked message: decoded where it is one of ours, with its dead-letter metadata where it has some. */
export interface PeekedMessage {
  /** The envelope id, or the broker's message id when the message could not be decoded. */
  id: string;
  /** The decoded envelope (data still bytes: the codec is the application's), or null when not decodable. */
  envelope: RawEnvelope | null;
  /** Why the message could not be decoded, when it could not. */
  decodeError?: string | undefined;
  /** Reason, attempts, error and times from the dead-letter headers (dead letters only). */
  deadLetter?: DeadLetterInfo | undefined;
  /** The raw headers as the broker holds them. */
  headers: Record<string, string>;
  position?: string | undefined;
  deliveryCount?: number | undefined;
}

/** Which dead letters a redrive moves: all of them when empty; every given field must match. */
export interface RedriveFilter {
  /** Envelope ids. */
  ids?: readonly string[];
  /** Message types (exact). */
  types?: readonly string[];
  /** Dead-letter reasons (`max-attempts`, `validation`, ...). */
  reasons?: readonly string[];
  /** Dead-lettered at or after this time (ms since epoch). */
  fromMs?: number;
  /** Dead-lettered before this time (ms since epoch). */
  toMs?: number;
}

export interface PeekOptions extends GroupRef {
  /** 'group' (default) or 'dead-letter'. */
  source?: MessageSource;
  /** At most this many messages (default 20, at most 1000). */
  limit?: number;
}

export interface RedriveOptions extends GroupRef {
  filter?: RedriveFilter;
  /** At most this many dead letters handled per second, so a large redrive does not flood the group. */
  ratePerSecond?: number;
  onProgress?: (progress: RedriveProgress) => void;
  signal?: AbortSignal;
}

export interface PurgeOptions extends GroupRef {
  source: MessageSource;
  /**
   * Must repeat what is being purged, `<topic>/<group>` (or `<topic>/<group>/dead-letter` for the dead
   * letters): a purge cannot be undone, so it is refused without the exact words.
   */
  confirm: string;
}

export const DEFAULT_PEEK_LIMIT = 20;
export const MAX_PEEK_LIMIT = 1000;

/** The confirmation text a purge of this target needs. */
export function purgeConfirmation(target: OperationTarget): string {
  const base = `${target.topic}/${target.group}`;
  return target.source === 'dead-letter' ? `${base}/dead-letter` : base;
}

/**
 * The headers a redriven message is sent back with: the original headers without the retry and
 * dead-letter state, so the group handles it afresh with a full set of attempts.
 */
export function redriveHeaders(headers: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  const drop = new Set<string>([
    ControlHeader.attempts,
    ControlHeader.firstFailureAt,
    ControlHeader.lastFailureAt,
    ControlHeader.lastError,
    ControlHeader.dueAt,
    ControlHeader.reason,
    ControlHeader.error,
    ControlHeader.originalTopic,
    ControlHeader.originalGroup,
    ControlHeader.deadLetteredAt,
    ControlHeader.processingStartedAt,
  ]);
  for (const k in headers) if (!drop.has(k)) out[k] = headers[k]!;
  return out;
}

/**
 * The bus's operations: the transport's, with arguments checked, messages decoded and purges guarded.
 * Obtained as `bus.operations`.
 */
export class Operations {
  readonly #transport: Transport;
  constructor(transport: Transport) {
    this.#transport = transport;
  }

  #ops(what: string): TransportOperations {
    const ops = this.#transport.operations;
    if (!ops) throw new UnsupportedError(`${this.#transport.name} does not support ${what}`);
    return ops;
  }

  /** Every topic and group the broker knows, with depth, lag, dead letters and oldest-message age. */
  async groups(): Promise<GroupOverview[]> {
    const refs = await this.#ops('listing groups').listGroups();
    const out: GroupOverview[] = [];
    for (const r of refs) out.push({ ...r, stats: await this.#transport.stats(r.topic, r.group) });
    return out;
  }

  /** Broker-side figures for one group. */
  stats(ref: GroupRef): Promise<TransportStats> {
    checkRef(ref);
    return this.#transport.stats(ref.topic, ref.group);
  }

  /** Messages at the front of a group or its dead letters, decoded, without consuming them. */
  async peek(options: PeekOptions): Promise<PeekedMessage[]> {
    checkRef(options);
    const source = checkSource(options.source ?? 'group');
    const limit = options.limit ?? DEFAULT_PEEK_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PEEK_LIMIT)
      throw new ConfigError('limit', `must be an integer from 1 to ${MAX_PEEK_LIMIT}, got ${limit}`);
    const found = await this.#ops('peek').peek({ topic: options.topic, group: options.group, source }, limit);
    return found.map((p) => this.#describe(p));
  }

  #describe(p: PeekedWire): PeekedMessage {
    let envelope: RawEnvelope | null = null;
    let decodeError: string | undefined;
    try {
      envelope = this.#transport.decode(p.wire);
    } catch (err) {
      decodeError = errorMessage(err);
    }
    const info = readDeadLetterInfo(p.wire.headers);
    return {
      id: envelope?.id ?? p.position ?? '',
      envelope,
      decodeError,
      deadLetter: info,
      headers: { ...p.wire.headers },
      position: p.position,
      deliveryCount: p.deliveryCount,
    };
  }

  /** Moves dead letters (all, or those the filter selects) back to their group; at least once. */
  async redrive(options: RedriveOptions): Promise<RedriveResult> {
    checkRef(options);
    const select = redriveSelector(options.filter ?? {}, (w) => this.#transport.decode(w));
    const rate = options.ratePerSecond;
    if (rate !== undefined && !(Number.isFinite(rate) && rate > 0))
      throw new ConfigError('ratePerSecond', `must be a positive number, got ${rate}`);
    return this.#ops('redrive').redrive({
      topic: options.topic,
      group: options.group,
      select,
      onProgress: options.onProgress,
      signal: options.signal,
      pace: rate === undefined ? undefined : pacer(rate),
    });
  }

  /** Deletes every message of a group or its dead letters; refused unless `confirm` names the target. */
  async purge(options: PurgeOptions): Promise<PurgeResult> {
    checkRef(options);
    const target = { topic: options.topic, group: options.group, source: checkSource(options.source) };
    const expected = purgeConfirmation(target);
    if (options.confirm !== expected) {
      throw new ConfigError(
        'confirm',
        `a purge cannot be undone: pass confirm: ${JSON.stringify(expected)} to delete every message of ${expected}`,
      );
    }
    return this.#ops('purge').purge(target);
  }
}

/** Spaces calls `1000 / perSecond` ms apart, on the monotonic clock. */
function pacer(perSecond: number): () => Promise<void> {
  const gapMs = 1000 / perSecond;
  let next = performance.now();
  return async () => {
    const now = performance.now();
    const waitMs = next - now;
    next = Math.max(now, next) + gapMs;
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
  };
}

function checkRef(ref: Partial<GroupRef>): void {
  if (typeof ref.topic !== 'string' || ref.topic === '') throw new ConfigError('topic', 'is required');
  if (typeof ref.group !== 'string' || ref.group === '') throw new ConfigError('group', 'is required');
}

function checkSource(source: string): MessageSource {
  if (source !== 'group' && source !== 'dead-letter')
    throw new ConfigError('source', `must be 'group' or 'dead-letter', got ${JSON.stringify(source)}`);
  return source;
}

/**
 * The predicate a redrive filter stands for. A message that cannot be decoded matches only a filter on
 * reason or time (its id and type are unknown), so `--id` never moves a stranger by accident.
 */
export function redriveSelector(
  filter: RedriveFilter,
  decode: (wire: WireMessage) => RawEnvelope,
): (wire: WireMessage) => boolean {
  const ids = filter.ids && filter.ids.length > 0 ? new Set(filter.ids) : undefined;
  const types = filter.types && filter.types.length > 0 ? new Set(filter.types) : undefined;
  const reasons = filter.reasons && filter.reasons.length > 0 ? new Set(filter.reasons) : undefined;
  for (const [field, v] of [
    ['fromMs', filter.fromMs],
    ['toMs', filter.toMs],
  ] as const) {
    if (v !== undefined && !Number.isFinite(v))
      throw new ConfigError(`filter.${field}`, 'must be a time in ms');
  }
  return (wire) => {
    const headers = wire.headers;
    if (reasons && !reasons.has(headers[ControlHeader.reason] ?? '')) return false;
    if (filter.fromMs !== undefined || filter.toMs !== undefined) {
      const at = Number(headers[ControlHeader.deadLetteredAt]);
      if (!Number.isFinite(at)) return false;
      if (filter.fromMs !== undefined && at < filter.fromMs) return false;
      if (filter.toMs !== undefined && at >= filter.toMs) return false;
    }
    if (ids || types) {
      let env: RawEnvelope;
      try {
        env = decode(wire);
      } catch {
        return false;
      }
      if (ids && !ids.has(env.id)) return false;
      if (types && !types.has(env.type)) return false;
    }
    return true;
  };
}
