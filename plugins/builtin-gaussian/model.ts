/**
 * One instance of the exact model: image size, latent layout, spectrum constants, θ0 and the text
 * model. Everything the ONNX graphs and the closed forms share is derived from this object, and it
 * round-trips through the folder's `exact_model.json`.
 *
 * @module
 */
import {
  type LatentLayout,
  latentLayout,
  type PriorMoments,
  priorMoments,
  type SpectrumConstants,
  thetaFromEmbedding,
} from "./closed_form.ts";
import {
  buildTextModel,
  DEFAULT_SPECTRUM,
  DEFAULT_THETA,
  EXACT_HIDDEN_SIZE,
  EXACT_MAX_LENGTH,
  type TextModel,
} from "./params.ts";
import { referenceTokenize } from "./bpe_vocab.ts";

/** Options of the exact model. */
export interface ExactModelOptions {
  /** Image shape [1,3,H,W] the graphs are built for. */
  imageShape: readonly number[];
  /** Lossy latent: [K_h, K_w] block, or a per-axis keep fraction in (0,1]; absent: lossless. */
  lossy?: readonly [number, number] | number | null;
  /** Latent scaling factor s (VAE `scaling_factor`), default 1. */
  scale?: number;
  /** θ0, the prior of the empty prompt (9 numbers), default {@link DEFAULT_THETA}. */
  theta0?: readonly number[];
  /** ρ0, default 1/64. */
  rho0?: number;
  /** Size reference N_ref (0 disables the size scaling), default 64. */
  refSize?: number;
  /** Embedding width D, default 16. */
  hiddenSize?: number;
}

/** A fully specified exact model. */
export interface ExactModel {
  /** The options it was built from (normalised). */
  options: Required<Omit<ExactModelOptions, "lossy">> & { lossy: [number, number] | null };
  /** Latent layout. */
  layout: LatentLayout;
  /** ρ0 and N_ref. */
  spectrum: SpectrumConstants;
  /** The text encoder's vocabulary, embeddings and θ read-out. */
  text: TextModel;
}

/**
 * Build an exact model.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, promptTheta } from "./model.ts";
 * const m = createExactModel({ imageShape: [1, 3, 16, 24] });
 * const sharp = promptTheta(m, "a sharp photo"), plain = promptTheta(m, "");
 * assert.ok(sharp[3] < plain[3]); // β_1 is lower: a flatter spectrum
 * ```
 */
export function createExactModel(o: ExactModelOptions): ExactModel {
  const scale = o.scale ?? 1;
  const layout = latentLayout(o.imageShape, o.lossy ?? null, scale);
  const spectrum = {
    rho0: o.rho0 ?? DEFAULT_SPECTRUM.rho0,
    refSize: o.refSize ?? DEFAULT_SPECTRUM.refSize,
  };
  if (!(spectrum.rho0 > 0) || !(spectrum.refSize >= 0)) {
    throw new RangeError(`rho0 must be > 0 and refSize ≥ 0`);
  }
  const theta0 = [...(o.theta0 ?? DEFAULT_THETA)];
  const hiddenSize = o.hiddenSize ?? EXACT_HIDDEN_SIZE;
  const text = buildTextModel(theta0, spectrum, hiddenSize, EXACT_MAX_LENGTH);
  const lossy: [number, number] | null =
    layout.keepH === layout.height && layout.keepW === layout.width
      ? null
      : [layout.keepH, layout.keepW];
  return {
    options: {
      imageShape: [1, 3, layout.height, layout.width],
      lossy,
      scale,
      theta0,
      rho0: spectrum.rho0,
      refSize: spectrum.refSize,
      hiddenSize,
    },
    layout,
    spectrum,
    text,
  };
}

/**
 * Token ids of a prompt ([T] ids: BOS … EOS, padded with EOS), by the reference tokenizer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, promptIds } from "./model.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8] });
 * const ids = promptIds(m, "a photo");
 * assert.equal(ids.length, m.text.maxLength); // BOS … EOS, padded to 77
 * assert.notEqual(ids[1], ids[ids.length - 1]);
 * ```
 */
export function promptIds(m: ExactModel, prompt: string): number[] {
  return referenceTokenize(prompt, m.text, m.text.maxLength);
}

/**
 * The embedding c = table[ids] (T×D values, float32 table values in float64).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, embedIds } from "./model.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8] });
 * const D = m.text.readout.hiddenSize;
 * const c = embedIds(m, [0, 1]);
 * assert.equal(c.length, 2 * D);
 * assert.equal(c[D], m.text.embeddings[D]); // row 1 of the table
 * assert.throws(() => embedIds(m, [-1]), RangeError);
 * ```
 */
export function embedIds(m: ExactModel, ids: readonly number[]): Float64Array {
  const D = m.text.readout.hiddenSize, V = m.text.vocab.length;
  const c = new Float64Array(ids.length * D);
  ids.forEach((id, t) => {
    if (!(Number.isInteger(id) && id >= 0 && id < V)) {
      throw new RangeError(`token id ${id} out of range`);
    }
    for (let d = 0; d < D; d++) c[t * D + d] = m.text.embeddings[id * D + d];
  });
  return c;
}

/**
 * θ of a prompt: W · mean_tokens(table[ids]) + b.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, promptTheta } from "./model.ts";
 * import { THETA_SIZE } from "./closed_form.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8] });
 * const theta = promptTheta(m, "a photo of a cat");
 * assert.equal(theta.length, THETA_SIZE);
 * assert.ok(theta.every(Number.isFinite));
 * ```
 */
export function promptTheta(m: ExactModel, prompt: string): Float64Array {
  return thetaFromEmbedding(embedIds(m, promptIds(m, prompt)), m.text.readout);
}

/**
 * θ of an embedding c (T×D values).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, embedIds, embeddingTheta, promptIds, promptTheta } from "./model.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8] });
 * const c = embedIds(m, promptIds(m, "a cat"));
 * assert.deepEqual(embeddingTheta(m, c), promptTheta(m, "a cat"));
 * ```
 */
export function embeddingTheta(m: ExactModel, c: ArrayLike<number>): Float64Array {
  return thetaFromEmbedding(c, m.text.readout);
}

/**
 * λ and μ of θ on this model's latent.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, modelMoments } from "./model.ts";
 * import { latentSize } from "./closed_form.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8], lossy: [4, 4] });
 * const { lambda, mu } = modelMoments(m, m.options.theta0);
 * assert.equal(lambda.length, latentSize(m.layout)); // 3·4·4
 * assert.equal(mu.length, 48);
 * assert.ok(lambda.every((v) => v > 0));
 * ```
 */
export function modelMoments(m: ExactModel, theta: ArrayLike<number>): PriorMoments {
  return priorMoments(theta, m.layout, m.spectrum);
}

/**
 * The `exact_model.json` description (enough to rebuild the model with {@link exactModelFromJson}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, exactModelJson } from "./model.ts";
 * const j = JSON.parse(exactModelJson(createExactModel({ imageShape: [1, 3, 8, 8], lossy: 0.5 })));
 * assert.deepEqual(j.latent_shape, [3, 4, 4]);
 * assert.deepEqual(j.lossy, [4, 4]);
 * ```
 */
export function exactModelJson(m: ExactModel): string {
  return JSON.stringify(
    {
      format: "latent-inverse exact model",
      version: 1,
      image_shape: m.options.imageShape,
      latent_shape: [3, m.layout.keepH, m.layout.keepW],
      lossy: m.options.lossy,
      scale: m.options.scale,
      theta0: m.options.theta0,
      rho0: m.spectrum.rho0,
      ref_size: m.spectrum.refSize,
      hidden_size: m.options.hiddenSize,
      max_length: m.text.maxLength,
      theta_order: ["a1", "a2", "a3", "beta1", "beta2", "beta3", "m1", "m2", "m3"],
      prior: "lambda = s^2 k^2 exp(a) (rho0^2 + k^2 rho^2)^(-beta/2), k = sqrt(HW)/ref_size; " +
        "mu_DC = m sqrt(HW) s; theta = W mean_tokens(c) + b",
      word_shifts: Object.fromEntries(
        Object.entries(m.text.shifts).map(([w, d]) => [w, Array.from(d)]),
      ),
    },
    null,
    2,
  );
}

/**
 * Rebuild an exact model from its `exact_model.json` text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createExactModel, exactModelFromJson, exactModelJson } from "./model.ts";
 * const m = createExactModel({ imageShape: [1, 3, 8, 8], scale: 0.5 });
 * const back = exactModelFromJson(exactModelJson(m));
 * assert.deepEqual(back.options, m.options);
 * assert.throws(() => exactModelFromJson("{}"), RangeError);
 * ```
 */
export function exactModelFromJson(text: string): ExactModel {
  const j = JSON.parse(text);
  if (j.format !== "latent-inverse exact model" || j.version !== 1) {
    throw new RangeError("exact_model.json: unknown format");
  }
  return createExactModel({
    imageShape: j.image_shape,
    lossy: j.lossy,
    scale: j.scale,
    theta0: j.theta0,
    rho0: j.rho0,
    refSize: j.ref_size,
    hiddenSize: j.hidden_size,
  });
}
