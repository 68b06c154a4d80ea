/**
 * Baseline rows of a comparison, none of which runs a network:
 *
 * - `measurement`: y itself (only when y has the image's shape: blur, inpainting, JPEG);
 * - `pseudo-inverse`: the operator's pseudo-inverse of y (Aᵀy for blur, the hole-filled y for
 *   inpainting, an interpolated y for SR, y for JPEG), the usual "no prior" reference and every
 *   solver's initialisation;
 * - `posterior-mean`, `posterior-sample` (built-in prior, linear operator, σ_y > 0): the exact
 *   Bayesian answer for the built-in Gaussian latent prior — the MMSE estimate and one exact draw
 *   of p(x | y). Operators diagonal in the model's latent basis (half-sample symmetric blur with a
 *   symmetric kernel) use the closed form; every other linear operator solves the posterior system
 *   (Dᵀ AᵀA D/σ′² + Λ⁻¹) z = … by preconditioned CG in float64 (sampling by perturbation,
 *   Papandreou & Yuille 2010), to the tolerance recorded in config.json; a solve that does not reach
 *   it fails the cell instead of reporting an unconverged answer. The prior is the one the
 *   `--prompt` (default empty) selects, as the solvers see it.
 *
 * Every output is clamped to [0,1] before scoring, as it is saved.
 *
 * @module
 */
import type { ForwardOperator } from "../../core/contracts.ts";
import { STREAMS, streams } from "../../core/rng.ts";
import { clamp, type Tensor } from "../../core/tensor.ts";
import {
  decode64,
  diagonalProblem,
  type ExactModel,
  linearOperator64,
  maskGramDiagonal,
  modelMoments,
  posteriorDiagonal,
  posteriorMeanCG,
  posteriorSampleCG,
  promptTheta,
  sampleDiagonal,
} from "../../plugins/builtin-gaussian/mod.ts";
import type { BaselineName } from "./config.ts";

/** Why a baseline does not apply to an operator, or null when it does. */
export function baselineUnavailable(
  name: BaselineName,
  op: Pick<
    ForwardOperator,
    "inputShape" | "outputShape" | "pseudoInverse" | "adjoint" | "capabilities"
  >,
  priorName: string,
): string | null {
  switch (name) {
    case "measurement":
      return op.outputShape.join("x") === op.inputShape.join("x")
        ? null
        : "the measurement does not have the image's shape";
    case "pseudo-inverse":
      return op.pseudoInverse || op.adjoint ? null : "the operator has no pseudo-inverse";
    case "posterior-mean":
    case "posterior-sample":
      if (priorName !== "builtin") return "the exact posterior needs the built-in prior";
      return op.capabilities.linear ? null : "the exact posterior needs a linear operator";
  }
}

/** What the exact baselines need about the model. */
export interface ExactContext {
  /** The exact model the prior serves at this image shape. */
  model: ExactModel;
  /** Prompt selecting the prior. */
  prompt: string;
  /** CG settings. */
  tol: number;
  /** CG iteration cap. */
  maxIter: number;
}

/** A baseline's output. */
export interface BaselineResult {
  /** Reconstruction on [0,1] (clamped). */
  x: Tensor;
  /** How it was computed. */
  info: Record<string, unknown>;
}

/**
 * Compute one baseline for a measurement.
 *
 * @param seed the cell's seed (the exact sample draws from its `solver/posterior-sample` stream)
 */
export async function runBaseline(
  name: BaselineName,
  op: ForwardOperator,
  y: Tensor,
  sigma: number,
  seed: number,
  exact?: ExactContext,
): Promise<BaselineResult> {
  switch (name) {
    case "measurement":
      return { x: clamp(y, 0, 1), info: {} };
    case "pseudo-inverse": {
      const x = op.pseudoInverse ? await op.pseudoInverse(y) : await op.adjoint!(y);
      return { x: clamp(x, 0, 1), info: { via: op.pseudoInverse ? "pseudoInverse" : "adjoint" } };
    }
    case "posterior-mean":
    case "posterior-sample":
      if (!exact) throw new Error(`${name}: no exact model (built-in prior needed)`);
      return await exactPosterior(name === "posterior-sample", op, y, sigma, seed, exact);
  }
}

async function exactPosterior(
  sample: boolean,
  op: ForwardOperator,
  y: Tensor,
  sigma: number,
  seed: number,
  ctx: ExactContext,
): Promise<BaselineResult> {
  if (!(sigma > 0)) throw new Error("the exact posterior needs σ_y > 0 (σ_y = 0 is degenerate)");
  const m = ctx.model, l = m.layout;
  const moments = modelMoments(m, promptTheta(m, ctx.prompt));
  const rng = streams(seed).get(STREAMS.solver).child("posterior-sample");
  const diag = (op as { dctDiagonal?: Float64Array }).dctDiagonal;
  let z: Float64Array;
  let info: Record<string, unknown>;
  if (diag) {
    // Diagonal in the latent basis: v_i = 1/(1/λ_i + h_i²/σ_z²), m_i = v_i(μ_i/λ_i + h_i ŷ_i/σ_z²).
    const q = posteriorDiagonal(diagonalProblem(y.data, diag, sigma, l), moments);
    z = sample ? sampleDiagonal(q, rng) : q.mean;
    info = { method: "closed form (diagonal in the latent basis)" };
  } else {
    const op64 = linearOperator64(op);
    const n = 3 * l.height * l.width;
    const mask = op.artifacts?.().mask;
    let gramDiagonal: Float64Array;
    if (mask && (mask.data.length === n / 3 || mask.data.length === n)) {
      gramDiagonal = maskGramDiagonal(mask.data, l);
    } else {
      // Jacobi preconditioner from the operator's gain on a constant image, ‖A1‖²/‖1‖², over s².
      const a1 = await op64.forward(new Float64Array(n).fill(1));
      const gain = a1.reduce((s, v) => s + v * v, 0) / n;
      gramDiagonal = new Float64Array(3 * l.keepH * l.keepW).fill(gain / (l.scale * l.scale));
    }
    const problem = {
      y: Float64Array.from(y.data),
      op: op64,
      sigmaY: sigma,
      layout: l,
      gramDiagonal,
    };
    const opts = { tol: ctx.tol, maxIter: ctx.maxIter };
    const r = sample
      ? await posteriorSampleCG(problem, moments, rng, opts)
      : await posteriorMeanCG(problem, moments, opts);
    if (!(r.relResidual <= ctx.tol)) {
      throw new Error(
        `CG did not converge: relative residual ${r.relResidual.toExponential(2)} > ${ctx.tol} ` +
          `after ${r.iterations} iterations`,
      );
    }
    z = r.x;
    info = { method: "CG", iterations: r.iterations, rel_residual: r.relResidual };
  }
  // x′ = D(z) on [−1,1] → x = (x′ + 1)/2 on [0,1].
  const xm = decode64(z, l);
  const x = new Float32Array(xm.length);
  for (let i = 0; i < x.length; i++) x[i] = Math.min(1, Math.max(0, (xm[i] + 1) / 2));
  return { x: { data: x, shape: [...op.inputShape] }, info };
}
