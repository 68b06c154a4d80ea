/**
 * The super-resolution operator as an ONNX graph (`exportOnnx`): y = (h ∗ x)[::f, ::f] as the
 * boundary extension (index runs: `Slice` + `Concat`) followed by two strided depthwise 1-D
 * correlations with the flipped taps (h = k ⊗ k is separable), equal to `sr.ts`'s separable
 * passes: y[a] = Σ_j k[K−1−j] · x̃[f·a + j − offset].
 *
 * @module
 */
import type { OnnxExportOptions, OnnxModel } from "../core/contracts.ts";
import { boundaryIndex, type SrBoundary } from "./sr.ts";
import { exportType, extendAndCorrelate, operatorModel } from "./onnx_graph.ts";

/**
 * The SR map on [1,C,H,W] images as an ONNX model (output [1,C,H/f,W/f]).
 *
 * @param taps the 1-D filter (bicubic 4f taps or the f-tap box), as `sr.ts` defines it
 * @param factor f
 * @param offset leading extension (K/2 for bicubic, 0 for the box)
 * @param boundary boundary rule
 * @param shape image shape [1,C,H,W]
 * @param options element type
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { srOnnx } from "./sr_onnx.ts";
 * import { srFilterTaps } from "./sr.ts";
 * const m = srOnnx(srFilterTaps("bicubic", 2), 2, 4, "circular", [1, 3, 16, 16]);
 * assert.equal(m.output, "y");
 * ```
 */
export function srOnnx(
  taps: Float64Array,
  factor: number,
  offset: number,
  boundary: SrBoundary,
  shape: readonly number[],
  options?: OnnxExportOptions,
): OnnxModel {
  const [, C, H, W] = shape;
  const K = taps.length, mh = H / factor, mw = W / factor;
  const flipped = taps.slice().reverse();
  const k2 = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) k2[i * K + j] = flipped[i] * flipped[j];
  return operatorModel(
    `sr_x${factor}`,
    shape,
    [1, C, mh, mw],
    exportType(options),
    (og, x) =>
      extendAndCorrelate(
        og,
        x,
        shape,
        { h: K, w: K, data: k2 },
        [mh, mw],
        [factor, factor],
        (q) => boundaryIndex(q - offset, H, boundary),
        (q) => boundaryIndex(q - offset, W, boundary),
      ),
  );
}
