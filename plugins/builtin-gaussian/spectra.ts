/**
 * The built-in prior's spectrum and its read-out from the text embedding. For channel k and
 * frequency (u,v):
 *   λ_{k,u,v} = s² κ² e^{a_k} (ρ0² + κ² ρ²)^{−β_k/2},   ρ² = u²/H² + v²/W²,   κ = √(HW)/N_ref,
 *   μ_{k,0,0} = m_k √(HW) s, μ = 0 elsewhere,
 * with θ = (a_1,a_2,a_3, β_1,β_2,β_3, m_1,m_2,m_3) = W · mean_tokens(c) + b.
 * DEVIATION (documented extension of exact-model.md §2): the κ factors make the default prior
 * sensible at every image size (see closed_form.ts).
 *
 * @module
 */
import type { LatentLayout } from "./basis.ts";
import { solveDense } from "./dense.ts";

/**
 * Number of prior parameters θ (a, β, m for 3 colour channels).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { THETA_SIZE } from "./closed_form.ts";
 * assert.equal(THETA_SIZE, 9); // (a, β, m) for 3 colour channels
 * ```
 */
export const THETA_SIZE = 9;

/** Frequency-model constants that are not part of θ. */
export interface SpectrumConstants {
  /** ρ0, the low-frequency cut-off (default 1/64). */
  rho0: number;
  /** Reference size N_ref of the size scaling κ = √(HW)/N_ref; 0 disables it (κ = 1). */
  refSize: number;
}

/**
 * κ = √(HW)/N_ref, or 1 when N_ref = 0.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, sizeFactor } from "./closed_form.ts";
 * const l = latentLayout([1, 3, 128, 128]);
 * assert.equal(sizeFactor(l, { rho0: 1 / 64, refSize: 64 }), 2);
 * assert.equal(sizeFactor(l, { rho0: 1 / 64, refSize: 0 }), 1);
 * ```
 */
export function sizeFactor(l: LatentLayout, c: SpectrumConstants): number {
  return c.refSize > 0 ? Math.sqrt(l.height * l.width) / c.refSize : 1;
}

/**
 * L_{u,v} = log(ρ0² + κ² (u²/H² + v²/W²)) for the kept block (K_h·K_w values, row-major), so that
 * log λ_{k,u,v} = a_k + log(s²κ²) − (β_k/2) L_{u,v}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logFrequencyTerm } from "./closed_form.ts";
 * // At DC (u = v = 0) only ρ0 remains: L = log ρ0².
 * const L = logFrequencyTerm(latentLayout([1, 3, 4, 4]), { rho0: 1 / 64, refSize: 0 });
 * assert.equal(L.length, 16);
 * assert.ok(Math.abs(L[0] - 2 * Math.log(1 / 64)) < 1e-12);
 * assert.ok(Math.abs(L[1] - Math.log(1 / 64 ** 2 + 1 / 16)) < 1e-12); // v = 1: ρ² = 1/W²
 * ```
 */
export function logFrequencyTerm(l: LatentLayout, c: SpectrumConstants): Float64Array {
  const k2 = sizeFactor(l, c) ** 2;
  const out = new Float64Array(l.keepH * l.keepW);
  for (let u = 0; u < l.keepH; u++) {
    for (let v = 0; v < l.keepW; v++) {
      const rho2 = (u * u) / (l.height * l.height) + (v * v) / (l.width * l.width);
      out[u * l.keepW + v] = Math.log(c.rho0 * c.rho0 + k2 * rho2);
    }
  }
  return out;
}

/**
 * The constant log(s²κ²) added to every log λ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logVarianceOffset } from "./closed_form.ts";
 * const l = latentLayout([1, 3, 128, 128], null, 0.5);
 * // log(s²κ²) with κ = 128/64 = 2: log(0.25 · 4) = 0.
 * assert.ok(Math.abs(logVarianceOffset(l, { rho0: 1 / 64, refSize: 64 })) < 1e-15);
 * ```
 */
export function logVarianceOffset(l: LatentLayout, c: SpectrumConstants): number {
  return Math.log(l.scale * l.scale * sizeFactor(l, c) ** 2);
}

/**
 * The weight √(HW)·s that maps m_k to the DC mean μ_{k,0,0}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dcWeight, latentLayout } from "./closed_form.ts";
 * assert.equal(dcWeight(latentLayout([1, 3, 4, 4], null, 0.5)), 2); // √(HW)·s
 * ```
 */
export function dcWeight(l: LatentLayout): number {
  return Math.sqrt(l.height * l.width) * l.scale;
}

/** Prior moments in the latent basis (3·K_h·K_w values each). */
export interface PriorMoments {
  /** Variances λ_i. */
  lambda: Float64Array;
  /** Means μ_i. */
  mu: Float64Array;
}

/**
 * λ and μ for θ (see the module comment).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, priorMoments } from "./closed_form.ts";
 * // a = β = 0 and no size scaling: λ = s² = 1 everywhere; μ_DC = m_k √(HW) s.
 * const l = latentLayout([1, 3, 4, 4]);
 * const theta = [0, 0, 0, 0, 0, 0, 0.5, 0, 0];
 * const { lambda, mu } = priorMoments(theta, l, { rho0: 1 / 64, refSize: 0 });
 * assert.ok(lambda.every((v) => Math.abs(v - 1) < 1e-12));
 * assert.equal(mu[0], 2);
 * assert.ok(mu.subarray(1).every((v) => v === 0));
 * ```
 */
export function priorMoments(
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
): PriorMoments {
  checkTheta(theta);
  const L = logFrequencyTerm(l, c);
  const off = logVarianceOffset(l, c);
  const n = l.keepH * l.keepW;
  const lambda = new Float64Array(3 * n), mu = new Float64Array(3 * n);
  for (let k = 0; k < 3; k++) {
    const a = theta[k], b = theta[3 + k];
    for (let i = 0; i < n; i++) lambda[k * n + i] = Math.exp(a + off - 0.5 * b * L[i]);
    mu[k * n] = theta[6 + k] * dcWeight(l);
  }
  return { lambda, mu };
}

/**
 * Check that θ has its 9 values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTheta } from "./spectra.ts";
 * assert.throws(() => checkTheta([1, 2]), RangeError);
 * ```
 */
export function checkTheta(theta: ArrayLike<number>): void {
  if (theta.length !== THETA_SIZE) throw new RangeError(`θ has ${theta.length} values, expected 9`);
}

/** The affine read-out θ = W · mean_tokens(c) + b (W is 9×D row-major). */
export interface Readout {
  /** Embedding width D. */
  hiddenSize: number;
  /** W, 9×D row-major. */
  W: ArrayLike<number>;
  /** b, 9 values. */
  b: ArrayLike<number>;
}

/**
 * θ(c) = W · (1/T) Σ_t c_t + b for an embedding c of T×D values (row-major [T, D]).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { thetaFromEmbedding } from "./closed_form.ts";
 * // W = I (D = 9), b = 1: θ = mean of the two token rows + 1.
 * const W = Float64Array.from({ length: 81 }, (_, i) => (i % 10 === 0 ? 1 : 0));
 * const r = { hiddenSize: 9, W, b: new Array(9).fill(1) };
 * const c = [...new Array(9).fill(2), ...new Array(9).fill(4)];
 * assert.deepEqual([...thetaFromEmbedding(c, r)], new Array(9).fill(4));
 * ```
 */
export function thetaFromEmbedding(c: ArrayLike<number>, r: Readout): Float64Array {
  const D = r.hiddenSize;
  if (c.length === 0 || c.length % D !== 0) {
    throw new RangeError(`embedding has ${c.length} values, not a multiple of D = ${D}`);
  }
  const T = c.length / D;
  const mean = new Float64Array(D);
  for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) mean[d] += c[t * D + d];
  for (let d = 0; d < D; d++) mean[d] /= T;
  const theta = new Float64Array(THETA_SIZE);
  for (let j = 0; j < THETA_SIZE; j++) {
    let s = r.b[j];
    for (let d = 0; d < D; d++) s += r.W[j * D + d] * mean[d];
    theta[j] = s;
  }
  return theta;
}

/**
 * ∂/∂c of a function of θ(c): every token row gets Wᵀ g / T (g = ∂f/∂θ). Returns T×D values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { embeddingGradient } from "./closed_form.ts";
 * // W = I: each of the T = 2 rows gets g/2.
 * const W = Float64Array.from({ length: 81 }, (_, i) => (i % 10 === 0 ? 1 : 0));
 * const g = [2, 0, 0, 0, 0, 0, 0, 0, -4];
 * const dc = embeddingGradient(g, 2, { hiddenSize: 9, W, b: new Array(9).fill(0) });
 * assert.deepEqual([...dc], [...g.map((v) => v / 2), ...g.map((v) => v / 2)]);
 * ```
 */
export function embeddingGradient(gTheta: ArrayLike<number>, T: number, r: Readout): Float64Array {
  checkTheta(gTheta);
  const D = r.hiddenSize;
  const row = new Float64Array(D);
  for (let d = 0; d < D; d++) {
    let s = 0;
    for (let j = 0; j < THETA_SIZE; j++) s += r.W[j * D + d] * gTheta[j];
    row[d] = s / T;
  }
  const out = new Float64Array(T * D);
  for (let t = 0; t < T; t++) out.set(row, t * D);
  return out;
}

/**
 * An embedding with θ(c) = θ: every token row equals W⁺(θ − b) (minimum-norm, W⁺ = Wᵀ(WWᵀ)⁻¹).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { embeddingForTheta, thetaFromEmbedding } from "./closed_form.ts";
 * import { DEFAULT_THETA, makeReadout } from "./params.ts";
 * const r = makeReadout(DEFAULT_THETA);
 * const theta = [-4, -7, -6, 2.5, 2, 2, 0.1, 0, 0];
 * const back = thetaFromEmbedding(embeddingForTheta(theta, 77, r), r);
 * assert.ok(back.every((v, i) => Math.abs(v - theta[i]) < 1e-9));
 * ```
 */
export function embeddingForTheta(theta: ArrayLike<number>, T: number, r: Readout): Float64Array {
  checkTheta(theta);
  const D = r.hiddenSize;
  const G = new Float64Array(81); // W Wᵀ
  for (let i = 0; i < 9; i++) {
    for (let j = 0; j < 9; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += r.W[i * D + d] * r.W[j * D + d];
      G[i * 9 + j] = s;
    }
  }
  const rhs = Float64Array.from({ length: 9 }, (_, j) => theta[j] - r.b[j]);
  const y = solveDense(G, rhs, 9);
  const row = new Float64Array(D);
  for (let d = 0; d < D; d++) {
    let s = 0;
    for (let j = 0; j < 9; j++) s += r.W[j * D + d] * y[j];
    row[d] = s;
  }
  const out = new Float64Array(T * D);
  for (let t = 0; t < T; t++) out.set(row, t * D);
  return out;
}
