/**
 * Shapes for the VJP transform: static inference through integer shape plumbing (values of
 * Shape/Gather/Concat/Range… feeding Reshape), the probe fallback for what static inference cannot
 * size, symbolic batch dims, and a large graph (thousands of nodes).
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { inferShapes, tensorInfo } from "../core/onnx/vjp/shapes.ts";
import { decodeModel } from "../core/onnx/proto.ts";
import { topoSort } from "../core/onnx/vjp/graph.ts";
import { checkBuilt, checkGradient, SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";
import { chainedSdBlocks } from "../core/onnx/vjp/fixtures.ts";

/** A torch-style dynamic reshape: target dims computed from Shape(x) inside the graph. */
function dynamicReshape(g: GraphBuilder, t: "float32" | "float64", batch: number | string) {
  const x = g.input("x", t, [batch, 6, 4]);
  const shp = g.op("Shape", [x]);
  const b = g.op("Gather", [shp, g.constI("i0", [0], [])], { axis: 0 });
  const c = g.op("Gather", [shp, g.constI("i1", [1], [])], { axis: 0 });
  const half = g.op("Div", [c, g.constI("two", [2], [])]);
  const target = g.op("Concat", [
    g.op("Unsqueeze", [b, g.constI("a0", [0])]),
    g.op("Unsqueeze", [half, g.constI("a1", [0])]),
    g.constI("m1", [-1]),
  ], { axis: 0 });
  const r = g.op("Reshape", [x, target]);
  // scale computed from a shape value: 1/√(last dim) as in attention exports
  const last = g.op("Cast", [
    g.op("Gather", [g.op("Shape", [r]), g.constI("i2", [2], [])], { axis: 0 }),
  ], {
    to: t === "float64" ? 11 : 1,
  });
  const sc = g.op("Div", [g.initializer("one", t, [], [1]), g.op("Sqrt", [last])]);
  g.output(g.op("Mul", [g.op("Mul", [r, r]), sc]), "y", t);
}

Deno.test("static inference follows integer shape plumbing (Shape → Gather → Div → Concat → Reshape)", async () => {
  const g = new GraphBuilder("dyn");
  dynamicReshape(g, "float64", 2);
  const m = decodeModel(g.toBytes());
  const seed = new Map([["x", { dtype: 11, dims: [2, 6, 4] }]]);
  for (const t of m.graph!.initializer!) seed.set(t.name!, tensorInfo(t));
  const nodes = topoSort(m.graph!.node!, seed.keys());
  const { info, failures } = inferShapes(nodes, 17, seed);
  assert.deepEqual(failures, []);
  const reshape = nodes.find((n) => n.opType === "Reshape")!;
  assert.deepEqual(info.get(reshape.output![0])!.dims, [2, 3, 8]);
  const vg = await vjpTransform(g.toBytes(), ["y"], ["x"]);
  assert.equal(vg.stats.shapeSource, "static");
  await checkGradient("dynamic-reshape", "float64", (gb, t) => {
    dynamicReshape(gb, t, 2);
    return { inputs: [{ name: "x", dims: [2, 6, 4] }], outputs: ["y"] };
  });
});

Deno.test("symbolic batch dim: transformed for batch 1 (inputs get concrete dims)", async () => {
  const g = new GraphBuilder("dyn");
  dynamicReshape(g, "float32", "batch");
  const vg = await vjpTransform(g.toBytes(), ["y"], ["x"]);
  const dims = vg.model.graph!.input![0].type!.tensorType!.shape!.dim!.map((d) =>
    Number(d.dimValue)
  );
  assert.deepEqual(dims, [1, 6, 4]);
  const vg2 = await vjpTransform(g.toBytes(), ["y"], ["x"], { dims: { batch: 3 } });
  assert.equal(Number(vg2.model.graph!.input![0].type!.tensorType!.shape!.dim![0].dimValue), 3);
});

Deno.test("probe fallback with an op that has no static shape rule", async () => {
  // an op missing from the static shape table (Atan) sits before a Reshape whose target is
  // computed from its Shape
  const build = (g: GraphBuilder, t: "float32" | "float64") => {
    const x = g.input("x", t, [2, 6]);
    const a = g.op("Atan", [x]);
    const target = g.op("Concat", [g.op("Shape", [a]), g.constI("one", [1])], { axis: 0 });
    const r = g.op("Reshape", [x, target]);
    g.output(g.op("Mul", [r, g.op("Reshape", [a, target])]), "y", t);
    return { inputs: [{ name: "x", dims: [2, 6] }], outputs: ["y"] };
  };
  const g = new GraphBuilder("probe");
  build(g, "float32");
  // Atan is differentiated? No: it feeds the product, so the transform must reject it
  await assert.rejects(() => vjpTransform(g.toBytes(), ["y"], ["x"]), /Atan/);
  // differentiate a graph where the Atan branch only feeds shapes
  const h = new GraphBuilder("probe2");
  const x = h.input("x", "float32", [2, 6]);
  const a = h.op("Atan", [x]);
  const target = h.op("Concat", [h.op("Shape", [a]), h.constI("one", [1])], { axis: 0 });
  h.output(
    h.op("Mul", [h.op("Reshape", [x, target]), h.op("Reshape", [x, target])]),
    "y",
    "float32",
  );
  const vg = await vjpTransform(h.toBytes(), ["y"], ["x"]);
  assert.equal(vg.stats.shapeSource, "probe");
  await checkBuilt("probe2", "float32", {
    bytes: h.toBytes(),
    inputs: [{ name: "x", dims: [2, 6] }],
    outputs: ["y"],
  });
  await assert.rejects(
    () => vjpTransform(h.toBytes(), ["y"], ["x"], { shapes: "static" }),
    /static shape inference failed at Atan/,
  );
});

Deno.test("a graph of a few thousand nodes transforms (no probe run) and runs", async () => {
  // 12 SD-block composites chained through the sample input → ~2000 forward nodes
  const cfg = { ...SMALL_SD_BLOCK };
  const big = chainedSdBlocks(12, cfg);
  const vg = await vjpTransform(big, ["out_sample"], ["sample", "encoder_hidden_states"]);
  assert.ok(vg.stats.forwardNodes > 2000, `${vg.stats.forwardNodes} nodes`);
  assert.equal(vg.stats.shapeSource, "static");
  const s = await ort.InferenceSession.create(vg.bytes());
  const n = 4 * 64;
  const r = await s.run({
    sample: new ort.Tensor("float32", new Float32Array(n).fill(0.1), [1, 4, 8, 8]),
    timestep: new ort.Tensor("float32", Float32Array.from([10]), [1]),
    encoder_hidden_states: new ort.Tensor("float32", new Float32Array(60).fill(0.2), [1, 5, 12]),
    "out_sample.cotangent": new ort.Tensor("float32", new Float32Array(n).fill(1), [1, 4, 8, 8]),
  });
  assert.ok((r["sample.grad"].data as Float32Array).every(Number.isFinite));
  await s.release();
});
