/**
 * ONNX ModelProto reading and writing through the npm package `onnx-proto` (protobufjs code
 * generated from the official onnx.proto, ONNX 1.10 schema), plus helpers to read tensor data.
 *
 * @module
 */
import onnxProto from "onnx-proto";
import { DataType, decodeValues } from "./dtype.ts";

/**
 * The generated protobuf namespace (`onnx.ModelProto`, `onnx.TensorProto`, …).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { onnx } from "./proto.ts";
 * assert.equal(onnx.TensorProto.DataType.FLOAT, 1);
 * ```
 */
export const onnx: typeof onnxProto.onnx = onnxProto.onnx;

/** A decoded model. */
export type ModelProto = onnxProto.onnx.ModelProto;
/** A model as a plain object (for encoding). */
export type IModelProto = onnxProto.onnx.IModelProto;
/** A decoded graph. */
export type GraphProto = onnxProto.onnx.IGraphProto;
/** A node. */
export type NodeProto = onnxProto.onnx.INodeProto;
/** A tensor (initializer / constant). */
export type TensorProto = onnxProto.onnx.ITensorProto;
/** A value info (graph input/output). */
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;
/** An attribute. */
export type AttributeProto = onnxProto.onnx.IAttributeProto;

export { DataType } from "./dtype.ts";

/**
 * Decode model bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { decodeModel } from "./proto.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Identity", [g.input("x", "float32", [1])]), "y", "float32", [1]);
 * assert.equal(decodeModel(g.toBytes()).graph?.output?.[0].name, "y");
 * ```
 */
export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

/**
 * Encode a model (object or message) to bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { decodeModel, encodeModel } from "./proto.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Identity", [g.input("x", "float32", [1])]), "y", "float32", [1]);
 * const model = decodeModel(g.toBytes());
 * model.graph!.name = "renamed";
 * assert.equal(decodeModel(encodeModel(model)).graph?.name, "renamed");
 * ```
 */
export function encodeModel(model: onnxProto.onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

function toNumber(v: number | { toNumber(): number }): number {
  return typeof v === "number" ? v : v.toNumber();
}

/**
 * Dimensions of a tensor proto as plain numbers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeTensor } from "./builder.ts";
 * import { tensorDims } from "./proto.ts";
 * assert.deepEqual(tensorDims(makeTensor("w", "float32", [2, 3], new Array(6).fill(0))), [2, 3]);
 * ```
 */
export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d as number | { toNumber(): number }));
}

/**
 * Values of an embedded tensor (raw_data or typed fields) as float64 numbers. External data is not
 * read here (callers that need it resolve `externalData` themselves).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensorValues } from "./proto.ts";
 * const t = { name: "w", dims: [2], dataType: 1, floatData: [0.5, -1] };
 * assert.deepEqual(Array.from(tensorValues(t)), [0.5, -1]);
 * ```
 */
export function tensorValues(t: TensorProto): Float64Array {
  const dims = tensorDims(t);
  const n = dims.reduce((a, b) => a * b, 1);
  const raw = t.rawData;
  const dt = t.dataType ?? DataType.FLOAT;
  if (raw && raw.length > 0) return decodeValues(raw, dt, `tensor ${t.name}`);
  let vals: ArrayLike<number | { toNumber(): number }> = [];
  if (t.floatData?.length) vals = t.floatData;
  else if (t.doubleData?.length) vals = t.doubleData;
  else if (t.int64Data?.length) vals = t.int64Data as ArrayLike<number | { toNumber(): number }>;
  else if (t.int32Data?.length) vals = t.int32Data;
  const out = new Float64Array(vals.length);
  for (let i = 0; i < vals.length; i++) out[i] = toNumber(vals[i]);
  if (out.length !== n && !(n === 1 && out.length === 0)) {
    throw new Error(`tensor ${t.name}: ${out.length} values for dims [${dims}]`);
  }
  return out;
}
