/**
 * Presets of LDPS and PSLD: the official values for SD 1.x/2.x-type folders and values tuned for
 * the built-in exact model (README, "LDPS and PSLD": the tuning command and its table). A preset is
 * a set of option defaults; options given explicitly override it.
 *
 * @module
 */
import type { ForwardOperator, Prior } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";

/** What a preset sets. */
export interface DpsPresetValues {
  /** DDIM steps. */
  steps: number;
  /** DDIM η. */
  eta: number;
  /** Step size ρ on the loss gradient. */
  rho: number;
  /** Weight ω of the measurement term (PSLD; LDPS: 1). */
  omega: number;
  /** Weight γ of the gluing term (PSLD; LDPS: 0). */
  gamma: number;
  /** The last step lands on x̂0 (ᾱ' = 1) instead of ᾱ_0. */
  final_jump: boolean;
}

/** A named preset. */
export interface DpsPreset {
  /** The values. */
  values: DpsPresetValues;
  /** Where they come from. */
  source: string;
}

const SD15 = { steps: 1000, eta: 0, rho: 1, final_jump: false } as const;

/**
 * LDPS presets. `sd15`: P2L App. D.3 and SILO (LDPS = the official PSLD code with γ = 0, ω = 1):
 * DDIM 1000 steps, η = 0, a static step ρ = 1 on the gradient of the un-squared norm, and the
 * official last step to ᾱ_0. `builtin`: tuned on the built-in model (README).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LDPS_PRESETS } from "./dps_presets.ts";
 * assert.equal(LDPS_PRESETS.sd15.values.rho, 1);
 * assert.equal(LDPS_PRESETS.sd15.values.gamma, 0);
 * ```
 */
export const LDPS_PRESETS: Record<string, DpsPreset> = {
  sd15: {
    values: { ...SD15, omega: 1, gamma: 0 },
    source: "P2L App. D.3 / SILO Eq. 11: DDIM 1000, η = 0, static ρ = 1, un-squared norm",
  },
  builtin: {
    values: { steps: 1000, eta: 0, rho: 5, omega: 1, gamma: 0, final_jump: true },
    source: "built-in model, tuned (README: LDPS and PSLD on the built-in model)",
  },
};

/**
 * PSLD presets. `sd15`: the official code (LituRout/PSLD `scripts/inverse.py`): γ = 0.1, ω = 1,
 * DDIM 1000 steps, η = 0; `sd15/inpaint-box`: its box-inpainting run (`run/inverse_bip.sh`):
 * γ = 0.01, ω = 0.1. `builtin`: tuned on the built-in model (README).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PSLD_PRESETS } from "./dps_presets.ts";
 * assert.deepEqual([PSLD_PRESETS.sd15.values.gamma, PSLD_PRESETS.sd15.values.omega], [0.1, 1]);
 * assert.equal(PSLD_PRESETS["sd15/inpaint-box"].values.gamma, 0.01);
 * ```
 */
export const PSLD_PRESETS: Record<string, DpsPreset> = {
  sd15: {
    values: { ...SD15, omega: 1, gamma: 0.1 },
    source: "official PSLD code (scripts/inverse.py defaults): γ = 0.1, ω = 1, DDIM 1000, η = 0",
  },
  "sd15/inpaint-box": {
    values: { ...SD15, omega: 0.1, gamma: 0.01 },
    source: "official PSLD code, box inpainting (run/inverse_bip.sh): γ = 0.01, ω = 0.1",
  },
  builtin: {
    values: { steps: 1000, eta: 0, rho: 5, omega: 1, gamma: 0.1, final_jump: true },
    source: "built-in model, tuned (README: LDPS and PSLD on the built-in model)",
  },
};

/**
 * The preset group of a prior, from the family it reports (its config files, never its name:
 * core/pipeline/family.ts): "builtin" for the built-in exact model, "sd15" for every other family
 * and for a prior that reports none (SD 1.x/2.x, ε or v: the official values are the only
 * published ones).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { presetFamily } from "./dps_presets.ts";
 * assert.equal(presetFamily({ family: { id: "builtin", evidence: "exact model" } }), "builtin");
 * assert.equal(presetFamily({ family: { id: "sd", evidence: "unet config" } }), "sd15");
 * assert.equal(presetFamily({}), "sd15"); // no family reported, whatever the name
 * ```
 */
export function presetFamily(prior: Pick<Prior, "family">): "builtin" | "sd15" {
  return prior.family?.id === "builtin" ? "builtin" : "sd15";
}

/**
 * Resolve a preset name ("auto" picks by the prior's family and, for PSLD, box inpainting) and say
 * why it was picked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { choosePreset, PSLD_PRESETS } from "./dps_presets.ts";
 * const box = { name: "inpaint", options: { mask: "box" } };
 * const sd = { name: "my-sd15", family: { id: "sd", evidence: "unet/config.json: cross_attention_dim 768" } };
 * const p = choosePreset("psld", PSLD_PRESETS, "auto", sd, box);
 * assert.equal(p.name, "sd15/inpaint-box");
 * assert.match(p.reason, /auto/);
 * ```
 */
export function choosePreset(
  solver: string,
  presets: Record<string, DpsPreset>,
  name: string,
  prior: Pick<Prior, "name" | "family">,
  op: Pick<ForwardOperator, "name" | "options">,
): { name: string; preset: DpsPreset; reason: string } {
  let chosen = name, reason = "given";
  if (name === "auto") {
    const family = presetFamily(prior);
    const box = op.name === "inpaint" && (op.options as { mask?: unknown }).mask === "box";
    chosen = box && presets[`${family}/inpaint-box`] ? `${family}/inpaint-box` : family;
    const f = prior.family;
    const told = f
      ? `prior family ${f.id} (${f.evidence})`
      : `prior "${prior.name}" reports no family`;
    reason = `auto: ${told}${box ? ", box inpainting" : ""}`;
  }
  const preset = presets[chosen];
  if (!preset) {
    throw new InputError(
      `${solver}: unknown preset "${chosen}" (known: auto, ${Object.keys(presets).join(", ")})`,
    );
  }
  return { name: chosen, preset, reason };
}
