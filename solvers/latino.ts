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
 * Code form (what runs here), per timestep t in 999, 874, …, 124 on the [-1,1] scale:
 *
 *   ẑ0  = G(z, t, c)                          consistency map (1 NFE)
 *   x   = clip(D(ẑ0), −1, 1)                  decode
 *   df  = ‖A(x) + σ'n − y'‖                  residual with fresh measurement-like noise (only
 *                                              when the δ rule reads it)
 *   δ   = rule(t, df);  γ = δ (1−ᾱ_t)/σ'²
 *   x_p = argmin_u (γ/2)‖A u − y'‖² + ½‖u − x‖²
 *   z0' = E(clip(x_p, −1, 1))                 encode (mean)
 *   z   = √ᾱ_{t'} z0' + √(1−ᾱ_{t'}) ξ         re-noise to the next timestep t' (last step: z = z0')
 *
 * and x̂ = (D(z)+1)/2 clamped to [0,1].
 *
 * Scale bookkeeping. Operators work on [0,1] images; the solver works on [-1,1]. With x' = 2x − 1
 * and the consistent measurement y' = 2y − A(1), ‖A x' − y'‖ = 2‖A x − y‖ and ‖x' − z'‖ = 2‖x − z‖, so
 * the prox with the same γ is computed on [0,1] images: u = prox_y((x+1)/2, γ) (the operator's
 * prox bound to y, i.e. op.proxL2((x+1)/2, y, γ)), x_p = 2u − 1.
 * For operators with A(1) = 1 (normalised blur and SR kernels) this is exactly the official
 * y' = 2y − 1.
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
import { proxOf } from "../core/prox.ts";
import { InputError } from "../core/errors.ts";
import type { RandomStream } from "../core/rng.ts";
import { clamp, type Tensor, tensor, toImageScale, toModelScale } from "../core/tensor.ts";
import { addNoise } from "../core/sampling/mod.ts";
import { constantDelta, DELTA_PRESETS, deltaAt, type DeltaRule } from "./delta.ts";

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
    .describe("δ preset (sdxl-dmd2/*, sd15-lcm/*, builtin/*) or auto (by prior and operator)"),
  /** Prompt for the prior's text encoder. */
  prompt: z.string().default("").describe("prompt for the prior's text encoder (default empty)"),
  /** Clip decoded and prox images to [-1,1] (official behaviour). */
  clip: z.boolean().default(true).describe("clip decoded and prox images to [-1,1] (default true)"),
  /** Initial image: operator's pseudo-inverse (default) or the official Aᵀy'. */
  init: z.enum(["pseudo-inverse", "adjoint"]).default("pseudo-inverse")
    .describe("initial image: pseudo-inverse (default) | adjoint (official Aᵀy')"),
  /** Draw the measurement-like noise inside df, as deepinv's physics does. */
  residual_noise: z.boolean().default(true)
    .describe("add measurement-like noise inside the residual df, as deepinv does (default true)"),
  /** Max iterations of an iterative prox (CG / nonlinear). */
  prox_max_iter: z.number().int().positive().optional()
    .describe("max iterations of an iterative prox (CG / nonlinear)"),
  /** Tolerance of an iterative prox. */
  prox_tol: z.number().positive().optional().describe("tolerance of an iterative prox"),
});

/** Parsed LATINO options. */
export type LatinoOptions = z.output<typeof latinoOptions>;

/**
 * The timesteps of an N-step run: t_k = 999 − ⌊k·T/N⌋.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latinoTimesteps } from "./latino.ts";
 * assert.deepEqual(latinoTimesteps(8), [999, 874, 749, 624, 499, 374, 249, 124]);
 * ```
 */
export function latinoTimesteps(steps: number, numTrain = 1000): number[] {
  return Array.from({ length: steps }, (_, k) => numTrain - 1 - Math.floor(k * numTrain / steps));
}

/**
 * Choose the δ rule from options, prior and operator. Returns the rule and a label for reports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chooseDeltaRule } from "./latino.ts";
 * const blur = { name: "blur", options: { kernel: "gaussian" } };
 * const auto = chooseDeltaRule({ preset: "auto" }, { name: "builtin" }, blur);
 * assert.equal(auto.label, "builtin/gaussian");
 * const fixed = chooseDeltaRule({ delta: 0.05, preset: "auto" }, { name: "sd15" }, blur);
 * assert.equal(fixed.label, "constant 0.05");
 * ```
 */
export function chooseDeltaRule(
  options: Pick<LatinoOptions, "delta" | "preset">,
  prior: Pick<Prior, "name">,
  operator: Pick<ForwardOperator, "name" | "options">,
): { rule: DeltaRule; label: string } {
  if (options.delta !== undefined) {
    return { rule: constantDelta(options.delta), label: `constant ${options.delta}` };
  }
  let name = options.preset;
  if (name === "auto") name = autoPreset(prior.name, operator);
  const preset = DELTA_PRESETS[name];
  if (!preset) {
    throw new InputError(
      `latino: unknown δ preset "${name}" (known: ${Object.keys(DELTA_PRESETS).join(", ")})`,
    );
  }
  return { rule: preset.rule, label: name };
}

/**
 * The preset "auto" picks: family from the prior's name, task from the operator.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { autoPreset } from "./latino.ts";
 * assert.equal(autoPreset("sdxl-dmd2", { name: "sr", options: { factor: 16 } }), "sdxl-dmd2/sr16");
 * assert.equal(autoPreset("sd15-lcm", { name: "inpaint", options: {} }), "sd15-lcm/inpaint");
 * ```
 */
export function autoPreset(
  priorName: string,
  op: Pick<ForwardOperator, "name" | "options">,
): string {
  const o = op.options as Record<string, unknown>;
  const family = priorName.startsWith("builtin")
    ? "builtin"
    : /xl|dmd/i.test(priorName)
    ? "sdxl-dmd2"
    : "sd15-lcm";
  let task = "other";
  if (op.name === "blur") task = o.kernel === "motion" ? "motion" : "gaussian";
  else if (op.name === "inpaint") task = "inpaint";
  else if (op.name === "sr") task = o.factor === 32 ? "sr32" : o.factor === 16 ? "sr16" : "sr";
  else if (op.name === "jpeg") task = "jpeg";
  const exact = `${family}/${task}`;
  if (DELTA_PRESETS[exact]) return exact;
  if (family === "builtin") return "builtin/other";
  return family === "sdxl-dmd2" ? "sdxl-dmd2/other" : "sd15-lcm/gaussian";
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

/** Clip to [-1,1] when `on` (the official code clips decoded and prox images). */
function clipModel(x: Tensor, on: boolean): Tensor {
  return on ? clamp(x, -1, 1) : x;
}

/**
 * df² = ‖2(A(x) + σ n − y)‖² = ‖A(x') + σ'n − y'‖² on the [-1,1] scale, from A(x) on [0,1]; the
 * noise n (when drawn) comes from `rng` in chunks, fused with the sum.
 */
function residualNormSq(
  ax: Float32Array,
  y: Float32Array,
  sigma: number,
  rng: RandomStream | null,
) {
  let s = 0;
  if (!rng) {
    for (let i = 0; i < ax.length; i++) s += 4 * (ax[i] - y[i]) ** 2;
    return s;
  }
  const n = DF_CHUNK;
  for (let i0 = 0; i0 < ax.length; i0 += n.length) {
    const m = Math.min(n.length, ax.length - i0);
    rng.fillNormal(m === n.length ? n : n.subarray(0, m));
    for (let j = 0; j < m; j++) {
      const r = ax[i0 + j] + sigma * n[j] - y[i0 + j];
      s += 4 * r * r;
    }
  }
  return s;
}

/** Scratch for the residual's noise draws (fillNormal into float64 = successive normal() calls). */
const DF_CHUNK = new Float64Array(4096);

/** out ← clip(0.5·x + 0.5, 0, 1) when `clip` (= (clip(x, −1, 1) + 1)/2), else 0.5·x + 0.5. */
function toUnitInto(x: Float32Array, out: Float32Array, clip: boolean): void {
  if (clip) {
    for (let i = 0; i < x.length; i++) {
      const v = 0.5 * x[i] + 0.5;
      out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  } else for (let i = 0; i < x.length; i++) out[i] = 0.5 * x[i] + 0.5;
}

/** out ← clip(2u − 1, −1, 1) when `clip`, else 2u − 1. */
function toModelInto(u: Float32Array, out: Float32Array, clip: boolean): void {
  if (clip) {
    for (let i = 0; i < u.length; i++) {
      const v = 2 * u[i] - 1;
      out[i] = v < -1 ? -1 : v > 1 ? 1 : v;
    }
  } else for (let i = 0; i < u.length; i++) out[i] = 2 * u[i] - 1;
}

async function initialImage(o: LatinoOptions, problem: Problem): Promise<Tensor> {
  const op = problem.operator;
  if (o.init === "pseudo-inverse" && op.pseudoInverse) return await op.pseudoInverse(problem.y);
  if (op.adjoint) {
    // Official: Aᵀy' with y' = 2y − 1, mapped back to [0,1] as (Aᵀy' + 1)/2.
    const yModel = toModelScale(problem.y);
    return toImageScale(await op.adjoint(yModel));
  }
  if (op.pseudoInverse) return await op.pseudoInverse(problem.y);
  throw new InputError(`latino: operator "${op.name}" has neither pseudoInverse nor adjoint`);
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
  if (!prior.consistency || !prior.encode) {
    throw new InputError(
      `latino: prior "${prior.name}" needs a consistency map and an encoder`,
    );
  }
  const encode = prior.encode.bind(prior);
  const op = problem.operator;
  const abar = prior.schedule.alphasCumprod;
  const ts = parseTimesteps(o, prior.schedule.numTrainTimesteps);
  const sigma = problem.noise.sigma;
  const sigmaPrime = 2 * sigma;
  if (!(sigmaPrime > 0)) throw new InputError("latino: noise σ_y must be > 0 (γ = δ(1−ᾱ)/σ'²)");
  const { rule, label } = chooseDeltaRule(o, prior, op);
  const renoise = ctx.rng.child("renoise");
  // The residual df (and its noise draw) only when the δ rule reads it.
  const dfNoise = rule.scale !== "one" && o.residual_noise ? ctx.rng.child("residual") : null;
  const prox = proxOf(op, problem.y); // the operator's prox bound to y
  const c: Conditioning = await prior.condition(o.prompt);

  // Initialisation ("y_noise"): z = √ᾱ_{t0} E(clip(x_init)) + √(1−ᾱ_{t0}) ξ.
  const xInit = clipModel(toModelScale(await initialImage(o, problem)), o.clip);
  let z = addNoise(await encode(xInit), abar[ts[0]], renoise);
  const deltas: number[] = [];
  // Image-sized buffers, reused by every step: x on [0,1], the prox's u, x_p on [-1,1].
  const shape = [...problem.imageShape];
  const x01 = tensor(shape), u = tensor(shape), xp = tensor(shape);
  const y = problem.y;

  for (let k = 0; k < ts.length; k++) {
    if (ctx.signal?.aborted) throw new DOMException("LATINO was cancelled", "AbortError");
    const started = performance.now();
    const t = ts[k];
    // Prior half: consistency map, decode; x01 = (clip(x, −1, 1) + 1)/2 in one pass.
    const z0hat = await prior.consistency(z, t, c);
    toUnitInto((await prior.decode(z0hat)).data, x01.data, o.clip);
    // Step size: δ from the rule (df = ‖A(x') + σ'n − y'‖ when it reads it), γ = δ(1−ᾱ_t)/σ'².
    const stepSize = (df: number) => {
      const delta = deltaAt(rule, t, df, sigmaPrime);
      deltas.push(delta);
      return delta * (1 - abar[t]) / (sigmaPrime * sigmaPrime);
    };
    // Likelihood half: u = prox_{γ/2‖A·−y‖²}(x), on [0,1] (same γ, see module doc), into the
    // reused buffer where the operator supports it; closed-form proxes report ‖A u − y‖ free.
    const report: { residual?: number } = {};
    const proxOpts = { maxIter: o.prox_max_iter, tol: o.prox_tol, out: u, report };
    let ut: Tensor;
    if (rule.scale === "one") {
      ut = await prox.apply(x01, stepSize(NaN), proxOpts);
    } else {
      // df needs A x: an operator with proxL2Adaptive computes it from the prox's own transforms.
      const gammaOf = (ax: Tensor) =>
        stepSize(Math.sqrt(residualNormSq(ax.data, y.data, sigma, dfNoise)));
      ut = op.proxL2Adaptive
        ? await op.proxL2Adaptive(x01, y, gammaOf, proxOpts)
        : await prox.apply(x01, gammaOf(await op.forward(x01)), proxOpts);
    }
    // Encode clip(2u − 1) and re-noise to the next timestep (in place in the encoder's output).
    toModelInto(ut.data, xp.data, o.clip);
    const z0 = await encode(xp);
    z = k + 1 < ts.length ? addNoise(z0, abar[ts[k + 1]], renoise, z0) : z0;
    const stats = prior.stats();

    if (report.residual === undefined) {
      // Iterative proxes do not report it: one A(u) for the step event.
      report.residual = Math.sqrt(residualNormSq((await op.forward(ut)).data, y.data, 0, null)) / 2;
    }
    yield {
      step: k,
      total: ts.length,
      t,
      nfe: { ...stats.calls },
      vjp: { ...stats.vjp },
      residual: report.residual,
      ms: performance.now() - started,
      preview: ctx.previews ? clamp(toImageScale(xp), 0, 1) : undefined,
    };
  }
  const xHat = toImageScale(await prior.decode(z));
  return {
    x: o.clip ? clamp(xHat, 0, 1) : xHat,
    info: { timesteps: ts, deltaRule: label, rule, deltas },
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
