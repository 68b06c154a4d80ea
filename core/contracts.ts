/**
 * The four contracts of the framework: ForwardOperator, Prox, Prior and Solver.
 *
 * Conventions (once, for everything):
 * - images handed to operators, noise, metrics and files are NCHW float32 on the [0,1] scale;
 * - the model boundary ([-1,1], latents) is inside the Prior;
 * - the measurement noise is Gaussian with standard deviation σ_y on the [0,1] scale;
 * - `proxL2(z, y, γ) = argmin_u (γ/2)‖A u − y‖² + ½‖u − z‖²` (deepinv's convention), unless the
 *   operator declares another data term D_y in `proxDataTerm` (a named deviation, e.g. JPEG's
 *   quantisation bins): then `argmin_u (γ/2) D_y(u) + ½‖u − z‖²`.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";
import type { RandomStream } from "./rng.ts";
import type { Prediction } from "./sampling/diffusion.ts";
import type { PriorNetworks } from "./networks.ts";
import type { SessionPool } from "./backend/pool.ts";

export type { Prediction } from "./sampling/diffusion.ts";
export type { PriorNetworks } from "./networks.ts";

/** What an operator can do; solvers declare which of these they need. */
export interface OperatorCapabilities {
  /** A is linear, so `adjoint` exists and `vjp(x, g) = adjoint(g)`. */
  linear: boolean;
  /** `proxL2` is exact and direct (FFT, DCT, elementwise), not an iterative solve. */
  closedFormProx: boolean;
  /**
   * `vjp` computes J_A(x)ᵀ g (true for every built-in operator). When false, `vjp` throws, the
   * contract suite skips its VJP checks, and a solver that declares
   * `requires.operator.differentiable` refuses the operator before it runs.
   */
  differentiable: boolean;
}

/** Options of an iterative prox solve. */
export interface ProxOptions {
  /** Maximum iterations (CG or the nonlinear solver). */
  maxIter?: number;
  /** Relative tolerance on the normal-equation residual. */
  tol?: number;
  /** Write the result into this tensor (the shape of z) and return it, instead of allocating. */
  out?: Tensor;
  /**
   * Ask for ‖A u − y‖ of the result. A prox that has it at no extra cost (Parseval inside an FFT
   * prox, the elementwise residual of inpainting, A u from the low-resolution solve of SR) stores
   * it in `residual`; others leave it unset and the caller computes it if it needs it.
   */
  report?: { residual?: number };
}

/** Gaussian measurement noise on the [0,1] image scale. */
export interface NoiseModel {
  /** Noise kind; only Gaussian is defined today. */
  kind: "gaussian";
  /** Standard deviation σ_y on the [0,1] scale. */
  sigma: number;
}

/**
 * A forward operator y = A(x) + n. All methods work on [1,C,H,W] float32 tensors on the [0,1] scale.
 * Methods are asynchronous so that an operator may run on ONNX Runtime or a GPU.
 */
export interface ForwardOperator {
  /** Plugin name, e.g. "blur". */
  readonly name: string;
  /** The options it was created with (after validation), for reports. */
  readonly options: Readonly<Record<string, unknown>>;
  /** Shape of x. */
  readonly inputShape: readonly number[];
  /** Shape of y = A(x). */
  readonly outputShape: readonly number[];
  /** What the operator supports. */
  readonly capabilities: OperatorCapabilities;
  /** Noiseless A(x). */
  forward(x: Tensor): Promise<Tensor>;
  /** Aᵀ y; present exactly when `capabilities.linear`. */
  adjoint?(y: Tensor): Promise<Tensor>;
  /** J_A(x)ᵀ g, the vector-Jacobian product (throws when `capabilities.differentiable` is false). */
  vjp(x: Tensor, g: Tensor): Promise<Tensor>;
  /**
   * argmin_u (γ/2)‖A u − y‖² + ½‖u − z‖², or argmin_u (γ/2) D_y(u) + ½‖u − z‖² when the operator
   * declares `proxDataTerm`.
   */
  proxL2(z: Tensor, y: Tensor, gamma: number, options?: ProxOptions): Promise<Tensor>;
  /**
   * The prox bound to one measurement y: `prox(y).apply(z, γ)` = `proxL2(z, y, γ)`, with y checked
   * once and what depends only on y computed once (Aᵀy of a CG prox). Solvers call the prox through
   * this (`proxOf` in core/prox.ts falls back to `proxL2` for operators without it).
   */
  prox?(y: Tensor): Prox;
  /**
   * Optional: the same prox with a step size that depends on A z (residual-based step-size rules,
   * e.g. LATINO's δ ∝ ‖A x + σn − y‖): `gammaOf(az)` is called once with A z and returns γ. An
   * operator whose prox transforms z (FFT) computes A z from that same transform, so the pair
   * costs one inverse transform more than the prox alone. Without it, solvers call `forward` and
   * then `proxL2`.
   */
  proxL2Adaptive?(
    z: Tensor,
    y: Tensor,
    gammaOf: (az: Tensor) => number,
    options?: ProxOptions,
  ): Promise<Tensor>;
  /**
   * The data term `proxL2` minimises when it is not ‖A u − y‖² (a named deviation from the
   * contract; see {@link ProxDataTerm}). Absent for operators that follow the contract.
   */
  readonly proxDataTerm?: ProxDataTerm;
  /**
   * A cheap, reasonable image-shaped estimate from a measurement (e.g. Aᵀy, a zero-filled or
   * nearest-upsampled image, a JPEG decode). Solvers use it for initialisation.
   */
  pseudoInverse?(y: Tensor): Promise<Tensor>;
  /**
   * Restrict a noisy measurement to what the sensor observes, e.g. zero the missing pixels of an
   * inpainting measurement so that noise lands only on observed entries (deepinv's convention).
   * `measure` applies it after adding noise; operators without it leave y as is.
   */
  projectMeasurement?(y: Tensor): Promise<Tensor>;
  /** Extra data to save with a run (mask, kernel), keyed by file stem. */
  artifacts?(): Record<string, Tensor>;
  /**
   * The noiseless forward map as a self-contained ONNX model for this operator's shapes: input
   * `x` (`inputShape`), output `y` (`outputShape`), standard ai.onnx ops only, so that it can be
   * composed into whole-loss graphs and differentiated by the VJP transform (`core/onnx/`), or
   * used in any ONNX pipeline. Operators without it are differentiated through `vjp`.
   */
  exportOnnx?(options?: OnnxExportOptions): OnnxModel;
}

/** Options of {@link ForwardOperator.exportOnnx}. */
export interface OnnxExportOptions {
  /** Element type of the graph's input, output and arithmetic (default float32). */
  dtype?: "float32" | "float64";
}

/** A serialized ONNX model with its input and output names. */
export interface OnnxModel {
  /** Model bytes (ai.onnx opset 17, no external data). */
  bytes: Uint8Array;
  /** Input name. */
  input: string;
  /** Output name. */
  output: string;
  /** Element type of input and output. */
  dtype: "float32" | "float64";
}

/**
 * A data term D_y(u) that an operator's `proxL2` minimises instead of ‖A(u) − y‖²: a named
 * deviation, for operators whose least-squares data term cannot be used in a prox (JPEG's is flat
 * on every rounding plateau). Then proxL2(z, y, γ) = argmin_u (γ/2) D_y(u) + ½‖u − z‖², and its
 * optimality condition, which the contract suite checks, is γ·½∇D_y(u) + u − z = 0 (for
 * D_y = ‖A(u) − y‖², ½∇D_y = J_Aᵀ(A(u) − y)). `forward` and `vjp` still define the operator.
 */
export interface ProxDataTerm {
  /** Short name for reports, e.g. "jpeg-bins". */
  readonly name: string;
  /** One line: what D_y is and why it replaces ‖A(u) − y‖². */
  readonly description: string;
  /** D_y(u), on the scale of ‖A(u) − y‖². */
  value(u: Tensor, y: Tensor): Promise<number>;
  /** ½∇_u D_y(u). */
  halfGradient(u: Tensor, y: Tensor): Promise<Tensor>;
}

/**
 * An operator's prox bound to one measurement y (what {@link ForwardOperator.prox} hands out and
 * solvers call at every step).
 */
export interface Prox {
  /** "closed-form" when exact and direct, "cg" for a linear CG solve, "iterative" otherwise. */
  readonly method: "closed-form" | "cg" | "iterative";
  /** The measurement it is bound to. */
  readonly y: Tensor;
  /**
   * argmin_u (γ/2)‖A u − y‖² + ½‖u − z‖² (or with the operator's declared `proxDataTerm`): the
   * operator's `proxL2(z, y, γ, options)` for the bound y.
   */
  apply(z: Tensor, gamma: number, options?: ProxOptions): Promise<Tensor>;
}

/** A text (or other) conditioning, already encoded by the prior's text encoder. */
export interface Conditioning {
  /** The prompt it came from, if any. */
  prompt?: string;
  /** Named tensors fed to the denoiser (e.g. encoder_hidden_states, text_embeds, time_ids). */
  tensors: Record<string, Tensor>;
}

/** DDPM-type noise schedule: ᾱ_t for t = 0 … T−1. */
export interface NoiseSchedule {
  /** Number of training timesteps T. */
  readonly numTrainTimesteps: number;
  /** ᾱ_t (alphas_cumprod), float64. */
  readonly alphasCumprod: Float64Array;
}

/**
 * What a prior offers; solvers declare which of these they need ({@link Requirements}) and are
 * refused up front when one is missing ({@link unmetRequirements}).
 */
export interface PriorCapabilities {
  /** `consistency` is available (one-step map to the clean latent). */
  consistency: boolean;
  /** `denoise` and `predict` (Tweedie x̂0 and ε̂ from an ε/v/x0 network) are available. */
  denoise: boolean;
  /** `encode` is available (the model has an encoder). */
  encode: boolean;
  /** `denoiseVjp` (and `consistencyVjp` when `consistency`) give gradients w.r.t. the latent z_t. */
  latentGradients: boolean;
  /**
   * The same VJPs give gradients w.r.t. the differentiable conditioning tensors (those marked
   * `differentiable` in `conditioningTensors()`, e.g. `encoder_hidden_states`, SDXL `text_embeds`).
   */
  conditioningGradients: boolean;
  /** `decodeVjp`: gradients through the decoder. */
  decoderGradients: boolean;
  /** `encodeVjp`: gradients through the encoder (its mean). */
  encoderGradients: boolean;
}

/**
 * One line per prior capability, for messages ("prior X lacks …").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PRIOR_CAPABILITY_TEXT } from "./contracts.ts";
 * assert.equal(PRIOR_CAPABILITY_TEXT.encoderGradients, "gradients through the encoder");
 * ```
 */
export const PRIOR_CAPABILITY_TEXT: Readonly<Record<keyof PriorCapabilities, string>> = {
  consistency: "a consistency map",
  denoise: "a denoiser (ε/v/x0 network)",
  encode: "an encoder",
  latentGradients: "gradients of its denoiser w.r.t. the latent",
  conditioningGradients: "gradients of its denoiser w.r.t. the conditioning tensors",
  decoderGradients: "gradients through the decoder",
  encoderGradients: "gradients through the encoder",
};

/**
 * A prior's model family and how it was told. The pipeline prior's ids are `sd`, `sd-lcm`, `sdxl`,
 * `sdxl-lcm`, `sdxl-dmd2` and `builtin` (core/pipeline/family.ts); other priors may name their own.
 */
export interface PriorFamily {
  /** The family id. */
  id: string;
  /** What it was told from (config facts, or "set by family="), one line. */
  evidence: string;
}

/** Per-model call counters and times, for run reports. */
export interface ModelStats {
  /** Forward calls (NFE) per model name. */
  calls: Record<string, number>;
  /** Milliseconds of forward calls per model name. */
  ms: Record<string, number>;
  /**
   * VJP calls per model name (each runs the network's forward and backward once, so a VJP is not
   * also counted as a forward call).
   */
  vjp: Record<string, number>;
  /** Milliseconds of VJP calls per model name. */
  vjpMs: Record<string, number>;
}

/** The result of a VJP through one network: the forward value and ∂⟨g, f⟩/∂input. */
export interface VjpResult {
  /** f(input), computed in the same run (equal to the forward method's value to float rounding). */
  value: Tensor;
  /** ∂⟨g, f⟩/∂input, shaped like the input. */
  grad: Tensor;
}

/**
 * The name of the latent z_t among the gradients of a denoiser VJP (the other names are the
 * conditioning tensors').
 *
 * @example
 * ```ts ignore
 * import { LATENT } from "./contracts.ts";
 * const { grads } = await prior.denoiseVjp!(zt, t, c, g, { wrt: [LATENT, "encoder_hidden_states"] });
 * console.log(grads[LATENT].shape, grads.encoder_hidden_states.shape);
 * ```
 */
export const LATENT = "latent";

/** Options of `Prior.denoiseVjp` and `Prior.consistencyVjp`. */
export interface DenoiserVjpOptions {
  /**
   * What to differentiate with respect to: {@link LATENT} and/or conditioning tensor names
   * (default `["latent"]`).
   */
  wrt?: readonly string[];
  /** `denoiseVjp` only: differentiate x̂0 (default) or ε̂. */
  output?: "x0" | "eps";
}

/** The result of a denoiser VJP. */
export interface DenoiserVjpResult {
  /** The differentiated output (x̂0, ε̂ or G) at (z_t, t, c), computed in the same run. */
  value: Tensor;
  /** ∂⟨g, f⟩/∂(name) for every requested name: `latent` and/or conditioning tensor names. */
  grads: Record<string, Tensor>;
}

/** A conditioning tensor the prior's networks take. */
export interface ConditioningTensorInfo {
  /** The network input it feeds, e.g. `encoder_hidden_states`, `text_embeds`, `time_ids`. */
  name: string;
  /** Its shape for batch 1, e.g. [1, 77, 768]; −1 where the model leaves a size open. */
  shape: number[];
  /** "prompt": computed from a prompt by the text encoder(s); "fixed": computed by the prior. */
  source: "prompt" | "fixed";
  /** VJPs w.r.t. it are offered (with `conditioningGradients`). */
  differentiable: boolean;
  /** One line about it. */
  description: string;
}

/**
 * A latent generative prior over an ONNX model family. Images are on the model scale [-1,1] here;
 * latents are scaled latents (the VAE scaling factor is applied inside encode/decode).
 *
 * Gradients: every `…Vjp` method returns ∂⟨g, f⟩/∂input for a cotangent g shaped like the output f.
 * The chain rule through the network's parameterisation (ε/v/x0 → x̂0 or ε̂), the LCM boundary
 * coefficients c_skip/c_out and the VAE scaling live inside the prior. A VJP costs one forward and
 * one backward pass and is counted in `stats().vjp`, not in `stats().calls`.
 */
export interface Prior {
  /** Model folder name (or the plugin's name). */
  readonly name: string;
  /**
   * The model family (SD 1.x/2.x, SDXL, LCM, DMD2-like, built-in…) as told by the prior's config,
   * not its name; solvers pick per-family settings from it (LATINO's δ presets).
   */
  readonly family?: PriorFamily;
  /** What it supports. */
  readonly capabilities: PriorCapabilities;
  /** Why a capability is missing (e.g. "the folder has no vae_encoder/"), for refusals. */
  readonly capabilityNotes?: Partial<Record<keyof PriorCapabilities, string>>;
  /** The diffusion noise schedule. */
  readonly schedule: NoiseSchedule;
  /** Latent shape for an image shape [1,3,H,W]. */
  latentShape(imageShape: readonly number[]): number[];
  /** Scaled latent mean of E(x), x on [-1,1] (present with `capabilities.encode`). */
  encode?(x: Tensor): Promise<Tensor>;
  /** D(z / scale) on [-1,1] (not clipped). */
  decode(z: Tensor): Promise<Tensor>;
  /** Encode a prompt. */
  condition(prompt: string): Promise<Conditioning>;
  /** The conditioning tensors the networks take (names, shapes, which are differentiable). */
  conditioningTensors(): readonly ConditioningTensorInfo[];
  /**
   * Conditioning from tensors instead of a prompt (an embedding read from `.npy`, or one an
   * optimiser produced). Every "prompt" tensor of `conditioningTensors()` must be given; "fixed"
   * ones are filled in unless given. Throws an InputError naming a missing, unknown or misshapen
   * tensor.
   */
  conditionFromTensors(tensors: Record<string, Tensor>): Conditioning;
  /** Tweedie estimate ẑ0 = E[z0 | z_t] from the ε/v/sample network at integer timestep t. */
  denoise?(zt: Tensor, t: number, c: Conditioning): Promise<Tensor>;
  /** x̂0 and ε̂ from one call of the ε/v/sample network at integer timestep t. */
  predict?(zt: Tensor, t: number, c: Conditioning): Promise<Prediction>;
  /** Consistency map G(z_t, t, c): the probability-flow ODE solution at ᾱ = 1. */
  consistency?(zt: Tensor, t: number, c: Conditioning): Promise<Tensor>;
  /** ∂⟨g, D(z)⟩/∂z (with `decoderGradients`); g shaped like the image. */
  decodeVjp?(z: Tensor, g: Tensor): Promise<VjpResult>;
  /** ∂⟨g, E(x)⟩/∂x (with `encoderGradients`); g shaped like the latent. */
  encodeVjp?(x: Tensor, g: Tensor): Promise<VjpResult>;
  /** VJP of `denoise`'s x̂0 (or ε̂) w.r.t. the latent and/or conditioning tensors. */
  denoiseVjp?(
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options?: DenoiserVjpOptions,
  ): Promise<DenoiserVjpResult>;
  /** VJP of `consistency` w.r.t. the latent and/or conditioning tensors. */
  consistencyVjp?(
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options?: Omit<DenoiserVjpOptions, "output">,
  ): Promise<DenoiserVjpResult>;
  /**
   * The networks as ONNX model sources with what a graph composer needs to chain them
   * (prediction type, input/output names, VAE scaling): see {@link PriorNetworks}.
   */
  networks?(): PriorNetworks;
  /** Model calls so far (forward and VJP). */
  stats(): ModelStats;
  /** Facts for run reports: execution provider, model folder, versions… */
  info?(): Record<string, unknown>;
  /**
   * A hash identifying the model files (e.g. SHA-256 over the folder's files), for benchmark
   * records that must not mix weights; undefined when unknown.
   */
  fingerprint?(): Promise<string | undefined>;
}

/** A fully specified inverse problem. */
export interface Problem {
  /** The measurement y on the [0,1] scale. */
  y: Tensor;
  /** The forward operator. */
  operator: ForwardOperator;
  /** The noise model y was drawn with. */
  noise: NoiseModel;
  /** Shape of the unknown image, [1,3,H,W]. */
  imageShape: readonly number[];
  /** The clean image when known (for reporting only; solvers must not use it). */
  reference?: Tensor;
}

/** A progress event yielded by a solver at each step. */
export interface StepEvent {
  /** Step index, 0-based. */
  step: number;
  /** Total number of steps. */
  total: number;
  /** Diffusion timestep, when the solver has one. */
  t?: number;
  /** Forward model calls (NFE) so far, per model. */
  nfe: Record<string, number>;
  /** VJP calls so far, per model. */
  vjp: Record<string, number>;
  /** ‖A x − y‖ on the [0,1] scale for the current estimate. */
  residual?: number;
  /** The loss a gradient solver differentiated at this step (e.g. LDPS's ‖y' − A(D(ẑ0))‖). */
  loss?: number;
  /** The norm of that loss's gradient (w.r.t. what the solver differentiates, e.g. z_t). */
  gradNorm?: number;
  /**
   * One line for the user about this step or the run (e.g. which δ preset LATINO picked and why,
   * on its first step); progress reporters show it.
   */
  note?: string;
  /** Milliseconds spent in this step. */
  ms: number;
  /** Current image estimate on [0,1], when previews were asked for. */
  preview?: Tensor;
  /**
   * Solver-specific fields for progress lines and run.json (e.g. LATINO-PRO's SAPG iteration:
   * `sapg_iteration`, `gamma`, `surrogate`, `delta_c`), on the steps where they are known.
   */
  info?: Record<string, number | string>;
}

/** A solver's final answer. */
export interface SolveResult {
  /** The restored image on [0,1]. */
  x: Tensor;
  /** Anything solver-specific worth saving in run.json. */
  info: Record<string, unknown>;
  /**
   * The conditioning tensors the solver ended with, when it changed them (LATINO-PRO's optimised
   * embedding), keyed by network input name; `solve` writes them to the output folder.
   */
  conditioning?: Record<string, Tensor>;
}

/** Requirements a solver places on the operator and prior. */
export interface Requirements {
  /** Capabilities the operator must have (true = required). */
  operator?: Partial<OperatorCapabilities>;
  /** Capabilities the prior must have (true = required). */
  prior?: Partial<PriorCapabilities>;
}

/**
 * Context handed to a solver run: everything a solver needs besides the problem and the prior, so
 * that no solver imports a backend or a plugin.
 */
export interface SolveContext {
  /** The solver's own random stream; take named children for each use (`rng.child("renoise")`). */
  rng: RandomStream;
  /** Abort to stop between steps. */
  signal?: AbortSignal;
  /** Attach a [0,1] preview image to step events. */
  previews?: boolean;
  /** Shape of the unknown image, [1,3,H,W]. */
  imageShape: readonly number[];
  /** The prior's latent shape for that image. */
  latentShape: readonly number[];
  /** The execution-provider request the prior was loaded with ("auto", "cpu", "cuda", "webgpu"). */
  device: string;
  /**
   * The process's session pool: graphs a solver builds (a whole-loss graph, a latent operator
   * network) are loaded here once, on `device`, next to the prior's networks.
   */
  sessions: SessionPool;
  /**
   * Model calls the solver makes outside the prior's methods (a whole-loss graph runs the prior's
   * networks in its own session): the solver adds them here, per network name, and run reports
   * add them to the prior's counters ({@link addModelStats}).
   */
  modelStats: ModelStats;
  /**
   * Conditioning tensors to use instead of the solver's prompt (e.g. an embedding read with
   * `--embedding`), keyed by network input name; see `solverConditioning` in core/context.ts.
   */
  conditioning?: Record<string, Tensor>;
}

/**
 * An empty {@link ModelStats}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { emptyModelStats } from "./contracts.ts";
 * assert.deepEqual(emptyModelStats(), { calls: {}, ms: {}, vjp: {}, vjpMs: {} });
 * ```
 */
export function emptyModelStats(): ModelStats {
  return { calls: {}, ms: {}, vjp: {}, vjpMs: {} };
}

/**
 * a + b per counter and model name (a new object).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addModelStats, emptyModelStats } from "./contracts.ts";
 * const a = { ...emptyModelStats(), calls: { unet: 2 } };
 * const b = { ...emptyModelStats(), calls: { unet: 1, vae_decoder: 1 }, vjp: { unet: 5 } };
 * const s = addModelStats(a, b);
 * assert.deepEqual(s.calls, { unet: 3, vae_decoder: 1 });
 * assert.deepEqual(s.vjp, { unet: 5 });
 * ```
 */
export function addModelStats(a: ModelStats, b: ModelStats): ModelStats {
  const add = (x: Record<string, number>, y: Record<string, number>) => {
    const out = { ...x };
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  return {
    calls: add(a.calls, b.calls),
    ms: add(a.ms, b.ms),
    vjp: add(a.vjp, b.vjp),
    vjpMs: add(a.vjpMs, b.vjpMs),
  };
}

/** A solver: an async generator of step events that returns the result. */
export interface Solver {
  /** Solver name, e.g. "latino". */
  readonly name: string;
  /** What it needs of the operator and prior. */
  readonly requires: Requirements;
  /** Run on a problem with a prior. */
  run(problem: Problem, prior: Prior, ctx: SolveContext): AsyncGenerator<StepEvent, SolveResult>;
}

/**
 * Explain why a solver cannot run with this operator and prior, or return null when it can.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unmetRequirements } from "./contracts.ts";
 * const why = unmetRequirements(
 *   { operator: { linear: true } },
 *   { name: "jpeg", capabilities: { linear: false, closedFormProx: false, differentiable: true } },
 * );
 * assert.ok(why !== null && why.includes("linear"));
 * ```
 */
export function unmetRequirements(
  req: Requirements,
  operator?: Pick<ForwardOperator, "name" | "capabilities">,
  prior?: Pick<Prior, "name" | "capabilities" | "capabilityNotes">,
): string | null {
  const problems: string[] = [];
  if (operator && req.operator) {
    for (const [k, need] of Object.entries(req.operator)) {
      if (need && !operator.capabilities[k as keyof OperatorCapabilities]) {
        problems.push(`operator "${operator.name}" is not ${k}`);
      }
    }
  }
  if (prior && req.prior) {
    for (const [k, need] of Object.entries(req.prior)) {
      const cap = k as keyof PriorCapabilities;
      if (need && !prior.capabilities[cap]) {
        const note = prior.capabilityNotes?.[cap];
        problems.push(
          `prior "${prior.name}" lacks ${PRIOR_CAPABILITY_TEXT[cap] ?? k} (${k})${
            note ? `: ${note}` : ""
          }`,
        );
      }
    }
  }
  return problems.length ? problems.join("; ") : null;
}
