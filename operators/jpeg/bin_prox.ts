/**
 * The JPEG operator's default prox: data consistency in the codec's own sense.
 *
 * In the codec's sense the measurement is the set of quantisation bins: coefficient i of the
 * encoder's linear part E (colour, padding, 4:2:0 averaging, block DCT; levels) was rounded to
 * k_i = round((E x)_i + s_i)/Q_i), so x lies in the bin [Q_i(k_i − ½), Q_i(k_i + ½)] − s_i (s the
 * −128 level shift, on luma DC only) — a convex box per coefficient, a polytope in image space
 * (before clamping). The bins are read off y by re-encoding it with the model's encoder (for a
 * decoded JPEG, E y sits at the bin centres; measured: the real codec's re-encoding of y puts
 * ≥ 99.6 % of the non-zero coefficients of kodim crops in the file's own bins at q ≤ 50).
 *
 * DEVIATION from the contract's data term ‖A(u) − y‖² (declared as the operator's
 * `proxDataTerm`): the prox minimises
 *
 *   (γ/2) D_y(u) + ½‖u − z‖²,   D_y(u) = Σ_i ω_i dist((E u)_i, B_i)² / 255²,
 *
 * with B_i the bin shrunk by `bin_margin` levels on each side (so that the real encoder's own
 * fixed-point and 8-bit rounding keeps a restored image in the bin) and ω_p the decoder's energy
 * per coefficient of plane p (‖column p of C⁻¹‖², ×4 for 4:2:0 chroma), so that D_y has the scale
 * of ‖A(u) − y‖²: for hard rounding and a decoder that inverts the encoder, ‖A(u) − y‖² is the
 * staircase Σ_i ω_i Q_i² (round(c_i/Q_i) − k_i)²/255², and D_y (without margin) is its lower convex
 * envelope through the points where the staircase steps. Why: ‖A(u) − y‖² is flat on every
 * rounding plateau (the smooth surrogate's gradient is ≈ 0 a few levels away from a decision
 * boundary), so no prox of it can move a coefficient into the right bin; D_y is convex, C¹, and its
 * gradient points at the bin from everywhere. At the images LATINO hands the prox, 85 % of the
 * non-zero coefficients lie outside y's bins and the surrogate prox brings back only a third of
 * them (issue-15 note).
 *
 * Solver: semismooth Newton (the generalised Hessian I + γ Eᵀ diag(ω 1[outside]) E / 255² of the
 * piecewise quadratic) with preconditioned CG for each step (the Woodbury preconditioner of
 * `precondition.ts`) and an Armijo backtracking line search on the (exactly computable) convex
 * objective. Once the outside-set is right one exact step solves the problem; it is strongly convex,
 * so the result is the unique prox point, and the stopping test is the contract's optimality
 * residual ‖γ·½∇D_y(u) + u − z‖ ≤ tol·‖z‖.
 *
 * @module
 */
import type { ProxOptions } from "../../core/contracts.ts";
import { type CgWork, cgWork, conjugateGradientSync } from "../../core/linalg/cg.ts";
import { type Geometry, PLANE_WEIGHT } from "./colour.ts";
import { codedPlanes, codedSize, encode, encodeT } from "./linear.ts";
import type { Quantiser } from "./quantise.ts";
import { normalisedStiffness, WoodburyPreconditioner } from "./precondition.ts";

/**
 * Default fraction of Q taken off each side of a bin: ½ − 1/√12 ≈ 0.211. The prox maps every prior
 * draw that falls outside a bin to the bin's nearest edge, so where the prior is wide compared with
 * the bin (low frequencies at low quality) LATINO's outputs pile up on the two edges: a two-point
 * law with variance (Q/2)², three times the Q²/12 of the uniform law the bin itself implies.
 * Shrinking by this fraction puts the two points at ±Q/√12 from the centre, where their variance is
 * Q²/12. (It also keeps a restored image ≥ 0.21·Q inside the real bins.)
 */
export const BIN_SHRINK_DEFAULT = 0.5 - 1 / Math.sqrt(12);

/** Defaults of the bin prox: Newton steps, relative optimality residual, CG iterations per step. */
export const JPEG_BIN_PROX_DEFAULTS = { maxIter: 50, tol: 1e-5, maxCg: 50 } as const;

/** The bins of one measured image, per coded plane (Y, Cb, Cr), in E's coordinates (levels). */
export interface JpegBins {
  lo: Float64Array[];
  hi: Float64Array[];
  /** ω_p / 255² per plane. */
  weight: number[];
}

/** ω_p: the decoder's energy per coded coefficient of plane k, ×4 for 4:2:0 chroma. */
function planeEnergy(g: Geometry, k: number): number {
  return PLANE_WEIGHT[k] * (k > 0 && g.sub ? 4 : 1);
}

/**
 * The quantisation bins of a decoded JPEG y (one image, 3·h·w on [0,1]): k = round((E y + s)/Q),
 * B = [Q(k − ½) + m, Q(k + ½) − m] − s with m = min(max(margin, shrink·Q), Q/4) levels.
 */
export function measurementBins(
  y: ArrayLike<number>,
  g: Geometry,
  qz: Quantiser,
  margin: number,
  shrink: number,
): JpegBins {
  const c = encode(y, g);
  const lo: Float64Array[] = [], hi: Float64Array[] = [];
  c.forEach((ck, k) => {
    const q = qz.q[k === 0 ? 0 : 1], [ph, pw] = codedSize(g, k);
    const l = new Float64Array(ck.length), u = new Float64Array(ck.length);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        const idx = i * pw + j, pos = (i & 7) * 8 + (j & 7), qk = q[pos];
        // Level shift −128 on Y: the DC coefficient of an 8×8 block of −128 is −1024.
        const s = k === 0 && pos === 0 ? -1024 : 0;
        const bin = Math.round((ck[idx] + s) / qk),
          m = Math.min(Math.max(margin, shrink * qk), qk / 4);
        l[idx] = qk * (bin - 0.5) + m - s;
        u[idx] = qk * (bin + 0.5) - m - s;
      }
    }
    lo.push(l), hi.push(u);
  });
  return { lo, hi, weight: [0, 1, 2].map((k) => planeEnergy(g, k) / (255 * 255)) };
}

/**
 * r = c − clip(c, lo, hi) per plane, written to `r` (may alias `c`); returns Σ ω r² (= D_y). With
 * `stiffness`, also writes γω·1[r ≠ 0] there (the generalised Hessian's weights).
 */
function outside(
  c: Float64Array[],
  bins: JpegBins,
  r: Float64Array[],
  gamma = 0,
  stiffness?: Float64Array[],
): number {
  let d = 0;
  for (let k = 0; k < 3; k++) {
    const ck = c[k], rk = r[k], lo = bins.lo[k], hi = bins.hi[k], mk = stiffness?.[k];
    const gw = gamma * bins.weight[k];
    let s = 0;
    for (let i = 0; i < ck.length; i++) {
      const v = ck[i], e = v < lo[i] ? v - lo[i] : v > hi[i] ? v - hi[i] : 0;
      rk[i] = e;
      s += e * e;
      if (mk) mk[i] = e !== 0 ? gw : 0;
    }
    d += bins.weight[k] * s;
  }
  return d;
}

/** D_y(u) for one image. */
export function binDataTerm(u: ArrayLike<number>, g: Geometry, bins: JpegBins): number {
  const c = encode(u, g);
  return outside(c, bins, c);
}

/** ½∇D_y(u) = Eᵀ (ω ⊙ r) for one image. */
export function binDataTermHalfGradient(
  u: ArrayLike<number>,
  g: Geometry,
  bins: JpegBins,
): Float64Array {
  const r = encode(u, g);
  outside(r, bins, r);
  for (let k = 0; k < 3; k++) {
    const rk = r[k], wk = bins.weight[k];
    for (let i = 0; i < rk.length; i++) rk[i] *= wk;
  }
  return encodeT(r, g);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** What {@link binProxImage} did. */
export interface BinProxReport {
  /** Newton steps and CG iterations in all. */
  newton: number;
  cg: number;
  /** ‖γ·½∇D_y(u) + u − z‖ / ‖z‖ at the returned point. */
  relResidual: number;
}

/**
 * Preallocated vectors of one solve: image-sized (3·h·w) and coefficient-sized, the CG work vectors
 * and the preconditioner; one per geometry, reused by every solve on it (a solve is synchronous).
 */
class Work {
  readonly u: Float64Array;
  /** −∇ at u, the Newton system's right-hand side. */
  readonly b: Float64Array;
  readonly hp: Float64Array;
  /** CG's vectors; `cg.x` is the Newton direction d. */
  readonly cg: CgWork;
  /** E u, its bin residual, E p, M ⊙ E p, E d, trial coefficients, stiffness. */
  readonly cu: Float64Array[];
  readonly res: Float64Array[];
  readonly cp: Float64Array[];
  readonly cm: Float64Array[];
  readonly cd: Float64Array[];
  readonly trial: Float64Array[];
  readonly m: Float64Array[];
  readonly precondition: WoodburyPreconditioner;
  /** Factors from stiffness to the preconditioner's normalised stiffness, per plane. */
  readonly scale: number[];
  /** The generalised Hessian H p = p + Eᵀ (M ⊙ E p), into `hp`; keeps E p in `cp`. */
  readonly hessian: (p: Float64Array) => Float64Array;
  /** CG's hooks: the preconditioner, and E d += α E p after each CG update d += α p. */
  readonly pre: (r: Float64Array, out: Float64Array) => void;
  readonly accumulate: (alpha: number) => void;
  constructor(readonly g: Geometry) {
    const n = 3 * g.h * g.w, img = () => new Float64Array(n);
    this.u = img(), this.b = img(), this.hp = img();
    this.cg = cgWork(n);
    this.cu = codedPlanes(g), this.res = codedPlanes(g), this.cp = codedPlanes(g);
    this.cm = codedPlanes(g), this.cd = codedPlanes(g), this.trial = codedPlanes(g);
    this.m = codedPlanes(g);
    this.precondition = new WoodburyPreconditioner(g);
    this.scale = [0, 1, 2].map((k) => normalisedStiffness(g, k));
    const { cp, cm, cd, m, hp, precondition } = this;
    this.hessian = (p) => {
      encode(p, g, cp);
      for (let k = 0; k < 3; k++) {
        const ck = cp[k], mk = m[k], out = cm[k];
        for (let i = 0; i < ck.length; i++) out[i] = mk[i] * ck[i];
      }
      encodeT(cm, g, hp);
      for (let i = 0; i < n; i++) hp[i] += p[i];
      return hp;
    };
    this.pre = (r, out) => precondition.apply(r, out);
    this.accumulate = (alpha) => {
      for (let k = 0; k < 3; k++) {
        const ck = cp[k], dk = cd[k];
        for (let i = 0; i < ck.length; i++) dk[i] += alpha * ck[i];
      }
    };
  }
}

const workspaces = new WeakMap<Geometry, Work>();

/**
 * argmin_u (γ/2) D_y(u) + ½‖u − z‖² for one image (3·h·w values), by semismooth Newton–CG from z.
 * Returns the float64 point and a report.
 *
 * Each Newton step: the generalised Hessian H = I + Eᵀ M E (M = γω on the coefficients outside
 * their bins) is solved by preconditioned CG to the Eisenstat–Walker forcing min(0.1, √(‖∇‖/‖z‖));
 * E d is accumulated inside CG (E is linear), so the Armijo backtracking on the exact objective
 * costs no transform; E u is recomputed once per step.
 */
export function binProxImage(
  z: ArrayLike<number>,
  g: Geometry,
  bins: JpegBins,
  gamma: number,
  opts: ProxOptions & { maxCg?: number } = {},
): { u: Float64Array; report: BinProxReport } {
  const maxIter = opts.maxIter ?? JPEG_BIN_PROX_DEFAULTS.maxIter;
  const tol = opts.tol ?? JPEG_BIN_PROX_DEFAULTS.tol;
  const maxCg = opts.maxCg ?? JPEG_BIN_PROX_DEFAULTS.maxCg;
  let W = workspaces.get(g);
  if (!W) workspaces.set(g, W = new Work(g));
  const n = W.u.length;
  const zd = Float64Array.from(z), zn = Math.sqrt(dot(zd, zd)) || 1;
  const { u, b, cu, res, cd, trial, m } = W, d = W.cg.x;
  u.set(zd);
  const report: BinProxReport = { newton: 0, cg: 0, relResidual: Infinity };
  for (;;) {
    // State at u: coefficients, bin residuals, stiffness, objective and gradient.
    encode(u, g, cu);
    const dist = outside(cu, bins, res, gamma, m);
    let uz = 0;
    for (let i = 0; i < n; i++) uz += (u[i] - zd[i]) ** 2;
    const f = 0.5 * gamma * dist + 0.5 * uz;
    // b = −∇ (negations are exact: these are the gradient's own sums, sign flipped).
    for (let k = 0; k < 3; k++) {
      const rk = res[k], gw = -gamma * bins.weight[k];
      for (let i = 0; i < rk.length; i++) rk[i] *= gw;
    }
    encodeT(res, g, b);
    for (let i = 0; i < n; i++) b[i] -= u[i] - zd[i];
    const gn = Math.sqrt(dot(b, b));
    report.relResidual = gn / zn;
    if (gn <= tol * zn || report.newton >= maxIter) break;
    W.precondition.set(m, W.scale);
    report.cg += newtonStep(W, Math.min(0.1, Math.sqrt(gn / zn)), maxCg);
    report.newton++;
    // Armijo backtracking on the convex objective, with E(u + αd) = E u + α E d.
    const slope = -dot(b, d);
    let ud = 0, dd = 0;
    for (let i = 0; i < n; i++) ud += (u[i] - zd[i]) * d[i], dd += d[i] * d[i];
    let alpha = 1;
    for (; alpha > 1e-8; alpha /= 2) {
      for (let k = 0; k < 3; k++) {
        const t = trial[k], a = cu[k], b = cd[k];
        for (let i = 0; i < t.length; i++) t[i] = a[i] + alpha * b[i];
      }
      const ft = 0.5 * gamma * outside(trial, bins, trial) +
        0.5 * (uz + 2 * alpha * ud + alpha * alpha * dd);
      if (ft <= f + 1e-4 * alpha * slope) break;
    }
    for (let i = 0; i < n; i++) u[i] += alpha * d[i];
  }
  return { u: Float64Array.from(u), report };
}

/**
 * Preconditioned CG ({@link conjugateGradientSync}) on H d = −∇ (H = I + Eᵀ M E, M = W.m) from
 * d = 0, to ‖H d + ∇‖ ≤ η‖∇‖ or maxCg iterations; leaves d in W.cg.x and E d in W.cd. Returns the
 * iterations.
 */
function newtonStep(W: Work, eta: number, maxCg: number): number {
  for (const c of W.cd) c.fill(0);
  return conjugateGradientSync(W.hessian, W.b, {
    maxIter: maxCg,
    tol: eta,
    precondition: W.pre,
    work: W.cg,
    onStep: W.accumulate,
  }).iterations;
}
