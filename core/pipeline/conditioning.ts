/**
 * Small pieces of prompt conditioning for SD 1.x/2.x, SDXL and LCM UNets.
 *
 * - LCM guidance embedding (`timestep_cond`, diffusers `get_guidance_scale_embedding`):
 *   w ← 1000·(guidance_scale − 1), half = ⌊d/2⌋, f_i = exp(−i · ln 10000 / (half − 1)),
 *   emb = [sin(w f_0..f_{half−1}), cos(w f_0..f_{half−1})], zero-padded to d when d is odd.
 *   (diffusers uses w = guidance_scale − 1, the Imagen CFG convention; original LCM code used w
 *   directly — we follow diffusers since its pipelines ship the exported models.)
 * - SDXL micro-conditioning `time_ids` = [H, W, crop_top, crop_left, H, W] = [H, W, 0, 0, H, W]
 *   (original size, crop offset, target size in pixels).
 * - SDXL `encoder_hidden_states` = concat over the last axis of the penultimate hidden states of
 *   both text encoders ([B,77,768] ‖ [B,77,1280] → [B,77,2048]); `text_embeds` = text_encoder_2's
 *   pooled projection.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";

/**
 * LCM guidance-scale embedding of dimension d for one guidance scale, shape [1, d].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { guidanceEmbedding } from "./conditioning.ts";
 * // guidance 1 → w = 0: sin(0) = 0 in the first half, cos(0) = 1 in the second.
 * const e = guidanceEmbedding(1, 8);
 * assert.deepEqual(e.shape, [1, 8]);
 * assert.deepEqual([...e.data], [0, 0, 0, 0, 1, 1, 1, 1]);
 * ```
 */
export function guidanceEmbedding(guidanceScale: number, d: number): Tensor {
  if (!Number.isInteger(d) || d < 4) throw new RangeError(`time_cond_proj_dim ${d} is too small`);
  // Each step is rounded to float32 as torch computes it in float32: with w ≈ 7500 the argument's
  // rounding moves sin/cos by up to ~5e-4, and the network was trained on the float32 values.
  const f = Math.fround;
  const w = f(f(guidanceScale - 1) * 1000);
  const half = Math.floor(d / 2);
  const out = new Float32Array(d);
  const step = f(f(Math.log(10000)) / (half - 1));
  for (let i = 0; i < half; i++) {
    const a = f(w * f(Math.exp(f(-i * step))));
    out[i] = Math.sin(a);
    out[half + i] = Math.cos(a);
  }
  return { data: out, shape: [1, d] };
}

/**
 * SDXL `time_ids` for an H×W image, shape [1, 6].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sdxlTimeIds } from "./conditioning.ts";
 * assert.deepEqual([...sdxlTimeIds(1024, 768).data], [1024, 768, 0, 0, 1024, 768]);
 * ```
 */
export function sdxlTimeIds(height: number, width: number): Tensor {
  return { data: Float32Array.from([height, width, 0, 0, height, width]), shape: [1, 6] };
}

/**
 * Concatenate two [B, T, Dᵢ] tensors along the last axis.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatLastAxis } from "./conditioning.ts";
 * const a = { data: Float32Array.from([1, 2, 3, 4]), shape: [1, 2, 2] };
 * const b = { data: Float32Array.from([5, 6]), shape: [1, 2, 1] };
 * const c = concatLastAxis(a, b);
 * assert.deepEqual(c.shape, [1, 2, 3]);
 * assert.deepEqual([...c.data], [1, 2, 5, 3, 4, 6]);
 * ```
 */
export function concatLastAxis(a: Tensor, b: Tensor): Tensor {
  const [B, T, Da] = a.shape, Db = b.shape[2];
  if (a.shape.length !== 3 || b.shape.length !== 3 || b.shape[0] !== B || b.shape[1] !== T) {
    throw new RangeError(`cannot concatenate [${a.shape}] and [${b.shape}] on the last axis`);
  }
  const D = Da + Db;
  const out = new Float32Array(B * T * D);
  for (let r = 0; r < B * T; r++) {
    out.set(a.data.subarray(r * Da, (r + 1) * Da), r * D);
    out.set(b.data.subarray(r * Db, (r + 1) * Db), r * D + Da);
  }
  return { data: out, shape: [B, T, D] };
}

/**
 * The name of the penultimate hidden state among a text encoder's outputs: with outputs
 * `hidden_states.0 … hidden_states.L` (embeddings, then each of the L layers) it is
 * `hidden_states.{L−1}` (transformers' `hidden_states[-2]`). Undefined when there are none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { penultimateHiddenState } from "./conditioning.ts";
 * const names = ["last_hidden_state", ...Array.from({ length: 13 }, (_, i) => `hidden_states.${i}`)];
 * assert.equal(penultimateHiddenState(names), "hidden_states.11");
 * assert.equal(penultimateHiddenState(["last_hidden_state"]), undefined);
 * ```
 */
export function penultimateHiddenState(outputNames: readonly string[]): string | undefined {
  let max = -1;
  for (const n of outputNames) {
    const m = /^hidden_states\.(\d+)$/.exec(n);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max >= 1 ? `hidden_states.${max - 1}` : undefined;
}

/**
 * Repeat a batch-1 tensor B times along axis 0 (returns it unchanged when B = 1).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tileBatch } from "./conditioning.ts";
 * const t = tileBatch({ data: Float32Array.from([1, 2]), shape: [1, 2] }, 3);
 * assert.deepEqual(t.shape, [3, 2]);
 * assert.deepEqual([...t.data], [1, 2, 1, 2, 1, 2]);
 * ```
 */
export function tileBatch(t: Tensor, B: number): Tensor {
  if (t.shape[0] === B) return t;
  if (t.shape[0] !== 1) {
    throw new RangeError(`conditioning batch ${t.shape[0]} does not match latent batch ${B}`);
  }
  const n = t.data.length;
  const out = new Float32Array(n * B);
  for (let b = 0; b < B; b++) out.set(t.data, b * n);
  return { data: out, shape: [B, ...t.shape.slice(1)] };
}
