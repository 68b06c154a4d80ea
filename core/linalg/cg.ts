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
}

/**
 * Solve M x = b for symmetric positive definite M given as a function, starting from x0.
 * Stops when ‖r‖ ≤ tol·‖b‖ or after maxIter iterations.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { conjugateGradient } from "./cg.ts";
 * // M = diag(2, 4), b = (2, 4)  ⇒  x = (1, 1), exact after 2 iterations
 * const apply = (v: Float64Array) => Promise.resolve(Float64Array.from([2 * v[0], 4 * v[1]]));
 * const r = await conjugateGradient(apply, Float64Array.from([2, 4]), new Float64Array(2), 10, 1e-10);
 * assert.ok(Math.abs(r.x[0] - 1) < 1e-9 && Math.abs(r.x[1] - 1) < 1e-9);
 * assert.ok(r.iterations <= 2);
 * ```
 */
export async function conjugateGradient(
  apply: (v: Float64Array) => Promise<Float64Array>,
  b: Float64Array,
  x0: Float64Array,
  maxIter: number,
  tol: number,
): Promise<CgResult> {
  const n = b.length;
  const x = Float64Array.from(x0);
  const mx = await apply(x);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = b[i] - mx[i];
  const p = Float64Array.from(r);
  let rr = dot64(r, r);
  const bn = Math.sqrt(dot64(b, b)) || 1;
  let it = 0;
  while (it < maxIter && Math.sqrt(rr) > tol * bn) {
    const mp = await apply(p);
    const alpha = rr / dot64(p, mp);
    for (let i = 0; i < n; i++) {
      x[i] += alpha * p[i];
      r[i] -= alpha * mp[i];
    }
    const rrNew = dot64(r, r);
    const beta = rrNew / rr;
    for (let i = 0; i < n; i++) p[i] = r[i] + beta * p[i];
    rr = rrNew;
    it++;
  }
  return { x, iterations: it, relResidual: Math.sqrt(rr) / bn };
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
 * The L2 prox of a linear operator by CG on (γAᵀA + I)u = γAᵀy + z, warm-started at z.
 *
 * @example
 * ```ts
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
 * console.assert(Math.abs(u.data[0] - 0.5) < 1e-6);
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
  const adjoint = op.adjoint.bind(op);
  const shape = op.inputShape;
  const aty = await adjoint(y);
  const b = new Float64Array(z.data.length);
  for (let i = 0; i < b.length; i++) b[i] = gamma * aty.data[i] + z.data[i];
  const apply = async (v: Float64Array) => {
    const atav = await adjoint(await op.forward(toF32(v, shape)));
    const out = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = gamma * atav.data[i] + v[i];
    return out;
  };
  const res = await conjugateGradient(
    apply,
    b,
    Float64Array.from(z.data),
    options.maxIter ?? CG_DEFAULTS.maxIter,
    options.tol ?? CG_DEFAULTS.tol,
  );
  return toF32(res.x, shape);
}
