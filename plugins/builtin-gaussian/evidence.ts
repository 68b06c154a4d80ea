/**
 * The evidence log p(ŷ | θ) of the diagonal problems with its gradient and Hessian in θ, its
 * maximiser (damped Newton), the θ-fit to clean latents, and the prior score in θ.
 *
 * @module
 */
import type { LatentLayout } from "./basis.ts";
import { choleskySolve } from "./dense.ts";
import { type DiagonalProblem, latentNoiseStd, type PosteriorMoments } from "./posterior.ts";
import {
  checkTheta,
  dcWeight,
  logFrequencyTerm,
  logVarianceOffset,
  type PriorMoments,
  priorMoments,
  type SpectrumConstants,
  THETA_SIZE,
} from "./spectra.ts";

/**
 * ∇_θ log p(z | θ) of the Gaussian prior at a latent z (the Fisher-identity / SAPG estimator on a
 * sample): ∂/∂η_i = ½((z_i − μ_i)²/λ_i − 1), ∂/∂μ_i = (z_i − μ_i)/λ_i, chained as in
 * {@link logEvidence}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, priorScoreTheta } from "./closed_form.ts";
 * // θ = 0 on a 1×1 image: λ = 1, μ = 0. ∂/∂a_k = ½(z_k² − 1), ∂/∂m_k = z_k · √(HW)s.
 * const g = priorScoreTheta([2, 0, 0], new Array(9).fill(0), latentLayout([1, 3, 1, 1]), {
 *   rho0: 1 / 64,
 *   refSize: 0,
 * });
 * assert.deepEqual([g[0], g[1], g[6]], [1.5, -0.5, 2]);
 * ```
 */
export function priorScoreTheta(
  z: ArrayLike<number>,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
): Float64Array {
  const m = priorMoments(theta, l, c);
  const variance = new Float64Array(z.length);
  return expectedPriorScoreTheta({ mean: Float64Array.from(z), variance }, theta, l, c, m);
}

/**
 * E_q[∇_θ log p(z | θ)] for z ~ q = N(mean, diag(variance)) (e.g. the exact posterior): by the
 * Fisher identity this equals ∇_θ log p(y | θ) when q is the posterior under θ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   expectedPriorScoreTheta,
 *   latentLayout,
 *   logEvidence,
 *   posteriorDiagonal,
 *   priorMoments,
 * } from "./closed_form.ts";
 * // Fisher identity: the prior score averaged over the posterior is the evidence gradient.
 * const l = latentLayout([1, 3, 2, 2]), c = { rho0: 1 / 64, refSize: 0 };
 * const theta = [0.1, -0.2, 0.3, 1, 1.5, 2, 0.2, 0, -0.1];
 * const p = {
 *   yhat: Float64Array.from({ length: 12 }, (_, i) => Math.sin(i)),
 *   h: Float64Array.of(1, 0.5, 0.5, 0.25),
 *   sigmaY: 0.1,
 *   layout: l,
 * };
 * const q = posteriorDiagonal(p, priorMoments(theta, l, c));
 * const a = expectedPriorScoreTheta(q, theta, l, c), b = logEvidence(theta, p, c).gradient;
 * assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-10));
 * ```
 */
export function expectedPriorScoreTheta(
  q: PosteriorMoments,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
  moments?: PriorMoments,
): Float64Array {
  const m = moments ?? priorMoments(theta, l, c);
  const L = logFrequencyTerm(l, c), dc = dcWeight(l);
  const n = l.keepH * l.keepW;
  const g = new Float64Array(THETA_SIZE);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < n; j++) {
      const i = k * n + j, r = q.mean[i] - m.mu[i];
      const dEta = 0.5 * ((r * r + q.variance[i]) / m.lambda[i] - 1);
      g[k] += dEta;
      g[3 + k] += -0.5 * L[j] * dEta;
      if (j === 0) g[6 + k] += (r / m.lambda[i]) * dc;
    }
  }
  return g;
}

/** The frequency constants and layout a θ-function needs. */
interface ThetaContext {
  problem: DiagonalProblem;
  L: Float64Array;
  off: number;
  dc: number;
}

function thetaContext(p: DiagonalProblem, c: SpectrumConstants): ThetaContext {
  return {
    problem: p,
    L: logFrequencyTerm(p.layout, c),
    off: logVarianceOffset(p.layout, c),
    dc: dcWeight(p.layout),
  };
}

/** Evidence value, gradient and Hessian in θ. */
export interface EvidenceDerivatives {
  /** log p(ŷ | θ). */
  value: number;
  /** ∇_θ log p(ŷ | θ) (9 values). */
  gradient: Float64Array;
  /** ∇²_θ log p(ŷ | θ) (9×9 row-major). */
  hessian: Float64Array;
}

/**
 * The exact log-evidence of a diagonal problem and its first two derivatives in θ:
 *   ŷ_i ~ N(h_i μ_i, S_i),  S_i = h_i² λ_i + σ_z²,
 *   log p(ŷ|θ) = −½ Σ_i [log(2π S_i) + r_i²/S_i],  r_i = ŷ_i − h_i μ_i.
 * With η_i = log λ_i and q_i = h_i²λ_i/S_i: ∂ℓ/∂η = ½ q (r²/S − 1),
 * ∂²ℓ/∂η² = ½ q(1−q)(r²/S − 1) − ½ q² r²/S, ∂ℓ/∂μ = h r/S, ∂²ℓ/∂μ² = −h²/S,
 * ∂²ℓ/∂μ∂η = −h r q/S; ∂η/∂a_k = 1, ∂η/∂β_k = −L/2, ∂μ_DC/∂m_k = √(HW)s.
 * This is the density of the latent measurement ŷ (model scale); the density of y on [0,1]
 * differs by the θ-independent constant n·log 2 (and, when lossy, by the θ-independent density
 * of the discarded coefficients). Several problems (e.g. images) add up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logEvidence } from "./closed_form.ts";
 * // θ = 0 on a 1×1 image (λ = 1, μ = 0), h = 1, σ_z = 1: ŷ_i ~ N(0, S = 2).
 * const p = { yhat: Float64Array.of(1, 0, 0), h: Float64Array.of(1), sigmaY: 0.5, layout: latentLayout([1, 3, 1, 1]) };
 * const { value, gradient } = logEvidence(new Array(9).fill(0), p, { rho0: 1 / 64, refSize: 0 });
 * assert.ok(Math.abs(value - (-1.5 * Math.log(4 * Math.PI) - 0.25)) < 1e-12);
 * // ∂ℓ/∂a_k = ½ q (r²/S − 1) with q = ½.
 * assert.ok(Math.abs(gradient[0] - -0.125) < 1e-12 && Math.abs(gradient[1] - -0.25) < 1e-12);
 * ```
 */
export function logEvidence(
  theta: ArrayLike<number>,
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
): EvidenceDerivatives {
  checkTheta(theta);
  const list = Array.isArray(problems) ? problems : [problems as DiagonalProblem];
  const g = new Float64Array(9), H = new Float64Array(81);
  let value = 0;
  for (const p of list) {
    const ctx = thetaContext(p, c);
    value += accumulateEvidence(theta, ctx, g, H);
  }
  return { value, gradient: g, hessian: H };
}

function accumulateEvidence(
  theta: ArrayLike<number>,
  ctx: ThetaContext,
  g: Float64Array,
  H: Float64Array,
): number {
  const p = ctx.problem, n = p.h.length, s2 = latentNoiseStd(p) ** 2;
  let value = 0;
  const LOG2PI = Math.log(2 * Math.PI);
  for (let k = 0; k < 3; k++) {
    const a = theta[k], b = theta[3 + k], mk = theta[6 + k];
    let ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
    for (let j = 0; j < n; j++) {
      const i = k * n + j, h = p.h[j], L = ctx.L[j];
      const lam = Math.exp(a + ctx.off - 0.5 * b * L);
      const mu = j === 0 ? mk * ctx.dc : 0;
      const S = h * h * lam + s2;
      const r = p.yhat[i] - h * mu;
      const rs = (r * r) / S;
      value -= 0.5 * (LOG2PI + Math.log(S) + rs);
      const q = (h * h * lam) / S;
      const dEta = 0.5 * q * (rs - 1);
      const d2Eta = 0.5 * q * (1 - q) * (rs - 1) - 0.5 * q * q * rs;
      ga += dEta;
      gb += -0.5 * L * dEta;
      haa += d2Eta;
      hab += -0.5 * L * d2Eta;
      hbb += 0.25 * L * L * d2Eta;
      if (j === 0) {
        const dMu = (h * r) / S, d2Mu = -(h * h) / S, dMuEta = -(h * r * q) / S;
        const ia = k, ib = 3 + k, im = 6 + k;
        g[im] += dMu * ctx.dc;
        H[im * 9 + im] += d2Mu * ctx.dc * ctx.dc;
        H[im * 9 + ia] += dMuEta * ctx.dc;
        H[ia * 9 + im] += dMuEta * ctx.dc;
        H[im * 9 + ib] += -0.5 * L * dMuEta * ctx.dc;
        H[ib * 9 + im] += -0.5 * L * dMuEta * ctx.dc;
      }
    }
    const ia = k, ib = 3 + k;
    g[ia] += ga;
    g[ib] += gb;
    H[ia * 9 + ia] += haa;
    H[ia * 9 + ib] += hab;
    H[ib * 9 + ia] += hab;
    H[ib * 9 + ib] += hbb;
  }
  return value;
}

/**
 * The fraction of the achievable evidence gain reached by θ_final (exact-model.md §5):
 * (log p(y|θ_final) − log p(y|θ0)) / (log p(y|θ*) − log p(y|θ0)), θ* by {@link maximiseEvidence}
 * from θ0 unless given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evidenceGainFraction, latentLayout, maximiseEvidence } from "./closed_form.ts";
 * const c = { rho0: 1 / 64, refSize: 0 };
 * const p = {
 *   yhat: Float64Array.from({ length: 48 }, (_, i) => 3 * Math.sin(1.7 * i)),
 *   h: new Float64Array(16).fill(1),
 *   sigmaY: 0.05,
 *   layout: latentLayout([1, 3, 4, 4]),
 * };
 * const theta0 = new Array(9).fill(0);
 * const best = maximiseEvidence(p, c, theta0).theta;
 * assert.ok(Math.abs(evidenceGainFraction(best, theta0, p, c) - 1) < 1e-9);
 * assert.equal(evidenceGainFraction(theta0, theta0, p, c, best), 0);
 * ```
 */
export function evidenceGainFraction(
  thetaFinal: ArrayLike<number>,
  theta0: ArrayLike<number>,
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
  thetaStar?: ArrayLike<number>,
): number {
  const l0 = logEvidence(theta0, problems, c).value;
  const lf = logEvidence(thetaFinal, problems, c).value;
  const ls = thetaStar
    ? logEvidence(thetaStar, problems, c).value
    : maximiseEvidence(problems, c, theta0).logEvidence;
  return (lf - l0) / (ls - l0);
}

/** Result of {@link maximiseEvidence}. */
export interface EvidenceMaximum {
  /** θ* (9 values). */
  theta: Float64Array;
  /** log p(ŷ | θ*). */
  logEvidence: number;
  /** ‖∇_θ log p(ŷ | θ*)‖. */
  gradientNorm: number;
  /** Newton iterations used. */
  iterations: number;
  /** True when the gradient norm fell below the tolerance. */
  converged: boolean;
}

/**
 * θ* = argmax_θ log p(ŷ | θ) by damped Newton (Levenberg-style shift of the Hessian until it is
 * negative definite, then backtracking on the evidence). Nine numbers, a few iterations.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latentLayout, logEvidence, maximiseEvidence } from "./closed_form.ts";
 * const c = { rho0: 1 / 64, refSize: 0 };
 * const p = {
 *   yhat: Float64Array.from({ length: 48 }, (_, i) => 3 * Math.sin(1.7 * i)),
 *   h: new Float64Array(16).fill(1),
 *   sigmaY: 0.05,
 *   layout: latentLayout([1, 3, 4, 4]),
 * };
 * const theta0 = new Array(9).fill(0);
 * const r = maximiseEvidence(p, c, theta0);
 * assert.ok(r.converged && r.gradientNorm < 1e-8);
 * assert.ok(r.logEvidence > logEvidence(theta0, p, c).value);
 * ```
 */
export function maximiseEvidence(
  problems: DiagonalProblem | readonly DiagonalProblem[],
  c: SpectrumConstants,
  theta0: ArrayLike<number>,
  options: { maxIter?: number; tol?: number } = {},
): EvidenceMaximum {
  const maxIter = options.maxIter ?? 200, tol = options.tol ?? 1e-8;
  let theta = Float64Array.from(theta0);
  let cur = logEvidence(theta, problems, c);
  let it = 0;
  let nu = 0;
  for (; it < maxIter; it++) {
    const gn = Math.hypot(...cur.gradient);
    if (gn < tol) break;
    // Solve (−H + νI) d = g with ν raised until −H + νI is positive definite.
    let d: Float64Array | null = null;
    for (let tries = 0; tries < 60 && !d; tries++) {
      const M = new Float64Array(81);
      for (let i = 0; i < 81; i++) M[i] = -cur.hessian[i];
      for (let i = 0; i < 9; i++) M[i * 9 + i] += nu;
      d = choleskySolve(M, cur.gradient, 9);
      if (!d) nu = Math.max(1e-8, nu * 10 || 1e-6 * maxAbsDiag(cur.hessian));
    }
    if (!d) break;
    let step = 1, accepted = false;
    for (let ls = 0; ls < 60; ls++) {
      const trial = theta.map((v, i) => v + step * d![i]);
      const next = logEvidence(trial, problems, c);
      if (Number.isFinite(next.value) && next.value >= cur.value) {
        theta = trial;
        cur = next;
        accepted = true;
        break;
      }
      step /= 2;
    }
    if (!accepted) break;
    nu = step === 1 ? nu / 10 : nu * 2;
    if (nu < 1e-12) nu = 0;
  }
  const gn = Math.hypot(...cur.gradient);
  return { theta, logEvidence: cur.value, gradientNorm: gn, iterations: it, converged: gn < tol };
}

function maxAbsDiag(H: Float64Array): number {
  let m = 0;
  for (let i = 0; i < 9; i++) m = Math.max(m, Math.abs(H[i * 9 + i]));
  return m || 1;
}

/**
 * Maximum-likelihood θ of clean latents z (the evidence with A = I and σ_y = 0): the fit used for
 * the default prior. `latents[i]` belongs to `layouts[i]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fitTheta, latentLayout, priorMoments } from "./closed_form.ts";
 * import { streams } from "../../core/rng.ts";
 * // Fit θ to a latent drawn from the prior of a known θ.
 * const l = latentLayout([1, 3, 32, 32]), c = { rho0: 1 / 64, refSize: 0 };
 * const truth = [-2, -4, -4, 2, 2, 2, 0.3, 0, 0];
 * const { lambda, mu } = priorMoments(truth, l, c);
 * const rng = streams(0).get("init");
 * const z = mu.map((m, i) => m + Math.sqrt(lambda[i]) * rng.normal());
 * const fit = fitTheta([z], [l], c, new Array(9).fill(0));
 * assert.ok(fit.converged);
 * assert.ok(Math.abs(fit.theta[3] - truth[3]) < 0.3); // β_1 recovered
 * ```
 */
export function fitTheta(
  latents: readonly Float64Array[],
  layouts: readonly LatentLayout[],
  c: SpectrumConstants,
  theta0: ArrayLike<number>,
): EvidenceMaximum {
  const problems = latents.map((z, i): DiagonalProblem => ({
    yhat: z,
    h: new Float64Array(layouts[i].keepH * layouts[i].keepW).fill(1),
    sigmaY: 0,
    layout: layouts[i],
  }));
  return maximiseEvidence(problems, c, theta0);
}
