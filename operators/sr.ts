/**
 * Super-resolution: y = A x = (h ∗ x)[::f, ::f], a filter followed by decimation by an integer
 * factor f in both directions (deepinv `Downsampling`, which LATINO uses with `filter="bicubic"`,
 * `padding="reflect"`).
 *
 * Filters (both separable, h = k ⊗ k):
 * - `bicubic`: deepinv's `bicubic_filter(f)`: k_j = W((j − 2f + ½)/f), j = 0 … 4f−1, with Keys' cubic
 *   W (a = −½), normalised to Σk = 1; size 4f×4f. The convolution is a TRUE convolution (deepinv
 *   flips the kernel), padded as deepinv pads an even kernel: (top, bottom, left, right) =
 *   (K/2, K/2 − 1, K/2, K/2 − 1). So y[a,b] = Σ_{k,l} h[K−1−k, K−1−l] x[r(fa + k − K/2), r(fb + l − K/2)],
 *   r = the boundary's index map: whole-sample reflection (PyTorch `reflect`, scipy `mirror`) or
 *   periodic wrap. Low-resolution sample a is centred at high-resolution coordinate fa − ½.
 * - `avgpool`: the mean over each f×f block (P2L's ×8 operator); blocks never cross the border, so
 *   the boundary option does not matter.
 *
 * Adjoint: the exact transpose of the above, i.e. zero-upsampling followed by the transposed
 * convolution with the boundary padding folded back (reflected taps are added onto the pixel they
 * reflect). Implemented as two separable scatter passes, so it is the transpose by construction.
 *
 * L2 prox argmin_u (γ/2)‖Au − y‖² + ½‖u − z‖², with b = γAᵀy + z and the Woodbury identity
 *   u = (I + γAᵀA)⁻¹ b = b − γ Aᵀ (I + γ AAᵀ)⁻¹ A b:
 * - `avgpool`: AAᵀ = I/f² (disjoint blocks of f² weights 1/f²), so per block
 *   u = z + γ (y − mean(z)) / (γ + f²)   — exact, any boundary.
 * - `bicubic` + `circular`: A = S H with H circulant. AAᵀ = S H Hᵀ Sᵀ is circulant on the
 *   low-resolution grid with DFT symbol d(κ) = f⁻² Σ_{aliases m} |Ĥ(κ + m·N/f)|² (decimation folds the
 *   spectrum), and Ĥ = Ĥ_row ⊗ Ĥ_col, so d = d_row ⊗ d_col. The inverse (I + γAAᵀ)⁻¹ is one
 *   low-resolution FFT, a division by 1 + γd, and an inverse FFT. This is the block-splitting
 *   formula of Zhao et al. 2016 (deepinv `Downsampling.prox_l2`, circular padding) written in the
 *   low-resolution domain; A and Aᵀ stay the spatial ones, so prox and operator agree exactly.
 * - `bicubic` + `reflect`: conjugate gradients (`cgProxL2`), as deepinv/LATINO do.
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator, ProxOptions } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import { linearOperator } from "../core/linear_operator.ts";
import { rfft2f32 } from "../core/linalg/fft32.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import { sameBits, type Tensor, tensor } from "../core/tensor.ts";
import { srOnnx } from "./sr_onnx.ts";

/**
 * Keys' cubic convolution kernel W(x) with parameter a (a = −½ is bicubic).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keysCubic } from "./sr.ts";
 * assert.equal(keysCubic(0), 1);
 * assert.equal(keysCubic(1), 0); // interpolating: zero at the other integers
 * assert.equal(keysCubic(0.5), 0.5625);
 * ```
 */
export function keysCubic(x: number, a = -0.5): number {
  const t = Math.abs(x);
  if (t <= 1) return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1;
  if (t < 2) return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a;
  return 0;
}

/**
 * deepinv's 1-D bicubic taps for factor f: k_j ∝ W((j − 2f + ½)/f), j = 0 … 4f−1, Σk = 1.
 * The 2-D kernel is k ⊗ k (deepinv normalises the outer product, which is the same thing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bicubicTaps } from "./sr.ts";
 * const k = bicubicTaps(2);
 * assert.ok(k.length === 8 && Math.abs(k.reduce((s, v) => s + v, 0) - 1) < 1e-12);
 * ```
 */
export function bicubicTaps(factor: number): Float64Array {
  const k = new Float64Array(4 * factor);
  let s = 0;
  for (let j = 0; j < k.length; j++) s += k[j] = keysCubic((j - 2 * factor + 0.5) / factor);
  for (let j = 0; j < k.length; j++) k[j] /= s;
  return k;
}

/**
 * The 1-D taps of a filter: bicubic (4f taps) or box average (f taps of 1/f).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { srFilterTaps } from "./sr.ts";
 * assert.deepEqual(Array.from(srFilterTaps("avgpool", 4)), [0.25, 0.25, 0.25, 0.25]);
 * assert.equal(srFilterTaps("bicubic", 4).length, 16);
 * ```
 */
export function srFilterTaps(filter: "bicubic" | "avgpool", factor: number): Float64Array {
  return filter === "bicubic" ? bicubicTaps(factor) : new Float64Array(factor).fill(1 / factor);
}

/**
 * The 2-D kernel k ⊗ k as a [1,1,K,K] tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { srOuterKernel } from "./sr.ts";
 * const k = srOuterKernel(Float64Array.from([0.5, 0.5]));
 * assert.deepEqual(k.shape, [1, 1, 2, 2]);
 * assert.deepEqual(Array.from(k.data), [0.25, 0.25, 0.25, 0.25]);
 * ```
 */
export function srOuterKernel(taps: Float64Array): Tensor {
  const n = taps.length;
  const t = tensor([1, 1, n, n]);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t.data[i * n + j] = taps[i] * taps[j];
  return t;
}

/** Boundary handling of the SR filter. */
export type SrBoundary = "circular" | "reflect";

/** Index map of a padded position p ∈ [−N+1, 2N−2] onto [0, N). */
export function boundaryIndex(p: number, n: number, boundary: SrBoundary): number {
  if (boundary === "circular") return ((p % n) + n) % n;
  if (p < 0) return -p; // whole-sample reflection: … 2 1 | 0 1 2 … N−1 | N−2 …
  if (p >= n) return 2 * (n - 1) - p;
  return p;
}

/**
 * One axis of the filter-and-decimate operator: out[a] = Σ_k taps[k] · in[idx[a·K + k]].
 * `taps` are the taps as applied (the kernel flipped, for a true convolution).
 */
interface AxisPlan {
  /** High-resolution length N. */
  n: number;
  /** Low-resolution length N/f. */
  m: number;
  /** Taps as applied, length K. */
  taps: Float64Array;
  /** idx[a·K + k] = r(f·a + k − offset). */
  idx: Int32Array;
  /** Decimation factor f and filter offset: output a reads f·a − offset … f·a − offset + K − 1. */
  factor: number;
  offset: number;
  /** Outputs lo ≤ a < hi read a window inside [0, n): contiguous, no index map needed. */
  lo: number;
  hi: number;
}

function axisPlan(
  n: number,
  factor: number,
  kernel: Float64Array,
  offset: number,
  boundary: SrBoundary,
): AxisPlan {
  const k = kernel.length, m = n / factor;
  const taps = kernel.slice().reverse(); // true convolution: deepinv flips the filter
  const idx = new Int32Array(m * k);
  for (let a = 0; a < m; a++) {
    for (let j = 0; j < k; j++) {
      idx[a * k + j] = boundaryIndex(factor * a + j - offset, n, boundary);
    }
  }
  let lo = 0, hi = m;
  while (lo < m && factor * lo - offset < 0) lo++;
  while (hi > lo && factor * (hi - 1) - offset + k > n) hi--;
  return { n, m, taps, idx, factor, offset, lo, hi };
}

/**
 * A x on one H×W plane → (H/f)×(W/f), separable: rows (along W) first, into `tmp` (H×W/f), then
 * columns. Windows inside the image are read contiguously; the index map serves the borders.
 */
function applyPlane(
  x: ArrayLike<number>,
  rows: AxisPlan,
  cols: AxisPlan,
  tmp: Float64Array,
  out: Float32Array | Float64Array,
): void {
  const h = rows.n, w = cols.n, mw = cols.m, kw = cols.taps.length, kh = rows.taps.length;
  const ct = cols.taps, ci = cols.idx, f = cols.factor, off = cols.offset;
  for (let i = 0; i < h; i++) {
    const base = i * w, t = i * mw;
    for (let b = 0; b < mw; b++) {
      let s = 0;
      if (b >= cols.lo && b < cols.hi) {
        const p = base + f * b - off;
        for (let l = 0; l < kw; l++) s += ct[l] * x[p + l];
      } else {
        for (let l = 0; l < kw; l++) s += ct[l] * x[base + ci[b * kw + l]];
      }
      tmp[t + b] = s;
    }
  }
  out.fill(0);
  for (let a = 0; a < rows.m; a++) {
    for (let k = 0; k < kh; k++) {
      const wk = rows.taps[k], src = rows.idx[a * kh + k] * mw, dst = a * mw;
      for (let b = 0; b < mw; b++) out[dst + b] += wk * tmp[src + b];
    }
  }
}

/** Aᵀ y on one (H/f)×(W/f) plane → H×W: the two passes of {@link applyPlane} transposed. */
function adjointPlane(
  y: ArrayLike<number>,
  rows: AxisPlan,
  cols: AxisPlan,
  tmp: Float64Array,
  out: Float32Array | Float64Array,
): void {
  const h = rows.n, w = cols.n, mw = cols.m, kw = cols.taps.length, kh = rows.taps.length;
  const ct = cols.taps, ci = cols.idx, f = cols.factor, off = cols.offset;
  tmp.fill(0);
  for (let a = 0; a < rows.m; a++) {
    for (let k = 0; k < kh; k++) {
      const wk = rows.taps[k], dst = rows.idx[a * kh + k] * mw, src = a * mw;
      for (let b = 0; b < mw; b++) tmp[dst + b] += wk * y[src + b];
    }
  }
  // Rows: scatter into a float64 row (cache-resident; no float32 rounding per add), then store.
  const row = rowScratch(w);
  for (let i = 0; i < h; i++) {
    const base = i * w, t = i * mw;
    row.fill(0);
    for (let b = 0; b < mw; b++) {
      const v = tmp[t + b];
      if (b >= cols.lo && b < cols.hi) {
        const p = f * b - off;
        for (let l = 0; l < kw; l++) row[p + l] += ct[l] * v;
      } else {
        for (let l = 0; l < kw; l++) row[ci[b * kw + l]] += ct[l] * v;
      }
    }
    for (let j = 0; j < w; j++) out[base + j] = row[j];
  }
}

let rowBuffer = new Float64Array(0);
/** A float64 scratch row of length ≥ n (shared: every call is synchronous). */
function rowScratch(n: number): Float64Array {
  if (rowBuffer.length < n) rowBuffer = new Float64Array(n);
  return rowBuffer.length === n ? rowBuffer : rowBuffer.subarray(0, n);
}

/**
 * d(κ) = f⁻¹ Σ_{m<f} |Ĥ(κ + m·N/f)|² for one axis: the DFT symbol of S H Hᵀ Sᵀ on the
 * low-resolution grid. Ĥ is the N-point DFT of the circulant filter (computed directly, O(N·K)).
 */
function aliasedPower(plan: AxisPlan, factor: number, offset: number): Float64Array {
  const { n, m, taps } = plan;
  const power = new Float64Array(n);
  for (let u = 0; u < n; u++) {
    let re = 0, im = 0;
    for (let k = 0; k < taps.length; k++) {
      const ang = -2 * Math.PI * u * (offset - k) / n;
      re += taps[k] * Math.cos(ang);
      im += taps[k] * Math.sin(ang);
    }
    power[u] = re * re + im * im;
  }
  const d = new Float64Array(m);
  for (let u = 0; u < m; u++) {
    let s = 0;
    for (let j = 0; j < factor; j++) s += power[u + j * m];
    d[u] = s / factor;
  }
  return d;
}

/**
 * Interpolation table for the pseudo-inverse along one axis: x[i] = Σ_t wt[i·T + t] y[idx[i·T + t]].
 * bicubic: Keys weights at the low-resolution coordinate of pixel i, s = (i + ½)/f (sample a sits at
 * high-resolution coordinate f·a − ½); beyond the ends the samples are wrapped (circular) or the edge
 * sample repeated (reflect). avgpool: nearest (the block's own sample).
 */
function interpPlan(
  n: number,
  factor: number,
  filter: "bicubic" | "avgpool",
  boundary: SrBoundary,
): { t: number; idx: Int32Array; wt: Float64Array } {
  const m = n / factor;
  if (filter === "avgpool") {
    const idx = new Int32Array(n), wt = new Float64Array(n).fill(1);
    for (let i = 0; i < n; i++) idx[i] = Math.floor(i / factor);
    return { t: 1, idx, wt };
  }
  const t = 4, idx = new Int32Array(n * t), wt = new Float64Array(n * t);
  for (let i = 0; i < n; i++) {
    const s = (i + 0.5) / factor, a0 = Math.floor(s) - 1;
    for (let q = 0; q < t; q++) {
      const a = a0 + q;
      wt[i * t + q] = keysCubic(s - a);
      idx[i * t + q] = boundary === "circular"
        ? ((a % m) + m) % m
        : Math.min(m - 1, Math.max(0, a));
    }
  }
  return { t, idx, wt };
}

const options = z.strictObject({
  /** Integer downsampling factor f ≥ 2. */
  factor: z.number().int().min(2).default(4)
    .describe("integer downsampling factor f ≥ 2; H and W must be multiples of f"),
  /** Anti-aliasing filter. */
  filter: z.enum(["bicubic", "avgpool"]).default("bicubic")
    .describe("anti-aliasing filter: bicubic (deepinv 4f×4f Keys) | avgpool (f×f mean)"),
  /** Boundary of the bicubic filter; circular has a closed-form prox, reflect is LATINO's (CG). */
  boundary: z.enum(["circular", "reflect"]).default("circular")
    .describe("filter boundary: circular (closed-form prox) | reflect (LATINO's; CG prox)"),
});

/** Options of the "sr" operator (after defaults). */
export interface SrOptions {
  /** Integer downsampling factor f ≥ 2 (default 4). */
  factor: number;
  /** Anti-aliasing filter (default bicubic). */
  filter: "bicubic" | "avgpool";
  /** Boundary of the filter (default circular). */
  boundary: SrBoundary;
}

/**
 * The "sr" operator plugin: `sr:factor=4,filter=bicubic|avgpool,boundary=circular|reflect`.
 *
 * Default boundary: `circular`, because it gives the exact closed-form prox; LATINO's setting is
 * `boundary=reflect` (its prox is then a CG solve, as in deepinv).
 *
 * `pseudoInverse(y)` is an interpolating upsampling consistent with A's sampling grid: Keys bicubic
 * interpolation of y at each pixel's low-resolution coordinate (bicubic), nearest upsampling
 * (avgpool). Away from the borders (everywhere for circular) it equals f²·Aᵀy, because the Keys
 * kernel is a partition of unity; unlike f²·Aᵀy it reproduces constants at reflect borders too.
 * LATINO initialises from Aᵀy itself: use `adjoint` for that.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createOperator, PluginRegistry } from "../core/registry.ts";
 * import { srPlugin } from "./sr.ts";
 * const reg = new PluginRegistry().register(srPlugin);
 * const op = await createOperator(reg, "sr:factor=2,filter=avgpool", [1, 1, 4, 4], 0);
 * const y = await op.forward({ data: new Float32Array(16).fill(1), shape: [1, 1, 4, 4] });
 * assert.ok(y.shape[2] === 2 && y.data[0] === 1);
 * ```
 */
export const srPlugin: OperatorPlugin<SrOptions> = defineOperator({
  kind: "operator",
  name: "sr",
  description:
    "super-resolution y = (h∗x)[::f,::f]: factor=4, filter=bicubic (deepinv 4f×4f Keys) | avgpool (f×f mean), boundary=circular (closed-form prox) | reflect (LATINO, CG prox)",
  options,
  create(o, { shape }): ForwardOperator {
    const [, c, h, w] = shape;
    const f = o.factor;
    if (h % f !== 0 || w % f !== 0) {
      throw new InputError(`sr: image ${w}×${h} is not divisible by factor ${f}`);
    }
    const kernel = srFilterTaps(o.filter, f);
    const ks = kernel.length;
    if (h < ks || w < ks) {
      throw new InputError(
        `sr: image ${w}×${h} is smaller than the ${ks}×${ks} ${o.filter} kernel of factor ${f}`,
      );
    }
    // deepinv pads an even kernel by K/2 before (and K/2 − 1 after); the box has no padding.
    const offset = o.filter === "bicubic" ? ks / 2 : 0;
    const rows = axisPlan(h, f, kernel, offset, o.boundary);
    const cols = axisPlan(w, f, kernel, offset, o.boundary);
    const mh = h / f, mw = w / f;
    const inShape = [...shape], outShape = [1, c, mh, mw];
    const hi = h * w, lo = mh * mw;

    // Preallocated: the row-pass buffer of one plane (H × W/f), and the prox's buffers.
    const tmp = new Float64Array(h * mw);
    /** out ← A x, channel by channel (x: C·H·W values, out: C·(H/f)·(W/f)). */
    const forwardInto = (x: ArrayLike<number>, out: Float32Array): Float32Array => {
      for (let ch = 0; ch < c; ch++) {
        applyPlane(sub(x, ch * hi, hi), rows, cols, tmp, out.subarray(ch * lo, (ch + 1) * lo));
      }
      return out;
    };
    /** out ← Aᵀ y, channel by channel. */
    const adjointInto = (y: ArrayLike<number>, out: Float32Array): Float32Array => {
      for (let ch = 0; ch < c; ch++) {
        adjointPlane(sub(y, ch * lo, lo), rows, cols, tmp, out.subarray(ch * hi, (ch + 1) * hi));
      }
      return out;
    };

    // Closed-form prox when one exists: avgpool (any boundary) and circular bicubic. Both solve
    // (I + γAAᵀ) w = v in place on the low-resolution planes.
    let solveLowRes: ((v: Float32Array, gamma: number) => void) | null = null;
    if (o.filter === "avgpool") {
      // (I + γ AAᵀ)⁻¹ = (1 + γ/f²)⁻¹ I.
      solveLowRes = (v, gamma) => {
        const s = 1 / (1 + gamma / (f * f));
        for (let k = 0; k < v.length; k++) v[k] *= s;
      };
    } else if (o.boundary === "circular") {
      // AAᵀ = F⁻¹ diag(d_row ⊗ d_col) F on the low-resolution grid: one float32 real FFT per
      // channel (fft32's transposed half spectrum: column q ≤ W/2f, row u), a division, an inverse.
      const dr = aliasedPower(rows, f, offset), dc = aliasedPower(cols, f, offset);
      const plan = rfft2f32(mh, mw);
      solveLowRes = (v, gamma) => {
        for (let ch = 0; ch < c; ch++) {
          const plane = v.subarray(ch * lo, (ch + 1) * lo), S = plan.forward(plane);
          for (let q = 0, p = 0; q < plan.wh; q++) {
            const gq = gamma * dc[q];
            for (let u = 0; u < mh; u++, p += 2) {
              const s = 1 / (1 + gq * dr[u]);
              S[p] *= s;
              S[p + 1] *= s;
            }
          }
          plan.inverse(plane);
        }
      };
    }

    // Aᵀy of the last measurement (solvers reuse one y), and the prox's work buffers.
    let atyCache: { y: Float32Array; aty: Float32Array } | null = null;
    const bBuf = new Float32Array(c * hi), vBuf = new Float32Array(c * lo);
    // u = b − γ Aᵀ w,  w = (I + γAAᵀ)⁻¹ A b,  b = γ Aᵀy + z. Also A u = w (Woodbury), so the
    // residual ‖A u − y‖ comes free.
    const closedForm = (zt: Tensor, y: Tensor, gamma: number, po: ProxOptions): Tensor => {
      if (!atyCache || !sameBits(atyCache.y, y.data)) {
        atyCache = { y: y.data.slice(), aty: adjointInto(y.data, new Float32Array(c * hi)) };
      }
      const aty = atyCache.aty, z = zt.data, b = bBuf;
      for (let k = 0; k < b.length; k++) b[k] = gamma * aty[k] + z[k];
      const w = forwardInto(b, vBuf);
      solveLowRes!(w, gamma);
      if (po.report) {
        let r2 = 0;
        for (let k = 0; k < w.length; k++) r2 += (w[k] - y.data[k]) ** 2;
        po.report.residual = Math.sqrt(r2);
      }
      const u = po.out ?? tensor(inShape);
      adjointInto(w, u.data);
      for (let k = 0; k < b.length; k++) u.data[k] = b[k] - gamma * u.data[k];
      return u;
    };

    const ir = interpPlan(h, f, o.filter, o.boundary);
    const ic = interpPlan(w, f, o.filter, o.boundary);
    const pseudoInverse = (y: Tensor): Tensor => {
      const out = tensor(inShape), tmp = new Float64Array(mh * w);
      for (let ch = 0; ch < c; ch++) {
        const src = y.data.subarray(ch * lo, (ch + 1) * lo);
        for (let a = 0; a < mh; a++) {
          for (let j = 0; j < w; j++) {
            let s = 0;
            for (let q = 0; q < ic.t; q++) {
              s += ic.wt[j * ic.t + q] * src[a * mw + ic.idx[j * ic.t + q]];
            }
            tmp[a * w + j] = s;
          }
        }
        const dst = out.data.subarray(ch * hi, (ch + 1) * hi);
        for (let i = 0; i < h; i++) {
          for (let q = 0; q < ir.t; q++) {
            const wq = ir.wt[i * ir.t + q], row = ir.idx[i * ir.t + q] * w;
            for (let j = 0; j < w; j++) dst[i * w + j] += wq * tmp[row + j];
          }
        }
      }
      return out;
    };

    const kernelTensor = srOuterKernel(kernel);
    return linearOperator({
      name: "sr",
      options: o,
      inputShape: inShape,
      outputShape: outShape,
      forward: (x) => tensor(outShape, forwardInto(x.data, new Float32Array(c * lo))),
      adjoint: (y) => tensor(inShape, adjointInto(y.data, new Float32Array(c * hi))),
      prox: solveLowRes ? closedForm : undefined,
      pseudoInverse,
      artifacts: () => ({ kernel: { data: kernelTensor.data.slice(), shape: [1, 1, ks, ks] } }),
      exportOnnx: (eo) => srOnnx(kernel, f, offset, o.boundary, inShape, eo),
    });
  },
});

function sub(a: ArrayLike<number>, start: number, length: number): ArrayLike<number> {
  return (a as Float32Array | Float64Array).subarray(start, start + length);
}
