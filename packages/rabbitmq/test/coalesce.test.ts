/** Socket writes coalesced per muxer pass (src/coalesce.ts), on a real amqplib connection to the broker. */
import { type ChannelModel, connect } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { coalesceWrites } from '../src/coalesce.js';
import { AMQP_URL } from './helpers.js';

interface CountedSocket {
  _write: (...args: unknown[]) => unknown;
  _writev?: (...args: unknown[]) => unknown;
}

/** Counts what reaches the socket's underlying write calls (one per system call). */
function countWrites(model: ChannelModel): { calls: number } {
  const socket = (model as unknown as { connection: { stream: CountedSocket } }).connection.stream;
  const counter = { calls: 0 };
  const write = socket._write;
  socket._write = function (this: unknown, ...args: unknown[]) {
    counter.calls++;
    return write.apply(this, args);
  };
  const writev = socket._writev;
  if (writev) {
    socket._writev = function (this: unknown, ...args: unknown[]) {
      counter.calls++;
      return writev.apply(this, args);
    };
  }
  return counter;
}

/** 200 publishes in one tick on a confirm channel; resolves with the socket write calls they took. */
async function publishBurst(model: ChannelModel): Promise<number> {
  const ch = await model.createConfirmChannel();
  const counter = countWrites(model);
  const body = Buffer.alloc(200, 1);
  for (let i = 0; i < 200; i++) ch.publish('', 'omnibus-coalesce-nowhere', body, { headers: { n: i } });
  await ch.waitForConfirms();
  const calls = counter.calls;
  await ch.close();
  return calls;
}

const opened: ChannelModel[] = [];
afterEach(async () => {
  for (const m of opened.splice(0)) await m.close().catch(() => {});
});

async function open(): Promise<ChannelModel> {
  // As the transport connects: Nagle's algorithm off.
  const model = await connect(AMQP_URL, { noDelay: true });
  model.on('error', () => {});
  opened.push(model);
  return model;
}

describe('coalesceWrites', () => {
  it('finds amqplib internals as expected and is idempotent', async () => {
    const model = await open();
    expect(coalesceWrites(model)).toBe(true);
    expect(coalesceWrites(model)).toBe(true);
  });

  it('a burst of publishes takes a handful of socket writes instead of one each, and every one is confirmed', async () => {
    const plain = await publishBurst(await open());
    const model = await open();
    coalesceWrites(model);
    const coalesced = await publishBurst(model);
    expect(plain, 'without coalescing: about one write per publish').toBeGreaterThanOrEqual(100);
    expect(coalesced, 'coalesced: a few writev calls').toBeLessThanOrEqual(20);
  });

  it('leaves a connection alone when the internals are not there', () => {
    expect(coalesceWrites({} as ChannelModel)).toBe(false);
    expect(coalesceWrites({ connection: { muxer: {}, stream: {} } } as unknown as ChannelModel)).toBe(false);
  });
});
