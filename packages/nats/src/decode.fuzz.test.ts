/**
 * Fuzzing the NATS decode path: a JetStream message's headers and data as the client hands them over →
 * wireFromMsg → the transport's decode. The answer is an envelope or a DecodeError, never another error,
 * and no prototype changes. OMNIBUS_FUZZ_SEED replays a run.
 */
import type { JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { CE_HEADER_ATTRIBUTES, checkDecode, FUZZ_SEED } from '@omnibus/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { wireFromMsg } from './subscription.js';
import { NatsTransport } from './transport.js';

const transport = new NatsTransport({ servers: ['127.0.0.1:1'] });

// NATS header names are HTTP-like tokens; the client refuses others at set(), as it would for a publisher.
const name = fc.oneof(
  fc.constantFrom(
    ...CE_HEADER_ATTRIBUTES.map((n) => `ce_${n}`),
    'content-type',
    '__proto__',
    'constructor',
    'Nats-Msg-Id',
  ),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
);
const value = fc.oneof(
  fc.constantFrom('1.0', '', 'application/json', '2024-01-01T00:00:00Z', 'NaN', '0'),
  fc.string({ maxLength: 20 }).map((s) => s.replace(/[\r\n]/g, ' ')),
);
const valid = fc.tuple(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), fc.string({ minLength: 1 }));

const msg = fc
  .tuple(
    fc.option(valid, { nil: undefined }),
    fc.array(fc.tuple(name, value), { maxLength: 8 }),
    fc.uint8Array({ maxLength: 64 }),
  )
  .map(([base, entries, data]) => {
    const h = natsHeaders();
    const set = (k: string, v: string) => {
      try {
        h.set(k, v.replace(/[\r\n]/g, ' '));
      } catch {
        // a name or value the client refuses never reaches the wire
      }
    };
    if (base) {
      set('ce_specversion', '1.0');
      set('ce_id', base[0]);
      set('ce_type', base[1]);
      set('ce_source', base[2]);
    }
    for (const [k, v] of entries) set(k, v);
    return { headers: h, data } as unknown as JsMsg;
  });

describe('decode fuzzing (nats)', () => {
  it('16,000 messages: wireFromMsg never throws, decode gives an envelope or a DecodeError', () => {
    const seen = { envelope: 0, 'decode-error': 0 };
    fc.assert(
      fc.property(msg, (m) => {
        seen[checkDecode((w) => transport.decode(w), wireFromMsg(m))]++;
      }),
      { seed: FUZZ_SEED, numRuns: 16_000 },
    );
    expect(seen.envelope).toBeGreaterThan(100);
    expect(seen['decode-error']).toBeGreaterThan(100);
  }, 60_000);
});
