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
 * Convolutions run through real-input FFTs (`rfft2`); padded ones on a zero-padded plane of a fast
 * FFT size ≥ the padded image, so 61×61 and 122×122 kernels cost about as much as small ones. The
 * adjoint of "pad then valid convolution" is "full correlation then fold the padded borders back".
 * Everything is computed in float64 and returned as float32.
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator, ProxOptions } from "../core/contracts.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import { InputError } from "../core/errors.ts";
import { assertShape, type Tensor } from "../core/tensor.ts";
import { cgProxL2 } from "../core/linalg/cg.ts";
import { fastFftSize, type RealFft2, rfft2 } from "../core/linalg/fft.ts";
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
// Planes: a [1,C,H,W] tensor as C float64 planes.

function toPlanes(t: Tensor, c: number, n: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let k = 0; k < c; k++) out.push(Float64Array.from(t.data.subarray(k * n, (k + 1) * n)));
  return out;
}

function fromPlanes(planes: Float64Array[], shape: readonly number[]): Tensor {
  const n = planes[0].length;
  const data = new Float32Array(planes.length * n);
  planes.forEach((p, k) => data.set(p, k * n));
  return { data, shape: [...shape] };
}

/** Half spectrum of a real plane (numpy `rfft2` layout, separate real and imaginary parts). */
interface Spectrum {
  re: Float64Array;
  im: Float64Array;
}

/** rfft2 of a real plane. */
function spectrumOf(fft: RealFft2, plane: Float64Array): Spectrum {
  const re = new Float64Array(fft.h * fft.wh), im = new Float64Array(fft.h * fft.wh);
  fft.forward(plane, re, im);
  return { re, im };
}

/**
 * Filter one real plane (h×w of the plan) by the spectrum G of a real kernel, or by conj(G) (the
 * correlation, i.e. the adjoint): F⁻¹(G·F(x)), in place.
 */
function filterPlane(fft: RealFft2, G: Spectrum, conj: boolean, plane: Float64Array): void {
  const { re, im } = spectrumOf(fft, plane);
  const gs = conj ? -1 : 1;
  for (let p = 0; p < re.length; p++) {
    const gr = G.re[p], gi = gs * G.im[p], a = re[p], b = im[p];
    re[p] = a * gr - b * gi;
    im[p] = a * gi + b * gr;
  }
  fft.inverse(re, im, plane);
}

/** Equality of two float32 arrays (for the measurement cache). */
function sameData(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Engines: the math on float64 planes.

/** The operator on float64 planes (one per channel); methods may overwrite their input planes. */
interface Engine {
  forward(x: Float64Array[]): Float64Array[];
  adjoint(y: Float64Array[]): Float64Array[];
  /** Closed-form prox, when there is one. */
  prox?(z: Float64Array[], y: Tensor, gamma: number): Float64Array[];
}

/** Circular convolution: A = F⁻¹ diag(K) F. */
class CircularEngine implements Engine {
  readonly #fft: RealFft2;
  readonly #K: Spectrum;
  #cache: { y: Float32Array; fy: Spectrum[] } | null = null;

  constructor(k: Kernel2, H: number, W: number) {
    this.#fft = rfft2(H, W);
    // The kernel with its centre moved to (0,0), wrapped around.
    const ch = Math.floor(k.h / 2), cw = Math.floor(k.w / 2);
    const plane = new Float64Array(H * W);
    for (let a = 0; a < k.h; a++) {
      for (let b = 0; b < k.w; b++) {
        const i = (a - ch + H) % H, j = (b - cw + W) % W;
        plane[i * W + j] += k.data[a * k.w + b];
      }
    }
    this.#K = spectrumOf(this.#fft, plane);
  }

  forward(x: Float64Array[]): Float64Array[] {
    for (const p of x) filterPlane(this.#fft, this.#K, false, p);
    return x;
  }

  adjoint(y: Float64Array[]): Float64Array[] {
    for (const p of y) filterPlane(this.#fft, this.#K, true, p);
    return y;
  }

  /** F(y_c) per channel, cached for the last y (solvers reuse one measurement). */
  #measurementSpectra(y: Tensor, c: number): Spectrum[] {
    if (this.#cache && sameData(this.#cache.y, y.data)) return this.#cache.fy;
    const fy = toPlanes(y, c, this.#fft.h * this.#fft.w).map((p) => spectrumOf(this.#fft, p));
    this.#cache = { y: y.data.slice(), fy };
    return fy;
  }

  /** x = F⁻¹[(γ·conj(K)·F(y) + F(z)) / (γ|K|² + 1)] per channel. */
  prox(z: Float64Array[], y: Tensor, gamma: number): Float64Array[] {
    const K = this.#K;
    const fy = this.#measurementSpectra(y, z.length);
    z.forEach((plane, c) => {
      const { re, im } = spectrumOf(this.#fft, plane);
      const Y = fy[c];
      for (let p = 0; p < re.length; p++) {
        const kr = K.re[p], ki = K.im[p];
        const den = gamma * (kr * kr + ki * ki) + 1;
        // conj(K)·Y = (kr − i·ki)(yr + i·yi)
        const nr = gamma * (kr * Y.re[p] + ki * Y.im[p]) + re[p];
        const ni = gamma * (kr * Y.im[p] - ki * Y.re[p]) + im[p];
        re[p] = nr / den;
        im[p] = ni / den;
      }
      this.#fft.inverse(re, im, plane);
    });
    return z;
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

/**
 * Pad with a symmetric or reflect extension, then valid convolution, computed as an FFT
 * convolution on an Nh×Nw zero-padded plane (Nh ≥ H + kh − 1, so nothing wraps around).
 */
class PaddedEngine implements Engine {
  readonly #fft: RealFft2;
  readonly #K: Spectrum;
  readonly #rows: Int32Array;
  readonly #cols: Int32Array;
  readonly #H: number;
  readonly #W: number;
  readonly #kh: number;
  readonly #kw: number;

  constructor(k: Kernel2, H: number, W: number, boundary: "symmetric" | "reflect") {
    this.#H = H;
    this.#W = W;
    this.#kh = k.h;
    this.#kw = k.w;
    const Hp = H + k.h - 1, Wp = W + k.w - 1;
    // Rows above the image: kh − 1 − ⌊kh/2⌋; below: ⌊kh/2⌋ (same for columns).
    const top = k.h - 1 - Math.floor(k.h / 2), left = k.w - 1 - Math.floor(k.w / 2);
    this.#rows = Int32Array.from({ length: Hp }, (_, q) => extendIndex(q - top, H, boundary));
    this.#cols = Int32Array.from({ length: Wp }, (_, q) => extendIndex(q - left, W, boundary));
    if (this.#rows.includes(-1) || this.#cols.includes(-1)) {
      throw new InputError(
        `blur: kernel ${k.h}×${k.w} is too large for ${boundary} padding of an image ${H}×${W}`,
      );
    }
    this.#fft = rfft2(fastFftSize(Hp), fastFftSize(Wp));
    const Nw = this.#fft.w;
    const plane = new Float64Array(this.#fft.h * Nw);
    for (let a = 0; a < k.h; a++) {
      for (let b = 0; b < k.w; b++) plane[a * Nw + b] = k.data[a * k.w + b];
    }
    this.#K = spectrumOf(this.#fft, plane);
  }

  forward(x: Float64Array[]): Float64Array[] {
    const H = this.#H, W = this.#W, rows = this.#rows, cols = this.#cols;
    const Nw = this.#fft.w, oh = this.#kh - 1, ow = this.#kw - 1;
    const buf = new Float64Array(this.#fft.h * Nw);
    return x.map((src) => {
      buf.fill(0);
      for (let q = 0; q < rows.length; q++) {
        const o = q * Nw, s = rows[q] * W;
        for (let p = 0; p < cols.length; p++) buf[o + p] = src[s + cols[p]];
      }
      filterPlane(this.#fft, this.#K, false, buf);
      const dst = new Float64Array(H * W);
      for (let i = 0; i < H; i++) {
        const o = (i + oh) * Nw + ow;
        for (let j = 0; j < W; j++) dst[i * W + j] = buf[o + j];
      }
      return dst;
    });
  }

  adjoint(y: Float64Array[]): Float64Array[] {
    const H = this.#H, W = this.#W, rows = this.#rows, cols = this.#cols;
    const Nw = this.#fft.w, oh = this.#kh - 1, ow = this.#kw - 1;
    const buf = new Float64Array(this.#fft.h * Nw);
    return y.map((src) => {
      buf.fill(0);
      for (let i = 0; i < H; i++) {
        const o = (i + oh) * Nw + ow;
        for (let j = 0; j < W; j++) buf[o + j] = src[i * W + j];
      }
      filterPlane(this.#fft, this.#K, true, buf);
      // Transpose of the padding: every padded sample adds into the pixel it was copied from.
      const dst = new Float64Array(H * W);
      for (let q = 0; q < rows.length; q++) {
        const o = q * Nw, r = rows[q] * W;
        for (let p = 0; p < cols.length; p++) dst[r + cols[p]] += buf[o + p];
      }
      return dst;
    });
  }
}

/** Symmetric boundary with an axis-symmetric kernel: A = Φᵀ diag(h) Φ (self-adjoint). */
class DctEngine implements Engine {
  readonly #H: number;
  readonly #W: number;
  #cache: { y: Float32Array; hy: Float64Array[] } | null = null;
  constructor(readonly diag: Float64Array, H: number, W: number) {
    this.#H = H;
    this.#W = W;
  }
  forward(x: Float64Array[]): Float64Array[] {
    const d = dct2(this.#H, this.#W), h = this.diag;
    return x.map((p) => {
      const q = p.slice();
      d.forward(q);
      for (let i = 0; i < q.length; i++) q[i] *= h[i];
      d.inverse(q);
      return q;
    });
  }
  adjoint(y: Float64Array[]): Float64Array[] {
    return this.forward(y);
  }
  /** Φᵀ[(γ·h·Φy + Φz) / (γh² + 1)]; h·Φy is cached for the last y. */
  prox(z: Float64Array[], y: Tensor, gamma: number): Float64Array[] {
    const d = dct2(this.#H, this.#W), h = this.diag, n = this.#H * this.#W;
    if (!this.#cache || !sameData(this.#cache.y, y.data)) {
      const hy = toPlanes(y, z.length, n).map((p) => {
        d.forward(p);
        for (let i = 0; i < n; i++) p[i] *= h[i];
        return p;
      });
      this.#cache = { y: y.data.slice(), hy };
    }
    const hy = this.#cache.hy;
    return z.map((p, k) => {
      const q = p.slice();
      d.forward(q);
      const b = hy[k];
      for (let i = 0; i < n; i++) q[i] = (gamma * b[i] + q[i]) / (gamma * h[i] * h[i] + 1);
      d.inverse(q);
      return q;
    });
  }
}

/**
 * The DCT-II diagonal of the half-sample symmetric blur with an odd, axis-symmetric kernel on an
 * H×W image: h = Φ(A e₀) / Φ(e₀), e₀ the unit impulse at (0,0) (Φ e₀ has no zero entry). Returns
 * null when the kernel is not axis-symmetric with odd sizes (then A is not DCT-diagonal).
 *
 * @example
 * ```ts
 * import { symmetricBlurDctDiagonal } from "./blur.ts";
 * import { gaussianKernel } from "./kernels.ts";
 * const h = symmetricBlurDctDiagonal(gaussianKernel(1.5), 16, 16)!;
 * console.assert(Math.abs(h[0] - 1) < 1e-12); // A(1) = 1: the DC gain is the kernel sum
 * ```
 */
export function symmetricBlurDctDiagonal(k: Kernel2, H: number, W: number): Float64Array | null {
  const sym = axisSymmetric(k);
  if (!sym) return null;
  const e0 = new Float64Array(H * W);
  e0[0] = 1;
  const ae0 = new PaddedEngine(sym, H, W, "symmetric").forward([e0])[0];
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
 * import { createOperator, PluginRegistry } from "../mod.ts";
 * import { blurPlugin } from "./blur.ts";
 * const reg = new PluginRegistry().register(blurPlugin);
 * const op = await createOperator(reg, "blur:sigma=1,boundary=symmetric", [1, 1, 16, 16], 0);
 * const y = await op.forward({ data: new Float32Array(256).fill(1), shape: [1, 1, 16, 16] });
 * console.assert(Math.abs(y.data[0] - 1) < 1e-6); // A(1) = 1
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
  const [, C, H, W] = shape;
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

  const n = H * W;
  const imageShape = [...shape];
  // deno-lint-ignore require-await -- async so that shape errors reject instead of throwing
  const run = async (t: Tensor, what: string, f: (p: Float64Array[]) => Float64Array[]) => {
    assertShape(t, imageShape, what);
    return fromPlanes(f(toPlanes(t, C, n)), imageShape);
  };
  const forward = (x: Tensor) => run(x, "blur: x", (p) => engine.forward(p));
  const adjoint = (y: Tensor) => run(y, "blur: y", (p) => engine.adjoint(p));
  const op: BlurOperator = {
    name: "blur",
    options,
    inputShape: imageShape,
    outputShape: imageShape,
    capabilities: { linear: true, closedFormProx: engine.prox !== undefined, differentiable: true },
    kernel,
    boundary,
    dctDiagonal,
    forward,
    adjoint,
    // deno-lint-ignore require-await -- async so that shape errors reject instead of throwing
    async vjp(x: Tensor, g: Tensor) {
      assertShape(x, imageShape, "blur: x");
      return adjoint(g);
    },
    async proxL2(zt: Tensor, y: Tensor, gamma: number, proxOptions?: ProxOptions) {
      assertShape(zt, imageShape, "blur: z");
      assertShape(y, imageShape, "blur: y");
      if (!(gamma >= 0) || !Number.isFinite(gamma)) {
        throw new RangeError(`blur: prox step γ must be finite and ≥ 0, got ${gamma}`);
      }
      if (engine.prox) return fromPlanes(engine.prox(toPlanes(zt, C, n), y, gamma), imageShape);
      return await cgProxL2(op, zt, y, gamma, proxOptions);
    },
    /** Aᵀy, LATINO's initialisation. */
    pseudoInverse: adjoint,
    artifacts: () => ({ kernel: kernelTensor(kernel) }),
    exportOnnx: (o) => blurOnnx(kernel, boundary, imageShape, o),
  };
  return op;
}
