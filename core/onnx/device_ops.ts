/**
 * The ai.onnx op types that ONNX Runtime's GPU execution providers run on the device: those with a
 * float32 kernel registered by **both** the WebGPU and the CUDA provider, covering the opsets of
 * the models we differentiate (13–17, fp32 Optimum/diffusers exports and our own graphs). A graph
 * made only of these ops runs without CPU fallback (and its device↔host copies) on either
 * provider; the VJP transform emits only these (tested in `tests/onnx_device_ops_test.ts`).
 *
 * How the list was read (ONNX Runtime {@link DEVICE_OPS_ORT_VERSION}, the version the project
 * pins):
 * - WebGPU: the kernel table of `onnxruntime/core/providers/webgpu/webgpu_execution_provider.cc`
 *   (the stored revision nearest to 1.30: the one registering GridSample, TopK and the int64
 *   switches), cross-checked against the kernel classes compiled into the shipped 1.30 binary
 *   (`libonnxruntime.so.1` of onnxruntime-node 1.30.0 carries the WebGPU provider; its RTTI names
 *   `onnxruntime::webgpu::<Op>` list every kernel class). No `Sum`, `Sign`, `ConstantOfShape`,
 *   `Dropout` or `Mod` kernel exists there — `Sum` was the op that forced 25 copies per VJP run on
 *   an H200 (`../shared/reference/gpu.md`).
 * - CUDA: the kernel table of `onnxruntime/core/providers/cuda/cuda_execution_provider.cc` at
 *   commit 0018ddb (an older revision, opsets ≤ 18); kernels are only ever added between
 *   releases, so an op registered there is registered in 1.30 — the list is a safe subset.
 *
 * Left out because one provider lacks them: `Sum`, `Sign`, `ConstantOfShape`, `Dropout`, `Mod`,
 * `Or`, `Xor`, `NonZero`, `OneHot`, `Round` (no WebGPU kernel); `Gelu`, `GridSample`,
 * `RMSNormalization`, `RotaryEmbedding`, `LpNormalization`, `HardSwish`, `Tan`, `Sinh` (not in the
 * CUDA revision read; `Gelu` is opset 20 anyway); `Upsample` (CUDA registers it for opsets ≤ 9
 * only).
 *
 * @module
 */
import type { IModelProto } from "./proto.ts";

/**
 * ONNX Runtime version the list was read for.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEVICE_OPS_ORT_VERSION } from "./device_ops.ts";
 * assert.equal(DEVICE_OPS_ORT_VERSION, "1.30.0");
 * ```
 */
export const DEVICE_OPS_ORT_VERSION = "1.30.0";

/**
 * Op types (ai.onnx domain) with float32 kernels on both the WebGPU and the CUDA provider.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEVICE_OPS } from "./device_ops.ts";
 * assert.ok(DEVICE_OPS.has("Add") && DEVICE_OPS.has("ConvTranspose"));
 * assert.ok(!DEVICE_OPS.has("Sum")); // no WebGPU kernel: gradient sums are trees of Add
 * ```
 */
export const DEVICE_OPS: ReadonlySet<string> = new Set([
  // elementwise
  "Abs",
  "Add",
  "And",
  "Cast",
  "Ceil",
  "Clip",
  "Cos",
  "Div",
  "Elu",
  "Equal",
  "Erf",
  "Exp",
  "Floor",
  "Greater",
  "GreaterOrEqual",
  "HardSigmoid",
  "Identity",
  "LeakyRelu",
  "Less",
  "LessOrEqual",
  "Log",
  "Max",
  "Min",
  "Mul",
  "Neg",
  "Not",
  "Pow",
  "PRelu",
  "Reciprocal",
  "Relu",
  "Sigmoid",
  "Sin",
  "Softplus",
  "Sqrt",
  "Sub",
  "Tanh",
  "ThresholdedRelu",
  "Where",
  // reductions, normalisation, softmax
  "ArgMax",
  "ArgMin",
  "BatchNormalization",
  "CumSum",
  "InstanceNormalization",
  "LayerNormalization",
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSum",
  "ReduceLogSumExp",
  "ReduceMax",
  "ReduceMean",
  "ReduceMin",
  "ReduceProd",
  "ReduceSum",
  "ReduceSumSquare",
  "Softmax",
  "TopK",
  // linear algebra, convolution, pooling, resampling
  "AveragePool",
  "Conv",
  "ConvTranspose",
  "Einsum",
  "Gemm",
  "GlobalAveragePool",
  "GlobalMaxPool",
  "MatMul",
  "MaxPool",
  "Resize",
  // data movement and indexing
  "Concat",
  "DepthToSpace",
  "Expand",
  "Flatten",
  "Gather",
  "GatherElements",
  "GatherND",
  "Pad",
  "Range",
  "Reshape",
  "ScatterElements",
  "ScatterND",
  "Shape",
  "Slice",
  "Split",
  "Squeeze",
  "Tile",
  "Transpose",
  "Trilu",
  "Unsqueeze",
]);

/** One node whose op is not in {@link DEVICE_OPS}. */
export interface OffDeviceNode {
  /** Op type (with its domain when not ai.onnx). */
  op: string;
  /** Node name (or its index). */
  node: string;
}

/**
 * The nodes of a model whose op type is not in {@link DEVICE_OPS} (nodes of other domains count as
 * off-device). Empty when the whole graph can stay on a GPU.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { offDeviceNodes } from "./device_ops.ts";
 * const g = new GraphBuilder("s");
 * const x = g.input("x", "float32", [2]);
 * g.output(g.op("Sum", [x, x, x]), "y", "float32", [2]);
 * assert.deepEqual(offDeviceNodes(g.toModel()).map((n) => n.op), ["Sum"]);
 * ```
 */
export function offDeviceNodes(model: IModelProto): OffDeviceNode[] {
  const out: OffDeviceNode[] = [];
  (model.graph?.node ?? []).forEach((n, i) => {
    const dom = n.domain ?? "";
    const op = n.opType ?? "";
    if ((dom && dom !== "ai.onnx") || !DEVICE_OPS.has(op)) {
      out.push({ op: dom && dom !== "ai.onnx" ? `${dom}:${op}` : op, node: n.name || `#${i}` });
    }
  });
  return out;
}
