/**
 * Multi-node patterns differentiated as units (attention core, SiLU, Erf-GELU): gradients against
 * finite differences, and the patterns are recognised (and not recognised when an interior
 * tensor is used elsewhere or a mask carries a gradient).
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { checkGradient, checkOp, type FloatName } from "./onnx_vjp_harness.ts";

/** Attention O = softmax(scale(Q Kᵀ) + mask) V with heads; scale as Mul, Div or absent. */
function attention(
  kind: "mul" | "mul-left" | "div" | "none",
  withMask: boolean,
  maskActive = false,
) {
  return (g: GraphBuilder, t: FloatName) => {
    const [b, h, tq, tk, d] = [1, 2, 3, 4, 5];
    const q = g.input("q", t, [b, h, tq, d]);
    const k = g.input("k", t, [b, h, tk, d]);
    const v = g.input("v", t, [b, h, tk, d]);
    let s = g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]);
    if (kind === "mul") s = g.op("Mul", [s, g.initializer("c", t, [], [0.4])]);
    if (kind === "mul-left") s = g.op("Mul", [g.initializer("c", t, [], [0.4]), s]);
    if (kind === "div") s = g.op("Div", [s, g.initializer("c", t, [], [2.5])]);
    const inputs = [
      { name: "q", dims: [b, h, tq, d] },
      { name: "k", dims: [b, h, tk, d] },
      { name: "v", dims: [b, h, tk, d] },
    ];
    if (withMask) {
      const m = maskActive ? g.input("m", t, [tq, tk]) : g.initializer(
        "m",
        t,
        [tq, tk],
        Array.from({ length: tq * tk }, (_, i) => (i % 5 === 4 ? -3 : 0.2 * i)),
      );
      if (maskActive) inputs.push({ name: "m", dims: [tq, tk] });
      s = g.op("Add", [m, s]);
    }
    const p = g.op("Softmax", [s], { axis: -1 });
    g.output(g.op("MatMul", [p, v]), "o", t);
    return { inputs, outputs: ["o"] };
  };
}

Deno.test("unit vjp.Attention: scale Mul / Div / none, with and without a constant mask (float64)", async () => {
  for (const kind of ["mul", "mul-left", "div", "none"] as const) {
    for (const withMask of [false, true]) {
      const rep = await checkOp(`attention-${kind}-${withMask}`, attention(kind, withMask));
      assert.equal(rep.dtype, "float64");
    }
  }
});

Deno.test("unit vjp.Attention: K and V shared by all heads (broadcast over the head axis)", async () => {
  const build = (g: GraphBuilder, t: FloatName) => {
    const q = g.input("q", t, [1, 2, 3, 5]);
    const k = g.input("k", t, [1, 4, 5]);
    const v = g.input("v", t, [1, 4, 5]);
    const s = g.op("Mul", [
      g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 2, 1] })]),
      g.initializer("c", t, [], [0.4]),
    ]);
    g.output(g.op("MatMul", [g.op("Softmax", [s], { axis: -1 }), v]), "o", t);
    return {
      inputs: [
        { name: "q", dims: [1, 2, 3, 5] },
        { name: "k", dims: [1, 4, 5] },
        { name: "v", dims: [1, 4, 5] },
      ],
      outputs: ["o"],
    };
  };
  assert.equal((await checkOp("attention-shared-kv", build)).dtype, "float64");
  const g = new GraphBuilder("att-shared", 17);
  build(g, "float64");
  const r = await vjpTransform(g.toBytes(), ["o"], ["q", "k", "v"]);
  assert.equal(r.stats.units["vjp.Attention"], 1);
});

Deno.test("unit vjp.Attention: recognised; not used when the mask needs a gradient", async () => {
  const build = (maskActive: boolean) => {
    const g = new GraphBuilder("att", 17);
    attention("mul", true, maskActive)(g, "float64");
    return g.toBytes();
  };
  const a = await vjpTransform(build(false), ["o"], ["q", "k", "v"]);
  assert.equal(a.stats.units["vjp.Attention"], 1);
  const left = new GraphBuilder("att-left", 17);
  attention("mul-left", false)(left, "float64");
  assert.equal((await vjpTransform(left.toBytes(), ["o"], ["q"])).stats.units["vjp.Attention"], 1);
  const b = await vjpTransform(build(true), ["o"], ["q", "k", "v", "m"]);
  assert.equal(b.stats.units["vjp.Attention"] ?? 0, 0);
  await checkGradient(
    "attention-mask-active",
    "float64",
    (g, t) => attention("mul", true, true)(g, t),
  );
});

Deno.test("unit vjp.Silu and vjp.Gelu: gradients; not fused when an interior tensor is an output", async () => {
  // float32: ORT fuses x·σ(x) into com.microsoft.QuickGelu, which has no double kernel
  await checkGradient("silu", "float32", (g, t) => {
    const x = g.input("x", t, [2, 3, 4]);
    g.output(g.op("Mul", [g.op("Sigmoid", [x]), x]), "y", t);
    return { inputs: [{ name: "x", dims: [2, 3, 4] }], outputs: ["y"] };
  });
  const gelu = (g: GraphBuilder, t: FloatName, exposeErf = false) => {
    const x = g.input("x", t, [3, 5]);
    const e = g.op("Erf", [g.op("Div", [x, g.initializer("s2", t, [], [Math.SQRT2])])]);
    const m = g.op("Mul", [x, g.op("Add", [e, g.initializer("one", t, [], [1])])]);
    g.output(g.op("Mul", [m, g.initializer("half", t, [], [0.5])]), "y", t);
    const outputs = ["y"];
    if (exposeErf) {
      g.output(e, "erf_out", t);
      outputs.push("erf_out");
    }
    return { inputs: [{ name: "x", dims: [3, 5] }], outputs };
  };
  await checkOp("gelu", (g, t) => gelu(g, t));
  await checkOp("gelu-exposed", (g, t) => gelu(g, t, true));
  const g1 = new GraphBuilder("g1");
  gelu(g1, "float32");
  assert.equal((await vjpTransform(g1.toBytes(), ["y"], ["x"])).stats.units["vjp.Gelu"], 1);
  const g2 = new GraphBuilder("g2");
  gelu(g2, "float32", true);
  assert.equal(
    (await vjpTransform(g2.toBytes(), ["y", "erf_out"], ["x"])).stats.units["vjp.Gelu"] ?? 0,
    0,
  );
});
