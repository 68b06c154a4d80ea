/**
 * LDPS (latent DPS) and PSLD (Rout et al., NeurIPS 2023): posterior sampling by DDIM with a
 * measurement gradient taken through the UNet and the decoder (and, for PSLD, the encoder) — one
 * implementation, PSLD = LDPS + the gluing term (../shared/reference/solvers.md §6, §4.2).
 *
 *   z_T ~ N(0, I)
 *   for t = t_1 > t_2 > … > t_N (DDIM grid, previous timestep t'):
 *     o    = UNet(z_t, t, c);  ẑ0 = (z_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (any prediction type);  x̂ = D(ẑ0)
 *     L    = ω ‖y' − A x̂‖ + γ ‖E(Aᵀy' + x̂ − AᵀA x̂) − ẑ0‖        (LDPS: ω = 1, γ = 0)
 *     z'   = √ᾱ' ẑ0 + √(1 − ᾱ' − σ_t²) ε̂ + σ_t ξ                  (DDIM, σ_t from η)
 *     z_{t'} = z' − ρ_t ∇_{z_t} L                                 (one whole-loss graph run)
 *   x̂ = (D(z_0) + 1)/2, clamped to [0,1]
 *
 * on the [-1,1] scale (y' = 2y − A(1)) with the papers' un-squared norms (`squared` squares them),
 * ρ_t = ρ (static, default) or ρ·ᾱ_t (P2L's `abar` schedule). The loss, its gradient, ẑ0 and ε̂
 * come from one run of the step's whole-loss graph (solvers/dps_loss.ts): each network's forward
 * and backward once per step.
 *
 * Timesteps: the LDM/diffusers "leading" grid t_k = (N−1−k)·⌊T/N⌋ (1000 steps: 999…0), previous
 * timestep t − ⌊T/N⌋; the last step goes to ᾱ' = 1 (`final_jump`, a jump to x̂0) or to ᾱ_0 (the
 * official LDM sampler's `alphas_prev[0]`).
 *
 * Official-code behaviours available as options (off by default):
 * - `noisy_prediction`: the official PSLD code compares `noiser(A x̂)` — the prediction with fresh
 *   measurement noise σ_y n — with y (a new n each step, stream "prediction-noise");
 * - `timestep_offset=1`: LDM's `make_ddim_timesteps` returns t + 1 and, at ⌊T/N⌋ = 1 (N > 500,
 *   e.g. the default 1000 steps), `make_ddim_sampling_parameters` subtracts 1 for the ᾱ lookup
 *   only: the UNet sees t + 1 while every coefficient uses ᾱ_t.
 *
 * DEVIATIONS from the official PSLD code (also in the README):
 * - Aᵀ is the operator's true adjoint; the DPS operators the official code uses have
 *   `transpose = identity` for blur and inpainting and nearest up-sampling for SR.
 * - E is the encoder's mean (the LATINO repository's PSLD does the same); the official code uses a
 *   sample of the encoder's distribution (`get_first_stage_encoding`).
 * - No classifier-free guidance: the official script uses scale 7.5 with c = uc = "" (the same
 *   network output twice, so the guided ε equals the unguided one).
 *
 * @module
 */
import { z } from "zod";
import type {
  ModelStats,
  Prior,
  Problem,
  SolveContext,
  SolveResult,
  StepEvent,
} from "../core/contracts.ts";
import { defineSolver } from "../core/registry.ts";
import { solverConditioning } from "../core/context.ts";
import { InputError } from "../core/errors.ts";
import { clamp, type Tensor, toImageScale } from "../core/tensor.ts";
import { ddimCoefficients, stepPairs, timestepGrid } from "../core/sampling/mod.ts";
import { DpsStepLoss } from "./dps_loss.ts";
import {
  choosePreset,
  type DpsPreset,
  type DpsPresetValues,
  LDPS_PRESETS,
  PSLD_PRESETS,
} from "./dps_presets.ts";

const common = {
  /** DDIM steps N (preset: 1000). */
  steps: z.number().int().min(1).max(1000).optional()
    .describe("DDIM steps N, 1–1000 (default: the preset's, 1000)"),
  /** DDIM η (preset: 0). */
  eta: z.number().min(0).optional().describe("DDIM η (default: the preset's, 0 = deterministic)"),
  /** ρ, the step on ∇_{z_t} L. */
  rho: z.number().positive().optional()
    .describe("step ρ on ∇_{z_t} of the loss (default: the preset's; sd15: 1)"),
  /** ρ_t = ρ (static) or ρ·ᾱ_t. */
  rho_schedule: z.enum(["static", "abar"]).default("static")
    .describe("static: ρ_t = ρ (default, the papers' LDPS); abar: ρ_t = ρ·ᾱ_t (P2L Table 6)"),
  /** Squared norms instead of the papers' norms. */
  squared: z.boolean().default(false)
    .describe("squared norms ‖·‖² instead of the papers' un-squared norms (default false)"),
  /** The official code's noise on the prediction. */
  noisy_prediction: z.boolean().default(false)
    .describe("add fresh σ_y noise to A(x̂) before comparing with y, as the official PSLD code"),
  /** The official code's timestep off-by-one. */
  timestep_offset: z.number().int().min(0).max(1).default(0)
    .describe("feed the UNet t + 1 while using ᾱ_t (the official LDM sampler at 1000 steps: 1)"),
  /** Last step to x̂0 (ᾱ' = 1) or to ᾱ_0. */
  final_jump: z.boolean().optional()
    .describe("last step lands on x̂0 (true) or on ᾱ_0 as the official sampler (default: preset)"),
  /** Preset name, or auto. */
  preset: z.string().default("auto")
    .describe("sd15 | builtin (PSLD also sd15/inpaint-box) | auto (by prior family and task)"),
  /** Prompt for the prior's text encoder. */
  prompt: z.string().default("").describe("prompt for the prior's text encoder (default empty)"),
  /** Backward of operators without an ONNX export. */
  fallback: z.enum(["two-phase", "recompute"]).default("two-phase")
    .describe("operators without an ONNX export: keep activations (two-phase) or recompute"),
};

/**
 * Options of LDPS.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ldpsOptions } from "./ldps.ts";
 * const o = ldpsOptions.parse({ steps: 50 });
 * assert.equal(o.preset, "auto");
 * assert.equal(o.squared, false);
 * assert.throws(() => ldpsOptions.parse({ gamma: 0.1 })); // PSLD's option
 * ```
 */
export const ldpsOptions = z.strictObject(common);

/**
 * Options of PSLD: LDPS's plus the weights of its two terms.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { psldOptions } from "./ldps.ts";
 * const o = psldOptions.parse({ gamma: 0, omega: 1 });
 * assert.deepEqual([o.gamma, o.omega], [0, 1]);
 * ```
 */
export const psldOptions = z.strictObject({
  ...common,
  /** γ, the weight of the gluing term. */
  gamma: z.number().min(0).optional()
    .describe(
      "weight γ of the gluing term (default: the preset's; sd15: 0.1, box inpainting 0.01)",
    ),
  /** ω, the weight of the measurement term. */
  omega: z.number().min(0).optional()
    .describe(
      "weight ω of the measurement term (default: the preset's; sd15: 1, box inpainting 0.1)",
    ),
});

/** Parsed LDPS options. */
export type LdpsOptions = z.output<typeof ldpsOptions>;
/** Parsed PSLD options. */
export type PsldOptions = z.output<typeof psldOptions>;

/** The settings of one run: options over the preset. */
export interface DpsSettings extends DpsPresetValues {
  /** Which solver. */
  solver: "ldps" | "psld";
  /** ρ_t schedule. */
  rho_schedule: "static" | "abar";
  /** Squared norms. */
  squared: boolean;
  /** Noise on the prediction. */
  noisy_prediction: boolean;
  /** UNet timestep offset. */
  timestep_offset: number;
  /** Prompt. */
  prompt: string;
  /** Operator fallback's backward. */
  fallback: "two-phase" | "recompute";
  /** The preset used and why. */
  preset: { name: string; reason: string; source: string };
}

/**
 * Options over the preset ("auto" picks by the prior's family and the task).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dpsSettings, psldOptions } from "./ldps.ts";
 * const s = dpsSettings("psld", psldOptions.parse({ rho: 0.5 }), { name: "sd-folder" }, {
 *   name: "blur",
 *   options: {},
 * });
 * assert.deepEqual([s.rho, s.gamma, s.steps, s.preset.name], [0.5, 0.1, 1000, "sd15"]);
 * ```
 */
export function dpsSettings(
  solver: "ldps" | "psld",
  o: LdpsOptions | PsldOptions,
  prior: Pick<Prior, "name" | "family">,
  op: { name: string; options: Readonly<Record<string, unknown>> },
): DpsSettings {
  const presets: Record<string, DpsPreset> = solver === "ldps" ? LDPS_PRESETS : PSLD_PRESETS;
  const p = choosePreset(solver, presets, o.preset, prior, op);
  const v = p.preset.values;
  const w = o as Partial<PsldOptions>;
  return {
    solver,
    steps: o.steps ?? v.steps,
    eta: o.eta ?? v.eta,
    rho: o.rho ?? v.rho,
    omega: w.omega ?? v.omega,
    gamma: solver === "ldps" ? 0 : w.gamma ?? v.gamma,
    final_jump: o.final_jump ?? v.final_jump,
    rho_schedule: o.rho_schedule,
    squared: o.squared,
    noisy_prediction: o.noisy_prediction,
    timestep_offset: o.timestep_offset,
    prompt: o.prompt,
    fallback: o.fallback,
    preset: { name: p.name, reason: p.reason, source: p.preset.source },
  };
}

/** ‖v‖₂. */
function norm2(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/** Per-network calls of the step graphs. */
type GraphCalls = ReturnType<DpsStepLoss["stats"]>;

/**
 * Add the step graphs' calls since `last` to the run's counters in the prior's convention: a VJP
 * (forward and backward of a network) counts as one VJP call, not as a forward; forwards outside a
 * VJP (the fallback's recompute mode) count as forward calls. Returns `now`.
 */
function addGraphCalls(stats: ModelStats, now: GraphCalls, last: GraphCalls): GraphCalls {
  for (const [n, v] of Object.entries(now.vjps)) {
    const d = v - (last.vjps[n] ?? 0);
    if (d) stats.vjp[n] = (stats.vjp[n] ?? 0) + d;
  }
  for (const [n, v] of Object.entries(now.forwards)) {
    const d = v - (last.forwards[n] ?? 0) - ((now.vjps[n] ?? 0) - (last.vjps[n] ?? 0));
    if (d) stats.calls[n] = (stats.calls[n] ?? 0) + d;
  }
  return now;
}

/** The prior's counters plus the step graphs' calls (forwards inside a VJP count as the VJP). */
function runCounters(
  prior: Prior,
  extra: ModelStats,
): { nfe: Record<string, number>; vjp: Record<string, number> } {
  const s = prior.stats();
  const nfe = { ...s.calls }, vjp = { ...s.vjp };
  for (const [k, v] of Object.entries(extra.calls)) nfe[k] = (nfe[k] ?? 0) + v;
  for (const [k, v] of Object.entries(extra.vjp)) vjp[k] = (vjp[k] ?? 0) + v;
  return { nfe, vjp };
}

/**
 * The LDPS/PSLD iteration as an async generator of step events; returns the restored image. Draws:
 * z_T from the solver stream's child "init", DDIM noise (η > 0) from "ddim", the official noise on
 * the prediction from "prediction-noise".
 */
export async function* runDps(
  s: DpsSettings,
  problem: Problem,
  prior: Prior,
  ctx: SolveContext,
): AsyncGenerator<StepEvent, SolveResult> {
  const name = s.solver;
  const op = problem.operator;
  const nets = prior.networks?.();
  if (!nets?.unet) {
    throw new InputError(`${name}: prior "${prior.name}" does not expose its UNet as a network`);
  }
  if (s.gamma > 0 && !op.adjoint) {
    throw new InputError(`${name}: the gluing term needs Aᵀ: operator "${op.name}" is not linear`);
  }
  const sigma = problem.noise.sigma;
  if (s.noisy_prediction && !(sigma > 0)) {
    throw new InputError(`${name}: noisy_prediction needs a measurement noise σ_y > 0`);
  }
  const schedule = prior.schedule;
  const T = schedule.numTrainTimesteps;
  if (s.steps > T) {
    throw new InputError(`${name}: steps ${s.steps} exceeds the ${T} training steps`);
  }
  const pairs = stepPairs(
    timestepGrid(s.steps, "leading", { numTrainTimesteps: T }),
    "diffusers",
    T,
  );
  const lossGraph = await DpsStepLoss.build(
    { gluing: s.gamma > 0, squared: s.squared },
    {
      networks: nets,
      operator: op,
      latentShape: ctx.latentShape,
      pool: ctx.sessions,
      device: ctx.device,
      fallback: s.fallback,
    },
  );
  const c = await solverConditioning(prior, s.prompt, ctx); // --embedding, else the prompt
  const init = ctx.rng.child("init"), ddimNoise = ctx.rng.child("ddim");
  const predNoise = s.noisy_prediction ? ctx.rng.child("prediction-noise") : null;
  const y = problem.y;
  const yMeas: Tensor = predNoise ? { data: new Float32Array(y.data.length), shape: y.shape } : y;

  // z_T ~ N(0, I)
  const z: Tensor = {
    data: new Float32Array(ctx.latentShape.reduce((a, b) => a * b, 1)),
    shape: [...ctx.latentShape],
  };
  for (let i = 0; i < z.data.length; i++) z.data[i] = init.normal();
  const next: Tensor = { data: new Float32Array(z.data.length), shape: z.shape };
  const losses: number[] = [];
  let last = lossGraph.stats();

  for (let k = 0; k < pairs.length; k++) {
    if (ctx.signal?.aborted) throw new DOMException(`${name} was cancelled`, "AbortError");
    const started = performance.now();
    const { t, prev } = pairs[k];
    // y_m = y − σ n: A x̂ + σ n − y = A x̂ − y_m (the official noiser on the prediction)
    if (predNoise) {
      for (let i = 0; i < y.data.length; i++) {
        yMeas.data[i] = y.data[i] - sigma * predNoise.normal();
      }
    }
    // One whole-loss graph run: L, ∇_{z_t} L, ẑ0 and ε̂ at (z_t, t).
    const r = await lossGraph.evaluate({
      zt: z,
      t,
      timestepOffset: s.timestep_offset,
      c,
      y,
      yMeas,
      omega: s.omega,
      gamma: s.gamma,
    });
    // z' = √ᾱ' ẑ0 + √(1−ᾱ'−σ²) ε̂ + σ ξ;  z_{t'} = z' − ρ_t ∇L
    const dc = ddimCoefficients(schedule, t, prev, {
      eta: s.eta,
      finalAlphaCumprod: s.final_jump ? 1 : schedule.alphasCumprod[0],
    });
    const rho = s.rho_schedule === "abar" ? s.rho * schedule.alphasCumprod[t] : s.rho;
    const x0 = r.x0, eps = r.eps, g = r.grad, o = next.data;
    for (let i = 0; i < o.length; i++) {
      const xi = dc.sigma > 0 ? dc.sigma * ddimNoise.normal() : 0;
      o[i] = dc.x0 * x0[i] + dc.eps * eps[i] + xi - rho * g[i];
    }
    z.data.set(o);
    losses.push(r.loss);

    last = addGraphCalls(ctx.modelStats, lossGraph.stats(), last);
    const ms = performance.now() - started;
    ctx.modelStats.vjpMs[`${name}_step`] = (ctx.modelStats.vjpMs[`${name}_step`] ?? 0) + ms;
    const counts = runCounters(prior, ctx.modelStats);
    yield {
      step: k,
      total: pairs.length,
      t,
      nfe: counts.nfe,
      vjp: counts.vjp,
      residual: s.noisy_prediction ? undefined : (s.squared ? Math.sqrt(r.meas) : r.meas) / 2,
      loss: r.loss,
      gradNorm: norm2(g),
      ms,
      note: k === 0 ? `${name}: preset ${s.preset.name} (${s.preset.reason})` : undefined,
      preview: ctx.previews ? clamp(toImageScale(await prior.decode(z)), 0, 1) : undefined,
    };
  }
  const x = clamp(toImageScale(await prior.decode(z)), 0, 1);
  return {
    x,
    info: {
      preset: s.preset.name,
      preset_reason: s.preset.reason,
      preset_source: s.preset.source,
      settings: {
        steps: s.steps,
        eta: s.eta,
        rho: s.rho,
        rho_schedule: s.rho_schedule,
        omega: s.omega,
        gamma: s.gamma,
        squared: s.squared,
        final_jump: s.final_jump,
        noisy_prediction: s.noisy_prediction,
        timestep_offset: s.timestep_offset,
      },
      timesteps: pairs.map((p) => p.t),
      operator_path: lossGraph.usesFallback ? `TypeScript (${s.fallback})` : "ONNX export",
      losses,
    },
  };
}

const REQUIRES_LDPS = {
  operator: { differentiable: true },
  prior: { denoise: true, latentGradients: true, decoderGradients: true },
} as const;

const REQUIRES_PSLD = {
  operator: { differentiable: true, linear: true },
  prior: {
    denoise: true,
    latentGradients: true,
    decoderGradients: true,
    encode: true,
    encoderGradients: true,
  },
} as const;

/**
 * The LDPS solver plugin.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateOptions } from "../core/registry.ts";
 * import { ldpsPlugin } from "./ldps.ts";
 * const solver = await ldpsPlugin.create(validateOptions(ldpsPlugin, { steps: 50 }), {});
 * assert.equal(solver.name, "ldps");
 * assert.equal(solver.requires.operator?.differentiable, true);
 * ```
 */
export const ldpsPlugin = defineSolver({
  kind: "solver",
  name: "ldps",
  description: "LDPS: DDIM + ρ∇‖y − A(D(ẑ0))‖ through the UNet and decoder (1000 NFE + 1000 VJPs)",
  options: ldpsOptions,
  create(options) {
    return {
      name: "ldps",
      requires: REQUIRES_LDPS,
      run: (problem, prior, ctx) =>
        runDps(dpsSettings("ldps", options, prior, problem.operator), problem, prior, ctx),
    };
  },
});

/**
 * The PSLD solver plugin (LDPS + the gluing term; linear operators only).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateOptions } from "../core/registry.ts";
 * import { psldPlugin } from "./ldps.ts";
 * const solver = await psldPlugin.create(validateOptions(psldPlugin, {}), {});
 * assert.equal(solver.requires.operator?.linear, true);
 * ```
 */
export const psldPlugin = defineSolver({
  kind: "solver",
  name: "psld",
  description: "PSLD: LDPS + the gluing term ‖E(Aᵀy + x̂ − AᵀA x̂) − ẑ0‖ (linear operators)",
  options: psldOptions,
  create(options) {
    return {
      name: "psld",
      requires: REQUIRES_PSLD,
      run: (problem, prior, ctx) =>
        runDps(dpsSettings("psld", options, prior, problem.operator), problem, prior, ctx),
    };
  },
});
