/**
 * Conjugate gradients for the prox of a linear least-squares data term.
 *
 * prox: u = argmin (γ/2)‖A u − y‖² + ½‖u − z‖²  ⇔  (γ AᵀA + I) u = γ Aᵀ y + z.
 * The system matrix is symmetric positive definite with eigenvalues in [1, 1 + γ‖A‖²], so CG
 * converges fast for moderate γ. Vectors are kept in float64; the operator is applied in float32.
 *
 * @module
 */
import type { ForwardOperator, ProxOptions } from "../contracts.ts";
import type { Tensor } from "../tensor.ts";

/** Result of a CG solve. */
export interface CgResult {
  /** The solution. */
  x: Float64Array;
  /** Iterations used. */
  iterations: number;
  /** Final ‖r‖ / ‖b‖. */
  relResidual: number;
  /**
   * Why it stopped: the tolerance was met, the iteration cap was reached, or a direction of
   * non-positive curvature pᵀMp ≤ 0 appeared (M is not positive definite along p, or r = 0 with a
   * zero tolerance); `x` is then the last iterate.
   */
  stop: "tolerance" | "max-iterations" | "non-positive-curvature";
}

/**
 * Caller-owned vectors of a CG solve (all of length n, none of them b), so that a hot loop that solves many systems
 * of one size allocates nothing: see {@link cgWork}. `x` holds the solution on return (the
 * result's `x` is this array); `z` (the preconditioned residual) is needed only with a
 * preconditioner.
 */
export interface CgWork {
  /** The iterate, then the solution. */
  x: Float64Array;
  /** The residual b − M x. */
  r: Float64Array;
  /** The search direction. */
  p: Float64Array;
  /** P r (only used with a preconditioner). */
  z?: Float64Array;
}

/** Options of {@link conjugateGradient} and {@link conjugateGradientSync}. */
export interface CgOptions {
  /** Maximum iterations (default {@link CG_DEFAULTS}.maxIter). */
  maxIter?: number;
  /** Stop when ‖r‖ ≤ tol·‖b‖ (default {@link CG_DEFAULTS}.tol). */
  tol?: number;
  /** Starting point (default 0, which also saves one application of M). */
  x0?: Float64Array;
  /**
   * The preconditioner hook: write P r into `out`, P a symmetric positive definite approximation
   * of M⁻¹ (e.g. {@link jacobi}). Without it, plain CG (P = I).
   */
  precondition?: (r: Float64Array, out: Float64Array) => void;
  /** Work vectors to use instead of fresh ones (default: allocated per solve). */
  work?: CgWork;
  /**
   * Called after each iteration's update x ← x + αp, r ← r − αMp, with α, p and the M p that
   * `apply` returned for it: for quantities a caller accumulates along the iterates (e.g. B x for a
   * linear B whose B p the caller's `apply` already computed). Must not modify its arguments.
   */
  onStep?: (alpha: number, p: Float64Array, mp: Float64Array) => void;
}

/**
 * Defaults for the CG prox: tighter than deepinv's (50 iterations, 1e-4).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CG_DEFAULTS } from "./cg.ts";
 * assert.deepEqual(CG_DEFAULTS, { maxIter: 200, tol: 1e-6 });
 * ```
 */
export const CG_DEFAULTS = { maxIter: 200, tol: 1e-6 } as const;

/**
 * Solve M x = b for symmetric positive definite M given as a function, by (preconditioned)
 * conjugate gradients (Nocedal & Wright, "Numerical Optimization", Alg. 5.3). Stops when
 * ‖r‖ ≤ tol·‖b‖, after `maxIter` iterations, or on a direction of non-positive curvature. The one
 * CG of the toolkit: the operators' CG prox, the truncated Newton steps of the nonlinear prox, the
 * JPEG bin prox's Newton steps ({@link conjugateGradientSync}) and the built-in model's exact
 * posterior solves all run it. Vectors are float64. `apply` must not modify its argument and may
 * return the same buffer every call (it is read before the next call).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { conjugateGradient, jacobi } from "./cg.ts";
 * // M = [[4, 1], [1, 3]], b = (1, 2)  ⇒  x = (1/11, 7/11), exact after 2 iterations
 * const apply = (v: Float64Array) => Float64Array.of(4 * v[0] + v[1], v[0] + 3 * v[1]);
 * const b = Float64Array.of(1, 2);
 * for (const precondition of [undefined, jacobi(Float64Array.of(4, 3))]) {
 *   const r = await conjugateGradient(apply, b, { maxIter: 10, tol: 1e-12, precondition });
 *   assert.ok(Math.abs(r.x[0] - 1 / 11) < 1e-12 && Math.abs(r.x[1] - 7 / 11) < 1e-12);
 *   assert.ok(r.iterations <= 2 && r.stop === "tolerance");
 * }
 * ```
 */
export async function conjugateGradient(
  apply: (v: Float64Array) => Float64Array | Promise<Float64Array>,
  b: Float64Array,
  options: CgOptions = {},
): Promise<CgResult> {
  const loop = cgIterations(b, options);
  for (let s = loop.next();;) {
    if (s.done) return s.value;
    s = loop.next(await apply(s.value));
  }
}

/**
 * {@link conjugateGradient} for a synchronous `apply`: the same iteration (one implementation,
 * driven without awaiting), for solvers that must not yield between iterations — e.g. because they
 * reuse shared work buffers ({@link CgOptions.work}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cgWork, conjugateGradientSync } from "./cg.ts";
 * // M = diag(2, 4): x = b / diag; E x accumulated along the iterates with onStep (here E = I).
 * const mp = new Float64Array(2), ex = new Float64Array(2), work = cgWork(2, false);
 * const apply = (v: Float64Array) => (mp[0] = 2 * v[0], mp[1] = 4 * v[1], mp);
 * const onStep = (a: number, p: Float64Array) => p.forEach((v, i) => ex[i] += a * v);
 * const r = conjugateGradientSync(apply, Float64Array.of(2, 2), { tol: 1e-12, work, onStep });
 * assert.equal(r.x, work.x);
 * assert.ok(Math.abs(r.x[0] - 1) < 1e-12 && Math.abs(r.x[1] - 0.5) < 1e-12);
 * assert.ok(Math.abs(ex[0] - r.x[0]) < 1e-12 && Math.abs(ex[1] - r.x[1]) < 1e-12);
 * ```
 */
export function conjugateGradientSync(
  apply: (v: Float64Array) => Float64Array,
  b: Float64Array,
  options: CgOptions = {},
): CgResult {
  const loop = cgIterations(b, options);
  for (let s = loop.next();;) {
    if (s.done) return s.value;
    s = loop.next(apply(s.value));
  }
}

/**
 * Work vectors for {@link CgOptions.work}: x, r, p and, when `preconditioned`, z.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cgWork } from "./cg.ts";
 * assert.equal(cgWork(3).z?.length, 3);
 * assert.equal(cgWork(3, false).z, undefined);
 * ```
 */
export function cgWork(n: number, preconditioned = true): CgWork {
  const v = () => new Float64Array(n);
  return { x: v(), r: v(), p: v(), ...(preconditioned ? { z: v() } : {}) };
}

/**
 * The CG iteration as a generator: it yields each vector v whose M v it needs and is resumed with
 * M v; it returns the result. Both drivers above run it.
 */
function* cgIterations(
  b: Float64Array,
  options: CgOptions,
): Generator<Float64Array, CgResult, Float64Array> {
  const maxIter = options.maxIter ?? CG_DEFAULTS.maxIter;
  const tol = options.tol ?? CG_DEFAULTS.tol;
  const { precondition, work, onStep } = options;
  const n = b.length;
  if (work) checkWork(work, b, precondition !== undefined);
  const x = work ? work.x : new Float64Array(n);
  if (options.x0) x.set(options.x0);
  else if (work) x.fill(0);
  const r = work ? work.r : new Float64Array(n);
  r.set(b);
  if (options.x0) {
    const mx = yield x;
    for (let i = 0; i < n; i++) r[i] -= mx[i];
  }
  // z = P r (z is r itself without a preconditioner).
  const zv = precondition ? (work?.z ?? new Float64Array(n)) : r;
  precondition?.(r, zv);
  const p = work ? work.p : new Float64Array(n);
  p.set(zv);
  let rz = dot64(r, zv);
  const bb = dot64(b, b);
  // ‖r‖ (= ‖b‖ from x = 0, the same sum), read off rz = rᵀr without a preconditioner.
  let rn = Math.sqrt(!precondition ? rz : options.x0 ? dot64(r, r) : bb);
  const bn = Math.sqrt(bb) || 1;
  let it = 0;
  let stop: CgResult["stop"] = "max-iterations";
  while (true) {
    if (rn <= tol * bn) {
      stop = "tolerance";
      break;
    }
    if (it >= maxIter) break;
    const mp = yield p;
    const curvature = dot64(p, mp);
    if (!(curvature > 0)) {
      stop = "non-positive-curvature";
      break;
    }
    const alpha = rz / curvature;
    let rr = 0; // rᵀr of the new residual, summed as it is written
    for (let i = 0; i < n; i++) {
      x[i] += alpha * p[i];
      const ri = r[i] - alpha * mp[i];
      r[i] = ri;
      rr += ri * ri;
    }
    onStep?.(alpha, p, mp);
    it++;
    rn = Math.sqrt(rr);
    if (precondition) {
      if (rn <= tol * bn) continue; // converged: skip the unused direction update
      precondition(r, zv);
    }
    const rzNew = precondition ? dot64(r, zv) : rr;
    const beta = rzNew / rz;
    for (let i = 0; i < n; i++) p[i] = zv[i] + beta * p[i];
    rz = rzNew;
  }
  return { x, iterations: it, relResidual: rn / bn, stop };
}

function checkWork(work: CgWork, b: Float64Array, preconditioned: boolean): void {
  const keys: (keyof CgWork)[] = preconditioned ? ["x", "r", "p", "z"] : ["x", "r", "p"];
  for (const k of keys) {
    const v = work[k];
    if (v?.length !== b.length) {
      throw new RangeError(
        `conjugateGradient: work.${k} must have length ${b.length}, got ${v?.length}`,
      );
    }
    if (v === b) throw new RangeError(`conjugateGradient: work.${k} must not be b`);
  }
}

/**
 * The Jacobi (diagonal) preconditioner P = diag(d)⁻¹, as a {@link CgOptions.precondition} hook.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jacobi } from "./cg.ts";
 * const out = new Float64Array(2);
 * jacobi(Float64Array.of(2, 4))(Float64Array.of(1, 1), out);
 * assert.deepEqual([...out], [0.5, 0.25]);
 * ```
 */
export function jacobi(d: Float64Array): (r: Float64Array, out: Float64Array) => void {
  return (r, out) => {
    for (let i = 0; i < r.length; i++) out[i] = r[i] / d[i];
  };
}

function dot64(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function toF32(v: Float64Array, shape: readonly number[]): Tensor {
  return { data: Float32Array.from(v), shape: [...shape] };
}

/**
 * The L2 prox of a linear operator by CG on (γAᵀA + I)u = γAᵀy + z, warm-started at z. Writes
 * into `options.out` when given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cgProxL2 } from "./cg.ts";
 * import type { ForwardOperator } from "../contracts.ts";
 * const half: Pick<ForwardOperator, "forward" | "adjoint" | "inputShape"> = {
 *   inputShape: [1, 1, 1, 2],
 *   forward: (x) => Promise.resolve({ data: x.data.map((v) => v / 2), shape: x.shape }),
 *   adjoint: (y) => Promise.resolve({ data: y.data.map((v) => v / 2), shape: y.shape }),
 * };
 * const z = { data: new Float32Array([1, 1]), shape: [1, 1, 1, 2] };
 * const y = { data: new Float32Array([0, 0]), shape: [1, 1, 1, 2] };
 * const u = await cgProxL2(half, z, y, 4); // (4·¼ + 1) u = z  ⇒  u = ½
 * assert.ok(Math.abs(u.data[0] - 0.5) < 1e-6);
 * ```
 */
export async function cgProxL2(
  op: Pick<ForwardOperator, "forward" | "adjoint" | "inputShape">,
  z: Tensor,
  y: Tensor,
  gamma: number,
  options: ProxOptions = {},
): Promise<Tensor> {
  if (!op.adjoint) throw new Error("cgProxL2 needs a linear operator with an adjoint");
  return await cgProxFromAdjointY(op, z, await op.adjoint(y), gamma, options);
}

/**
 * {@link cgProxL2} given Aᵀy instead of y: a prox bound to one measurement computes Aᵀy once and
 * saves one adjoint per call.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cgProxFromAdjointY } from "./cg.ts";
 * const id = {
 *   inputShape: [1, 1, 1, 2],
 *   forward: (x: { data: Float32Array; shape: number[] }) => Promise.resolve(x),
 *   adjoint: (y: { data: Float32Array; shape: number[] }) => Promise.resolve(y),
 * };
 * const z = { data: new Float32Array([1, 3]), shape: [1, 1, 1, 2] };
 * const aty = { data: new Float32Array([3, 1]), shape: [1, 1, 1, 2] };
 * const u = await cgProxFromAdjointY(id, z, aty, 1); // (I + I) u = Aᵀy + z  ⇒  u = (2, 2)
 * assert.ok(Math.abs(u.data[0] - 2) < 1e-6 && Math.abs(u.data[1] - 2) < 1e-6);
 * ```
 */
export async function cgProxFromAdjointY(
  op: Pick<ForwardOperator, "forward" | "adjoint" | "inputShape">,
  z: Tensor,
  aty: Tensor,
  gamma: number,
  options: ProxOptions = {},
): Promise<Tensor> {
  if (!op.adjoint) throw new Error("cgProxL2 needs a linear operator with an adjoint");
  const adjoint = op.adjoint.bind(op);
  const shape = op.inputShape;
  const b = new Float64Array(z.data.length);
  for (let i = 0; i < b.length; i++) b[i] = gamma * aty.data[i] + z.data[i];
  const apply = async (v: Float64Array) => {
    const atav = await adjoint(await op.forward(toF32(v, shape)));
    const out = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = gamma * atav.data[i] + v[i];
    return out;
  };
  const res = await conjugateGradient(apply, b, {
    x0: Float64Array.from(z.data),
    maxIter: options.maxIter,
    tol: options.tol,
  });
  if (!options.out) return toF32(res.x, shape);
  options.out.data.set(res.x);
  return options.out;
}
