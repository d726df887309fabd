/** Small statistics for benchmark figures: medians with their spread, percentiles, paired ratios. */

/** A figure measured several times: the median is the figure, min and max show the spread. */
export interface Figure {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export function figure(samples: readonly number[]): Figure {
  if (samples.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, samples: [] };
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    median: median(sorted),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    samples: samples.map((s) => round(s, 3)),
  };
}

function median(sorted: readonly number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The p-th percentile (0–100) by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * Omnibus/raw ratio: the ratio of the medians, and the spread of the per-repetition ratios (each
 * Omnibus repetition against the raw repetition that ran just before it).
 */
export function ratio(omnibus: Figure, raw: Figure): Figure {
  const paired: number[] = [];
  const n = Math.min(omnibus.samples.length, raw.samples.length);
  for (let i = 0; i < n; i++) paired.push(omnibus.samples[i]! / raw.samples[i]!);
  const spread = figure(paired);
  return {
    median: round(omnibus.median / raw.median, 3),
    min: round(spread.min, 3),
    max: round(spread.max, 3),
    samples: spread.samples,
  };
}

export function round(v: number, digits = 1): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
