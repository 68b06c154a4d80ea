/**
 * Exact draws of a few laws beyond N(0,1), from a {@link RandomStream}.
 *
 * - {@link gammaVariate}: Gamma(a, 1) by Marsaglia & Tsang (2000), "A simple method for generating
 *   gamma variables" (ACM TOMS 26(3)): for a ≥ 1, with d = a − 1/3 and c = 1/√(9d), draw x ~ N(0,1)
 *   and u ~ U(0,1) until v = (1 + c·x)³ > 0 and ln u < x²/2 + d − d·v + d·ln v (the squeeze
 *   u < 1 − 0.0331·x⁴ accepts most draws without a logarithm); then d·v ~ Gamma(a). Exact
 *   rejection sampling (no approximation of the density); for a < 1 the boost
 *   Gamma(a) = Gamma(a + 1)·U^{1/a} (same paper). About 1.02 normals per draw for large a.
 * - {@link chiSquareVariate}: χ²_k = 2·Gamma(k/2).
 * - {@link noisyResidualNormSq}: ‖r + σ n‖² for a fixed vector r and n ~ N(0, I_N), drawn exactly
 *   in law from two scalars instead of N normals (see its doc).
 *
 * @module
 */
import type { RandomStream } from "./rng.ts";

/**
 * One Gamma(a, 1) draw (shape a > 0, scale 1), exact (Marsaglia & Tsang 2000, see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { streams } from "./rng.ts";
 * import { gammaVariate } from "./distributions.ts";
 * const rng = streams(0).get("example");
 * let s = 0;
 * for (let i = 0; i < 2000; i++) s += gammaVariate(rng, 3);
 * assert.ok(Math.abs(s / 2000 - 3) < 0.2); // E = a, sd of the mean √3/√2000 ≈ 0.04
 * ```
 */
export function gammaVariate(rng: RandomStream, a: number): number {
  if (!(a > 0) || !Number.isFinite(a)) throw new RangeError(`gammaVariate: shape ${a} must be > 0`);
  if (a < 1) {
    // Boost: Gamma(a) = Gamma(a + 1)·U^{1/a}.
    return gammaVariate(rng, a + 1) * Math.pow(rng.uniform(), 1 / a);
  }
  const d = a - 1 / 3, c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number, w: number;
    do {
      x = rng.normal();
      w = c * x;
    } while (w <= -1);
    // v = (1 + w)³; d − d·v + d·ln v with ln v = 3·log1p(w) and v − 1 = 3w + 3w² + w³ (no
    // cancellation for large d, where w is small).
    const v = (1 + w) * (1 + w) * (1 + w);
    const u = rng.uniform();
    const x2 = x * x;
    if (u < 1 - 0.0331 * x2 * x2) return d * v;
    if (Math.log(u) < 0.5 * x2 + d * (3 * Math.log1p(w) - w * (3 + w * (3 + w)))) return d * v;
  }
}

/**
 * One χ²_k draw (k > 0 degrees of freedom): 2·Gamma(k/2), exact.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { streams } from "./rng.ts";
 * import { chiSquareVariate } from "./distributions.ts";
 * const x = chiSquareVariate(streams(0).get("example"), 1e6);
 * assert.ok(Math.abs(x - 1e6) < 10 * Math.sqrt(2e6)); // mean k, sd √(2k)
 * ```
 */
export function chiSquareVariate(rng: RandomStream, k: number): number {
  return 2 * gammaVariate(rng, k / 2);
}

/**
 * ‖r + σ n‖² for n ~ N(0, I_N), given only ‖r‖² and N, drawn exactly in law:
 *
 *   ‖r + σ n‖² = (‖r‖ + σ g)² + σ² χ²_{N−1},   g ~ N(0,1) independent of χ²_{N−1}.
 *
 * Why: write n = g·r̂ + n⊥ with r̂ = r/‖r‖ (any unit vector when r = 0); g = ⟨r̂, n⟩ ~ N(0,1) and
 * n⊥ (the projection on r̂'s orthogonal complement) is independent of g with ‖n⊥‖² ~ χ²_{N−1}, so
 * r + σn = (‖r‖ + σg) r̂ + σ n⊥ with orthogonal terms. One normal and one χ² draw replace N
 * normals — for a caller that needs only the norm (LATINO's residual δ rule, whose noise vector is
 * never used again) this is the same random variable at O(1) cost.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { streams } from "./rng.ts";
 * import { noisyResidualNormSq } from "./distributions.ts";
 * const rng = streams(0).get("example");
 * // E‖r + σn‖² = ‖r‖² + σ²N
 * let s = 0;
 * for (let i = 0; i < 4000; i++) s += noisyResidualNormSq(rng, 4, 100, 0.5);
 * assert.ok(Math.abs(s / 4000 - (4 + 0.25 * 100)) < 0.5);
 * ```
 */
export function noisyResidualNormSq(
  rng: RandomStream,
  rNormSq: number,
  n: number,
  sigma: number,
): number {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`noisyResidualNormSq: N = ${n} must be a positive integer`);
  }
  const along = Math.sqrt(rNormSq) + sigma * rng.normal();
  const across = n > 1 ? sigma * sigma * chiSquareVariate(rng, n - 1) : 0;
  return along * along + across;
}
