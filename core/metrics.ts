/**
 * Image quality metrics on the [0,1] scale: PSNR, SSIM, and measurement-consistency PSNR.
 *
 * SSIM follows Wang et al. (2004) as scikit-image computes it with
 * `structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
 * data_range=1, channel_axis=…)`:
 *
 *   μ_x = G ∗ x,  σ_x² = G ∗ x² − μ_x²,  σ_xy = G ∗ (x y) − μ_x μ_y   (population moments)
 *   S = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)),
 *   C₁ = (K₁ R)², C₂ = (K₂ R)², K₁ = 0.01, K₂ = 0.03, R = 1,
 *
 * with G the normalised Gaussian of σ = 1.5 truncated at 3.5 σ (radius r = ⌊3.5·1.5 + 0.5⌋ = 5, an
 * 11×11 window). scikit-image filters the whole image and then crops r pixels from every border
 * before averaging S; the kept pixels are exactly those whose window lies inside the image, so the
 * border mode never matters and this module filters only that "valid" region. The per-channel means
 * are averaged. Sums are in float64.
 *
 * @module
 */
import type { ForwardOperator } from "./contracts.ts";
import { InputError } from "./errors.ts";
import { sameShape, type Tensor } from "./tensor.ts";

function assertSameShape(a: Tensor, b: Tensor, whatA: string, whatB: string): void {
  if (!sameShape(a.shape, b.shape)) {
    throw new InputError(
      `${whatA} has shape [${a.shape}] but ${whatB} has shape [${b.shape}]; they must match`,
    );
  }
}

/**
 * Mean squared error, accumulated in float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mse } from "./metrics.ts";
 * const a = { data: new Float32Array([0, 0]), shape: [1, 1, 1, 2] };
 * const b = { data: new Float32Array([0.5, 0.5]), shape: [1, 1, 1, 2] };
 * assert.ok(mse(a, b) === 0.25);
 * ```
 */
export function mse(a: Tensor, b: Tensor): number {
  assertSameShape(a, b, "first image", "second image");
  let s = 0;
  const ad = a.data, bd = b.data;
  for (let i = 0; i < ad.length; i++) {
    const d = ad[i] - bd[i];
    s += d * d;
  }
  return s / ad.length;
}

/**
 * Peak signal-to-noise ratio in dB over all pixels and channels:
 * PSNR = 10 log₁₀(R² / MSE), R = `dataRange` (1 for [0,1] images). Identical images give +∞.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { psnr } from "./metrics.ts";
 * const a = { data: new Float32Array(4).fill(0.5), shape: [1, 1, 2, 2] };
 * const b = { data: new Float32Array(4).fill(0.6), shape: [1, 1, 2, 2] };
 * assert.ok(Math.abs(psnr(a, b) - 20) < 1e-5); // MSE = 0.01
 * ```
 */
export function psnr(a: Tensor, b: Tensor, dataRange = 1): number {
  const m = mse(a, b);
  return m === 0 ? Infinity : 10 * Math.log10((dataRange * dataRange) / m);
}

/** Options of {@link ssim}; the defaults are the Wang et al. / scikit-image Gaussian settings. */
export interface SsimOptions {
  /** Gaussian window σ in pixels. Default 1.5. */
  sigma?: number;
  /** Window radius in σ: r = ⌊truncate·σ + 0.5⌋. Default 3.5 (11×11 for σ = 1.5). */
  truncate?: number;
  /** Luminance constant K₁. Default 0.01. */
  k1?: number;
  /** Contrast constant K₂. Default 0.03. */
  k2?: number;
  /** Data range R. Default 1. */
  dataRange?: number;
}

/**
 * The normalised 1-D Gaussian g[k] ∝ exp(−k²/(2σ²)), k = −r…r (as scipy.ndimage builds it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gaussianWindow } from "./metrics.ts";
 * const g = gaussianWindow(1.5, 3.5); // radius ⌊3.5·1.5 + 0.5⌋ = 5
 * assert.equal(g.length, 11);
 * assert.ok(Math.abs(g.reduce((s, v) => s + v, 0) - 1) < 1e-12);
 * ```
 */
export function gaussianWindow(sigma: number, truncate: number): Float64Array {
  const r = Math.floor(truncate * sigma + 0.5);
  const g = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let k = -r; k <= r; k++) sum += g[k + r] = Math.exp(-0.5 * k * k / (sigma * sigma));
  for (let k = 0; k < g.length; k++) g[k] /= sum;
  return g;
}

/**
 * Mean SSIM of one channel (planes of h×w, row-major), over the valid region only.
 * Separable filtering: rows first (h × w'), then columns (h' × w'), five moments at once.
 */
function ssimPlane(
  x: Float32Array,
  y: Float32Array,
  h: number,
  w: number,
  g: Float64Array,
  c1: number,
  c2: number,
): number {
  const win = g.length, wv = w - win + 1, hv = h - win + 1;
  // Horizontal pass: five moment maps of size h × wv.
  const rx = new Float64Array(h * wv), ry = new Float64Array(h * wv);
  const rxx = new Float64Array(h * wv), ryy = new Float64Array(h * wv);
  const rxy = new Float64Array(h * wv);
  for (let i = 0; i < h; i++) {
    const row = i * w;
    for (let j = 0; j < wv; j++) {
      let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (let k = 0; k < win; k++) {
        const a = x[row + j + k], b = y[row + j + k], gk = g[k];
        sx += gk * a;
        sy += gk * b;
        sxx += gk * a * a;
        syy += gk * b * b;
        sxy += gk * a * b;
      }
      const o = i * wv + j;
      rx[o] = sx;
      ry[o] = sy;
      rxx[o] = sxx;
      ryy[o] = syy;
      rxy[o] = sxy;
    }
  }
  // Vertical pass and the SSIM map, accumulated into its mean.
  let total = 0;
  for (let i = 0; i < hv; i++) {
    for (let j = 0; j < wv; j++) {
      let ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
      for (let k = 0; k < win; k++) {
        const o = (i + k) * wv + j, gk = g[k];
        ux += gk * rx[o];
        uy += gk * ry[o];
        uxx += gk * rxx[o];
        uyy += gk * ryy[o];
        uxy += gk * rxy[o];
      }
      const vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
      total += ((2 * ux * uy + c1) * (2 * vxy + c2)) /
        ((ux * ux + uy * uy + c1) * (vx + vy + c2));
    }
  }
  return total / (hv * wv);
}

/**
 * Structural similarity of two [1,C,H,W] images: the Gaussian-window SSIM of each channel,
 * averaged over channels (see the module doc for the formula). Needs H, W ≥ 11 with the default
 * window; smaller images are refused with an InputError.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ssim } from "./metrics.ts";
 * const a = { data: new Float32Array(3 * 16 * 16).map((_, i) => (i % 7) / 7), shape: [1, 3, 16, 16] };
 * assert.ok(Math.abs(ssim(a, a) - 1) < 1e-12);
 * ```
 */
export function ssim(a: Tensor, b: Tensor, options: SsimOptions = {}): number {
  assertSameShape(a, b, "first image", "second image");
  const { sigma = 1.5, truncate = 3.5, k1 = 0.01, k2 = 0.03, dataRange = 1 } = options;
  if (a.shape.length !== 4 || a.shape[0] !== 1) {
    throw new InputError(`SSIM needs [1,C,H,W] images, got shape [${a.shape}]`);
  }
  const [, c, h, w] = a.shape;
  const g = gaussianWindow(sigma, truncate);
  if (h < g.length || w < g.length) {
    throw new InputError(
      `SSIM needs images of at least ${g.length}×${g.length} pixels, got ${h}×${w}`,
    );
  }
  const c1 = (k1 * dataRange) ** 2, c2 = (k2 * dataRange) ** 2;
  const n = h * w;
  let sum = 0;
  for (let k = 0; k < c; k++) {
    sum += ssimPlane(
      a.data.subarray(k * n, (k + 1) * n),
      b.data.subarray(k * n, (k + 1) * n),
      h,
      w,
      g,
      c1,
      c2,
    );
  }
  return sum / c;
}

/**
 * Measurement-consistency PSNR: PSNR between A(x̂) and the measurement y (data range 1). It tells how
 * well a reconstruction explains the data; for noisy y it saturates near 10 log₁₀(1/σ_y²).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { measurementPsnr } from "./metrics.ts";
 * const identity = { forward: (x: { data: Float32Array; shape: number[] }) => Promise.resolve(x) };
 * const x = { data: new Float32Array(4).fill(0.5), shape: [1, 1, 2, 2] };
 * const y = { data: new Float32Array(4).fill(0.6), shape: [1, 1, 2, 2] };
 * assert.ok(Math.abs((await measurementPsnr(identity, x, y)) - 20) < 1e-5);
 * ```
 */
export async function measurementPsnr(
  op: Pick<ForwardOperator, "forward">,
  xhat: Tensor,
  y: Tensor,
): Promise<number> {
  const ax = await op.forward(xhat);
  assertSameShape(ax, y, "A(x̂)", "the measurement y");
  return psnr(ax, y, 1);
}
