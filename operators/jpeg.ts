/**
 * JPEG compression as a differentiable forward operator A(x) = decode(encode(x)), its
 * data-consistent prox, and the real codec (sharp / libvips / mozjpeg in its libjpeg-turbo-compatible
 * profile) it models. One concern per file under `operators/jpeg/`:
 *
 * - `colour.ts`: steps 1–3 and 7–8 (JFIF colour, replicate padding, 4:2:0 averaging and the
 *   decoder's triangular chroma upsampling);
 * - `quantise.ts`: steps 4–6 (IJG tables and quality scaling, 8×8 block DCT, one coded plane);
 * - `rounding.ts`: the smooth rounding and clamping surrogates (logistic dither);
 * - `model.ts`: A, its VJP and the linear pieces (encoder E, decoder Jacobian);
 * - `bin_prox.ts`: the default prox, on the quantisation bins (a named deviation, below);
 * - `surrogate_prox.ts`: the contract's least-squares prox of the smooth model (`data_term=surrogate`);
 * - `precondition.ts`: the per-coefficient Woodbury preconditioner both proxes use;
 * - `codec.ts`: the real codec (sharp); `coefficients.ts`: a file's quantised coefficients, and the
 *   codec-sense data consistency of a restored image (bin agreement).
 *
 * The model follows libjpeg's baseline encoder and decoder stage by stage, in float64:
 *
 *  1. x ∈ [0,1] → levels v = 255·x → JFIF full-range YCbCr (ITU-R BT.601 weights, Kr = 0.299,
 *     Kb = 0.114):  Y = 0.299R + 0.587G + 0.114B,  Cb = (B − Y)/1.772,  Cr = (R − Y)/1.402.
 *     The chroma offset +128 and the level shift −128 cancel; Y gets Y − 128.
 *  2. Replicate-pad each plane to whole blocks, as libjpeg's `expand_right_edge` /
 *     `expand_bottom_edge` do: luma to a multiple of 8; chroma to 16 (4:2:0) or 8 (4:4:4).
 *  3. 4:2:0: chroma 2×2 box average (libjpeg `h2v2_downsample`, smoothing off).
 *  4. 8×8 orthonormal DCT-II per block (the JPEG FDCT, ¼C(u)C(v) normalisation).
 *  5. Quantise / dequantise: ĉ = Q · S_t(c / Q), with Q the IJG table for the quality (Annex K
 *     tables, scale s = 5000/q for q < 50 else 200 − 2q, Q = clamp(⌊(T·s + 50)/100⌋, 1, 255)) and
 *     S_t the soft rounding (`rounding.ts`; DEVIATION from kornia's cubic surrogate).
 *  6. 8×8 IDCT, +128, soft clamp to [0,255] (libjpeg range-limits the decoded samples).
 *  7. Crop (luma to H×W; 4:2:0 chroma to ⌈H/2⌉×⌈W/2⌉); 4:2:0 chroma "fancy" upsampling: a
 *     triangular filter with weights ¾, ¼ along each axis and edge replication (libjpeg
 *     `h2v2_fancy_upsample`, on by default in libjpeg-turbo/mozjpeg and used by sharp's decoder —
 *     checked: it matches sharp's decode of the real coefficients to 0.43 RMS levels, against
 *     1.05 for nearest-neighbour upsampling).
 *  8. YCbCr → RGB (exact inverse of step 1), soft clamp to [0,255], ÷255.
 *
 * Finite differences: S_t is steep on a level scale, so central differences of A need a per-pixel
 * step well below a level (≈ 4e-6 on the [0,1] scale) to match the exact VJP; with the contract
 * suite's default 1e-3 (0.26 level) the step itself crosses decision boundaries. This is curvature,
 * not a VJP error (the Taylor remainder shrinks like c² down to float32 noise).
 *
 * Prox (DEVIATION, declared as `proxDataTerm`): by default `proxL2` minimises
 * (γ/2) D_y(u) + ½‖u − z‖², D_y the weighted squared distance of u's DCT coefficients to y's
 * quantisation bins — the lower convex envelope of the hard-rounding ‖A(u) − y‖², whose smooth
 * version is flat on every rounding plateau and so cannot pull a coefficient into its bin (see
 * `bin_prox.ts`). `data_term=surrogate` restores the contract's least-squares prox.
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator, ProxDataTerm, ProxOptions } from "../core/contracts.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import { InputError } from "../core/errors.ts";
import { assertShape, type Tensor } from "../core/tensor.ts";
import type { SecondOrderModel } from "../core/linalg/nonlinear_prox.ts";
import { geometry, type JpegSubsampling } from "./jpeg/colour.ts";
import { quantiser } from "./jpeg/quantise.ts";
import { JpegModel } from "./jpeg/model.ts";
import {
  BIN_SHRINK_DEFAULT,
  binDataTerm,
  binDataTermHalfGradient,
  binProxImage,
  JPEG_BIN_PROX_DEFAULTS,
  type JpegBins,
  measurementBins,
} from "./jpeg/bin_prox.ts";
import { surrogateProxL2, surrogateProxModel } from "./jpeg/surrogate_prox.ts";

export { IJG_CHROMINANCE_TABLE, IJG_LUMINANCE_TABLE, jpegQuantTable } from "./jpeg/quantise.ts";
export { JpegSoftRound } from "./jpeg/rounding.ts";
export type { JpegSubsampling } from "./jpeg/colour.ts";
export { JPEG_SURROGATE_PROX_DEFAULTS } from "./jpeg/surrogate_prox.ts";
export { decodeJpeg, encodeJpeg, JPEG_SHARP_OPTIONS, jpegRoundTrip } from "./jpeg/codec.ts";
export {
  type JpegBinAgreement,
  jpegBinAgreement,
  type JpegCoefficients,
  type JpegComponentCoefficients,
  readJpegCoefficients,
} from "./jpeg/coefficients.ts";

/** Options of the jpeg operator. */
export type JpegOptions = {
  /** IJG quality 1–100. */
  quality: number;
  /** Chroma subsampling: 420 (2×2) or 444 (none). */
  subsampling: JpegSubsampling;
  /** Standard deviation, in 8-bit levels, of the dither that smooths rounding and clamping. */
  softness: number;
  /** What `proxL2` minimises: the distance to y's quantisation bins (default) or ‖A(u) − y‖². */
  data_term: "bins" | "surrogate";
  /** Levels by which each bin is at least shrunk on both sides in the bin data term. */
  bin_margin: number;
  /** Fraction of Q by which each bin is shrunk on both sides (the larger of the two wins, ≤ Q/4). */
  bin_shrink: number;
};

/** The jpeg operator: a ForwardOperator plus the surrogate's second-order prox model. */
export interface JpegOperator extends ForwardOperator {
  /**
   * At u, for the surrogate's Φ(u) = (γ/2)‖A(u) − y‖² + ½‖u − z‖²: `hessian`, a positive definite
   * model of ∇²Φ(u) (exact up to the sign of the diagonal second-order term), and
   * `preconditioner`, a cheap positive definite approximation of its inverse. Both act on flat
   * [N,3,H,W] vectors. (The default bin prox does not use it.)
   */
  proxModel(u: Tensor, y: Tensor, gamma: number): SecondOrderModel;
}

/**
 * Iteration budget and tolerance of the default (bin) prox: semismooth Newton steps, relative
 * optimality residual, CG iterations per step.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JPEG_PROX_DEFAULTS } from "./jpeg.ts";
 * assert.equal(JPEG_PROX_DEFAULTS.tol, 1e-5);
 * ```
 */
export const JPEG_PROX_DEFAULTS: Readonly<{ maxIter: number; tol: number; maxCg: number }> =
  JPEG_BIN_PROX_DEFAULTS;

const optionsSchema = z.strictObject({
  quality: z.number().int().min(1).max(100).default(10)
    .describe("IJG quality 1–100 (libjpeg's Annex K tables, scaled)"),
  subsampling: z.union([z.literal(420), z.literal(444)]).default(420)
    .describe("chroma subsampling: 420 (2×2 average, fancy upsampling) | 444 (none)"),
  softness: z.number().min(0.05).max(64).default(1)
    .describe("std, in 8-bit levels, of the dither that smooths rounding and clamping in A"),
  data_term: z.enum(["bins", "surrogate"]).default("bins")
    .describe(
      "what the prox fits: bins (distance to y's quantisation bins) | surrogate (‖A(u) − y‖²)",
    ),
  bin_margin: z.number().min(0).max(64).default(2)
    .describe("bins: levels by which each bin is at least shrunk on both sides"),
  bin_shrink: z.number().min(0).max(0.25).default(BIN_SHRINK_DEFAULT)
    .describe("bins: fraction of Q by which each bin is shrunk on both sides (larger wins, ≤ Q/4)"),
});

/** The bins of every image of y, computed once per measurement (LATINO calls the prox 8 times). */
function binCache(model: JpegModel, margin: number, shrink: number) {
  let last: { y: Float32Array; bins: JpegBins[] } | null = null;
  return (y: Tensor): JpegBins[] => {
    if (last && last.y.length === y.data.length && last.y.every((v, i) => v === y.data[i])) {
      return last.bins;
    }
    const per = model.per, nb = y.data.length / per;
    const bins = Array.from(
      { length: nb },
      (_, b) =>
        measurementBins(
          y.data.subarray(b * per, (b + 1) * per),
          model.geo,
          model.qz,
          margin,
          shrink,
        ),
    );
    last = { y: y.data.slice(), bins };
    return bins;
  };
}

/**
 * The JPEG operator: y = A(x), a differentiable model of libjpeg baseline encode + decode at IJG
 * quality `quality` (see the module doc). Non-linear: `vjp` is exact for the model;
 * `pseudoInverse(y) = y` (a decoded JPEG is already an image estimate).
 *
 * `proxL2`, by default (`data_term=bins`), is the prox of the bin data term D_y declared in
 * `proxDataTerm` (a DEVIATION from the contract's ‖A(u) − y‖², see `operators/jpeg/bin_prox.ts`):
 * convex, solved to the relative optimality residual `tol` (default 1e-5) by semismooth Newton–CG;
 * with a large γ its result re-encodes into y's bins. `data_term=surrogate` solves the contract's
 * least-squares problem of the smooth model instead (non-convex, a stationary point near z; slow,
 * and it cannot leave rounding plateaus).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createOperator, PluginRegistry } from "../core/registry.ts";
 * import { jpegPlugin } from "./jpeg.ts";
 * const registry = new PluginRegistry().register(jpegPlugin);
 * const op = await createOperator(registry, "jpeg:quality=30", [1, 3, 16, 16], 0);
 * assert.equal(op.proxDataTerm?.name, "jpeg-bins");
 * ```
 */
export const jpegPlugin: OperatorPlugin<JpegOptions> = defineOperator({
  kind: "operator",
  name: "jpeg",
  description:
    "JPEG compression (libjpeg/IJG tables, soft rounding; prox on the quantisation bins), e.g. jpeg:quality=10,subsampling=420",
  options: optionsSchema,
  create(options: JpegOptions, { shape }): JpegOperator {
    if (shape.length !== 4 || shape[1] !== 3) {
      throw new InputError(`jpeg: images must be [N,3,H,W] RGB, got [${shape}]`);
    }
    const [nb, , h, w] = shape;
    if (!(h >= 1 && w >= 1 && nb >= 1)) throw new InputError(`jpeg: empty image [${shape}]`);
    const geo = geometry(h, w, options.subsampling === 420);
    const model = new JpegModel(shape, geo, quantiser(options.quality, options.softness));
    const stages = new Map<number, JpegModel>([[options.softness, model]]);
    const stageModel = (softness: number) => {
      let m = stages.get(softness);
      if (!m) {
        stages.set(softness, m = new JpegModel(shape, geo, quantiser(options.quality, softness)));
      }
      return m;
    };
    const bins = binCache(model, options.bin_margin, options.bin_shrink);
    const per = model.per;
    const perImage = <T>(t: Tensor, f: (x: Float32Array, b: number) => T): T[] =>
      Array.from({ length: nb }, (_, b) => f(t.data.subarray(b * per, (b + 1) * per), b));
    const dataTerm: ProxDataTerm = {
      name: "jpeg-bins",
      description:
        `Σ ω dist(DCT coefficient, y's quantisation bin shrunk by max(${options.bin_margin} levels, ` +
        `${options.bin_shrink}·Q))² / 255²`,
      value(u: Tensor, y: Tensor) {
        assertShape(u, shape, "jpeg: u");
        assertShape(y, shape, "jpeg: y");
        const by = bins(y);
        return Promise.resolve(
          perImage(u, (x, b) => binDataTerm(x, geo, by[b])).reduce((a, v) => a + v, 0),
        );
      },
      halfGradient(u: Tensor, y: Tensor) {
        assertShape(u, shape, "jpeg: u");
        assertShape(y, shape, "jpeg: y");
        const by = bins(y), out = new Float32Array(u.data.length);
        perImage(u, (x, b) => out.set(binDataTermHalfGradient(x, geo, by[b]), b * per));
        return Promise.resolve({ data: out, shape: [...shape] });
      },
    };
    const op: JpegOperator = {
      name: "jpeg",
      options,
      inputShape: [...shape],
      outputShape: [...shape],
      capabilities: { linear: false, closedFormProx: false, differentiable: true },
      forward: (x) => model.forward(x),
      vjp: (x, gy) => model.vjp(x, gy),
      ...(options.data_term === "bins" ? { proxDataTerm: dataTerm } : {}),
      proxL2(zt: Tensor, y: Tensor, gamma: number, opts: ProxOptions = {}) {
        assertShape(zt, shape, "jpeg: z");
        assertShape(y, shape, "jpeg: y");
        if (!(gamma > 0) || !Number.isFinite(gamma)) {
          throw new RangeError(`jpeg: prox γ must be a positive number, got ${gamma}`);
        }
        if (options.data_term === "surrogate") {
          return surrogateProxL2(stageModel, options.softness, zt, y, gamma, opts);
        }
        const by = bins(y), out = new Float32Array(zt.data.length);
        perImage(zt, (z, b) => out.set(binProxImage(z, geo, by[b], gamma, opts).u, b * per));
        return Promise.resolve({ data: out, shape: [...shape] });
      },
      proxModel: (u, y, gamma) => surrogateProxModel(model, u, y, gamma),
      pseudoInverse(y) {
        assertShape(y, shape, "jpeg: y");
        return Promise.resolve({ data: y.data.slice(), shape: [...shape] });
      },
    };
    return op;
  },
});
