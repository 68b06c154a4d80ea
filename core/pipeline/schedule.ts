/**
 * diffusers `scheduler_config.json` → the DDPM noise schedule ᾱ_t and the model parameterisation.
 *
 * β schedules (diffusers `DDPMScheduler`/`LCMScheduler.__init__`):
 * - "linear":             β_t = linspace(β_start, β_end, T)[t]
 * - "scaled_linear":      β_t = linspace(√β_start, √β_end, T)[t]²   (SD 1.x/2.x/XL, LCM)
 * - "squaredcos_cap_v2":  β_t = min(1 − ā((t+1)/T)/ā(t/T), 0.999),  ā(s) = cos²((s+0.008)/1.008 · π/2)
 * - `trained_betas`:      given explicitly.
 * ᾱ_t = ∏_{s≤t} (1 − β_s). With `rescale_betas_zero_snr`, √ᾱ is shifted and scaled so that
 * √ᾱ_{T−1} = 0 while √ᾱ_0 is kept (Lin et al. 2023, diffusers `rescale_zero_terminal_snr`).
 *
 * DEVIATION: everything is computed in float64, while diffusers computes β and ᾱ in float32 (torch);
 * the two agree to ≈1e-7 (solvers.md §1.1), and the contract's `alphasCumprod` is float64.
 *
 * LCM boundary conditions (diffusers `LCMScheduler.get_scalings_for_boundary_condition_discrete`),
 * with σ_data = 0.5 and s = t · timestep_scaling:
 *   c_skip(t) = σ_data² / (s² + σ_data²),   c_out(t) = s / √(s² + σ_data²).
 *
 * @module
 */
import type { NoiseSchedule } from "../contracts.ts";
import type { PredictionType } from "../sampling/diffusion.ts";

export type { PredictionType } from "../sampling/diffusion.ts";
export { lcmBoundary } from "../sampling/diffusion.ts";

/** The parts of a scheduler config this toolkit uses. */
export interface SchedulerInfo extends NoiseSchedule {
  /** `_class_name`, e.g. "PNDMScheduler", "LCMScheduler". */
  className: string;
  /** What the UNet predicts (scheduler `prediction_type`, default "epsilon"). */
  predictionType: PredictionType;
  /** True for LCMScheduler configs (consistency boundary conditions apply). */
  isLcm: boolean;
  /** LCM `timestep_scaling` (default 10). */
  timestepScaling: number;
  /** LCM `original_inference_steps` (default 50). */
  originalInferenceSteps: number;
  /** The β schedule name (or "trained_betas"). */
  betaSchedule: string;
}

/**
 * Problems are reported as plain messages; the caller adds the file name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ScheduleError, schedulerFromConfig } from "./schedule.ts";
 * assert.throws(() => schedulerFromConfig({ prediction_type: "flow" }), ScheduleError);
 * ```
 */
export class ScheduleError extends Error {}

/**
 * linspace(a, b, n) including both ends, float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linspace } from "./schedule.ts";
 * assert.deepEqual([...linspace(0, 1, 5)], [0, 0.25, 0.5, 0.75, 1]);
 * ```
 */
export function linspace(a: number, b: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = a;
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = a + (b - a) * (i / (n - 1));
  return out;
}

/**
 * β_t for a named schedule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { betaSchedule } from "./schedule.ts";
 * // scaled_linear: linspace(√0.01, √0.04, 3)² = [0.1², 0.15², 0.2²]
 * const b = betaSchedule("scaled_linear", 3, 0.01, 0.04);
 * [0.01, 0.0225, 0.04].forEach((v, i) => assert.ok(Math.abs(b[i] - v) < 1e-15));
 * ```
 */
export function betaSchedule(
  kind: string,
  T: number,
  betaStart: number,
  betaEnd: number,
): Float64Array {
  switch (kind) {
    case "linear":
      return linspace(betaStart, betaEnd, T);
    case "scaled_linear":
      return linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), T).map((v) => v * v);
    case "squaredcos_cap_v2": {
      const abar = (s: number) => Math.cos(((s + 0.008) / 1.008) * Math.PI / 2) ** 2;
      const out = new Float64Array(T);
      for (let i = 0; i < T; i++) out[i] = Math.min(1 - abar((i + 1) / T) / abar(i / T), 0.999);
      return out;
    }
    default:
      throw new ScheduleError(
        `beta_schedule "${kind}" is not supported (expected linear, scaled_linear or squaredcos_cap_v2)`,
      );
  }
}

/**
 * ᾱ_t = ∏_{s≤t}(1 − β_s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { alphasCumprod } from "./schedule.ts";
 * assert.deepEqual([...alphasCumprod(Float64Array.from([0.5, 0.5, 0.5]))], [0.5, 0.25, 0.125]);
 * ```
 */
export function alphasCumprod(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let p = 1;
  for (let i = 0; i < betas.length; i++) {
    p *= 1 - betas[i];
    out[i] = p;
  }
  return out;
}

/**
 * Zero-terminal-SNR rescaling of ᾱ (diffusers `rescale_zero_terminal_snr`, applied to betas):
 * √ᾱ' = (√ᾱ − √ᾱ_{T−1}) · √ᾱ_0 / (√ᾱ_0 − √ᾱ_{T−1}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rescaleZeroTerminalSnr } from "./schedule.ts";
 * const r = rescaleZeroTerminalSnr(Float64Array.from([0.9, 0.5, 0.1]));
 * assert.ok(Math.abs(r[0] - 0.9) < 1e-12); // ᾱ_0 kept
 * assert.equal(r[2], 0); // zero terminal SNR
 * ```
 */
export function rescaleZeroTerminalSnr(abar: Float64Array): Float64Array {
  const s = abar.map(Math.sqrt);
  const s0 = s[0], sT = s[s.length - 1];
  return s.map((v) => ((v - sT) * s0 / (s0 - sT)) ** 2);
}

function num(cfg: Record<string, unknown>, key: string, dflt: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ScheduleError(`"${key}" must be a number (got ${JSON.stringify(v)})`);
  }
  return v;
}

/**
 * Read a parsed scheduler_config.json. Throws {@link ScheduleError} with what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { schedulerFromConfig } from "./schedule.ts";
 * const s = schedulerFromConfig({ _class_name: "LCMScheduler" });
 * assert.equal(s.isLcm, true);
 * assert.equal(s.betaSchedule, "scaled_linear");
 * assert.equal(s.numTrainTimesteps, 1000);
 * assert.ok(Math.abs(s.alphasCumprod[0] - (1 - 0.00085)) < 1e-12);
 * ```
 */
export function schedulerFromConfig(cfg: Record<string, unknown>): SchedulerInfo {
  const className = typeof cfg._class_name === "string" ? cfg._class_name : "";
  const isLcm = className.startsWith("LCM");
  const T = num(cfg, "num_train_timesteps", 1000);
  if (!Number.isInteger(T) || T < 2) {
    throw new ScheduleError(`"num_train_timesteps" must be an integer ≥ 2 (got ${T})`);
  }
  let betas: Float64Array;
  // Constructor defaults: LCMScheduler uses SD's schedule, the others DDPM's linear one.
  let kind = typeof cfg.beta_schedule === "string"
    ? cfg.beta_schedule
    : isLcm
    ? "scaled_linear"
    : "linear";
  const trained = cfg.trained_betas;
  if (Array.isArray(trained) && trained.length > 0) {
    if (trained.length !== T || !trained.every((b) => typeof b === "number" && b > 0 && b < 1)) {
      throw new ScheduleError(
        `"trained_betas" must be ${T} numbers in (0,1) (got ${trained.length} values)`,
      );
    }
    betas = Float64Array.from(trained as number[]);
    kind = "trained_betas";
  } else {
    const b0 = num(cfg, "beta_start", isLcm ? 0.00085 : 0.0001);
    const b1 = num(cfg, "beta_end", isLcm ? 0.012 : 0.02);
    if (!(b0 > 0 && b1 > 0 && b0 < 1 && b1 < 1)) {
      throw new ScheduleError(`beta_start/beta_end must lie in (0,1) (got ${b0}, ${b1})`);
    }
    betas = betaSchedule(kind, T, b0, b1);
  }
  let abar = alphasCumprod(betas);
  if (cfg.rescale_betas_zero_snr === true) abar = rescaleZeroTerminalSnr(abar);
  const pt = cfg.prediction_type ?? "epsilon";
  if (pt !== "epsilon" && pt !== "sample" && pt !== "v_prediction") {
    throw new ScheduleError(
      `prediction_type ${
        JSON.stringify(pt)
      } is not supported (expected epsilon, sample or v_prediction)`,
    );
  }
  return {
    className,
    numTrainTimesteps: T,
    alphasCumprod: abar,
    predictionType: pt,
    isLcm,
    timestepScaling: num(cfg, "timestep_scaling", 10),
    originalInferenceSteps: num(cfg, "original_inference_steps", 50),
    betaSchedule: kind,
  };
}

/**
 * Clean-latent estimate x̂0 from a network output at ᾱ = abar:
 * - epsilon:       x̂0 = (z − √(1−ᾱ) ε) / √ᾱ
 * - v_prediction:  x̂0 = √ᾱ z − √(1−ᾱ) v
 * - sample:        x̂0 = output.
 * Writes into a new Float32Array; arithmetic in float64 per element.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { predictX0 } from "./schedule.ts";
 * // ᾱ = 0.25: x̂0 = (z − √0.75 ε) / 0.5
 * const x0 = predictX0("epsilon", Float32Array.from([1, 0.5]), Float32Array.from([0, 0]), 0.25);
 * assert.deepEqual([...x0], [2, 1]);
 * ```
 */
export function predictX0(
  type: PredictionType,
  z: Float32Array,
  out: Float32Array,
  abar: number,
): Float32Array {
  if (type === "sample") return out;
  const a = Math.sqrt(abar), s = Math.sqrt(1 - abar);
  const r = new Float32Array(z.length);
  if (type === "epsilon") {
    for (let i = 0; i < r.length; i++) r[i] = (z[i] - s * out[i]) / a;
  } else {
    for (let i = 0; i < r.length; i++) r[i] = a * z[i] - s * out[i];
  }
  return r;
}
