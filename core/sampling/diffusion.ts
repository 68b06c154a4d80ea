/**
 * The DDPM forward process and the three network parameterisations, on float32 tensors with
 * float64 arithmetic per element (diffusers computes in float32; the results agree to float32
 * rounding).
 *
 * With ᾱ = ᾱ_t, a = √ᾱ, s = √(1−ᾱ) and z_t = a x0 + s ε:
 *
 *   addNoise:      z_t = a z0 + s ξ
 *   ε-prediction:  x̂0 = (z_t − s ε̂)/a                     ε̂ = output
 *   v-prediction:  x̂0 = a z_t − s v̂                        ε̂ = s z_t + a v̂      (v = a ε − s x0)
 *   x0-prediction: x̂0 = output ("sample")                  ε̂ = (z_t − a x̂0)/s
 *
 * Every parameterisation is affine in the network output o: x̂0 = α z_t + β o, ε̂ = γ z_t + κ o.
 * {@link predictionAffine} gives (α, β) and (γ, κ): a VJP through the network needs only them (the
 * cotangent of o is β g, the direct term α g), so gradient code and whole-loss graphs share one
 * table.
 *
 * @module
 */
import type { RandomStream } from "../rng.ts";
import type { Tensor } from "../tensor.ts";

/** What a denoising network predicts (diffusers `prediction_type`). */
export type PredictionType = "epsilon" | "sample" | "v_prediction";

/** The prediction types, for validation. */
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "sample", "v_prediction"];

/** f = z·(coefficient of z_t) + out·(coefficient of the network output). */
export interface Affine {
  /** Coefficient of the noisy latent z_t. */
  z: number;
  /** Coefficient of the network output. */
  out: number;
}

/** x̂0 and ε̂ as affine functions of (z_t, network output). */
export interface PredictionAffine {
  /** x̂0 = x0.z · z_t + x0.out · o. */
  x0: Affine;
  /** ε̂ = eps.z · z_t + eps.out · o. */
  eps: Affine;
}

function checkAbar(abar: number, what: string): void {
  if (!(abar > 0 && abar < 1)) throw new RangeError(`${what}: ᾱ = ${abar} must lie in (0, 1)`);
}

/**
 * The coefficients of x̂0 and ε̂ in (z_t, network output) at ᾱ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { predictionAffine } from "./diffusion.ts";
 * // ᾱ = 0.25 (a = 0.5, s = √0.75): ε-prediction x̂0 = 2 z_t − 2√0.75 ε̂
 * const { x0, eps } = predictionAffine("epsilon", 0.25);
 * assert.equal(x0.z, 2);
 * assert.ok(Math.abs(x0.out + 2 * Math.sqrt(0.75)) < 1e-15);
 * assert.deepEqual(eps, { z: 0, out: 1 });
 * ```
 */
export function predictionAffine(type: PredictionType, abar: number): PredictionAffine {
  checkAbar(abar, "predictionAffine");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  switch (type) {
    case "epsilon":
      return { x0: { z: 1 / a, out: -s / a }, eps: { z: 0, out: 1 } };
    case "v_prediction":
      return { x0: { z: a, out: -s }, eps: { z: s, out: a } };
    case "sample":
      return { x0: { z: 0, out: 1 }, eps: { z: 1 / s, out: -a / s } };
    default:
      throw new RangeError(`unknown prediction type ${JSON.stringify(type)}`);
  }
}

function target(like: Tensor, out: Tensor | undefined): Tensor {
  if (!out) return { data: new Float32Array(like.data.length), shape: [...like.shape] };
  if (out.data.length !== like.data.length) {
    throw new RangeError(`out has ${out.data.length} values, expected ${like.data.length}`);
  }
  return out;
}

function sameSize(a: Tensor, b: Tensor, what: string): void {
  if (a.data.length !== b.data.length) {
    throw new RangeError(`${what}: [${a.shape}] and [${b.shape}] differ in size`);
  }
}

/**
 * The forward process q(z_t | z0): √ᾱ z0 + √(1−ᾱ) ξ, with ξ drawn from `noise` element by element
 * in order (or given as a tensor). Writes into `out` when given (it may be `z0` itself).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addNoise } from "./diffusion.ts";
 * import { zeroNoiseStream } from "../rng.ts";
 * const z0 = { data: Float32Array.of(2, -4), shape: [2] };
 * assert.deepEqual([...addNoise(z0, 0.25, zeroNoiseStream()).data], [1, -2]); // √0.25 · z0
 * const xi = { data: Float32Array.of(1, 1), shape: [2] };
 * assert.deepEqual([...addNoise(z0, 0.25, xi).data], [1 + Math.fround(Math.sqrt(0.75)), -2 + Math.fround(Math.sqrt(0.75))].map(Math.fround));
 * ```
 */
export function addNoise(
  z0: Tensor,
  abar: number,
  noise: RandomStream | Tensor,
  out?: Tensor,
): Tensor {
  if (!(abar >= 0 && abar <= 1)) throw new RangeError(`addNoise: ᾱ = ${abar} must lie in [0, 1]`);
  const a = Math.sqrt(abar), b = Math.sqrt(1 - abar);
  const r = target(z0, out);
  const z = z0.data, o = r.data;
  if ("data" in noise) {
    sameSize(z0, noise, "addNoise");
    const xi = noise.data;
    for (let i = 0; i < o.length; i++) o[i] = a * z[i] + b * xi[i];
  } else {
    // Draws in chunks (fillNormal into float64 equals successive normal() calls), fused with the
    // affine combination: one pass over z, no image-sized scratch.
    const xi = NOISE_CHUNK;
    for (let i0 = 0; i0 < o.length; i0 += xi.length) {
      const n = Math.min(xi.length, o.length - i0);
      noise.fillNormal(n === xi.length ? xi : xi.subarray(0, n));
      for (let j = 0; j < n; j++) o[i0 + j] = a * z[i0 + j] + b * xi[j];
    }
  }
  return r;
}

/** Scratch for addNoise's chunked draws (JavaScript is single-threaded; no call re-enters). */
const NOISE_CHUNK = new Float64Array(4096);

/**
 * x̂0 = (z_t − √(1−ᾱ) ε̂)/√ᾱ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { x0FromEps } from "./diffusion.ts";
 * const z = { data: Float32Array.of(1, 0.5), shape: [2] };
 * const e = { data: Float32Array.of(0, 0), shape: [2] };
 * assert.deepEqual([...x0FromEps(z, e, 0.25).data], [2, 1]);
 * ```
 */
export function x0FromEps(zt: Tensor, eps: Tensor, abar: number, out?: Tensor): Tensor {
  checkAbar(abar, "x0FromEps");
  sameSize(zt, eps, "x0FromEps");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = target(zt, out);
  const z = zt.data, e = eps.data, o = r.data;
  for (let i = 0; i < o.length; i++) o[i] = (z[i] - s * e[i]) / a;
  return r;
}

/**
 * ε̂ = (z_t − √ᾱ x̂0)/√(1−ᾱ).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { epsFromX0 } from "./diffusion.ts";
 * const z = { data: Float32Array.of(1), shape: [1] };
 * const x0 = { data: Float32Array.of(0), shape: [1] };
 * assert.equal(epsFromX0(z, x0, 0.75).data[0], 2); // 1/√0.25
 * ```
 */
export function epsFromX0(zt: Tensor, x0: Tensor, abar: number, out?: Tensor): Tensor {
  checkAbar(abar, "epsFromX0");
  sameSize(zt, x0, "epsFromX0");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = target(zt, out);
  const z = zt.data, x = x0.data, o = r.data;
  for (let i = 0; i < o.length; i++) o[i] = (z[i] - a * x[i]) / s;
  return r;
}

/**
 * x̂0 = √ᾱ z_t − √(1−ᾱ) v̂.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { x0FromV } from "./diffusion.ts";
 * const z = { data: Float32Array.of(2), shape: [1] };
 * const v = { data: Float32Array.of(0), shape: [1] };
 * assert.equal(x0FromV(z, v, 0.25).data[0], 1);
 * ```
 */
export function x0FromV(zt: Tensor, v: Tensor, abar: number, out?: Tensor): Tensor {
  checkAbar(abar, "x0FromV");
  sameSize(zt, v, "x0FromV");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = target(zt, out);
  const z = zt.data, w = v.data, o = r.data;
  for (let i = 0; i < o.length; i++) o[i] = a * z[i] - s * w[i];
  return r;
}

/**
 * ε̂ = √(1−ᾱ) z_t + √ᾱ v̂.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { epsFromV } from "./diffusion.ts";
 * const z = { data: Float32Array.of(0), shape: [1] };
 * const v = { data: Float32Array.of(4), shape: [1] };
 * assert.equal(epsFromV(z, v, 0.25).data[0], 2);
 * ```
 */
export function epsFromV(zt: Tensor, v: Tensor, abar: number, out?: Tensor): Tensor {
  checkAbar(abar, "epsFromV");
  sameSize(zt, v, "epsFromV");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = target(zt, out);
  const z = zt.data, w = v.data, o = r.data;
  for (let i = 0; i < o.length; i++) o[i] = s * z[i] + a * w[i];
  return r;
}

/**
 * v = √ᾱ ε − √(1−ᾱ) x0 (the v-prediction target).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { epsFromV, vFromX0Eps, x0FromV } from "./diffusion.ts";
 * // Round trip: z_t = a x0 + s ε → v → (x0, ε).
 * const ab = 0.3, a = Math.sqrt(ab), s = Math.sqrt(1 - ab);
 * const x0 = { data: Float32Array.of(0.7), shape: [1] }, e = { data: Float32Array.of(-1.2), shape: [1] };
 * const z = { data: Float32Array.of(a * 0.7 + s * -1.2), shape: [1] };
 * const v = vFromX0Eps(x0, e, ab);
 * assert.ok(Math.abs(x0FromV(z, v, ab).data[0] - 0.7) < 1e-6);
 * assert.ok(Math.abs(epsFromV(z, v, ab).data[0] + 1.2) < 1e-6);
 * ```
 */
export function vFromX0Eps(x0: Tensor, eps: Tensor, abar: number, out?: Tensor): Tensor {
  checkAbar(abar, "vFromX0Eps");
  sameSize(x0, eps, "vFromX0Eps");
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = target(x0, out);
  const x = x0.data, e = eps.data, o = r.data;
  for (let i = 0; i < o.length; i++) o[i] = a * e[i] - s * x[i];
  return r;
}

/** Both estimates from one network call. */
export interface Prediction {
  /** The clean-latent estimate x̂0 (Tweedie's E[z0 | z_t] for a trained ε/v/x0 network). */
  x0: Tensor;
  /** The noise estimate ε̂. */
  eps: Tensor;
}

/**
 * x̂0 and ε̂ from a network output of the given type (the network's own output is passed through
 * unchanged: ε for ε-prediction, x̂0 for "sample").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromPrediction } from "./diffusion.ts";
 * const z = { data: Float32Array.of(1), shape: [1] };
 * const o = { data: Float32Array.of(0), shape: [1] };
 * const p = fromPrediction("epsilon", z, o, 0.25);
 * assert.equal(p.eps, o); // passed through
 * assert.equal(p.x0.data[0], 2);
 * ```
 */
export function fromPrediction(
  type: PredictionType,
  zt: Tensor,
  output: Tensor,
  abar: number,
): Prediction {
  switch (type) {
    case "epsilon":
      return { x0: x0FromEps(zt, output, abar), eps: output };
    case "v_prediction":
      return { x0: x0FromV(zt, output, abar), eps: epsFromV(zt, output, abar) };
    case "sample":
      return { x0: output, eps: epsFromX0(zt, output, abar) };
    default:
      throw new RangeError(`unknown prediction type ${JSON.stringify(type)}`);
  }
}

/**
 * LCM boundary-condition coefficients (c_skip, c_out) at integer timestep t (diffusers
 * `LCMScheduler.get_scalings_for_boundary_condition_discrete`): with s = t · timestep_scaling,
 * c_skip = σ_d²/(s² + σ_d²), c_out = s/√(s² + σ_d²); the consistency map is c_out x̂0 + c_skip z_t.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lcmBoundary } from "./diffusion.ts";
 * assert.deepEqual(lcmBoundary(0, 10), { cSkip: 1, cOut: 0 });
 * const { cSkip, cOut } = lcmBoundary(999, 10);
 * assert.ok(cSkip < 1e-7 && Math.abs(cOut - 1) < 1e-7);
 * ```
 */
export function lcmBoundary(
  t: number,
  timestepScaling: number,
  sigmaData = 0.5,
): { cSkip: number; cOut: number } {
  const s = t * timestepScaling;
  const d2 = sigmaData * sigmaData;
  return { cSkip: d2 / (s * s + d2), cOut: s / Math.sqrt(s * s + d2) };
}
