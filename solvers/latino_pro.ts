/**
 * LATINO-PRO — LATINO with PRompt Optimisation (Spagnoletti et al.), as the official code runs it
 * (LATINO-PRO/LATINO-PRO `main_LATINO_PRO.py` + `noise_schemes.noise_pred_cond_y_PRO`; see
 * ../shared/reference/solvers.md §3.2).
 *
 * Empirical Bayes: ĉ(y) = argmax_{c ∈ C} log p(y | c), by SAPG (core/sapg.ts) on the text
 * embedding c = `encoder_hidden_states` [1, T, D], then LATINO with ĉ:
 *
 *   c ← c0 = embed(prompt) (or --embedding);  acc ← 0;  z ← E(x_init)
 *   for j = 0 … 14:                                         15 SAPG iterations
 *     z_{t0} = √ᾱ_{999} z + √(1−ᾱ_{999}) ξ
 *     for i, t in [999, 749, 499, 249]:                      a 4-step LATINO chain at c_j
 *       ẑ0 = G(z_t, t, c_j);  z_{t'} = LATINO step (prox → encode → re-noise)      (1 NFE)
 *       if i < 3:  ℓ_i(c) = −‖z_{t'} − √ᾱ_{t'} ẑ0(c)‖² / (2(1−ᾱ_{t'}))
 *                  g_i = ∇_c ℓ_i at c_j                                            (1 VJP)
 *                  acc += g_i / ‖g_i‖_row;  acc[:4] = 0
 *     c_{j+1} = Π_{‖c_k − c0_k‖ ≤ R}( c_j + γ_j acc ),  γ_j = γ0·max(0.9^max(0, j−10), 1e-3)
 *     z = the chain's clean output
 *   x̂ = 8-step LATINO at c_15 from z re-noised to 999                                (8 NFE)
 *
 * 15·4 + 8 = 68 UNet forwards and 15·3 = 45 UNet VJPs w.r.t. `encoder_hidden_states`. The
 * surrogate ℓ is the prior's transition log-density between consecutive chain states; its ẑ0 is
 * the x̂0 of the network that drives the chain: the consistency map (`estimator=consistency`, the
 * official code's distilled UNet's x̂0), or Tweedie's x̂0 from the ε/v network
 * (`estimator=tweedie`: one more forward per transition to form the cotangent). The gradient is
 * the prior's (w.r.t. its conditioning), never the operator's: every operator LATINO takes works.
 *
 * DEVIATIONS from the official code (also in the README):
 * - LATINO's deviations (latino.ts).
 * - The official code draws a 4-step prior sample after every SAPG iteration for logging (its
 *   latents are discarded, but it consumes random draws); we skip it. Our draws come from named
 *   streams anyway, so no draw sequence is comparable with the official one.
 * - The official code updates c inside the chain's last step, after that step's UNet forward and
 *   before its scheduler update; the chain's remaining arithmetic does not read c, so updating
 *   after the chain is the same.
 * - SD1.5 has no LATINO-PRO δ rules in the official code (presets `sd15-lcm/*` reuse LATINO-1.5's),
 *   and the built-in model's presets are ours (latino_pro_presets.ts).
 * - A token row with an exactly zero gradient stays zero when row-normalised (0/0 officially).
 *
 * @module
 */
import { z } from "zod";
import type {
  Conditioning,
  Prior,
  Problem,
  SolveContext,
  SolveResult,
  StepEvent,
} from "../core/contracts.ts";
import { defineSolver } from "../core/registry.ts";
import { solverConditioning } from "../core/context.ts";
import { InputError } from "../core/errors.ts";
import {
  type GradientEstimator,
  sapg,
  type SapgIteration,
  type SapgSettings,
  transitionGradient,
} from "../core/sapg.ts";
import { constantDelta, type DeltaRule } from "./delta.ts";
import {
  LATINO_STEP_OPTIONS,
  LatinoStep,
  latinoTimesteps,
  operatorTask,
  priorFamily,
} from "./latino_step.ts";
import { autoProPreset, PRO_PRESETS, type ProPreset } from "./latino_pro_presets.ts";

/** The conditioning tensor SAPG optimises. */
export const PRO_TENSOR = "encoder_hidden_states";

/**
 * Options of LATINO-PRO (snake_case keys). Unset γ0, R and δ come from the preset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latinoProOptions } from "./latino_pro.ts";
 * const o = latinoProOptions.parse({});
 * assert.equal(o.iterations, 15);
 * assert.equal(o.frozen_tokens, 4);
 * assert.equal(o.estimator, "consistency");
 * assert.throws(() => latinoProOptions.parse({ chain_steps: 1 })); // no transition to differentiate
 * ```
 */
export const latinoProOptions = z.strictObject({
  /** Prompt for the prior's text encoder: c0 (or --embedding). */
  prompt: z.string().default("").describe("initial prompt c0 (default empty; or --embedding)"),
  /** Preset name or auto. */
  preset: z.string().default("auto").describe(
    "preset for γ0, R and both phases' δ rules (sdxl-dmd2/*, sd15-lcm/*, builtin/*) or auto",
  ),
  /** SAPG step γ0 (overrides the preset). */
  gamma0: z.number().positive().optional()
    .describe(
      "SAPG step γ0 (default: the preset's, 0.08); γ_j = γ0·max(decay^max(0, j−decay_start), gamma_floor)",
    ),
  /** Radius R of the per-token L2 balls around c0 (overrides the preset). */
  radius: z.number().positive().optional()
    .describe(
      "radius R of the per-token L2 balls around the initial embedding (default: the preset's; official 15, builtin 6)",
    ),
  /** The study's rule from an expected embedding distance d*: γ0 = 0.002·d*, R = d*. */
  distance: z.number().positive().optional()
    .describe("expected distance d* to the evidence optimum: sets γ0 = 0.002·d*, R = d*"),
  /** SAPG iterations. */
  iterations: z.number().int().min(0).max(1000).default(15)
    .describe("SAPG iterations, each a LATINO chain of chain_steps (default 15)"),
  /** Leading token rows that never move. */
  frozen_tokens: z.number().int().min(0).default(4)
    .describe('leading token rows kept fixed (default 4: BOS + "a photo of")'),
  /** Iteration after which γ decays. */
  decay_start: z.number().int().min(0).default(10).describe("γ decays after this iteration (10)"),
  /** Geometric decay of γ. */
  decay: z.number().gt(0).max(1).default(0.9).describe("geometric decay factor of γ (0.9)"),
  /** Floor of the decay factor. */
  gamma_floor: z.number().min(0).max(1).default(1e-3).describe("floor of the decay (1e-3)"),
  /** x̂0 of the transition surrogate. */
  estimator: z.enum(["consistency", "tweedie"]).default("consistency").describe(
    "x̂0 of the surrogate: consistency (the chain's network, official) | tweedie (+1 NFE each)",
  ),
  /** Steps of each chain inside SAPG. */
  chain_steps: z.number().int().min(2).max(1000).default(4)
    .describe("LATINO steps per SAPG iteration (default 4: t = 999, 749, 499, 249)"),
  /** Steps of the final LATINO run. */
  final_steps: z.number().int().min(1).max(1000).default(8)
    .describe("steps of the final LATINO run (default 8: t = 999, 874, …, 124)"),
  /** Constant δ for both phases (overrides the preset). */
  delta: z.number().positive().optional().describe("constant δ of both phases (overrides preset)"),
  /** Constant δ for the final run only. */
  final_delta: z.number().positive().optional().describe("constant δ of the final run only"),
  ...LATINO_STEP_OPTIONS,
});

/** Parsed LATINO-PRO options. */
export type LatinoProOptions = z.output<typeof latinoProOptions>;

/** The settings a run resolves from options, preset, prior and operator. */
export interface ResolvedPro {
  /** Preset name and why it was picked. */
  preset: string;
  /** How the preset was chosen, for reports ("auto: family builtin (from the prior's config: …) …"). */
  chosen: string;
  /** SAPG settings. */
  sapg: SapgSettings;
  /** δ rule of the chains. */
  chainRule: DeltaRule;
  /** δ rule of the final run. */
  finalRule: DeltaRule;
}

/**
 * Resolve the preset and the explicit options into SAPG settings and δ rules.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latinoProOptions, resolvePro } from "./latino_pro.ts";
 * const blur = { name: "blur", options: { kernel: "gaussian", sigma: 3 } };
 * const builtin = { name: "builtin", family: { id: "builtin", evidence: "exact model" } };
 * const r = resolvePro(latinoProOptions.parse({ radius: 9 }), builtin, blur, 0.01);
 * assert.equal(r.preset, "builtin/gaussian");
 * assert.equal(r.sapg.radius, 9); // explicit option beats the preset
 * const d = resolvePro(latinoProOptions.parse({ distance: 5 }), builtin, blur, 0.01);
 * assert.equal(d.sapg.gamma0, 0.01); // the study's rule: γ0 = 0.002·d*
 * ```
 */
export function resolvePro(
  o: LatinoProOptions,
  prior: Pick<Prior, "name" | "family">,
  op: Parameters<typeof operatorTask>[0],
  sigmaY: number,
): ResolvedPro {
  let name = o.preset, chosen = `preset ${o.preset}`;
  if (name === "auto") {
    const { family, from, evidence } = priorFamily(prior);
    const task = operatorTask(op);
    name = autoProPreset(family, task, op.options, sigmaY);
    chosen = `auto: family ${family} (from the prior's ${from}: ${evidence}), task ${task}, ` +
      `σ_y ${sigmaY}`;
  }
  const p: ProPreset | undefined = PRO_PRESETS[name];
  if (!p) {
    throw new InputError(
      `latino-pro: unknown preset "${name}" (known: ${Object.keys(PRO_PRESETS).join(", ")})`,
    );
  }
  const ruled = o.distance !== undefined
    ? { gamma0: 0.002 * o.distance, radius: o.distance }
    : { gamma0: p.gamma0, radius: p.radius };
  const chainRule = o.delta !== undefined ? constantDelta(o.delta) : p.chain;
  const finalDelta = o.final_delta ?? o.delta;
  return {
    preset: name,
    chosen,
    sapg: {
      gamma0: o.gamma0 ?? ruled.gamma0,
      radius: o.radius ?? ruled.radius,
      iterations: o.iterations,
      frozenTokens: o.frozen_tokens,
      decayStart: o.decay_start,
      decay: o.decay,
      gammaFloor: o.gamma_floor,
      direction: "normalised-sum",
    },
    chainRule,
    finalRule: finalDelta !== undefined ? constantDelta(finalDelta) : p.final,
  };
}

/** The conditioning c with `encoder_hidden_states` replaced by the values v (float32). */
function withEmbedding(prior: Prior, c0: Conditioning, v: ArrayLike<number>): Conditioning {
  const e = c0.tensors[PRO_TENSOR];
  return prior.conditionFromTensors({
    ...c0.tensors,
    [PRO_TENSOR]: { data: Float32Array.from(v), shape: [...e.shape] },
  });
}

/**
 * The LATINO-PRO iteration as an async generator of step events (one per LATINO step: 68 with
 * the defaults); the last step of every SAPG iteration carries the iteration's record in `info`.
 */
export async function* runLatinoPro(
  o: LatinoProOptions,
  problem: Problem,
  prior: Prior,
  ctx: SolveContext,
): AsyncGenerator<StepEvent, SolveResult> {
  const step = new LatinoStep(o, problem, prior, ctx, "latino-pro");
  const tweedie = o.estimator === "tweedie";
  const vjpOf = tweedie ? prior.denoiseVjp : prior.consistencyVjp;
  const x0Of = tweedie ? prior.denoise : prior.consistency;
  if (!vjpOf || !x0Of) {
    throw new InputError(
      `latino-pro: prior "${prior.name}" has no ${tweedie ? "denoiser" : "consistency"} VJP`,
    );
  }
  const info = prior.conditioningTensors().find((i) => i.name === PRO_TENSOR);
  if (!info?.differentiable) {
    throw new InputError(
      `latino-pro: prior "${prior.name}" offers no gradient w.r.t. "${PRO_TENSOR}"`,
    );
  }
  const res = resolvePro(o, prior, problem.operator, problem.noise.sigma);
  const c0 = await solverConditioning(prior, o.prompt, ctx);
  const e0 = c0.tensors[PRO_TENSOR];
  const width = e0.shape[e0.shape.length - 1], tokens = e0.data.length / width;
  if (o.frozen_tokens >= tokens) {
    throw new InputError(
      `latino-pro: frozen_tokens=${o.frozen_tokens} leaves no token of the ${tokens} to optimise`,
    );
  }
  const abar = prior.schedule.alphasCumprod, numTrain = prior.schedule.numTrainTimesteps;
  const chainTs = latinoTimesteps(o.chain_steps, numTrain);
  const finalTs = latinoTimesteps(o.final_steps, numTrain);
  const total = o.iterations * chainTs.length + finalTs.length;
  let k = 0; // global step index
  let clean = await step.initialLatent(); // the chain state: its last clean output

  // The transition-surrogate estimator: a LATINO chain at c_j, one VJP per transition.
  const estimator: GradientEstimator<StepEvent> = {
    name: `transition-surrogate(${o.estimator})`,
    async *estimate(cj) {
      const c = withEmbedding(prior, c0, cj);
      let z = step.noise(clean, chainTs[0]);
      const grads: Float64Array[] = [];
      let value = 0;
      for (let i = 0; i < chainTs.length; i++) {
        if (ctx.signal?.aborted) throw new DOMException("LATINO-PRO was cancelled", "AbortError");
        const started = performance.now(), t = chainTs[i];
        const last = i + 1 === chainTs.length;
        const zt = z;
        const r = await step.run(zt, t, c, res.chainRule, last ? null : chainTs[i + 1]);
        if (!last) {
          // ∇_c ℓ_i = VJP of ẑ0 w.r.t. c with w = √ᾱ'(z' − √ᾱ' ẑ0)/(1−ᾱ') (core/sapg.ts).
          const x0 = tweedie ? await x0Of.call(prior, zt, t, c) : r.z0hat;
          const g = await transitionGradient(
            x0.data,
            r.z.data,
            abar[chainTs[i + 1]],
            async (w) =>
              (await vjpOf.call(prior, zt, t, c, { data: w, shape: [...zt.shape] }, {
                wrt: [PRO_TENSOR],
              })).grads[PRO_TENSOR].data,
          );
          grads.push(g.grad);
          value += g.value;
        }
        z = r.z;
        yield step.event(k++, total, t, started, r);
      }
      clean = z;
      return { grads, value };
    },
  };

  // SAPG; the chain's last step event waits for the iteration's record.
  let pending: StepEvent | null = null;
  const iterations: SapgIteration[] = [];
  const run = sapg(e0.data, width, estimator, res.sapg, ctx.signal);
  let item = await run.next();
  while (!item.done) {
    if (item.value.kind === "estimator") {
      if (pending) yield pending;
      pending = item.value.event;
    } else {
      const it = item.value.iteration;
      iterations.push(it);
      const ev: StepEvent = pending!;
      pending = null;
      ev.info = {
        sapg_iteration: it.j,
        gamma: it.gamma,
        surrogate: it.value,
        delta_c: it.step,
        distance: it.distance,
        ...(it.j === 0 ? { preset: res.preset } : {}),
      };
      yield ev;
    }
    item = await run.next();
  }
  const cFinal = withEmbedding(prior, c0, item.value.c);

  // The final LATINO run at ĉ from the chain's state re-noised to the first timestep.
  let z = step.noise(clean, finalTs[0]);
  for (let i = 0; i < finalTs.length; i++) {
    if (ctx.signal?.aborted) throw new DOMException("LATINO-PRO was cancelled", "AbortError");
    const started = performance.now(), t = finalTs[i];
    const r = await step.run(
      z,
      t,
      cFinal,
      res.finalRule,
      i + 1 < finalTs.length ? finalTs[i + 1] : null,
    );
    z = r.z;
    const ev = step.event(k++, total, t, started, r);
    if (o.iterations === 0 && i === 0) ev.info = { preset: res.preset };
    yield ev;
  }
  const stats = prior.stats();
  return {
    x: await step.output(z),
    info: {
      preset: res.preset,
      presetChoice: res.chosen,
      sapg: {
        ...res.sapg,
        estimator: estimator.name,
        tensor: PRO_TENSOR,
        shape: [...e0.shape],
        chainTimesteps: chainTs,
        iterations,
      },
      chainRule: res.chainRule,
      finalRule: res.finalRule,
      finalTimesteps: finalTs,
      deltas: step.deltas,
      counts: { nfe: { ...stats.calls }, vjp: { ...stats.vjp } },
    },
    conditioning: {
      ...Object.fromEntries(
        Object.entries(cFinal.tensors).filter(([n]) =>
          prior.conditioningTensors().some((i) => i.name === n && i.source === "prompt")
        ),
      ),
    },
  };
}

/**
 * The LATINO-PRO solver plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateOptions } from "../core/registry.ts";
 * import { latinoProPlugin } from "./latino_pro.ts";
 * const solver = await latinoProPlugin.create(validateOptions(latinoProPlugin, {}), {});
 * assert.equal(solver.name, "latino-pro");
 * assert.equal(solver.requires.prior?.conditioningGradients, true);
 * ```
 */
export const latinoProPlugin = defineSolver({
  kind: "solver",
  name: "latino-pro",
  description:
    "LATINO-PRO: LATINO + prompt optimisation by SAPG (68 NFE, 45 VJPs); needs the prior's " +
    "gradient w.r.t. its conditioning, not the operator's (any operator LATINO takes)",
  options: latinoProOptions,
  create(options) {
    return {
      name: "latino-pro",
      requires: {
        prior: {
          consistency: true,
          encode: true,
          conditioningGradients: true,
          ...(options.estimator === "tweedie" ? { denoise: true } : {}),
        },
      },
      run: (problem, prior, ctx) => runLatinoPro(options, problem, prior, ctx),
    };
  },
});
