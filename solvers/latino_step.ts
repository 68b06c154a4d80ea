/**
 * LATINO's step, shared by `latino` and `latino-pro` (../shared/reference/solvers.md §2.2, §3.2):
 * one stochastic auto-encoder pass and one prox, on the [-1,1] scale,
 *
 *   ẑ0  = G(z, t, c)                          consistency map (1 NFE)
 *   x   = clip(D(ẑ0), −1, 1)                  decode
 *   df  = ‖A(x) + σ'n − y'‖                  residual with fresh measurement-like noise (only
 *                                              when the δ rule reads it; drawn exactly in law
 *                                              as (‖r‖ + σ'g)² + σ'²χ²_{N−1}, see below)
 *   δ   = rule(t, df);  γ = δ (1−ᾱ_t)/σ'²
 *   x_p = argmin_u (γ/2)‖A u − y'‖² + ½‖u − x‖²
 *   z0' = E(clip(x_p, −1, 1))                 encode (mean)
 *   z   = √ᾱ_{t'} z0' + √(1−ᾱ_{t'}) ξ         re-noise to the next timestep t' (last step: z = z0')
 *
 * Scale bookkeeping. Operators work on [0,1] images; the solver works on [-1,1]. With x' = 2x − 1
 * and the consistent measurement y' = 2y − A(1), ‖A x' − y'‖ = 2‖A x − y‖ and ‖x' − z'‖ = 2‖x − z‖, so
 * the prox with the same γ is computed on [0,1] images: u = prox_y((x+1)/2, γ) (the operator's
 * prox bound to y, i.e. op.proxL2((x+1)/2, y, γ)), x_p = 2u − 1.
 * For operators with A(1) = 1 (normalised blur and SR kernels) this is exactly the official
 * y' = 2y − 1.
 *
 * A {@link LatinoStep} owns the run's image-sized buffers (reused by every step), the operator's
 * prox bound to y, and the random streams: re-noising ξ from the solver stream's child "renoise",
 * the residual's noise (g and χ²_{N−1}, the law of ‖r + σ'n‖; README "Deviations") from
 * "residual" — so a chain of steps draws exactly what LATINO draws,
 * whichever solver drives it.
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
  StepEvent,
} from "../core/contracts.ts";
import { proxOf } from "../core/prox.ts";
import { InputError } from "../core/errors.ts";
import type { RandomStream } from "../core/rng.ts";
import { clamp, type Tensor, tensor, toImageScale, toModelScale } from "../core/tensor.ts";
import { addNoise } from "../core/sampling/mod.ts";
import { noisyResidualNormSq } from "../core/distributions.ts";
import { deltaAt, type DeltaRule } from "./delta.ts";

/**
 * The options of LATINO's step, shared by the option schemas of `latino` and `latino-pro`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { LATINO_STEP_OPTIONS } from "./latino_step.ts";
 * const o = z.strictObject(LATINO_STEP_OPTIONS).parse({});
 * assert.deepEqual(o, { clip: true, init: "pseudo-inverse", residual_noise: true });
 * ```
 */
export const LATINO_STEP_OPTIONS = {
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
};

/** Parsed step options. */
export interface LatinoStepOptions {
  /** Clip decoded and prox images to [-1,1]. */
  clip: boolean;
  /** Initial image. */
  init: "pseudo-inverse" | "adjoint";
  /** Measurement-like noise inside df. */
  residual_noise: boolean;
  /** Max iterations of an iterative prox. */
  prox_max_iter?: number;
  /** Tolerance of an iterative prox. */
  prox_tol?: number;
}

/**
 * The timesteps of an N-step run: t_k = 999 − ⌊k·T/N⌋.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { latinoTimesteps } from "./latino_step.ts";
 * assert.deepEqual(latinoTimesteps(8), [999, 874, 749, 624, 499, 374, 249, 124]);
 * assert.deepEqual(latinoTimesteps(4), [999, 749, 499, 249]);
 * ```
 */
export function latinoTimesteps(steps: number, numTrain = 1000): number[] {
  return Array.from({ length: steps }, (_, k) => numTrain - 1 - Math.floor(k * numTrain / steps));
}

/** The model families the official presets were made for (the preset groups). */
export type PresetFamily = "builtin" | "sdxl-dmd2" | "sd15-lcm";

/**
 * The preset group of a prior, from the family it reports (its config files, never its name:
 * core/pipeline/family.ts): the built-in model's own presets; the official code's DMD2-SDXL
 * presets for every SDXL family; its SD1.5-LCM presets for SD 1.x/2.x and for a prior that reports
 * no family. Returns the group, whether the prior's config said it, and the evidence (one line).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { priorFamily } from "./latino_step.ts";
 * const builtin = { name: "x", family: { id: "builtin", evidence: "exact model" } };
 * assert.equal(priorFamily(builtin).family, "builtin");
 * assert.equal(priorFamily({ name: "x", family: { id: "sdxl-lcm", evidence: "" } }).family, "sdxl-dmd2");
 * // No family reported: the SD1.5-LCM presets, whatever the name says.
 * assert.equal(priorFamily({ name: "dmd2-sdxl-onnx" }).family, "sd15-lcm");
 * ```
 */
export function priorFamily(
  prior: Pick<Prior, "name" | "family">,
): { family: PresetFamily; from: "config" | "default"; evidence: string } {
  const f = prior.family;
  if (!f) {
    return {
      family: "sd15-lcm",
      from: "default",
      evidence: `prior "${prior.name}" reports no family: SD1.5-LCM presets`,
    };
  }
  const family = f.id === "builtin"
    ? "builtin"
    : f.id.startsWith("sdxl")
    ? "sdxl-dmd2"
    : "sd15-lcm";
  return { family, from: "config", evidence: `family ${f.id}: ${f.evidence}` };
}

/**
 * The task an operator poses, as the presets name it: gaussian, motion, inpaint, sr, sr16, sr32,
 * jpeg or other.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { operatorTask } from "./latino_step.ts";
 * assert.equal(operatorTask({ name: "sr", options: { factor: 16 } }), "sr16");
 * assert.equal(operatorTask({ name: "blur", options: { kernel: "motion" } }), "motion");
 * ```
 */
export function operatorTask(op: Pick<ForwardOperator, "name" | "options">): string {
  const o = op.options as Record<string, unknown>;
  if (op.name === "blur") return o.kernel === "motion" ? "motion" : "gaussian";
  if (op.name === "inpaint") return "inpaint";
  if (op.name === "sr") return o.factor === 32 ? "sr32" : o.factor === 16 ? "sr16" : "sr";
  if (op.name === "jpeg") return "jpeg";
  return "other";
}

/**
 * df² = ‖2(A(x) + σ n − y)‖² = ‖A(x') + σ'n − y'‖² on the [-1,1] scale, from A(x) on [0,1], with
 * n ~ N(0, I) drawn from `rng` (none when null). Only the norm is used and n is never used again,
 * so it is drawn exactly in law from two scalars (core/distributions.ts `noisyResidualNormSq`):
 * ‖r + σn‖² = (‖r‖ + σg)² + σ²χ²_{N−1}, r = A(x) − y — one pass over A(x) and y, no N-sized draw.
 * (The official code draws the whole vector n through its physics: the same random variable, a
 * different sample path.)
 */
function residualNormSq(
  ax: Float32Array,
  y: Float32Array,
  sigma: number,
  rng: RandomStream | null,
) {
  let s = 0;
  for (let i = 0; i < ax.length; i++) {
    const r = ax[i] - y[i];
    s += r * r;
  }
  return 4 * (rng ? noisyResidualNormSq(rng, s, ax.length, sigma) : s);
}

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

/** What one step gives. */
export interface LatinoStepResult {
  /** The network's clean estimate ẑ0 = G(z_t, t, c) the step decoded. */
  z0hat: Tensor;
  /** The step's output: z_{t'} = √ᾱ_{t'} z0' + √(1−ᾱ_{t'}) ξ, or z0' on the last step. */
  z: Tensor;
  /** δ used. */
  delta: number;
  /** ‖A u − y‖ on the [0,1] scale for the prox output u. */
  residual: number;
}

/** A prior with the two methods the step calls. */
type StepPrior = Prior & Required<Pick<Prior, "consistency" | "encode">>;

/** LATINO's step on one problem (see the module doc). */
export class LatinoStep {
  /** Every δ used so far, in order. */
  readonly deltas: number[] = [];
  readonly #o: LatinoStepOptions;
  readonly #problem: Problem;
  readonly #prior: StepPrior;
  readonly #ctx: SolveContext;
  readonly #abar: Float64Array;
  readonly #sigmaPrime: number;
  readonly #prox: ReturnType<typeof proxOf>;
  readonly #renoise: RandomStream;
  #dfNoise: RandomStream | null | undefined;
  // Image-sized buffers, reused by every step: x on [0,1], the prox's u, x_p on [-1,1].
  readonly #x01: Tensor;
  readonly #u: Tensor;
  readonly #xp: Tensor;

  /**
   * Bind the step to a problem, a prior (with a consistency map and an encoder) and the run
   * context; `who` names the solver in error messages.
   */
  constructor(
    o: LatinoStepOptions,
    problem: Problem,
    prior: Prior,
    ctx: SolveContext,
    who: string,
  ) {
    if (!prior.consistency || !prior.encode) {
      throw new InputError(`${who}: prior "${prior.name}" needs a consistency map and an encoder`);
    }
    this.#sigmaPrime = 2 * problem.noise.sigma;
    if (!(this.#sigmaPrime > 0)) {
      throw new InputError(`${who}: noise σ_y must be > 0 (γ = δ(1−ᾱ)/σ'²)`);
    }
    this.#o = o;
    this.#problem = problem;
    this.#prior = prior as StepPrior;
    this.#ctx = ctx;
    this.#abar = prior.schedule.alphasCumprod;
    this.#prox = proxOf(problem.operator, problem.y); // the operator's prox bound to y
    this.#renoise = ctx.rng.child("renoise");
    const shape = [...problem.imageShape];
    this.#x01 = tensor(shape);
    this.#u = tensor(shape);
    this.#xp = tensor(shape);
  }

  /** The clean initial latent E(clip(x_init)), x_init the pseudo-inverse or the official Aᵀy'. */
  async initialLatent(): Promise<Tensor> {
    const { operator: op, y } = this.#problem;
    let x: Tensor;
    if (this.#o.init === "pseudo-inverse" && op.pseudoInverse) x = await op.pseudoInverse(y);
    else if (op.adjoint) {
      // Official: Aᵀy' with y' = 2y − 1, mapped back to [0,1] as (Aᵀy' + 1)/2.
      x = toImageScale(await op.adjoint(toModelScale(y)));
    } else if (op.pseudoInverse) x = await op.pseudoInverse(y);
    else {
      throw new InputError(`operator "${op.name}" has neither pseudoInverse nor adjoint`);
    }
    const xModel = toModelScale(x);
    return await this.#prior.encode(this.#o.clip ? clamp(xModel, -1, 1) : xModel);
  }

  /** z_t = √ᾱ_t z0 + √(1−ᾱ_t) ξ with ξ from the "renoise" stream (in `out` when given). */
  noise(z0: Tensor, t: number, out?: Tensor): Tensor {
    return addNoise(z0, this.#abar[t], this.#renoise, out);
  }

  /**
   * One step at timestep t from z_t with conditioning c and δ rule `rule`; re-noised to `tNext`,
   * or the clean z0' when `tNext` is null (the last step).
   */
  async run(
    z: Tensor,
    t: number,
    c: Conditioning,
    rule: DeltaRule,
    tNext: number | null,
  ): Promise<LatinoStepResult> {
    const o = this.#o, prior = this.#prior, op = this.#problem.operator, y = this.#problem.y;
    const sigma = this.#problem.noise.sigma, sigmaPrime = this.#sigmaPrime, abar = this.#abar;
    // Prior half: consistency map, decode; x01 = (clip(x, −1, 1) + 1)/2 in one pass.
    const z0hat = await prior.consistency(z, t, c);
    toUnitInto((await prior.decode(z0hat)).data, this.#x01.data, o.clip);
    // Step size: δ from the rule (df = ‖A(x') + σ'n − y'‖ when it reads it), γ = δ(1−ᾱ_t)/σ'².
    let delta = NaN;
    const stepSize = (df: number) => {
      delta = deltaAt(rule, t, df, sigmaPrime);
      this.deltas.push(delta);
      return delta * (1 - abar[t]) / (sigmaPrime * sigmaPrime);
    };
    // Likelihood half: u = prox_{γ/2‖A·−y‖²}(x), on [0,1] (same γ, see module doc), into the
    // reused buffer where the operator supports it; closed-form proxes report ‖A u − y‖ free.
    const report: { residual?: number } = {};
    const proxOpts = { maxIter: o.prox_max_iter, tol: o.prox_tol, out: this.#u, report };
    let ut: Tensor;
    if (rule.scale === "one") {
      ut = await this.#prox.apply(this.#x01, stepSize(NaN), proxOpts);
    } else {
      // The residual's noise stream only when a rule reads df (created once, on first use).
      if (this.#dfNoise === undefined) {
        this.#dfNoise = o.residual_noise ? this.#ctx.rng.child("residual") : null;
      }
      const dfNoise = this.#dfNoise;
      // df needs A x: an operator with proxL2Adaptive computes it from the prox's own transforms.
      const gammaOf = (ax: Tensor) =>
        stepSize(Math.sqrt(residualNormSq(ax.data, y.data, sigma, dfNoise)));
      ut = op.proxL2Adaptive
        ? await op.proxL2Adaptive(this.#x01, y, gammaOf, proxOpts)
        : await this.#prox.apply(this.#x01, gammaOf(await op.forward(this.#x01)), proxOpts);
    }
    // Encode clip(2u − 1) and re-noise to the next timestep (in place in the encoder's output).
    toModelInto(ut.data, this.#xp.data, o.clip);
    const z0 = await prior.encode(this.#xp);
    const out = tNext === null ? z0 : this.noise(z0, tNext, z0);
    if (report.residual === undefined) {
      // Iterative proxes do not report it: one A(u) for the step event.
      report.residual = Math.sqrt(residualNormSq((await op.forward(ut)).data, y.data, 0, null)) / 2;
    }
    return { z0hat, z: out, delta, residual: report.residual };
  }

  /** The step event of step k of `total` (model counters now; the preview of x_p if asked). */
  event(k: number, total: number, t: number, started: number, r: LatinoStepResult): StepEvent {
    const stats = this.#prior.stats();
    return {
      step: k,
      total,
      t,
      nfe: { ...stats.calls },
      vjp: { ...stats.vjp },
      residual: r.residual,
      ms: performance.now() - started,
      preview: this.#ctx.previews ? clamp(toImageScale(this.#xp), 0, 1) : undefined,
    };
  }

  /** The restored image x̂ = (D(z) + 1)/2 on [0,1] (clamped when clipping). */
  async output(z: Tensor): Promise<Tensor> {
    const xHat = toImageScale(await this.#prior.decode(z));
    return this.#o.clip ? clamp(xHat, 0, 1) : xHat;
  }
}
