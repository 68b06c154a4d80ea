/**
 * The built-in model's diffusion schedule in float64 (scaled_linear, 1000 steps) and LATINO's
 * default timesteps: z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε.
 *
 * @module
 */

/**
 * Number of training timesteps of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule, NUM_TRAIN_TIMESTEPS } from "./closed_form.ts";
 * assert.equal(exactSchedule().alphasCumprod.length, NUM_TRAIN_TIMESTEPS);
 * ```
 */
export const NUM_TRAIN_TIMESTEPS = 1000;
/**
 * β_0 of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BETA_START, exactSchedule } from "./closed_form.ts";
 * assert.ok(Math.abs(exactSchedule().alphasCumprod[0] - (1 - BETA_START)) < 1e-15);
 * ```
 */
export const BETA_START = 0.00085;
/**
 * β_{T−1} of the scaled_linear schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BETA_END, exactSchedule } from "./closed_form.ts";
 * const ab = exactSchedule().alphasCumprod;
 * assert.ok(Math.abs(ab[999] / ab[998] - (1 - BETA_END)) < 1e-12);
 * ```
 */
export const BETA_END = 0.012;
/**
 * LATINO's 8-step timestep schedule (solvers.md §2.2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LATINO_TIMESTEPS, NUM_TRAIN_TIMESTEPS } from "./closed_form.ts";
 * assert.equal(LATINO_TIMESTEPS.length, 8);
 * assert.ok(LATINO_TIMESTEPS.every((t) => t >= 0 && t < NUM_TRAIN_TIMESTEPS));
 * ```
 */
export const LATINO_TIMESTEPS: readonly number[] = [999, 874, 749, 624, 499, 374, 249, 124];

/** The diffusion schedule in float64: ᾱ_t and 1 − ᾱ_t (the latter without cancellation). */
export interface ExactSchedule {
  /** ᾱ_t = Π_{s≤t} (1 − β_s), t = 0 … 999. */
  alphasCumprod: Float64Array;
  /** 1 − ᾱ_t computed as −expm1(Σ log(1 − β_s)). */
  oneMinusAlphasCumprod: Float64Array;
}

let scheduleCache: ExactSchedule | undefined;

/**
 * The scaled_linear schedule: β_t = (√β_0 + (√β_end − √β_0)·t/(T−1))², ᾱ_t = Π_{s≤t}(1 − β_s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exactSchedule } from "./closed_form.ts";
 * const { alphasCumprod } = exactSchedule();
 * assert.ok(Math.abs(alphasCumprod[999] - 0.0046601) < 1e-6);
 * ```
 */
export function exactSchedule(): ExactSchedule {
  if (scheduleCache) return scheduleCache;
  const T = NUM_TRAIN_TIMESTEPS;
  const s0 = Math.sqrt(BETA_START), s1 = Math.sqrt(BETA_END);
  const abar = new Float64Array(T), om = new Float64Array(T);
  let logProd = 0;
  for (let t = 0; t < T; t++) {
    const r = s0 + (s1 - s0) * t / (T - 1);
    logProd += Math.log1p(-r * r);
    abar[t] = Math.exp(logProd);
    om[t] = -Math.expm1(logProd);
  }
  scheduleCache = { alphasCumprod: abar, oneMinusAlphasCumprod: om };
  return scheduleCache;
}

/** Check an integer timestep in [0, 999]. */
/**
 * Check an integer timestep in [0, 999].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTimestep } from "./exact_schedule.ts";
 * checkTimestep(999);
 * assert.throws(() => checkTimestep(1000), RangeError);
 * ```
 */
export function checkTimestep(t: number): void {
  if (!Number.isInteger(t) || t < 0 || t >= NUM_TRAIN_TIMESTEPS) {
    throw new RangeError(`timestep ${t}: expected an integer in [0, ${NUM_TRAIN_TIMESTEPS - 1}]`);
  }
}
