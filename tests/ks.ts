/**
 * Kolmogorov–Smirnov statistics for the samplers' law tests (tests/rng_test.ts,
 * tests/distributions_test.ts).
 */

/** Kolmogorov–Smirnov statistic √n·D of sorted draws against a CDF. */
export function ksStatistic(sorted: Float64Array, cdf: (x: number) => number): number {
  const n = sorted.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const F = cdf(sorted[i]);
    d = Math.max(d, (i + 1) / n - F, F - i / n);
  }
  return Math.sqrt(n) * d;
}

/** Two-sample statistic √(nm/(n+m))·D of two sorted samples. */
export function ksTwoSample(a: Float64Array, b: Float64Array): number {
  let i = 0, j = 0, d = 0;
  while (i < a.length && j < b.length) {
    if (a[i] <= b[j]) i++;
    else j++;
    d = Math.max(d, Math.abs(i / a.length - j / b.length));
  }
  return Math.sqrt(a.length * b.length / (a.length + b.length)) * d;
}

/** 0.1 % point of the Kolmogorov distribution (P(√n·D > 1.949) = 0.001 for large n). */
export const KS_0_001 = 1.949;
