/**
 * Gradient graphs stay on the GPU: every op of a transformed graph — the SD-block composite, the
 * built-in model's graphs — has a float32 kernel on both ONNX Runtime's WebGPU and CUDA providers
 * (`core/onnx/device_ops.ts`), and so does every op type a gradient rule can emit. (The whole-loss
 * graphs are checked in `tests/loss_graph_test.ts`; every per-op VJP test checks its backward ops
 * through the shared harness.)
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEVICE_OPS, offDeviceNodes } from "../core/onnx/device_ops.ts";
import { sdBlockGraph } from "../core/onnx/vjp/fixtures.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { cutAtEmbedding } from "../core/onnx/graph_tools.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { createExactModel } from "../plugins/builtin-gaussian/model.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";

function assertOnDevice(label: string, model: Parameters<typeof offDeviceNodes>[0]) {
  const off = offDeviceNodes(model);
  assert.deepEqual(
    [...new Set(off.map((n) => n.op))],
    [],
    `${label}: ${off.length} node(s) without a GPU kernel: ${
      off.slice(0, 5).map((n) => `${n.op} '${n.node}'`).join(", ")
    }`,
  );
}

Deno.test("device ops: the SD-block composite's VJP graph (w.r.t. sample and context) has only GPU ops", async () => {
  const bytes = sdBlockGraph(SMALL_SD_BLOCK);
  const g = await vjpTransform(bytes, ["out_sample"], ["sample", "encoder_hidden_states"]);
  assert.ok(g.stats.backwardNodes > 100);
  assertOnDevice("SD-block composite VJP", g.model);
});

Deno.test("device ops: the built-in model's VJP graphs (UNets, VAE, text encoder) have only GPU ops", async () => {
  const files = buildExactModelFiles(createExactModel({ imageShape: [1, 3, 8, 8] }));
  const bytes = (name: string) => files.get(name) as Uint8Array;
  const cases: [string, Uint8Array, string[], string[]][] = [
    ["unet", bytes("unet/model.onnx"), ["out_sample"], ["sample", "encoder_hidden_states"]],
    [
      "consistency_unet",
      bytes("consistency_unet/model.onnx"),
      ["out_sample"],
      ["sample", "encoder_hidden_states"],
    ],
    ["vae_decoder", bytes("vae_decoder/model.onnx"), ["sample"], ["latent_sample"]],
    ["vae_encoder", bytes("vae_encoder/model.onnx"), ["latent_parameters"], ["sample"]],
  ];
  const cut = cutAtEmbedding(decodeModel(bytes("text_encoder/model.onnx")));
  cases.push([
    "text_encoder",
    encodeModel(cut.model),
    ["last_hidden_state"],
    [cut.inputName],
  ]);
  for (const [label, b, of, wrt] of cases) {
    const g = await vjpTransform(b, of, wrt);
    assertOnDevice(`built-in ${label} VJP`, g.model);
  }
});

Deno.test("device ops: every op type the gradient rules and the emitter name is a GPU op", async () => {
  // A static census of the sources, so that rules no graph above exercises are covered too.
  const dir = new URL("../core/onnx/vjp/", import.meta.url).pathname;
  const files = [
    join(dir, "emit.ts"),
    join(dir, "patterns.ts"),
    join(dir, "transform.ts"),
    ...[...Deno.readDirSync(join(dir, "rules"))].map((e) => join(dir, "rules", e.name)),
  ];
  const emitted = new Set<string>();
  for (const f of files) {
    const src = await Deno.readTextFile(f);
    for (const m of src.matchAll(/\.(?:op|opN|reduce)\(\s*"([A-Z][A-Za-z]+)"/g)) emitted.add(m[1]);
  }
  assert.ok(emitted.size > 30, `census found only ${emitted.size} op types`);
  const off = [...emitted].filter((op) => !DEVICE_OPS.has(op)).sort();
  assert.deepEqual(off, [], `rules emit ops without GPU kernels: ${off.join(", ")}`);
});
