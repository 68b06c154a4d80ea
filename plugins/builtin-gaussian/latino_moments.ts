/**
 * LATINO's exact output law on the built-in model for latent-diagonal operators (exact-model.md
 * §6): the mean and variance of every latent coordinate, propagated through the steps.
 *
 * @module
 */
import { checkTimestep, exactSchedule, LATINO_TIMESTEPS } from "./exact_schedule.ts";
import type { DiagonalProblem, PosteriorMoments } from "./posterior.ts";
import type { PriorMoments } from "./spectra.ts";

/** Options of {@link latinoMoments}. */
export interface LatinoMomentOptions {
  /** Constant δ (γ_t = δ(1 − ᾱ_t)/σ′², σ′ = 2σ_y). */
  delta: number;
  /** Timesteps, default [999, 874, …, 124]. */
  timesteps?: readonly number[];
  /** The clean initial latent, default E(Aᵀy′) = h·ŷ. */
  init?: ArrayLike<number>;
}

/**
 * The exact output law of LATINO on this model (exact-model.md §6; constant δ, no clipping). The
 * state is the clean latent z (initially E(Aᵀy′), deterministic); each step noises it to t,
 * applies G_t and the prox, per coordinate:
 *   z′ = (γ h ŷ + G_t(√ᾱ z + √(1−ᾱ) ξ)) / (γh² + 1),   γ = δ(1 − ᾱ_t)/σ′²,
 * so with k = √(λ/(ᾱλ + 1 − ᾱ)):
 *   m′ = (γ h ŷ + μ + k√ᾱ (m − μ))/(γh² + 1),   v′ = k² (ᾱ v + 1 − ᾱ)/(γh² + 1)².
 * The prox is taken in image space with σ′ = 2σ_y (so γ does not depend on s). Returns the law of
 * the last step's output z0′.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, latentLayout, latinoMoments } from "./closed_form.ts";
 * // One step at t = 999 with h = 0 (no data) and a N(0, 1) prior: G_t is the identity on a
 * // variance-preserving state, so z′ = √ᾱ z + √(1−ᾱ) ξ.
 * const p = { yhat: new Float64Array(3), h: Float64Array.of(0), sigmaY: 0.1, layout: latentLayout([1, 3, 1, 1]) };
 * const m = { lambda: Float64Array.of(1, 1, 1), mu: new Float64Array(3) };
 * const q = latinoMoments(p, m, { delta: 1, timesteps: [999], init: [1, 2, 3] });
 * const ab = exactSchedule().alphasCumprod[999];
 * assert.ok(Math.abs(q.mean[2] - 3 * Math.sqrt(ab)) < 1e-12);
 * assert.ok(Math.abs(q.variance[0] - (1 - ab)) < 1e-12);
 * ```
 */
export function latinoMoments(
  p: DiagonalProblem,
  m: PriorMoments,
  options: LatinoMomentOptions,
): PosteriorMoments {
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const n = p.h.length, N = 3 * n;
  const sig2 = (2 * p.sigmaY) ** 2;
  const mean = new Float64Array(N), variance = new Float64Array(N);
  if (options.init) {
    if (options.init.length !== N) {
      throw new RangeError(`init has ${options.init.length} values, expected ${N}`);
    }
    for (let i = 0; i < N; i++) mean[i] = options.init[i];
  } else {
    for (let i = 0; i < N; i++) mean[i] = p.h[i % n] * p.yhat[i];
  }
  for (const t of options.timesteps ?? LATINO_TIMESTEPS) {
    checkTimestep(t);
    const ab = alphasCumprod[t], om = oneMinusAlphasCumprod[t], sab = Math.sqrt(ab);
    const gamma = (options.delta * om) / sig2;
    for (let i = 0; i < N; i++) {
      const h = p.h[i % n], lam = m.lambda[i], mu = m.mu[i];
      const k = Math.sqrt(lam / (ab * lam + om));
      const den = gamma * h * h + 1;
      mean[i] = (gamma * h * p.yhat[i] + mu + k * sab * (mean[i] - mu)) / den;
      variance[i] = (k * k * (ab * variance[i] + om)) / (den * den);
    }
  }
  return { mean, variance };
}
