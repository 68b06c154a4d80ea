/**
 * Exact posteriors for general (non-diagonal) linear operators on the built-in model: the latent
 * system (Dᵀ AᵀA D/σ′² + Λ⁻¹) z = rhs solved by Jacobi-preconditioned conjugate gradients (the
 * core CG) in float64 — posterior mean, marginal variances, and exact samples by perturbation.
 *
 * @module
 */
import type { ForwardOperator } from "../../core/contracts.ts";
import { type CgResult, conjugateGradient, jacobi } from "../../core/linalg/cg.ts";
import { decode64, decodeAdjoint64, type LatentLayout } from "./basis.ts";
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
