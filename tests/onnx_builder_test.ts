import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { float, GraphBuilder } from "../core/onnx/builder.ts";
import { decodeModel, tensorValues } from "../core/onnx/proto.ts";

Deno.test("graph builder: a small graph runs in onnxruntime and round-trips through protobuf", async () => {
  const g = new GraphBuilder("affine");
  const x = g.input("x", "float32", [1, 3]);
  const w = g.constF("w", [3, 2], [1, 2, 3, 4, 5, 6]);
  const mm = g.op("MatMul", [x, w]);
  const y = g.op("LeakyRelu", [mm], { alpha: float(1) });
  g.output(y, "y", "float32", [1, 2]);
  const bytes = g.toBytes();
  const m = decodeModel(bytes);
  assert.equal(m.graph?.node?.length, 3);
  assert.deepEqual(Array.from(tensorValues(m.graph!.initializer![0])), [1, 2, 3, 4, 5, 6]);
  const s = await ort.InferenceSession.create(bytes);
  const out = await s.run({ x: new ort.Tensor("float32", new Float32Array([1, -1, 2]), [1, 3]) });
  assert.deepEqual(Array.from(out.y.data as Float32Array), [1 * 1 - 3 + 2 * 5, 2 - 4 + 12]);
  await s.release();
});
