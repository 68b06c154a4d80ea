/**
 * Blur: y = k ∗ x, a true convolution (not a correlation) of every channel with one normalised
 * kernel k, under one of three boundary rules:
 *
 *   y[i,j] = Σ_{a,b} k[a,b] · x̃[i − (a − c_h), j − (b − c_w)],   (c_h, c_w) = (⌊kh/2⌋, ⌊kw/2⌋),
 *
 * where x̃ extends x beyond the image:
 * - `circular`: periodically (deepinv `BlurFFT`, LATINO's choice). A = F⁻¹ diag(K) F, so
 *   Aᵀ = F⁻¹ diag(conj K) F and the prox is closed form:
 *   argmin_x (γ/2)‖Ax − y‖² + ½‖x − z‖² = F⁻¹[(γ·conj(K)·F(y) + F(z)) / (γ|K|² + 1)].
 * - `symmetric`: half-sample symmetric (Neumann; scipy.ndimage `mode='reflect'`): … b a | a b c …
 *   For a kernel with odd sizes that is symmetric in each axis (the Gaussian), A = Φᵀ diag(h) Φ
 *   with Φ the orthonormal 2-D DCT-II (Ng, Chan & Tang 1999), h_k = (Φ A e₀)_k / (Φ e₀)_k, so the
 *   prox is closed form too: Φᵀ[(γ·h·Φy + Φz) / (γh² + 1)]. The diagonal is public as
 *   `dctDiagonal`. Other kernels (motion, asymmetric files) use padding + convolution and CG.
 * - `reflect`: whole-sample reflection (PyTorch/deepinv `reflect`; scipy `mode='mirror'`):
 *   … c b | a b c …; padding + convolution, exact adjoint, CG prox.
 *
 * Convolutions run through float32 real-input FFTs (`core/linalg/fft32.ts`, PFFFT in WebAssembly,
 * at SciPy's speed) directly on the tensors' float32 data; padded ones on a zero-padded plane of a
 * fast FFT size ≥ the padded image, so 61×61 and 122×122 kernels cost about as much as small ones.
 * The adjoint of "pad then valid convolution" is "full correlation then fold the padded borders
 * back". The DCT path (symmetric boundary, axis-symmetric kernel) stays in float64: the exact-model
 * tests need its diagonal and prox to 1e-12. The closed-form proxes report ‖A u − y‖ on request
 * (`ProxOptions.report`) by Parseval, at no extra transform.
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator, ProxOptions } from "../core/contracts.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import { InputError } from "../core/errors.ts";
import { assertShape, sameBits, type Tensor, tensor } from "../core/tensor.ts";
import { linearOperator } from "../core/linear_operator.ts";
import { fastFft32Size, type RealFft2F32, rfft2f32 } from "../core/linalg/fft32.ts";
import { dct2 } from "../core/linalg/dct.ts";
import {
  axisSymmetric,
  gaussianKernel,
  type Kernel2,
  kernelTensor,
  motionKernel,
  readKernel,
} from "./kernels.ts";
import { blurOnnx } from "./blur_onnx.ts";

/** Boundary rules of the blur operator. */
export type BlurBoundary = "circular" | "symmetric" | "reflect";

/** A blur operator: a ForwardOperator plus its kernel and, when it exists, its DCT diagonal. */
export interface BlurOperator extends ForwardOperator {
  /** The normalised kernel actually used (row-major float64, centre (⌊kh/2⌋, ⌊kw/2⌋)). */
  readonly kernel: Kernel2;
  /** The boundary rule. */
  readonly boundary: BlurBoundary;
  /**
   * For `symmetric` with an axis-symmetric odd kernel: h (H×W, row-major, shared by channels) with
   * A = Φᵀ diag(h) Φ per channel, Φ the orthonormal 2-D DCT-II of `core/linalg/dct.ts`.
   * Undefined otherwise.
   */
  readonly dctDiagonal?: Float64Array;
}

// ---------------------------------------------------------------------------------------------
// Engines: the math on the tensors' float32 data, C planes of H·W, channel by channel.

/**
 * The operator on float32 data (C planes of H·W, row-major). `out` may be the input array.
 * `prox` returns ‖A u − y‖² of its result when `residual` is asked (free by Parseval for the
 * transform-based proxes), NaN otherwise.
 */
interface Engine {
  forward(x: Float32Array, out: Float32Array): void;
  adjoint(y: Float32Array, out: Float32Array): void;
  /** Closed-form prox, when there is one. */
  prox?(
    z: Float32Array,
    y: Float32Array,
    gamma: number,
    out: Float32Array,
    residual: boolean,
  ): number;
  /** The prox with γ = gammaOf(A z), sharing the transforms of z (see `proxL2Adaptive`). */
  proxAdaptive?(
    z: Float32Array,
    y: Float32Array,
    gammaOf: (az: Float32Array) => number,
    out: Float32Array,
    residual: boolean,
  ): number;
}

/** Multiply a transposed half spectrum S by G (or conj G) in place (interleaved complex). */
function multiplySpectrum(S: Float32Array, G: Float32Array, conj: boolean): void {
  const gs = conj ? -1 : 1;
  for (let p = 0; p < S.length; p += 2) {
    const a = S[p], b = S[p + 1], gr = G[p], gi = gs * G[p + 1];
    S[p] = a * gr - b * gi;
    S[p + 1] = a * gi + b * gr;
  }
}

/**
 * Circular convolution: A = F⁻¹ diag(K) F, in float32 through `fft32` (PFFFT). Spectra are in
 * fft32's transposed layout: column v of the half spectrum, h complex values, interleaved.
 */
class CircularEngine implements Engine {
  readonly #fft: RealFft2F32;
  readonly #n: number;
  /** K, the kernel's spectrum, and |K|² per frequency. */
  readonly #K: Float32Array;
  readonly #K2: Float32Array;
  /** Parseval weight of each frequency: 1 for the DC and (even W) Nyquist columns, else 2. */
  readonly #weight: Float32Array;
  /** For the last y: conj(K)·F(y_c) and F(y_c) per channel. */
  #cache: { y: Float32Array; ky: Float32Array[]; fy: Float32Array[] } | null = null;
  /** proxAdaptive's copies of F(z_c), and its A z (valid during the gammaOf call only). */
  #kept: Float32Array[] | null = null;
  #az: Float32Array | null = null;

  constructor(k: Kernel2, H: number, W: number) {
    this.#fft = rfft2f32(H, W);
    this.#n = H * W;
    // The kernel with its centre moved to (0,0), wrapped around.
    const ch = Math.floor(k.h / 2), cw = Math.floor(k.w / 2);
    const plane = new Float64Array(H * W);
    for (let a = 0; a < k.h; a++) {
      for (let b = 0; b < k.w; b++) {
        const i = (a - ch + H) % H, j = (b - cw + W) % W;
        plane[i * W + j] += k.data[a * k.w + b];
      }
    }
    this.#K = this.#fft.forward(plane).slice();
    const nf = this.#K.length / 2, wh = this.#fft.wh;
    this.#K2 = new Float32Array(nf);
    this.#weight = new Float32Array(nf);
    for (let f = 0; f < nf; f++) {
      this.#K2[f] = this.#K[2 * f] ** 2 + this.#K[2 * f + 1] ** 2;
      const v = Math.floor(f / H);
      this.#weight[f] = v === 0 || (W % 2 === 0 && v === wh - 1) ? 1 : 2;
    }
  }

  #filter(x: Float32Array, out: Float32Array, conj: boolean): void {
    const n = this.#n;
    for (let c = 0; c < x.length / n; c++) {
      multiplySpectrum(this.#fft.forward(x.subarray(c * n, (c + 1) * n)), this.#K, conj);
      this.#fft.inverse(out.subarray(c * n, (c + 1) * n));
    }
  }

  forward(x: Float32Array, out: Float32Array): void {
    this.#filter(x, out, false);
  }

  adjoint(y: Float32Array, out: Float32Array): void {
    this.#filter(y, out, true);
  }

  /** conj(K)·F(y_c) and F(y_c) per channel, cached for the last y (solvers reuse one y). */
  #measurementSpectra(y: Float32Array): { ky: Float32Array[]; fy: Float32Array[] } {
    if (this.#cache && sameBits(this.#cache.y, y)) return this.#cache;
    const n = this.#n, ky: Float32Array[] = [], fy: Float32Array[] = [];
    for (let c = 0; c < y.length / n; c++) {
      const Y = this.#fft.forward(y.subarray(c * n, (c + 1) * n));
      fy.push(Y.slice());
      multiplySpectrum(Y, this.#K, true);
      ky.push(Y.slice());
    }
    this.#cache = { y: y.slice(), ky, fy };
    return this.#cache;
  }

  /**
   * u = F⁻¹[(γ·conj(K)·F(y) + F(z)) / (γ|K|² + 1)] per channel; with `residual`, also
   * ‖A u − y‖² = (1/HW) Σ_freq weight·|K·U − Y|² (Parseval over the half spectrum).
   */
  prox(
    z: Float32Array,
    y: Float32Array,
    gamma: number,
    out: Float32Array,
    residual: boolean,
  ): number {
    const cache = this.#measurementSpectra(y), n = this.#n;
    let r2 = 0;
    for (let c = 0; c < z.length / n; c++) {
      const S = this.#fft.forward(z.subarray(c * n, (c + 1) * n));
      r2 += this.#solve(S, cache.ky[c], cache.fy[c], gamma, residual);
      this.#fft.inverse(out.subarray(c * n, (c + 1) * n));
    }
    return residual ? r2 / n : NaN;
  }

  /**
   * The prox with γ = gammaOf(A z): F(z_c) once per channel (kept), A z from it (one inverse per
   * channel), then the solve from the kept spectra.
   */
  proxAdaptive(
    z: Float32Array,
    y: Float32Array,
    gammaOf: (az: Float32Array) => number,
    out: Float32Array,
    residual: boolean,
  ): number {
    const cache = this.#measurementSpectra(y), n = this.#n, C = z.length / n;
    const kept = this.#kept ??= [];
    if (this.#az?.length !== z.length) this.#az = new Float32Array(z.length);
    const az = this.#az;
    for (let c = 0; c < C; c++) {
      const S = this.#fft.forward(z.subarray(c * n, (c + 1) * n));
      (kept[c] ??= new Float32Array(S.length)).set(S);
      multiplySpectrum(S, this.#K, false);
      this.#fft.inverse(az.subarray(c * n, (c + 1) * n));
    }
    const gamma = gammaOf(az);
    let r2 = 0;
    for (let c = 0; c < C; c++) {
      const S = this.#fft.spectrum();
      S.set(kept[c]);
      r2 += this.#solve(S, cache.ky[c], cache.fy[c], gamma, residual);
      this.#fft.inverse(out.subarray(c * n, (c + 1) * n));
    }
    return residual ? r2 / n : NaN;
  }

  /** The prox's pointwise step on one channel's spectrum S, in place; returns Σ weight·|KU − Y|². */
  #solve(S: Float32Array, KY: Float32Array, Y: Float32Array, gamma: number, residual: boolean) {
    const K = this.#K, K2 = this.#K2, wt = this.#weight;
    let r2 = 0;
    if (!residual) {
      for (let f = 0, p = 0; p < S.length; f++, p += 2) {
        const s = 1 / (gamma * K2[f] + 1);
        S[p] = (gamma * KY[p] + S[p]) * s;
        S[p + 1] = (gamma * KY[p + 1] + S[p + 1]) * s;
      }
    } else {
      for (let f = 0, p = 0; p < S.length; f++, p += 2) {
        const s = 1 / (gamma * K2[f] + 1);
        const ur = (gamma * KY[p] + S[p]) * s, ui = (gamma * KY[p + 1] + S[p + 1]) * s;
        S[p] = ur;
        S[p + 1] = ui;
        const kr = K[p], ki = K[p + 1];
        const er = kr * ur - ki * ui - Y[p], ei = kr * ui + ki * ur - Y[p + 1];
        r2 += wt[f] * (er * er + ei * ei);
      }
    }
    return r2;
  }
}

/** Source index of padded position q for an extension rule, or −1 when it needs several folds. */
export function extendIndex(i: number, n: number, boundary: "symmetric" | "reflect"): number {
  if (boundary === "symmetric") {
    if (i < 0) i = -i - 1;
    else if (i >= n) i = 2 * n - 1 - i;
  } else {
    if (i < 0) i = -i;
    else if (i >= n) i = 2 * n - 2 - i;
  }
  return i >= 0 && i < n ? i : -1;
}

/** The padded index maps of an H×W image for a kh×kw kernel (rows above: kh − 1 − ⌊kh/2⌋). */
function paddingMaps(
  k: Kernel2,
  H: number,
  W: number,
  boundary: "symmetric" | "reflect",
): { rows: Int32Array; cols: Int32Array } {
  const top = k.h - 1 - Math.floor(k.h / 2), left = k.w - 1 - Math.floor(k.w / 2);
  const rows = Int32Array.from(
    { length: H + k.h - 1 },
    (_, q) => extendIndex(q - top, H, boundary),
  );
  const cols = Int32Array.from(
    { length: W + k.w - 1 },
    (_, q) => extendIndex(q - left, W, boundary),
  );
  if (rows.includes(-1) || cols.includes(-1)) {
    throw new InputError(
      `blur: kernel ${k.h}×${k.w} is too large for ${boundary} padding of an image ${H}×${W}`,
    );
  }
  return { rows, cols };
}

/**
 * Pad with a symmetric or reflect extension, then valid convolution, computed as an FFT
 * convolution (float32, `fft32`) on an Nh×Nw zero-padded plane (Nh ≥ H + kh − 1, so nothing
 * wraps around).
 */
class PaddedEngine implements Engine {
  readonly #fft: RealFft2F32;
  readonly #K: Float32Array;
  readonly #rows: Int32Array;
  readonly #cols: Int32Array;
  readonly #H: number;
  readonly #W: number;
  readonly #kh: number;
  readonly #kw: number;
  readonly #buf: Float32Array;

  constructor(k: Kernel2, H: number, W: number, boundary: "symmetric" | "reflect") {
    this.#H = H;
    this.#W = W;
    this.#kh = k.h;
    this.#kw = k.w;
    ({ rows: this.#rows, cols: this.#cols } = paddingMaps(k, H, W, boundary));
    const Hp = H + k.h - 1, Wp = W + k.w - 1;
    this.#fft = rfft2f32(fastFft32Size(Hp, 16), fastFft32Size(Wp, 32));
    const Nw = this.#fft.w;
    this.#buf = new Float32Array(this.#fft.h * Nw);
    const plane = new Float64Array(this.#fft.h * Nw);
    for (let a = 0; a < k.h; a++) {
      for (let b = 0; b < k.w; b++) plane[a * Nw + b] = k.data[a * k.w + b];
    }
    this.#K = this.#fft.forward(plane).slice();
  }

  forward(x: Float32Array, out: Float32Array): void {
    const H = this.#H, W = this.#W, rows = this.#rows, cols = this.#cols, n = H * W;
    const Nw = this.#fft.w, oh = this.#kh - 1, ow = this.#kw - 1, buf = this.#buf;
    for (let c = 0; c < x.length / n; c++) {
      const src = x.subarray(c * n, (c + 1) * n), dst = out.subarray(c * n, (c + 1) * n);
      buf.fill(0);
      for (let q = 0; q < rows.length; q++) {
        const o = q * Nw, s = rows[q] * W;
        for (let p = 0; p < cols.length; p++) buf[o + p] = src[s + cols[p]];
      }
      multiplySpectrum(this.#fft.forward(buf), this.#K, false);
      this.#fft.inverse(buf);
      for (let i = 0; i < H; i++) {
        const o = (i + oh) * Nw + ow;
        for (let j = 0; j < W; j++) dst[i * W + j] = buf[o + j];
      }
    }
  }

  adjoint(y: Float32Array, out: Float32Array): void {
    const H = this.#H, W = this.#W, rows = this.#rows, cols = this.#cols, n = H * W;
    const Nw = this.#fft.w, oh = this.#kh - 1, ow = this.#kw - 1, buf = this.#buf;
    for (let c = 0; c < y.length / n; c++) {
      const src = y.subarray(c * n, (c + 1) * n), dst = out.subarray(c * n, (c + 1) * n);
      buf.fill(0);
      for (let i = 0; i < H; i++) {
        const o = (i + oh) * Nw + ow;
        for (let j = 0; j < W; j++) buf[o + j] = src[i * W + j];
      }
      multiplySpectrum(this.#fft.forward(buf), this.#K, true);
      this.#fft.inverse(buf);
      // Transpose of the padding: every padded sample adds into the pixel it was copied from.
      dst.fill(0);
      for (let q = 0; q < rows.length; q++) {
        const o = q * Nw, r = rows[q] * W;
        for (let p = 0; p < cols.length; p++) dst[r + cols[p]] += buf[o + p];
      }
    }
  }
}

/**
 * Symmetric boundary with an axis-symmetric kernel: A = Φᵀ diag(h) Φ (self-adjoint). Kept in
 * float64: the exact-model tests need this diagonal and its prox to 1e-12.
 */
class DctEngine implements Engine {
  readonly #H: number;
  readonly #W: number;
  readonly #q: Float64Array;
  #cache: { y: Float32Array; fy: Float64Array[] } | null = null;
  constructor(readonly diag: Float64Array, H: number, W: number) {
    this.#H = H;
    this.#W = W;
    this.#q = new Float64Array(H * W);
  }
  forward(x: Float32Array, out: Float32Array): void {
    const d = dct2(this.#H, this.#W), h = this.diag, n = this.#H * this.#W, q = this.#q;
    for (let c = 0; c < x.length / n; c++) {
      q.set(x.subarray(c * n, (c + 1) * n));
      d.forward(q);
      for (let i = 0; i < n; i++) q[i] *= h[i];
      d.inverse(q);
      out.set(q, c * n);
    }
  }
  adjoint(y: Float32Array, out: Float32Array): void {
    this.forward(y, out);
  }
  /**
   * Φᵀ[(γ·h·Φy + Φz) / (γh² + 1)]; Φy is cached for the last y. Φ is orthonormal, so
   * ‖A u − y‖² = ‖h·Φu − Φy‖².
   */
  prox(
    z: Float32Array,
    y: Float32Array,
    gamma: number,
    out: Float32Array,
    residual: boolean,
  ): number {
    const d = dct2(this.#H, this.#W), h = this.diag, n = this.#H * this.#W, q = this.#q;
    if (!this.#cache || !sameBits(this.#cache.y, y)) {
      const fy: Float64Array[] = [];
      for (let c = 0; c < y.length / n; c++) {
        const p = Float64Array.from(y.subarray(c * n, (c + 1) * n));
        d.forward(p);
        fy.push(p);
      }
      this.#cache = { y: y.slice(), fy };
    }
    let r2 = 0;
    for (let c = 0; c < z.length / n; c++) {
      q.set(z.subarray(c * n, (c + 1) * n));
      d.forward(q);
      const b = this.#cache.fy[c];
      for (let i = 0; i < n; i++) {
        const u = (gamma * h[i] * b[i] + q[i]) / (gamma * h[i] * h[i] + 1);
        q[i] = u;
        if (residual) r2 += (h[i] * u - b[i]) ** 2;
      }
      d.inverse(q);
      out.set(q, c * n);
    }
    return residual ? r2 : NaN;
  }
}

/** A e₀ for the half-sample symmetric extension, e₀ the unit impulse at (0,0), by direct sums. */
function symmetricImpulseResponse(k: Kernel2, H: number, W: number): Float64Array {
  const { rows, cols } = paddingMaps(k, H, W, "symmetric");
  const out = new Float64Array(H * W);
  // y[i,j] = Σ_{a,b} k[a,b]·e₀[rows[i + kh−1−a], cols[j + kw−1−b]]: only taps landing on (0,0).
  for (let i = 0; i < H; i++) {
    for (let a = 0; a < k.h; a++) {
      if (rows[i + k.h - 1 - a] !== 0) continue;
      for (let j = 0; j < W; j++) {
        for (let b = 0; b < k.w; b++) {
          if (cols[j + k.w - 1 - b] === 0) out[i * W + j] += k.data[a * k.w + b];
        }
      }
    }
  }
  return out;
}

/**
 * The DCT-II diagonal of the half-sample symmetric blur with an odd, axis-symmetric kernel on an
 * H×W image: h = Φ(A e₀) / Φ(e₀), e₀ the unit impulse at (0,0) (Φ e₀ has no zero entry). Returns
 * null when the kernel is not axis-symmetric with odd sizes (then A is not DCT-diagonal).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { symmetricBlurDctDiagonal } from "./blur.ts";
 * import { gaussianKernel } from "./kernels.ts";
 * const h = symmetricBlurDctDiagonal(gaussianKernel(1.5), 16, 16)!;
 * assert.ok(Math.abs(h[0] - 1) < 1e-12); // A(1) = 1: the DC gain is the kernel sum
 * ```
 */
export function symmetricBlurDctDiagonal(k: Kernel2, H: number, W: number): Float64Array | null {
  const sym = axisSymmetric(k);
  if (!sym) return null;
  const e0 = new Float64Array(H * W);
  e0[0] = 1;
  const ae0 = symmetricImpulseResponse(sym, H, W);
  const d = dct2(H, W);
  d.forward(ae0);
  d.forward(e0);
  for (let i = 0; i < ae0.length; i++) ae0[i] /= e0[i];
  return ae0;
}

// ---------------------------------------------------------------------------------------------
// The plugin.

const KERNELS = ["gaussian", "motion", "file"] as const;
const BOUNDARIES = ["circular", "symmetric", "reflect"] as const;

const GAUSSIAN_ONLY = ["sigma", "sigma_x", "sigma_y", "angle"] as const;

const blurOptions = z.strictObject({
  kernel: z.enum(KERNELS).default("gaussian").describe("gaussian | motion | file"),
  sigma: z.number().positive().optional().describe("Gaussian σ in pixels (default 3)"),
  sigma_x: z.number().positive().optional().describe("Gaussian σ along columns (default sigma)"),
  sigma_y: z.number().positive().optional().describe("Gaussian σ along rows (default sigma)"),
  angle: z.number().finite().optional().describe("Gaussian rotation in degrees (default 0)"),
  size: z.number().int().min(1).optional().describe(
    "kernel size: motion default 61; Gaussian default 2·int(σ/0.3+1)+1",
  ),
  intensity: z.number().min(0).max(1).optional().describe("motion intensity (default 0.5)"),
  path: z.string().min(1).optional().describe("kernel file (.png, .npy) for kernel=file"),
  boundary: z.enum(BOUNDARIES).default("circular").describe("circular | symmetric | reflect"),
}).superRefine((o, ctx) => {
  const issue = (path: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [path], message });
  if (o.kernel !== "gaussian") {
    for (const key of GAUSSIAN_ONLY) {
      if (o[key] !== undefined) issue(key, `applies to kernel=gaussian only`);
    }
  }
  if (o.kernel !== "motion" && o.intensity !== undefined) {
    issue("intensity", "applies to kernel=motion only");
  }
  if (o.kernel === "file") {
    if (o.path === undefined) issue("path", "kernel=file needs path=FILE (.png or .npy)");
    if (o.size !== undefined) issue("size", "does not apply to kernel=file");
  } else if (o.path !== undefined) issue("path", "applies to kernel=file only");
});

/** Options of the "blur" operator (after validation; unset options take the defaults shown). */
export interface BlurOptions {
  /** Kernel family (default gaussian). */
  kernel: "gaussian" | "motion" | "file";
  /** Gaussian σ in pixels (default 3). */
  sigma?: number;
  /** Gaussian σ along image columns (default sigma). */
  sigma_x?: number;
  /** Gaussian σ along image rows (default sigma). */
  sigma_y?: number;
  /** Gaussian rotation in degrees (default 0). */
  angle?: number;
  /** Kernel size: motion default 61; Gaussian default 2·int(max σ/0.3 + 1) + 1. */
  size?: number;
  /** Motion intensity in [0,1] (default 0.5). */
  intensity?: number;
  /** Kernel file (.png, .npy) for kernel=file. */
  path?: string;
  /** Boundary rule (default circular). */
  boundary: BlurBoundary;
}

/**
 * The "blur" operator plugin: `blur:kernel=gaussian|motion|file,sigma=3,sigma_x=…,sigma_y=…,
 * angle=0,size=…,intensity=0.5,path=FILE,boundary=circular|symmetric|reflect`.
 *
 * Defaults follow LATINO: deepinv's Gaussian kernel and circular boundary (closed-form FFT prox).
 * `boundary=symmetric` is closed form (DCT) for the Gaussian and CG otherwise; `reflect` (deepinv's
 * `Blur(padding="reflect")`, DPS-style codebases) is always CG. Motion kernels are drawn from the
 * operator's random stream, so they depend only on (seed, spec). `pseudoInverse` is Aᵀy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createOperator, PluginRegistry } from "../core/registry.ts";
 * import { blurPlugin } from "./blur.ts";
 * const reg = new PluginRegistry().register(blurPlugin);
 * const op = await createOperator(reg, "blur:sigma=1,boundary=symmetric", [1, 1, 16, 16], 0);
 * const y = await op.forward({ data: new Float32Array(256).fill(1), shape: [1, 1, 16, 16] });
 * assert.ok(Math.abs(y.data[0] - 1) < 1e-6); // A(1) = 1
 * ```
 */
export const blurPlugin: OperatorPlugin<BlurOptions> = defineOperator<BlurOptions>({
  kind: "operator",
  name: "blur",
  description:
    "convolution blur (Gaussian, random motion or file kernel; circular, symmetric or reflect boundary)",
  options: blurOptions,
  async create(options: BlurOptions, { shape, rng }): Promise<BlurOperator> {
    const [, , H, W] = shape;
    let kernel: Kernel2;
    const resolved: Record<string, unknown> = {
      kernel: options.kernel,
      boundary: options.boundary,
    };
    if (options.kernel === "gaussian") {
      const sigma = options.sigma ?? 3;
      const sx = options.sigma_x ?? sigma,
        sy = options.sigma_y ?? sigma,
        angle = options.angle ?? 0;
      kernel = gaussianKernel(sx, sy, angle, options.size);
      Object.assign(resolved, { sigma_x: sx, sigma_y: sy, angle });
    } else if (options.kernel === "motion") {
      const size = options.size ?? 61, intensity = options.intensity ?? 0.5;
      if (size > H || size > W) {
        throw new InputError(
          `blur: kernel ${size}×${size} is larger than the image ${H}×${W} (height×width)`,
        );
      }
      kernel = motionKernel(size, intensity, rng);
      Object.assign(resolved, { intensity });
    } else {
      kernel = await readKernel(options.path!);
      resolved.path = options.path;
    }
    resolved.size = kernel.h === kernel.w ? kernel.h : [kernel.h, kernel.w];
    if (kernel.h > H || kernel.w > W) {
      throw new InputError(
        `blur: kernel ${kernel.h}×${kernel.w} is larger than the image ${H}×${W} (height×width)`,
      );
    }
    return makeBlurOperator(kernel, options.boundary, shape, resolved);
  },
});

/**
 * Build a blur operator for a given kernel (normalised or not: it is used as given), boundary and
 * image shape [1,C,H,W]. The plugin calls this; tests and other code can too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeBlurOperator } from "./blur.ts";
 * const box = { h: 3, w: 3, data: new Float64Array(9).fill(1 / 9) };
 * const op = makeBlurOperator(box, "circular", [1, 1, 8, 8]);
 * const x = { data: new Float32Array(64).fill(0.5), shape: [1, 1, 8, 8] };
 * const y = await op.forward(x); // a normalised kernel keeps a constant image constant
 * assert.ok(y.data.every((v) => Math.abs(v - 0.5) < 1e-6));
 * ```
 */
export function makeBlurOperator(
  kernel: Kernel2,
  boundary: BlurBoundary,
  shape: readonly number[],
  options: Record<string, unknown> = {},
): BlurOperator {
  const [, , H, W] = shape;
  if (kernel.h > H || kernel.w > W) {
    throw new InputError(
      `blur: kernel ${kernel.h}×${kernel.w} is larger than the image ${H}×${W} (height×width)`,
    );
  }
  let engine: Engine;
  let dctDiagonal: Float64Array | undefined;
  if (boundary === "circular") engine = new CircularEngine(kernel, H, W);
  else if (boundary === "symmetric") {
    const sym = axisSymmetric(kernel);
    if (sym) {
      kernel = sym;
      dctDiagonal = symmetricBlurDctDiagonal(sym, H, W)!;
      engine = new DctEngine(dctDiagonal, H, W);
    } else engine = new PaddedEngine(kernel, H, W, "symmetric");
  } else engine = new PaddedEngine(kernel, H, W, "reflect");

  const imageShape = [...shape];
  const apply = (t: Tensor, f: (x: Float32Array, out: Float32Array) => void) => {
    const out = tensor(imageShape);
    f(t.data, out.data);
    return out;
  };
  const adjoint = (y: Tensor) => apply(y, (y, out) => engine.adjoint(y, out));
  const prox = engine.prox?.bind(engine);
  // The prox with γ from A z, sharing the transforms of z (circular blur); see proxL2Adaptive.
  // deno-lint-ignore require-await -- async so that shape errors reject instead of throwing
  const proxL2Adaptive = async (
    zt: Tensor,
    y: Tensor,
    gammaOf: (az: Tensor) => number,
    po?: ProxOptions,
  ): Promise<Tensor> => {
    assertShape(zt, imageShape, "blur: z");
    assertShape(y, imageShape, "blur: y");
    const out = po?.out ?? tensor(imageShape);
    assertShape(out, imageShape, "blur: out");
    const step = (az: Float32Array) => {
      const gamma = gammaOf({ data: az, shape: [...imageShape] });
      if (!(gamma >= 0) || !Number.isFinite(gamma)) {
        throw new RangeError(`blur: prox step γ must be finite and ≥ 0, got ${gamma}`);
      }
      return gamma;
    };
    const r2 = engine.proxAdaptive!(zt.data, y.data, step, out.data, po?.report !== undefined);
    if (po?.report) po.report.residual = Math.sqrt(r2);
    return out;
  };
  return linearOperator({
    name: "blur",
    options,
    inputShape: imageShape,
    outputShape: imageShape,
    forward: (x) => apply(x, (x, out) => engine.forward(x, out)),
    adjoint,
    prox: prox && ((zt: Tensor, y: Tensor, gamma: number, proxOptions: ProxOptions) => {
      const out = proxOptions.out ?? tensor(imageShape);
      const report = proxOptions.report;
      const r2 = prox(zt.data, y.data, gamma, out.data, report !== undefined);
      if (report) report.residual = Math.sqrt(r2);
      return out;
    }),
    /** Aᵀy, LATINO's initialisation. */
    pseudoInverse: adjoint,
    artifacts: () => ({ kernel: kernelTensor(kernel) }),
    exportOnnx: (o) => blurOnnx(kernel, boundary, imageShape, o),
  }, { kernel, boundary, dctDiagonal, ...(engine.proxAdaptive ? { proxL2Adaptive } : {}) });
}
