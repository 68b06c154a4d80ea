/**
 * Blur kernels: deepinv's Gaussian, the LeviBorodenko/motionblur random motion kernel used by
 * DPS/PSLD/SILO/LATINO, and kernels read from a file. Every kernel is float64, row-major, non-empty
 * and normalised to sum 1.
 *
 * Centre convention (shared with the blur operator): the centre of a kh×kw kernel is the pixel
 * (⌊kh/2⌋, ⌊kw/2⌋), as in deepinv's `filter_fft_2d`; for odd sizes it is the middle pixel.
 *
 * @module
 */
import type { RandomStream } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import { InputError } from "../core/errors.ts";
import { readTensor } from "../core/io/image.ts";

/** A 2-D kernel, row-major float64. */
export interface Kernel2 {
  /** Rows. */
  readonly h: number;
  /** Columns. */
  readonly w: number;
  /** h·w values, row-major. */
  readonly data: Float64Array;
}

/** Divide by the sum; throws when the sum is not positive and finite. */
export function normalizeKernel(k: Kernel2, what = "kernel"): Kernel2 {
  let s = 0;
  for (const v of k.data) s += v;
  if (!(s > 0) || !Number.isFinite(s)) {
    throw new InputError(`${what}: the kernel sum is ${s}, expected a positive finite number`);
  }
  return { h: k.h, w: k.w, data: k.data.map((v) => v / s) };
}

/** The kernel as a [1,1,kh,kw] float32 tensor (for artifacts). */
export function kernelTensor(k: Kernel2): Tensor {
  return { data: Float32Array.from(k.data), shape: [1, 1, k.h, k.w] };
}

/** deepinv's default Gaussian kernel size 2c+1 with c = int(max σ / 0.3 + 1). σ = 3 → 23. */
export function gaussianKernelSize(sigma: number): number {
  return 2 * Math.trunc(sigma / 0.3 + 1) + 1;
}

/**
 * deepinv's `gaussian_blur` kernel: size 2c+1 with c = int(max(σx, σy)/0.3 + 1) unless `size` is
 * given, G(i,j) ∝ exp(−u²/(2σx²) − v²/(2σy²)), normalised to sum 1, where (dx, dy) = (j − c_w,
 * i − c_h) are the column/row offsets from the centre ((size−1)/2) and (u, v) are those offsets
 * rotated by `angle` degrees: u = dx cos θ + dy sin θ, v = −dx sin θ + dy cos θ. σx acts along
 * image columns (horizontal), σy along rows.
 *
 * DEVIATION: deepinv builds an anisotropic kernel and then rotates the sampled image bilinearly;
 * here the rotated Gaussian is evaluated in closed form (identical for angle = 0 or σx = σy).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gaussianKernel } from "./kernels.ts";
 * const k = gaussianKernel(3);
 * assert.ok(k.h === 23 && k.w === 23);
 * ```
 */
export function gaussianKernel(
  sigmaX: number,
  sigmaY = sigmaX,
  angleDeg = 0,
  size?: number,
): Kernel2 {
  if (!(sigmaX > 0) || !(sigmaY > 0)) throw new RangeError("gaussianKernel: σ must be > 0");
  const n = size ?? gaussianKernelSize(Math.max(sigmaX, sigmaY));
  const c = (n - 1) / 2;
  const th = (angleDeg * Math.PI) / 180;
  const ct = Math.cos(th), st = Math.sin(th);
  const data = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const dx = j - c, dy = i - c;
      const u = angleDeg === 0 ? dx : dx * ct + dy * st;
      const v = angleDeg === 0 ? dy : -dx * st + dy * ct;
      data[i * n + j] = Math.exp(
        -(u * u) / (2 * sigmaX * sigmaX) - (v * v) / (2 * sigmaY * sigmaY),
      );
    }
  }
  return normalizeKernel({ h: n, w: n, data });
}

// ---------------------------------------------------------------------------------------------
// Random variates from uniforms (all draws from the operator's stream).

/** Beta(1, b) by inversion: 1 − U^{1/b}. */
function beta1(rng: RandomStream, b: number): number {
  return 1 - Math.pow(1 - rng.uniform(), 1 / b);
}

/** Gamma(k, 1) for integer k: −log of a product of k uniforms on (0, 1]. */
function gammaInt(rng: RandomStream, k: number): number {
  let s = 0;
  for (let i = 0; i < k; i++) s -= Math.log(1 - rng.uniform());
  return s;
}

/** Beta(a, b) for integer a, b: X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b). */
function betaInt(rng: RandomStream, a: number, b: number): number {
  const x = gammaInt(rng, a), y = gammaInt(rng, b);
  return x / (x + y);
}

/** Triangular(left, mode, right) by inversion of its CDF. */
function triangular(rng: RandomStream, left: number, mode: number, right: number): number {
  const u = rng.uniform();
  const f = (mode - left) / (right - left);
  return u < f
    ? left + Math.sqrt(u * (right - left) * (mode - left))
    : right - Math.sqrt((1 - u) * (right - left) * (right - mode));
}

// ---------------------------------------------------------------------------------------------
// Raster helpers on single-channel 8-bit-valued float64 canvases (values 0…255).

/** A single-channel canvas. */
interface Canvas {
  w: number;
  h: number;
  data: Float64Array;
}

/** Round to the 8-bit grid and clamp to [0, 255], as PIL stores every intermediate image. */
function quantize8(c: Canvas): void {
  const d = c.data;
  for (let i = 0; i < d.length; i++) d[i] = Math.min(255, Math.max(0, Math.round(d[i])));
}

/** A 1-pixel line between rounded endpoints (Bresenham), value `ink`. */
function thinSegment(c: Canvas, x0: number, y0: number, x1: number, y1: number, ink: number) {
  let x = Math.round(x0), y = Math.round(y0);
  const xe = Math.round(x1), ye = Math.round(y1);
  const dx = Math.abs(xe - x), dy = -Math.abs(ye - y);
  const sx = x < xe ? 1 : -1, sy = y < ye ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    if (x >= 0 && x < c.w && y >= 0 && y < c.h) c.data[y * c.w + x] = ink;
    if (x === xe && y === ye) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
}

/**
 * A wide segment: every pixel whose centre (integer coordinates, as in PIL) lies in the rectangle
 * of the given width around the segment, without end caps (PIL draws a polygon per segment).
 */
function wideSegment(
  c: Canvas,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  width: number,
  ink: number,
) {
  const len = Math.hypot(x1 - x0, y1 - y0);
  if (len === 0) return;
  const ux = (x1 - x0) / len, uy = (y1 - y0) / len, half = width / 2;
  const xa = Math.max(0, Math.floor(Math.min(x0, x1) - half));
  const xb = Math.min(c.w - 1, Math.ceil(Math.max(x0, x1) + half));
  const ya = Math.max(0, Math.floor(Math.min(y0, y1) - half));
  const yb = Math.min(c.h - 1, Math.ceil(Math.max(y0, y1) + half));
  for (let y = ya; y <= yb; y++) {
    for (let x = xa; x <= xb; x++) {
      const px = x - x0, py = y - y0;
      const t = px * ux + py * uy, d = Math.abs(-px * uy + py * ux);
      if (t >= 0 && t <= len && d <= half) c.data[y * c.w + x] = ink;
    }
  }
}

/** Separable Gaussian blur with standard deviation σ (edge pixels extended), truncated at 4σ. */
function gaussianBlur(c: Canvas, sigma: number): void {
  const r = Math.ceil(4 * sigma);
  const g = new Float64Array(2 * r + 1);
  let s = 0;
  for (let t = -r; t <= r; t++) s += g[t + r] = Math.exp(-(t * t) / (2 * sigma * sigma));
  for (let t = 0; t < g.length; t++) g[t] /= s;
  const { w, h } = c;
  const tmp = new Float64Array(w * h);
  const clampI = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let t = -r; t <= r; t++) acc += g[t + r] * c.data[y * w + clampI(x + t, w)];
      tmp[y * w + x] = acc;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let t = -r; t <= r; t++) acc += g[t + r] * tmp[clampI(y + t, h) * w + x];
      c.data[y * w + x] = acc;
    }
  }
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** Lanczos-3 window, PIL's definition. */
function lanczos3(x: number): number {
  return x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

/**
 * PIL-style antialiased resampling weights of one axis, `inSize` → `outSize`: output pixel i has
 * centre (i + ½)·scale in input coordinates, support 3·max(scale, 1), normalised weights.
 */
function resampleWeights(inSize: number, outSize: number): { start: number[]; w: number[][] } {
  const scale = inSize / outSize, fs = Math.max(scale, 1), support = 3 * fs;
  const start: number[] = [], w: number[][] = [];
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
    const hi = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const ws: number[] = [];
    let s = 0;
    for (let x = lo; x < hi; x++) {
      const v = lanczos3((x - centre + 0.5) / fs);
      ws.push(v);
      s += v;
    }
    w.push(ws.map((v) => (s !== 0 ? v / s : 0)));
    start.push(lo);
  }
  return { start, w };
}

/** Lanczos-3 resize, horizontal pass then vertical, each rounded to 8 bits as PIL does. */
function resizeLanczos(c: Canvas, outW: number, outH: number): Canvas {
  const hx = resampleWeights(c.w, outW), hy = resampleWeights(c.h, outH);
  const mid: Canvas = { w: outW, h: c.h, data: new Float64Array(outW * c.h) };
  for (let y = 0; y < c.h; y++) {
    for (let x = 0; x < outW; x++) {
      let acc = 0;
      const ws = hx.w[x], s0 = hx.start[x];
      for (let t = 0; t < ws.length; t++) acc += ws[t] * c.data[y * c.w + s0 + t];
      mid.data[y * outW + x] = acc;
    }
  }
  quantize8(mid);
  const out: Canvas = { w: outW, h: outH, data: new Float64Array(outW * outH) };
  for (let y = 0; y < outH; y++) {
    const ws = hy.w[y], s0 = hy.start[y];
    for (let x = 0; x < outW; x++) {
      let acc = 0;
      for (let t = 0; t < ws.length; t++) acc += ws[t] * mid.data[(s0 + t) * outW + x];
      out.data[y * outW + x] = acc;
    }
  }
  quantize8(out);
  return out;
}

/** Draws in the step loop before giving up on a pathologically short maximal path length. */
const MAX_STEP_DRAWS = 100_000;

/**
 * A random motion-blur kernel (size×size), following the algorithm of LeviBorodenko/motionblur
 * `Kernel(size, intensity)` as used by DPS, PSLD, SILO (61×61) and LATINO (122×122), with I the
 * intensity in [0,1] and every draw taken from `rng`:
 *
 * 1. Canvas 2·size × 2·size, diagonal D.
 * 2. Path length bound L = 0.75·D·(U(0,1) + U(0, I²)); steps β(1,30)·(1 − I + 0.1)·D are drawn,
 *    those < L kept, while their sum is < L.
 * 3. Angles: Θ = U(0, I·π), jitter J = β(2,20); the first angle is U(−Θ, Θ); each next one is
 *    triangular(0, I·Θ, Θ + 0.1) with the sign of the previous angle, flipped with probability J.
 * 4. The path is the cumulative sum of step·e^{i·angle}; its centre of mass is moved to the canvas
 *    centre after a rotation by U(0, π).
 * 5. The path is drawn white on black as a polyline of width int(D/150).
 * 6. Gaussian blur of radius int(0.01·D), Lanczos resize to size×size, normalise to sum 1.
 *
 * DEVIATION: PIL's rasteriser, its box-filter GaussianBlur approximation and its fixed-point
 * resampling are replaced by a Bresenham line (width ≤ 1; width 0 is drawn as 1, like PIL), a
 * per-segment rectangle fill (wider lines), an exact sampled Gaussian with σ = radius and a
 * floating-point Lanczos-3 resampler with PIL's support and centring; the 8-bit rounding and
 * clipping of every intermediate PIL image is kept (it makes the kernel non-negative). Kernels are
 * therefore statistically alike, not bit-identical, to the Python generator's. The step loop gives
 * up after 100 000 draws (only reachable when L is nearly 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { motionKernel } from "./kernels.ts";
 * import { streams } from "../core/rng.ts";
 * const k = motionKernel(9, 0.5, streams(0).get("operator"));
 * assert.ok(k.h === 9 && Math.abs(k.data.reduce((a, b) => a + b) - 1) < 1e-12);
 * ```
 */
export function motionKernel(size: number, intensity: number, rng: RandomStream): Kernel2 {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`motion kernel size ${size}`);
  if (!(intensity >= 0 && intensity <= 1)) throw new RangeError(`motion intensity ${intensity}`);
  const I = intensity, eps = 0.1;
  const W = 2 * size, H = 2 * size;
  const D = Math.hypot(W, H);

  // Steps.
  const maxLen = 0.75 * D * (rng.uniform() + I * I * rng.uniform());
  const steps: number[] = [];
  let total = 0;
  for (let draws = 0; total < maxLen && draws < MAX_STEP_DRAWS; draws++) {
    const step = beta1(rng, 30) * (1 - I + eps) * D;
    if (step < maxLen) {
      steps.push(step);
      total += step;
    }
  }

  // Angles.
  const maxAngle = rng.uniform() * I * Math.PI;
  const jitter = betaInt(rng, 2, 20);
  const angles: number[] = [];
  if (steps.length > 0) angles.push(-maxAngle + 2 * maxAngle * rng.uniform());
  while (angles.length < steps.length) {
    let a = triangular(rng, 0, I * maxAngle, maxAngle + eps);
    const prevSign = Math.sign(angles[angles.length - 1]);
    a *= rng.uniform() < jitter ? -prevSign : prevSign;
    angles.push(a);
  }

  // Path: cumulative sum, centre of mass to the canvas centre after a random rotation.
  const n = steps.length;
  const px = new Float64Array(Math.max(n, 1)), py = new Float64Array(Math.max(n, 1));
  let cx = 0, cy = 0;
  for (let k = 0; k < n; k++) {
    cx += steps[k] * Math.cos(angles[k]);
    cy += steps[k] * Math.sin(angles[k]);
    px[k] = cx;
    py[k] = cy;
  }
  let mx = 0, my = 0;
  for (let k = 0; k < n; k++) {
    mx += px[k] / n;
    my += py[k] / n;
  }
  const rot = rng.uniform() * Math.PI, rc = Math.cos(rot), rs = Math.sin(rot);
  for (let k = 0; k < px.length; k++) {
    const x = px[k] - mx, y = py[k] - my;
    px[k] = x * rc - y * rs + W / 2;
    py[k] = x * rs + y * rc + H / 2;
  }

  // Raster, blur, resize, normalise.
  const canvas: Canvas = { w: W, h: H, data: new Float64Array(W * H) };
  const width = Math.trunc(D / 150);
  if (px.length === 1) thinSegment(canvas, px[0], py[0], px[0], py[0], 255);
  for (let k = 0; k + 1 < px.length; k++) {
    if (width <= 1) thinSegment(canvas, px[k], py[k], px[k + 1], py[k + 1], 255);
    else wideSegment(canvas, px[k], py[k], px[k + 1], py[k + 1], width, 255);
  }
  const radius = Math.trunc(0.01 * D);
  if (radius > 0) {
    gaussianBlur(canvas, radius);
    quantize8(canvas);
  }
  const small = resizeLanczos(canvas, size, size);
  let s = 0;
  for (const v of small.data) s += v;
  if (s === 0) {
    // Only possible for tiny kernels whose whole path left the canvas: fall back to the identity.
    small.data[Math.floor(size / 2) * size + Math.floor(size / 2)] = 1;
  }
  return normalizeKernel({ h: size, w: size, data: small.data }, "motion kernel");
}

/**
 * Read a kernel from an image (PNG, …) or `.npy` file: channels are averaged, the result is
 * normalised to sum 1. Throws an InputError naming the file when it cannot be used.
 */
export async function readKernel(path: string): Promise<Kernel2> {
  const t = await readTensor(path);
  const [, c, h, w] = t.shape;
  const data = new Float64Array(h * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h * w; i++) data[i] += t.data[k * h * w + i] / c;
  }
  for (const v of data) {
    if (!Number.isFinite(v)) throw new InputError(`kernel file ${path}: holds NaN or Inf`);
  }
  if (h < 1 || w < 1) throw new InputError(`kernel file ${path}: the kernel is empty`);
  return normalizeKernel({ h, w, data }, `kernel file ${path}`);
}

/**
 * When the kernel has odd sizes and is symmetric under flips of each axis (to 1e-6 of its largest
 * magnitude), return it exactly symmetrised (the average of its four flips); otherwise null. Such
 * kernels are diagonalised by the DCT-II under the half-sample symmetric boundary.
 */
export function axisSymmetric(k: Kernel2, tol = 1e-6): Kernel2 | null {
  const { h, w, data } = k;
  if (h % 2 === 0 || w % 2 === 0) return null;
  let max = 0;
  for (const v of data) max = Math.max(max, Math.abs(v));
  const out = new Float64Array(h * w);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const a = data[i * w + j], b = data[(h - 1 - i) * w + j], c = data[i * w + (w - 1 - j)];
      if (Math.abs(a - b) > tol * max || Math.abs(a - c) > tol * max) return null;
      out[i * w + j] = 0.25 *
        (a + b + c + data[(h - 1 - i) * w + (w - 1 - j)]);
    }
  }
  return { h, w, data: out };
}
