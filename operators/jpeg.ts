/**
 * JPEG compression as a differentiable forward operator A(x) = decode(encode(x)), and the real
 * codec (sharp / libvips / mozjpeg in its libjpeg-turbo-compatible profile) it models.
 *
 * The model follows libjpeg's baseline encoder and decoder stage by stage, in float64:
 *
 *  1. x ∈ [0,1] → levels v = 255·x → JFIF full-range YCbCr (ITU-R BT.601 weights, Kr = 0.299,
 *     Kb = 0.114):  Y = 0.299R + 0.587G + 0.114B,  Cb = (B − Y)/1.772,  Cr = (R − Y)/1.402.
 *     The chroma offset +128 and the level shift −128 cancel; Y gets Y − 128.
 *  2. Replicate-pad each plane to whole blocks, as libjpeg's `expand_right_edge` /
 *     `expand_bottom_edge` do: luma to a multiple of 8; chroma to 16 (4:2:0) or 8 (4:4:4).
 *  3. 4:2:0: chroma 2×2 box average (libjpeg `h2v2_downsample`, smoothing off).
 *  4. 8×8 orthonormal DCT-II per block (the JPEG FDCT, ¼C(u)C(v) normalisation).
 *  5. Quantise / dequantise: ĉ = Q · S_t(c / Q), with Q the IJG table for the quality (Annex K
 *     tables, scale s = 5000/q for q < 50 else 200 − 2q, Q = clamp(⌊(T·s + 50)/100⌋, 1, 255)) and
 *     S_t the soft rounding below.
 *  6. 8×8 IDCT, +128, soft clamp to [0,255] (libjpeg range-limits the decoded samples).
 *  7. Crop (luma to H×W; 4:2:0 chroma to ⌈H/2⌉×⌈W/2⌉); 4:2:0 chroma "fancy" upsampling: a
 *     triangular filter with weights ¾, ¼ along each axis and edge replication (libjpeg
 *     `h2v2_fancy_upsample`, on by default in libjpeg-turbo/mozjpeg and used by sharp's decoder —
 *     checked: it matches sharp's decode of the real coefficients to 0.43 RMS levels, against
 *     1.05 for nearest-neighbour upsampling).
 *  8. YCbCr → RGB (exact inverse of step 1), soft clamp to [0,255], ÷255.
 *
 * Soft rounding (DEVIATION from kornia / Reich et al., who use the Shin–Song polynomial
 * round(u) + (u − round(u))³, which jumps by ¾ at every half-integer): S_t is the expectation of
 * rounding under logistic dither ξ of scale t,
 *
 *   S_t(u) = E[round(u + ξ)] = Σ_{b ∈ ℤ+½} (F((u − b)/t) − 1[b < 0]),   F(a) = 1/(1 + e^{−a}),
 *   S_t'(u) = Σ_b F'((u − b)/t)/t,
 *
 * i.e. one logistic step per decision boundary. It is C^∞, odd, and S_t(u + 1) = S_t(u) + 1; as
 * t → 0 it tends to hard rounding. Evaluated exactly: near-boundary terms summed directly for
 * t < 0.15 (terms beyond 40t are below 1e-17), otherwise the equivalent Fourier series
 * S_t(u) = u − Σ_k (−1)^{k+1} ψ_k sin(2πku)/(πk), ψ_k = x_k / sinh x_k, x_k = 2π²kt (ψ is the
 * logistic characteristic function at 2πk). The dither scale is set in 8-bit intensity levels by
 * the `softness` option (its standard deviation): t = softness·(√3/π)/Q. A dither of about half a
 * level is the size of the real encoder's own integer rounding (its RGB→YCbCr and FDCT are
 * fixed-point), so S_t is then close to the conditional mean of what libjpeg outputs given the float
 * coefficient, which is why it is MORE accurate than hard rounding. Pooled over the 12 Kodak images
 * at q = 10 (4:2:0) the RMS error to sharp is 2.07 levels for hard rounding, 1.80 for softness 0.5
 * and 1.90 for softness 1. The default is 1 level: 0.1 level less accurate than the optimum but 4×
 * less stiff (max S' = 1/(4t) = Q/(4τ) ∝ 1/softness, so ∇²Φ of the prox ∝ 1/softness²), which halves the
 * finite-difference step the VJP check needs, speeds up the prox and lowers its float32 floor
 * (below), and spreads the gradient over twice as many coefficients for gradient-based solvers.
 * The clamps use the same dither: E[clamp(v + ξ, 0, 255)] = τ·sp(v/τ) − τ·sp((v − 255)/τ),
 * sp = softplus, τ = softness·√3/π (DEVIATION: kornia uses an ELU-like soft clip).
 * The decoder's final rounding to 8 bits is not modelled (it is ≤ ½ level, 0.29 RMS, and has no
 * useful derivative).
 *
 * Finite differences: S_t is steep on a level scale, so central differences of A need a per-pixel
 * step well below a level (≈ 4e-6 on the [0,1] scale) to match the exact VJP; with the contract
 * suite's default 1e-3 (0.26 level) the step itself crosses decision boundaries. This is curvature,
 * not a VJP error (the Taylor remainder shrinks like c² down to float32 noise).
 *
 * Prox: Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖² is a staircase in every DCT coefficient; where a
 * stationary point puts a coefficient inside a rounding transition, ∇²Φ reaches γ(Q/τ)² ≈ 10⁵ at
 * γ = 10, q = 50. One float32 ulp of u then moves ∇Φ by up to ~4e-4·‖z‖, so the contract's 1e-4
 * optimality residual is not always representable in float32 for γ = 10 (white-noise test images,
 * mid qualities); the solver stops at that floor with the best point it found.
 *
 * The real codec: {@link encodeJpeg} / {@link decodeJpeg} call sharp with
 * {@link JPEG_SHARP_OPTIONS}: the standard IJG tables (quantisationTable 0, checked against the
 * DQT segments), baseline sequential, no trellis quantisation, no overshoot deringing, no scan
 * optimisation (sharp's defaults; libvips then puts mozjpeg in its libjpeg-turbo-compatible
 * "fastest" profile). Huffman optimisation is lossless and left on.
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator, ProxOptions } from "../core/contracts.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import { InputError } from "../core/errors.ts";
import { assertShape, type Tensor } from "../core/tensor.ts";
import { nonlinearProxL2Solve, type SecondOrderModel } from "../core/linalg/nonlinear_prox.ts";

// ---------------------------------------------------------------------------------------------
// Quantisation tables.

/** IJG / JPEG Annex K luminance table, natural (row-major) order. */
export const IJG_LUMINANCE_TABLE: readonly number[] = Object.freeze(
  [
    "16 11 10 16 24 40 51 61",
    "12 12 14 19 26 58 60 55",
    "14 13 16 24 40 57 69 56",
    "14 17 22 29 51 87 80 62",
    "18 22 37 56 68 109 103 77",
    "24 35 55 64 81 104 113 92",
    "49 64 78 87 103 121 120 101",
    "72 92 95 98 112 100 103 99",
  ].join(" ").split(" ").map(Number),
);

/** IJG / JPEG Annex K chrominance table, natural (row-major) order. */
export const IJG_CHROMINANCE_TABLE: readonly number[] = Object.freeze(
  [
    "17 18 24 47 99 99 99 99",
    "18 21 26 66 99 99 99 99",
    "24 26 56 99 99 99 99 99",
    "47 66 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
  ].join(" ").split(" ").map(Number),
);

/**
 * The IJG quality scaling (libjpeg `jpeg_quality_scaling` + `jpeg_add_quant_table` with
 * force_baseline): s = 5000/q for q < 50, else 200 − 2q; Q = clamp(⌊(T·s + 50)/100⌋, 1, 255).
 *
 * @example
 * ```ts
 * import { IJG_LUMINANCE_TABLE, jpegQuantTable } from "./jpeg.ts";
 * console.assert(jpegQuantTable(IJG_LUMINANCE_TABLE, 50)[0] === 16);
 * console.assert(jpegQuantTable(IJG_LUMINANCE_TABLE, 100).every((q) => q === 1));
 * ```
 */
export function jpegQuantTable(base: readonly number[], quality: number): Int32Array {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new InputError(`jpeg: quality must be an integer in 1..100, got ${quality}`);
  }
  const s = quality < 50 ? Math.floor(5000 / quality) : 200 - 2 * quality;
  return Int32Array.from(base, (t) => Math.min(255, Math.max(1, Math.floor((t * s + 50) / 100))));
}

// ---------------------------------------------------------------------------------------------
// Soft rounding and soft clamping (logistic dither).

/** √3/π: logistic scale per unit standard deviation. */
const LOGISTIC_SCALE_PER_STD = Math.sqrt(3) / Math.PI;

/**
 * Σ_k coef[k]·f((k+1)θ) for f = sin or cos, from f(0) = `f0` and f(θ) = `f1` by the recurrence
 * f((k+1)θ) = 2cosθ·f(kθ) − f((k−1)θ) (one cosine instead of one trigonometric call per term).
 */
function trigSeries(coef: Float64Array, theta: number, f0: number, f1: number): number {
  const c1 = 2 * Math.cos(theta);
  let prev = f0, cur = f1, s = 0;
  for (let k = 0; k < coef.length; k++) {
    s += coef[k] * cur;
    const next = c1 * cur - prev;
    prev = cur;
    cur = next;
  }
  return s;
}

/** F(−a) = 1/(1 + e^{a}) for a ≥ 0, the logistic tail. */
function tail(a: number): number {
  return 1 / (1 + Math.exp(a));
}

/** softplus(a) = log(1 + e^a), stable for any a. */
function softplus(a: number): number {
  return a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a));
}

/** Logistic CDF F(a), stable for any a. */
function sigmoid(a: number): number {
  return a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a));
}

/**
 * S_t(u) = E[round(u + ξ)], ξ ~ Logistic(0, t): the soft rounding of the JPEG model (see the module
 * doc), with its derivative. Exact to about 1e-16 for any t > 0.
 *
 * @example
 * ```ts
 * import { JpegSoftRound } from "./jpeg.ts";
 * const s = new JpegSoftRound(0.01);
 * console.assert(Math.abs(s.value(2.3) - 2) < 1e-12 && Math.abs(s.value(-0.5) + 0.5) < 1e-12);
 * ```
 */
export class JpegSoftRound {
  /** Logistic scale t (in quantisation steps). */
  readonly t: number;
  /** Direct sums stop at this distance from u (40 t). */
  readonly #reach: number;
  /** Fourier coefficients (−1)^{k+1} ψ_k/(πk), or null for the direct sum. */
  readonly #sinCoef: Float64Array | null = null;
  /** Fourier coefficients 2(−1)^{k+1} ψ_k of the derivative. */
  readonly #cosCoef: Float64Array | null = null;

  /**
   * Make the soft rounding with logistic scale t.
   *
   * @param t logistic scale in quantisation steps, > 0
   */
  constructor(t: number) {
    if (!(t > 0) || !Number.isFinite(t)) throw new RangeError(`soft rounding scale ${t}`);
    this.t = t;
    this.#reach = 40 * t;
    if (t >= 0.15) {
      const sin: number[] = [], cos: number[] = [];
      for (let k = 1;; k++) {
        const x = 2 * Math.PI * Math.PI * k * t;
        const psi = x > 700 ? 0 : x / Math.sinh(x);
        if (psi < 1e-18) break;
        const sign = k % 2 ? 1 : -1;
        sin.push(sign * psi / (Math.PI * k));
        cos.push(2 * sign * psi);
      }
      this.#sinCoef = Float64Array.from(sin);
      this.#cosCoef = Float64Array.from(cos);
    }
  }

  /** S_t(u). */
  value(u: number): number {
    const n = Math.round(u);
    const coef = this.#sinCoef;
    if (coef) {
      // sin(2πku) = sin(kθ), θ = 2π(u − n)
      const theta = 2 * Math.PI * (u - n);
      return u - trigSeries(coef, theta, 0, Math.sin(theta));
    }
    // n + Σ_{boundaries above} F(−dist/t) − Σ_{boundaries below} F(−dist/t).
    const t = this.t, reach = this.#reach;
    let v = n;
    for (let d = n + 0.5 - u; d < reach; d += 1) v += tail(d / t);
    for (let d = u - n + 0.5; d < reach; d += 1) v -= tail(d / t);
    return v;
  }

  /** S_t'(u). */
  derivative(u: number): number {
    const n = Math.round(u);
    const coef = this.#cosCoef;
    if (coef) {
      const theta = 2 * Math.PI * (u - n);
      return 1 - trigSeries(coef, theta, 1, Math.cos(theta));
    }
    const t = this.t, reach = this.#reach;
    let g = 0;
    for (let d = n + 0.5 - u; d < reach; d += 1) {
      const e = tail(d / t);
      g += e * (1 - e);
    }
    for (let d = u - n + 0.5; d < reach; d += 1) {
      const e = tail(d / t);
      g += e * (1 - e);
    }
    return g / t;
  }

  /** S_t''(u) (the prox preconditioner uses its magnitude). */
  second(u: number): number {
    const n = Math.round(u);
    const coef = this.#cosCoef;
    if (coef) {
      // d/du [1 − Σ b_k cos(2πku)] = Σ b_k 2πk sin(2πku).
      const theta = 2 * Math.PI * (u - n);
      const c1 = 2 * Math.cos(theta);
      let prev = 0, cur = Math.sin(theta), s = 0;
      for (let k = 0; k < coef.length; k++) {
        s += coef[k] * 2 * Math.PI * (k + 1) * cur;
        const next = c1 * cur - prev;
        prev = cur;
        cur = next;
      }
      return s;
    }
    // F''(a) = F'(a)(1 − 2F(a)): boundaries above have F(a) = e, below F(a) = 1 − e.
    const t = this.t, reach = this.#reach;
    let g = 0;
    for (let d = n + 0.5 - u; d < reach; d += 1) {
      const e = tail(d / t);
      g += e * (1 - e) * (1 - 2 * e);
    }
    for (let d = u - n + 0.5; d < reach; d += 1) {
      const e = tail(d / t);
      g -= e * (1 - e) * (1 - 2 * e);
    }
    return g / (t * t);
  }
}

/** E[clamp(v + ξ, 0, 255)], ξ ~ Logistic(0, τ). */
function softClamp255(v: number, tau: number): number {
  // Beyond 40τ from both edges the correction terms are below e^{−40} ≈ 4e-18 (relative).
  if (v > 40 * tau && v < 255 - 40 * tau) return v;
  return tau * (softplus(v / tau) - softplus((v - 255) / tau));
}

/** d/dv of {@link softClamp255}: F(v/τ) − F((v − 255)/τ). */
function softClamp255Derivative(v: number, tau: number): number {
  if (v > 40 * tau && v < 255 - 40 * tau) return 1;
  return sigmoid(v / tau) - sigmoid((v - 255) / tau);
}

// ---------------------------------------------------------------------------------------------
// 8×8 block DCT on planes whose sides are multiples of 8.

/** DCT8[k·8 + n] = c_k cos((2n + 1)kπ/16), c_0 = √(1/8), c_k = ½: orthonormal. */
const DCT8 = (() => {
  const m = new Float64Array(64);
  for (let k = 0; k < 8; k++) {
    for (let n = 0; n < 8; n++) {
      m[k * 8 + n] = (k === 0 ? Math.SQRT1_2 / 2 : 0.5) *
        Math.cos(((2 * n + 1) * k * Math.PI) / 16);
    }
  }
  return m;
})();

/** DCT8 restricted to n < 4, split by the parity of k: EVEN[j·4 + n] = DCT8[2j][n], ODD likewise. */
const DCT8_EVEN = Float64Array.from({ length: 16 }, (_, i) => DCT8[(2 * (i >> 2)) * 8 + (i & 3)]);
const DCT8_ODD = Float64Array.from(
  { length: 16 },
  (_, i) => DCT8[(2 * (i >> 2) + 1) * 8 + (i & 3)],
);

/**
 * One 8-point orthonormal DCT-II (or its inverse) of v[o], v[o + s], …, v[o + 7s] in place, with
 * the even/odd split DCT8[k][7 − n] = (−1)^k DCT8[k][n] (32 multiply-adds instead of 64).
 */
function dct8(v: Float64Array, o: number, s: number, inverse: boolean, t: Float64Array): void {
  if (!inverse) {
    for (let n = 0; n < 4; n++) {
      const a = v[o + n * s], b = v[o + (7 - n) * s];
      t[n] = a + b;
      t[4 + n] = a - b;
    }
    for (let j = 0; j < 4; j++) {
      let e = 0, d = 0;
      for (let n = 0; n < 4; n++) {
        e += DCT8_EVEN[j * 4 + n] * t[n];
        d += DCT8_ODD[j * 4 + n] * t[4 + n];
      }
      v[o + 2 * j * s] = e;
      v[o + (2 * j + 1) * s] = d;
    }
  } else {
    for (let n = 0; n < 4; n++) {
      let e = 0, d = 0;
      for (let j = 0; j < 4; j++) {
        e += DCT8_EVEN[j * 4 + n] * v[o + 2 * j * s];
        d += DCT8_ODD[j * 4 + n] * v[o + (2 * j + 1) * s];
      }
      t[n] = e + d;
      t[4 + n] = e - d;
    }
    for (let n = 0; n < 4; n++) {
      v[o + n * s] = t[n];
      v[o + (7 - n) * s] = t[4 + n];
    }
  }
}

/**
 * Blockwise X = D·B·Dᵀ (inverse = false) or B = Dᵀ·X·D (inverse = true) on an h×w plane, in place.
 * Being orthonormal, each is the transpose of the other.
 */
function blockDct(p: Float64Array, h: number, w: number, inverse: boolean): void {
  const t = new Float64Array(8);
  for (let bi = 0; bi < h; bi += 8) {
    for (let bj = 0; bj < w; bj += 8) {
      const o = bi * w + bj;
      for (let c = 0; c < 8; c++) dct8(p, o + c, w, inverse, t); // columns
      for (let r = 0; r < 8; r++) dct8(p, o + r * w, 1, inverse, t); // rows
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Colour transforms (JFIF full range, centred chroma).

const KR = 0.299, KB = 0.114, KG = 1 - KR - KB;
const CB_SCALE = 2 * (1 - KB); // 1.772
const CR_SCALE = 2 * (1 - KR); // 1.402
/** Rows of [Y; Cb; Cr] = M·[R; G; B]. */
const RGB2YCC = [
  [KR, KG, KB],
  [-KR / CB_SCALE, -KG / CB_SCALE, (1 - KB) / CB_SCALE],
  [(1 - KR) / CR_SCALE, -KG / CR_SCALE, -KB / CR_SCALE],
] as const;
/** G = Y − G_CB·Cb − G_CR·Cr (exact inverse of RGB2YCC). */
const G_CB = KB * CB_SCALE / KG, G_CR = KR * CR_SCALE / KG;

// ---------------------------------------------------------------------------------------------
// The model.

/** Subsampling modes. */
export type JpegSubsampling = 420 | 444;

/** Options of the jpeg operator. */
export type JpegOptions = {
  /** IJG quality 1–100. */
  quality: number;
  /** Chroma subsampling: 420 (2×2) or 444 (none). */
  subsampling: JpegSubsampling;
  /** Standard deviation, in 8-bit levels, of the dither that smooths rounding and clamping. */
  softness: number;
};

/** Plane sizes of one image. */
interface Geometry {
  h: number;
  w: number;
  /** Luma plane, padded to multiples of 8. */
  yh: number;
  yw: number;
  /** Full-resolution chroma padded (to 16 for 4:2:0, 8 for 4:4:4). */
  ph: number;
  pw: number;
  /** Coded chroma plane (ph/2 × pw/2 for 4:2:0). */
  ch: number;
  cw: number;
  /** Decoded chroma extent used by the upsampler (⌈h/2⌉ × ⌈w/2⌉ for 4:2:0). */
  dh: number;
  dw: number;
  sub: boolean;
  /** Upsampler taps per output row / column: near = ⌊i/2⌋ (weight ¾), far (weight ¼). */
  nearR: Int32Array;
  farR: Int32Array;
  nearC: Int32Array;
  farC: Int32Array;
}

function geometry(h: number, w: number, sub: boolean): Geometry {
  const up = (v: number, m: number) => Math.ceil(v / m) * m;
  const m = sub ? 16 : 8;
  const ph = up(h, m), pw = up(w, m);
  const dh = sub ? Math.ceil(h / 2) : h, dw = sub ? Math.ceil(w / 2) : w;
  return {
    h,
    w,
    yh: up(h, 8),
    yw: up(w, 8),
    ph,
    pw,
    ch: sub ? ph / 2 : ph,
    cw: sub ? pw / 2 : pw,
    dh,
    dw,
    sub,
    nearR: Int32Array.from({ length: h }, (_, i) => sub ? i >> 1 : i),
    farR: Int32Array.from({ length: h }, (_, i) => sub ? farTap(i, dh) : i),
    nearC: Int32Array.from({ length: w }, (_, j) => sub ? j >> 1 : j),
    farC: Int32Array.from({ length: w }, (_, j) => sub ? farTap(j, dw) : j),
  };
}

/** Intermediate values of one forward pass that the VJP needs. */
interface Trace {
  /** c/Q per coded plane (Y, Cb, Cr). */
  u: Float64Array[];
  /** Decoded planes before the soft clamp (Y, Cb, Cr), coded sizes. */
  dec: Float64Array[];
  /** RGB levels before the final soft clamp, 3·h·w. */
  rgb: Float64Array;
}

/** Replicate-pad an h×w plane to ph×pw. */
function padReplicate(src: Float64Array, h: number, w: number, ph: number, pw: number) {
  const out = new Float64Array(ph * pw);
  for (let i = 0; i < ph; i++) {
    const si = Math.min(i, h - 1) * w;
    for (let j = 0; j < pw; j++) out[i * pw + j] = src[si + Math.min(j, w - 1)];
  }
  return out;
}

/** Transpose of {@link padReplicate}: fold the padding back onto the edge pixels. */
function padReplicateT(g: Float64Array, h: number, w: number, ph: number, pw: number) {
  const out = new Float64Array(h * w);
  for (let i = 0; i < ph; i++) {
    const si = Math.min(i, h - 1) * w;
    for (let j = 0; j < pw; j++) out[si + Math.min(j, w - 1)] += g[i * pw + j];
  }
  return out;
}

/** 2×2 box average of a ph×pw plane (even sides). */
function downsample(p: Float64Array, ph: number, pw: number): Float64Array {
  const ch = ph / 2, cw = pw / 2, out = new Float64Array(ch * cw);
  for (let i = 0; i < ch; i++) {
    for (let j = 0; j < cw; j++) {
      const a = 2 * i * pw + 2 * j;
      out[i * cw + j] = 0.25 * (p[a] + p[a + 1] + p[a + pw] + p[a + pw + 1]);
    }
  }
  return out;
}

/** Transpose of {@link downsample}. */
function downsampleT(g: Float64Array, ph: number, pw: number): Float64Array {
  const ch = ph / 2, cw = pw / 2, out = new Float64Array(ph * pw);
  for (let i = 0; i < ch; i++) {
    for (let j = 0; j < cw; j++) {
      const v = 0.25 * g[i * cw + j], a = 2 * i * pw + 2 * j;
      out[a] = v, out[a + 1] = v, out[a + pw] = v, out[a + pw + 1] = v;
    }
  }
  return out;
}

/**
 * The far tap of the triangular upsampler along one axis for output index i (source extent n): the
 * neighbour of ⌊i/2⌋ on i's side, replicated at the edges (the near tap ⌊i/2⌋ has weight ¾, the
 * far one ¼).
 */
function farTap(i: number, n: number): number {
  const near = i >> 1;
  return i & 1 ? Math.min(near + 1, n - 1) : Math.max(near - 1, 0);
}

/** The quantisation tables and soft rounders of one operator. */
interface Quantiser {
  /** Q per in-block position, luma and chroma. */
  q: [Int32Array, Int32Array];
  /** Soft rounder per in-block position, luma and chroma. */
  round: [JpegSoftRound[], JpegSoftRound[]];
  /** Logistic scale of the clamps, in levels. */
  tau: number;
}

function quantiser(o: JpegOptions): Quantiser {
  const tau = o.softness * LOGISTIC_SCALE_PER_STD;
  const ql = jpegQuantTable(IJG_LUMINANCE_TABLE, o.quality);
  const qc = jpegQuantTable(IJG_CHROMINANCE_TABLE, o.quality);
  const cache = new Map<number, JpegSoftRound>();
  const rounder = (q: number) => {
    let r = cache.get(q);
    if (!r) cache.set(q, r = new JpegSoftRound(tau / q));
    return r;
  };
  return { q: [ql, qc], round: [Array.from(ql, rounder), Array.from(qc, rounder)], tau };
}

/** Steps 4–6 on one coded plane: DCT, soft quantisation, IDCT, +128. Returns pre-clamp samples. */
function codePlane(
  p: Float64Array,
  h: number,
  w: number,
  q: Int32Array,
  round: JpegSoftRound[],
): { u: Float64Array; dec: Float64Array } {
  const c = Float64Array.from(p);
  blockDct(c, h, w, false);
  const u = new Float64Array(c.length);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const k = (i & 7) * 8 + (j & 7), idx = i * w + j, qk = q[k];
      u[idx] = c[idx] / qk;
      c[idx] = qk * round[k].value(u[idx]);
    }
  }
  blockDct(c, h, w, true);
  for (let i = 0; i < c.length; i++) c[i] += 128;
  return { u, dec: c };
}

/** A(x) for one image (3·h·w values on [0,1]); returns levels/255 and the trace. */
function forwardImage(
  x: Float32Array,
  g: Geometry,
  qz: Quantiser,
): { out: Float64Array; trace: Trace } {
  const { h, w } = g, n = h * w, tau = qz.tau;
  // 1. RGB → YCbCr (levels).
  const planes = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let p = 0; p < n; p++) {
    const r = 255 * x[p], gg = 255 * x[n + p], b = 255 * x[2 * n + p];
    for (let k = 0; k < 3; k++) {
      const m = RGB2YCC[k];
      planes[k][p] = m[0] * r + m[1] * gg + m[2] * b;
    }
    planes[0][p] -= 128;
  }
  // 2–6.
  const yPad = padReplicate(planes[0], h, w, g.yh, g.yw);
  const coded = [codePlane(yPad, g.yh, g.yw, qz.q[0], qz.round[0])];
  for (let k = 1; k < 3; k++) {
    let c: Float64Array = padReplicate(planes[k], h, w, g.ph, g.pw);
    if (g.sub) c = downsample(c, g.ph, g.pw);
    coded.push(codePlane(c, g.ch, g.cw, qz.q[1], qz.round[1]));
  }
  const clamped = coded.map(({ dec }) => dec.map((v) => softClamp255(v, tau)));
  // 7–8.
  const rgb = new Float64Array(3 * n), out = new Float64Array(3 * n);
  const [yc, cbc, crc] = clamped;
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      let cb: number, cr: number;
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        cb = 0.5625 * cbc[a + nj] + 0.1875 * (cbc[a + fj] + cbc[b + nj]) + 0.0625 * cbc[b + fj];
        cr = 0.5625 * crc[a + nj] + 0.1875 * (crc[a + fj] + crc[b + nj]) + 0.0625 * crc[b + fj];
      } else {
        cb = cbc[i * g.cw + j], cr = crc[i * g.cw + j];
      }
      const yv = yc[i * g.yw + j];
      cb -= 128, cr -= 128;
      const p = i * w + j;
      rgb[p] = yv + CR_SCALE * cr;
      rgb[n + p] = yv - G_CB * cb - G_CR * cr;
      rgb[2 * n + p] = yv + CB_SCALE * cb;
    }
  }
  for (let i = 0; i < 3 * n; i++) out[i] = softClamp255(rgb[i], tau) / 255;
  return { out, trace: { u: coded.map((c) => c.u), dec: coded.map((c) => c.dec), rgb } };
}

/**
 * Decoder half of the VJP: the gradient with respect to the dequantised coefficients ĉ (levels) of
 * each coded plane, e = (∂A/∂ĉ)ᵀ g, through steps 8ᵀ–6ᵀ (clamp, colour, upsampling, clamp, IDCT).
 */
function decoderVjp(
  gOut: ArrayLike<number>,
  t: Trace,
  g: Geometry,
  qz: Quantiser,
): Float64Array[] {
  const { h, w } = g, n = h * w, tau = qz.tau;
  // 8ᵀ: clamp and colour.
  const gY = new Float64Array(g.yh * g.yw);
  const gCb = new Float64Array(g.ch * g.cw), gCr = new Float64Array(g.ch * g.cw);
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      const p = i * w + j;
      const gr = gOut[p] / 255 * softClamp255Derivative(t.rgb[p], tau);
      const gg = gOut[n + p] / 255 * softClamp255Derivative(t.rgb[n + p], tau);
      const gb = gOut[2 * n + p] / 255 * softClamp255Derivative(t.rgb[2 * n + p], tau);
      gY[i * g.yw + j] = gr + gg + gb;
      const dcb = -G_CB * gg + CB_SCALE * gb, dcr = CR_SCALE * gr - G_CR * gg;
      // 7ᵀ: crop and upsampling.
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        gCb[a + nj] += 0.5625 * dcb, gCr[a + nj] += 0.5625 * dcr;
        gCb[a + fj] += 0.1875 * dcb, gCr[a + fj] += 0.1875 * dcr;
        gCb[b + nj] += 0.1875 * dcb, gCr[b + nj] += 0.1875 * dcr;
        gCb[b + fj] += 0.0625 * dcb, gCr[b + fj] += 0.0625 * dcr;
      } else {
        gCb[i * g.cw + j] = dcb, gCr[i * g.cw + j] = dcr;
      }
    }
  }
  // 6ᵀ: clamp of the decoded samples, then (IDCT)ᵀ = DCT.
  return [gY, gCb, gCr].map((gp, k) => {
    const dec = t.dec[k];
    for (let i = 0; i < gp.length; i++) gp[i] *= softClamp255Derivative(dec[i], tau);
    const [ph, pw] = k === 0 ? [g.yh, g.yw] : [g.ch, g.cw];
    blockDct(gp, ph, pw, false);
    return gp;
  });
}

/** Coded-plane sizes [rows, cols] of plane k (0 = Y, 1 = Cb, 2 = Cr). */
function codedSize(g: Geometry, k: number): [number, number] {
  return k === 0 ? [g.yh, g.yw] : [g.ch, g.cw];
}

/** Multiply each coded coefficient by f(plane, in-block position, index) in place. */
function scaleCoefficients(
  c: Float64Array[],
  g: Geometry,
  f: (k: number, pos: number, idx: number) => number,
): Float64Array[] {
  c.forEach((ck, k) => {
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) ck[i * pw + j] *= f(k, (i & 7) * 8 + (j & 7), i * pw + j);
    }
  });
  return c;
}

/**
 * The linear part of steps 1–4, E: x (3·h·w, [0,1] scale) ↦ coded DCT coefficients c (levels) of
 * each plane (the −128 level shift omitted). The encoder is c = E x − shift.
 */
function encoderLinear(x: ArrayLike<number>, g: Geometry): Float64Array[] {
  const { h, w } = g, n = h * w;
  const planes = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let p = 0; p < n; p++) {
    const r = 255 * x[p], gg = 255 * x[n + p], b = 255 * x[2 * n + p];
    for (let k = 0; k < 3; k++) {
      const m = RGB2YCC[k];
      planes[k][p] = m[0] * r + m[1] * gg + m[2] * b;
    }
  }
  return planes.map((plane, k) => {
    let c: Float64Array;
    if (k === 0) c = padReplicate(plane, h, w, g.yh, g.yw);
    else {
      c = padReplicate(plane, h, w, g.ph, g.pw);
      if (g.sub) c = downsample(c, g.ph, g.pw);
    }
    const [ph, pw] = codedSize(g, k);
    blockDct(c, ph, pw, false);
    return c;
  });
}

/** Eᵀ: coded coefficients ↦ x-space (3·h·w). Overwrites its input. */
function encoderLinearT(c: Float64Array[], g: Geometry): Float64Array {
  const { h, w } = g, n = h * w;
  const planes = c.map((ck, k) => {
    const [ph, pw] = codedSize(g, k);
    blockDct(ck, ph, pw, true); // (DCT)ᵀ = IDCT
    if (k === 0) return padReplicateT(ck, h, w, g.yh, g.yw);
    return padReplicateT(g.sub ? downsampleT(ck, g.ph, g.pw) : ck, h, w, g.ph, g.pw);
  });
  const gx = new Float64Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let ch = 0; ch < 3; ch++) {
      gx[ch * n + p] = 255 *
        (RGB2YCC[0][ch] * planes[0][p] + RGB2YCC[1][ch] * planes[1][p] +
          RGB2YCC[2][ch] * planes[2][p]);
    }
  }
  return gx;
}

/**
 * Decoder JVP: the tangent of A (3·h·w, [0,1] scale) for a tangent ĉ' of the dequantised
 * coefficients, through steps 6–8 (IDCT, clamp, upsampling, colour, clamp). Overwrites its input.
 */
function decoderJvp(dc: Float64Array[], t: Trace, g: Geometry, qz: Quantiser): Float64Array {
  const { h, w } = g, n = h * w, tau = qz.tau;
  const [yd, cbd, crd] = dc.map((ck, k) => {
    const [ph, pw] = codedSize(g, k);
    blockDct(ck, ph, pw, true);
    const dec = t.dec[k];
    for (let i = 0; i < ck.length; i++) ck[i] *= softClamp255Derivative(dec[i], tau);
    return ck;
  });
  const out = new Float64Array(3 * n);
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      let cb: number, cr: number;
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        cb = 0.5625 * cbd[a + nj] + 0.1875 * (cbd[a + fj] + cbd[b + nj]) + 0.0625 * cbd[b + fj];
        cr = 0.5625 * crd[a + nj] + 0.1875 * (crd[a + fj] + crd[b + nj]) + 0.0625 * crd[b + fj];
      } else {
        cb = cbd[i * g.cw + j], cr = crd[i * g.cw + j];
      }
      const yv = yd[i * g.yw + j], p = i * w + j;
      out[p] = (yv + CR_SCALE * cr) * softClamp255Derivative(t.rgb[p], tau) / 255;
      out[n + p] = (yv - G_CB * cb - G_CR * cr) * softClamp255Derivative(t.rgb[n + p], tau) / 255;
      out[2 * n + p] = (yv + CB_SCALE * cb) * softClamp255Derivative(t.rgb[2 * n + p], tau) / 255;
    }
  }
  return out;
}

/** S'(c/Q) for every coded coefficient of the trace. */
function slopes(t: Trace, g: Geometry, qz: Quantiser): Float64Array[] {
  return t.u.map((u, k) => {
    const out = new Float64Array(u.length), round = qz.round[k === 0 ? 0 : 1];
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        out[i * pw + j] = round[(i & 7) * 8 + (j & 7)].derivative(u[i * pw + j]);
      }
    }
    return out;
  });
}

/** J_A(x)ᵀ g for one image, from the forward trace: Eᵀ (S' ⊙ e), e the decoder VJP. */
function vjpImage(gOut: ArrayLike<number>, t: Trace, g: Geometry, qz: Quantiser): Float64Array {
  const s1 = slopes(t, g, qz);
  return encoderLinearT(
    scaleCoefficients(decoderVjp(gOut, t, g, qz), g, (k, _p, i) => s1[k][i]),
    g,
  );
}

/**
 * A symmetric positive semi-definite model of the Hessian of Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²
 * at the traced point, applied to v:
 *
 *   H v = v + Eᵀ [γ S' D_Jᵀ D_J S' + γ |e ⊙ S''| / Q] E v,
 *
 * with E the encoder's linear part, D_J the decoder Jacobian (clamps included), S', S'' the soft
 * rounding's derivatives at c/Q and e = D_Jᵀ (A(u) − y). It is the exact Hessian except that the
 * second-order term γ e S''/Q (diagonal in the coefficients) enters with its magnitude, and the
 * clamps' second derivatives are dropped ("saddle-free" Newton; Dauphin et al. 2014).
 */
function hessianImage(
  t: Trace,
  g: Geometry,
  qz: Quantiser,
  gamma: number,
  e: Float64Array[],
): (v: Float64Array) => Float64Array {
  const s1 = slopes(t, g, qz);
  const s2 = t.u.map((u, k) => {
    const out = new Float64Array(u.length);
    const round = qz.round[k === 0 ? 0 : 1], q = qz.q[k === 0 ? 0 : 1];
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        const idx = i * pw + j, pos = (i & 7) * 8 + (j & 7);
        out[idx] = gamma * Math.abs(e[k][idx] * round[pos].second(u[idx])) / q[pos];
      }
    }
    return out;
  });
  return (v) => {
    const c = encoderLinear(v, g);
    const sc = c.map((ck, k) => ck.map((x, i) => x * s1[k][i]));
    const jv = decoderJvp(sc, t, g, qz);
    const back = decoderVjp(jv, t, g, qz);
    const m = back.map((bk, k) => bk.map((x, i) => gamma * x * s1[k][i] + s2[k][i] * c[k][i]));
    const hv = encoderLinearT(m, g);
    for (let i = 0; i < hv.length; i++) hv[i] += v[i];
    return hv;
  };
}

// ---------------------------------------------------------------------------------------------
// Preconditioner for the prox.

/** C⁻¹ (rows R, G, B; columns Y, Cb, Cr): the decoder's colour matrix. */
const YCC2RGB = [[1, 0, CR_SCALE], [1, -G_CB, -G_CR], [1, CB_SCALE, 0]] as const;

/** diag((C Cᵀ)⁻¹) for C = RGB2YCC: the per-plane weights g_p of the model Hessian below. */
const PLANE_WEIGHT = (() => {
  // (C Cᵀ)⁻¹ = C⁻ᵀ C⁻¹, so its diagonal is the squared norm of column p of C⁻¹.
  return [0, 1, 2].map((p) => YCC2RGB.reduce((s, row) => s + row[p] * row[p], 0));
})();

/**
 * Gershgorin row sums ρ of M = A Aᵀ for the last 8-block along one axis, where A = B₈ R P maps a
 * source line of length L to the 8 DCT coefficients of that block (P: replicate padding to k·Lc,
 * R: sums of k consecutive samples divided by √k, so R has orthonormal rows). ρ = 1 elsewhere.
 * Replicate padding makes the edge pixels count several times, so M ≠ I on edge blocks.
 */
function paddingRowSums(L: number, Lc: number, k: number): Float64Array {
  const rho = new Float64Array(Lc).fill(1);
  if (k * Lc === L) return rho;
  const b0 = Lc - 8;
  const r1 = Array.from({ length: 8 }, () => new Float64Array(L));
  for (let i = 0; i < 8; i++) {
    for (let t = 0; t < k; t++) r1[i][Math.min(k * (b0 + i) + t, L - 1)] += 1 / Math.sqrt(k);
  }
  const a = Array.from({ length: 8 }, (_, f) => {
    const row = new Float64Array(L);
    for (let i = 0; i < 8; i++) for (let c = 0; c < L; c++) row[c] += DCT8[f * 8 + i] * r1[i][c];
    return row;
  });
  for (let f = 0; f < 8; f++) {
    let sum = 0;
    for (let f2 = 0; f2 < 8; f2++) {
      let m = 0;
      for (let c = 0; c < L; c++) m += a[f][c] * a[f2][c];
      sum += Math.abs(m);
    }
    rho[b0 + f] = sum;
  }
  return rho;
}

/**
 * An SPD approximation P of ∇²Φ(u)⁻¹, Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖², for the prox.
 *
 * In YCbCr level coordinates w = K u (K = 255·C, C the colour matrix) and with a decoder that
 * inverts the encoder (no clamps), A = K⁻¹ T K where T acts plane by plane and is diagonal in the
 * plane's coded coefficients ξ = B R Pad w (B block DCT, R = I, or 2× the 2×2 average for 4:2:0
 * chroma, Pad replicate padding). The Hessian of Φ in w is then G + Σ_k m_k g_p a_k a_kᵀ, with
 * G = (KKᵀ)⁻¹, a_k = Padᵀ Rᵀ Bᵀ e_k the coefficient's atom, g_p = ‖∂A/∂ĉ_k‖² ≈ G_pp, and the
 * per-coefficient stiffness
 *
 *   m_k = γ (S'(u_k)² + f |e_k S''(u_k)| / (Q_k g_p)),   e = (∂A/∂ĉ)ᵀ (A(u) − y),
 *
 * (Gauss–Newton term plus the magnitude of the second-order term, f = 1, or ¼ for 4:2:0 chroma
 * where ξ = 2c; taking |·| keeps P positive definite, as in "saddle-free" Newton). The second-order
 * term caps the step of a coefficient deep in a rounding transition to about the dither scale, a
 * per-coefficient trust region. Keeping only G's diagonal decouples the planes; with Woodbury,
 *
 *   H_w⁻¹ ≈ ⊕_p (I − Σ_k σ_k a_k a_kᵀ) / g_p,   σ_k = m_k / (1 + m_k μ_k),
 *
 * exact when the atoms are orthonormal (interior blocks, μ = 1); on edge blocks μ_k is a Gershgorin
 * bound of AᵀA (see {@link paddingRowSums}), which keeps P positive definite. Then
 * P = K⁻¹ H_w⁻¹ K⁻ᵀ (the factors 255 cancel). Dropping G's off-diagonal terms costs at most a
 * factor of 2 (P at γ = 0 has eigenvalues 0.51–1.56 instead of 1); L-BFGS corrects the rest.
 */
function preconditionerImage(
  t: Trace,
  g: Geometry,
  qz: Quantiser,
  gamma: number,
  e: Float64Array[],
): (v: Float64Array) => Float64Array {
  const { h, w } = g, n = h * w;
  const sigma = t.u.map((u, k) => {
    const sub = k > 0 && g.sub;
    const [ph, pw] = k === 0 ? [g.yh, g.yw] : [g.ch, g.cw];
    const round = qz.round[k === 0 ? 0 : 1], q = qz.q[k === 0 ? 0 : 1];
    const f = sub ? 0.25 : 1, gp = PLANE_WEIGHT[k] / (255 * 255);
    const rhoR = paddingRowSums(h, ph, sub ? 2 : 1), rhoC = paddingRowSums(w, pw, sub ? 2 : 1);
    const out = new Float64Array(u.length), ek = e[k];
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        const idx = i * pw + j, pos = (i & 7) * 8 + (j & 7), r = round[pos];
        const s1 = r.derivative(u[idx]);
        const m = gamma * (s1 * s1 + f * Math.abs(ek[idx] * r.second(u[idx])) / (q[pos] * gp));
        out[idx] = m / (1 + m * rhoR[i] * rhoC[j]);
      }
    }
    return out;
  });
  return (v: Float64Array): Float64Array => {
    // w = C⁻ᵀ v.
    const planes = [0, 1, 2].map((p) => {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = YCC2RGB[0][p] * v[i] + YCC2RGB[1][p] * v[n + i] + YCC2RGB[2][p] * v[2 * n + i];
      }
      return out;
    });
    // (I − Σ σ_k a_k a_kᵀ) / g_p per plane.
    const solved = planes.map((plane, k) => {
      const sub = k > 0 && g.sub;
      const [ph, pw] = k === 0 ? [g.yh, g.yw] : [g.ph, g.pw];
      let c: Float64Array = padReplicate(plane, h, w, ph, pw);
      if (sub) {
        c = downsample(c, ph, pw);
        for (let i = 0; i < c.length; i++) c[i] *= 2;
      }
      const [ch, cw] = sub ? [ph / 2, pw / 2] : [ph, pw];
      blockDct(c, ch, cw, false);
      const sg = sigma[k];
      for (let i = 0; i < c.length; i++) c[i] *= sg[i];
      blockDct(c, ch, cw, true);
      if (sub) {
        c = downsampleT(c, ph, pw);
        for (let i = 0; i < c.length; i++) c[i] *= 2;
      }
      const back = padReplicateT(c, h, w, ph, pw), gp = PLANE_WEIGHT[k];
      for (let i = 0; i < n; i++) back[i] = (plane[i] - back[i]) / gp;
      return back;
    });
    // P v = C⁻¹ w'.
    const out = new Float64Array(3 * n);
    for (let r = 0; r < 3; r++) {
      const m = YCC2RGB[r];
      for (let i = 0; i < n; i++) {
        out[r * n + i] = m[0] * solved[0][i] + m[1] * solved[1][i] + m[2] * solved[2][i];
      }
    }
    return out;
  };
}

// ---------------------------------------------------------------------------------------------
// The plugin.

/** The jpeg operator: a ForwardOperator plus the second-order model its prox uses. */
export interface JpegOperator extends ForwardOperator {
  /**
   * At u, for Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²: `hessian`, a positive definite model of ∇²Φ(u)
   * (exact up to the sign of the diagonal second-order term), and `preconditioner`, a cheap
   * positive definite approximation of its inverse. Both act on flat [N,3,H,W] vectors.
   */
  proxModel(u: Tensor, y: Tensor, gamma: number): SecondOrderModel;
}

/**
 * The model for one image shape and one quantiser (tables + softness): forward, VJP and the prox's
 * second-order model, on [N,3,H,W] tensors, with a one-entry trace cache (vjp(x, ·) or the prox
 * model right after forward(x) reuse the forward pass).
 */
class JpegModel {
  readonly inputShape: number[];
  readonly #geo: Geometry;
  readonly #qz: Quantiser;
  readonly #nb: number;
  readonly #per: number;
  #cache: { x: Float32Array; out: Float32Array; traces: Trace[] } | null = null;

  constructor(shape: readonly number[], geo: Geometry, qz: Quantiser) {
    this.inputShape = [...shape];
    this.#geo = geo;
    this.#qz = qz;
    this.#nb = shape[0];
    this.#per = 3 * geo.h * geo.w;
  }

  /** A(x) and the traces, from the cache when x is the last input. */
  evaluate(x: Tensor): { out: Float32Array; traces: Trace[] } {
    const c = this.#cache;
    if (c && c.x.length === x.data.length && c.x.every((v, i) => v === x.data[i])) return c;
    const per = this.#per, out = new Float32Array(x.data.length), traces: Trace[] = [];
    for (let b = 0; b < this.#nb; b++) {
      const r = forwardImage(x.data.subarray(b * per, (b + 1) * per), this.#geo, this.#qz);
      out.set(r.out, b * per);
      traces.push(r.trace);
    }
    this.#cache = { x: x.data.slice(), out, traces };
    return this.#cache;
  }

  forward(x: Tensor): Promise<Tensor> {
    assertShape(x, this.inputShape, "jpeg: x");
    return Promise.resolve({ data: this.evaluate(x).out.slice(), shape: [...this.inputShape] });
  }

  vjp(x: Tensor, gy: Tensor): Promise<Tensor> {
    assertShape(x, this.inputShape, "jpeg: x");
    assertShape(gy, this.inputShape, "jpeg: cotangent");
    const { traces } = this.evaluate(x), per = this.#per;
    const out = new Float32Array(x.data.length);
    traces.forEach((t, b) => {
      const gb = gy.data.subarray(b * per, (b + 1) * per);
      out.set(vjpImage(gb, t, this.#geo, this.#qz), b * per);
    });
    return Promise.resolve({ data: out, shape: [...this.inputShape] });
  }

  proxModel(u: Tensor, y: Tensor, gamma: number): SecondOrderModel {
    assertShape(u, this.inputShape, "jpeg: u");
    assertShape(y, this.inputShape, "jpeg: y");
    const { out, traces } = this.evaluate(u), per = this.#per, geo = this.#geo, qz = this.#qz;
    const parts = traces.map((t, b) => {
      const r = new Float64Array(per);
      for (let i = 0; i < per; i++) r[i] = out[b * per + i] - y.data[b * per + i];
      const e = decoderVjp(r, t, geo, qz);
      return {
        hessian: hessianImage(t, geo, qz, gamma, e),
        preconditioner: preconditionerImage(t, geo, qz, gamma, e),
      };
    });
    const batched = (f: (p: (typeof parts)[number]) => (v: Float64Array) => Float64Array) =>
    (
      v: Float64Array,
    ) => {
      const res = new Float64Array(v.length);
      parts.forEach((p, b) => res.set(f(p)(v.subarray(b * per, (b + 1) * per)), b * per));
      return res;
    };
    return {
      hessian: batched((p) => p.hessian),
      preconditioner: batched((p) => p.preconditioner),
    };
  }
}

/**
 * Softness schedule of the prox's continuation ("graduated non-convexity"): start where the soft
 * rounding of the finest quantisation step is nearly the identity (softness ≈ Q_min), but at most
 * 8× the target (so at most four stages; at q = 10 starting from Q_min = 80 cost twice the time on
 * natural images for no gain), and halve down to the target. Each stage warm-starts the next; the
 * last stage solves the operator's own problem.
 */
function softnessSchedule(target: number, qz: Quantiser): number[] {
  const qmin = Math.min(...qz.q[0], ...qz.q[1]);
  const out: number[] = [];
  for (let s = Math.min(Math.max(qmin, target), 8 * target); s > 1.5 * target; s /= 2) out.push(s);
  out.push(target);
  return out;
}

/** Default iteration budget and tolerance of the jpeg prox (see {@link jpegPlugin}). */
export const JPEG_PROX_DEFAULTS = { maxIter: 30, tol: 1e-4, maxCg: 20 } as const;

const optionsSchema = z.strictObject({
  quality: z.number().int().min(1).max(100).default(10),
  subsampling: z.union([z.literal(420), z.literal(444)]).default(420),
  softness: z.number().min(0.05).max(64).default(1),
});

/**
 * The JPEG operator: y = A(x), a differentiable model of libjpeg baseline encode + decode at IJG
 * quality `quality` (see the module doc). Non-linear: `vjp` is exact for the model;
 * `pseudoInverse(y) = y` (a decoded JPEG is already an image estimate).
 *
 * `proxL2` solves argmin_u (γ/2)‖A(u) − y‖² + ½‖u − z‖² with `core/linalg/nonlinear_prox.ts`:
 * truncated Newton–CG on the operator's own Hessian model (exact up to the sign of the diagonal
 * second-order term) with a per-coefficient preconditioner, after a continuation in `softness`
 * (each earlier stage gets a quarter of the iteration budget, at most 50, and the tolerance
 * max(10·tol, 1e-3)). Defaults {@link JPEG_PROX_DEFAULTS}: 30 Newton steps, relative residual
 * 1e-4, 20 CG iterations per step. The problem is non-convex (a staircase in every DCT
 * coefficient); the result is a stationary point near z. Where z already sits on the plateaus of
 * the staircase the prox barely moves it: a quantiser constrains only coefficients near its
 * decision boundaries.
 */
export const jpegPlugin: OperatorPlugin<JpegOptions> = defineOperator({
  kind: "operator",
  name: "jpeg",
  description:
    "JPEG compression (libjpeg/IJG tables, soft rounding), e.g. jpeg:quality=10,subsampling=420",
  options: optionsSchema,
  create(options: JpegOptions, { shape }): JpegOperator {
    if (shape.length !== 4 || shape[1] !== 3) {
      throw new InputError(`jpeg: images must be [N,3,H,W] RGB, got [${shape}]`);
    }
    const [nb, , h, w] = shape;
    if (!(h >= 1 && w >= 1 && nb >= 1)) throw new InputError(`jpeg: empty image [${shape}]`);
    const geo = geometry(h, w, options.subsampling === 420);
    const qz = quantiser(options);
    const model = new JpegModel(shape, geo, qz);
    const stages = new Map<number, JpegModel>();
    const stageModel = (softness: number) => {
      if (softness === options.softness) return model;
      let m = stages.get(softness);
      if (!m) {
        stages.set(softness, m = new JpegModel(shape, geo, quantiser({ ...options, softness })));
      }
      return m;
    };
    const op: JpegOperator = {
      name: "jpeg",
      options,
      inputShape: [...shape],
      outputShape: [...shape],
      capabilities: { linear: false, closedFormProx: false, differentiable: true },
      forward: (x) => model.forward(x),
      vjp: (x, gy) => model.vjp(x, gy),
      async proxL2(zt: Tensor, y: Tensor, gamma: number, opts: ProxOptions = {}) {
        assertShape(zt, shape, "jpeg: z");
        assertShape(y, shape, "jpeg: y");
        const maxIter = opts.maxIter ?? JPEG_PROX_DEFAULTS.maxIter;
        const tol = opts.tol ?? JPEG_PROX_DEFAULTS.tol;
        const schedule = softnessSchedule(options.softness, qz);
        let init = zt;
        for (const [k, softness] of schedule.entries()) {
          const m = stageModel(softness), last = k === schedule.length - 1;
          const r = await nonlinearProxL2Solve(m, zt, y, gamma, {
            maxIter: last ? maxIter : Math.min(50, Math.ceil(maxIter / 4)),
            tol: last ? tol : Math.max(10 * tol, 1e-3),
            maxCg: JPEG_PROX_DEFAULTS.maxCg,
            init,
            model: (u) => Promise.resolve(m.proxModel(u, y, gamma)),
          });
          init = r.u;
        }
        return init;
      },
      proxModel: (u, y, gamma) => model.proxModel(u, y, gamma),
      pseudoInverse(y) {
        assertShape(y, shape, "jpeg: y");
        return Promise.resolve({ data: y.data.slice(), shape: [...shape] });
      },
    };
    return op;
  },
});

// ---------------------------------------------------------------------------------------------
// The real codec (sharp).

/**
 * The sharp `.jpeg()` options of the real encoder (with `quality` and `chromaSubsampling` added):
 * standard IJG tables, baseline, no trellis, no deringing, no scan optimisation.
 */
export const JPEG_SHARP_OPTIONS: Readonly<{
  progressive: false;
  mozjpeg: false;
  trellisQuantisation: false;
  overshootDeringing: false;
  optimiseScans: false;
  quantisationTable: 0;
  optimiseCoding: true;
  force: true;
}> = Object.freeze({
  progressive: false,
  mozjpeg: false,
  trellisQuantisation: false,
  overshootDeringing: false,
  optimiseScans: false,
  quantisationTable: 0,
  optimiseCoding: true,
  force: true,
});

/** [1,3,H,W] on [0,1] → interleaved 8-bit RGB (clamped, rounded). */
function toRgb8(x: Tensor): { rgb: Uint8Array; h: number; w: number } {
  if (x.shape.length !== 4 || x.shape[0] !== 1 || x.shape[1] !== 3) {
    throw new InputError(`jpeg: can only encode one [1,3,H,W] RGB image, got [${x.shape}]`);
  }
  const [, , h, w] = x.shape, n = h * w;
  const rgb = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = x.data[c * n + p];
      rgb[3 * p + c] = Math.round(255 * (v > 1 ? 1 : v > 0 ? v : 0)); // NaN → 0
    }
  }
  return { rgb, h, w };
}

/**
 * Encode a [1,3,H,W] image on [0,1] as a real baseline JPEG file through sharp (values are clamped
 * to [0,1] and rounded to 8 bits first). Options: {@link JPEG_SHARP_OPTIONS}.
 *
 * @param quality IJG quality 1–100
 * @param subsampling 420 (default) or 444
 */
export async function encodeJpeg(
  x: Tensor,
  quality: number,
  subsampling: JpegSubsampling = 420,
): Promise<Uint8Array> {
  jpegQuantTable(IJG_LUMINANCE_TABLE, quality); // validates quality
  if (subsampling !== 420 && subsampling !== 444) {
    throw new InputError(`jpeg: subsampling must be 420 or 444, got ${subsampling}`);
  }
  const { rgb, h, w } = toRgb8(x);
  const { default: sharp } = await import("sharp");
  const buf = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({
      ...JPEG_SHARP_OPTIONS,
      quality,
      chromaSubsampling: subsampling === 420 ? "4:2:0" : "4:4:4",
    })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decode JPEG bytes (sharp / libjpeg-turbo defaults) to a [1,3,H,W] tensor on [0,1]. */
export async function decodeJpeg(bytes: Uint8Array): Promise<Tensor> {
  const { default: sharp } = await import("sharp");
  let decoded;
  try {
    decoded = await sharp(bytes).removeAlpha().toColourspace("srgb").raw().toBuffer({
      resolveWithObject: true,
    });
  } catch (e) {
    throw new InputError(`jpeg: cannot decode the JPEG data (${(e as Error).message})`);
  }
  const { data, info } = decoded;
  const h = info.height, w = info.width, n = h * w;
  const out = new Float32Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) out[c * n + p] = data[info.channels * p + c] / 255;
  }
  return { data: out, shape: [1, 3, h, w] };
}

/** decode(encode(x)) with the real codec: what the `jpeg` operator models. */
export async function jpegRoundTrip(
  x: Tensor,
  quality: number,
  subsampling: JpegSubsampling = 420,
): Promise<Tensor> {
  return await decodeJpeg(await encodeJpeg(x, quality, subsampling));
}
