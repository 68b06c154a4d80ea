/**
 * The built-in model's latent basis in float64. A model-scale image x′ ∈ [−1,1]^{3×H×W} is encoded
 * as z = E(x′) = s · P · DCT2(C x′): C the orthonormal colour matrix, DCT2 the orthonormal 2-D
 * DCT-II of each channel over the whole image (Φ_H X Φ_Wᵀ), P the identity (lossless) or the
 * restriction to the low-frequency K_h×K_w block (lossy); D(z) = Cᵀ IDCT2(Pᵀ z / s).
 *
 * @module
 */
import { dct2, dctMatrix } from "../../core/linalg/dct.ts";

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
  // Φ_H X Φ_Wᵀ by the FFT-based DCT (O(HW log HW), not the O(HW(H+W)) matrix products), then the
  // kept K_h×K_w block.
  const plan = dct2(H, W);
  const out = new Float64Array(3 * kh * kw);
  for (let k = 0; k < 3; k++) {
    const plane = y.subarray(k * H * W, (k + 1) * H * W);
    plan.forward(plane);
    for (let u = 0; u < kh; u++) {
      for (let v = 0; v < kw; v++) out[(k * kh + u) * kw + v] = s * plane[u * W + v];
    }
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
  // Φ_Hᵀ (Pᵀ Z) Φ_W: the kept block zero-padded to H×W, then the FFT-based inverse DCT.
  const plan = dct2(H, W);
  const img = new Float64Array(3 * H * W);
  for (let k = 0; k < 3; k++) {
    const plane = img.subarray(k * H * W, (k + 1) * H * W);
    for (let u = 0; u < kh; u++) {
      for (let v = 0; v < kw; v++) plane[u * W + v] = z[(k * kh + u) * kw + v] / s;
    }
    plan.inverse(plane);
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
