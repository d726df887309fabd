import { fromBinary, type RawEnvelope, toBinary } from '@omnibus/core';
import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { amqpFromWire, binaryMode, wireFromAmqp } from './wire.js';

function envelope(overrides: Partial<RawEnvelope> = {}): RawEnvelope {
  const id = '0190b6d2-0000-7000-8000-000000000001';
  return {
    id,
    type: 'order.placed',
    source: 'checkout',
    time: Date.UTC(2024, 4, 17, 10, 11, 12, 345),
    correlationId: id,
    version: 1,
    contentType: 'application/json',
    headers: { tenant: 'acme' },
    data: Buffer.from('{"n":1}'),
    ...overrides,
  };
}

/** What a consumer receives for a publish: the body and properties as they went out. */
function received(env: RawEnvelope): Message {
  const out = amqpFromWire('x', toBinary(env, binaryMode), false);
  return {
    content: out.content,
    fields: { routingKey: out.routingKey, exchange: 'x', deliveryTag: 1, redelivered: false },
    properties: out.options,
  } as unknown as Message;
}

describe('AMQP wire mapping', () => {
  it('moves the attributes with native properties out of the header table', () => {
    const out = amqpFromWire('x', toBinary(envelope(), binaryMode), true);
    expect(out.routingKey).toBe('order.placed');
    expect(out.options).toMatchObject({
      messageId: envelope().id,
      correlationId: envelope().id,
      type: 'order.placed',
      appId: 'checkout',
      contentType: 'application/json',
      timestamp: Math.floor(envelope().time / 1000),
      persistent: true,
      mandatory: true,
    });
    expect(out.options.headers).toEqual({
      tenant: 'acme',
      cloudEvents_specversion: '1.0',
      cloudEvents_time: '2024-05-17T10:11:12.345Z',
    });
  });

  it('leaves the time header out when the timestamp holds it exactly', () => {
    const env = envelope({ time: Date.UTC(2024, 4, 17, 10, 11, 12) });
    const out = amqpFromWire('x', toBinary(env, binaryMode), false);
    expect(out.options.headers).not.toHaveProperty('cloudEvents_time');
    expect(fromBinary(wireFromAmqp(received(env)), binaryMode).time).toBe(env.time);
  });

  it('round-trips every attribute through the AMQP form', () => {
    for (const env of [
      envelope(),
      envelope({ time: Date.UTC(2030, 0, 1) }),
      envelope({ correlationId: 'corr-1', causationId: 'cause-1', version: 3, key: 'k-1' }),
      envelope({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'v=1' }),
    ]) {
      const back = fromBinary(wireFromAmqp(received(env)), binaryMode);
      expect({ ...back, data: Buffer.from(back.data).toString() }).toEqual({
        ...env,
        data: '{"n":1}',
      });
    }
  });

  it('restores the same WireMessage headers the encoder was given (claim-check and size checks see them)', () => {
    const wire = toBinary(envelope({ correlationId: 'corr-1', key: 'k' }), binaryMode);
    expect(wireFromAmqp(received(envelope({ correlationId: 'corr-1', key: 'k' }))).headers).toEqual(
      wire.headers,
    );
  });

  it('keeps a time header it cannot parse, and sets no timestamp for it', () => {
    const wire = toBinary(envelope(), binaryMode);
    wire.headers.cloudEvents_time = 'soon';
    const out = amqpFromWire('x', wire, false);
    expect(out.options.timestamp).toBeUndefined();
    expect(out.options.headers).toMatchObject({ cloudEvents_time: 'soon' });
  });

  it('headers win over properties: the earlier form and foreign CloudEvents publishers', () => {
    const msg = received(envelope());
    msg.properties.headers = {
      ...msg.properties.headers,
      cloudEvents_id: 'from-header',
      cloudEvents_source: 'header-source',
    };
    const back = fromBinary(wireFromAmqp(msg), binaryMode);
    expect(back.id).toBe('from-header');
    expect(back.source).toBe('header-source');
  });

  it('takes no message without a message id for an event', () => {
    const msg = received(envelope());
    msg.properties.messageId = undefined;
    msg.properties.headers = {};
    expect(wireFromAmqp(msg).headers).toEqual({ 'content-type': 'application/json' });
  });

  it('drops a header holding an invalid Date instead of throwing (found by the decode fuzzing)', () => {
    const msg = received(envelope());
    msg.properties.headers = { ...msg.properties.headers, when: new Date(Number.NaN), at: new Date(0) };
    const wire = wireFromAmqp(msg);
    expect(wire.headers.when).toBeUndefined();
    expect(wire.headers.at).toBe('1970-01-01T00:00:00.000Z');
  });
});
