/**
 * The sampling layer: the DDPM forward process (`addNoise`), conversions between ε-, v- and
 * x0-parameterisations, DDIM and DDPM steps and timestep grids, all as diffusers computes them.
 * Solvers build their loops from these pieces; whole-loss graphs read the same coefficients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ddimCoefficients, ddimStep, stepPairs, timestepGrid } from "./mod.ts";
 * import type { Tensor } from "../tensor.ts";
 * // A 4-step deterministic DDIM loop with a denoiser that always predicts x̂0 = 0, ε̂ = z:
 * const schedule = { numTrainTimesteps: 1000, alphasCumprod: new Float64Array(1000).fill(0.5) };
 * let z: Tensor = { data: Float32Array.of(1), shape: [1] };
 * for (const { t, prev } of stepPairs(timestepGrid(4, "trailing"))) {
 *   const c = ddimCoefficients(schedule, t, prev);
 *   z = ddimStep({ x0: { data: Float32Array.of(0), shape: [1] }, eps: z }, c);
 * }
 * assert.equal(z.data[0], 0); // the last step jumps to x̂0
 * ```
 *
 * @module
 */
export * from "./diffusion.ts";
export * from "./steps.ts";
export * from "./timesteps.ts";
