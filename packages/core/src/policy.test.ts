/**
 * The failure policy as a table: one row per decision line of the root README's pipeline diagram
 * (the test below keeps the two in step), plus the edges: attempts at the limit, a huge attempts
 * header, the circuit open or probing, closing, ordered, jitter.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CircuitState } from './circuit-breaker.js';
import type { DeadLetterReason } from './envelope.js';
import { HandlerTimeoutError, NonRetryableError, PublishError, ValidationError } from './errors.js';
import {
  type Action,
  type BreakerSignal,
  type Closing,
  decide,
  type Facts,
  type FailurePolicy,
  isNonRetryable,
  type Outcome,
  Outcomes,
} from './policy.js';

const policy: FailurePolicy = {
  maxAttempts: 5,
  // Without jitter the delays are 100, 200, 400, 800, 1600, … ms.
  backoff: { initialMs: 100, maxMs: 10_000, factor: 2, jitter: false },
  inProcessMaxDelayMs: 1000,
  ordered: false,
  deadLetter: true,
  unmatched: 'ack',
};

const failed = (error: unknown = new Error('boom')): Outcome => ({ kind: 'failed', error, timedOut: false });
const timedOut: Outcome = { kind: 'failed', error: new HandlerTimeoutError(30_000), timedOut: true };

const proceed: Action = { kind: 'proceed', breaker: 'none' };
const release = (breaker: BreakerSignal): Action => ({ kind: 'release', breaker });
const ack = (as: 'handled' | 'duplicate' | 'filtered', breaker: BreakerSignal): Action => ({
  kind: 'ack',
  as,
  breaker,
});
const inProcess = (delayMs: number, attempts: number, breaker: BreakerSignal = 'failure'): Action => ({
  kind: 'retry-in-process',
  delayMs,
  attempts,
  breaker,
});
const viaBroker = (delayMs: number, attempts: number, breaker: BreakerSignal = 'failure'): Action => ({
  kind: 'retry-via-broker',
  delayMs,
  attempts,
  breaker,
});
const deadLetter = (reason: DeadLetterReason, attempts: number, breaker: BreakerSignal): Action => ({
  kind: 'dead-letter',
  reason,
  attempts,
  breaker,
});
const drop = (reason: DeadLetterReason, attempts: number, breaker: BreakerSignal): Action => ({
  kind: 'drop',
  reason,
  attempts,
  breaker,
});

interface Row {
  /**
   * The README diagram line this row checks, by its label (the text before `─→`); null for a step
   * that decides nothing and lets the pipeline go on.
   */
  line: string | null;
  name: string;
  outcome: Outcome;
  attempts?: number;
  breaker?: CircuitState;
  closing?: Closing;
  policy?: Partial<FailurePolicy>;
  random?: () => number;
  expected: Action;
}

const rows: Row[] = [
  // receive
  { line: null, name: 'running: a dequeued delivery goes on', outcome: Outcomes.queued, expected: proceed },
  {
    line: 'closing, not started yet',
    name: 'draining: a delivery not started goes back untouched',
    outcome: Outcomes.queued,
    closing: 'draining',
    expected: release('none'),
  },
  {
    line: 'closing, not started yet',
    name: 'past the drain time too',
    outcome: Outcomes.queued,
    closing: 'drain-over',
    expected: release('none'),
  },
  {
    line: 'decode fails',
    name: 'dead-lettered with the attempts it came with',
    outcome: Outcomes.decodeFailed,
    attempts: 3,
    expected: deadLetter('decode', 3, 'none'),
  },
  {
    line: 'decode fails',
    name: 'even while closing or with the circuit open',
    outcome: Outcomes.decodeFailed,
    attempts: 0,
    breaker: 'open',
    closing: 'draining',
    expected: deadLetter('decode', 0, 'none'),
  },
  // route by type
  {
    line: "unmatched: 'ack' (the default)",
    name: 'acked as filtered',
    outcome: Outcomes.unmatched,
    expected: ack('filtered', 'none'),
  },
  {
    line: "unmatched: 'dead-letter'",
    name: 'dead-lettered as unknown-type',
    outcome: Outcomes.unmatched,
    attempts: 2,
    policy: { unmatched: 'dead-letter' },
    expected: deadLetter('unknown-type', 2, 'none'),
  },
  // validate + upcast
  {
    line: 'invalid for a known version',
    name: 'dead-lettered as validation, never retried',
    outcome: Outcomes.invalid,
    attempts: 1,
    expected: deadLetter('validation', 1, 'none'),
  },
  // idempotency claim
  { line: null, name: 'a new claim goes on to the handler', outcome: Outcomes.claimNew, expected: proceed },
  {
    line: 'done',
    name: 'acked as a duplicate',
    outcome: Outcomes.claimDone,
    attempts: 2,
    expected: ack('duplicate', 'none'),
  },
  {
    line: 'held by another consumer',
    name: 'looked at again later through the broker, attempts unchanged',
    outcome: Outcomes.claimHeld,
    attempts: 2,
    expected: viaBroker(100, 2, 'none'),
  },
  {
    line: 'held by another consumer',
    name: 'ordered: looked at again in process, so later messages of its key cannot overtake it',
    outcome: Outcomes.claimHeld,
    attempts: 2,
    policy: { ordered: true },
    expected: inProcess(100, 2, 'none'),
  },
  {
    line: 'held by another consumer',
    name: 'ordered and closing: handed back instead of waiting',
    outcome: Outcomes.claimHeld,
    attempts: 2,
    policy: { ordered: true },
    closing: 'draining',
    expected: release('none'),
  },
  {
    line: 'held by another consumer',
    name: 'the first backoff delay, jittered',
    outcome: Outcomes.claimHeld,
    attempts: 0,
    policy: { backoff: { ...policy.backoff, jitter: true } },
    random: () => 0,
    expected: viaBroker(50, 0, 'none'),
  },
  // circuit breaker admitted; about to run
  { line: null, name: 'a first run goes on', outcome: Outcomes.firstRun, expected: proceed },
  {
    line: null,
    name: 'a first run that started before close may finish while draining',
    outcome: Outcomes.firstRun,
    closing: 'draining',
    expected: proceed,
  },
  { line: null, name: 'a rerun goes on while running', outcome: Outcomes.rerun, expected: proceed },
  {
    line: 'closing, and a retry or past the drain',
    name: 'a first run past the drain time goes back',
    outcome: Outcomes.firstRun,
    closing: 'drain-over',
    expected: release('neutral'),
  },
  {
    line: 'closing, and a retry or past the drain',
    name: 'no retry runs once close began',
    outcome: Outcomes.rerun,
    closing: 'draining',
    expected: release('neutral'),
  },
  {
    line: 'closing, and a retry or past the drain',
    name: 'nor past the drain time',
    outcome: Outcomes.rerun,
    closing: 'drain-over',
    expected: release('neutral'),
  },
  // handler
  { line: 'ok', name: 'acked as handled', outcome: Outcomes.ok, expected: ack('handled', 'success') },
  {
    line: 'ok',
    name: 'a successful probe closes the circuit; acked while closing too',
    outcome: Outcomes.ok,
    attempts: 5,
    breaker: 'half-open',
    closing: 'drain-over',
    expected: ack('handled', 'success'),
  },
  {
    line: 'newer version, attempts exhausted',
    name: 'dead-lettered as max-attempts, neutral for the breaker',
    outcome: Outcomes.newerVersion,
    attempts: 5,
    expected: deadLetter('max-attempts', 5, 'neutral'),
  },
  {
    line: 'newer version, attempts exhausted',
    name: 'a huge attempts header',
    outcome: Outcomes.newerVersion,
    attempts: 1_000_000,
    expected: deadLetter('max-attempts', 1_000_000, 'neutral'),
  },
  {
    line: 'newer version than this consumer knows',
    name: 'retried through the broker (an upgraded replica may take it), the attempt counted',
    outcome: Outcomes.newerVersion,
    attempts: 1,
    expected: viaBroker(100, 1, 'neutral'),
  },
  {
    line: 'newer version than this consumer knows',
    name: 'through the broker even when ordered, with a short delay',
    outcome: Outcomes.newerVersion,
    attempts: 4,
    policy: { ordered: true },
    expected: viaBroker(800, 4, 'neutral'),
  },
  {
    line: 'newer version than this consumer knows',
    name: 'the circuit being open gives no attempt back: it is not the dependency',
    outcome: Outcomes.newerVersion,
    attempts: 2,
    breaker: 'open',
    closing: 'draining',
    expected: viaBroker(200, 2, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'NonRetryableError',
    outcome: failed(new NonRetryableError('card declined')),
    attempts: 1,
    expected: deadLetter('non-retryable', 1, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'a PublishError that retrying cannot fix (UNROUTABLE)',
    outcome: failed(new PublishError('UNROUTABLE', 'no queue bound')),
    attempts: 2,
    expected: deadLetter('non-retryable', 2, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'a ValidationError thrown by the handler itself',
    outcome: failed(new ValidationError('bad reply from the payment service')),
    expected: deadLetter('non-retryable', 1, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: "the user's own error with retryable: false",
    outcome: failed(Object.assign(new Error('gone for good'), { retryable: false })),
    expected: deadLetter('non-retryable', 1, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'a thrown plain object with retryable: false',
    outcome: failed({ message: 'nope', retryable: false }),
    expected: deadLetter('non-retryable', 1, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'while the circuit is open: dead-lettered, the attempt counted',
    outcome: failed(new NonRetryableError('x')),
    attempts: 3,
    breaker: 'open',
    expected: deadLetter('non-retryable', 3, 'neutral'),
  },
  {
    line: 'error with retryable: false',
    name: 'at the attempts limit: the reason is non-retryable, not max-attempts',
    outcome: failed(new NonRetryableError('x')),
    attempts: 5,
    expected: deadLetter('non-retryable', 5, 'neutral'),
  },
  {
    line: 'retryable: false, closing',
    name: 'the bus refused the publish because it is closing: back to the broker, not condemned',
    outcome: failed(new PublishError('CLOSED', 'the bus is closed')),
    attempts: 1,
    closing: 'draining',
    expected: release('neutral'),
  },
  {
    line: 'retryable: false, closing',
    name: 'past the drain time, even at the attempts limit',
    outcome: failed(new NonRetryableError('x')),
    attempts: 5,
    breaker: 'open',
    closing: 'drain-over',
    expected: release('neutral'),
  },
  {
    line: 'circuit open or probing, timed out',
    name: 'through the broker (the late handler may still run), no attempt spent',
    outcome: timedOut,
    attempts: 2,
    breaker: 'open',
    expected: viaBroker(200, 1),
  },
  {
    line: 'circuit open or probing, timed out',
    name: 'a probe that timed out',
    outcome: timedOut,
    attempts: 5,
    breaker: 'half-open',
    expected: viaBroker(1600, 4),
  },
  {
    line: 'circuit open or probing, closing',
    name: 'draining: handed back, no attempt spent',
    outcome: failed(),
    attempts: 2,
    breaker: 'open',
    closing: 'draining',
    expected: release('failure'),
  },
  {
    line: 'circuit open or probing, closing',
    name: 'a failed probe past the drain time',
    outcome: failed(),
    attempts: 2,
    breaker: 'half-open',
    closing: 'drain-over',
    expected: release('failure'),
  },
  {
    line: 'circuit open or probing',
    name: 'failed while open: waits for the circuit in-process, the attempt given back',
    outcome: failed(),
    attempts: 2,
    breaker: 'open',
    expected: inProcess(0, 1),
  },
  {
    line: 'circuit open or probing',
    name: 'a failed probe gives its attempt back too',
    outcome: failed(),
    attempts: 1,
    breaker: 'half-open',
    expected: inProcess(0, 0),
  },
  {
    line: 'circuit open or probing',
    name: 'at the attempts limit: not dead-lettered, the attempt given back',
    outcome: failed(),
    attempts: 5,
    breaker: 'open',
    expected: inProcess(0, 4),
  },
  {
    line: 'circuit open or probing',
    name: 'ordered, with a long backoff: still no delay, the breaker holds it',
    outcome: failed(),
    attempts: 5,
    breaker: 'open',
    policy: { ordered: true, maxAttempts: 10 },
    expected: inProcess(0, 4),
  },
  {
    line: 'attempts exhausted',
    name: 'the last attempt failed: dead-lettered as max-attempts',
    outcome: failed(),
    attempts: 5,
    expected: deadLetter('max-attempts', 5, 'failure'),
  },
  {
    line: 'attempts exhausted',
    name: 'one attempt allowed',
    outcome: failed(),
    attempts: 1,
    policy: { maxAttempts: 1 },
    expected: deadLetter('max-attempts', 1, 'failure'),
  },
  {
    line: 'attempts exhausted',
    name: 'a message that used its attempts elsewhere had one last try',
    outcome: failed(),
    attempts: 6,
    expected: deadLetter('max-attempts', 6, 'failure'),
  },
  {
    line: 'attempts exhausted',
    name: 'a huge (forged) attempts header',
    outcome: failed(),
    attempts: 1_000_000,
    expected: deadLetter('max-attempts', 1_000_000, 'failure'),
  },
  {
    line: 'attempts exhausted',
    name: 'a timed-out last attempt, while closing',
    outcome: timedOut,
    attempts: 5,
    closing: 'drain-over',
    expected: deadLetter('max-attempts', 5, 'failure'),
  },
  {
    line: 'handler timed out',
    name: 'retried through the broker, never in-process beside the late handler',
    outcome: timedOut,
    attempts: 1,
    expected: viaBroker(100, 1),
  },
  {
    line: 'handler timed out',
    name: 'even when ordered',
    outcome: timedOut,
    attempts: 2,
    policy: { ordered: true },
    expected: viaBroker(200, 2),
  },
  {
    line: 'handler timed out',
    name: 'while closing: a hand-off to the broker is fine',
    outcome: timedOut,
    attempts: 4,
    closing: 'draining',
    expected: viaBroker(800, 4),
  },
  {
    line: 'long delay, not ordered',
    name: 'over inProcessMaxDelayMs: the broker waits',
    outcome: failed(),
    attempts: 5,
    policy: { maxAttempts: 10 },
    expected: viaBroker(1600, 5),
  },
  {
    line: 'long delay, not ordered',
    name: 'one millisecond over',
    outcome: failed(),
    attempts: 2,
    policy: { inProcessMaxDelayMs: 199 },
    expected: viaBroker(200, 2),
  },
  {
    line: 'long delay, not ordered',
    name: 'inProcessMaxDelayMs 0: every delayed retry goes through the broker',
    outcome: failed(),
    attempts: 1,
    policy: { inProcessMaxDelayMs: 0 },
    expected: viaBroker(100, 1),
  },
  {
    line: 'long delay, not ordered',
    name: 'while closing: a hand-off to the broker is fine',
    outcome: failed(),
    attempts: 5,
    closing: 'drain-over',
    policy: { maxAttempts: 10 },
    expected: viaBroker(1600, 5),
  },
  {
    line: 'closing',
    name: 'draining: no further run will be allowed, so back at once',
    outcome: failed(),
    attempts: 1,
    closing: 'draining',
    expected: release('failure'),
  },
  {
    line: 'closing',
    name: 'past the drain time (the handler was aborted)',
    outcome: failed(),
    attempts: 1,
    closing: 'drain-over',
    expected: release('failure'),
  },
  {
    line: 'closing',
    name: 'ordered with a long delay',
    outcome: failed(),
    attempts: 5,
    closing: 'draining',
    policy: { ordered: true, maxAttempts: 10 },
    expected: release('failure'),
  },
  {
    line: 'otherwise',
    name: 'retried in-process after the backoff',
    outcome: failed(),
    attempts: 1,
    expected: inProcess(100, 1),
  },
  {
    line: 'otherwise',
    name: 'a delay exactly at inProcessMaxDelayMs stays in-process',
    outcome: failed(),
    attempts: 2,
    policy: { inProcessMaxDelayMs: 200 },
    expected: inProcess(200, 2),
  },
  {
    line: 'otherwise',
    name: 'one attempt below the limit',
    outcome: failed(),
    attempts: 4,
    expected: inProcess(800, 4),
  },
  {
    line: 'otherwise',
    name: 'ordered: a long delay waits in-process so the key keeps its order',
    outcome: failed(),
    attempts: 5,
    policy: { ordered: true, maxAttempts: 10 },
    expected: inProcess(1600, 5),
  },
  {
    line: 'otherwise',
    name: 'the delay is capped at maxMs',
    outcome: failed(),
    attempts: 10,
    policy: { ordered: true, maxAttempts: 20 },
    expected: inProcess(10_000, 10),
  },
  {
    line: 'otherwise',
    name: 'jitter keeps the upper half of the delay (random 0)',
    outcome: failed(),
    attempts: 2,
    policy: { backoff: { ...policy.backoff, jitter: true } },
    random: () => 0,
    expected: inProcess(100, 2),
  },
  {
    line: 'otherwise',
    name: 'jitter (random 0.5)',
    outcome: failed(),
    attempts: 3,
    policy: { backoff: { ...policy.backoff, jitter: true } },
    random: () => 0.5,
    expected: inProcess(300, 3),
  },
  {
    line: 'otherwise',
    name: 'a zero initial delay stays zero however many attempts (no NaN from 0 × ∞)',
    outcome: failed(),
    attempts: 1_000_000,
    policy: { maxAttempts: 2_000_000, backoff: { ...policy.backoff, initialMs: 0 } },
    expected: inProcess(0, 1_000_000),
  },
  ...[
    ['retryable: true', { message: 'x', retryable: true }],
    ['retryable missing', new Error('x')],
    ["retryable: 'false' (a string)", { retryable: 'false' }],
    ['retryable: 0', { retryable: 0 }],
    ['a thrown string', 'oops'],
    ['a thrown null', null],
    ['a thrown undefined', undefined],
    ['a PublishError TIMEOUT (retryable)', new PublishError('TIMEOUT', 'publish timed out')],
  ].map(
    ([what, error]): Row => ({
      line: 'otherwise',
      name: `not flagged non-retryable: ${what}`,
      outcome: failed(error),
      attempts: 1,
      expected: inProcess(100, 1),
    }),
  ),
  // deadLetter: false turns every dead-letter into a drop, with the same reason
  ...(
    [
      [Outcomes.decodeFailed, 0, 'closed', 'decode', 'none'],
      [Outcomes.unmatched, 0, 'closed', 'unknown-type', 'none'],
      [Outcomes.invalid, 0, 'closed', 'validation', 'none'],
      [Outcomes.newerVersion, 5, 'closed', 'max-attempts', 'neutral'],
      [failed(new NonRetryableError('x')), 1, 'closed', 'non-retryable', 'neutral'],
      [failed(), 5, 'closed', 'max-attempts', 'failure'],
    ] as const
  ).map(
    ([outcome, attempts, breaker, reason, signal]): Row => ({
      line: 'deadLetter: false',
      name: `dropped instead: ${reason} (${outcome.kind})`,
      outcome,
      attempts,
      breaker,
      policy: { deadLetter: false, unmatched: 'dead-letter' },
      expected: drop(reason, attempts, signal),
    }),
  ),
];

function factsOf(row: Row): Facts {
  // Frozen: a decision that wrote to its facts would throw here.
  return Object.freeze({
    outcome: row.outcome,
    attempts: row.attempts ?? 1,
    breaker: row.breaker ?? 'closed',
    closing: row.closing ?? 'no',
  });
}

describe('decide: the pipeline diagram as a table', () => {
  it.each(rows.map((row) => [`${row.line ?? '(goes on)'}: ${row.name}`, row] as const))(
    '%s',
    (_name, row) => {
      const action = decide(factsOf(row), { ...policy, ...row.policy }, row.random ?? (() => 0.5));
      expect(action).toEqual(row.expected);
    },
  );
});

/** The decision lines of the README's pipeline diagram, by label (the text before `─→`). */
function diagramLabels(): string[] {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## What every transport does the same way'));
  const start = section.indexOf('```\n') + 4;
  const diagram = section.slice(start, section.indexOf('\n```', start));
  return diagram
    .split('\n')
    .filter((line) => line.includes('─→'))
    .map((line) =>
      line
        .slice(0, line.indexOf(' ─'))
        .replace(/^(receive)?\s*(→\s*)?/, '')
        .trim(),
    );
}

describe('decide and the README diagram', () => {
  it('every decision line of the diagram has a row, and every row names a line that exists', () => {
    const labels = diagramLabels();
    expect(labels.length).toBeGreaterThanOrEqual(20);
    expect(new Set(labels).size).toBe(labels.length);
    const named = new Set(rows.map((r) => r.line).filter((l) => l !== null));
    expect([...named].sort()).toEqual([...labels].sort());
  });
});

describe('decide: what holds for every combination of facts', () => {
  const outcomes: Outcome[] = [
    ...Object.values(Outcomes),
    failed(),
    failed(new NonRetryableError('x')),
    timedOut,
  ];
  const combos: Facts[] = [];
  for (const outcome of outcomes)
    for (const breaker of ['closed', 'open', 'half-open'] as const)
      for (const closing of ['no', 'draining', 'drain-over'] as const)
        for (const attempts of [0, 1, 4, 5, 6, 1_000_000])
          combos.push(Object.freeze({ outcome, attempts, breaker, closing }));
  const policies: FailurePolicy[] = [
    policy,
    { ...policy, ordered: true },
    { ...policy, deadLetter: false, unmatched: 'dead-letter' },
    { ...policy, inProcessMaxDelayMs: 0, backoff: { ...policy.backoff, jitter: true } },
  ];
  const all = policies.flatMap((p) => combos.map((f) => [f, p, decide(f, p, () => 0.99)] as const));

  it('is deterministic for the same facts and randomness', () => {
    for (const [f, p, action] of all) expect(decide(f, p, () => 0.99)).toEqual(action);
  });

  it('never runs anything in-process once closing', () => {
    for (const [f, , action] of all) {
      if (f.closing !== 'no') expect(action.kind).not.toBe('retry-in-process');
    }
  });

  it('a retry carries the attempts it came with, or one fewer only for a failure while the circuit was not closed', () => {
    for (const [f, , action] of all) {
      if (action.kind !== 'retry-in-process' && action.kind !== 'retry-via-broker') continue;
      const refunded = f.outcome.kind === 'failed' && f.breaker !== 'closed';
      expect(action.attempts).toBe(refunded ? f.attempts - 1 : f.attempts);
      expect(Number.isInteger(action.delayMs) && action.delayMs >= 0).toBe(true);
    }
  });

  it('tells the breaker something only about a handler run', () => {
    const ran = new Set(['ok', 'failed', 'newer-version', 'ready']);
    for (const [f, , action] of all) {
      if (!ran.has(f.outcome.kind)) expect(action.breaker).toBe('none');
    }
  });

  it('dead-letters only with deadLetter: true, and drops only with deadLetter: false', () => {
    for (const [, p, action] of all) {
      if (action.kind === 'dead-letter') expect(p.deadLetter).toBe(true);
      if (action.kind === 'drop') expect(p.deadLetter).toBe(false);
    }
  });
});

describe('isNonRetryable', () => {
  it('reads retryable === false on anything thrown, and nothing else', () => {
    expect(isNonRetryable(new NonRetryableError('x'))).toBe(true);
    expect(isNonRetryable(new PublishError('TOO_LARGE', 'x'))).toBe(true);
    expect(isNonRetryable({ retryable: false })).toBe(true);
    expect(isNonRetryable(new PublishError('PUBLISH_FAILED', 'x'))).toBe(false);
    expect(isNonRetryable(new HandlerTimeoutError(1))).toBe(false);
    expect(isNonRetryable(new Error('x'))).toBe(false);
    expect(isNonRetryable({ retryable: undefined })).toBe(false);
    for (const v of [null, undefined, 'x', 0, false]) expect(isNonRetryable(v)).toBe(false);
  });
});
