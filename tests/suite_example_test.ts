import assert from "node:assert/strict";
import { z } from "zod";
import {
  defineOperator,
  linearOperator,
  proxOf,
  type Tensor,
  tensor,
  testOperator,
  unmetRequirements,
} from "../mod.ts";
import { gainPlugin } from "../examples/gain_plugin.ts";
import { quantisePlugin } from "./fixtures/nondiff_plugins.ts";

Deno.test("example third-party gain plugin passes the operator contract suite", async () => {
  const r = await testOperator(gainPlugin, { strength: 0.5 });
  assert.deepEqual(r.skipped, []);
  console.log(JSON.stringify(r));
});

// A third-party operator in a few lines: the horizontal two-tap average y_j = (x_j + x_{j+1})/2
// (circular). Only A and Aᵀ are given: linearOperator derives the checks, the VJP and a CG prox.
const pairAverage = defineOperator({
  kind: "operator",
  name: "pair-average",
  description: "average of each pixel and its right neighbour (circular)",
  options: z.strictObject({}),
  create: (_o, { shape }) => {
    const w = shape[3];
    const shifted = (t: Tensor, s: number) =>
      tensor(shape, t.data.map((v, k) => (v + t.data[k - (k % w) + ((k % w) + s + w) % w]) / 2));
    return linearOperator({
      name: "pair-average",
      inputShape: shape,
      outputShape: shape,
      forward: (x) => shifted(x, 1),
      adjoint: (y) => shifted(y, -1),
    });
  },
});

Deno.test("linearOperator: a tiny third-party operator passes the exported contract suite", async () => {
  const r = await testOperator(pairAverage, {});
  assert.ok(r.adjointError! < 1e-6 && r.vjpError < 1e-3 && r.proxOptimality < 1e-4);
  assert.deepEqual(r.skipped, []);
});

Deno.test("linearOperator: checks shapes and γ, binds the prox to y (Aᵀy once), honours out", async () => {
  const shape = [1, 1, 2, 3];
  let adjoints = 0;
  const op = linearOperator({
    name: "scale",
    inputShape: shape,
    outputShape: shape,
    forward: (x) => tensor(shape, x.data.map((v) => 3 * v)),
    adjoint: (y) => (adjoints++, tensor(shape, y.data.map((v) => 3 * v))),
  });
  assert.deepEqual(op.capabilities, { linear: true, closedFormProx: false, differentiable: true });
  await assert.rejects(op.forward(tensor([1, 1, 3, 2])), /scale: x/);
  await assert.rejects(op.adjoint!(tensor([1, 1, 3, 2])), /scale: y/);
  await assert.rejects(op.vjp(tensor([1, 1, 3, 2]), tensor(shape)), /scale: x/);
  const z = tensor(shape, new Float32Array([1, 2, 3, 4, 5, 6])), y = tensor(shape);
  await assert.rejects(op.proxL2(z, y, Number.NaN), /γ must be finite/);
  await assert.rejects(op.proxL2(z, y, 1, { out: tensor([6]) }), /scale: out/);
  assert.throws(() => op.prox!(tensor([6])), /scale: y/);
  const prox = proxOf(op, y);
  assert.equal(prox.method, "cg");
  adjoints = 0;
  const out = tensor(shape);
  const u = await prox.apply(z, 1, { out, tol: 1e-12 }); // (9 + 1) u = z
  assert.equal(u, out);
  assert.ok(u.data.every((v, i) => Math.abs(v - z.data[i] / 10) < 1e-6));
  adjoints = 0;
  await prox.apply(z, 2);
  const cgAdjoints = adjoints;
  adjoints = 0;
  await op.proxL2(z, y, 2);
  assert.equal(adjoints, cgAdjoints + 1, "proxL2 computes Aᵀy per call, the bound prox once");
});

// A non-differentiable operator (y = round(8x)/8, tests/fixtures/nondiff_plugins.ts) declares
// differentiable: false, so the suite skips the VJP checks, and a solver that needs gradients
// refuses it (and, end to end through solve: tests/solve_prior_test.ts).
Deno.test("differentiable: false — the suite skips the VJP checks; gradient solvers refuse it", async () => {
  const r = await testOperator(quantisePlugin, {});
  assert.ok(r.skipped.some((s) => s.startsWith("vjp")), JSON.stringify(r.skipped));
  const op = {
    name: "quantise",
    capabilities: { linear: false, closedFormProx: false, differentiable: false },
  };
  const why = unmetRequirements({ operator: { differentiable: true } }, op);
  assert.match(why ?? "", /operator "quantise" is not differentiable/);
});
