/**
 * Exact posteriors for general (non-diagonal) linear operators on the built-in model: the latent
 * system (Dᵀ AᵀA D/σ′² + Λ⁻¹) z = rhs solved by Jacobi-preconditioned conjugate gradients (the
 * core CG) in float64 — posterior mean, marginal variances, and exact samples by perturbation.
 *
 * @module
 */
import type { ForwardOperator } from "../../core/contracts.ts";
import { type CgResult, conjugateGradient, jacobi } from "../../core/linalg/cg.ts";
import { COLOR_MATRIX, decode64, decodeAdjoint64, type LatentLayout } from "./basis.ts";
import type { NormalSource } from "./posterior.ts";
import type { PriorMoments } from "./spectra.ts";

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
  async solve(rhs: Float64Array, opts: LatentCgOptions, x0?: Float64Array): Promise<CgResult> {
    return await conjugateGradient((v) => this.apply(v), rhs, {
      x0,
      maxIter: opts.maxIter ?? 5000,
      tol: opts.tol ?? 1e-12,
      precondition: jacobi(this.preconditioner()),
    });
  }
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
): Promise<CgResult> {
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
): Promise<CgResult> {
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

/**
 * Every latent coordinate's exact posterior variance by the Woodbury identity on the measurement
 * side, for operators with few measurements (super-resolution):
 *
 *   Σ = (Gᵀ G/σ′² + Λ⁻¹)⁻¹ = Λ − Λ Gᵀ (σ′² I + G Λ Gᵀ)⁻¹ G Λ,   G = A D  (m × n),
 *
 * so diag Σ_i = λ_i (1 − Σ_j W_ji²) with W = L⁻¹ G Λ^{1/2} and L Lᵀ = σ′² I + G Λ Gᵀ (Cholesky).
 * Rows of G are Dᵀ Aᵀ e_j: m adjoint applications; the work is O(m² n) (a ninth of it when A acts
 * alike on each RGB channel: the colour-rotated rows then split by latent channel) and the memory
 * m·n doubles, against one CG solve per coordinate for {@link posteriorVarianceCG}. Σ does not
 * depend on y.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, posteriorVarianceCG, posteriorVarianceWoodbury, priorMoments } from "./closed_form.ts";
 * // A 2×2 average-pooling "SR" of a 4×4 image: 12 measurements, 48 unknowns.
 * const l = latentLayout([1, 3, 4, 4]), c = { rho0: 1 / 64, refSize: 0 };
 * const m = priorMoments([0, -1, -1, 1, 1, 1, 0.1, 0, 0], l, c);
 * const at = (k: number, i: number, j: number) => (k * 4 + i) * 4 + j;
 * const op = {
 *   forward: (x: Float64Array) => Float64Array.from({ length: 12 }, (_, q) => {
 *     const k = Math.floor(q / 4), i = 2 * Math.floor((q % 4) / 2), j = 2 * (q % 2);
 *     return (x[at(k, i, j)] + x[at(k, i + 1, j)] + x[at(k, i, j + 1)] + x[at(k, i + 1, j + 1)]) / 4;
 *   }),
 *   adjoint: (y: Float64Array) => Float64Array.from({ length: 48 }, (_, p) => {
 *     const k = Math.floor(p / 16), i = Math.floor((p % 16) / 4), j = p % 4;
 *     return y[k * 4 + Math.floor(i / 2) * 2 + Math.floor(j / 2)] / 4;
 *   }),
 * };
 * const p = { y: new Float64Array(12), op, sigmaY: 0.05, layout: l };
 * const v = await posteriorVarianceWoodbury(p, m);
 * const cg = await posteriorVarianceCG(p, m, [0, 5, 40]);
 * assert.ok([0, 5, 40].every((i, k) => Math.abs(v[i] - cg[k]) < 1e-9 * m.lambda[i]));
 * ```
 */
export async function posteriorVarianceWoodbury(
  p: LinearProblem,
  m: PriorMoments,
): Promise<Float64Array> {
  const l = p.layout, M = p.y.length, n = m.lambda.length;
  const sig2 = (2 * p.sigmaY) ** 2;
  // Measurement directions rotated by the colour matrix, ẽ_{k,q} = Σ_c C_kc e_{c,q} (orthonormal, so
  // Σ is unchanged): for an operator acting alike on each RGB channel, Dᵀ Aᵀ ẽ_{k,q} lies in latent
  // channel k only, K is block diagonal and the products below skip the zero blocks.
  const rotate = M % 3 === 0 && n % 3 === 0;
  const mq = rotate ? M / 3 : M, nk = rotate ? n / 3 : n;
  const G = new Float64Array(M * n); // rows: √λ ∘ Dᵀ Aᵀ ẽ_j, then L⁻¹ of them
  const lo = new Int32Array(M), hi = new Int32Array(M); // support of each row (latent range)
  const e = new Float64Array(M);
  for (let j = 0; j < M; j++) {
    e.fill(0);
    if (rotate) {
      const k = Math.floor(j / mq), q = j % mq;
      for (let c = 0; c < 3; c++) e[c * mq + q] = COLOR_MATRIX[k * 3 + c];
    } else e[j] = 1;
    const g = decodeAdjoint64(await p.op.adjoint(e), l);
    const row = G.subarray(j * n, (j + 1) * n);
    let max = 0;
    for (let i = 0; i < n; i++) {
      row[i] = Math.sqrt(m.lambda[i]) * g[i];
      max = Math.max(max, Math.abs(row[i]));
    }
    lo[j] = 0;
    hi[j] = n;
    if (rotate) {
      // one latent channel only (everything else at rounding level)?
      for (let k = 0; k < 3; k++) {
        let out = 0;
        for (let i = 0; i < n; i++) {
          if (i < k * nk || i >= (k + 1) * nk) out = Math.max(out, Math.abs(row[i]));
        }
        if (out <= 1e-12 * max) {
          lo[j] = k * nk;
          hi[j] = (k + 1) * nk;
          for (let i = 0; i < n; i++) if (i < lo[j] || i >= hi[j]) row[i] = 0;
          break;
        }
      }
    }
  }
  // K = σ′² I + G̃ Λ G̃ᵀ (only over shared supports), Cholesky K = L Lᵀ in place.
  const K = new Float64Array(M * M);
  for (let a = 0; a < M; a++) {
    const ra = G.subarray(a * n, (a + 1) * n);
    for (let b = 0; b <= a; b++) {
      const from = Math.max(lo[a], lo[b]), to = Math.min(hi[a], hi[b]);
      const rb = G.subarray(b * n, (b + 1) * n);
      let s = 0;
      for (let i = from; i < to; i++) s += ra[i] * rb[i];
      K[a * M + b] = K[b * M + a] = s + (a === b ? sig2 : 0);
    }
  }
  for (let a = 0; a < M; a++) {
    for (let b = 0; b <= a; b++) {
      let s = K[a * M + b];
      for (let k = 0; k < b; k++) s -= K[a * M + k] * K[b * M + k];
      if (a === b) {
        if (!(s > 0)) throw new RangeError("posteriorVarianceWoodbury: K is not positive definite");
        K[a * M + a] = Math.sqrt(s);
      } else K[a * M + b] = s / K[b * M + b];
    }
  }
  // W = L⁻¹ G̃ Λ^{1/2}; diag Σ_i = λ_i (1 − Σ_j W_ji²).
  for (let a = 0; a < M; a++) {
    const ra = G.subarray(a * n, (a + 1) * n);
    for (let k = 0; k < a; k++) {
      const f = K[a * M + k];
      if (f === 0) continue;
      const rk = G.subarray(k * n, (k + 1) * n);
      for (let i = lo[k]; i < hi[k]; i++) ra[i] -= f * rk[i];
    }
    const d = 1 / K[a * M + a];
    for (let i = lo[a]; i < hi[a]; i++) ra[i] *= d;
  }
  const v = Float64Array.from(m.lambda);
  for (let a = 0; a < M; a++) {
    const ra = G.subarray(a * n, (a + 1) * n);
    for (let i = lo[a]; i < hi[a]; i++) v[i] -= m.lambda[i] * ra[i] * ra[i];
  }
  return v;
}
