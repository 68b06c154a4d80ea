/**
 * The inpainting operator as an ONNX graph (`exportOnnx`): y = m ⊙ x, one `Mul` by the keep-mask
 * broadcast over the channels.
 *
 * @module
 */
import type { OnnxExportOptions, OnnxModel } from "../core/contracts.ts";
import { exportType, operatorModel } from "./onnx_graph.ts";

/**
 * The masking map on [1,C,H,W] images as an ONNX model.
 *
 * @param mask keep-mask, H·W values (1 kept, 0 missing; shared by the channels)
 * @param shape image shape [1,C,H,W]
 * @param options element type
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { inpaintOnnx } from "./inpaint_onnx.ts";
 * const m = inpaintOnnx(new Float32Array([1, 0, 1, 1]), [1, 1, 2, 2]);
 * assert.equal(m.dtype, "float32");
 * ```
 */
export function inpaintOnnx(
  mask: ArrayLike<number>,
  shape: readonly number[],
  options?: OnnxExportOptions,
): OnnxModel {
  const [, , H, W] = shape;
  if (mask.length !== H * W) throw new RangeError(`inpaint export: mask has ${mask.length} values`);
  return operatorModel(
    "inpaint",
    shape,
    shape,
    exportType(options),
    (og, x) => og.g.op("Mul", [x, og.constant("mask", [1, 1, H, W], mask)]),
  );
}
