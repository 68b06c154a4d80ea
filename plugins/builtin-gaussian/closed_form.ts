/**
 * Closed forms of the built-in exact model, all in float64 (see `exact-model.md`).
 *
 * Latent basis. A model-scale image x′ ∈ [−1,1]^{3×H×W} is encoded as
 *   z = E(x′) = s · P · DCT2(C x′),
 * C the orthonormal colour matrix (rows (1,1,1)/√3, (1,−1,0)/√2, (1,1,−2)/√6), DCT2 the orthonormal
 * 2-D DCT-II of each channel over the whole image (Φ_H X Φ_Wᵀ), P the identity (lossless) or the
 * restriction to the low-frequency K_h×K_w block (lossy; D∘E is then an orthogonal projection).
 * D(z) = Cᵀ IDCT2(Pᵀ z / s).
 *
 * Prior (diagonal in that basis). For channel k and frequency (u,v):
 *   λ_{k,u,v} = s² κ² e^{a_k} (ρ0² + κ² ρ²)^{−β_k/2},   ρ² = u²/H² + v²/W²,   κ = √(HW)/N_ref,
 *   μ_{k,0,0} = m_k √(HW) s, μ = 0 elsewhere.
 * DEVIATION (documented extension of exact-model.md §2): the κ factors make the default prior
 * sensible at every image size. They treat an H×W image as the same scene seen at a different
 * pixel count: frequencies are measured in cycles per reference image of N_ref = 64 pixels
 * (κρ = "scene frequency"), and coefficient variances grow with the pixel count (κ²), which is
 * exactly how the orthonormal DCT of a box-downsampled image scales (a 2× box downsampling keeps
 * the low-frequency coefficients up to a factor 2 = κ ratio). At √(HW) = N_ref (e.g. 64×64),
 * κ = 1 and the formula is the one of exact-model.md. `refSize = 0` switches the scaling off
 * (κ = 1 at every size).
 *
 * θ = (a_1,a_2,a_3, β_1,β_2,β_3, m_1,m_2,m_3) = W · mean_tokens(c) + b.
 *
 * Diffusion (scaled_linear, 1000 steps): z_t = √ᾱ z_0 + √(1−ᾱ) ε, so z_t ~ N(√ᾱ μ, ᾱλ + 1 − ᾱ).
 *
 * @module
 */
import type { ForwardOperator } from "../../core/contracts.ts";
import { dctMatrix } from "../../core/linalg/dct.ts";

/**
 * Number of training timesteps of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, NUM_TRAIN_TIMESTEPS } from "./closed_form.ts";
 * assert.equal(exactSchedule().alphasCumprod.length, NUM_TRAIN_TIMESTEPS);
 * ```
 */
export const NUM_TRAIN_TIMESTEPS = 1000;
/**
 * β_0 of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BETA_START, exactSchedule } from "./closed_form.ts";
 * assert.ok(Math.abs(exactSchedule().alphasCumprod[0] - (1 - BETA_START)) < 1e-15);
 * ```
 */
export const BETA_START = 0.00085;
/**
 * β_{T−1} of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BETA_END, exactSchedule } from "./closed_form.ts";
 * const ab = exactSchedule().alphasCumprod;
 * assert.ok(Math.abs(ab[999] / ab[998] - (1 - BETA_END)) < 1e-12);
 * ```
 */
export const BETA_END = 0.012;
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
/**
 * LATINO's 8-step timestep schedule (solvers.md §2.2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LATINO_TIMESTEPS, NUM_TRAIN_TIMESTEPS } from "./closed_form.ts";
 * assert.equal(LATINO_TIMESTEPS.length, 8);
 * assert.ok(LATINO_TIMESTEPS.every((t) => t >= 0 && t < NUM_TRAIN_TIMESTEPS));
 * ```
 */
export const LATINO_TIMESTEPS: readonly number[] = [999, 874, 749, 624, 499, 374, 249, 124];

/** The diffusion schedule in float64: ᾱ_t and 1 − ᾱ_t (the latter without cancellation). */
export interface ExactSchedule {
  /** ᾱ_t = Π_{s≤t} (1 − β_s), t = 0 … 999. */
  alphasCumprod: Float64Array;
  /** 1 − ᾱ_t computed as −expm1(Σ log(1 − β_s)). */
  oneMinusAlphasCumprod: Float64Array;
}

let scheduleCache: ExactSchedule | undefined;

/**
 * The scaled_linear schedule: β_t = (√β_0 + (√β_end − √β_0)·t/(T−1))², ᾱ_t = Π_{s≤t}(1 − β_s).
 *
 * @example
 * ```ts
 * import { exactSchedule } from "./closed_form.ts";
 * const { alphasCumprod } = exactSchedule();
 * console.assert(Math.abs(alphasCumprod[999] - 0.0046601) < 1e-6);
 * ```
 */
export function exactSchedule(): ExactSchedule {
  if (scheduleCache) return scheduleCache;
  const T = NUM_TRAIN_TIMESTEPS;
  const s0 = Math.sqrt(BETA_START), s1 = Math.sqrt(BETA_END);
  const abar = new Float64Array(T), om = new Float64Array(T);
  let logProd = 0;
  for (let t = 0; t < T; t++) {
    const r = s0 + (s1 - s0) * t / (T - 1);
    logProd += Math.log1p(-r * r);
    abar[t] = Math.exp(logProd);
    om[t] = -Math.expm1(logProd);
  }
  scheduleCache = { alphasCumprod: abar, oneMinusAlphasCumprod: om };
  return scheduleCache;
}

/** Check an integer timestep in [0, 999]. */
function checkTimestep(t: number): void {
  if (!Number.isInteger(t) || t < 0 || t >= NUM_TRAIN_TIMESTEPS) {
    throw new RangeError(`timestep ${t}: expected an integer in [0, ${NUM_TRAIN_TIMESTEPS - 1}]`);
  }
}

/**
 * The orthonormal colour matrix C (3×3, row-major): luminance, red–green, yellow–blue.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COLOR_MATRIX } from "./closed_form.ts";
 * // Orthonormal rows: C Cᵀ = I.
 * for (let i = 0; i < 3; i++) {
 *   for (let j = 0; j < 3; j++) {
 *     let s = 0;
 *     for (let k = 0; k < 3; k++) s += COLOR_MATRIX[i * 3 + k] * COLOR_MATRIX[j * 3 + k];
 *     assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-15);
 *   }
 * }
 * ```
 */
export const COLOR_MATRIX: Float64Array = Float64Array.from([
  1 / Math.sqrt(3),
  1 / Math.sqrt(3),
  1 / Math.sqrt(3),
  1 / Math.sqrt(2),
  -1 / Math.sqrt(2),
  0,
  1 / Math.sqrt(6),
  1 / Math.sqrt(6),
  -2 / Math.sqrt(6),
]);

/** Sizes of the latent: image H×W, kept block K_h×K_w, scaling s. */
export interface LatentLayout {
  /** Image height H. */
  height: number;
  /** Image width W. */
  width: number;
  /** Kept rows of DCT frequencies K_h (H when lossless). */
  keepH: number;
  /** Kept columns of DCT frequencies K_w (W when lossless). */
  keepW: number;
  /** Latent scaling factor s (the VAE `scaling_factor`). */
  scale: number;
}

/**
 * The layout for an image of shape [1,3,H,W] (or [3,H,W], or [H,W]).
 *
 * @param lossy undefined/null: lossless; [K_h, K_w]: keep that low-frequency block; a number f in
 *   (0,1]: keep K_h = ⌈f·H⌉, K_w = ⌈f·W⌉ (a per-axis fraction).
 * @param scale the latent scaling factor s (default 1)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout } from "./closed_form.ts";
 * assert.deepEqual(latentLayout([1, 3, 8, 6]), { height: 8, width: 6, keepH: 8, keepW: 6, scale: 1 });
 * const lossy = latentLayout([1, 3, 8, 6], 0.5, 0.18215);
 * assert.deepEqual([lossy.keepH, lossy.keepW], [4, 3]);
 * assert.throws(() => latentLayout([1, 1, 8, 8]), RangeError);
 * ```
 */
export function latentLayout(
  imageShape: readonly number[],
  lossy?: readonly [number, number] | number | null,
  scale = 1,
): LatentLayout {
  const H = imageShape[imageShape.length - 2], W = imageShape[imageShape.length - 1];
  if (!(Number.isInteger(H) && Number.isInteger(W) && H >= 1 && W >= 1)) {
    throw new RangeError(`image shape [${imageShape}]: expected [1,3,H,W]`);
  }
  if (imageShape.length === 4 && (imageShape[0] !== 1 || imageShape[1] !== 3)) {
    throw new RangeError(`image shape [${imageShape}]: expected [1,3,H,W]`);
  }
  let kh = H, kw = W;
  if (typeof lossy === "number") {
    if (!(lossy > 0 && lossy <= 1)) throw new RangeError(`lossy fraction ${lossy}: expected (0,1]`);
    kh = Math.ceil(lossy * H);
    kw = Math.ceil(lossy * W);
  } else if (lossy) {
    [kh, kw] = lossy;
    if (
      !(Number.isInteger(kh) && Number.isInteger(kw) && kh >= 1 && kw >= 1 && kh <= H && kw <= W)
    ) {
      throw new RangeError(`lossy block [${lossy}]: expected integers in [1,${H}]×[1,${W}]`);
    }
  }
  if (!(scale > 0 && Number.isFinite(scale))) throw new RangeError(`scale ${scale}: expected > 0`);
  return { height: H, width: W, keepH: kh, keepW: kw, scale };
}

/**
 * Number of latent coordinates 3·K_h·K_w.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, latentSize } from "./closed_form.ts";
 * assert.equal(latentSize(latentLayout([1, 3, 8, 8], [2, 4])), 24);
 * ```
 */
export function latentSize(l: LatentLayout): number {
  return 3 * l.keepH * l.keepW;
}

/** Y = A · X with A (m×k), X (k×n), row-major. */
function matmul(
  a: Float64Array,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      if (aip === 0) continue;
      const bo = p * n, oo = i * n;
      for (let j = 0; j < n; j++) out[oo + j] += aip * b[bo + j];
    }
  }
  return out;
}

/** Y = X · Aᵀ with X (m×k), A (n×k), row-major. */
function matmulT(
  x: ArrayLike<number>,
  a: Float64Array,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += x[i * k + p] * a[j * k + p];
      out[i * n + j] = s;
    }
  }
  return out;
}

/** Y = Aᵀ · X with A (k×m), X (k×n). */
function matmulTA(
  a: Float64Array,
  x: ArrayLike<number>,
  k: number,
  m: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let p = 0; p < k; p++) {
    for (let i = 0; i < m; i++) {
      const api = a[p * m + i];
      if (api === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += api * x[p * n + j];
    }
  }
  return out;
}

const dctCache = new Map<number, Float64Array>();
function dct(n: number): Float64Array {
  let m = dctCache.get(n);
  if (!m) dctCache.set(n, m = dctMatrix(n));
  return m;
}

/** Mix colour channels: out_k = Σ_c M[k][c] x_c (M row-major 3×3), or with Mᵀ when `transpose`. */
function mixColour(x: ArrayLike<number>, n: number, transpose: boolean): Float64Array {
  const out = new Float64Array(3 * n);
  for (let k = 0; k < 3; k++) {
    for (let c = 0; c < 3; c++) {
      const w = transpose ? COLOR_MATRIX[c * 3 + k] : COLOR_MATRIX[k * 3 + c];
      for (let i = 0; i < n; i++) out[k * n + i] += w * x[c * n + i];
    }
  }
  return out;
}

/**
 * The encoder in float64: z = s · P · DCT2(C x′) for a model-scale image x′ of 3·H·W values
 * (channel-major); returns 3·K_h·K_w values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encode64, latentLayout } from "./closed_form.ts";
 * // A constant image x′ = 1 only has a DC luminance coefficient: (1,1,1)/√3 · 1 · √(HW) = √3 · 4.
 * const l = latentLayout([1, 3, 4, 4]);
 * const z = encode64(new Float64Array(48).fill(1), l);
 * assert.ok(Math.abs(z[0] - 4 * Math.sqrt(3)) < 1e-12);
 * assert.ok(z.subarray(1).every((v) => Math.abs(v) < 1e-12));
 * ```
 */
export function encode64(x: ArrayLike<number>, l: LatentLayout): Float64Array {
  const { height: H, width: W, keepH: kh, keepW: kw, scale: s } = l;
  if (x.length !== 3 * H * W) {
    throw new RangeError(`encode64: ${x.length} values, expected ${3 * H * W}`);
  }
  const y = mixColour(x, H * W, false);
  const ph = dct(H).subarray(0, kh * H), pw = dct(W).subarray(0, kw * W);
  const out = new Float64Array(3 * kh * kw);
  for (let k = 0; k < 3; k++) {
    const t = matmul(ph, y.subarray(k * H * W, (k + 1) * H * W), kh, H, W); // Φ_H[:K] X
    const z = matmulT(t, pw, kh, W, kw); // · Φ_W[:K]ᵀ
    for (let i = 0; i < kh * kw; i++) out[k * kh * kw + i] = s * z[i];
  }
  return out;
}

/**
 * The decoder in float64: x′ = Cᵀ IDCT2(Pᵀ z / s); returns 3·H·W values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decode64, encode64, latentLayout } from "./closed_form.ts";
 * // Lossless layout: decode64 inverts encode64 (for any scale s).
 * const l = latentLayout([1, 3, 4, 2], null, 0.5);
 * const x = Float64Array.from({ length: 24 }, (_, i) => Math.sin(i));
 * const back = decode64(encode64(x, l), l);
 * assert.ok(back.every((v, i) => Math.abs(v - x[i]) < 1e-12));
 * ```
 */
export function decode64(z: ArrayLike<number>, l: LatentLayout): Float64Array {
  const { height: H, width: W, keepH: kh, keepW: kw, scale: s } = l;
  if (z.length !== 3 * kh * kw) {
    throw new RangeError(`decode64: ${z.length} values, expected ${3 * kh * kw}`);
  }
  const zz = z instanceof Float64Array ? z : Float64Array.from(z);
  const ph = dct(H).subarray(0, kh * H), pw = dct(W).subarray(0, kw * W);
  const img = new Float64Array(3 * H * W);
  for (let k = 0; k < 3; k++) {
    const t = matmulTA(ph, zz.subarray(k * kh * kw, (k + 1) * kh * kw), kh, H, kw); // Φ_Hᵀ Z
    const x = matmul(t, pw, H, kw, W); // · Φ_W[:K]
    for (let i = 0; i < H * W; i++) img[k * H * W + i] = x[i] / s;
  }
  return mixColour(img, H * W, true);
}

/**
 * Dᵀ: the adjoint of {@link decode64} (= encode64(x)/s²).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decode64, decodeAdjoint64, latentLayout } from "./closed_form.ts";
 * // ⟨D z, x⟩ = ⟨z, Dᵀ x⟩, also for a lossy layout.
 * const l = latentLayout([1, 3, 4, 4], [2, 3], 0.5);
 * const z = Float64Array.from({ length: 18 }, (_, i) => Math.cos(i));
 * const x = Float64Array.from({ length: 48 }, (_, i) => Math.sin(i));
 * const lhs = decode64(z, l).reduce((s, v, i) => s + v * x[i], 0);
 * const rhs = decodeAdjoint64(x, l).reduce((s, v, i) => s + v * z[i], 0);
 * assert.ok(Math.abs(lhs - rhs) < 1e-12);
 * ```
 */
export function decodeAdjoint64(x: ArrayLike<number>, l: LatentLayout): Float64Array {
  const z = encode64(x, l);
  const f = 1 / (l.scale * l.scale);
  for (let i = 0; i < z.length; i++) z[i] *= f;
  return z;
}

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

function checkTheta(theta: ArrayLike<number>): void {
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

/**
 * Solve A x = b (n×n, row-major) by Gaussian elimination with partial pivoting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solveDense } from "./closed_form.ts";
 * const x = solveDense([0, 1, 2, 1], [1, 4], 2); // needs a row swap
 * assert.deepEqual([...x], [1.5, 1]);
 * assert.throws(() => solveDense([1, 2, 2, 4], [1, 1], 2), RangeError);
 * ```
 */
export function solveDense(A: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const M = Float64Array.from(A as ArrayLike<number>);
  const x = Float64Array.from(b as ArrayLike<number>);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(M[r * n + col]) > Math.abs(M[piv * n + col])) piv = r;
    }
    if (M[piv * n + col] === 0) throw new RangeError("solveDense: singular matrix");
    if (piv !== col) {
      for (let c = 0; c < n; c++) {
        [M[col * n + c], M[piv * n + c]] = [M[piv * n + c], M[col * n + c]];
      }
      [x[col], x[piv]] = [x[piv], x[col]];
    }
    for (let r = col + 1; r < n; r++) {
      const f = M[r * n + col] / M[col * n + col];
      if (f === 0) continue;
      for (let c = col; c < n; c++) M[r * n + c] -= f * M[col * n + c];
      x[r] -= f * x[col];
    }
  }
  for (let r = n - 1; r >= 0; r--) {
    let s = x[r];
    for (let c = r + 1; c < n; c++) s -= M[r * n + c] * x[c];
    x[r] = s / M[r * n + r];
  }
  return x;
}

/** Tweedie outputs at one timestep. */
export interface TweedieResult {
  /** ẑ0 = E[z0 | z_t]. */
  z0: Float64Array;
  /** ε̂ = E[ε | z_t] (what the ε-prediction UNet returns). */
  eps: Float64Array;
}

/**
 * The exact Tweedie denoiser at integer timestep t:
 *   ẑ0 = μ + (√ᾱ λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ),
 *   ε̂ = (z_t − √ᾱ ẑ0)/√(1−ᾱ) = √(1−ᾱ) (z_t − √ᾱ μ)/(ᾱλ + 1 − ᾱ)   (cancellation-free form).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, tweedie } from "./closed_form.ts";
 * // Standard normal prior (λ = 1, μ = 0): ẑ0 = √ᾱ z_t and ε̂ = √(1−ᾱ) z_t.
 * const m = { lambda: Float64Array.of(1, 1), mu: Float64Array.of(0, 0) };
 * const { z0, eps } = tweedie([1, -2], 500, m);
 * const ab = exactSchedule().alphasCumprod[500];
 * assert.ok(Math.abs(z0[1] - -2 * Math.sqrt(ab)) < 1e-12);
 * assert.ok(Math.abs(eps[0] - Math.sqrt(1 - ab)) < 1e-12);
 * ```
 */
export function tweedie(zt: ArrayLike<number>, t: number, m: PriorMoments): TweedieResult {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t],
    om = oneMinusAlphasCumprod[t],
    sab = Math.sqrt(ab),
    som = Math.sqrt(om);
  const n = zt.length;
  const z0 = new Float64Array(n), eps = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = zt[i] - sab * m.mu[i];
    const den = ab * m.lambda[i] + om;
    z0[i] = m.mu[i] + (sab * m.lambda[i] / den) * d;
    eps[i] = (som / den) * d;
  }
  return { z0, eps };
}

/**
 * The exact consistency map (probability-flow ODE solved to ᾱ = 1):
 *   G(z_t, t) = μ + √(λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { consistencyMap, exactSchedule } from "./closed_form.ts";
 * // λ = 4, μ = 1: G(z_t) = μ + √(λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ).
 * const m = { lambda: Float64Array.of(4), mu: Float64Array.of(1) };
 * const ab = exactSchedule().alphasCumprod[999];
 * const g = consistencyMap([0.3], 999, m);
 * assert.ok(Math.abs(g[0] - (1 + Math.sqrt(4 / (4 * ab + 1 - ab)) * (0.3 - Math.sqrt(ab)))) < 1e-12);
 * ```
 */
export function consistencyMap(zt: ArrayLike<number>, t: number, m: PriorMoments): Float64Array {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t], om = oneMinusAlphasCumprod[t], sab = Math.sqrt(ab);
  const out = new Float64Array(zt.length);
  for (let i = 0; i < zt.length; i++) {
    const k = Math.sqrt(m.lambda[i] / (ab * m.lambda[i] + om));
    out[i] = m.mu[i] + k * (zt[i] - sab * m.mu[i]);
  }
  return out;
}

/** What a UNet-like map returns: ε̂ (ε-prediction), ẑ0 (Tweedie) or G (consistency). */
export type DenoiserOutput = "eps" | "z0" | "G";

/** Vector–Jacobian product of a denoiser output. */
export interface DenoiserVjp {
  /** ∂⟨w, f⟩/∂z_t (the map is diagonal in z_t). */
  dz: Float64Array;
  /** ∂⟨w, f⟩/∂θ (9 values); chain with {@link embeddingGradient} for ∂/∂c. */
  dtheta: Float64Array;
}

/**
 * Closed-form VJP of ε̂, ẑ0 or G at integer t for prior θ, cotangent w (the exact gradients the
 * ONNX VJP of the UNets must reproduce). With d = z_t − √ᾱμ, den = ᾱλ + 1 − ᾱ, η = log λ:
 * - G = μ + k d, k = √(λ/den): ∂G/∂z = k, ∂G/∂η = ½ k (1−ᾱ)/den · d, ∂G/∂μ = 1 − √ᾱ k;
 * - ẑ0 = μ + g d, g = √ᾱλ/den: ∂/∂z = g, ∂/∂η = g (1−ᾱ)/den · d, ∂/∂μ = 1 − √ᾱ g;
 * - ε̂ = √(1−ᾱ) d/den: ∂/∂z = √(1−ᾱ)/den, ∂/∂η = −√(1−ᾱ) ᾱλ d/den², ∂/∂μ = −√ᾱ √(1−ᾱ)/den;
 * then ∂η/∂a_k = 1, ∂η/∂β_k = −L/2, ∂μ_DC/∂m_k = √(HW)s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { consistencyMap, denoiserVjp, latentLayout, priorMoments } from "./closed_form.ts";
 * // ∂⟨w, G⟩/∂β_1 against a central finite difference.
 * const l = latentLayout([1, 3, 2, 2]), c = { rho0: 1 / 64, refSize: 0 };
 * const theta = [0.1, -0.2, 0.3, 1, 1.5, 2, 0.2, 0, -0.1];
 * const zt = Float64Array.from({ length: 12 }, (_, i) => Math.sin(i + 1));
 * const w = Float64Array.from({ length: 12 }, (_, i) => Math.cos(i));
 * const f = (th: number[]) =>
 *   consistencyMap(zt, 500, priorMoments(th, l, c)).reduce((s, v, i) => s + v * w[i], 0);
 * const h = 1e-6, up = [...theta], dn = [...theta];
 * up[3] += h;
 * dn[3] -= h;
 * const { dtheta } = denoiserVjp("G", zt, 500, theta, l, c, w);
 * assert.ok(Math.abs(dtheta[3] - (f(up) - f(dn)) / (2 * h)) < 1e-6);
 * ```
 */
export function denoiserVjp(
  output: DenoiserOutput,
  zt: ArrayLike<number>,
  t: number,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
  w: ArrayLike<number>,
): DenoiserVjp {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t],
    om = oneMinusAlphasCumprod[t],
    sab = Math.sqrt(ab),
    som = Math.sqrt(om);
  const m = priorMoments(theta, l, c);
  const L = logFrequencyTerm(l, c), dc = dcWeight(l);
  const n = l.keepH * l.keepW;
  const dz = new Float64Array(3 * n), dtheta = new Float64Array(THETA_SIZE);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < n; j++) {
      const i = k * n + j, lam = m.lambda[i], den = ab * lam + om;
      const d = zt[i] - sab * m.mu[i];
      let fz: number, fEta: number, fMu: number;
      if (output === "G") {
        const kk = Math.sqrt(lam / den);
        [fz, fEta, fMu] = [kk, 0.5 * kk * (om / den) * d, 1 - sab * kk];
      } else if (output === "z0") {
        const g = (sab * lam) / den;
        [fz, fEta, fMu] = [g, g * (om / den) * d, 1 - sab * g];
      } else {
        [fz, fEta, fMu] = [som / den, (-som * ab * lam * d) / (den * den), (-sab * som) / den];
      }
      dz[i] = w[i] * fz;
      dtheta[k] += w[i] * fEta;
      dtheta[3 + k] += -0.5 * L[j] * w[i] * fEta;
      if (j === 0) dtheta[6 + k] += w[i] * fMu * dc;
    }
  }
  return { dz, dtheta };
}

/**
 * ∇_θ log p(z | θ) of the Gaussian prior at a latent z (the Fisher-identity / SAPG estimator on a
 * sample): ∂/∂η_i = ½((z_i − μ_i)²/λ_i − 1), ∂/∂μ_i = (z_i − μ_i)/λ_i, chained as in
 * {@link logEvidence}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, priorScoreTheta } from "./closed_form.ts";
 * // θ = 0 on a 1×1 image: λ = 1, μ = 0. ∂/∂a_k = ½(z_k² − 1), ∂/∂m_k = z_k · √(HW)s.
 * const g = priorScoreTheta([2, 0, 0], new Array(9).fill(0), latentLayout([1, 3, 1, 1]), {
 *   rho0: 1 / 64,
 *   refSize: 0,
 * });
 * assert.deepEqual([g[0], g[1], g[6]], [1.5, -0.5, 2]);
 * ```
 */
export function priorScoreTheta(
  z: ArrayLike<number>,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
): Float64Array {
  const m = priorMoments(theta, l, c);
  const variance = new Float64Array(z.length);
  return expectedPriorScoreTheta({ mean: Float64Array.from(z), variance }, theta, l, c, m);
}

/**
 * E_q[∇_θ log p(z | θ)] for z ~ q = N(mean, diag(variance)) (e.g. the exact posterior): by the
 * Fisher identity this equals ∇_θ log p(y | θ) when q is the posterior under θ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   expectedPriorScoreTheta,
 *   latentLayout,
 *   logEvidence,
 *   posteriorDiagonal,
 *   priorMoments,
 * } from "./closed_form.ts";
 * // Fisher identity: the prior score averaged over the posterior is the evidence gradient.
 * const l = latentLayout([1, 3, 2, 2]), c = { rho0: 1 / 64, refSize: 0 };
 * const theta = [0.1, -0.2, 0.3, 1, 1.5, 2, 0.2, 0, -0.1];
 * const p = {
 *   yhat: Float64Array.from({ length: 12 }, (_, i) => Math.sin(i)),
 *   h: Float64Array.of(1, 0.5, 0.5, 0.25),
 *   sigmaY: 0.1,
 *   layout: l,
 * };
 * const q = posteriorDiagonal(p, priorMoments(theta, l, c));
 * const a = expectedPriorScoreTheta(q, theta, l, c), b = logEvidence(theta, p, c).gradient;
 * assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-10));
 * ```
 */
export function expectedPriorScoreTheta(
  q: PosteriorMoments,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
  moments?: PriorMoments,
): Float64Array {
  const m = moments ?? priorMoments(theta, l, c);
  const L = logFrequencyTerm(l, c), dc = dcWeight(l);
  const n = l.keepH * l.keepW;
  const g = new Float64Array(THETA_SIZE);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < n; j++) {
      const i = k * n + j, r = q.mean[i] - m.mu[i];
      const dEta = 0.5 * ((r * r + q.variance[i]) / m.lambda[i] - 1);
      g[k] += dEta;
      g[3 + k] += -0.5 * L[j] * dEta;
      if (j === 0) g[6 + k] += (r / m.lambda[i]) * dc;
    }
  }
  return g;
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

// ---------------------------------------------------------------------------------------------
// Diagonal operators: A = Dᵀ-basis diagonal, y′ = 2y − A(1) = A x′ + 2n.

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

/** The frequency constants and layout a θ-function needs. */
interface ThetaContext {
  problem: DiagonalProblem;
  L: Float64Array;
  off: number;
  dc: number;
}

function thetaContext(p: DiagonalProblem, c: SpectrumConstants): ThetaContext {
  return {
    problem: p,
    L: logFrequencyTerm(p.layout, c),
    off: logVarianceOffset(p.layout, c),
    dc: dcWeight(p.layout),
  };
}

/** Evidence value, gradient and Hessian in θ. */
export interface EvidenceDerivatives {
  /** log p(ŷ | θ). */
  value: number;
  /** ∇_θ log p(ŷ | θ) (9 values). */
  gradient: Float64Array;
  /** ∇²_θ log p(ŷ | θ) (9×9 row-major). */
  hessian: Float64Array;
}

/**
 * The exact log-evidence of a diagonal problem and its first two derivatives in θ:
 *   ŷ_i ~ N(h_i μ_i, S_i),  S_i = h_i² λ_i + σ_z²,
 *   log p(ŷ|θ) = −½ Σ_i [log(2π S_i) + r_i²/S_i],  r_i = ŷ_i − h_i μ_i.
 * With η_i = log λ_i and q_i = h_i²λ_i/S_i: ∂ℓ/∂η = ½ q (r²/S − 1),
 * ∂²ℓ/∂η² = ½ q(1−q)(r²/S − 1) − ½ q² r²/S, ∂ℓ/∂μ = h r/S, ∂²ℓ/∂μ² = −h²/S,
 * ∂²ℓ/∂μ∂η = −h r q/S; ∂η/∂a_k = 1, ∂η/∂β_k = −L/2, ∂μ_DC/∂m_k = √(HW)s.
 * This is the density of the latent measurement ŷ (model scale); the density of y on [0,1]
 * differs by the θ-independent constant n·log 2 (and, when lossy, by the θ-independent density
 * of the discarded coefficients). Several problems (e.g. images) add up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logEvidence } from "./closed_form.ts";
 * // θ = 0 on a 1×1 image (λ = 1, μ = 0), h = 1, σ_z = 1: ŷ_i ~ N(0, S = 2).
 * const p = { yhat: Float64Array.of(1, 0, 0), h: Float64Array.of(1), sigmaY: 0.5, layout: latentLayout([1, 3, 1, 1]) };
 * const { value, gradient } = logEvidence(new Array(9).fill(0), p, { rho0: 1 / 64, refSize: 0 });
 * assert.ok(Math.abs(value - (-1.5 * Math.log(4 * Math.PI) - 0.25)) < 1e-12);
 * // ∂ℓ/∂a_k = ½ q (r²/S − 1) with q = ½.
 * assert.ok(Math.abs(gradient[0] - -0.125) < 1e-12 && Math.abs(gradient[1] - -0.25) < 1e-12);
 * ```
 */
export function logEvidence(
  theta: ArrayLike<number>,
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
): EvidenceDerivatives {
  checkTheta(theta);
  const list = Array.isArray(problems) ? problems : [problems as DiagonalProblem];
  const g = new Float64Array(9), H = new Float64Array(81);
  let value = 0;
  for (const p of list) {
    const ctx = thetaContext(p, c);
    value += accumulateEvidence(theta, ctx, g, H);
  }
  return { value, gradient: g, hessian: H };
}

function accumulateEvidence(
  theta: ArrayLike<number>,
  ctx: ThetaContext,
  g: Float64Array,
  H: Float64Array,
): number {
  const p = ctx.problem, n = p.h.length, s2 = latentNoiseStd(p) ** 2;
  let value = 0;
  const LOG2PI = Math.log(2 * Math.PI);
  for (let k = 0; k < 3; k++) {
    const a = theta[k], b = theta[3 + k], mk = theta[6 + k];
    let ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
    for (let j = 0; j < n; j++) {
      const i = k * n + j, h = p.h[j], L = ctx.L[j];
      const lam = Math.exp(a + ctx.off - 0.5 * b * L);
      const mu = j === 0 ? mk * ctx.dc : 0;
      const S = h * h * lam + s2;
      const r = p.yhat[i] - h * mu;
      const rs = (r * r) / S;
      value -= 0.5 * (LOG2PI + Math.log(S) + rs);
      const q = (h * h * lam) / S;
      const dEta = 0.5 * q * (rs - 1);
      const d2Eta = 0.5 * q * (1 - q) * (rs - 1) - 0.5 * q * q * rs;
      ga += dEta;
      gb += -0.5 * L * dEta;
      haa += d2Eta;
      hab += -0.5 * L * d2Eta;
      hbb += 0.25 * L * L * d2Eta;
      if (j === 0) {
        const dMu = (h * r) / S, d2Mu = -(h * h) / S, dMuEta = -(h * r * q) / S;
        const ia = k, ib = 3 + k, im = 6 + k;
        g[im] += dMu * ctx.dc;
        H[im * 9 + im] += d2Mu * ctx.dc * ctx.dc;
        H[im * 9 + ia] += dMuEta * ctx.dc;
        H[ia * 9 + im] += dMuEta * ctx.dc;
        H[im * 9 + ib] += -0.5 * L * dMuEta * ctx.dc;
        H[ib * 9 + im] += -0.5 * L * dMuEta * ctx.dc;
      }
    }
    const ia = k, ib = 3 + k;
    g[ia] += ga;
    g[ib] += gb;
    H[ia * 9 + ia] += haa;
    H[ia * 9 + ib] += hab;
    H[ib * 9 + ia] += hab;
    H[ib * 9 + ib] += hbb;
  }
  return value;
}

/**
 * The fraction of the achievable evidence gain reached by θ_final (exact-model.md §5):
 * (log p(y|θ_final) − log p(y|θ0)) / (log p(y|θ*) − log p(y|θ0)), θ* by {@link maximiseEvidence}
 * from θ0 unless given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evidenceGainFraction, latentLayout, maximiseEvidence } from "./closed_form.ts";
 * const c = { rho0: 1 / 64, refSize: 0 };
 * const p = {
 *   yhat: Float64Array.from({ length: 48 }, (_, i) => 3 * Math.sin(1.7 * i)),
 *   h: new Float64Array(16).fill(1),
 *   sigmaY: 0.05,
 *   layout: latentLayout([1, 3, 4, 4]),
 * };
 * const theta0 = new Array(9).fill(0);
 * const best = maximiseEvidence(p, c, theta0).theta;
 * assert.ok(Math.abs(evidenceGainFraction(best, theta0, p, c) - 1) < 1e-9);
 * assert.equal(evidenceGainFraction(theta0, theta0, p, c, best), 0);
 * ```
 */
export function evidenceGainFraction(
  thetaFinal: ArrayLike<number>,
  theta0: ArrayLike<number>,
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
  thetaStar?: ArrayLike<number>,
): number {
  const l0 = logEvidence(theta0, problems, c).value;
  const lf = logEvidence(thetaFinal, problems, c).value;
  const ls = thetaStar
    ? logEvidence(thetaStar, problems, c).value
    : maximiseEvidence(problems, c, theta0).logEvidence;
  return (lf - l0) / (ls - l0);
}

/** Result of {@link maximiseEvidence}. */
export interface EvidenceMaximum {
  /** θ* (9 values). */
  theta: Float64Array;
  /** log p(ŷ | θ*). */
  logEvidence: number;
  /** ‖∇_θ log p(ŷ | θ*)‖. */
  gradientNorm: number;
  /** Newton iterations used. */
  iterations: number;
  /** True when the gradient norm fell below the tolerance. */
  converged: boolean;
}

/**
 * θ* = argmax_θ log p(ŷ | θ) by damped Newton (Levenberg-style shift of the Hessian until it is
 * negative definite, then backtracking on the evidence). Nine numbers, a few iterations.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logEvidence, maximiseEvidence } from "./closed_form.ts";
 * const c = { rho0: 1 / 64, refSize: 0 };
 * const p = {
 *   yhat: Float64Array.from({ length: 48 }, (_, i) => 3 * Math.sin(1.7 * i)),
 *   h: new Float64Array(16).fill(1),
 *   sigmaY: 0.05,
 *   layout: latentLayout([1, 3, 4, 4]),
 * };
 * const theta0 = new Array(9).fill(0);
 * const r = maximiseEvidence(p, c, theta0);
 * assert.ok(r.converged && r.gradientNorm < 1e-8);
 * assert.ok(r.logEvidence > logEvidence(theta0, p, c).value);
 * ```
 */
export function maximiseEvidence(
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
  theta0: ArrayLike<number>,
  options: { maxIter?: number; tol?: number } = {},
): EvidenceMaximum {
  const maxIter = options.maxIter ?? 200, tol = options.tol ?? 1e-8;
  let theta = Float64Array.from(theta0);
  let cur = logEvidence(theta, problems, c);
  let it = 0;
  let nu = 0;
  for (; it < maxIter; it++) {
    const gn = Math.hypot(...cur.gradient);
    if (gn < tol) break;
    // Solve (−H + νI) d = g with ν raised until −H + νI is positive definite.
    let d: Float64Array | null = null;
    for (let tries = 0; tries < 60 && !d; tries++) {
      const M = new Float64Array(81);
      for (let i = 0; i < 81; i++) M[i] = -cur.hessian[i];
      for (let i = 0; i < 9; i++) M[i * 9 + i] += nu;
      d = choleskySolve(M, cur.gradient, 9);
      if (!d) nu = Math.max(1e-8, nu * 10 || 1e-6 * maxAbsDiag(cur.hessian));
    }
    if (!d) break;
    let step = 1, accepted = false;
    for (let ls = 0; ls < 60; ls++) {
      const trial = theta.map((v, i) => v + step * d![i]);
      const next = logEvidence(trial, problems, c);
      if (Number.isFinite(next.value) && next.value >= cur.value) {
        theta = trial;
        cur = next;
        accepted = true;
        break;
      }
      step /= 2;
    }
    if (!accepted) break;
    nu = step === 1 ? nu / 10 : nu * 2;
    if (nu < 1e-12) nu = 0;
  }
  const gn = Math.hypot(...cur.gradient);
  return { theta, logEvidence: cur.value, gradientNorm: gn, iterations: it, converged: gn < tol };
}

function maxAbsDiag(H: Float64Array): number {
  let m = 0;
  for (let i = 0; i < 9; i++) m = Math.max(m, Math.abs(H[i * 9 + i]));
  return m || 1;
}

/**
 * Solve M x = b for symmetric M by Cholesky; null when M is not positive definite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { choleskySolve } from "./closed_form.ts";
 * const x = choleskySolve([4, 2, 2, 3], [2, 5], 2)!;
 * assert.ok(Math.abs(x[0] - -0.5) < 1e-15 && Math.abs(x[1] - 2) < 1e-15);
 * assert.equal(choleskySolve([1, 2, 2, 1], [1, 1], 2), null); // indefinite
 * ```
 */
export function choleskySolve(
  M: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
): Float64Array | null {
  const Lm = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = M[i * n + j];
      for (let k = 0; k < j; k++) s -= Lm[i * n + k] * Lm[j * n + k];
      if (i === j) {
        if (!(s > 0)) return null;
        Lm[i * n + i] = Math.sqrt(s);
      } else Lm[i * n + j] = s / Lm[j * n + j];
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= Lm[i * n + k] * y[k];
    y[i] = s / Lm[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= Lm[k * n + i] * x[k];
    x[i] = s / Lm[i * n + i];
  }
  return x;
}

/**
 * Maximum-likelihood θ of clean latents z (the evidence with A = I and σ_y = 0): the fit used for
 * the default prior. `latents[i]` belongs to `layouts[i]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fitTheta, latentLayout, priorMoments } from "./closed_form.ts";
 * import { streams } from "../../core/rng.ts";
 * // Fit θ to a latent drawn from the prior of a known θ.
 * const l = latentLayout([1, 3, 32, 32]), c = { rho0: 1 / 64, refSize: 0 };
 * const truth = [-2, -4, -4, 2, 2, 2, 0.3, 0, 0];
 * const { lambda, mu } = priorMoments(truth, l, c);
 * const rng = streams(0).get("init");
 * const z = mu.map((m, i) => m + Math.sqrt(lambda[i]) * rng.normal());
 * const fit = fitTheta([z], [l], c, new Array(9).fill(0));
 * assert.ok(fit.converged);
 * assert.ok(Math.abs(fit.theta[3] - truth[3]) < 0.3); // β_1 recovered
 * ```
 */
export function fitTheta(
  latents: readonly Float64Array[],
  layouts: readonly LatentLayout[],
  c: SpectrumConstants,
  theta0: ArrayLike<number>,
): EvidenceMaximum {
  const problems = latents.map((z, i): DiagonalProblem => ({
    yhat: z,
    h: new Float64Array(layouts[i].keepH * layouts[i].keepW).fill(1),
    sigmaY: 0,
    layout: layouts[i],
  }));
  return maximiseEvidence(problems, c, theta0);
}

/** Options of {@link latinoMoments}. */
export interface LatinoMomentOptions {
  /** Constant δ (γ_t = δ(1 − ᾱ_t)/σ′², σ′ = 2σ_y). */
  delta: number;
  /** Timesteps, default [999, 874, …, 124]. */
  timesteps?: readonly number[];
  /** The clean initial latent, default E(Aᵀy′) = h·ŷ. */
  init?: ArrayLike<number>;
}

/**
 * The exact output law of LATINO on this model (exact-model.md §6; constant δ, no clipping). The
 * state is the clean latent z (initially E(Aᵀy′), deterministic); each step noises it to t,
 * applies G_t and the prox, per coordinate:
 *   z′ = (γ h ŷ + G_t(√ᾱ z + √(1−ᾱ) ξ)) / (γh² + 1),   γ = δ(1 − ᾱ_t)/σ′²,
 * so with k = √(λ/(ᾱλ + 1 − ᾱ)):
 *   m′ = (γ h ŷ + μ + k√ᾱ (m − μ))/(γh² + 1),   v′ = k² (ᾱ v + 1 − ᾱ)/(γh² + 1)².
 * The prox is taken in image space with σ′ = 2σ_y (so γ does not depend on s). Returns the law of
 * the last step's output z0′.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, latentLayout, latinoMoments } from "./closed_form.ts";
 * // One step at t = 999 with h = 0 (no data) and a N(0, 1) prior: G_t is the identity on a
 * // variance-preserving state, so z′ = √ᾱ z + √(1−ᾱ) ξ.
 * const p = { yhat: new Float64Array(3), h: Float64Array.of(0), sigmaY: 0.1, layout: latentLayout([1, 3, 1, 1]) };
 * const m = { lambda: Float64Array.of(1, 1, 1), mu: new Float64Array(3) };
 * const q = latinoMoments(p, m, { delta: 1, timesteps: [999], init: [1, 2, 3] });
 * const ab = exactSchedule().alphasCumprod[999];
 * assert.ok(Math.abs(q.mean[2] - 3 * Math.sqrt(ab)) < 1e-12);
 * assert.ok(Math.abs(q.variance[0] - (1 - ab)) < 1e-12);
 * ```
 */
export function latinoMoments(
  p: DiagonalProblem,
  m: PriorMoments,
  options: LatinoMomentOptions,
): PosteriorMoments {
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const n = p.h.length, N = 3 * n;
  const sig2 = (2 * p.sigmaY) ** 2;
  const mean = new Float64Array(N), variance = new Float64Array(N);
  if (options.init) {
    if (options.init.length !== N) {
      throw new RangeError(`init has ${options.init.length} values, expected ${N}`);
    }
    for (let i = 0; i < N; i++) mean[i] = options.init[i];
  } else {
    for (let i = 0; i < N; i++) mean[i] = p.h[i % n] * p.yhat[i];
  }
  for (const t of options.timesteps ?? LATINO_TIMESTEPS) {
    checkTimestep(t);
    const ab = alphasCumprod[t], om = oneMinusAlphasCumprod[t], sab = Math.sqrt(ab);
    const gamma = (options.delta * om) / sig2;
    for (let i = 0; i < N; i++) {
      const h = p.h[i % n], lam = m.lambda[i], mu = m.mu[i];
      const k = Math.sqrt(lam / (ab * lam + om));
      const den = gamma * h * h + 1;
      mean[i] = (gamma * h * p.yhat[i] + mu + k * sab * (mean[i] - mu)) / den;
      variance[i] = (k * k * (ab * variance[i] + om)) / (den * den);
    }
  }
  return { mean, variance };
}

// ---------------------------------------------------------------------------------------------
// Non-diagonal linear operators: exact posterior by (preconditioned) CG on the latent system.

/** A linear operator on [3,H,W] images (channel-major float64), with its adjoint. */
export interface LinearOperator64 {
  /** A x. */
  forward(x: Float64Array): Float64Array | Promise<Float64Array>;
  /** Aᵀ y. */
  adjoint(y: Float64Array): Float64Array | Promise<Float64Array>;
}

/**
 * A linear {@link ForwardOperator} (float32 tensors [1,3,H,W]) as a {@link LinearOperator64}. Its
 * float32 arithmetic limits CG accuracy to ~1e-7 relative.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearOperator64 } from "./closed_form.ts";
 * import type { Tensor } from "../../core/tensor.ts";
 * // A float32 "double the image" operator, seen in float64.
 * const twice = async (x: Tensor): Promise<Tensor> => ({ data: x.data.map((v) => 2 * v), shape: x.shape });
 * const shape = [1, 3, 1, 2];
 * const op = linearOperator64({ name: "twice", inputShape: shape, outputShape: shape, forward: twice, adjoint: twice });
 * assert.deepEqual([...(await op.adjoint(Float64Array.of(1, 2, 3, 4, 5, 6)))], [2, 4, 6, 8, 10, 12]);
 * ```
 */
export function linearOperator64(
  op: Pick<ForwardOperator, "name" | "forward" | "adjoint" | "inputShape" | "outputShape">,
): LinearOperator64 {
  const adjoint = op.adjoint;
  if (!adjoint) throw new RangeError(`operator "${op.name}" is not linear (no adjoint)`);
  const call = async (f: typeof op.forward, v: Float64Array, shape: readonly number[]) => {
    const out = await f.call(op, { data: Float32Array.from(v), shape: [...shape] });
    return Float64Array.from(out.data);
  };
  return {
    forward: (x) => call(op.forward, x, op.inputShape),
    adjoint: (y) => call(adjoint, y, op.outputShape),
  };
}

/** A linear inverse problem y = A x + σ_y n on the [0,1] scale. */
export interface LinearProblem {
  /** The measurement y (measurement-shaped, [0,1] scale). */
  y: Float64Array;
  /** The operator. */
  op: LinearOperator64;
  /** σ_y on the [0,1] scale. */
  sigmaY: number;
  /** The latent layout. */
  layout: LatentLayout;
  /**
   * Optional diagonal of Dᵀ AᵀA D (3·K_h·K_w values) for the Jacobi preconditioner (e.g.
   * {@link maskGramDiagonal}); default: 1 (right for operators with ‖A‖ ≈ 1).
   */
  gramDiagonal?: Float64Array;
}

/** Options of the CG solves. */
export interface LatentCgOptions {
  /** Maximum iterations (default 5000). */
  maxIter?: number;
  /** Relative residual tolerance (default 1e-12). */
  tol?: number;
}

/**
 * diag(Dᵀ M D) for a pixel mask M (3·H·W or H·W values, 0/1 or weights): used as preconditioner.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, maskGramDiagonal } from "./closed_form.ts";
 * // No masking: Dᵀ D = I/s².
 * const d = maskGramDiagonal(new Float64Array(16).fill(1), latentLayout([1, 3, 4, 4], null, 0.5));
 * assert.ok(d.every((v) => Math.abs(v - 4) < 1e-12));
 * ```
 */
export function maskGramDiagonal(mask: ArrayLike<number>, l: LatentLayout): Float64Array {
  const { height: H, width: W, keepH: kh, keepW: kw } = l;
  const hw = H * W;
  const perChannel = mask.length === hw;
  if (!perChannel && mask.length !== 3 * hw) throw new RangeError(`mask has ${mask.length} values`);
  const ph = dct(H), pw = dct(W);
  const ph2 = new Float64Array(kh * H), pw2 = new Float64Array(kw * W);
  for (let i = 0; i < kh * H; i++) ph2[i] = ph[i] ** 2;
  for (let i = 0; i < kw * W; i++) pw2[i] = pw[i] ** 2;
  const mm = Float64Array.from(mask);
  const S: Float64Array[] = [];
  for (let c = 0; c < 3; c++) {
    const m = perChannel ? mm : mm.subarray(c * hw, (c + 1) * hw);
    S.push(matmulT(matmul(ph2, m, kh, H, W), pw2, kh, W, kw));
  }
  const n = kh * kw, out = new Float64Array(3 * n);
  const f = 1 / (l.scale * l.scale);
  for (let k = 0; k < 3; k++) {
    for (let c = 0; c < 3; c++) {
      const w = COLOR_MATRIX[k * 3 + c] ** 2 * f;
      for (let i = 0; i < n; i++) out[k * n + i] += w * S[c][i];
    }
  }
  return out;
}

/** The posterior system P z = rhs with P = Dᵀ AᵀA D/σ′² + Λ⁻¹, σ′ = 2σ_y. */
class LatentSystem {
  readonly ones: Promise<Float64Array>;
  constructor(readonly p: LinearProblem, readonly m: PriorMoments) {
    const n = 3 * p.layout.height * p.layout.width;
    this.ones = Promise.resolve(p.op.forward(new Float64Array(n).fill(1)));
  }
  get sig2(): number {
    return (2 * this.p.sigmaY) ** 2;
  }
  async apply(z: Float64Array): Promise<Float64Array> {
    const x = decode64(z, this.p.layout);
    const ax = await this.p.op.forward(x);
    const atax = await this.p.op.adjoint(ax);
    const out = decodeAdjoint64(atax, this.p.layout);
    for (let i = 0; i < out.length; i++) out[i] = out[i] / this.sig2 + z[i] / this.m.lambda[i];
    return out;
  }
  /** Dᵀ Aᵀ v/σ′² for a measurement-space v. */
  async dataRhs(v: Float64Array): Promise<Float64Array> {
    const atv = await this.p.op.adjoint(v);
    const out = decodeAdjoint64(atv, this.p.layout);
    for (let i = 0; i < out.length; i++) out[i] /= this.sig2;
    return out;
  }
  /** The model-scale measurement y′ = 2y − A(1). */
  async yModel(): Promise<Float64Array> {
    const a1 = await this.ones;
    return this.p.y.map((v, i) => 2 * v - a1[i]);
  }
  preconditioner(): Float64Array {
    const n = this.m.lambda.length;
    const d = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      d[i] = 1 / this.m.lambda[i] + (this.p.gramDiagonal?.[i] ?? 1) / this.sig2;
    }
    return d;
  }
  async solve(rhs: Float64Array, opts: LatentCgOptions, x0?: Float64Array): Promise<CgReport> {
    return await pcg((v) => this.apply(v), rhs, this.preconditioner(), opts, x0);
  }
}

/** Result of a CG solve. */
export interface CgReport {
  /** Solution. */
  x: Float64Array;
  /** Iterations used. */
  iterations: number;
  /** Final ‖r‖/‖b‖. */
  relResidual: number;
}

/**
 * Jacobi-preconditioned conjugate gradients for SPD M (float64).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pcg } from "./closed_form.ts";
 * // [[4, 1], [1, 3]] x = [1, 2] → x = [1/11, 7/11].
 * const apply = (v: Float64Array) => Float64Array.of(4 * v[0] + v[1], v[0] + 3 * v[1]);
 * const r = await pcg(apply, Float64Array.of(1, 2), Float64Array.of(4, 3));
 * assert.ok(Math.abs(r.x[0] - 1 / 11) < 1e-12 && Math.abs(r.x[1] - 7 / 11) < 1e-12);
 * assert.ok(r.relResidual < 1e-12);
 * ```
 */
export async function pcg(
  apply: (v: Float64Array) => Promise<Float64Array> | Float64Array,
  b: Float64Array,
  diag: Float64Array,
  opts: LatentCgOptions = {},
  x0?: Float64Array,
): Promise<CgReport> {
  const maxIter = opts.maxIter ?? 5000, tol = opts.tol ?? 1e-12;
  const n = b.length;
  const x = x0 ? Float64Array.from(x0) : new Float64Array(n);
  const r = Float64Array.from(b);
  if (x0) {
    const mx = await apply(x);
    for (let i = 0; i < n; i++) r[i] -= mx[i];
  }
  const zv = r.map((v, i) => v / diag[i]);
  const p = Float64Array.from(zv);
  let rz = dot(r, zv);
  const bn = Math.sqrt(dot(b, b)) || 1;
  let it = 0, rn = Math.sqrt(dot(r, r));
  while (it < maxIter && rn > tol * bn) {
    const mp = await apply(p);
    const alpha = rz / dot(p, mp);
    for (let i = 0; i < n; i++) {
      x[i] += alpha * p[i];
      r[i] -= alpha * mp[i];
    }
    for (let i = 0; i < n; i++) zv[i] = r[i] / diag[i];
    const rzNew = dot(r, zv);
    const beta = rzNew / rz;
    for (let i = 0; i < n; i++) p[i] = zv[i] + beta * p[i];
    rz = rzNew;
    rn = Math.sqrt(dot(r, r));
    it++;
  }
  return { x, iterations: it, relResidual: rn / bn };
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Exact posterior mean for a general linear operator: the solution of
 *   (Dᵀ AᵀA D/σ′² + Λ⁻¹) m = Dᵀ Aᵀ y′/σ′² + Λ⁻¹ μ,   y′ = 2y − A(1), σ′ = 2σ_y,
 * by Jacobi-preconditioned CG in float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { diagonalProblem, latentLayout, posteriorDiagonal, posteriorMeanCG, priorMoments } from "./closed_form.ts";
 * // For the identity operator CG must agree with the diagonal closed form.
 * const l = latentLayout([1, 3, 4, 4]), c = { rho0: 1 / 64, refSize: 0 };
 * const m = priorMoments([0, -1, -1, 1, 1, 1, 0.1, 0, 0], l, c);
 * const y = Float64Array.from({ length: 48 }, (_, i) => 0.5 + 0.3 * Math.sin(i));
 * const id = { forward: (x: Float64Array) => x, adjoint: (x: Float64Array) => x };
 * const r = await posteriorMeanCG({ y, op: id, sigmaY: 0.05, layout: l }, m);
 * const exact = posteriorDiagonal(diagonalProblem(y, new Float64Array(16).fill(1), 0.05, l), m).mean;
 * assert.ok(r.x.every((v, i) => Math.abs(v - exact[i]) < 1e-9));
 * ```
 */
export async function posteriorMeanCG(
  p: LinearProblem,
  m: PriorMoments,
  opts: LatentCgOptions = {},
): Promise<CgReport> {
  const sys = new LatentSystem(p, m);
  const rhs = await sys.dataRhs(await sys.yModel());
  for (let i = 0; i < rhs.length; i++) rhs[i] += m.mu[i] / m.lambda[i];
  return await sys.solve(rhs, opts, m.mu);
}

/**
 * Exact posterior variances of the listed latent coordinates (one CG solve P v = e_i each; meant
 * for small images or a subset of coordinates).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { diagonalProblem, latentLayout, posteriorDiagonal, posteriorVarianceCG, priorMoments } from "./closed_form.ts";
 * const l = latentLayout([1, 3, 4, 4]), c = { rho0: 1 / 64, refSize: 0 };
 * const m = priorMoments([0, -1, -1, 1, 1, 1, 0.1, 0, 0], l, c);
 * const y = new Float64Array(48).fill(0.5);
 * const id = { forward: (x: Float64Array) => x, adjoint: (x: Float64Array) => x };
 * const v = await posteriorVarianceCG({ y, op: id, sigmaY: 0.05, layout: l }, m, [0, 17]);
 * const exact = posteriorDiagonal(diagonalProblem(y, new Float64Array(16).fill(1), 0.05, l), m).variance;
 * assert.ok(Math.abs(v[0] - exact[0]) < 1e-9 && Math.abs(v[1] - exact[17]) < 1e-9);
 * ```
 */
export async function posteriorVarianceCG(
  p: LinearProblem,
  m: PriorMoments,
  indices: readonly number[],
  opts: LatentCgOptions = {},
): Promise<Float64Array> {
  const sys = new LatentSystem(p, m);
  const out = new Float64Array(indices.length);
  const n = m.lambda.length;
  for (let j = 0; j < indices.length; j++) {
    const e = new Float64Array(n);
    e[indices[j]] = 1;
    const r = await sys.solve(e, opts);
    out[j] = r.x[indices[j]];
  }
  return out;
}

/** A source of standard normal draws (a core `RandomStream` fits). */
export interface NormalSource {
  /** One N(0,1) draw. */
  normal(): number;
}

/**
 * One exact posterior sample by perturbation (Papandreou & Yuille 2010): draw z̃ ~ N(μ, Λ) and
 * ỹ′ = y′ + σ′ n, then solve P z = Dᵀ Aᵀ ỹ′/σ′² + Λ⁻¹ z̃. The solution is distributed exactly as
 * the Gaussian posterior.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, posteriorMeanCG, posteriorSampleCG, priorMoments } from "./closed_form.ts";
 * import { zeroNoiseStream } from "../../core/rng.ts";
 * // With all draws zero the perturbed system is the mean's system.
 * const l = latentLayout([1, 3, 4, 4]), c = { rho0: 1 / 64, refSize: 0 };
 * const m = priorMoments([0, -1, -1, 1, 1, 1, 0.1, 0, 0], l, c);
 * const p = {
 *   y: Float64Array.from({ length: 48 }, (_, i) => 0.5 + 0.3 * Math.sin(i)),
 *   op: { forward: (x: Float64Array) => x, adjoint: (x: Float64Array) => x },
 *   sigmaY: 0.05,
 *   layout: l,
 * };
 * const s = await posteriorSampleCG(p, m, zeroNoiseStream());
 * const mean = await posteriorMeanCG(p, m);
 * assert.ok(s.x.every((v, i) => Math.abs(v - mean.x[i]) < 1e-9));
 * ```
 */
export async function posteriorSampleCG(
  p: LinearProblem,
  m: PriorMoments,
  rng: NormalSource,
  opts: LatentCgOptions = {},
): Promise<CgReport> {
  const sys = new LatentSystem(p, m);
  const yp = await sys.yModel();
  const sig = 2 * p.sigmaY;
  for (let i = 0; i < yp.length; i++) yp[i] += sig * rng.normal();
  const rhs = await sys.dataRhs(yp);
  for (let i = 0; i < rhs.length; i++) {
    const zt = m.mu[i] + Math.sqrt(m.lambda[i]) * rng.normal();
    rhs[i] += zt / m.lambda[i];
  }
  return await sys.solve(rhs, opts, m.mu);
}
