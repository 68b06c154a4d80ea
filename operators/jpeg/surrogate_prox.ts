/**
 * The least-squares prox of the smooth JPEG surrogate, the contract's own problem
 *
 *   argmin_u Φ(u),   Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²,
 *
 * kept as `data_term=surrogate` (the default is the bin prox of `bin_prox.ts`). Φ is a staircase in
 * every DCT coefficient: a stationary point near z. It cannot leave the plateaus of the rounding
 * (S' ≈ 0 there, see the issue-15 note), so it does not make an image data-consistent.
 *
 * Solver: truncated Newton–CG of `core/linalg/nonlinear_prox.ts` on the operator's own Hessian
 * model ({@link hessianImage}) with the per-coefficient preconditioner of `precondition.ts`, after a
 * continuation in `softness` ({@link softnessSchedule}).
 *
 * Float32 floor: where a stationary point puts a coefficient inside a rounding transition, ∇²Φ
 * reaches γ(Q/τ)² ≈ 10⁵ at γ = 10, q = 50. One float32 ulp of u then moves ∇Φ by up to ~4e-4·‖z‖,
 * so the contract's 1e-4 optimality residual is not always representable in float32 for γ = 10
 * (white-noise test images, mid qualities); the solver stops at that floor with the best point.
 *
 * @module
 */
import type { ProxOptions } from "../../core/contracts.ts";
import { assertShape, type Tensor } from "../../core/tensor.ts";
import { nonlinearProxL2Solve, type SecondOrderModel } from "../../core/linalg/nonlinear_prox.ts";
import { type Geometry, PLANE_WEIGHT } from "./colour.ts";
import { codedSize } from "./linear.ts";
import {
  decoderJvp,
  decoderVjp,
  encoderLinear,
  encoderLinearT,
  type JpegModel,
  slopes,
  type Trace,
} from "./model.ts";
import type { Quantiser } from "./quantise.ts";
import { woodburyPreconditioner } from "./precondition.ts";

/**
 * A symmetric positive semi-definite model of the Hessian of Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²
 * at the traced point, applied to v:
 *
 *   H v = v + Eᵀ [γ S' D_Jᵀ D_J S' + γ |e ⊙ S''| / Q] E v,
 *
 * with E the encoder's linear part, D_J the decoder Jacobian (clamps included), S', S'' the soft
 * rounding's derivatives at c/Q and e = D_Jᵀ (A(u) − y). It is the exact Hessian except that the
 * second-order term γ e S''/Q (diagonal in the coefficients) enters with its magnitude, and the
 * clamps' second derivatives are dropped ("saddle-free" Newton; Dauphin et al. 2014).
 */
export function hessianImage(
  t: Trace,
  g: Geometry,
  qz: Quantiser,
  gamma: number,
  e: Float64Array[],
): (v: Float64Array) => Float64Array {
  const s1 = slopes(t, g, qz);
  const s2 = t.u.map((u, k) => {
    const out = new Float64Array(u.length);
    const round = qz.round[k === 0 ? 0 : 1], q = qz.q[k === 0 ? 0 : 1];
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        const idx = i * pw + j, pos = (i & 7) * 8 + (j & 7);
        out[idx] = gamma * Math.abs(e[k][idx] * round[pos].second(u[idx])) / q[pos];
      }
    }
    return out;
  });
  return (v) => {
    const c = encoderLinear(v, g);
    const sc = c.map((ck, k) => ck.map((x, i) => x * s1[k][i]));
    const jv = decoderJvp(sc, t, g, qz);
    const back = decoderVjp(jv, t, g, qz);
    const m = back.map((bk, k) => bk.map((x, i) => gamma * x * s1[k][i] + s2[k][i] * c[k][i]));
    const hv = encoderLinearT(m, g);
    for (let i = 0; i < hv.length; i++) hv[i] += v[i];
    return hv;
  };
}

/**
 * The preconditioner of Φ at the traced point: the Woodbury approximation of `precondition.ts` with
 * the per-coefficient stiffness
 *
 *   m'_k = γ (S'(u_k)² + f |e_k S''(u_k)| / (Q_k g_p)),   e = (∂A/∂ĉ)ᵀ (A(u) − y),
 *
 * (Gauss–Newton term plus the magnitude of the second-order term, f = 1, or ¼ for 4:2:0 chroma;
 * taking |·| keeps P positive definite, as in "saddle-free" Newton). The second-order term caps the
 * step of a coefficient deep in a rounding transition to about the dither scale, a per-coefficient
 * trust region.
 */
function preconditionerImage(
  t: Trace,
  g: Geometry,
  qz: Quantiser,
  gamma: number,
  e: Float64Array[],
): (v: Float64Array) => Float64Array {
  const stiffness = t.u.map((u, k) => {
    const round = qz.round[k === 0 ? 0 : 1], q = qz.q[k === 0 ? 0 : 1];
    const f = k > 0 && g.sub ? 0.25 : 1, gp = PLANE_WEIGHT[k] / (255 * 255);
    const [ph, pw] = codedSize(g, k);
    const out = new Float64Array(u.length), ek = e[k];
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        const idx = i * pw + j, pos = (i & 7) * 8 + (j & 7), r = round[pos];
        const s1 = r.derivative(u[idx]);
        out[idx] = gamma * (s1 * s1 + f * Math.abs(ek[idx] * r.second(u[idx])) / (q[pos] * gp));
      }
    }
    return out;
  });
  return woodburyPreconditioner(g, stiffness);
}

/**
 * At u, for Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²: `hessian`, a positive definite model of ∇²Φ(u)
 * (exact up to the sign of the diagonal second-order term), and `preconditioner`, a cheap positive
 * definite approximation of its inverse. Both act on flat [N,3,H,W] vectors.
 */
export function surrogateProxModel(
  model: JpegModel,
  u: Tensor,
  y: Tensor,
  gamma: number,
): SecondOrderModel {
  assertShape(u, model.inputShape, "jpeg: u");
  assertShape(y, model.inputShape, "jpeg: y");
  const { out, traces } = model.evaluate(u), per = model.per, geo = model.geo, qz = model.qz;
  const parts = traces.map((t, b) => {
    const r = new Float64Array(per);
    for (let i = 0; i < per; i++) r[i] = out[b * per + i] - y.data[b * per + i];
    const e = decoderVjp(r, t, geo, qz);
    return {
      hessian: hessianImage(t, geo, qz, gamma, e),
      preconditioner: preconditionerImage(t, geo, qz, gamma, e),
    };
  });
  const batched =
    (f: (p: (typeof parts)[number]) => (v: Float64Array) => Float64Array) => (v: Float64Array) => {
      const res = new Float64Array(v.length);
      parts.forEach((p, b) => res.set(f(p)(v.subarray(b * per, (b + 1) * per)), b * per));
      return res;
    };
  return {
    hessian: batched((p) => p.hessian),
    preconditioner: batched((p) => p.preconditioner),
  };
}

/**
 * Softness schedule of the prox's continuation ("graduated non-convexity"): start where the soft
 * rounding of the finest quantisation step is nearly the identity (softness ≈ Q_min), but at most
 * 8× the target (so at most four stages; at q = 10 starting from Q_min = 80 cost twice the time on
 * natural images for no gain), and halve down to the target. Each stage warm-starts the next; the
 * last stage solves the operator's own problem.
 */
export function softnessSchedule(target: number, qz: Quantiser): number[] {
  const qmin = Math.min(...qz.q[0], ...qz.q[1]);
  const out: number[] = [];
  for (let s = Math.min(Math.max(qmin, target), 8 * target); s > 1.5 * target; s /= 2) out.push(s);
  out.push(target);
  return out;
}

/** Default iteration budget and tolerance of the surrogate prox. */
export const JPEG_SURROGATE_PROX_DEFAULTS = { maxIter: 30, tol: 1e-4, maxCg: 20 } as const;

/**
 * argmin_u (γ/2)‖A(u) − y‖² + ½‖u − z‖² for the surrogate A of `model` at softness `softness`:
 * truncated Newton–CG after a continuation in softness (each earlier stage gets a quarter of the
 * iteration budget, at most 50, and the tolerance max(10·tol, 1e-3)); `stageModel(s)` gives the
 * model at softness s. Defaults {@link JPEG_SURROGATE_PROX_DEFAULTS}.
 */
export async function surrogateProxL2(
  stageModel: (softness: number) => JpegModel,
  softness: number,
  z: Tensor,
  y: Tensor,
  gamma: number,
  opts: ProxOptions = {},
): Promise<Tensor> {
  const maxIter = opts.maxIter ?? JPEG_SURROGATE_PROX_DEFAULTS.maxIter;
  const tol = opts.tol ?? JPEG_SURROGATE_PROX_DEFAULTS.tol;
  const schedule = softnessSchedule(softness, stageModel(softness).qz);
  let init = z;
  for (const [k, s] of schedule.entries()) {
    const m = stageModel(s), last = k === schedule.length - 1;
    const r = await nonlinearProxL2Solve(m, z, y, gamma, {
      maxIter: last ? maxIter : Math.min(50, Math.ceil(maxIter / 4)),
      tol: last ? tol : Math.max(10 * tol, 1e-3),
      maxCg: JPEG_SURROGATE_PROX_DEFAULTS.maxCg,
      init,
      model: (u) => Promise.resolve(surrogateProxModel(m, u, y, gamma)),
    });
    init = r.u;
  }
  return init;
}
