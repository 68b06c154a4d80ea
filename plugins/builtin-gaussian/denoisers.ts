/**
 * The built-in model's exact denoisers in float64: Tweedie (ε̂, ẑ0), the consistency map G and their
 * vector–Jacobian products in z_t and θ.
 *
 * @module
 */
import { checkTimestep, exactSchedule } from "./exact_schedule.ts";
import type { LatentLayout } from "./basis.ts";
import {
  dcWeight,
  logFrequencyTerm,
  type PriorMoments,
  priorMoments,
  type SpectrumConstants,
  THETA_SIZE,
} from "./spectra.ts";

/** Tweedie outputs at one timestep. */
export interface TweedieResult {
  /** ẑ0 = E[z0 | z_t]. */
  z0: Float64Array;
  /** ε̂ = E[ε | z_t] (what the ε-prediction UNet returns). */
  eps: Float64Array;
}

/**
 * The exact Tweedie denoiser at integer timestep t:
 *   ẑ0 = μ + (√ᾱ λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ),
 *   ε̂ = (z_t − √ᾱ ẑ0)/√(1−ᾱ) = √(1−ᾱ) (z_t − √ᾱ μ)/(ᾱλ + 1 − ᾱ)   (cancellation-free form).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, tweedie } from "./closed_form.ts";
 * // Standard normal prior (λ = 1, μ = 0): ẑ0 = √ᾱ z_t and ε̂ = √(1−ᾱ) z_t.
 * const m = { lambda: Float64Array.of(1, 1), mu: Float64Array.of(0, 0) };
 * const { z0, eps } = tweedie([1, -2], 500, m);
 * const ab = exactSchedule().alphasCumprod[500];
 * assert.ok(Math.abs(z0[1] - -2 * Math.sqrt(ab)) < 1e-12);
 * assert.ok(Math.abs(eps[0] - Math.sqrt(1 - ab)) < 1e-12);
 * ```
 */
export function tweedie(zt: ArrayLike<number>, t: number, m: PriorMoments): TweedieResult {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t],
    om = oneMinusAlphasCumprod[t],
    sab = Math.sqrt(ab),
    som = Math.sqrt(om);
  const n = zt.length;
  const z0 = new Float64Array(n), eps = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = zt[i] - sab * m.mu[i];
    const den = ab * m.lambda[i] + om;
    z0[i] = m.mu[i] + (sab * m.lambda[i] / den) * d;
    eps[i] = (som / den) * d;
  }
  return { z0, eps };
}

/**
 * The exact consistency map (probability-flow ODE solved to ᾱ = 1):
 *   G(z_t, t) = μ + √(λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { consistencyMap, exactSchedule } from "./closed_form.ts";
 * // λ = 4, μ = 1: G(z_t) = μ + √(λ/(ᾱλ + 1 − ᾱ)) (z_t − √ᾱ μ).
 * const m = { lambda: Float64Array.of(4), mu: Float64Array.of(1) };
 * const ab = exactSchedule().alphasCumprod[999];
 * const g = consistencyMap([0.3], 999, m);
 * assert.ok(Math.abs(g[0] - (1 + Math.sqrt(4 / (4 * ab + 1 - ab)) * (0.3 - Math.sqrt(ab)))) < 1e-12);
 * ```
 */
export function consistencyMap(zt: ArrayLike<number>, t: number, m: PriorMoments): Float64Array {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t], om = oneMinusAlphasCumprod[t], sab = Math.sqrt(ab);
  const out = new Float64Array(zt.length);
  for (let i = 0; i < zt.length; i++) {
    const k = Math.sqrt(m.lambda[i] / (ab * m.lambda[i] + om));
    out[i] = m.mu[i] + k * (zt[i] - sab * m.mu[i]);
  }
  return out;
}

/** What a UNet-like map returns: ε̂ (ε-prediction), ẑ0 (Tweedie) or G (consistency). */
export type DenoiserOutput = "eps" | "z0" | "G";

/** Vector–Jacobian product of a denoiser output. */
export interface DenoiserVjp {
  /** ∂⟨w, f⟩/∂z_t (the map is diagonal in z_t). */
  dz: Float64Array;
  /** ∂⟨w, f⟩/∂θ (9 values); chain with {@link embeddingGradient} for ∂/∂c. */
  dtheta: Float64Array;
}

/**
 * Closed-form VJP of ε̂, ẑ0 or G at integer t for prior θ, cotangent w (the exact gradients the
 * ONNX VJP of the UNets must reproduce). With d = z_t − √ᾱμ, den = ᾱλ + 1 − ᾱ, η = log λ:
 * - G = μ + k d, k = √(λ/den): ∂G/∂z = k, ∂G/∂η = ½ k (1−ᾱ)/den · d, ∂G/∂μ = 1 − √ᾱ k;
 * - ẑ0 = μ + g d, g = √ᾱλ/den: ∂/∂z = g, ∂/∂η = g (1−ᾱ)/den · d, ∂/∂μ = 1 − √ᾱ g;
 * - ε̂ = √(1−ᾱ) d/den: ∂/∂z = √(1−ᾱ)/den, ∂/∂η = −√(1−ᾱ) ᾱλ d/den², ∂/∂μ = −√ᾱ √(1−ᾱ)/den;
 * then ∂η/∂a_k = 1, ∂η/∂β_k = −L/2, ∂μ_DC/∂m_k = √(HW)s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { consistencyMap, denoiserVjp, latentLayout, priorMoments } from "./closed_form.ts";
 * // ∂⟨w, G⟩/∂β_1 against a central finite difference.
 * const l = latentLayout([1, 3, 2, 2]), c = { rho0: 1 / 64, refSize: 0 };
 * const theta = [0.1, -0.2, 0.3, 1, 1.5, 2, 0.2, 0, -0.1];
 * const zt = Float64Array.from({ length: 12 }, (_, i) => Math.sin(i + 1));
 * const w = Float64Array.from({ length: 12 }, (_, i) => Math.cos(i));
 * const f = (th: number[]) =>
 *   consistencyMap(zt, 500, priorMoments(th, l, c)).reduce((s, v, i) => s + v * w[i], 0);
 * const h = 1e-6, up = [...theta], dn = [...theta];
 * up[3] += h;
 * dn[3] -= h;
 * const { dtheta } = denoiserVjp("G", zt, 500, theta, l, c, w);
 * assert.ok(Math.abs(dtheta[3] - (f(up) - f(dn)) / (2 * h)) < 1e-6);
 * ```
 */
export function denoiserVjp(
  output: DenoiserOutput,
  zt: ArrayLike<number>,
  t: number,
  theta: ArrayLike<number>,
  l: LatentLayout,
  c: SpectrumConstants,
  w: ArrayLike<number>,
): DenoiserVjp {
  checkTimestep(t);
  const { alphasCumprod, oneMinusAlphasCumprod } = exactSchedule();
  const ab = alphasCumprod[t],
    om = oneMinusAlphasCumprod[t],
    sab = Math.sqrt(ab),
    som = Math.sqrt(om);
  const m = priorMoments(theta, l, c);
  const L = logFrequencyTerm(l, c), dc = dcWeight(l);
  const n = l.keepH * l.keepW;
  const dz = new Float64Array(3 * n), dtheta = new Float64Array(THETA_SIZE);
  for (let k = 0; k < 3; k++) {
    for (let j = 0; j < n; j++) {
      const i = k * n + j, lam = m.lambda[i], den = ab * lam + om;
      const d = zt[i] - sab * m.mu[i];
      let fz: number, fEta: number, fMu: number;
      if (output === "G") {
        const kk = Math.sqrt(lam / den);
        [fz, fEta, fMu] = [kk, 0.5 * kk * (om / den) * d, 1 - sab * kk];
      } else if (output === "z0") {
        const g = (sab * lam) / den;
        [fz, fEta, fMu] = [g, g * (om / den) * d, 1 - sab * g];
      } else {
        [fz, fEta, fMu] = [som / den, (-som * ab * lam * d) / (den * den), (-sab * som) / den];
      }
      dz[i] = w[i] * fz;
      dtheta[k] += w[i] * fEta;
      dtheta[3 + k] += -0.5 * L[j] * w[i] * fEta;
      if (j === 0) dtheta[6 + k] += w[i] * fMu * dc;
    }
  }
  return { dz, dtheta };
}
