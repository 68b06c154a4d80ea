/**
 * The blur operator as an ONNX graph (`exportOnnx`): the boundary extension as index runs
 * (`Slice` + `Concat`), then the convolution as a depthwise correlation with the flipped kernel —
 * two 1-D ones for separable kernels (the Gaussian) — so y equals the TypeScript forward
 * (`blur.ts`) for every kernel and boundary. The `symmetric` DCT path computes the same map as
 * the padded convolution with its axis-symmetric kernel, so one graph serves both.
 *
 * Padded position q (0 ≤ q < H + kh − 1) holds x̃[q − top] with top = kh − 1 − ⌊kh/2⌋, and
 * y[i] = Σ_a flip(k)[a] · padded[i + a] = Σ_a k[a] · x̃[i − (a − ⌊kh/2⌋)], the convolution of
 * `blur.ts`.
 *
 * @module
 */
import type { OnnxExportOptions, OnnxModel } from "../core/contracts.ts";
import type { BlurBoundary } from "./blur.ts";
import { extendIndex } from "./blur.ts";
import type { Kernel2 } from "./kernels.ts";
import { exportType, extendAndCorrelate, flipKernel, operatorModel } from "./onnx_graph.ts";

/** Source index of extended position p − … for a boundary (p may be negative or ≥ n). */
function boundarySource(boundary: BlurBoundary, n: number): (p: number) => number {
  if (boundary === "circular") return (p) => ((p % n) + n) % n;
  return (p) => {
    const i = extendIndex(p, n, boundary);
    if (i < 0) throw new RangeError(`blur export: kernel too large for ${boundary} padding`);
    return i;
  };
}

/**
 * The blur y = k ∗ x (boundary rule as in `blur.ts`) on [1,C,H,W] images as an ONNX model.
 *
 * @param kernel the kernel (as the operator uses it)
 * @param boundary boundary rule
 * @param shape image shape [1,C,H,W]
 * @param options element type
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { blurOnnx } from "./blur_onnx.ts";
 * import { gaussianKernel } from "./kernels.ts";
 * const m = blurOnnx(gaussianKernel(1), "circular", [1, 3, 16, 16]);
 * assert.equal(m.input, "x");
 * assert.ok(m.bytes.length > 0);
 * ```
 */
export function blurOnnx(
  kernel: Kernel2,
  boundary: BlurBoundary,
  shape: readonly number[],
  options?: OnnxExportOptions,
): OnnxModel {
  const [, , H, W] = shape;
  const topH = kernel.h - 1 - Math.floor(kernel.h / 2),
    topW = kernel.w - 1 - Math.floor(kernel.w / 2);
  const rows = boundarySource(boundary, H), cols = boundarySource(boundary, W);
  return operatorModel(
    `blur_${boundary}`,
    shape,
    shape,
    exportType(options),
    (og, x) =>
      extendAndCorrelate(
        og,
        x,
        shape,
        flipKernel(kernel),
        [H, W],
        [1, 1],
        (q) => rows(q - topH),
        (q) => cols(q - topW),
      ),
  );
}
