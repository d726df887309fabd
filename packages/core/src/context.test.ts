import { describe, expect, it } from 'vitest';
import {
  childTraceparent,
  currentContext,
  isValidTraceparent,
  runInMessageContext,
  runWithContext,
} from './context.js';

const PARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('runWithContext', () => {
  it('has no context outside', () => {
    expect(currentContext()).toBeUndefined();
  });

  it('supplies the context to everything inside, across awaits', async () => {
    const seen = await runWithContext({ correlationId: 'req-1', traceparent: PARENT }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      return currentContext();
    });
    expect(seen).toEqual({ correlationId: 'req-1', traceparent: PARENT });
    expect(currentContext()).toBeUndefined();
  });

  it('returns what fn returns', () => {
    expect(runWithContext({}, () => 42)).toBe(42);
  });

  it('generates a correlation id when none is given', () => {
    const a = runWithContext({}, () => currentContext()!.correlationId);
    const b = runWithContext({}, () => currentContext()!.correlationId);
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(b).not.toBe(a);
  });

  it('nested contexts inherit and override the outer one', () => {
    runWithContext({ correlationId: 'outer', tracestate: 'k=v' }, () => {
      runWithContext({ causationId: 'c-1' }, () => {
        expect(currentContext()).toEqual({ correlationId: 'outer', causationId: 'c-1', tracestate: 'k=v' });
      });
      runWithContext({ correlationId: 'inner' }, () => {
        expect(currentContext()?.correlationId).toBe('inner');
      });
      expect(currentContext()).toEqual({ correlationId: 'outer', tracestate: 'k=v' });
    });
  });
});

describe('runInMessageContext', () => {
  it('makes the message the cause of whatever runs inside', () => {
    const ctx = runInMessageContext(
      { id: 'msg-1', correlationId: 'corr-1', traceparent: PARENT, tracestate: 'a=b' },
      () => currentContext(),
    );
    expect(ctx).toEqual({
      correlationId: 'corr-1',
      causationId: 'msg-1',
      traceparent: PARENT,
      tracestate: 'a=b',
    });
  });
});

describe('childTraceparent', () => {
  it('keeps the trace id and flags of the parent with a new span id', () => {
    const child = childTraceparent(PARENT);
    expect(isValidTraceparent(child)).toBe(true);
    const [version, trace, span, flags] = child.split('-');
    expect(version).toBe('00');
    expect(trace).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(span).toMatch(/^[0-9a-f]{16}$/);
    expect(span).not.toBe('b7ad6b7169203331');
    expect(flags).toBe('01');
    expect(childTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00').endsWith('-00')).toBe(
      true,
    );
  });

  it('starts a new sampled trace without a (valid) parent', () => {
    for (const parent of [undefined, 'garbage']) {
      const t = childTraceparent(parent);
      expect(isValidTraceparent(t)).toBe(true);
      expect(t.startsWith('00-')).toBe(true);
      expect(t.endsWith('-01')).toBe(true);
      expect(t).not.toContain('0af7651916cd43dd8448eb211c80319c');
    }
    expect(childTraceparent().split('-')[1]).not.toBe(childTraceparent().split('-')[1]);
  });

  it('isValidTraceparent checks the W3C shape', () => {
    expect(isValidTraceparent(PARENT)).toBe(true);
    expect(isValidTraceparent('00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01')).toBe(false);
    expect(isValidTraceparent('00-abc-def-01')).toBe(false);
    expect(isValidTraceparent(`${PARENT}-extra`)).toBe(false);
  });
});
