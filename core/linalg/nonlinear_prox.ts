/**
 * The L2 prox of a nonlinear, differentiable operator:
 *
 *   prox(z) = argmin_u Φ(u),   Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²,
 *   ∇Φ(u) = γ J_A(u)ᵀ (A(u) − y) + u − z.
 *
 * ∇Φ is exactly the optimality residual of the operator contract, so the solver stops when
 * ‖∇Φ(u)‖ ≤ tol · ‖z‖. Two modes, one line search:
 *
 * - Generic: L-BFGS (Nocedal & Wright, "Numerical Optimization", 2nd ed., Alg. 7.4 two-loop
 *   recursion). It needs only `forward` and `vjp` (one of each per iteration when the first trial
 *   step is accepted), so it works for any differentiable operator. Gauss–Newton/CG would need a
 *   Jacobian-vector product, which the operator contract does not have; plain gradient descent is
 *   slow when γJᵀJ is badly conditioned.
 * - With an operator-supplied second-order model ({@link SecondOrderModel}: a positive definite
 *   Hessian model and a preconditioner): truncated Newton–CG. Operators whose curvature is far
 *   too uneven for L-BFGS (the JPEG model's soft rounding makes ∇²Φ range over 1…10⁵) use this.
 *
 * The line search enforces the strong Wolfe conditions (N&W Alg. 3.5/3.6, c₁ = 1e-4, c₂ = 0.9),
 * which keeps sᵀy > 0 so the L-BFGS model stays positive definite even where Φ is not convex. Φ may
 * be non-convex: the result is a stationary point near z (the search starts at u = z or `init`),
 * which is what the contract's optimality residual certifies.
 *
 * Arithmetic is float64; the operator sees float32 iterates, and the returned tensor is exactly the
 * float32 point whose residual was measured. Near convergence Φ's decrease drops below its float32
 * rounding noise, so the line search switches to slope tests (Hager–Zhang approximate Wolfe); when
 * the residual stops improving (the float32 floor: for a stiff Φ one ulp of u moves ∇Φ by
 * ~‖∇²Φ‖·6e-8·‖u‖), the solver stops and returns the iterate with the smallest residual seen.
 *
 * @module
 */
import type { ForwardOperator, ProxOptions } from "../contracts.ts";
import { assertShape, type Tensor } from "../tensor.ts";
import { conjugateGradient } from "./cg.ts";

/** What the nonlinear prox needs of an operator: its input shape, forward and VJP. */
export type DifferentiableMap = Pick<ForwardOperator, "inputShape" | "forward" | "vjp">;

/** Options of {@link nonlinearProxL2}. */
export interface NonlinearProxOptions extends ProxOptions {
  /** Maximum iterations (L-BFGS or Newton steps). Default {@link NONLINEAR_PROX_DEFAULTS}.maxIter. */
  maxIter?: number;
  /** Stop when ‖∇Φ(u)‖ ≤ tol·‖z‖. Default {@link NONLINEAR_PROX_DEFAULTS}.tol. */
  tol?: number;
  /** Number of (s, y) pairs kept by L-BFGS. Default 8. */
  memory?: number;
  /** Starting point (default z). */
  init?: Tensor;
  /**
   * Optional second-order model at the current iterate u (see {@link SecondOrderModel}). With a
   * `hessian`, each step is a truncated Newton step: the model system H d = −∇Φ is solved by
   * preconditioned CG (Nocedal & Wright Alg. 7.2 with Eisenstat–Walker forcing η = min(½, √‖∇Φ‖/‖∇Φ₀‖))
   * and followed by the line search. With only a `preconditioner`, it becomes L-BFGS's initial
   * matrix H₀ (N&W §7.2 allows H₀ to change every iteration).
   */
  model?: (u: Tensor) => Promise<SecondOrderModel>;
  /** Maximum CG iterations per truncated Newton step. Default 50. */
  maxCg?: number;
}

/** A local second-order model of Φ supplied by an operator that knows its own structure. */
export interface SecondOrderModel {
  /** v ↦ H v, H a symmetric positive definite approximation of ∇²Φ(u). */
  hessian?: (v: Float64Array) => Float64Array;
  /** v ↦ P v, P a symmetric positive definite approximation of H⁻¹ (or of ∇²Φ(u)⁻¹). */
  preconditioner?: (v: Float64Array) => Float64Array;
}

/**
 * Defaults of the nonlinear prox: 100 iterations, relative residual 1e-5, memory 8. A prox inside a
 * sampler does not need more: 1e-5 of ‖z‖ is far below the [0,1] image quantisation (≈ 4e-3).
 */
export const NONLINEAR_PROX_DEFAULTS = { maxIter: 100, tol: 1e-5, memory: 8 } as const;

/** Iterations without a new smallest residual after which the solve counts as stalled. */
const PATIENCE = 60;

/** What {@link nonlinearProxL2Solve} did. */
export interface NonlinearProxResult {
  /** The prox point (float32, the exact point whose residual is reported). */
  u: Tensor;
  /** L-BFGS iterations taken. */
  iterations: number;
  /** ‖γJᵀ(A(u) − y) + u − z‖ / ‖z‖ at u. */
  relResidual: number;
  /** True when relResidual ≤ tol. */
  converged: boolean;
  /** Why it stopped. */
  stop: "tolerance" | "max-iterations" | "stalled";
  /** Calls to forward and to vjp. */
  evaluations: { forward: number; vjp: number };
}

/** Φ, and when asked ∇Φ, at one float32 point. */
interface Point {
  /** The float32 iterate, widened. */
  u: Float64Array;
  /** Φ(u). */
  f: number;
  /** ∇Φ(u), when computed. */
  g?: Float64Array;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * The L2 prox of a differentiable operator, with a report of the solve.
 *
 * @param op the operator (only `inputShape`, `forward` and `vjp` are used)
 * @param z the prox centre, shape `op.inputShape`
 * @param y the measurement, shape of A(z)
 * @param gamma γ > 0
 */
export async function nonlinearProxL2Solve(
  op: DifferentiableMap,
  z: Tensor,
  y: Tensor,
  gamma: number,
  options: NonlinearProxOptions = {},
): Promise<NonlinearProxResult> {
  const shape = [...op.inputShape];
  assertShape(z, shape, "prox: z");
  if (!(gamma > 0) || !Number.isFinite(gamma)) {
    throw new RangeError(`prox: γ must be a positive number, got ${gamma}`);
  }
  const maxIter = options.maxIter ?? NONLINEAR_PROX_DEFAULTS.maxIter;
  const tol = options.tol ?? NONLINEAR_PROX_DEFAULTS.tol;
  const memory = Math.max(0, options.memory ?? NONLINEAR_PROX_DEFAULTS.memory);
  const n = z.data.length;
  const zd = Float64Array.from(z.data);
  let zn = Math.sqrt(dot(zd, zd));
  if (zn === 0) zn = 1;
  const evaluations = { forward: 0, vjp: 0 };

  const toTensor = (u: Float64Array): Tensor => ({ data: Float32Array.from(u), shape: [...shape] });
  // Φ at a point; keeps A(u) − y so the gradient costs one VJP.
  let lastResidual: { u: Float64Array; r: Tensor } | null = null;
  const value = async (u64: Float64Array): Promise<Point> => {
    const t = toTensor(u64);
    const u = Float64Array.from(t.data); // the float32 point actually evaluated
    const au = await op.forward(t);
    evaluations.forward++;
    if (au.data.length !== y.data.length) {
      throw new RangeError(`prox: y has ${y.data.length} values, A(u) has ${au.data.length}`);
    }
    const r = new Float32Array(au.data.length);
    let rr = 0;
    for (let i = 0; i < r.length; i++) {
      const v = au.data[i] - y.data[i];
      r[i] = v;
      rr += v * v;
    }
    let dz = 0;
    for (let i = 0; i < n; i++) dz += (u[i] - zd[i]) ** 2;
    lastResidual = { u, r: { data: r, shape: [...au.shape] } };
    return { u, f: 0.5 * gamma * rr + 0.5 * dz };
  };
  const gradient = async (p: Point): Promise<Float64Array> => {
    if (p.g) return p.g;
    let r: Tensor;
    if (lastResidual && lastResidual.u === p.u) r = lastResidual.r;
    else {
      const au = await op.forward(toTensor(p.u));
      evaluations.forward++;
      r = { data: au.data.map((v, i) => v - y.data[i]), shape: [...au.shape] };
    }
    const jtr = await op.vjp(toTensor(p.u), r);
    evaluations.vjp++;
    const g = new Float64Array(n);
    for (let i = 0; i < n; i++) g[i] = gamma * jtr.data[i] + p.u[i] - zd[i];
    p.g = g;
    return g;
  };

  const start = options.init ? Float64Array.from(options.init.data) : zd;
  if (options.init) assertShape(options.init, shape, "prox: init");
  let cur = await value(start);
  let g = await gradient(cur);
  let gn = Math.sqrt(dot(g, g));
  const gn0 = gn;
  const maxCg = options.maxCg ?? 50;
  let best = { u: cur.u, res: gn / zn }, sinceBest = 0;
  const S: Float64Array[] = [], Y: Float64Array[] = [], RHO: number[] = [];
  let iterations = 0;
  let stop: NonlinearProxResult["stop"] = "max-iterations";

  while (true) {
    if (gn / zn <= tol) {
      stop = "tolerance";
      break;
    }
    if (iterations >= maxIter) break;
    const model = options.model ? await options.model(toTensor(cur.u)) : {};
    const d = model.hessian
      ? await newtonDirection(
        model.hessian,
        model.preconditioner,
        g,
        Math.min(0.5, Math.sqrt(gn / gn0)),
        maxCg,
      )
      : lbfgsDirection(g, S, Y, RHO, model.preconditioner);
    let dphi0 = dot(g, d);
    if (!(dphi0 < 0)) {
      // Not a descent direction (numerical trouble): restart from steepest descent.
      S.length = Y.length = RHO.length = 0;
      for (let i = 0; i < n; i++) d[i] = -g[i];
      dphi0 = -gn * gn;
    }
    const next = await wolfeSearch(cur, d, dphi0, value, gradient);
    if (!next) {
      if (S.length) {
        S.length = Y.length = RHO.length = 0; // drop the curvature model once and retry
        continue;
      }
      stop = "stalled";
      break;
    }
    const gNext = await gradient(next);
    const s = new Float64Array(n), yv = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = next.u[i] - cur.u[i];
      yv[i] = gNext[i] - g[i];
    }
    const sy = dot(s, yv);
    if (!model.hessian && sy > 1e-12 * Math.sqrt(dot(s, s) * dot(yv, yv))) {
      S.push(s), Y.push(yv), RHO.push(1 / sy);
      if (S.length > memory) S.shift(), Y.shift(), RHO.shift();
    }
    cur = next;
    g = gNext;
    gn = Math.sqrt(dot(g, g));
    iterations++;
    if (gn / zn < best.res) best = { u: cur.u, res: gn / zn }, sinceBest = 0;
    else if (++sinceBest >= PATIENCE) {
      stop = "stalled"; // at the float32 noise floor
      break;
    }
  }
  const res = best.res;
  return {
    u: toTensor(best.u),
    iterations,
    relResidual: res,
    converged: res <= tol,
    stop,
    evaluations,
  };
}

/** L-BFGS two-loop recursion: d = −H g, with H₀ = P (if given) or the scalar sᵀy/yᵀy. */
function lbfgsDirection(
  g: Float64Array,
  S: Float64Array[],
  Y: Float64Array[],
  RHO: number[],
  precondition?: (v: Float64Array) => Float64Array,
): Float64Array {
  const n = g.length;
  let d = Float64Array.from(g);
  const alphas: number[] = [];
  for (let k = S.length - 1; k >= 0; k--) {
    const a = RHO[k] * dot(S[k], d);
    alphas[k] = a;
    const yk = Y[k];
    for (let i = 0; i < n; i++) d[i] -= a * yk[i];
  }
  if (precondition) d = Float64Array.from(precondition(d));
  else {
    const m = S.length - 1;
    const h0 = m >= 0 ? dot(S[m], Y[m]) / dot(Y[m], Y[m]) : 1;
    for (let i = 0; i < n; i++) d[i] *= h0;
  }
  for (let k = 0; k < S.length; k++) {
    const b = RHO[k] * dot(Y[k], d);
    const sk = S[k], c = alphas[k] - b;
    for (let i = 0; i < n; i++) d[i] += c * sk[i];
  }
  for (let i = 0; i < n; i++) d[i] = -d[i];
  return d;
}

/**
 * Truncated Newton direction: preconditioned CG ({@link conjugateGradient}) on H d = −g from
 * d = 0, stopped when ‖H d + g‖ ≤ η‖g‖ or after maxCg iterations (N&W Alg. 7.1/7.2). H is assumed
 * positive definite; should a curvature dᵀHd ≤ 0 appear anyway, CG stops with the current iterate
 * (or −P g when that happens at the first iteration).
 */
async function newtonDirection(
  hessian: (v: Float64Array) => Float64Array,
  precondition: ((v: Float64Array) => Float64Array) | undefined,
  g: Float64Array,
  eta: number,
  maxCg: number,
): Promise<Float64Array> {
  const hook = precondition
    ? (r: Float64Array, out: Float64Array) => out.set(precondition(r))
    : undefined;
  const minusG = Float64Array.from(g, (v) => -v);
  const res = await conjugateGradient(hessian, minusG, {
    maxIter: maxCg,
    tol: eta,
    precondition: hook,
  });
  if (res.stop === "non-positive-curvature" && res.iterations === 0) {
    return precondition ? Float64Array.from(precondition(minusG)) : minusG;
  }
  return res.x;
}

/**
 * Line search along d from p for the strong Wolfe conditions (Nocedal & Wright Alg. 3.5 with the
 * zoom of Alg. 3.6), φ(α) = Φ(u + αd), c₁ = 1e-4, c₂ = 0.9.
 *
 * Near convergence the decrease of Φ falls below the rounding noise of Φ itself (the operator
 * returns float32, so Φ carries an absolute error of about 1e-7·Φ), while gradients are still
 * accurate. Then the Armijo test is replaced by the "approximate Wolfe" test of Hager & Zhang
 * (SIAM J. Optim. 16(1), 2005, §4): φ(α) ≤ φ(0) + ε and φ'(α) ≤ (2δ − 1)φ'(0), δ = 0.1,
 * ε = 1e-6·|φ(0)|, which is Armijo for the quadratic model and needs only slopes. Brackets are
 * then kept by slope sign. Returns the accepted point, or null when no acceptable step is found.
 */
async function wolfeSearch(
  p: Point,
  d: Float64Array,
  dphi0: number,
  value: (u: Float64Array) => Promise<Point>,
  gradient: (p: Point) => Promise<Float64Array>,
): Promise<Point | null> {
  const c1 = 1e-4, c2 = 0.9, delta = 0.1, maxSteps = 40;
  const n = d.length;
  const phi0 = p.f;
  const epsF = 1e-6 * Math.abs(phi0);
  let evals = 0;
  const at = async (alpha: number): Promise<Point> => {
    evals++;
    const u = new Float64Array(n);
    for (let i = 0; i < n; i++) u[i] = p.u[i] + alpha * d[i];
    return await value(u);
  };
  const slope = async (q: Point) => dot(await gradient(q), d);
  /** Sufficient decrease: Armijo, or approximate Wolfe within the noise of Φ. */
  const decrease = async (alpha: number, q: Point): Promise<{ ok: boolean; s?: number }> => {
    if (!Number.isFinite(q.f)) return { ok: false };
    if (q.f <= phi0 + c1 * alpha * dphi0) return { ok: true };
    if (q.f <= phi0 + epsF) {
      const s = await slope(q);
      return { ok: s <= (2 * delta - 1) * dphi0, s };
    }
    return { ok: false };
  };
  type Trial = { a: number; q: Point; s: number };
  // lo: acceptable decrease, slope known (α = 0 at first); hi: the other end of the bracket.
  let lo: Trial = { a: 0, q: p, s: dphi0 };
  let hi: { a: number; f: number; s?: number } | null = null;
  let alpha = 1;
  while (evals < maxSteps) {
    const q = await at(alpha);
    const dec = await decrease(alpha, q);
    if (!dec.ok) {
      hi = { a: alpha, f: q.f, s: dec.s };
    } else {
      const s = dec.s ?? await slope(q);
      if (Math.abs(s) <= -c2 * dphi0) return q;
      if (hi === null && s < 0) {
        lo = { a: alpha, q, s }; // still descending: expand
        alpha *= 2;
        continue;
      }
      if (hi !== null && s * (hi.a - lo.a) >= 0) hi = { a: lo.a, f: lo.q.f, s: lo.s };
      else if (hi === null) hi = { a: lo.a, f: lo.q.f, s: lo.s };
      lo = { a: alpha, q, s };
    }
    // Next trial inside the bracket [lo, hi]: secant on slopes when the slopes have opposite
    // signs, else the minimiser of the quadratic through φ(lo), φ'(lo), φ(hi); safeguarded.
    const da = hi.a - lo.a;
    let next = NaN;
    if (hi.s !== undefined && hi.s * lo.s < 0) next = lo.a - lo.s * da / (hi.s - lo.s);
    else if (Number.isFinite(hi.f)) {
      const denom = 2 * (hi.f - lo.q.f - lo.s * da);
      if (denom > 0) next = lo.a - lo.s * da * da / denom;
    }
    const lower = Math.min(lo.a, hi.a), upper = Math.max(lo.a, hi.a), w = upper - lower;
    if (w <= 1e-12 * upper) break;
    if (!(next > lower + 0.1 * w && next < upper - 0.1 * w)) next = (lo.a + hi.a) / 2;
    alpha = next;
  }
  // No strong-Wolfe point: keep the best acceptable step, if any.
  return lo.a > 0 ? lo.q : null;
}

/**
 * argmin_u (γ/2)‖A(u) − y‖² + ½‖u − z‖² for a differentiable (possibly nonlinear) operator, by
 * L-BFGS started at z. See {@link nonlinearProxL2Solve} for the solve report.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nonlinearProxL2 } from "./nonlinear_prox.ts";
 * // A(u) = tanh(u) elementwise.
 * const op = {
 *   inputShape: [1, 1, 1, 2],
 *   forward: (x: { data: Float32Array; shape: number[] }) =>
 *     Promise.resolve({ data: x.data.map(Math.tanh), shape: x.shape }),
 *   vjp: (x: { data: Float32Array; shape: number[] }, g: { data: Float32Array; shape: number[] }) =>
 *     Promise.resolve({ data: x.data.map((v, i) => g.data[i] / Math.cosh(v) ** 2), shape: x.shape }),
 * };
 * const z = { data: new Float32Array([0.5, -1]), shape: [1, 1, 1, 2] };
 * const y = { data: new Float32Array([0.2, 0.3]), shape: [1, 1, 1, 2] };
 * const u = await nonlinearProxL2(op, z, y, 1, { tol: 1e-7 });
 * assert.ok(u.data.length === 2);
 * ```
 */
export async function nonlinearProxL2(
  op: DifferentiableMap,
  z: Tensor,
  y: Tensor,
  gamma: number,
  options: NonlinearProxOptions = {},
): Promise<Tensor> {
  return (await nonlinearProxL2Solve(op, z, y, gamma, options)).u;
}
