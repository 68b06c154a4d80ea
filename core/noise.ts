/**
 * Measurement: y = A(x) + σ_y n, n ~ N(0, I), on the [0,1] scale, from a named stream; operators
 * with `projectMeasurement` (inpainting) then restrict y to the observed entries.
 *
 * @module
 */
import type { ForwardOperator } from "./contracts.ts";
import type { RandomStream } from "./rng.ts";
import type { Tensor } from "./tensor.ts";

/**
 * Simulate a noisy measurement.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { measure } from "./noise.ts";
 * import { streams } from "./rng.ts";
 * const id = {
 *   forward: (x: { data: Float32Array; shape: number[] }) => Promise.resolve(x),
 * };
 * const x = { data: new Float32Array(4).fill(0.5), shape: [1, 1, 2, 2] };
 * const y = await measure(id, x, 0, streams(0).get("measurement-noise"));
 * assert.ok(y.data[0] === 0.5);
 * ```
 */
export async function measure(
  op: Pick<ForwardOperator, "forward" | "projectMeasurement">,
  x: Tensor,
  sigma: number,
  rng: RandomStream,
): Promise<Tensor> {
  if (!(sigma >= 0) || !Number.isFinite(sigma)) {
    throw new RangeError(`noise σ_y must be a finite number ≥ 0, got ${sigma}`);
  }
  const ax = await op.forward(x);
  const out = new Float32Array(ax.data.length);
  for (let i = 0; i < out.length; i++) out[i] = ax.data[i] + sigma * rng.normal();
  const y = { data: out, shape: [...ax.shape] };
  return op.projectMeasurement ? await op.projectMeasurement(y) : y;
}
