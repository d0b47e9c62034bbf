/**
 * Statistics of the benchmarks: medians, nearest-rank percentiles, means, ratios and the usual
 * distribution summary of a set of latencies. Pure functions over plain arrays; an empty list
 * gives NaN, which the tables print as `n/a`.
 *
 * @module
 */

/**
 * The median of a list (the mean of the middle two for an even count); NaN when it is empty.
 *
 * @example Median of an even count
 * ```ts
 * import { median } from "./_stats.ts";
 * console.assert(median([4, 1, 3, 2]) === 2.5);
 * ```
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The `p`-th percentile (0–100) of a list by the nearest-rank method: always one of the values,
 * never an interpolation between two. NaN when the list is empty.
 *
 * @example The 99th percentile of 100 values is the 99th smallest
 * ```ts
 * import { percentile } from "./_stats.ts";
 * const values = Array.from({ length: 100 }, (_, i) => i + 1);
 * console.assert(percentile(values, 99) === 99);
 * ```
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

/**
 * The arithmetic mean of a list; NaN when it is empty.
 *
 * @example
 * ```ts
 * import { mean } from "./_stats.ts";
 * console.assert(mean([1, 2, 6]) === 3);
 * ```
 */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * `x / y` when both are positive, else NaN: a ratio of two added lags says nothing once either
 * is zero or negative (noise around the baseline), so it is left out rather than printed huge.
 *
 * @example
 * ```ts
 * import { ratio } from "./_stats.ts";
 * console.assert(ratio(3, 2) === 1.5);
 * console.assert(Number.isNaN(ratio(3, -0.1)));
 * ```
 */
export function ratio(x: number, y: number): number {
  return x > 0 && y > 0 ? x / y : NaN;
}

/** The usual summary of a set of latencies (or any sample), in the sample's unit. */
export interface Distribution {
  /** Median by nearest rank. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** Smallest value. */
  min: number;
  /** Largest value. */
  max: number;
  /** Arithmetic mean. */
  mean: number;
}

/**
 * Percentiles, extremes and mean of a list; every figure NaN when it is empty.
 *
 * @example
 * ```ts
 * import { distribution } from "./_stats.ts";
 * const d = distribution([5, 1, 3]);
 * console.assert(d.p50 === 3 && d.min === 1 && d.max === 5 && d.mean === 3);
 * ```
 */
export function distribution(values: readonly number[]): Distribution {
  if (values.length === 0) {
    return { p50: NaN, p90: NaN, p99: NaN, min: NaN, max: NaN, mean: NaN };
  }
  return {
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    min: Math.min(...values),
    max: Math.max(...values),
    mean: mean(values),
  };
}
