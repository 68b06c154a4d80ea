/**
 * SAPG gradient estimators on the built-in exact model, in float64 closed form, for tests and
 * studies of LATINO-PRO's prompt optimisation (core/sapg.ts runs the optimiser):
 *
 * - {@link exactChainEstimator}: LATINO-PRO's own estimator — the 4-step LATINO chain and the
 *   transition surrogate — replayed exactly on a diagonal problem (constant δ, no clipping), per
 *   latent coordinate: ẑ0 = G_t(z) (the chain's network), u = (γhŷ + ẑ0)/(γh² + 1) (prox),
 *   z' = √ᾱ' u + √(1−ᾱ') ξ, w = √ᾱ'(z' − √ᾱ' ẑ0(c))/(1−ᾱ'), ∇_c ℓ = embeddingGradient(∂⟨w,ẑ0⟩/∂θ).
 *   It is the ONNX solver's arithmetic without the graphs (sweeps of γ0 and R take milliseconds).
 * - {@link fisherEstimator}: the textbook SAPG gradient, ∇_c log p(z | c) = Jᵀ ∇_θ log p(z | θ(c))
 *   (Fisher identity: its posterior mean is ∇_c log p(y | c)) on exact posterior samples.
 * - {@link fisherPreconditioner}: the natural-gradient step for it, θ moving by F(θ)⁻¹ g_θ (F the
 *   prior's Fisher information {@link priorFisherTheta}), within a trust region.
 *
 * @module
 */
import type { RandomStream } from "../../core/rng.ts";
import type { GradientEstimate, GradientEstimator } from "../../core/sapg.ts";
import { transitionSurrogate } from "../../core/sapg.ts";
import {
  choleskySolve,
  consistencyMap,
  dcWeight,
  decode64,
  denoiserVjp,
  type DiagonalProblem,
  embeddingForTheta,
  embeddingGradient,
  encode64,
  exactSchedule,
  logEvidence,
  logFrequencyTerm,
  posteriorDiagonal,
  priorMoments,
  priorScoreTheta,
  type Readout,
  sampleDiagonal,
  THETA_SIZE,
  thetaFromEmbedding,
  tweedie,
} from "./closed_form.ts";
import type { ExactModel } from "./model.ts";

/** Options of {@link exactChainEstimator}. */
export interface ExactChainOptions {
  /** Constant δ of the chain (γ_t = δ(1 − ᾱ_t)/σ′²). */
  delta: number;
  /** Chain timesteps (default 999, 749, 499, 249). */
  timesteps?: readonly number[];
  /** x̂0 of the surrogate: "G" (the consistency map driving the chain, default) or Tweedie "z0". */
  x0?: "G" | "z0";
  /** The chain's noise (initial and re-noising draws). */
  rng: RandomStream;
  /** The clean initial latent (default E(Aᵀy′) = h·ŷ). */
  init?: ArrayLike<number>;
  /**
   * Clip the decoded and the prox images to [−1, 1] as the solver does by default (through
   * decode64/encode64; the chain is then no longer affine-Gaussian). Default false.
   */
  clip?: boolean;
}

/** The chain estimator, with the final LATINO run from its state. */
export interface ExactChainEstimator extends GradientEstimator {
  /** The chain's current clean latent (the last output). */
  readonly state: Float64Array;
  /** A LATINO run (default 8 steps, δ of the chain) at c from the re-noised state: the output law's draw. */
  final(c: ArrayLike<number>, timesteps?: readonly number[], delta?: number): Float64Array;
}

/**
 * LATINO-PRO's transition-surrogate estimator on a diagonal problem (see the module doc). Each
 * `estimate` starts from the previous output re-noised to the first timestep, as the official code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, embedIds, promptIds } from "./model.ts";
 * import { exactChainEstimator } from "./sapg_exact.ts";
 * import { latentLayout } from "./closed_form.ts";
 * import { streams } from "../../core/rng.ts";
 * const m = createExactModel({ imageShape: [1, 3, 4, 4] });
 * const p = { yhat: new Float64Array(48).fill(0.1), h: new Float64Array(16).fill(0.5), sigmaY: 0.01, layout: latentLayout([1, 3, 4, 4]) };
 * const est = exactChainEstimator(p, m, { delta: 0.2, rng: streams(0).get("chain") });
 * const gen = est.estimate(embedIds(m, promptIds(m, "")), 0);
 * const r = await gen.next();
 * assert.ok(r.done && r.value.grads.length === 3); // 3 transitions of a 4-step chain
 * ```
 */
export function exactChainEstimator(
  p: DiagonalProblem,
  m: ExactModel,
  o: ExactChainOptions,
): ExactChainEstimator {
  const ts = o.timesteps ?? [999, 749, 499, 249];
  const kind = o.x0 ?? "G";
  const { alphasCumprod: ab, oneMinusAlphasCumprod: om } = exactSchedule();
  const n = p.h.length, N = 3 * n, T = m.text.maxLength;
  const sig2 = (2 * p.sigmaY) ** 2; // the prox runs on model-scale images: σ′ = 2σ_y (as latinoMoments)
  let state: Float64Array = o.init
    ? Float64Array.from(o.init)
    : p.yhat.map((v, i) => p.h[i % n] * v);
  const noise = (z: Float64Array, t: number) => {
    const a = Math.sqrt(ab[t]), b = Math.sqrt(om[t]);
    return z.map((v) => a * v + b * o.rng.normal());
  };
  // One LATINO step at t: G, prox (closed form per coordinate); returns u = z0'.
  const step = (
    z: Float64Array,
    t: number,
    moments: ReturnType<typeof priorMoments>,
    delta: number,
  ) => {
    const z0 = consistencyMap(z, t, moments);
    const x = o.clip ? clipLatent(z0, p.layout) : z0;
    const gamma = delta * om[t] / sig2;
    let u: Float64Array = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      const h = p.h[i % n];
      u[i] = (gamma * h * p.yhat[i] + x[i]) / (gamma * h * h + 1);
    }
    if (o.clip) u = clipLatent(u, p.layout);
    return { z0, u };
  };
  return {
    name: `exact-chain(${kind})`,
    get state() {
      return state;
    },
    // deno-lint-ignore require-yield -- no progress events: closed form
    async *estimate(c: Float64Array): AsyncGenerator<never, GradientEstimate, void> {
      const theta = thetaFromEmbedding(c, m.text.readout);
      const moments = priorMoments(theta, p.layout, m.spectrum);
      let z: Float64Array = noise(state, ts[0]);
      const grads: Float64Array[] = [];
      let value = 0;
      for (let i = 0; i < ts.length; i++) {
        const { z0, u } = step(z, ts[i], moments, o.delta);
        if (i + 1 === ts.length) {
          z = u;
          break;
        }
        const zNext = noise(u, ts[i + 1]);
        const x0 = kind === "G" ? z0 : tweedie(z, ts[i], moments).z0;
        const s = transitionSurrogate(x0, zNext, ab[ts[i + 1]]);
        const vjp = denoiserVjp(kind, z, ts[i], theta, p.layout, m.spectrum, s.cotangent);
        grads.push(embeddingGradient(vjp.dtheta, T, m.text.readout));
        value += s.value;
        z = zNext;
      }
      state = z;
      return { grads, value };
    },
    final(c, timesteps = [999, 874, 749, 624, 499, 374, 249, 124], delta = o.delta) {
      const moments = priorMoments(thetaFromEmbedding(c, m.text.readout), p.layout, m.spectrum);
      let z: Float64Array = noise(state, timesteps[0]);
      for (let i = 0; i < timesteps.length; i++) {
        const { u } = step(z, timesteps[i], moments, delta);
        z = i + 1 < timesteps.length ? noise(u, timesteps[i + 1]) : u;
      }
      return z;
    },
  };
}

/** E(clip(D(z), −1, 1)). */
function clipLatent(z: Float64Array, l: DiagonalProblem["layout"]): Float64Array {
  const x = decode64(z, l);
  for (let i = 0; i < x.length; i++) x[i] = x[i] < -1 ? -1 : x[i] > 1 ? 1 : x[i];
  return encode64(x, l);
}

/** Options of {@link fisherEstimator}. */
export interface FisherOptions {
  /** Exact posterior samples per iteration (default 1). */
  samples?: number;
  /** Their noise. */
  rng: RandomStream;
}

/**
 * The textbook (Fisher-identity) SAPG gradient on exact posterior samples of a diagonal problem:
 * z ~ p(z | y, θ(c)) exactly, g = ∇_c log p(z | c) = embeddingGradient(priorScoreTheta(z, θ(c))).
 * Its value is the exact log-evidence log p(y | θ(c)) (for reports).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, embedIds, promptIds } from "./model.ts";
 * import { fisherEstimator } from "./sapg_exact.ts";
 * import { latentLayout } from "./closed_form.ts";
 * import { streams } from "../../core/rng.ts";
 * const m = createExactModel({ imageShape: [1, 3, 4, 4] });
 * const p = { yhat: new Float64Array(48).fill(0.1), h: new Float64Array(16).fill(0.5), sigmaY: 0.01, layout: latentLayout([1, 3, 4, 4]) };
 * const est = fisherEstimator(p, m, { samples: 2, rng: streams(0).get("posterior") });
 * const r = await est.estimate(embedIds(m, promptIds(m, "")), 0).next();
 * assert.ok(r.done && r.value.grads.length === 2 && Number.isFinite(r.value.value));
 * ```
 */
export function fisherEstimator(
  p: DiagonalProblem,
  m: ExactModel,
  o: FisherOptions,
): GradientEstimator {
  const T = m.text.maxLength;
  return {
    name: "fisher-exact-posterior",
    // deno-lint-ignore require-yield -- no progress events: closed form
    async *estimate(c: Float64Array): AsyncGenerator<never, GradientEstimate, void> {
      const theta = thetaFromEmbedding(c, m.text.readout);
      const q = posteriorDiagonal(p, priorMoments(theta, p.layout, m.spectrum));
      const grads: Float64Array[] = [];
      for (let s = 0; s < (o.samples ?? 1); s++) {
        const z = sampleDiagonal(q, o.rng);
        grads.push(
          embeddingGradient(priorScoreTheta(z, theta, p.layout, m.spectrum), T, m.text.readout),
        );
      }
      return { grads, value: logEvidence(theta, p, m.spectrum).value };
    },
  };
}

/**
 * The prior's Fisher information in θ, E_{z~p(·|θ)}[∇_θ log p ∇_θ log pᵀ] (9×9): per channel k,
 * with η = log λ (information ½ per coordinate) and the DC mean (information 1/λ_DC):
 * F_{a a} = n/2, F_{a β} = −Σ L/4, F_{β β} = Σ L²/8, F_{m m} = (√(HW)s)²/λ_{k,DC}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { priorFisherTheta } from "./sapg_exact.ts";
 * import { latentLayout } from "./closed_form.ts";
 * const F = priorFisherTheta([0, 0, 0, 0, 0, 0, 0, 0, 0], latentLayout([1, 3, 2, 2]), { rho0: 1 / 64, refSize: 0 });
 * assert.equal(F[0], 2); // n/2 with n = 4 coordinates per channel
 * ```
 */
export function priorFisherTheta(
  theta: ArrayLike<number>,
  l: DiagonalProblem["layout"],
  c: ExactModel["spectrum"],
): Float64Array {
  const L = logFrequencyTerm(l, c), dc = dcWeight(l), n = L.length;
  const lambda = priorMoments(theta, l, c).lambda;
  let sL = 0, sL2 = 0;
  for (let j = 0; j < n; j++) {
    sL += L[j];
    sL2 += L[j] * L[j];
  }
  const F = new Float64Array(THETA_SIZE * THETA_SIZE);
  for (let k = 0; k < 3; k++) {
    const a = k, b = 3 + k, mm = 6 + k;
    F[a * 9 + a] = n / 2;
    F[a * 9 + b] = F[b * 9 + a] = -sL / 4;
    F[b * 9 + b] = sL2 / 8;
    F[mm * 9 + mm] = dc * dc / lambda[k * n];
  }
  return F;
}

/**
 * A natural-gradient preconditioner for SAPG in c on this model, for a Fisher information F(θ) in
 * θ (e.g. {@link priorFisherTheta}). The
 * c-direction d (T×D, frozen rows zero) is read as the θ-gradient g_θ = (J Jᵀ)⁻¹ J d (J = ∂θ/∂c over
 * the movable rows), θ moves by F(θ)⁻¹ g_θ, and the step is its minimum-norm preimage: every movable
 * row gets (T/M) W⁺ F⁻¹ g_θ (M movable rows). So SAPG in c is exactly preconditioned SAPG in θ.
 * `maxStep` is a trust region: the θ step F⁻¹g_θ is scaled so that its largest component is at
 * most maxStep (before γ_j multiplies it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel } from "./model.ts";
 * import { fisherPreconditioner, priorFisherTheta } from "./sapg_exact.ts";
 * import { embeddingGradient, thetaFromEmbedding } from "./closed_form.ts";
 * const m = createExactModel({ imageShape: [1, 3, 4, 4] });
 * const T = m.text.maxLength, D = m.text.readout.hiddenSize;
 * const c = new Float64Array(T * D);
 * const g = Float64Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0);
 * const d = embeddingGradient(g, T, m.text.readout).fill(0, 0, 4 * D); // 4 frozen rows
 * const fisher = (th: ArrayLike<number>) => priorFisherTheta(th, m.layout, m.spectrum);
 * const step = fisherPreconditioner(m, 4, fisher)(d, c);
 * const theta0 = thetaFromEmbedding(c, m.text.readout), theta1 = thetaFromEmbedding(step, m.text.readout);
 * const F = fisher(theta0);
 * // θ moved by F⁻¹ g: F (θ1 − θ0) = g
 * const moved = theta1.map((v, i) => v - theta0[i]);
 * const Fd = Array.from({ length: 9 }, (_, i) => moved.reduce((s, v, j) => s + F[i * 9 + j] * v, 0));
 * assert.ok(Fd.every((v, i) => Math.abs(v - g[i]) < 1e-9));
 * ```
 */
export function fisherPreconditioner(
  m: ExactModel,
  frozenTokens: number,
  fisher: (theta: ArrayLike<number>) => Float64Array,
  maxStep = Infinity,
): (d: Float64Array, c: Float64Array) => Float64Array {
  const r = m.text.readout, D = r.hiddenSize, T = m.text.maxLength;
  const M = T - Math.min(T, frozenTokens);
  const WWt = gram(r);
  return (d, c) => {
    // J d = (1/T) W Σ_k d_k; g_θ = (J Jᵀ)⁻¹ J d = (T/M) (W Wᵀ)⁻¹ W Σ_k d_k.
    const sumRows = new Float64Array(D);
    for (let k = 0; k < T; k++) for (let e = 0; e < D; e++) sumRows[e] += d[k * D + e];
    const Ws = new Float64Array(9);
    for (let j = 0; j < 9; j++) {
      let s = 0;
      for (let e = 0; e < D; e++) s += r.W[j * D + e] * sumRows[e];
      Ws[j] = s * T / M;
    }
    const gTheta = choleskySolve(WWt, Ws, 9)!;
    const dTheta = choleskySolve(fisher(thetaFromEmbedding(c, r)), gTheta, 9);
    if (!dTheta) throw new RangeError("fisherPreconditioner: the Fisher information is singular");
    // Trust region: the largest θ component of the step is at most maxStep (before γ_j).
    const big = Math.max(...dTheta.map(Math.abs));
    if (big > maxStep) { for (let j = 0; j < 9; j++) dTheta[j] *= maxStep / big; }
    // Minimum-norm preimage on the movable rows: (T/M) W⁺ Δθ each.
    const row = minimumNormRow(dTheta, r);
    const out = new Float64Array(T * D);
    for (let k = T - M; k < T; k++) {
      for (let e = 0; e < D; e++) out[k * D + e] = row[e] * T / M;
    }
    return out;
  };
}

function gram(r: Readout): Float64Array {
  const D = r.hiddenSize, G = new Float64Array(81);
  for (let i = 0; i < 9; i++) {
    for (let j = 0; j < 9; j++) {
      let s = 0;
      for (let e = 0; e < D; e++) s += r.W[i * D + e] * r.W[j * D + e];
      G[i * 9 + j] = s;
    }
  }
  return G;
}

/** W⁺ v (one row of width D): the minimum-norm row whose read-out moves θ by v. */
function minimumNormRow(v: ArrayLike<number>, r: Readout): Float64Array {
  const theta = Float64Array.from(v, (x, j) => x + r.b[j]);
  return embeddingForTheta(theta, 1, r);
}

/**
 * d = ‖W⁺(θ1 − θ0)‖: the distance every token row moves (minimum norm) to take θ0 to θ1 — the
 * study's embedding distance d* when θ1 is the evidence optimum.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel } from "./model.ts";
 * import { embeddingDistance } from "./sapg_exact.ts";
 * const m = createExactModel({ imageShape: [1, 3, 4, 4] });
 * const t0 = [...m.options.theta0], t1 = [...t0];
 * t1[6] += 0.2; // m_1 + 0.2; its read-out gain is 0.1
 * assert.ok(Math.abs(embeddingDistance(t1, t0, m.text.readout) - 2) < 1e-6);
 * ```
 */
export function embeddingDistance(
  theta1: ArrayLike<number>,
  theta0: ArrayLike<number>,
  r: Readout,
): number {
  const row = minimumNormRow(Float64Array.from(theta1, (v, i) => v - theta0[i]), r);
  return Math.hypot(...row);
}
