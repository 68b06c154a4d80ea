/**
 * Graph tools used with the VJP transform: cutting a text encoder at its token-embedding lookup
 * (prompt embeddings become an input), exposing intermediate tensors, and the error listing of
 * unsupported ops.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { cutAtEmbedding, exposeIntermediate } from "../core/onnx/graph_tools.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { vjpTransform, VjpUnsupportedError } from "../core/onnx/vjp.ts";
import { clipTextGraph, sdBlockGraph } from "../core/onnx/vjp/fixtures.ts";
import { InputError } from "../core/errors.ts";
import { checkBuilt, SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";

const IDS = [0, 5, 3, 3, 19, 2];
const idsTensor = () => new ort.Tensor("int64", BigInt64Array.from(IDS, BigInt), [1, 6]);

Deno.test("cutAtEmbedding: embeddings become an input; feeding the looked-up embeddings reproduces the outputs", async () => {
  const orig = decodeModel(clipTextGraph());
  const cut = cutAtEmbedding(decodeModel(clipTextGraph()));
  assert.equal(cut.inputName, "inputs_embeds");
  assert.equal(cut.idsInput, "input_ids");
  assert.equal(cut.idsStillUsed, true, "pooler reads ArgMax(input_ids)");
  assert.ok(!cut.model.graph!.initializer!.some((t) => t.name === cut.table), "table dropped");
  const names = cut.model.graph!.input!.map((i) => i.name);
  assert.deepEqual(names, ["input_ids", "inputs_embeds"]);

  const withEmb = exposeIntermediate(orig, cut.lookupOutput, { name: "embeds" });
  const s0 = await ort.InferenceSession.create(encodeModel(withEmb));
  const r0 = await s0.run({ input_ids: idsTensor() });
  assert.deepEqual(r0.embeds.dims, [1, 6, 16]);
  const s1 = await ort.InferenceSession.create(encodeModel(cut.model));
  const r1 = await s1.run({ input_ids: idsTensor(), inputs_embeds: r0.embeds });
  for (const o of ["last_hidden_state", "pooler_output"]) {
    const a = r0[o].data as Float32Array, b = r1[o].data as Float32Array;
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `${o}[${i}]`);
  }
  await s0.release();
  await s1.release();
});

Deno.test("cutAtEmbedding + VJP: ∂(last_hidden_state, pooler_output)/∂inputs_embeds vs FD", async () => {
  const cut = cutAtEmbedding(decodeModel(clipTextGraph()));
  await checkBuilt("clip-cut", "float32", {
    bytes: encodeModel(cut.model),
    inputs: [
      { name: "input_ids", dims: [1, 6], type: "int64", values: () => IDS },
      {
        name: "inputs_embeds",
        dims: [1, 6, 16],
        values: (r, n) => Array.from({ length: n }, () => 0.5 * r.normal()),
      },
    ],
    outputs: ["last_hidden_state", "pooler_output"],
  }, { fd: "polyfit", eps: 1e-2 });
});

Deno.test("cutAtEmbedding: clear errors (no lookup; unknown node name)", () => {
  const g = new GraphBuilder("x");
  const x = g.input("x", "float32", [2]);
  g.output(g.op("Neg", [x]), "y", "float32", [2]);
  assert.throws(() => cutAtEmbedding(decodeModel(g.toBytes())), InputError);
  assert.throws(
    () => cutAtEmbedding(decodeModel(clipTextGraph()), { node: "nope" }),
    /no Gather node named 'nope'/,
  );
  const byName = cutAtEmbedding(decodeModel(clipTextGraph()), {
    node: "token_embedding_lookup",
    inputName: "emb",
  });
  assert.equal(byName.inputName, "emb");
});

Deno.test("exposeIntermediate: a UNet feature map becomes an output and can be differentiated", async () => {
  const cfg = { ...SMALL_SD_BLOCK };
  const m = decodeModel(sdBlockGraph(cfg));
  // the last Resize output (upsampled transformer features)
  const resize = m.graph!.node!.filter((n) => n.opType === "Resize").at(-1)!;
  const exposed = exposeIntermediate(m, resize.output![0], { name: "features" });
  const out = exposed.graph!.output!.find((o) => o.name === "features")!;
  assert.deepEqual(out.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue)), [1, 16, 8, 8]);
  const vg = await vjpTransform(encodeModel(exposed), ["features"], ["sample"]);
  assert.ok(vg.stats.backwardNodes > 50);
  assert.throws(() => exposeIntermediate(m, "no_such_tensor"), /not produced/);
  assert.throws(
    () => exposeIntermediate(m, resize.output![0], { name: "out_sample" }),
    /already a graph output/,
  );
});

Deno.test("vjp: unsupported ops are listed all at once, naming op and node; other input errors", async () => {
  const g = new GraphBuilder("bad");
  const x = g.input("x", "float32", [4]);
  const a = g.op("Atan", [x], {}, "a1");
  const b = g.op("Acos", [g.op("Tanh", [a])]);
  const c = g.op("Atan", [b]);
  g.output(c, "y", "float32", [4]);
  const bytes = g.toBytes();
  await assert.rejects(() => vjpTransform(bytes, ["y"], ["x"]), (e: Error) => {
    assert.ok(e instanceof VjpUnsupportedError);
    assert.match(e.message, /Atan, Acos|Acos, Atan/);
    assert.match(e.message, /node_Atan/);
    assert.equal((e as VjpUnsupportedError).nodes.length, 3);
    return true;
  });
  await assert.rejects(() => vjpTransform(bytes, ["nope"], ["x"]), /not a graph output/);
  await assert.rejects(() => vjpTransform(bytes, ["y"], ["nope"]), /not a graph input/);
  const s = new GraphBuilder("sym");
  const xi = s.input("x", "float32", ["batch", "height"]);
  s.output(s.op("Neg", [xi]), "y", "float32", ["batch", "height"]);
  await assert.rejects(
    () => vjpTransform(s.toBytes(), ["y"], ["x"]),
    /symbolic input dims need values: x \[height\]/,
  );
  const ok = await vjpTransform(s.toBytes(), ["y"], ["x"], { dims: { height: 3 } });
  assert.deepEqual(
    ok.model.graph!.input![0].type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue)),
    [1, 3],
  );
  // an unsupported op on an inactive branch is fine
  const h = new GraphBuilder("inactive");
  const u = h.input("u", "float32", [3]);
  const v = h.input("v", "float32", [3]);
  h.output(h.op("Atan", [v]), "w", "float32", [3]);
  h.output(h.op("Mul", [u, u]), "z", "float32", [3]);
  await vjpTransform(h.toBytes(), ["z", "w"], ["u"]);
});

Deno.test("vjp w.r.t. an initializer: gradient output added, model otherwise unchanged", async () => {
  const g = new GraphBuilder("init");
  const x = g.input("x", "float32", [2, 3]);
  const w = g.constF("w", [3, 2], [1, 2, 3, 4, 5, 6]);
  g.output(g.op("MatMul", [x, w]), "y", "float32", [2, 2]);
  const vg = await vjpTransform(g.toBytes(), ["y"], ["w"]);
  const s = await ort.InferenceSession.create(vg.bytes());
  const xv = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const cot = Float32Array.from([1, 0, 0, 1]);
  const r = await s.run({
    x: new ort.Tensor("float32", xv, [2, 3]),
    "y.cotangent": new ort.Tensor("float32", cot, [2, 2]),
  });
  // ∂⟨c, xW⟩/∂W = xᵀ c
  assert.deepEqual(Array.from(r["w.grad"].data as Float32Array), [1, 4, 2, 5, 3, 6]);
  await s.release();
});
