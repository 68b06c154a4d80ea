/**
 * Running one inverse problem, shared by `solve` (one problem per process) and `compare` (many
 * problems per process, one model load per image shape): simulate the measurement from a clean
 * image, drive a solver's step generator, and score the result.
 *
 * Everything here depends only on its arguments: the operator is built from (spec, shape, seed),
 * the measurement noise comes from the seed's `measurement-noise` stream and the solver's draws
 * from its `solver` stream, so the same (solver, operator, σ_y, image, seed) gives the same bytes
 * whichever process or order runs it.
 *
 * @module
 */
import {
  addModelStats,
  type ForwardOperator,
  type Prior,
  type Problem,
  type Solver,
  type SolveResult,
  type StepEvent,
} from "../core/contracts.ts";
import { measure } from "../core/noise.ts";
import { solveContext } from "../core/context.ts";
import { createOperator, type PluginRegistry } from "../core/registry.ts";
import { STREAMS, streams } from "../core/rng.ts";
import type { Spec } from "../core/spec.ts";
import type { Tensor } from "../core/tensor.ts";
import { gaussianWindow, measurementPsnr, psnr, ssim } from "../core/metrics.ts";
import { InputError } from "../core/errors.ts";
import { sameShape } from "../core/tensor.ts";

/** An operator and the measurement it gave for one clean image. */
export interface SimulatedProblem {
  /** The operator, built for the image's shape from the seed's `operator/NAME` stream. */
  op: ForwardOperator;
  /** y = A(x) + σ_y n, n from the seed's `measurement-noise` stream. */
  y: Tensor;
}

/**
 * Build the operator for `clean` and simulate its noisy measurement (what `degrade` writes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { builtinRegistry, testScene } from "../mod.ts";
 * import { simulate } from "./run_problem.ts";
 * const clean = testScene(16, 16);
 * const a = await simulate(builtinRegistry(), "blur:sigma=1", clean, 0.01, 3);
 * const b = await simulate(builtinRegistry(), "blur:sigma=1", clean, 0.01, 3);
 * assert.deepEqual(a.y.data, b.y.data); // same (spec, σ_y, image, seed) → same measurement
 * ```
 */
export async function simulate(
  registry: PluginRegistry,
  opSpec: string | Spec,
  clean: Tensor,
  sigma: number,
  seed: number,
): Promise<SimulatedProblem> {
  const op = await createOperator(registry, opSpec, clean.shape, seed);
  const y = await measure(op, clean, sigma, streams(seed).get(STREAMS.measurementNoise));
  return { op, y };
}

/** One solver step as recorded in reports. */
export interface StepRecord {
  /** Step index, 0-based. */
  step: number;
  /** Diffusion timestep, when the solver has one. */
  t?: number;
  /** ‖A x − y‖ on the [0,1] scale after the step, when the solver reports it. */
  residual?: number;
  /** A gradient solver's loss at the step, when it reports it. */
  loss?: number;
  /** The norm of that loss's gradient, when reported. */
  gradNorm?: number;
  /** Milliseconds spent in the step. */
  ms: number;
  /** Forward model calls so far, per model. */
  nfe: Record<string, number>;
  /** VJP calls so far, per model. */
  vjp: Record<string, number>;
  /** Solver-specific fields of the step (e.g. LATINO-PRO's SAPG iteration), when present. */
  info?: Record<string, number | string>;
}

/** What one solver run gave. */
export interface SolverRun {
  /** The solver's answer. */
  result: SolveResult;
  /** Every step event (without previews). */
  steps: StepRecord[];
  /** Wall time of the run in milliseconds. */
  totalMs: number;
  /** Forward model calls made by this run, per model (the prior's counters before and after). */
  nfe: Record<string, number>;
  /** VJP calls made by this run, per model. */
  vjp: Record<string, number>;
  /** Milliseconds spent in forward model calls by this run, per model. */
  modelMs: Record<string, number>;
  /** Milliseconds spent in VJP calls by this run, per model. */
  vjpMs: Record<string, number>;
}

/** Options of {@link runSolver}. */
export interface RunSolverOptions {
  /** Run seed: the solver draws from its `solver` stream. */
  seed: number;
  /** The device request the prior was loaded with (default "auto"); solvers load graphs there. */
  device?: string;
  /** Abort to stop between steps (the generator then throws an AbortError). */
  signal?: AbortSignal;
  /** Attach previews to step events. */
  previews?: boolean;
  /** Called with every step event, previews included. */
  onStep?: (ev: StepEvent) => void | Promise<void>;
  /** Conditioning tensors to run with instead of the solver's prompt (`--embedding`). */
  conditioning?: Record<string, Tensor>;
}

/** b − a per key (keys of b; a missing key counts as 0). */
function counterDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) out[k] = v - (before[k] ?? 0);
  return out;
}

/**
 * Run a solver on a problem to the end, recording its steps and the model calls it made.
 *
 * @example
 * ```ts ignore
 * import { runSolver } from "./run_problem.ts";
 * const run = await runSolver(solver, problem, prior, { seed: 0 });
 * console.log(run.nfe, run.steps.length, run.result.x.shape);
 * ```
 */
export async function runSolver(
  solver: Solver,
  problem: Problem,
  prior: Prior,
  options: RunSolverOptions,
): Promise<SolverRun> {
  const before = prior.stats();
  const started = performance.now();
  const steps: StepRecord[] = [];
  const ctx = solveContext(problem, prior, {
    rng: streams(options.seed).get(STREAMS.solver),
    device: options.device,
    signal: options.signal,
    previews: options.previews ?? false,
    conditioning: options.conditioning,
  });
  const it = solver.run(problem, prior, ctx);
  let result: SolveResult;
  while (true) {
    const r = await it.next();
    if (r.done) {
      result = r.value;
      break;
    }
    const ev = r.value;
    steps.push({
      step: ev.step,
      t: ev.t,
      residual: ev.residual,
      loss: ev.loss,
      gradNorm: ev.gradNorm,
      ms: ev.ms,
      nfe: { ...ev.nfe },
      vjp: { ...ev.vjp },
      ...(ev.info ? { info: { ...ev.info } } : {}),
    });
    await options.onStep?.(ev);
  }
  const totalMs = performance.now() - started;
  // the prior's counters, plus the calls the solver ran outside the prior (whole-loss graphs)
  const after = addModelStats(prior.stats(), ctx.modelStats);
  return {
    result,
    steps,
    totalMs,
    nfe: counterDelta(before.calls, after.calls),
    vjp: counterDelta(before.vjp, after.vjp),
    modelMs: counterDelta(before.ms, after.ms),
    vjpMs: counterDelta(before.vjpMs, after.vjpMs),
  };
}

/** Quality of a reconstruction. */
export interface ReconstructionMetrics {
  /** PSNR(x̂, x) in dB, data range 1 (absent without the clean image). */
  psnr?: number;
  /** SSIM(x̂, x) (absent without the clean image). */
  ssim?: number;
  /**
   * PSNR(A x̂, y) in dB: how well x̂ explains the measurement — a data-fit figure, not a quality
   * score (it saturates near 10·log₁₀(1/σ_y²) for any x̂ that fits the noise).
   */
  dataFitPsnr: number;
}

/**
 * PSNR/SSIM against the clean image (when known) and the data-fit PSNR(A x̂, y).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { builtinRegistry, testScene } from "../mod.ts";
 * import { scoreReconstruction, simulate } from "./run_problem.ts";
 * const clean = testScene(16, 16);
 * const { op, y } = await simulate(builtinRegistry(), "blur:sigma=1", clean, 0, 0);
 * const m = await scoreReconstruction(op, clean, y, clean);
 * assert.equal(m.psnr, Infinity);
 * assert.ok(m.dataFitPsnr > 100); // noiseless y = A x exactly
 * ```
 */
export async function scoreReconstruction(
  op: Pick<ForwardOperator, "forward">,
  x: Tensor,
  y: Tensor,
  clean?: Tensor,
): Promise<ReconstructionMetrics> {
  const m: ReconstructionMetrics = { dataFitPsnr: await measurementPsnr(op, x, y) };
  if (clean) {
    m.psnr = psnr(x, clean);
    m.ssim = ssim(x, clean);
  }
  return m;
}

/** A reference reconstruction that needs no model, scored against the clean image. */
export interface Baseline {
  /** PSNR against the clean image, dB. */
  psnr: number;
  /** SSIM against the clean image. */
  ssim: number;
}

/** What a user compares a restoration with. */
export interface Baselines {
  /** The measurement y itself (only when it has the image's shape: blur, inpainting, JPEG). */
  measurement?: Baseline;
  /** The operator's pseudo-inverse of y (`pseudoInverse`, else the adjoint Aᵀy), unclamped. */
  pseudoInverse?: Baseline & { method: "pseudoInverse" | "adjoint" };
}

/**
 * The baselines of a problem with a known clean image: y where it has the image's shape, and the
 * operator's pseudo-inverse (or adjoint). Computed once per problem; no model involved.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { builtinRegistry, testScene } from "../mod.ts";
 * import { baselines, simulate } from "./run_problem.ts";
 * const clean = testScene(32, 32);
 * const { op, y } = await simulate(builtinRegistry(), "blur:sigma=1", clean, 0.01, 0);
 * const b = await baselines(op, y, clean);
 * assert.ok(b.measurement!.psnr > 10 && b.pseudoInverse!.psnr > 10);
 * assert.equal(b.pseudoInverse!.method, "pseudoInverse");
 * ```
 */
export async function baselines(
  op: Pick<ForwardOperator, "pseudoInverse" | "adjoint">,
  y: Tensor,
  clean: Tensor,
): Promise<Baselines> {
  const out: Baselines = {};
  const score = (t: Tensor): Baseline => ({ psnr: psnr(t, clean), ssim: ssim(t, clean) });
  if (sameShape(y.shape, clean.shape)) out.measurement = score(y);
  if (op.pseudoInverse) {
    out.pseudoInverse = { method: "pseudoInverse", ...score(await op.pseudoInverse(y)) };
  } else if (op.adjoint) {
    out.pseudoInverse = { method: "adjoint", ...score(await op.adjoint(y)) };
  }
  return out;
}

/**
 * Refuse an image too small for the metrics before any model runs: SSIM's Gaussian window needs
 * H, W ≥ 11. `what` names the input in the message (e.g. "--size 8x8").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMetricSize } from "./run_problem.ts";
 * checkMetricSize([1, 3, 11, 64], "--size 11x64");
 * assert.throws(() => checkMetricSize([1, 3, 8, 8], "--size 8x8"), /SSIM .* at least 11×11/);
 * ```
 */
export function checkMetricSize(shape: readonly number[], what: string): void {
  const n = SSIM_WINDOW;
  const [h, w] = [shape[2], shape[3]];
  if (h < n || w < n) {
    throw new InputError(
      `${what}: the image is ${h}×${w}, but SSIM (scored against the clean image) needs at least ` +
        `${n}×${n} pixels`,
    );
  }
}

/** Side of SSIM's Gaussian window (σ = 1.5 truncated at 3.5σ: 11). */
const SSIM_WINDOW = gaussianWindow(1.5, 3.5).length;
