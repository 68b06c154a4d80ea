/**
 * Perceptual metrics from user-supplied ONNX networks, run through the shared session pool:
 *
 * - `--lpips MODEL.onnx`: a network of two images → a distance (e.g. the LPIPS export of
 *   `net-lin` with AlexNet/VGG trunk). Inputs are the model's first two inputs, [1,3,H,W] float32 on
 *   **[−1,1]** (LPIPS's convention); the distance is the mean of its first output.
 * - `--fid-features MODEL.onnx`: a network of one image → a feature vector (e.g. InceptionV3's
 *   2048-d pool features). Its input gets [1,3,H,W] float32 on the range given by `--fid-range`
 *   (default 0,1); when the model declares a fixed H×W (299×299 for Inception) the image is resized
 *   to it by antialiased bicubic resampling (Keys a = −0.5, support widened by the downscale factor,
 *   as PIL's BICUBIC — clean-fid's point that one well-defined resize matters). The features are
 *   the first output, flattened.
 *
 * FID/KID themselves are computed in float64 by `core/feature_metrics.ts`.
 *
 * @module
 */
import { InputError } from "../../core/errors.ts";
import type { ModelSession } from "../../core/backend/session.ts";
import { sessionPool } from "../../core/backend/pool.ts";
import type { Tensor } from "../../core/tensor.ts";

/** Keys cubic kernel with a = −0.5. */
function cubic(x: number): number {
  const a = -0.5, t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** Resampling weights of one axis: for each output index, (first source index, weights). */
function axisWeights(inSize: number, outSize: number): { start: number[]; w: Float64Array[] } {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const fs = Math.max(scale, 1);
  const start: number[] = [], w: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support)),
      hi = Math.min(inSize, Math.ceil(centre + support));
    const ws = new Float64Array(hi - lo);
    let sum = 0;
    for (let i = lo; i < hi; i++) sum += ws[i - lo] = cubic((i + 0.5 - centre) / fs);
    for (let i = 0; i < ws.length; i++) ws[i] /= sum;
    start.push(lo);
    w.push(ws);
  }
  return { start, w };
}

/**
 * Resize a [1,C,H,W] image to h×w with antialiased bicubic resampling (PIL's BICUBIC filter).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resizeBicubic } from "./perceptual.ts";
 * const flat = { data: new Float32Array(3 * 8 * 8).fill(0.25), shape: [1, 3, 8, 8] };
 * const r = resizeBicubic(flat, 5, 3);
 * assert.deepEqual(r.shape, [1, 3, 5, 3]);
 * assert.ok(r.data.every((v) => Math.abs(v - 0.25) < 1e-6)); // weights sum to 1
 * ```
 */
export function resizeBicubic(t: Tensor, h: number, w: number): Tensor {
  const [, c, H, W] = t.shape;
  if (H === h && W === w) return t;
  const ax = axisWeights(W, w), ay = axisWeights(H, h);
  const tmp = new Float64Array(c * H * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < H; i++) {
      const row = (k * H + i) * W;
      for (let j = 0; j < w; j++) {
        const ws = ax.w[j], s0 = ax.start[j];
        let s = 0;
        for (let q = 0; q < ws.length; q++) s += ws[q] * t.data[row + s0 + q];
        tmp[(k * H + i) * w + j] = s;
      }
    }
  }
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h; i++) {
      const ws = ay.w[i], s0 = ay.start[i];
      for (let j = 0; j < w; j++) {
        let s = 0;
        for (let q = 0; q < ws.length; q++) s += ws[q] * tmp[(k * H + s0 + q) * w + j];
        out[(k * h + i) * w + j] = s;
      }
    }
  }
  return { data: out, shape: [1, c, h, w] };
}

/** x on [0,1] mapped affinely to [lo, hi]. */
function toRange(x: Tensor, lo: number, hi: number): Tensor {
  const d = new Float32Array(x.data.length);
  for (let i = 0; i < d.length; i++) d[i] = lo + (hi - lo) * x.data[i];
  return { data: d, shape: [...x.shape] };
}

function fixedSpatial(s: ModelSession, input: string): [number, number] | null {
  const shape = s.input(input)?.shape ?? [];
  const h = shape[2], w = shape[3];
  return typeof h === "number" && h > 0 && typeof w === "number" && w > 0 ? [h, w] : null;
}

/** An LPIPS-type network: distance(x, reference). */
export class LpipsNet {
  #s: ModelSession;
  #a: string;
  #b: string;
  private constructor(s: ModelSession) {
    this.#s = s;
    [this.#a, this.#b] = s.inputNames;
  }

  /** Load from an ONNX file (two image inputs). */
  static async load(path: string, device: string): Promise<LpipsNet> {
    const s = await sessionPool().session("lpips", { path, label: `--lpips ${path}` }, { device });
    if (s.inputNames.length !== 2 || s.outputNames.length < 1) {
      throw new InputError(
        `--lpips ${path}: expected a model with two image inputs and a distance output ` +
          `(it has inputs ${s.inputNames.join(", ") || "none"})`,
      );
    }
    return new LpipsNet(s);
  }

  /** Check that the network accepts images of this shape (fixed-size models must match). */
  check(shape: readonly number[], path: string): void {
    const fixed = fixedSpatial(this.#s, this.#a);
    if (fixed && (fixed[0] !== shape[2] || fixed[1] !== shape[3])) {
      throw new InputError(
        `--lpips ${path}: the model takes ${fixed[0]}×${fixed[1]} images but the comparison's ` +
          `are ${shape[2]}×${shape[3]} (use --crop, or export the model with dynamic axes)`,
      );
    }
  }

  /** The distance between x and the reference, both on [0,1] (fed on [−1,1]). */
  async distance(x: Tensor, reference: Tensor): Promise<number> {
    const out = await this.#s.run({
      [this.#a]: toRange(x, -1, 1),
      [this.#b]: toRange(reference, -1, 1),
    });
    const d = out[this.#s.outputNames[0]].data;
    let s = 0;
    for (const v of d) s += v;
    return s / d.length;
  }
}

/** A feature network for FID/KID. */
export class FeatureNet {
  #s: ModelSession;
  #in: string;
  #range: [number, number];
  #fixed: [number, number] | null;
  private constructor(s: ModelSession, range: [number, number]) {
    this.#s = s;
    this.#in = s.inputNames[0];
    this.#range = range;
    this.#fixed = fixedSpatial(s, this.#in);
  }

  /** Load from an ONNX file (one image input). */
  static async load(path: string, device: string, range: [number, number]): Promise<FeatureNet> {
    const s = await sessionPool().session(
      "fid_features",
      { path, label: `--fid-features ${path}` },
      { device },
    );
    if (s.inputNames.length !== 1 || s.outputNames.length < 1) {
      throw new InputError(
        `--fid-features ${path}: expected a model with one image input and a feature output ` +
          `(it has inputs ${s.inputNames.join(", ") || "none"})`,
      );
    }
    return new FeatureNet(s, range);
  }

  /** Features of an image on [0,1]. */
  async features(x: Tensor): Promise<Float32Array> {
    const sized = this.#fixed ? resizeBicubic(x, this.#fixed[0], this.#fixed[1]) : x;
    const out = await this.#s.run({ [this.#in]: toRange(sized, ...this.#range) });
    return out[this.#s.outputNames[0]].data;
  }
}

/**
 * Parse `--fid-range`: "0,1" (default), "-1,1" or "0,255".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRange } from "./perceptual.ts";
 * assert.deepEqual(parseRange(undefined), [0, 1]);
 * assert.deepEqual(parseRange("-1,1"), [-1, 1]);
 * ```
 */
export function parseRange(value: string | undefined): [number, number] {
  if (value === undefined) return [0, 1];
  const parts = value.split(",").map((s) => Number(s.trim()));
  if (parts.length !== 2 || !parts.every(Number.isFinite) || !(parts[1] > parts[0])) {
    throw new InputError(`--fid-range "${value}": expected LO,HI with LO < HI, e.g. 0,1 or -1,1`);
  }
  return [parts[0], parts[1]];
}
