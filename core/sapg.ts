/**
 * SAPG — stochastic approximation proximal gradient on a conditioning tensor c ∈ R^{T×D} (T token
 * rows of width D), as LATINO-PRO's official code runs it (LATINO-PRO/LATINO-PRO
 * `main_LATINO_PRO.py`; ../shared/reference/solvers.md §3.2), with a pluggable gradient estimator.
 *
 * Empirical Bayes: ĉ(y) = argmax_{c ∈ C} log p(y | c), by projected stochastic ascent
 *
 *   c_{j+1} = Π_C( c_j + γ_j · d_j ),   j = 0 … J−1,
 *   γ_j     = γ0 · max(decay^max(0, j − decay_start), floor)       (official: 0.9, 10, 1e-3),
 *   C       = { c : ‖c_k − c0_k‖₂ ≤ R for every token row k }      (per-token L2 balls),
 *
 * where the direction d_j comes from the estimator's gradient samples g_{j,1…n} (each T×D):
 * - "normalised-sum" (official): acc ← acc + Σ_i g_{j,i} / ‖g_{j,i}‖_row (each token row divided by
 *   its own L2 norm), acc_k ← 0 for the frozen leading rows k < F, d_j = acc — the cumulative sum is
 *   never reset, so every update uses every past gradient;
 * - "mean" (textbook SAPG): d_j = P_c( (1/n) Σ_i g_{j,i} ) with an optional preconditioner P_c,
 *   frozen rows zeroed.
 *
 * The estimator decides what the gradient samples are: LATINO-PRO's transition surrogate
 * (`transitionSurrogate` below, run on the LATINO chain by `latino_pro.ts`), or the Fisher identity
 * on exact posterior samples (`plugins/builtin-gaussian/sapg_exact.ts`, tests and studies).
 *
 * DEVIATION (degenerate case only): a token row whose gradient is exactly zero stays zero when
 * normalised (the official code divides 0 by 0).
 *
 * @module
 */

/** The settings of one SAPG run (see the module doc for the symbols). */
export interface SapgSettings {
  /** γ0. */
  gamma0: number;
  /** Number of iterations J. */
  iterations: number;
  /** R: radius of the per-token L2 balls around c0 (Infinity: no projection). */
  radius: number;
  /** F: leading token rows that never move. */
  frozenTokens: number;
  /** Iteration after which γ decays (official 10). */
  decayStart: number;
  /** Geometric decay factor (official 0.9). */
  decay: number;
  /** Floor of the decay factor (official 1e-3). */
  gammaFloor: number;
  /** How gradient samples become a direction. */
  direction: "normalised-sum" | "mean";
  /** "mean" only: a preconditioner P_c(d) → step direction (T×D), e.g. a natural gradient. */
  precondition?: (direction: Float64Array, c: Float64Array) => Float64Array;
}

/**
 * The official settings (γ0 = 0.08, 15 iterations, R = 15, 4 frozen tokens, decay 0.9 after
 * iteration 10 down to 1e-3, normalised cumulative sum).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OFFICIAL_SAPG } from "./sapg.ts";
 * assert.equal(OFFICIAL_SAPG.gamma0, 0.08);
 * assert.equal(OFFICIAL_SAPG.iterations * 3, 45); // VJPs with a 4-step chain
 * ```
 */
export const OFFICIAL_SAPG: Readonly<SapgSettings> = Object.freeze({
  gamma0: 0.08,
  iterations: 15,
  radius: 15,
  frozenTokens: 4,
  decayStart: 10,
  decay: 0.9,
  gammaFloor: 1e-3,
  direction: "normalised-sum" as const,
});

/**
 * γ_j = γ0 · max(decay^max(0, j − decay_start), floor).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OFFICIAL_SAPG, sapgStepSize } from "./sapg.ts";
 * assert.equal(sapgStepSize(10, OFFICIAL_SAPG), 0.08);
 * assert.ok(Math.abs(sapgStepSize(12, OFFICIAL_SAPG) - 0.08 * 0.81) < 1e-15);
 * assert.equal(sapgStepSize(500, OFFICIAL_SAPG), 0.08 * 1e-3);
 * ```
 */
export function sapgStepSize(
  j: number,
  s: Pick<SapgSettings, "gamma0" | "decayStart" | "decay" | "gammaFloor">,
): number {
  return s.gamma0 * Math.max(s.decay ** Math.max(0, j - s.decayStart), s.gammaFloor);
}

/**
 * acc ← acc + g / ‖g‖_row: every token row of g (T rows of width D) divided by its L2 norm.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { accumulateRowNormalised } from "./sapg.ts";
 * const acc = new Float64Array(4);
 * accumulateRowNormalised(acc, [3, 4, 0, 0], 2); // rows (3,4) → (0.6,0.8); (0,0) stays 0
 * assert.deepEqual([...acc], [0.6, 0.8, 0, 0]);
 * ```
 */
export function accumulateRowNormalised(
  acc: Float64Array,
  g: ArrayLike<number>,
  width: number,
): void {
  for (let r = 0; r < acc.length; r += width) {
    let s = 0;
    for (let d = 0; d < width; d++) s += g[r + d] * g[r + d];
    if (s === 0) continue;
    const norm = Math.sqrt(s);
    for (let d = 0; d < width; d++) acc[r + d] += g[r + d] / norm;
  }
}

/**
 * Project c onto the per-token L2 balls of radius R around c0, in place:
 * c_k ← c0_k + min(1, R/‖c_k − c0_k‖)(c_k − c0_k). Returns the number of rows that were moved
 * back onto a ball's surface.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { projectTokenBalls } from "./sapg.ts";
 * const c = Float64Array.of(3, 4, 0.1, 0);
 * assert.equal(projectTokenBalls(c, new Float64Array(4), 2, 1), 1);
 * assert.deepEqual([...c], [0.6, 0.8, 0.1, 0]); // row 0 shrunk to radius 1, row 1 inside
 * ```
 */
export function projectTokenBalls(
  c: Float64Array,
  c0: ArrayLike<number>,
  width: number,
  radius: number,
): number {
  if (!(radius < Infinity)) return 0;
  let moved = 0;
  for (let r = 0; r < c.length; r += width) {
    let s = 0;
    for (let d = 0; d < width; d++) s += (c[r + d] - c0[r + d]) ** 2;
    if (s <= radius * radius) continue;
    const norm = Math.sqrt(s);
    for (let d = 0; d < width; d++) c[r + d] = c0[r + d] + (c[r + d] - c0[r + d]) * radius / norm;
    moved++;
  }
  return moved;
}

/** What an estimator returns for one SAPG iteration. */
export interface GradientEstimate {
  /** Gradient samples ∂/∂c of the (surrogate) log-density, each T×D row-major. */
  grads: Float64Array[];
  /** The (surrogate) objective summed over the samples, for reports. */
  value: number;
}

/**
 * A stochastic estimator of ∇_c log p(y | c). `estimate` may yield progress events of its own
 * (LATINO-PRO's yields one per LATINO step) before it returns the samples.
 */
export interface GradientEstimator<E = never> {
  /** Name for reports. */
  readonly name: string;
  /** Gradient samples at c (T×D, row-major) for iteration j. */
  estimate(c: Float64Array, j: number): AsyncGenerator<E, GradientEstimate, void>;
}

/** One SAPG iteration, as reported in progress events and run.json. */
export interface SapgIteration {
  /** Iteration index j (0-based). */
  j: number;
  /** γ_j. */
  gamma: number;
  /** The estimator's objective value at c_j (summed over its samples). */
  value: number;
  /** ‖c_{j+1} − c_j‖ (Frobenius). */
  step: number;
  /** max_k ‖c_{j+1,k} − c0_k‖: the largest token-row distance from the start. */
  distance: number;
  /** Token rows moved back onto their ball by the projection. */
  projected: number;
}

/** What the SAPG loop yields: the estimator's events, and one record per iteration. */
export type SapgYield<E> =
  | { kind: "estimator"; event: E }
  | { kind: "iteration"; iteration: SapgIteration };

/** The result of a SAPG run. */
export interface SapgResult {
  /** The final conditioning c_J (T×D). */
  c: Float64Array;
  /** One record per iteration. */
  iterations: SapgIteration[];
}

/**
 * Run SAPG from c0 (T×D values, rows of `width` D): J iterations of estimate → direction →
 * projected step. Stops with an AbortError between iterations when `signal` aborts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OFFICIAL_SAPG, sapg, type GradientEstimator } from "./sapg.ts";
 * // Exact gradient of −½‖c − 1‖² on one free token row after one frozen row.
 * const est: GradientEstimator = {
 *   name: "quadratic",
 *   async *estimate(c) {
 *     return { grads: [c.map((v) => 1 - v)], value: -0.5 * c.reduce((s, v) => s + (v - 1) ** 2, 0) };
 *   },
 * };
 * const settings = { ...OFFICIAL_SAPG, direction: "mean" as const, gamma0: 0.5, frozenTokens: 1 };
 * const run = sapg(new Float64Array(4), 2, est, settings);
 * let r = await run.next();
 * while (!r.done) r = await run.next();
 * assert.deepEqual([...r.value.c.subarray(0, 2)], [0, 0]); // the frozen row did not move
 * assert.ok(r.value.c.subarray(2).every((v) => Math.abs(v - 1) < 1e-3));
 * ```
 */
export async function* sapg<E>(
  c0: ArrayLike<number>,
  width: number,
  estimator: GradientEstimator<E>,
  s: SapgSettings,
  signal?: AbortSignal,
): AsyncGenerator<SapgYield<E>, SapgResult, void> {
  const n = c0.length;
  if (!(width > 0) || n % width !== 0) {
    throw new RangeError(`sapg: ${n} values are not rows of width ${width}`);
  }
  const start = Float64Array.from(c0);
  const c = Float64Array.from(c0);
  const acc = new Float64Array(n);
  const frozen = Math.min(n, s.frozenTokens * width);
  const records: SapgIteration[] = [];
  for (let j = 0; j < s.iterations; j++) {
    if (signal?.aborted) throw new DOMException("SAPG was cancelled", "AbortError");
    // Gradient samples at c_j (the estimator may run a whole sampler chain and yield its events).
    const gen = estimator.estimate(c, j);
    let r = await gen.next();
    while (!r.done) {
      yield { kind: "estimator", event: r.value };
      r = await gen.next();
    }
    const est = r.value;
    for (const g of est.grads) {
      if (g.length !== n) throw new RangeError(`sapg: gradient has ${g.length} values, not ${n}`);
    }
    // Direction d_j.
    let d: Float64Array;
    if (s.direction === "normalised-sum") {
      for (const g of est.grads) accumulateRowNormalised(acc, g, width);
      acc.fill(0, 0, frozen); // frozen leading rows (official: acc[0, :4] = 0)
      d = acc;
    } else {
      d = new Float64Array(n);
      for (const g of est.grads) for (let i = 0; i < n; i++) d[i] += g[i] / est.grads.length;
      d.fill(0, 0, frozen);
      if (s.precondition) {
        d = s.precondition(d, c);
        d.fill(0, 0, frozen);
      }
    }
    // Projected step c_{j+1} = Π_C(c_j + γ_j d_j).
    const gamma = sapgStepSize(j, s);
    let stepSq = 0;
    const before = Float64Array.from(c);
    for (let i = 0; i < n; i++) c[i] += gamma * d[i];
    const projected = projectTokenBalls(c, start, width, s.radius);
    let distance = 0;
    for (let r0 = 0; r0 < n; r0 += width) {
      let row = 0;
      for (let k = r0; k < r0 + width; k++) row += (c[k] - start[k]) ** 2;
      distance = Math.max(distance, Math.sqrt(row));
    }
    for (let i = 0; i < n; i++) stepSq += (c[i] - before[i]) ** 2;
    const record = { j, gamma, value: est.value, step: Math.sqrt(stepSq), distance, projected };
    records.push(record);
    yield { kind: "iteration", iteration: record };
  }
  return { c, iterations: records };
}

/**
 * LATINO-PRO's transition surrogate (solvers.md §3.2): for a transition z_t → z' (z' the chain's
 * re-noised output at the next timestep t', a constant sample) and the network's clean estimate
 * ẑ0 = ẑ0(z_t, t, c),
 *
 *   ℓ(c) = −‖z' − √ᾱ' ẑ0(c)‖² / (2(1 − ᾱ')),
 *   ∂ℓ/∂ẑ0 = w = √ᾱ' (z' − √ᾱ' ẑ0) / (1 − ᾱ'),
 *
 * so ∇_c ℓ is one VJP of ẑ0 w.r.t. c with cotangent w. Returns w (in `out` when given, same
 * array type as z') and ℓ, accumulated in float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transitionSurrogate } from "./sapg.ts";
 * // ᾱ' = 0.25: w = 0.5 (z' − 0.5 ẑ0)/0.75, ℓ = −‖z' − 0.5 ẑ0‖²/1.5.
 * const { cotangent, value } = transitionSurrogate(Float64Array.of(2, 0), Float64Array.of(1, 3), 0.25);
 * assert.deepEqual([...cotangent], [0, 2]);
 * assert.equal(value, -6);
 * ```
 */
export function transitionSurrogate<A extends Float32Array | Float64Array>(
  z0hat: ArrayLike<number>,
  zNext: A,
  abarNext: number,
  out?: A,
): { cotangent: A; value: number } {
  if (z0hat.length !== zNext.length) {
    throw new RangeError(`transitionSurrogate: ẑ0 has ${z0hat.length} values, z' ${zNext.length}`);
  }
  const a = Math.sqrt(abarNext), v = 1 - abarNext, f = a / v;
  const w = out ?? (new (zNext.constructor as { new (n: number): A })(zNext.length));
  let sq = 0;
  for (let i = 0; i < zNext.length; i++) {
    const r = zNext[i] - a * z0hat[i];
    sq += r * r;
    w[i] = f * r;
  }
  return { cotangent: w, value: -sq / (2 * v) };
}

/**
 * One transition's SAPG gradient: ∇_c ℓ for LATINO-PRO's transition surrogate
 * (see {@link transitionSurrogate}), computed by one VJP of ẑ0 w.r.t. the conditioning with the
 * cotangent w. `vjp(w)` must return ∂⟨w, ẑ0⟩/∂c at the (z_t, t, c) that gave `z0hat` (e.g. the
 * prior's `consistencyVjp` or `denoiseVjp`). Returns the gradient in float64 and ℓ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transitionGradient } from "./sapg.ts";
 * // ẑ0(c) = c (identity network): ∇_c ℓ = w = √ᾱ'(z' − √ᾱ' c)/(1 − ᾱ').
 * const c = Float32Array.of(1, 2), zNext = Float32Array.of(0.5, 4);
 * const r = await transitionGradient(c, zNext, 0.25, (w) => Promise.resolve(w));
 * assert.deepEqual([...r.grad], [0, 2]); // 0.5·(4 − 0.5·2)/0.75; row 0 is at the maximum
 * assert.equal(r.value, -6); // −‖(0, 3)‖²/1.5
 * ```
 */
export async function transitionGradient<A extends Float32Array | Float64Array>(
  z0hat: ArrayLike<number>,
  zNext: A,
  abarNext: number,
  vjp: (cotangent: A) => Promise<ArrayLike<number>>,
): Promise<{ grad: Float64Array; value: number }> {
  const { cotangent, value } = transitionSurrogate(z0hat, zNext, abarNext);
  return { grad: Float64Array.from(await vjp(cotangent)), value };
}
