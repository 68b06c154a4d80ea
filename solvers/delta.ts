/**
 * LATINO's step-size (δ) rules and the per-task presets copied from the official code
 * (LATINO-PRO/LATINO-PRO `noise_schemes.py`, see ../shared/reference/solvers.md §2.3).
 *
 * A rule is `δ(t, df) = (t > threshold ? high : low) · m(df)` where the multiplier m is 1 (constant),
 * df = ‖A(x) + σ'n − y'‖₂ on the [-1,1] scale (residual-proportional), or df/σ'.
 *
 * @module
 */
/** A δ rule. */
export interface DeltaRule {
  /** Timestep threshold: `high` applies for t > threshold, `low` otherwise. */
  threshold: number;
  /** δ factor above the threshold. */
  high: number;
  /** δ factor at or below the threshold. */
  low: number;
  /** What the factor multiplies: 1, the residual df, or df/σ'. */
  scale: "one" | "residual" | "residual-over-sigma";
}

/**
 * Evaluate δ at integer timestep t, residual df = ‖A(x)+σ'n−y'‖ ([-1,1] scale), and σ' = 2σ_y.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deltaAt } from "./delta.ts";
 * const d = deltaAt({ threshold: 400, high: 5e-4, low: 2e-4, scale: "residual" }, 999, 100, 0.02);
 * assert.ok(Math.abs(d - 0.05) < 1e-12);
 * ```
 */
export function deltaAt(rule: DeltaRule, t: number, df: number, sigmaPrime: number): number {
  const factor = t > rule.threshold ? rule.high : rule.low;
  switch (rule.scale) {
    case "one":
      return factor;
    case "residual":
      return factor * df;
    case "residual-over-sigma":
      return factor * df / sigmaPrime;
  }
}

/**
 * A constant δ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { constantDelta, deltaAt } from "./delta.ts";
 * assert.equal(deltaAt(constantDelta(0.1), 999, 3.2, 0.02), 0.1); // same δ at every step
 * ```
 */
export function constantDelta(delta: number): DeltaRule {
  return { threshold: 0, high: delta, low: delta, scale: "one" };
}

/** A named preset: the rule plus where it comes from. */
export interface DeltaPreset {
  /** The rule. */
  rule: DeltaRule;
  /** Model family and task it was tuned for, and its source. */
  source: string;
}

/**
 * δ presets. `sdxl-dmd2/*` and `sd15-lcm/*` are copied from the official LATINO code (8 steps,
 * t = 999…124 at 1024² for DMD2-SDXL; LCM schedule for SD1.5); `builtin/*` were tuned here for the
 * built-in exact model (see README, "LATINO on the built-in model").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DELTA_PRESETS } from "./delta.ts";
 * assert.equal(DELTA_PRESETS["sdxl-dmd2/sr16"].rule.threshold, 300);
 * assert.ok("builtin/gaussian" in DELTA_PRESETS);
 * ```
 */
export const DELTA_PRESETS: Record<string, DeltaPreset> = {
  "sdxl-dmd2/sr16": {
    rule: { threshold: 300, high: 0.3, low: 0.2, scale: "residual" },
    source: "noise_pred_cond_y, SR bicubic ×16 @1024",
  },
  "sdxl-dmd2/sr32": {
    rule: { threshold: 300, high: 0.15, low: 0.3, scale: "residual" },
    source: "noise_pred_cond_y, SR bicubic ×32 @1024",
  },
  "sdxl-dmd2/gaussian": {
    rule: { threshold: 400, high: 5e-4, low: 2e-4, scale: "residual" },
    source: "noise_pred_cond_y, Gaussian blur σ_k < 10 @1024",
  },
  "sdxl-dmd2/gaussian-wide": {
    rule: { threshold: 400, high: 7e-4, low: 3e-4, scale: "residual" },
    source: "noise_pred_cond_y, Gaussian blur σ_k ≥ 10 @1024",
  },
  "sdxl-dmd2/motion": {
    rule: { threshold: 400, high: 4e-4, low: 2e-4, scale: "residual" },
    source: "noise_pred_cond_y, motion blur, σ_y = 0.01",
  },
  "sdxl-dmd2/inpaint": {
    rule: { threshold: 500, high: 1, low: 0.5, scale: "one" },
    source: "noise_pred_cond_y, box/band inpainting",
  },
  "sdxl-dmd2/other": {
    rule: { threshold: 200, high: 0.01, low: 1, scale: "one" },
    source: "noise_pred_cond_y, fallback branch",
  },
  "sd15-lcm/sr16": {
    rule: { threshold: 300, high: 0.02, low: 0.002, scale: "residual-over-sigma" },
    source: "noise_pred_cond_y_15, SR ×16",
  },
  "sd15-lcm/sr32": {
    rule: { threshold: 300, high: 2, low: 0.9, scale: "residual" },
    source: "noise_pred_cond_y_15, SR ×32",
  },
  "sd15-lcm/inpaint": {
    rule: { threshold: 500, high: 1, low: 0.5, scale: "one" },
    source: "noise_pred_cond_y_15, inpainting",
  },
  "sd15-lcm/gaussian": {
    rule: { threshold: 300, high: 1e-3, low: 4e-4, scale: "residual" },
    source: "noise_pred_cond_y_15, Gaussian blur",
  },
  "sd15-lcm/motion": {
    rule: { threshold: 400, high: 8e-4, low: 7e-4, scale: "residual" },
    source: "noise_pred_cond_y_15, motion blur",
  },
  "builtin/gaussian": {
    rule: { threshold: 0, high: 0.5, low: 0.5, scale: "one" },
    source:
      "built-in model, Gaussian blur σ=3, σ_y=0.01; tuned on kodim01/05/09 (0.3–1 within 0.1 dB)",
  },
  "builtin/motion": {
    rule: { threshold: 0, high: 0.2, low: 0.2, scale: "one" },
    source: "built-in model, motion blur 61×61, σ_y=0.01; kodim01/02/05/09: best δ 0.1–0.3",
  },
  "builtin/sr": {
    rule: { threshold: 0, high: 1, low: 1, scale: "one" },
    source:
      "built-in model, bicubic SR ×4, σ_y=0.01; flat in δ ∈ [0.3, 3]; below the pseudo-inverse (the Gaussian prior adds texture)",
  },
  "builtin/inpaint": {
    rule: { threshold: 0, high: 1, low: 1, scale: "one" },
    source: "built-in model, box inpainting; insensitive to δ (near-hard projection)",
  },
  "builtin/jpeg": {
    rule: { threshold: 0, high: 1, low: 1, scale: "one" },
    source:
      "built-in model, JPEG q=10: the bin prox acts as a hard constraint for δ ≥ 0.1 (kodim03/09: identical within 0.02 dB for δ = 0.1–10; δ = 0.01 leaves 1–5 % of y's non-zero coefficients out of their bins)",
  },
  "builtin/other": {
    rule: { threshold: 0, high: 0.5, low: 0.5, scale: "one" },
    source: "built-in model, fallback",
  },
};
