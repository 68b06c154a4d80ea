/**
 * Timing helpers shared by the benchmark sections (operators here; VJPs and others add theirs).
 *
 * @module
 */

/** Timing summary in milliseconds. */
export interface Timing {
  /** Median of the timed runs. */
  median: number;
  /** 10th percentile (linear interpolation between order statistics). */
  p10: number;
  /** 90th percentile. */
  p90: number;
  /** Every timed run, in order. */
  runs: number[];
}

/** Percentile q ∈ [0,1] of sorted values, linearly interpolated (NumPy's default method). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Time `fn`: `warmup` untimed calls, then `runs` timed ones (each awaited), wall clock.
 *
 * @example
 * ```ts
 * import { timeIt } from "./bench_util.ts";
 * const t = await timeIt(() => new Float32Array(1000).fill(1), { warmup: 1, runs: 5 });
 * console.assert(t.runs.length === 5 && t.p10 <= t.median && t.median <= t.p90);
 * ```
 */
export async function timeIt(
  fn: () => unknown,
  options: { warmup?: number; runs?: number } = {},
): Promise<Timing> {
  const { warmup = 1, runs = 7 } = options;
  if (!(runs >= 1)) throw new RangeError(`runs must be ≥ 1, got ${runs}`);
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    median: percentile(sorted, 0.5),
    p10: percentile(sorted, 0.1),
    p90: percentile(sorted, 0.9),
    runs: times,
  };
}

/** Megapixels per second for an H×W image processed in `ms` milliseconds. */
export function megapixelsPerSecond(height: number, width: number, ms: number): number {
  return (height * width) / 1e6 / (ms / 1000);
}

/** Render rows as a fixed-width text table (first row = header). */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)]
    .join("\n");
}
