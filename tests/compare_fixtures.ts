/**
 * Test fixtures of `compare`: a solver plugin that fails on purpose (loaded with --plugin), and
 * tiny ONNX perceptual networks with known outputs.
 *
 * - `broken:mode=nan` returns an image full of NaN; `broken:mode=throw` throws at its first step.
 * - LPIPS stand-in: d(a, b) = mean((a − b)²) of its [−1,1] inputs = 4·MSE on [0,1], so the LPIPS
 *   column must equal 4·10^(−PSNR/10) exactly (a check of the input mapping and pairing).
 * - Feature network: the per-channel mean of its [0,1] input (3 features).
 */
import { z } from "zod";
import { defineSolver, GraphBuilder, type Tensor, tensor } from "../mod.ts";

/** A solver plugin that fails on purpose. */
export const brokenSolver = defineSolver({
  kind: "solver",
  name: "broken",
  description: "fails on purpose (tests): mode=nan returns NaN, mode=throw throws",
  options: z.strictObject({ mode: z.enum(["nan", "throw"]).default("nan") }),
  create(options) {
    return {
      name: "broken",
      requires: {},
      async *run(problem) {
        if (options.mode === "throw") throw new Error("broken solver: thrown on purpose");
        yield { step: 0, total: 1, nfe: {}, vjp: {}, ms: 0 };
        const x: Tensor = tensor(
          problem.imageShape,
          new Float32Array(
            problem.imageShape.reduce((a, b) => a * b, 1),
          ).fill(NaN),
        );
        await Promise.resolve();
        return { x, info: {} };
      },
    };
  },
});

export default [brokenSolver];

/** Bytes of the LPIPS stand-in: inputs in0, in1 [1,3,H,W] → distance [1] = mean((in0 − in1)²). */
export function lpipsStandIn(): Uint8Array {
  const g = new GraphBuilder("lpips_stand_in");
  const a = g.input("in0", "float32", [1, 3, "H", "W"]);
  const b = g.input("in1", "float32", [1, 3, "H", "W"]);
  const d = g.op("Sub", [a, b]);
  const m = g.op("ReduceMean", [g.op("Mul", [d, d])], { keepdims: 0 });
  g.output(m, "distance", "float32", []);
  return g.toBytes();
}

/** Bytes of the feature network: image [1,3,H,W] → features [1,3] (channel means). */
export function channelMeanFeatures(): Uint8Array {
  const g = new GraphBuilder("channel_means");
  const x = g.input("image", "float32", [1, 3, "H", "W"]);
  const f = g.op("ReduceMean", [x], { axes: [2, 3], keepdims: 0 });
  g.output(f, "features", "float32", [1, 3]);
  return g.toBytes();
}
