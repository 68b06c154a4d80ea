/**
 * A linear operator from its forward map and adjoint (and, when it has one, its closed-form prox):
 * {@link linearOperator} supplies the rest of the {@link ForwardOperator} contract — shape checks
 * on every input (one error naming the operator and the argument), `vjp(x, g) = Aᵀg`, the γ check
 * of the prox, the CG prox on (γAᵀA + I)u = γAᵀy + z when there is no closed form, the `out` option,
 * and the prox bound to a measurement (which computes Aᵀy once for CG). deepinv's
 * `LinearPhysics` plays the same role.
 *
 * @module
 */
import type {
  ForwardOperator,
  OnnxExportOptions,
  OnnxModel,
  Prox,
  ProxOptions,
} from "./contracts.ts";
import { cgProxFromAdjointY } from "./linalg/cg.ts";
import { assertShape, type Tensor } from "./tensor.ts";

/** What a linear operator must (and may) define; everything else is derived. */
export interface LinearOperatorDefinition {
  /** Plugin name, e.g. "blur" (used in messages). */
  name: string;
  /** The options it was created with, for reports. */
  options?: Readonly<Record<string, unknown>>;
  /** Shape of x. */
  inputShape: readonly number[];
  /** Shape of y = A x. */
  outputShape: readonly number[];
  /** A x (x already checked to have `inputShape`). */
  forward(x: Tensor): Tensor | Promise<Tensor>;
  /** Aᵀ y (y already checked to have `outputShape`). */
  adjoint(y: Tensor): Tensor | Promise<Tensor>;
  /**
   * The exact, direct prox argmin_u (γ/2)‖A u − y‖² + ½‖u − z‖² (z, y, γ ≥ 0 and `options.out`
   * already checked); write into `options.out` when given, set `options.report.residual` when it
   * is free. Without it the prox is CG.
   */
  prox?(z: Tensor, y: Tensor, gamma: number, options: ProxOptions): Tensor | Promise<Tensor>;
  /** A cheap image-shaped estimate from y (y already checked). */
  pseudoInverse?(y: Tensor): Tensor | Promise<Tensor>;
  /** See {@link ForwardOperator.projectMeasurement} (y already checked). */
  projectMeasurement?(y: Tensor): Tensor | Promise<Tensor>;
  /** See {@link ForwardOperator.artifacts}. */
  artifacts?(): Record<string, Tensor>;
  /** See {@link ForwardOperator.exportOnnx}. */
  exportOnnx?(options?: OnnxExportOptions): OnnxModel;
}

/**
 * A {@link ForwardOperator} from a {@link LinearOperatorDefinition}; `extra` fields (e.g. a blur's
 * kernel) are copied onto it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearOperator } from "./linear_operator.ts";
 * import { tensor } from "./tensor.ts";
 * // y = 2x on 1×1×2×2 images, CG prox (no closed form given).
 * const shape = [1, 1, 2, 2];
 * const twice = (t: { data: Float32Array }) => tensor(shape, t.data.map((v) => 2 * v));
 * const op = linearOperator({ name: "twice", inputShape: shape, outputShape: shape, forward: twice, adjoint: twice });
 * assert.equal(op.capabilities.closedFormProx, false);
 * const z = tensor(shape, new Float32Array([1, 2, 3, 4])), y = tensor(shape);
 * const u = await op.proxL2(z, y, 1); // (4 + 1) u = z
 * assert.ok(u.data.every((v, i) => Math.abs(v - z.data[i] / 5) < 1e-6));
 * await assert.rejects(op.forward(tensor([1, 1, 2, 3])), /twice: x/);
 * await assert.rejects(op.proxL2(z, y, -1), /γ/);
 * ```
 */
export function linearOperator<E extends object = Record<never, never>>(
  def: LinearOperatorDefinition,
  extra?: E,
): ForwardOperator & E {
  const { name } = def;
  const inShape = [...def.inputShape], outShape = [...def.outputShape];
  const checkX = (x: Tensor) => assertShape(x, inShape, `${name}: x`);
  const checkY = (y: Tensor) => assertShape(y, outShape, `${name}: y`);
  // Every method is async so that a shape error rejects instead of throwing.
  const forward = async (x: Tensor) => (checkX(x), await def.forward(x));
  const adjoint = async (y: Tensor) => (checkY(y), await def.adjoint(y));
  const checkProx = (z: Tensor, gamma: number, options: ProxOptions) => {
    assertShape(z, inShape, `${name}: z`);
    if (!(gamma >= 0) || !Number.isFinite(gamma)) {
      throw new RangeError(`${name}: prox step γ must be finite and ≥ 0, got ${gamma}`);
    }
    if (options.out) assertShape(options.out, inShape, `${name}: out`);
  };
  const cgOp = { forward, adjoint, inputShape: inShape };
  const solve = async (
    z: Tensor,
    y: Tensor,
    aty: () => Promise<Tensor>,
    g: number,
    o: ProxOptions,
  ) => {
    if (!def.prox) return await cgProxFromAdjointY(cgOp, z, await aty(), g, o);
    const u = await def.prox(z, y, g, o);
    if (!o.out || u === o.out) return u;
    o.out.data.set(u.data); // a closed form that ignored \`out\`
    return o.out;
  };
  const method = def.prox ? "closed-form" : "cg";
  const op: ForwardOperator = {
    name,
    options: def.options ?? {},
    inputShape: inShape,
    outputShape: outShape,
    capabilities: { linear: true, closedFormProx: def.prox !== undefined, differentiable: true },
    forward,
    adjoint,
    async vjp(x: Tensor, g: Tensor) {
      checkX(x);
      return await adjoint(g);
    },
    async proxL2(z: Tensor, y: Tensor, gamma: number, options: ProxOptions = {}) {
      checkProx(z, gamma, options);
      checkY(y);
      return await solve(z, y, () => adjoint(y), gamma, options);
    },
    prox(y: Tensor): Prox {
      checkY(y);
      let aty: Promise<Tensor> | undefined; // Aᵀy, once per measurement (CG only)
      return {
        method,
        y,
        async apply(z: Tensor, gamma: number, options: ProxOptions = {}) {
          checkProx(z, gamma, options);
          return await solve(z, y, () => (aty ??= adjoint(y)), gamma, options);
        },
      };
    },
  };
  const { pseudoInverse, projectMeasurement } = def;
  if (pseudoInverse) op.pseudoInverse = async (y) => (checkY(y), await pseudoInverse(y));
  if (projectMeasurement) {
    op.projectMeasurement = async (y) => (checkY(y), await projectMeasurement(y));
  }
  if (def.artifacts) op.artifacts = def.artifacts;
  if (def.exportOnnx) op.exportOnnx = def.exportOnnx;
  return Object.assign(op, extra);
}
