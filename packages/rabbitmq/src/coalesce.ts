/**
 * Fewer socket writes. amqplib queues each channel's frames in a stream of its own, and its muxer moves them
 * to the socket one `write()` at a time. With Nagle's algorithm off (the transport sets `noDelay`, for
 * latency) each of those writes would leave as a packet of its own; corking the socket for the length of
 * one muxer pass hands everything the pass collected to the kernel in a single `writev`.
 *
 * This reaches into amqplib's internals (`connection.muxer._readIncoming`, `connection.stream`), so it checks
 * that they look as expected and otherwise leaves the connection as it is: the frames, their order and the
 * backpressure (`write()`'s return value, 'drain') do not change either way, only how many system calls
 * and packets carry them.
 */
import type { ChannelModel } from 'amqplib';

interface Corkable {
  cork(): void;
  uncork(): void;
}

interface MuxInternals {
  _readIncoming?: (this: unknown) => void;
  __omnibusCoalesced?: boolean;
}

/** True when the connection's writes are now coalesced, false when amqplib's internals were not as expected. */
export function coalesceWrites(model: ChannelModel): boolean {
  const connection = (
    model as unknown as { connection?: { muxer?: MuxInternals; stream?: Partial<Corkable> } }
  ).connection;
  const mux = connection?.muxer;
  const socket = connection?.stream;
  const pass = mux?._readIncoming;
  if (
    !mux ||
    typeof pass !== 'function' ||
    typeof socket?.cork !== 'function' ||
    typeof socket.uncork !== 'function'
  ) {
    return false;
  }
  if (mux.__omnibusCoalesced) return true;
  const out = socket as Corkable;
  mux._readIncoming = function readCorked(this: unknown) {
    out.cork();
    try {
      pass.call(this);
    } finally {
      out.uncork();
    }
  };
  mux.__omnibusCoalesced = true;
  return true;
}
