/**
 * What an exact posterior sample scores on average against the clean image: the bar a sampler on
 * the built-in model can be held to.
 *
 * @module
 */
import type { ForwardOperator } from "../../core/contracts.ts";
import { decode64, type LatentLayout } from "./basis.ts";
import { diagonalProblem, posteriorDiagonal } from "./posterior.ts";
import { linearOperator64, posteriorMeanCG, posteriorVarianceWoodbury } from "./posterior_cg.ts";
import type { PriorMoments } from "./spectra.ts";

/** The expected error of one exact posterior sample, on the [0,1] image scale. */
export interface SampleError {
  /** ‖μ_x − x‖², μ_x = (D m + 1)/2 the posterior mean image. */
  bias: number;
  /** tr Σ_x = tr Σ_z/(4s²) (D has orthonormal rows scaled by 1/s). */
  trace: number;
  /** E‖x_s − x‖² / N = (bias + trace)/N. */
  mse: number;
  /** 10 log10(1/mse): the PSNR of the expected squared error (data range 1). */
  psnr: number;
}

/**
 * E‖x_s − x‖² = ‖μ_x − x‖² + tr Σ_x for x_s = (D z_s + 1)/2, z_s ~ N(m, Σ) the exact posterior
 * (unclamped; clamping to [0,1] can only lower the error), from the latent posterior mean and the
 * latent variances (only their sum matters: tr(D Σ Dᵀ) = tr Σ/s²).
 *
 * @param mean latent posterior mean m
 * @param variance latent posterior variances diag Σ (or their sum)
 * @param layout the latent layout
 * @param clean the clean image on [0,1] (channel-major, 3·H·W values)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encode64, expectedSampleError, latentLayout } from "./closed_form.ts";
 * // A posterior mean equal to the clean image leaves only the trace: 4·0.01/4 over 4 pixels.
 * const l = latentLayout([1, 3, 2, 2]);
 * const clean = Float64Array.from({ length: 12 }, (_, i) => 0.1 + 0.05 * i);
 * const m = encode64(clean.map((v) => 2 * v - 1), l);
 * const e = expectedSampleError(m, new Float64Array(12).fill(0.01 / 3), l, clean);
 * assert.ok(Math.abs(e.bias) < 1e-24 && Math.abs(e.trace - 0.01) < 1e-15);
 * assert.ok(Math.abs(e.psnr - 10 * Math.log10(1200)) < 1e-9);
 * ```
 */
export function expectedSampleError(
  mean: ArrayLike<number>,
  variance: ArrayLike<number> | number,
  layout: LatentLayout,
  clean: ArrayLike<number>,
): SampleError {
  const x = decode64(mean, layout);
  if (x.length !== clean.length) {
    throw new RangeError(`clean image has ${clean.length} values, expected ${x.length}`);
  }
  let bias = 0;
  for (let i = 0; i < x.length; i++) bias += ((x[i] + 1) / 2 - clean[i]) ** 2;
  let tr = 0;
  if (typeof variance === "number") tr = variance;
  else for (let i = 0; i < variance.length; i++) tr += variance[i];
  const trace = tr / (4 * layout.scale * layout.scale);
  const mse = (bias + trace) / x.length;
  return { bias, trace, mse, psnr: 10 * Math.log10(1 / mse) };
}

/** The operator as {@link exactPosteriorMoments} needs it. */
export interface ExactPosteriorOperator
  extends Pick<ForwardOperator, "name" | "forward" | "adjoint" | "inputShape" | "outputShape"> {
  /** Eigenvalues in the model's DCT basis (half-sample symmetric blur with a symmetric kernel). */
  dctDiagonal?: Float64Array;
}

/**
 * The exact posterior's latent mean and marginal variances for a linear operator on the built-in
 * model: in closed form when the operator is diagonal in the latent basis (`dctDiagonal`), else the
 * mean by {@link posteriorMeanCG} and the variances (which do not depend on y: pass `cache` to reuse
 * them across measurements) by {@link posteriorVarianceWoodbury} — meant for operators with few
 * measurements (SR). A RangeError when CG does not reach `tol`.
 */
export async function exactPosteriorMoments(
  op: ExactPosteriorOperator,
  y: ArrayLike<number>,
  sigmaY: number,
  layout: LatentLayout,
  m: PriorMoments,
  options: { tol?: number; cache?: { variance?: Float64Array } } = {},
): Promise<{ mean: Float64Array; variance: Float64Array }> {
  if (op.dctDiagonal) {
    return posteriorDiagonal(diagonalProblem(y, op.dctDiagonal, sigmaY, layout), m);
  }
  const p = { y: Float64Array.from(y), op: linearOperator64(op), sigmaY, layout };
  const tol = options.tol ?? 1e-10;
  const r = await posteriorMeanCG(p, m, { tol });
  if (!(r.relResidual <= tol)) {
    throw new RangeError(`posterior mean: CG stopped at relative residual ${r.relResidual}`);
  }
  const cache = options.cache ?? {};
  cache.variance ??= await posteriorVarianceWoodbury(p, m);
  return { mean: r.x, variance: cache.variance };
}
