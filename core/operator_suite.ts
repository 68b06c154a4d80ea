/**
 * The operator contract suite: the properties every ForwardOperator must have, checked numerically.
 * Third parties run it on their own plugins exactly as our tests run it on the built-ins:
 *
 * - adjointness (linear): |<Ax, y> − <x, Aᵀy>| / (‖Ax‖‖y‖) < 1e-5;
 * - VJP against central finite differences of x ↦ <g, A(x)> (< 1e-3 relative);
 * - prox optimality: ‖γ Jᵀ(A u − y) + u − z‖ / ‖z‖ < 1e-4 for several γ — or, for an operator
 *   that declares another prox data term D_y (`proxDataTerm`), ‖γ·½∇D_y(u) + u − z‖ / ‖z‖, after
 *   checking ½∇D_y against central finite differences of D_y (< 1e-3 relative);
 * - closed-form prox equals the CG prox (< 1e-4 relative) when the operator claims a closed form;
 * - determinism: the same seed gives bit-identical operators;
 * - shapes, finiteness, and rejection of wrongly shaped inputs.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ForwardOperator } from "./contracts.ts";
import { createOperator, type OperatorPlugin, PluginRegistry } from "./registry.ts";
import { streams } from "./rng.ts";
import { allFinite, dot, norm, numel, sameShape, type Tensor, tensor } from "./tensor.ts";
import { cgProxL2 } from "./linalg/cg.ts";
import { formatSpec } from "./spec.ts";
import { onnxBackedOperator } from "./onnx/exported_operator.ts";
import { proxOf } from "./prox.ts";

/** Tolerances of the suite (defaults are the project's acceptance thresholds). */
export interface SuiteTolerances {
  /** Relative adjointness error. */
  adjoint: number;
  /** Relative VJP-vs-finite-difference error. */
  vjp: number;
  /** Relative prox optimality residual. */
  proxOptimality: number;
  /** Relative distance between the closed-form and CG prox. */
  proxVsCg: number;
}

/** Options of {@link testOperator}. */
export interface SuiteOptions {
  /** Image shape [1,C,H,W]; default [1,3,32,40]. */
  shape?: number[];
  /** Seed for the operator and the random test vectors. Default 0. */
  seed?: number;
  /** γ values for the prox checks. Default [0.1, 1, 10]. */
  gammas?: number[];
  /** Finite-difference step (on the [0,1] scale). Default 1e-3. */
  fdStep?: number;
  /** Override tolerances. */
  tolerances?: Partial<SuiteTolerances>;
  /** Options for iterative prox solves inside the suite (tight by default). */
  proxOptions?: { maxIter?: number; tol?: number };
  /**
   * "onnx": check the operator's exported ONNX graph instead of its TypeScript forward — forward
   * from `exportOnnx` and VJP/adjoint from the VJP transform of that graph, run by ONNX Runtime
   * (see `core/onnx/exported_operator.ts`); the prox stays the operator's own, so the prox checks
   * also prove that it solves the exported map's problem.
   */
  through?: "typescript" | "onnx";
}

/** What the suite measured. */
export interface SuiteReport {
  /** Spec of the operator tested. */
  spec: string;
  /** Relative adjointness error (linear operators). */
  adjointError?: number;
  /** Worst relative VJP error over the directions tried. */
  vjpError: number;
  /** Worst relative prox optimality residual over γ. */
  proxOptimality: number;
  /** Name of the declared prox data term, when it is not ‖A u − y‖². */
  proxDataTerm?: string;
  /** Relative error of its ½∇D_y against finite differences of D_y. */
  proxDataTermGradientError?: number;
  /** Relative closed-form vs CG difference (closed-form linear operators). */
  proxVsCg?: number;
  /** Checks skipped, with why (e.g. the VJP checks of an operator declared non-differentiable). */
  skipped: string[];
  /** The prox reported ‖A u − y‖ through `ProxOptions.report` (and it matched). */
  reportedResidual?: boolean;
}

const DEFAULT_TOL: SuiteTolerances = {
  adjoint: 1e-5,
  vjp: 1e-3,
  proxOptimality: 1e-4,
  proxVsCg: 1e-4,
};

function uniform(shape: readonly number[], seed: number, name: string, lo = 0, hi = 1): Tensor {
  const r = streams(seed).get("suite").child(name);
  const t = tensor(shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = lo + (hi - lo) * r.uniform();
  return t;
}

function gaussian(shape: readonly number[], seed: number, name: string): Tensor {
  const t = tensor(shape);
  streams(seed).get("suite").child(name).fillNormal(t.data);
  return t;
}

function axpy(a: number, x: Tensor, y: Tensor): Tensor {
  const out = tensor(y.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = a * x.data[i] + y.data[i];
  return out;
}

async function transposeApply(op: ForwardOperator, at: Tensor, r: Tensor): Promise<Tensor> {
  return op.adjoint ? await op.adjoint(r) : await op.vjp(at, r);
}

/** |<Ax, y> − <x, Aᵀy>| / (‖Ax‖‖y‖) for Gaussian x, y (asserted below `s.tol`). */
async function adjointError(
  op: ForwardOperator,
  s: { seed: number; tol: number; label: string },
): Promise<number> {
  const { seed, label } = s;
  const shape = [...op.inputShape];
  assert.ok(op.adjoint, `${label}: linear operator without adjoint`);
  const u = gaussian(shape, seed, "adj-x");
  const v = gaussian(op.outputShape, seed, "adj-y");
  const au = await op.forward(u);
  const atv = await op.adjoint(v);
  assert.ok(sameShape(atv.shape, shape), `${label}: adjoint shape [${atv.shape}]`);
  const err = Math.abs(dot(au, v) - dot(u, atv)) / (norm(au) * norm(v));
  assert.ok(err < s.tol, `${label}: adjointness error ${err.toExponential(2)}`);
  return err;
}

/**
 * The relative optimality residual ‖γ·½∇D_y(u) + u − z‖/‖z‖ of a prox point u, with
 * ½∇D_y = J_Aᵀ(A u − y) unless the operator declares another data term.
 */
async function optimality(
  op: ForwardOperator,
  dt: ForwardOperator["proxDataTerm"],
  z: Tensor,
  y: Tensor,
  u: Tensor,
  gamma: number,
): Promise<number> {
  const jtr = dt
    ? await dt.halfGradient(u, y)
    : await transposeApply(op, u, axpy(-1, y, await op.forward(u)));
  let s = 0;
  for (let i = 0; i < u.data.length; i++) {
    const e = gamma * jtr.data[i] + u.data[i] - z.data[i];
    s += e * e;
  }
  return Math.sqrt(s) / norm(z);
}

/**
 * Worst relative error of Jᵀg against central finite differences of x ↦ <g, A(x)>, along Jᵀg and
 * along a random direction (asserted below `s.tol`).
 */
async function vjpError(
  op: ForwardOperator,
  x: Tensor,
  s: { seed: number; eps: number; tol: number; label: string },
): Promise<number> {
  const shape = [...op.inputShape];
  let worst = 0;
  const g = gaussian(op.outputShape, s.seed, "vjp-g");
  const jtg = await op.vjp(x, g);
  assert.ok(sameShape(jtg.shape, shape), `${s.label}: vjp shape [${jtg.shape}]`);
  assert.ok(allFinite(jtg), `${s.label}: vjp produced a non-finite value`);
  const f = async (t: Tensor) => dot(g, await op.forward(t));
  const directions: [string, Tensor][] = [];
  const jn = norm(jtg);
  if (jn > 0) directions.push(["along Jᵀg", { data: jtg.data.map((v) => v / jn), shape }]);
  const rv = gaussian(shape, s.seed, "vjp-v");
  const rvn = norm(rv);
  directions.push(["random", { data: rv.data.map((v) => v / rvn), shape }]);
  for (const [name, dir] of directions) {
    // Scale the step so that the per-pixel perturbation is about eps.
    const h = s.eps * Math.sqrt(numel(shape));
    const fd = (await f(axpy(h, dir, x)) - await f(axpy(-h, dir, x))) / (2 * h);
    const an = dot(jtg, dir);
    const denom = name === "random" ? jn : Math.max(Math.abs(an), 1e-30);
    const err = Math.abs(fd - an) / denom;
    worst = Math.max(worst, err);
    assert.ok(
      err < s.tol,
      `${s.label}: VJP vs finite differences (${name}) error ${err.toExponential(2)}`,
    );
  }
  return worst;
}

/**
 * Run the contract suite on one plugin with one set of options. Throws an AssertionError that names
 * the property and the measured value when a property fails; returns the measurements otherwise.
 *
 * @example
 * ```ts ignore
 * import { testOperator } from "./operator_suite.ts";
 * import { myPlugin } from "./my_plugin.ts";
 * Deno.test("my operator passes the contract", async () => {
 *   await testOperator(myPlugin, { gain: 0.5 });
 * });
 * ```
 */
export async function testOperator(
  plugin: OperatorPlugin,
  options: Record<string, number | boolean | string> = {},
  suite: SuiteOptions = {},
): Promise<SuiteReport> {
  const shape = suite.shape ?? [1, 3, 32, 40];
  const seed = suite.seed ?? 0;
  const tol = { ...DEFAULT_TOL, ...suite.tolerances };
  const gammas = suite.gammas ?? [0.1, 1, 10];
  const eps = suite.fdStep ?? 1e-3;
  const proxOptions = { maxIter: 2000, tol: 1e-9, ...suite.proxOptions };
  const registry = new PluginRegistry().register(plugin);
  const spec = formatSpec({ name: plugin.name, options });
  const label = `operator ${spec}${suite.through === "onnx" ? " (exported ONNX graph)" : ""}`;

  let op = await createOperator(registry, { name: plugin.name, options }, shape, seed);
  let op2 = await createOperator(registry, { name: plugin.name, options }, shape, seed);
  if (suite.through === "onnx") {
    op = await onnxBackedOperator(op);
    op2 = await onnxBackedOperator(op2);
  }
  assert.ok(
    sameShape(op.inputShape, shape),
    `${label}: inputShape [${op.inputShape}] ≠ [${shape}]`,
  );
  const report: SuiteReport = { spec, vjpError: 0, proxOptimality: 0, skipped: [] };

  // Shapes, finiteness, determinism under seed.
  const x = uniform(shape, seed, "x", 0.15, 0.85);
  const ax = await op.forward(x);
  assert.ok(sameShape(ax.shape, op.outputShape), `${label}: forward shape [${ax.shape}]`);
  assert.ok(allFinite(ax), `${label}: forward produced a non-finite value`);
  const ax2 = await op2.forward(x);
  assert.deepEqual(ax2.data, ax.data, `${label}: same seed gave a different operator`);
  const m = numel(op.outputShape);

  // Wrongly shaped input must be rejected.
  const bad = tensor([shape[0], shape[1], shape[2] + 1, shape[3]]);
  await assert.rejects(
    async () => await op.forward(bad),
    `${label}: forward accepted shape [${bad.shape}]`,
  );

  // Adjointness.
  if (op.capabilities.linear) {
    report.adjointError = await adjointError(op, { seed, tol: tol.adjoint, label });
  }

  // VJP against central finite differences of f(x) = <g, A(x)> (differentiable operators).
  if (op.capabilities.differentiable) {
    report.vjpError = await vjpError(op, x, { seed, eps, tol: tol.vjp, label });
  } else {
    report.skipped.push("vjp: the operator declares differentiable: false");
    await assert.rejects(
      async () => await op.vjp(x, tensor(op.outputShape)),
      `${label}: vjp of an operator declared non-differentiable must throw`,
    );
  }

  // Prox optimality and closed form vs CG.
  const y = axpy(0.02, gaussian(op.outputShape, seed, "prox-n"), ax);
  const z = uniform(shape, seed, "prox-z");
  await assert.rejects(
    async () => await op.proxL2(z, tensor([m + 1]), 1),
    `${label}: proxL2 accepted a wrongly shaped y`,
  );
  const dt = op.proxDataTerm;
  if (dt) {
    // ½∇D_y against central differences of D_y at z (with the suite's step, scaled as for the VJP).
    report.proxDataTerm = dt.name;
    const hg = await dt.halfGradient(z, y);
    assert.ok(sameShape(hg.shape, shape) && allFinite(hg), `${label}: ${dt.name} gradient`);
    const dir = gaussian(shape, seed, "data-term-v"), dn = norm(dir);
    const unit = { data: dir.data.map((v) => v / dn), shape };
    const h = 1e-3 * Math.sqrt(numel(shape));
    const fd = (await dt.value(axpy(h, unit, z), y) - await dt.value(axpy(-h, unit, z), y)) /
      (2 * h);
    const err = Math.abs(fd - 2 * dot(hg, unit)) / Math.max(2 * norm(hg), 1e-30);
    report.proxDataTermGradientError = err;
    assert.ok(
      err < tol.vjp,
      `${label}: ${dt.name} gradient vs finite differences error ${err.toExponential(2)}`,
    );
  }
  // The prox bound to y (what solvers call) must reject a wrongly shaped y and equal proxL2.
  if (op.prox) {
    await assert.rejects(
      async () => await op.prox!(tensor([m + 1])).apply(z, 1),
      `${label}: prox(y) accepted a wrongly shaped y`,
    );
  }
  const bound = proxOf(op, y);
  // Optimality needs Jᵀ(A u − y) or ½∇D_y: not available for a non-differentiable operator.
  const checkable = op.capabilities.linear || op.capabilities.differentiable || dt !== undefined;
  if (!checkable) {
    report.skipped.push("prox optimality: no adjoint, VJP or declared data term to check it with");
  }
  for (const gamma of gammas) {
    const u = await op.proxL2(z, y, gamma, proxOptions);
    const ub = await bound.apply(z, gamma, proxOptions);
    assert.deepEqual(
      ub.data,
      u.data,
      `${label}: the bound prox(y) differs from proxL2 at γ=${gamma}`,
    );
    assert.ok(sameShape(u.shape, shape), `${label}: prox shape [${u.shape}]`);
    assert.ok(allFinite(u), `${label}: prox produced a non-finite value`);
    if (checkable) {
      const opt = await optimality(op, dt, z, y, u, gamma);
      report.proxOptimality = Math.max(report.proxOptimality, opt);
      assert.ok(
        opt < tol.proxOptimality,
        `${label}: prox optimality residual ${opt.toExponential(2)} at γ=${gamma}`,
      );
    }
    if (op.capabilities.closedFormProx && op.capabilities.linear) {
      const ucg = await cgProxL2(op, z, y, gamma, { maxIter: 5000, tol: 1e-10 });
      let d = 0;
      for (let i = 0; i < u.data.length; i++) d += (u.data[i] - ucg.data[i]) ** 2;
      const rel = Math.sqrt(d) / norm(ucg);
      report.proxVsCg = Math.max(report.proxVsCg ?? 0, rel);
      assert.ok(rel < tol.proxVsCg, `${label}: closed-form vs CG prox ${rel.toExponential(2)}`);
    }
    // proxL2Adaptive: gammaOf sees A z, and the result is the prox at the γ it returns.
    if (op.proxL2Adaptive) {
      let seen: Float32Array | undefined;
      const ua = await op.proxL2Adaptive(z, y, (az) => (seen = az.data.slice(), gamma));
      const az = await op.forward(z);
      const e1 = norm(axpy(-1, az, { data: seen!, shape: az.shape })) / Math.max(norm(az), 1e-30);
      const e2 = norm(axpy(-1, u, ua)) / Math.max(norm(u), 1e-30);
      assert.ok(e1 < 1e-6 && e2 < 1e-6, `${label}: proxL2Adaptive: A z ${e1}, prox ${e2}`);
    }
    // ProxOptions.out / report (closed-form proxes; iterative ones would double the suite's
    // cost): with out= the prox gives the same values, and a residual it reports is ‖A u − y‖.
    if (!op.capabilities.closedFormProx) continue;
    const out = tensor(shape), told: { residual?: number } = {};
    const u2 = await op.proxL2(z, y, gamma, { ...proxOptions, out, report: told });
    assert.deepEqual(u2.data, u.data, `${label}: prox with out= differs from the plain call`);
    if (told.residual !== undefined && !dt) {
      const want = norm(axpy(-1, y, await op.forward(u2)));
      const e = Math.abs(told.residual - want) / Math.max(want, 1e-30);
      assert.ok(e < 1e-5, `${label}: reported residual ${told.residual} vs ‖Au − y‖ ${want}`);
      report.reportedResidual = true;
    }
  }
  return report;
}
