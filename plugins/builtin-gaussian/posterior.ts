/**
 * Exact posteriors for operators that are diagonal in the latent basis (A = Dᵀ-basis diagonal,
 * y′ = 2y − A(1) = A x′ + 2n): per-coordinate Gaussian posterior moments and samples.
 *
 * @module
 */
import { encode64, type LatentLayout } from "./basis.ts";
import type { PriorMoments } from "./spectra.ts";

/**
 * A linear inverse problem whose operator is diagonal in the latent basis (half-sample symmetric
 * blur with a symmetric kernel, identity…): A = Cᵀ Φᵀ diag(h) Φ C with the same h in each channel.
 * In latent coordinates ŷ_i = h_i z_i + n_i with n_i ~ N(0, σ_z²), σ_z = 2σ_y·s.
 */
export interface DiagonalProblem {
  /** ŷ = E(y′), 3·K_h·K_w values. */
  yhat: Float64Array;
  /** h on the kept block, K_h·K_w values (shared by the channels). */
  h: Float64Array;
  /** σ_y on the [0,1] image scale. */
  sigmaY: number;
  /** The latent layout. */
  layout: LatentLayout;
}

/**
 * Restrict an H·W DCT diagonal to the kept K_h×K_w block (or return a K_h·K_w one as is).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keptDiagonal, latentLayout } from "./closed_form.ts";
 * const l = latentLayout([1, 3, 3, 3], [2, 2]);
 * assert.deepEqual([...keptDiagonal([1, 2, 3, 4, 5, 6, 7, 8, 9], l)], [1, 2, 4, 5]);
 * ```
 */
export function keptDiagonal(h: ArrayLike<number>, l: LatentLayout): Float64Array {
  if (h.length === l.keepH * l.keepW) return Float64Array.from(h);
  if (h.length !== l.height * l.width) {
    throw new RangeError(`diagonal has ${h.length} values, expected ${l.height * l.width}`);
  }
  const out = new Float64Array(l.keepH * l.keepW);
  for (let u = 0; u < l.keepH; u++) {
    for (let v = 0; v < l.keepW; v++) out[u * l.keepW + v] = h[u * l.width + v];
  }
  return out;
}

/**
 * Build a {@link DiagonalProblem} from a measurement y on the [0,1] scale (3·H·W values) and the
 * operator's DCT diagonal h (H·W values, `h[0]` = the response to a constant image): the
 * model-scale measurement is y′ = 2y − A(1) = 2y − h_00, and ŷ = E(y′).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { diagonalProblem, latentLayout } from "./closed_form.ts";
 * // Identity operator (h = 1, h_00 = 1): y = 0.5 everywhere is the model-scale image 0.
 * const l = latentLayout([1, 3, 2, 2]);
 * const p = diagonalProblem(new Float64Array(12).fill(0.5), new Float64Array(4).fill(1), 0.01, l);
 * assert.ok(p.yhat.every((v) => v === 0));
 * assert.equal(p.h.length, 4);
 * ```
 */
export function diagonalProblem(
  y: ArrayLike<number>,
  h: ArrayLike<number>,
  sigmaY: number,
  l: LatentLayout,
): DiagonalProblem {
  const yp = new Float64Array(y.length);
  const h00 = h[0];
  for (let i = 0; i < y.length; i++) yp[i] = 2 * y[i] - h00;
  return { yhat: encode64(yp, l), h: keptDiagonal(h, l), sigmaY, layout: l };
}

/**
 * Latent noise standard deviation σ_z = 2σ_y·s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, latentNoiseStd } from "./closed_form.ts";
 * assert.equal(latentNoiseStd({ sigmaY: 0.05, layout: latentLayout([1, 3, 2, 2], null, 0.5) }), 0.05);
 * ```
 */
export function latentNoiseStd(p: Pick<DiagonalProblem, "sigmaY" | "layout">): number {
  return 2 * p.sigmaY * p.layout.scale;
}

/** Posterior moments per latent coordinate. */
export interface PosteriorMoments {
  /** E[z | y]. */
  mean: Float64Array;
  /** Var[z | y] (marginal). */
  variance: Float64Array;
}

/**
 * Exact posterior for a diagonal operator: v_i = 1/(1/λ_i + h_i²/σ_z²),
 * m_i = v_i (μ_i/λ_i + h_i ŷ_i/σ_z²).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, posteriorDiagonal } from "./closed_form.ts";
 * // 1×1 image, identity operator, σ_y = 0.5 → σ_z = 2σ_y·s = 1; prior N(0, 1):
 * // v = 1/(1/λ + h²/σ_z²) = 1/2, m = v · h ŷ / σ_z².
 * const p = { yhat: Float64Array.of(1, 0, -2), h: Float64Array.of(1), sigmaY: 0.5, layout: latentLayout([1, 3, 1, 1]) };
 * const q = posteriorDiagonal(p, { lambda: Float64Array.of(1, 1, 1), mu: new Float64Array(3) });
 * assert.deepEqual([...q.mean], [0.5, 0, -1]);
 * assert.deepEqual([...q.variance], [0.5, 0.5, 0.5]);
 * ```
 */
export function posteriorDiagonal(p: DiagonalProblem, m: PriorMoments): PosteriorMoments {
  const n = p.h.length, s2 = latentNoiseStd(p) ** 2;
  const mean = new Float64Array(3 * n), variance = new Float64Array(3 * n);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < n; j++) {
      const i = k * n + j, h = p.h[j];
      const v = 1 / (1 / m.lambda[i] + (h * h) / s2);
      variance[i] = v;
      mean[i] = v * (m.mu[i] / m.lambda[i] + (h * p.yhat[i]) / s2);
    }
  }
  return { mean, variance };
}

/**
 * One draw from N(mean, diag(variance)) (e.g. an exact posterior sample for a diagonal operator).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sampleDiagonal } from "./closed_form.ts";
 * import { streams } from "../../core/rng.ts";
 * const q = { mean: Float64Array.of(1, 2), variance: Float64Array.of(0, 4) };
 * const x = sampleDiagonal(q, streams(0).get("solver"));
 * assert.equal(x[0], 1); // zero variance: the mean
 * assert.notEqual(x[1], 2);
 * ```
 */
export function sampleDiagonal(q: PosteriorMoments, rng: NormalSource): Float64Array {
  return q.mean.map((v, i) => v + Math.sqrt(q.variance[i]) * rng.normal());
}

/** A source of standard normal draws (a core `RandomStream` fits). */
export interface NormalSource {
  /** One N(0,1) draw. */
  normal(): number;
}
