/** The benchmark message: a sequence number, a send timestamp for latency, and padding to a target size. */

export interface BenchData {
  seq: number;
  /** `performance.now()` when the publish was started (same process, so comparable on receipt). */
  t: number;
  /** Latency runs: messages sent before the measured window (consumer warm-up) are not counted. */
  warm?: boolean;
  pad: string;
}

export const MESSAGE_TYPE = 'bench.sample';

const pads = new Map<number, string>();

/** Padding such that `JSON.stringify(data)` is about `size` bytes. */
function padFor(size: number): string {
  let pad = pads.get(size);
  if (pad === undefined) {
    // `{"seq":123456,"t":12345.678901,"pad":""}` is about 44 bytes.
    pad = 'x'.repeat(Math.max(0, size - 44));
    pads.set(size, pad);
  }
  return pad;
}

export function makeData(seq: number, size: number): BenchData {
  return { seq, t: performance.now(), pad: padFor(size) };
}

export function warmData(seq: number, size: number): BenchData {
  return { seq, t: performance.now(), warm: true, pad: padFor(size) };
}

/** JSON bytes of a message, as the raw clients send it. */
export function encodeData(data: BenchData): Buffer {
  return Buffer.from(JSON.stringify(data), 'utf8');
}

export function decodeData(bytes: Uint8Array | string): BenchData {
  const text =
    typeof bytes === 'string'
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  return JSON.parse(text) as BenchData;
}

export function sizeLabel(size: number): string {
  return size >= 1024 ? `${Math.round(size / 1024)} KiB` : `${size} B`;
}
