/**
 * The prox bound to a measurement: what solvers call. {@link proxOf} returns the operator's own
 * bound prox (`op.prox(y)`) or, for operators that do not hand one out, binds `proxL2` to y.
 *
 * @module
 */
import type { ForwardOperator, Prox, ProxOptions } from "./contracts.ts";
import type { Tensor } from "./tensor.ts";

/**
 * How an operator's prox is computed: "closed-form" (exact and direct), "cg" (linear, iterative)
 * or "iterative" (nonlinear).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { proxMethod } from "./prox.ts";
 * assert.equal(proxMethod({ linear: true, closedFormProx: false, differentiable: true }), "cg");
 * ```
 */
export function proxMethod(c: ForwardOperator["capabilities"]): Prox["method"] {
  return c.closedFormProx ? "closed-form" : c.linear ? "cg" : "iterative";
}

/**
 * The operator's prox bound to y: `op.prox(y)` when the operator hands one out, otherwise
 * `proxL2(·, y, ·)` bound to y.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { proxOf } from "./prox.ts";
 * import type { ForwardOperator } from "./contracts.ts";
 * const shape = [1, 1, 1, 2];
 * const identity = {
 *   capabilities: { linear: true, closedFormProx: true, differentiable: true },
 *   // argmin (γ/2)‖u − y‖² + ½‖u − z‖² = (z + γy)/(1 + γ)
 *   proxL2: (z, y, g) =>
 *     Promise.resolve({ data: z.data.map((v, i) => (v + g * y.data[i]) / (1 + g)), shape }),
 * } as Pick<ForwardOperator, "capabilities" | "proxL2">;
 * const y = { data: new Float32Array([1, 1]), shape };
 * const prox = proxOf(identity, y);
 * assert.equal(prox.method, "closed-form");
 * const u = await prox.apply({ data: new Float32Array([0, 3]), shape }, 1);
 * assert.deepEqual([...u.data], [0.5, 2]);
 * ```
 */
export function proxOf(
  op: Pick<ForwardOperator, "capabilities" | "proxL2" | "prox">,
  y: Tensor,
): Prox {
  if (op.prox) return op.prox(y);
  return {
    method: proxMethod(op.capabilities),
    y,
    apply: (z: Tensor, gamma: number, options?: ProxOptions) => op.proxL2(z, y, gamma, options),
  };
}
