/**
 * Reverse-process steps as diffusers writes them, from a timestep t to a previous timestep t'
 * (ᾱ = ᾱ_t, ᾱ' = ᾱ_{t'}; t' < 0 means "past the last training step").
 *
 * DDIM (Song et al. 2021, eq. 12 and 16; diffusers `DDIMScheduler.step`):
 *
 *   σ_t = η √((1−ᾱ')/(1−ᾱ)) √(1 − ᾱ/ᾱ')
 *   z_{t'} = √ᾱ' x̂0 + √(1 − ᾱ' − σ_t²) ε̂ + σ_t ξ
 *
 * with ᾱ' = `finalAlphaCumprod` when t' < 0 (diffusers: 1 with `set_alpha_to_one`, else ᾱ_0). With
 * ᾱ' = 1 the last step returns x̂0 (the "final x̂0 jump").
 *
 * DDPM ancestral step with the "fixed_small" variance (Ho et al. 2020, eq. 7; diffusers
 * `DDPMScheduler.step`, strided form): α = ᾱ/ᾱ', β = 1 − α,
 *
 *   z_{t'} = (√ᾱ' β/(1−ᾱ)) x̂0 + (√α (1−ᾱ')/(1−ᾱ)) z_t + σ_t ξ,
 *   σ_t² = max((1−ᾱ')/(1−ᾱ) β, 1e-20) for t > 0, and 0 at t = 0,
 *
 * with ᾱ' = 1 when t' < 0 (diffusers `DDPMScheduler.one`).
 *
 * Noise ξ is drawn (element by element, in order) only when σ_t > 0.
 *
 * @module
 */
import type { NoiseSchedule } from "../contracts.ts";
import type { RandomStream } from "../rng.ts";
import type { Tensor } from "../tensor.ts";
import type { Prediction } from "./diffusion.ts";

/** z_{t'} = x0 · x̂0 + eps · ε̂ + sigma · ξ. */
export interface DdimCoefficients {
  /** √ᾱ'. */
  x0: number;
  /** √(1 − ᾱ' − σ²). */
  eps: number;
  /** σ_t. */
  sigma: number;
}

/** z_{t'} = x0 · x̂0 + z · z_t + sigma · ξ. */
export interface DdpmCoefficients {
  /** √ᾱ' β/(1−ᾱ). */
  x0: number;
  /** √α (1−ᾱ')/(1−ᾱ). */
  z: number;
  /** σ_t (0 at t = 0). */
  sigma: number;
}

function abarAt(schedule: NoiseSchedule, t: number, what: string): number {
  const T = schedule.numTrainTimesteps;
  if (!Number.isInteger(t) || t < 0 || t >= T) {
    throw new RangeError(`${what}: timestep ${t} must be an integer in [0, ${T - 1}]`);
  }
  return schedule.alphasCumprod[t];
}

function prevAbar(schedule: NoiseSchedule, t: number, prev: number, final: number, what: string) {
  if (!Number.isInteger(prev) || prev >= t) {
    throw new RangeError(`${what}: previous timestep ${prev} must be an integer below ${t}`);
  }
  return prev >= 0 ? abarAt(schedule, prev, what) : final;
}

/**
 * DDIM coefficients from t to t'.
 *
 * @param schedule ᾱ table
 * @param t current timestep
 * @param prev previous timestep (negative: past the end; then ᾱ' = `finalAlphaCumprod`)
 * @param options η (default 0: deterministic DDIM) and ᾱ' past the end (default 1)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ddimCoefficients } from "./steps.ts";
 * const schedule = { numTrainTimesteps: 3, alphasCumprod: Float64Array.of(0.9, 0.5, 0.1) };
 * const c = ddimCoefficients(schedule, 2, 1);
 * assert.deepEqual(c, { x0: Math.sqrt(0.5), eps: Math.sqrt(0.5), sigma: 0 });
 * // η = 1: σ² = (1−ᾱ')/(1−ᾱ) · (1 − ᾱ/ᾱ') = (0.5/0.9) · 0.8
 * const s = ddimCoefficients(schedule, 2, 1, { eta: 1 }).sigma;
 * assert.ok(Math.abs(s * s - (0.5 / 0.9) * 0.8) < 1e-15);
 * assert.deepEqual(ddimCoefficients(schedule, 0, -1), { x0: 1, eps: 0, sigma: 0 }); // x̂0 jump
 * ```
 */
export function ddimCoefficients(
  schedule: NoiseSchedule,
  t: number,
  prev: number,
  options: { eta?: number; finalAlphaCumprod?: number } = {},
): DdimCoefficients {
  const eta = options.eta ?? 0;
  if (!(eta >= 0) || !Number.isFinite(eta)) throw new RangeError(`DDIM: η = ${eta} must be ≥ 0`);
  const final = options.finalAlphaCumprod ?? 1;
  if (!(final > 0 && final <= 1)) {
    throw new RangeError(`DDIM: final ᾱ = ${final} must lie in (0, 1]`);
  }
  const ab = abarAt(schedule, t, "DDIM"), abp = prevAbar(schedule, t, prev, final, "DDIM");
  const variance = ((1 - abp) / (1 - ab)) * (1 - ab / abp);
  const sigma = eta * Math.sqrt(Math.max(variance, 0));
  return { x0: Math.sqrt(abp), eps: Math.sqrt(Math.max(1 - abp - sigma * sigma, 0)), sigma };
}

/**
 * DDPM ("fixed_small") coefficients from t to t'.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ddpmCoefficients } from "./steps.ts";
 * const schedule = { numTrainTimesteps: 3, alphasCumprod: Float64Array.of(0.9, 0.5, 0.1) };
 * // t = 2 → 1: α = 0.2, β = 0.8; x0: √0.5·0.8/0.9, z: √0.2·0.5/0.9, σ² = 0.5/0.9·0.8
 * const c = ddpmCoefficients(schedule, 2, 1);
 * assert.ok(Math.abs(c.x0 - Math.sqrt(0.5) * 0.8 / 0.9) < 1e-15);
 * assert.ok(Math.abs(c.z - Math.sqrt(0.2) * 0.5 / 0.9) < 1e-15);
 * assert.ok(Math.abs(c.sigma ** 2 - (0.5 / 0.9) * 0.8) < 1e-15);
 * assert.equal(ddpmCoefficients(schedule, 0, -1).sigma, 0); // no noise at t = 0
 * ```
 */
export function ddpmCoefficients(
  schedule: NoiseSchedule,
  t: number,
  prev: number,
): DdpmCoefficients {
  const ab = abarAt(schedule, t, "DDPM"), abp = prevAbar(schedule, t, prev, 1, "DDPM");
  const alpha = ab / abp, beta = 1 - alpha;
  const variance = Math.max(((1 - abp) / (1 - ab)) * beta, 1e-20);
  return {
    x0: (Math.sqrt(abp) * beta) / (1 - ab),
    z: (Math.sqrt(alpha) * (1 - abp)) / (1 - ab),
    sigma: t > 0 ? Math.sqrt(variance) : 0,
  };
}

function target(like: Tensor, out: Tensor | undefined): Tensor {
  if (!out) return { data: new Float32Array(like.data.length), shape: [...like.shape] };
  if (out.data.length !== like.data.length) {
    throw new RangeError(`out has ${out.data.length} values, expected ${like.data.length}`);
  }
  return out;
}

function noiseSource(noise: RandomStream | Tensor | null | undefined, n: number, sigma: number) {
  if (sigma === 0) return null;
  if (!noise) throw new RangeError("this step adds noise (σ > 0): give a noise stream or tensor");
  if ("data" in noise) {
    if (noise.data.length !== n) throw new RangeError(`noise has ${noise.data.length} values`);
    const d = noise.data;
    return (i: number) => d[i];
  }
  return () => noise.normal();
}

/**
 * One DDIM step: √ᾱ' x̂0 + √(1−ᾱ'−σ²) ε̂ + σ ξ (ξ drawn only when σ > 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ddimCoefficients, ddimStep } from "./steps.ts";
 * const schedule = { numTrainTimesteps: 2, alphasCumprod: Float64Array.of(0.64, 0.36) };
 * const p = { x0: { data: Float32Array.of(1), shape: [1] }, eps: { data: Float32Array.of(1), shape: [1] } };
 * // η = 0 from t = 1 to 0: 0.8·1 + 0.6·1
 * assert.equal(ddimStep(p, ddimCoefficients(schedule, 1, 0)).data[0], Math.fround(1.4));
 * ```
 */
export function ddimStep(
  p: Prediction,
  c: DdimCoefficients,
  noise?: RandomStream | Tensor | null,
  out?: Tensor,
): Tensor {
  if (p.x0.data.length !== p.eps.data.length) throw new RangeError("DDIM: x̂0 and ε̂ differ in size");
  const r = target(p.x0, out);
  const x = p.x0.data, e = p.eps.data, o = r.data;
  const xi = noiseSource(noise, o.length, c.sigma);
  if (xi) {
    for (let i = 0; i < o.length; i++) {
      o[i] = c.x0 * x[i] + c.eps * e[i] + c.sigma * xi(i);
    }
  } else for (let i = 0; i < o.length; i++) o[i] = c.x0 * x[i] + c.eps * e[i];
  return r;
}

/**
 * One DDPM ancestral step: the posterior mean of q(z_{t'} | z_t, x̂0) plus σ ξ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ddpmCoefficients, ddpmStep } from "./steps.ts";
 * const schedule = { numTrainTimesteps: 1, alphasCumprod: Float64Array.of(0.5) };
 * const zt = { data: Float32Array.of(3), shape: [1] }, x0 = { data: Float32Array.of(2), shape: [1] };
 * // t = 0 → past the end: ᾱ' = 1, so the step returns x̂0 and draws nothing.
 * assert.equal(ddpmStep(zt, x0, ddpmCoefficients(schedule, 0, -1)).data[0], 2);
 * ```
 */
export function ddpmStep(
  zt: Tensor,
  x0: Tensor,
  c: DdpmCoefficients,
  noise?: RandomStream | Tensor | null,
  out?: Tensor,
): Tensor {
  if (zt.data.length !== x0.data.length) throw new RangeError("DDPM: z_t and x̂0 differ in size");
  const r = target(zt, out);
  const z = zt.data, x = x0.data, o = r.data;
  const xi = noiseSource(noise, o.length, c.sigma);
  if (xi) { for (let i = 0; i < o.length; i++) o[i] = c.x0 * x[i] + c.z * z[i] + c.sigma * xi(i); }
  else for (let i = 0; i < o.length; i++) o[i] = c.x0 * x[i] + c.z * z[i];
  return r;
}
