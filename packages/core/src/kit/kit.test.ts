import { describe, expect, it } from 'vitest';
import { ControlHeader, type WireMessage } from '../envelope.js';
import { ConnectionError, ErrorCode, OmnibusError, PublishError } from '../errors.js';
import { parseOptions } from '../options.js';
import { MAX_ATTEMPTS_HEADER, readAttempts, readDueAt, retryHeaders } from './control-headers.js';
import { DEFAULT_DELAY_TIERS_MS, delayTiersSchema, nextHop, planDelay, tierFor } from './delay.js';
import { BaseDelivery, handOver } from './delivery.js';
import { abandonedPublishError, PublishDeadline, withConnectDeadline } from './publish.js';

const wire = (headers: Record<string, string> = {}): WireMessage => ({ body: Buffer.from('x'), headers });

/** A delivery whose broker actions are recorded, and can be made to fail. */
class Recorded extends BaseDelivery {
  readonly calls: string[] = [];
  freed = 0;
  fail = false;
  constructor(headers: Record<string, string> = {}) {
    super({ wire: wire(headers), topic: 't', group: 'g', redelivered: false });
  }
  #run(name: string): Promise<void> {
    this.calls.push(name);
    return this.fail ? Promise.reject(new Error(`${name} failed`)) : Promise.resolve();
  }
  protected doAck() {
    return this.#run('ack');
  }
  protected doRelease() {
    return this.#run('release');
  }
  protected doRetryLater(delayMs: number) {
    return this.#run(`retry ${delayMs}`);
  }
  protected doDeadLetter() {
    return this.#run('dead-letter');
  }
  protected override onSettled() {
    this.freed++;
  }
}

describe('BaseDelivery: one settle state machine', () => {
  it('runs the first settle action and moves open → settling → settled', async () => {
    const d = new Recorded();
    expect(d.state).toBe('open');
    const p = d.retryLater(500, {});
    expect(d.state).toBe('settling');
    await p;
    expect(d.state).toBe('settled');
    expect(d.calls).toEqual(['retry 500']);
    expect(d.freed).toBe(1);
  });

  it.each(['ack', 'release', 'deadLetter', 'retryLater'] as const)(
    'a second settle call (%s) rejects with ALREADY_SETTLED and touches nothing',
    async (second) => {
      const d = new Recorded();
      await d.ack();
      const err = await (second === 'retryLater'
        ? d.retryLater(1, {})
        : second === 'deadLetter'
          ? d.deadLetter({})
          : d[second]()
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OmnibusError);
      expect((err as OmnibusError).code).toBe(ErrorCode.ALREADY_SETTLED);
      expect(d.calls).toEqual(['ack']);
      expect(d.freed).toBe(1);
    },
  );

  it('rejects a concurrent second call while the first is still settling', async () => {
    const d = new Recorded();
    const first = d.ack();
    await expect(d.release()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    await first;
    expect(d.calls).toEqual(['ack']);
  });

  it('after a failed action allows exactly one release, and frees the slot once', async () => {
    const d = new Recorded();
    d.fail = true;
    await expect(d.deadLetter({})).rejects.toThrow('dead-letter failed');
    expect(d.state).toBe('failed');
    expect(d.freed).toBe(0);
    await expect(d.ack()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    d.fail = false;
    await d.release();
    expect(d.state).toBe('settled');
    expect(d.calls).toEqual(['dead-letter', 'release']);
    await expect(d.release()).rejects.toMatchObject({ code: ErrorCode.ALREADY_SETTLED });
    expect(d.freed).toBe(1);
  });

  it('frees the slot when the fallback release fails too', async () => {
    const d = new Recorded();
    d.fail = true;
    await expect(d.ack()).rejects.toThrow();
    await expect(d.release()).rejects.toThrow('release failed');
    expect(d.freed).toBe(1);
  });

  it('turns a synchronous throw into a rejection', async () => {
    class Throws extends Recorded {
      protected override doAck(): Promise<void> {
        throw new Error('sync');
      }
    }
    const d = new Throws();
    await expect(d.ack()).rejects.toThrow('sync');
    expect(d.state).toBe('failed');
  });

  it('reads previous attempts from the header unless the transport gives them', () => {
    expect(new Recorded({ [ControlHeader.attempts]: '3' }).previousAttempts).toBe(3);
    expect(new Recorded().previousAttempts).toBe(0);
  });
});

describe('control headers', () => {
  it.each([
    [undefined, 0],
    ['', 0],
    ['4', 4],
    ['2.7', 2],
    ['-5', 0],
    ['NaN', 0],
    ['abc', 0],
    ['Infinity', 0],
    ['1e300', MAX_ATTEMPTS_HEADER],
  ])('attempts header %j reads as %d', (value, expected) => {
    const headers: Record<string, string> = {};
    if (value !== undefined) headers[ControlHeader.attempts] = value;
    expect(readAttempts(headers)).toBe(expected);
  });

  it('reads a due time only when it is a positive number', () => {
    expect(readDueAt({ [ControlHeader.dueAt]: '1700000000000' })).toBe(1_700_000_000_000);
    expect(readDueAt({ [ControlHeader.dueAt]: 'soon' })).toBeUndefined();
    expect(readDueAt({ [ControlHeader.dueAt]: '-1' })).toBeUndefined();
    expect(readDueAt({})).toBeUndefined();
  });

  it('sets or removes the due time on a retried message, keeping the rest', () => {
    const original = { a: '1', [ControlHeader.dueAt]: '5' };
    expect(retryHeaders(original, { [ControlHeader.attempts]: '2' }, undefined)).toEqual({
      a: '1',
      [ControlHeader.attempts]: '2',
    });
    expect(retryHeaders({ a: '1' }, {}, 99)).toEqual({ a: '1', [ControlHeader.dueAt]: '99' });
  });
});

describe('delay planning', () => {
  const tiers = [1_000, 5_000, 30_000];

  it('rounds a delay up to the smallest tier that covers it', () => {
    expect(tierFor(1, tiers)).toBe(1_000);
    expect(tierFor(1_000, tiers)).toBe(1_000);
    expect(tierFor(1_001, tiers)).toBe(5_000);
    expect(tierFor(90_000, tiers)).toBe(30_000);
  });

  it('carries a due time only when one tier cannot cover the delay', () => {
    expect(planDelay(4_000, tiers, 100)).toEqual({ tierMs: 5_000, dueAt: undefined });
    expect(planDelay(30_000, tiers, 100)).toEqual({ tierMs: 30_000, dueAt: undefined });
    expect(planDelay(70_000, tiers, 100)).toEqual({ tierMs: 30_000, dueAt: 70_100 });
    expect(planDelay(-5, tiers, 100)).toEqual({ tierMs: 1_000, dueAt: undefined });
  });

  it('chains hops until the due time, never delivering early and never shortening', () => {
    const start = 0;
    let now = start;
    let plan = planDelay(70_000, tiers, now);
    const hops: number[] = [];
    for (;;) {
      hops.push(plan.tierMs);
      now += plan.tierMs;
      const next = nextHop(plan.dueAt, tiers, now);
      if (!next) break;
      plan = next;
    }
    expect(now).toBeGreaterThanOrEqual(70_000);
    expect(hops).toEqual([30_000, 30_000, 30_000]);
    expect(nextHop(undefined, tiers, 5)).toBeUndefined();
    expect(nextHop(10, tiers, 10)).toBeUndefined();
    expect(nextHop(4_000, tiers, 1_000)).toEqual({ tierMs: 5_000, dueAt: 4_000 });
  });

  it('validates tiers once: sorted, positive whole numbers, no repeats', () => {
    expect(parseOptions(delayTiersSchema, [5_000, 1_000])).toEqual([1_000, 5_000]);
    expect(() => parseOptions(delayTiersSchema, [], 'delayTiersMs')).toThrow(/delayTiersMs/);
    expect(() => parseOptions(delayTiersSchema, [0])).toThrow();
    expect(() => parseOptions(delayTiersSchema, [1.5])).toThrow();
    expect(() => parseOptions(delayTiersSchema, [5, 5])).toThrow(/repeat/);
    expect(parseOptions(delayTiersSchema, DEFAULT_DELAY_TIERS_MS)).toEqual(DEFAULT_DELAY_TIERS_MS);
  });
});

describe('publish deadline', () => {
  it("asks the transport once and reports its verdict; 'unknown' when it registered nothing", () => {
    const silent = new PublishDeadline(0);
    expect(silent.abandon()).toBe('unknown');
    const d = new PublishDeadline(0);
    let asked = 0;
    d.onAbandon(() => {
      asked++;
      return 'withdrawn';
    });
    expect(d.abandon()).toBe('withdrawn');
    expect(d.abandoned).toBe(true);
    expect(d.abandon()).toBe('unknown');
    expect(asked).toBe(1);
  });

  it('never asks once the publish settled', () => {
    const d = new PublishDeadline(0);
    d.onAbandon(() => 'withdrawn');
    d.settled();
    expect(d.abandon()).toBe('unknown');
  });

  it('maps the verdict to TIMEOUT (never sent) or OUTCOME_UNKNOWN (may duplicate)', () => {
    const sent = abandonedPublishError('t', 'withdrawn', { timeoutMs: 10 });
    expect(sent).toBeInstanceOf(PublishError);
    expect(sent.code).toBe(ErrorCode.TIMEOUT);
    expect(sent.message).toMatch(/never sent/);
    const unknown = abandonedPublishError('t', 'unknown', { aborted: new Error('user') });
    expect(unknown.code).toBe(ErrorCode.OUTCOME_UNKNOWN);
    expect(unknown.message).toMatch(/may duplicate/);
    expect(unknown.retryable).toBe(true);
  });
});

describe('connect deadline', () => {
  it('rejects with a ConnectionError and gives up the attempt when the deadline passes', async () => {
    let gaveUp = false;
    const never = new Promise<void>(() => {});
    const err = await withConnectDeadline(never, 20, 'kafka at 127.0.0.1:1', () => {
      gaveUp = true;
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/within 20 ms/);
    expect(gaveUp).toBe(true);
  });

  it('passes the connection through when it comes in time', async () => {
    await expect(withConnectDeadline(Promise.resolve(7), 1_000, 'x', () => {})).resolves.toBe(7);
    await expect(
      withConnectDeadline(Promise.reject(new Error('refused')), 1_000, 'x', () => {}),
    ).rejects.toThrow('refused');
  });
});

describe('handOver', () => {
  it('releases a delivery whose callback threw, and logs it', async () => {
    const d = new Recorded();
    const logged: string[] = [];
    const logger = {
      debug() {},
      info() {},
      warn() {},
      error(_f: unknown, msg: string) {
        logged.push(msg);
      },
    };
    handOver(
      () => {
        throw new Error('bug');
      },
      d,
      logger,
    );
    await new Promise((r) => setImmediate(r));
    expect(d.calls).toEqual(['release']);
    expect(logged).toEqual(['delivery callback threw; releasing the message']);
  });
});
