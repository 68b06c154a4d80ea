/**
 * LATINO — LAtent consisTency INverse sOlver (Spagnoletti et al.), as the official code runs it
 * (LATINO-PRO/LATINO-PRO `main_LATINO.py` + `noise_schemes.noise_pred_cond_y`; see
 * ../shared/reference/solvers.md §2.2).
 *
 * Paper form: a split Langevin step whose prior half is a stochastic auto-encoder,
 *
 *   x_{k+1} = prox_{δ_k g_y}( D( G_θ( √ᾱ_{t_k} E(x_k) + √(1−ᾱ_{t_k}) ε_k , t_k, c ) ) ),
 *   g_y(x) = ‖A x − y'‖² / (2σ'²),  δ_k = δ·(1−ᾱ_{t_k}).
 *
 * Code form (what runs here): the shared step of `latino_step.ts` at t = 999, 874, …, 124 —
 * ẑ0 = G(z, t, c), x = clip(D(ẑ0)), δ from the rule, x_p = prox(x), z0' = E(clip(x_p)), re-noised
 * to the next timestep — and x̂ = (D(z)+1)/2 clamped to [0,1].
 *
 * DEVIATIONS from the official code (also listed in the README):
 * - The last LCMScheduler step returns c_out·z0' + c_skip·z with c_skip(124) ≈ 1.6e-7; we return z0'
 *   (the c_skip → 0 limit). Likewise the consistency map of an LCM prior includes the boundary
 *   coefficients, whereas the official code decodes the raw x̂0 prediction: a 1e-7 relative effect.
 * - Initialisation uses the operator's `pseudoInverse` (= Aᵀy for blur, the box-filter hole filling
 *   for inpainting, as in the official code; an upsampled y for SR, where the official code uses
 *   Aᵀy', a nearly flat image at ×16). `init: "adjoint"` restores the official Aᵀy'.
 * - `clip: false` switches both clips off (needed for the exact tests of exact-model.md §6).
 *
 * @module
 */
import { z } from "zod";
import type {
  Conditioning,
  ForwardOperator,
  Prior,
  Problem,
  SolveContext,
  SolveResult,
  StepEvent,
} from "../core/contracts.ts";
import { defineSolver } from "../core/registry.ts";
import { solverConditioning } from "../core/context.ts";
import { InputError } from "../core/errors.ts";
import { constantDelta, DELTA_PRESETS, type DeltaRule } from "./delta.ts";
import {
  LATINO_STEP_OPTIONS,
  LatinoStep,
  latinoTimesteps,
  operatorTask,
  priorFamily,
} from "./latino_step.ts";

export { latinoTimesteps };

/**
 * Options of LATINO.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latinoOptions } from "./latino.ts";
 * const o = latinoOptions.parse({ steps: 4 });
 * assert.equal(o.preset, "auto");
 * assert.equal(o.init, "pseudo-inverse");
 * ```
 */
export const latinoOptions = z.strictObject({
  /** Number of steps N; timesteps t_k = 999 − ⌊k·1000/N⌋ (8 → 999, 874, …, 124). */
  steps: z.number().int().min(1).max(1000).default(8)
    .describe("number of steps N; t_k = 999 − ⌊k·1000/N⌋ (default 8: 999, 874, …, 124)"),
  /** Explicit timesteps separated by "/", e.g. "999/749/499/249" (overrides `steps`). */
  timesteps: z.union([z.number().int(), z.string().regex(/^\d+(\s*[;/ ]\s*\d+)*$/)])
    .transform(String).optional()
    .describe('explicit decreasing timesteps separated by "/", e.g. 999/749/499/249'),
  /** Constant δ (overrides `preset`). */
  delta: z.number().positive().optional()
    .describe("constant δ (overrides preset); γ = δ(1−ᾱ_t)/σ'²"),
  /** δ preset name (see DELTA_PRESETS) or "auto" (by prior family and operator). */
  preset: z.string().default("auto")
    .describe(
      "δ preset (sdxl-dmd2/*, sd15-lcm/*, builtin/*) or auto (by the prior's family and the operator)",
    ),
  /** Prompt for the prior's text encoder. */
  prompt: z.string().default("").describe("prompt for the prior's text encoder (default empty)"),
  ...LATINO_STEP_OPTIONS,
});

/** Parsed LATINO options. */
export type LatinoOptions = z.output<typeof latinoOptions>;

/**
 * Choose the δ rule from options, prior and operator. Returns the rule, a label for reports and
 * the reason it was chosen (one line; LATINO says it with its first step).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chooseDeltaRule } from "./latino.ts";
 * const blur = { name: "blur", options: { kernel: "gaussian" } };
 * const builtin = { name: "builtin", family: { id: "builtin", evidence: "exact model" } };
 * const auto = chooseDeltaRule({ preset: "auto" }, builtin, blur);
 * assert.equal(auto.label, "builtin/gaussian");
 * assert.match(auto.reason, /prior family builtin/);
 * const fixed = chooseDeltaRule({ delta: 0.05, preset: "auto" }, builtin, blur);
 * assert.equal(fixed.label, "constant 0.05");
 * ```
 */
export function chooseDeltaRule(
  options: Pick<LatinoOptions, "delta" | "preset">,
  prior: Pick<Prior, "name" | "family">,
  operator: Pick<ForwardOperator, "name" | "options">,
): { rule: DeltaRule; label: string; reason: string } {
  if (options.delta !== undefined) {
    return {
      rule: constantDelta(options.delta),
      label: `constant ${options.delta}`,
      reason: "delta= given",
    };
  }
  let name = options.preset;
  let reason = "preset= given";
  if (name === "auto") {
    name = autoPreset(prior.family, operator);
    const f = prior.family;
    reason = f
      ? `prior family ${f.id} (${f.evidence}), operator ${operator.name}`
      : `${priorFamily(prior).evidence}; operator ${operator.name}`;
  }
  const preset = DELTA_PRESETS[name];
  if (!preset) {
    throw new InputError(
      `latino: unknown δ preset "${name}" (known: ${Object.keys(DELTA_PRESETS).join(", ")})`,
    );
  }
  return { rule: preset.rule, label: name, reason };
}

/**
 * The preset "auto" picks: the group from the prior's family (its config files, not its name;
 * see {@link priorFamily}), the task from the operator.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autoPreset } from "./latino.ts";
 * const dmd2 = { id: "sdxl-dmd2", evidence: "SDXL inputs, LCMScheduler" };
 * assert.equal(autoPreset(dmd2, { name: "sr", options: { factor: 16 } }), "sdxl-dmd2/sr16");
 * const lcm = { id: "sd-lcm", evidence: "LCMScheduler" };
 * assert.equal(autoPreset(lcm, { name: "inpaint", options: {} }), "sd15-lcm/inpaint");
 * ```
 */
export function autoPreset(
  family: Prior["family"],
  op: Pick<ForwardOperator, "name" | "options">,
): string {
  const group = priorFamily({ name: "", family }).family;
  const exact = `${group}/${operatorTask(op)}`;
  if (DELTA_PRESETS[exact]) return exact;
  if (group === "builtin") return "builtin/other";
  return group === "sdxl-dmd2" ? "sdxl-dmd2/other" : "sd15-lcm/gaussian";
}

function parseTimesteps(o: LatinoOptions, numTrain: number): number[] {
  const ts = o.timesteps
    ? o.timesteps.split(/[\s;/]+/).map(Number)
    : latinoTimesteps(o.steps, numTrain);
  for (let i = 0; i < ts.length; i++) {
    if (!(ts[i] >= 0 && ts[i] < numTrain)) {
      throw new InputError(`latino: timestep ${ts[i]} is outside [0, ${numTrain - 1}]`);
    }
    if (i > 0 && ts[i] >= ts[i - 1]) {
      throw new InputError(`latino: timesteps must decrease (got ${ts.join(",")})`);
    }
  }
  return ts;
}

/**
 * The LATINO iteration as an async generator of step events; returns the restored image.
 * `rng` is the solver stream (re-noising ξ and the df noise n come from its children "renoise" and
 * "residual").
 */
export async function* runLatino(
  o: LatinoOptions,
  problem: Problem,
  prior: Prior,
  ctx: SolveContext,
): AsyncGenerator<StepEvent, SolveResult> {
  const step = new LatinoStep(o, problem, prior, ctx, "latino");
  const ts = parseTimesteps(o, prior.schedule.numTrainTimesteps);
  const { rule, label, reason } = chooseDeltaRule(o, prior, problem.operator);
  const c: Conditioning = await solverConditioning(prior, o.prompt, ctx);

  // Initialisation ("y_noise"): z = √ᾱ_{t0} E(clip(x_init)) + √(1−ᾱ_{t0}) ξ.
  let z = step.noise(await step.initialLatent(), ts[0]);
  for (let k = 0; k < ts.length; k++) {
    if (ctx.signal?.aborted) throw new DOMException("LATINO was cancelled", "AbortError");
    const started = performance.now();
    const r = await step.run(z, ts[k], c, rule, k + 1 < ts.length ? ts[k + 1] : null);
    z = r.z;
    const ev = step.event(k, ts.length, ts[k], started, r);
    // Which δ rule and why, said with the first step.
    yield k === 0 ? { ...ev, note: `latino: δ rule ${label} (${reason})` } : ev;
  }
  return {
    x: await step.output(z),
    info: { timesteps: ts, deltaRule: label, deltaReason: reason, rule, deltas: step.deltas },
  };
}

/**
 * The LATINO solver plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateOptions } from "../core/registry.ts";
 * import { latinoPlugin } from "./latino.ts";
 * const options = validateOptions(latinoPlugin, { steps: 4 });
 * const solver = await latinoPlugin.create(options, {});
 * assert.equal(solver.name, "latino");
 * assert.deepEqual(solver.requires, { prior: { consistency: true, encode: true } });
 * ```
 */
export const latinoPlugin = defineSolver({
  kind: "solver",
  name: "latino",
  description: "LATINO: latent consistency prior + prox splitting, 8 NFE, gradient-free",
  options: latinoOptions,
  create(options) {
    return {
      name: "latino",
      requires: { prior: { consistency: true, encode: true } },
      run: (problem, prior, ctx) => runLatino(options, problem, prior, ctx),
    };
  },
});
