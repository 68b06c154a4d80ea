/**
 * An operator run through its exported ONNX graph: `forward` runs the graph of `exportOnnx`, `vjp`
 * (and `adjoint` for linear operators) the VJP graph the transform derives from it, both in the
 * session pool; the prox and the rest are the operator's own. The contract suite runs on this
 * (`testOperator(…, { through: "onnx" })`) to prove that an export and its derivative agree with
 * the TypeScript operator.
 *
 * @module
 */
import type { ForwardOperator, OnnxExportOptions, OnnxModel } from "../contracts.ts";
import { InputError } from "../errors.ts";
import { assertShape, type Tensor, tensor } from "../tensor.ts";
import { type SessionPool, sessionPool } from "../backend/pool.ts";
import { vjpSource } from "./vjp.ts";

/** Options of {@link onnxBackedOperator}. */
export interface OnnxBackedOptions extends OnnxExportOptions {
  /** Session pool (default: the process-wide pool). */
  pool?: SessionPool;
  /** Execution provider request (default "cpu"). */
  device?: string;
}

/**
 * A stable pool key for model bytes (content hash).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bytesKey } from "./exported_operator.ts";
 * const a = await bytesKey("op", new Uint8Array([1, 2]));
 * assert.equal(a, await bytesKey("op", new Uint8Array([1, 2])));
 * assert.notEqual(a, await bytesKey("op", new Uint8Array([1, 3])));
 * ```
 */
export async function bytesKey(prefix: string, bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return `${prefix}#${
    Array.from(d.subarray(0, 12), (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

/**
 * The exported graph of an operator, or an InputError naming the operator when it has none.
 *
 * @param op the operator
 * @param options export options
 */
export function exportedGraph(op: ForwardOperator, options?: OnnxExportOptions): OnnxModel {
  if (!op.exportOnnx) {
    throw new InputError(`operator "${op.name}" has no ONNX export (exportOnnx)`);
  }
  return op.exportOnnx(options);
}

/**
 * `op` with `forward`, `vjp` and `adjoint` computed by ONNX Runtime from `op.exportOnnx`.
 *
 * @param op an operator with `exportOnnx`
 * @param options element type, pool, device
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { linearOperator } from "../linear_operator.ts";
 * import { onnxBackedOperator } from "./exported_operator.ts";
 * import { SessionPool } from "../backend/pool.ts";
 * import type { Tensor } from "../tensor.ts";
 * // y = 2x, with its forward exported as a one-node graph.
 * const shape = [1, 1, 16, 16];
 * const twice = (t: Tensor) => ({ data: t.data.map((v) => 2 * v), shape });
 * const exportOnnx = () => {
 *   const g = new GraphBuilder("twice");
 *   g.output(g.op("Mul", [g.input("x", "float32", shape), g.constF("two", [1], [2])]), "y", "float32", shape);
 *   return { bytes: g.toBytes(), input: "x", output: "y", dtype: "float32" as const };
 * };
 * const op = linearOperator({ name: "twice", inputShape: shape, outputShape: shape, forward: twice, adjoint: twice, exportOnnx });
 * const pool = new SessionPool({ threads: 1 });
 * const viaOnnx = await onnxBackedOperator(op, { pool });
 * const x = { data: new Float32Array(256).map((_, i) => (i % 5) / 5), shape: [1, 1, 16, 16] };
 * const [a, b] = [await op.forward(x), await viaOnnx.forward(x)];
 * assert.ok(a.data.every((v, i) => Math.abs(v - b.data[i]) < 1e-6));
 * await pool.release();
 * ```
 */
export async function onnxBackedOperator(
  op: ForwardOperator,
  options: OnnxBackedOptions = {},
): Promise<ForwardOperator> {
  const model = exportedGraph(op, options);
  const pool = options.pool ?? sessionPool();
  const device = { device: options.device ?? "cpu" };
  const key = await bytesKey(`operator/${op.name}`, model.bytes);
  const fwd = await pool.session(`${op.name}.onnx`, { key, bytes: model.bytes }, device);
  const vjpSrc = await vjpSource({ key, bytes: model.bytes }, [model.output], [model.input]);
  const bwd = await pool.session(`${op.name}.onnx-vjp`, vjpSrc, device);
  const inShape = [...op.inputShape], outShape = [...op.outputShape];
  const zeros = tensor(inShape);
  const forward = async (x: Tensor): Promise<Tensor> => {
    assertShape(x, inShape, `${op.name} (ONNX): x`);
    const out = await fwd.run({ [model.input]: x }, { outputs: [model.output] });
    return out[model.output];
  };
  const vjp = async (x: Tensor, g: Tensor): Promise<Tensor> => {
    assertShape(x, inShape, `${op.name} (ONNX): x`);
    assertShape(g, outShape, `${op.name} (ONNX): cotangent`);
    const grad = `${model.input}.grad`;
    const out = await bwd.run({ [model.input]: x, [`${model.output}.cotangent`]: g }, {
      outputs: [grad],
    });
    return out[grad];
  };
  return {
    ...op,
    name: op.name,
    forward,
    vjp,
    adjoint: op.capabilities.linear ? (y: Tensor) => vjp(zeros, y) : undefined,
  };
}
