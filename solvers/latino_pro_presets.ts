/**
 * LATINO-PRO's presets: the δ rules of its two LATINO phases (the 4-step chains inside SAPG and
 * the final 8-step run) and the SAPG step γ0 and ball radius R, per model family and task.
 *
 * `sdxl-dmd2/*` are copied from the official code (LATINO-PRO/LATINO-PRO
 * `noise_schemes.noise_pred_cond_y_PRO`, ../shared/reference/solvers.md §2.3 "LATINO inside
 * LATINO-PRO"; γ0 = 0.08, R = 15 from `main_LATINO_PRO.py`). The official code has no LATINO-PRO
 * rules for SD1.5: `sd15-lcm/*` use LATINO-1.5's rules in both phases with the official γ0 and R
 * (a named deviation). `builtin/*` were measured on the built-in exact model (README, "LATINO-PRO
 * on the built-in model").
 *
 * @module
 */
import { constantDelta, DELTA_PRESETS, type DeltaRule } from "./delta.ts";

/** A LATINO-PRO preset. */
export interface ProPreset {
  /** δ rule of the chains inside SAPG (4 steps by default). */
  chain: DeltaRule;
  /** δ rule of the final LATINO run (8 steps by default). */
  final: DeltaRule;
  /** SAPG step γ0. */
  gamma0: number;
  /** Radius R of the per-token balls around the initial embedding. */
  radius: number;
  /** Where it comes from. */
  source: string;
}

const OFFICIAL = { gamma0: 0.08, radius: 15 };
const r = (
  threshold: number,
  high: number,
  low: number,
  scale: DeltaRule["scale"],
): DeltaRule => ({ threshold, high, low, scale });
const both = (rule: DeltaRule) => ({ chain: rule, final: rule });

/**
 * The built-in model's SAPG values: the official γ0 = 0.08 with a ball of R = 6 instead of 15
 * (README, "LATINO-PRO on the built-in model": the official R lets the path run far past the
 * evidence optimum on this model; the study's rule γ0 ≈ 0.002·d*, R ≈ d* does not transfer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BUILTIN_SAPG } from "./latino_pro_presets.ts";
 * assert.ok(BUILTIN_SAPG.gamma0 > 0 && BUILTIN_SAPG.radius > 0);
 * ```
 */
export const BUILTIN_SAPG: Readonly<{ gamma0: number; radius: number }> = Object.freeze({
  gamma0: 0.08,
  radius: 6,
});

/**
 * LATINO-PRO's presets by name (`family/task`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PRO_PRESETS } from "./latino_pro_presets.ts";
 * const g = PRO_PRESETS["sdxl-dmd2/gaussian"];
 * assert.equal(g.chain.high, 4e-3); // 4-step chains: t > 500 → 4e-3·df
 * assert.equal(g.final.high, 4e-4); // final 8 steps: 4e-4·df
 * assert.equal(g.gamma0, 0.08);
 * ```
 */
export const PRO_PRESETS: Readonly<Record<string, ProPreset>> = Object.freeze({
  "sdxl-dmd2/sr16": {
    ...both(r(300, 6e-4, 9e-4, "residual-over-sigma")),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, SR ×16, σ_y < 0.05",
  },
  "sdxl-dmd2/sr16-noisy": {
    chain: r(500, 5e-2, 8e-3, "residual-over-sigma"),
    final: r(700, 6e-2, 2e-2, "residual-over-sigma"),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, SR ×16, σ_y ≥ 0.05",
  },
  "sdxl-dmd2/sr32": {
    ...both(r(300, 1.5e-2, 9e-3, "residual-over-sigma")),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, SR ×32, σ_y < 0.05",
  },
  "sdxl-dmd2/sr32-noisy": {
    ...both(r(300, 0.15, 0.09, "residual-over-sigma")),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, SR ×32, σ_y ≥ 0.05",
  },
  "sdxl-dmd2/sr": {
    ...both(constantDelta(1)),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, SR with another factor (δ = 1)",
  },
  "sdxl-dmd2/gaussian": {
    chain: r(500, 4e-3, 2e-3, "residual"),
    final: r(0, 4e-4, 4e-4, "residual"),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, Gaussian blur σ_k < 10, σ_y < 0.05",
  },
  "sdxl-dmd2/gaussian-wide": {
    ...both(r(400, 2e-2, 2e-3, "residual")),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, Gaussian blur σ_k > 10, σ_y < 0.05",
  },
  "sdxl-dmd2/gaussian-other": {
    chain: r(500, 8e-3, 5e-3, "residual"),
    final: r(400, 8e-3, 5e-3, "residual"),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, Gaussian blur otherwise (σ_y ≥ 0.05, or σ_k = 10)",
  },
  "sdxl-dmd2/motion": {
    chain: r(500, 4e-4, 5e-4, "residual"),
    final: r(400, 5e-4, 9e-4, "residual"),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, motion blur",
  },
  "sdxl-dmd2/other": {
    ...both(r(200, 0.01, 1, "one")),
    ...OFFICIAL,
    source: "noise_pred_cond_y_PRO, fallback branch (inpainting included)",
  },
  ...Object.fromEntries(
    Object.entries(DELTA_PRESETS).filter(([k]) => k.startsWith("sd15-lcm/")).map((
      [k, p],
    ) => [k, {
      ...both(p.rule),
      ...OFFICIAL,
      source: `no LATINO-PRO code for SD1.5: LATINO-1.5's rule in both phases (${p.source})`,
    }]),
  ),
  "builtin/gaussian": {
    ...both(constantDelta(0.2)),
    ...BUILTIN_SAPG,
    source: "built-in model, blur: δ = 0.2 (exact-model-study §4); γ0, R measured (README)",
  },
  "builtin/motion": {
    ...both(constantDelta(0.2)),
    ...BUILTIN_SAPG,
    source: "built-in model, motion blur: as builtin/gaussian (not tuned separately)",
  },
  "builtin/sr": {
    ...both(DELTA_PRESETS["builtin/sr"].rule),
    ...BUILTIN_SAPG,
    source: "built-in model, SR: LATINO's builtin/sr δ; γ0, R of builtin/gaussian (not tuned)",
  },
  "builtin/inpaint": {
    ...both(DELTA_PRESETS["builtin/inpaint"].rule),
    ...BUILTIN_SAPG,
    source: "built-in model, inpainting: LATINO's δ; γ0, R of builtin/gaussian (not tuned)",
  },
  "builtin/jpeg": {
    ...both(DELTA_PRESETS["builtin/jpeg"].rule),
    ...BUILTIN_SAPG,
    source: "built-in model, JPEG: LATINO's δ; γ0, R of builtin/gaussian (not tuned)",
  },
  "builtin/other": {
    ...both(DELTA_PRESETS["builtin/other"].rule),
    ...BUILTIN_SAPG,
    source: "built-in model, fallback",
  },
  "builtin/evidence": {
    ...both(constantDelta(0.2)),
    gamma0: 0.08,
    radius: 2.5,
    source:
      "built-in model, blur: the most log-evidence LATINO-PRO gains on the study's WP prompts",
  },
});

/**
 * The preset "auto" picks for a family, an operator task and σ_y (the official SR and Gaussian
 * branches depend on σ_y and the kernel's σ).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autoProPreset } from "./latino_pro_presets.ts";
 * assert.equal(autoProPreset("sdxl-dmd2", "sr16", {}, 0.1), "sdxl-dmd2/sr16-noisy");
 * assert.equal(autoProPreset("sdxl-dmd2", "gaussian", { sigma: 20 }, 0.01), "sdxl-dmd2/gaussian-wide");
 * assert.equal(autoProPreset("builtin", "gaussian", { sigma: 3 }, 0.01), "builtin/gaussian");
 * ```
 */
export function autoProPreset(
  family: string,
  task: string,
  operatorOptions: Readonly<Record<string, unknown>>,
  sigmaY: number,
): string {
  let name = `${family}/${task}`;
  if (family === "sdxl-dmd2") {
    const noisy = sigmaY >= 0.05;
    const sk = Number(operatorOptions.sigma);
    if (task === "sr16" || task === "sr32") name += noisy ? "-noisy" : "";
    else if (task === "gaussian") {
      name += noisy || sk === 10 ? "-other" : sk > 10 ? "-wide" : "";
    } else if (task === "inpaint" || task === "jpeg") name = "sdxl-dmd2/other";
  }
  if (PRO_PRESETS[name]) return name;
  if (family === "builtin") return "builtin/other";
  return family === "sdxl-dmd2" ? "sdxl-dmd2/other" : "sd15-lcm/gaussian";
}
