/**
 * Building a {@link SolveContext}: the run-time context a solver receives (its random stream, the
 * image and latent shapes, the device and the shared session pool).
 *
 * @module
 */
import {
  type Conditioning,
  emptyModelStats,
  type Prior,
  type Problem,
  type SolveContext,
} from "./contracts.ts";
import type { Tensor } from "./tensor.ts";
import type { RandomStream } from "./rng.ts";
import { type SessionPool, sessionPool } from "./backend/pool.ts";

/** Options of {@link solveContext}. */
export interface SolveContextOptions {
  /** The solver's random stream (`streams(seed).get(STREAMS.solver)` in the CLIs). */
  rng: RandomStream;
  /** The device request the prior was loaded with (default "auto"). */
  device?: string;
  /** The session pool (default: the process-wide pool). */
  sessions?: SessionPool;
  /** Abort to stop between steps. */
  signal?: AbortSignal;
  /** Attach previews to step events. */
  previews?: boolean;
  /** Conditioning tensors to use instead of the solver's prompt. */
  conditioning?: Record<string, Tensor>;
}

/**
 * The context for running a solver on `problem` with `prior`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solveContext } from "./context.ts";
 * import { streams } from "./rng.ts";
 * const prior = { latentShape: (s: readonly number[]) => [s[0], 4, s[2] / 8, s[3] / 8] };
 * const ctx = solveContext({ imageShape: [1, 3, 64, 64] }, prior, { rng: streams(0).get("solver") });
 * assert.deepEqual(ctx.latentShape, [1, 4, 8, 8]);
 * assert.equal(ctx.device, "auto");
 * ```
 */
export function solveContext(
  problem: Pick<Problem, "imageShape">,
  prior: Pick<Prior, "latentShape">,
  options: SolveContextOptions,
): SolveContext {
  return {
    rng: options.rng,
    signal: options.signal,
    previews: options.previews,
    imageShape: [...problem.imageShape],
    latentShape: prior.latentShape(problem.imageShape),
    device: options.device ?? "auto",
    sessions: options.sessions ?? sessionPool(),
    modelStats: emptyModelStats(),
    ...(options.conditioning ? { conditioning: options.conditioning } : {}),
  };
}

/**
 * The conditioning a solver runs with: the context's tensors when given (`--embedding`), else the
 * prior's encoding of the solver's prompt.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solverConditioning } from "./context.ts";
 * const e = { data: new Float32Array(4), shape: [1, 2, 2] };
 * const prior = {
 *   condition: (prompt: string) => Promise.resolve({ prompt, tensors: {} }),
 *   conditionFromTensors: (tensors: Record<string, typeof e>) => ({ tensors }),
 * };
 * assert.equal((await solverConditioning(prior, "a cat", {})).prompt, "a cat");
 * const c = await solverConditioning(prior, "a cat", { conditioning: { encoder_hidden_states: e } });
 * assert.equal(c.tensors.encoder_hidden_states, e);
 * ```
 */
export async function solverConditioning(
  prior: Pick<Prior, "condition" | "conditionFromTensors">,
  prompt: string,
  ctx: Pick<SolveContext, "conditioning">,
): Promise<Conditioning> {
  return ctx.conditioning
    ? prior.conditionFromTensors(ctx.conditioning)
    : await prior.condition(prompt);
}
