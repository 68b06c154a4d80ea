/**
 * Parameters of the built-in exact model: the default prior θ0, the spectrum constants, the
 * θ read-out W, b, and the tiny text encoder (word table → token embeddings).
 *
 * θ = (a_1,a_2,a_3, β_1,β_2,β_3, m_1,m_2,m_3), channels k = luminance, red–green, yellow–blue
 * (rows of the colour matrix C). θ = W · mean_tokens(c) + b with c ∈ R^{T×D}.
 *
 * Read-out: W = diag(g) Q, where Q (9×D) holds DCT-II basis vectors 1…9 of length D (orthonormal
 * rows, the constant direction is in the null space) and g = (1,1,1, ¼,¼,¼, 0.1,0.1,0.1) balances
 * the effect of a unit move in c on the likelihood (β multiplies log-frequencies of size ~4, m is
 * an intensity). W⁺ = Qᵀ diag(1/g) exactly.
 *
 * Text table: BOS, EOS/padding, byte tokens and neutral words embed to 0, so the empty prompt
 * gives θ = b = θ0. A word with shift Δθ_w embeds to e_w = T · W⁺ Δθ_w, so
 * θ(prompt) = θ0 + Σ_{words} Δθ_w: word effects add up, independent of the prompt length.
 *
 * All parameter values are rounded to float32 so that the float64 closed forms and the float32
 * ONNX graphs use exactly the same numbers.
 *
 * @module
 */
import type { Readout, SpectrumConstants } from "./spectra.ts";
import { COLOR_MATRIX } from "./basis.ts";
import { THETA_SIZE } from "./spectra.ts";
import { type BpeVocabulary, buildBpeVocabulary } from "./bpe_vocab.ts";

/**
 * Embedding width D of the tiny text encoder (≥ 9 so every θ is reachable).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXACT_HIDDEN_SIZE } from "./params.ts";
 * import { THETA_SIZE } from "./closed_form.ts";
 * assert.ok(EXACT_HIDDEN_SIZE >= THETA_SIZE);
 * ```
 */
export const EXACT_HIDDEN_SIZE = 16;
/**
 * Token count T (CLIP's 77).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildTextModel, EXACT_MAX_LENGTH } from "./params.ts";
 * assert.equal(buildTextModel().maxLength, EXACT_MAX_LENGTH);
 * ```
 */
export const EXACT_MAX_LENGTH = 77;

/**
 * ρ0 = 1/64 and the size reference N_ref = 16 (see closed_form.ts).
 *
 * DEVIATION (a tuning choice, not from the study): θ0 below was fitted with N_ref = 64 at 96×64.
 * Served with N_ref = 64 at full Kodak size (768×512) the prior puts more high-frequency variance
 * than full-size photographs have, and single LATINO samples then lose to Aᵀy on smooth images
 * (kodim02: 26.1 dB vs 26.6 dB for Gaussian blur σ=3, σ_y=0.01). N_ref = 16 keeps the same θ0 but
 * extrapolates to large images with a smoother high-frequency tail (variance ∝ κ^(2−β), κ =
 * √(HW)/N_ref): LATINO then beats Aᵀy on all of kodim01–12 by 0.3–3.4 dB (README). Tests that
 * reproduce the study at 64×64 pass `refSize: 64` explicitly. The ML fit at full size is not the
 * answer: it makes samples noisier still (kodim02: 23.7 dB).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_SPECTRUM } from "./params.ts";
 * assert.deepEqual(DEFAULT_SPECTRUM, { rho0: 1 / 64, refSize: 16 });
 * assert.ok(Object.isFrozen(DEFAULT_SPECTRUM));
 * ```
 */
export const DEFAULT_SPECTRUM: Readonly<SpectrumConstants> = Object.freeze({
  rho0: 1 / 64,
  refSize: 16,
});

/**
 * The default θ0 (what the empty prompt gives): maximum-likelihood fit of this prior to the twelve
 * Kodak images kodim01–12, each box-downsampled 8× to 96×64 (or 64×96), pooled, with ρ0 = 1/64,
 * N_ref = 64 (`deno run -A plugins/builtin-gaussian/fit_defaults.ts ../shared/data/kodak`, which
 * prints this vector, the fit at 4× (192×128) as a check of the size scaling, and the gradient).
 *
 * Size scaling check (same script, fits at 16×, 8×, 4× downsampling): a_1 = −4.44, −4.20, −3.84 and
 * β_1 = 2.60, 2.64, 2.59; the 8× fit loses 0.021 / 0.026 nats per coordinate against the images'
 * own fits at 16× / 4×, versus 0.036 / 0.050 with the scaling switched off (refSize = 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_THETA, makeReadout } from "./params.ts";
 * import { thetaFromEmbedding } from "./closed_form.ts";
 * // θ0 is the read-out bias: a zero embedding (the empty prompt) gives θ0 (float32-rounded).
 * const r = makeReadout(DEFAULT_THETA);
 * const theta = thetaFromEmbedding(new Float64Array(2 * r.hiddenSize), r);
 * assert.deepEqual([...theta], DEFAULT_THETA.map(Math.fround));
 * ```
 */
export const DEFAULT_THETA: readonly number[] = Object.freeze([
  -4.1985,
  -7.5053,
  -7.5162,
  2.6441,
  3.0748,
  3.008,
  -0.2541,
  0.07,
  0.1516,
]);

/**
 * The ML fit of exact-model-study.md §1 (one 64×64 Kodak crop: a brick wall and a red door). At
 * 64×64 it is the same prior as in the study; handy for tests that reproduce the study.
 */
export const STUDY_THETA: readonly number[] = Object.freeze([
  -3.82,
  -10.45,
  -10.63,
  2.67,
  3.09,
  2.82,
  -0.157,
  0.042,
  0.177,
]);

/**
 * Row gains g of the read-out W = diag(g) Q.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { READOUT_GAINS } from "./params.ts";
 * assert.deepEqual(READOUT_GAINS, [1, 1, 1, 0.25, 0.25, 0.25, 0.1, 0.1, 0.1]);
 * ```
 */
export const READOUT_GAINS: readonly number[] = Object.freeze([
  1,
  1,
  1,
  0.25,
  0.25,
  0.25,
  0.1,
  0.1,
  0.1,
]);

/**
 * The pivot scene frequency κρ_p = 1/8 of a slope change (λ there is unchanged).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_SPECTRUM, SLOPE_PIVOT, wordShift } from "./params.ts";
 * // A slope change leaves log λ = a − (β/2)·log(ρ0² + ρ_p²) unchanged at the pivot.
 * const d = wordShift({ slope: 0.8 });
 * const Lp = Math.log(DEFAULT_SPECTRUM.rho0 ** 2 + SLOPE_PIVOT ** 2);
 * assert.ok(Math.abs(d[0] - 0.5 * d[3] * Lp) < 1e-15);
 * ```
 */
export const SLOPE_PIVOT = 1 / 8;

/** What a word does to θ. */
export interface WordEffect {
  /** Δβ for all channels, with a compensating Δa so that λ at the pivot frequency is unchanged. */
  slope?: number;
  /** Δa (log-variance) for all channels (number) or per channel. */
  energy?: number | readonly [number, number, number];
  /** Δa of the two chroma channels. */
  chroma?: number;
  /** A shift of the mean colour in model-scale RGB ([−1,1] units); Δm = C·Δrgb. */
  rgb?: readonly [number, number, number];
}

/**
 * Words that move θ. "sharp" flattens the spectrum (more fine detail), "smooth"/"blurry" steepen
 * it, "bright"/"dark" move the mean, colour words move the mean colour, "colorful"/"grayscale"
 * scale the chroma variance.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WORD_EFFECTS } from "./params.ts";
 * assert.ok(WORD_EFFECTS.sharp.slope! < 0); // flatter spectrum: more fine detail
 * assert.ok(WORD_EFFECTS.blurry.slope! > 0);
 * ```
 */
export const WORD_EFFECTS: Readonly<Record<string, WordEffect>> = Object.freeze({
  sharp: { slope: -0.4 },
  crisp: { slope: -0.4 },
  detailed: { slope: -0.3 },
  textured: { slope: -0.3, energy: 0.3 },
  noisy: { slope: -1.0 },
  grainy: { slope: -1.0 },
  smooth: { slope: 0.4 },
  soft: { slope: 0.4 },
  blurry: { slope: 0.8 },
  blurred: { slope: 0.8 },
  bright: { rgb: [0.3, 0.3, 0.3] },
  dark: { rgb: [-0.3, -0.3, -0.3] },
  colorful: { chroma: 1.0 },
  colourful: { chroma: 1.0 },
  vivid: { chroma: 1.0 },
  saturated: { chroma: 1.0 },
  grayscale: { chroma: -4.0 },
  greyscale: { chroma: -4.0 },
  monochrome: { chroma: -4.0 },
  dramatic: { energy: [1.0, 0, 0] },
  faded: { energy: -1.0, rgb: [0.15, 0.15, 0.15] },
  hazy: { energy: -1.0, rgb: [0.2, 0.2, 0.2] },
  red: { rgb: [0.3, -0.15, -0.15] },
  green: { rgb: [-0.15, 0.3, -0.15] },
  blue: { rgb: [-0.15, -0.15, 0.3] },
  yellow: { rgb: [0.2, 0.2, -0.3] },
  warm: { rgb: [0.1, 0, -0.1] },
  cool: { rgb: [-0.1, 0, 0.1] },
});

/**
 * Common prompt words that are single tokens with a zero (neutral) embedding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NEUTRAL_WORDS, WORD_EFFECTS } from "./params.ts";
 * assert.ok(NEUTRAL_WORDS.includes("photo"));
 * assert.ok(NEUTRAL_WORDS.every((w) => !(w in WORD_EFFECTS)));
 * ```
 */
export const NEUTRAL_WORDS: readonly string[] = Object.freeze([
  "a",
  "an",
  "the",
  "of",
  "and",
  "with",
  "in",
  "on",
  "at",
  "photo",
  "photograph",
  "picture",
  "image",
  "high",
  "quality",
  "face",
  "cat",
  "dog",
  "person",
  "portrait",
  "landscape",
  "scene",
  "wall",
  "brick",
  "door",
  "sky",
]);

/**
 * Δθ of a word effect (9 values).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wordShift } from "./params.ts";
 * // A grey brightening only moves the luminance mean: Δm = C·Δrgb = (0.3·√3, 0, 0).
 * const d = wordShift({ rgb: [0.3, 0.3, 0.3] });
 * assert.ok(Math.abs(d[6] - 0.3 * Math.sqrt(3)) < 1e-15);
 * assert.ok(Math.abs(d[7]) < 1e-15 && Math.abs(d[8]) < 1e-15);
 * assert.deepEqual([...wordShift({ chroma: 1 }).subarray(0, 3)], [0, 1, 1]);
 * ```
 */
export function wordShift(
  e: WordEffect,
  spectrum: SpectrumConstants = DEFAULT_SPECTRUM,
): Float64Array {
  const d = new Float64Array(THETA_SIZE);
  if (e.slope) {
    const Lp = Math.log(spectrum.rho0 ** 2 + SLOPE_PIVOT ** 2);
    for (let k = 0; k < 3; k++) {
      d[3 + k] += e.slope;
      d[k] += 0.5 * e.slope * Lp; // Δa − (Δβ/2)L_p = 0
    }
  }
  if (e.energy !== undefined) {
    const en = typeof e.energy === "number" ? [e.energy, e.energy, e.energy] : e.energy;
    for (let k = 0; k < 3; k++) d[k] += en[k];
  }
  if (e.chroma) {
    d[1] += e.chroma;
    d[2] += e.chroma;
  }
  if (e.rgb) {
    for (let k = 0; k < 3; k++) {
      for (let c = 0; c < 3; c++) d[6 + k] += COLOR_MATRIX[k * 3 + c] * e.rgb[c];
    }
  }
  return d;
}

/** Q: DCT-II basis vectors 1…9 of length D as rows (9×D, orthonormal rows). */
function readoutBasis(D: number): Float64Array {
  const q = new Float64Array(THETA_SIZE * D);
  for (let j = 0; j < THETA_SIZE; j++) {
    for (let d = 0; d < D; d++) {
      q[j * D + d] = Math.sqrt(2 / D) * Math.cos(Math.PI * (2 * d + 1) * (j + 1) / (2 * D));
    }
  }
  return q;
}

/**
 * The read-out θ = W·mean(c) + b with W = diag(g)Q and b = θ0 (float32-rounded).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_THETA, makeReadout } from "./params.ts";
 * const r = makeReadout(DEFAULT_THETA, 12);
 * assert.equal(r.hiddenSize, 12);
 * assert.equal(r.W.length, 9 * 12);
 * assert.throws(() => makeReadout(DEFAULT_THETA, 8), RangeError); // D must be ≥ 9
 * ```
 */
export function makeReadout(theta0: readonly number[], D = EXACT_HIDDEN_SIZE): Readout {
  if (D < THETA_SIZE) throw new RangeError(`hidden size ${D}: expected ≥ 9`);
  if (theta0.length !== THETA_SIZE || !theta0.every(Number.isFinite)) {
    throw new RangeError(`θ0 must be 9 finite numbers`);
  }
  const q = readoutBasis(D);
  const W = new Float64Array(THETA_SIZE * D);
  for (let j = 0; j < THETA_SIZE; j++) {
    for (let d = 0; d < D; d++) W[j * D + d] = Math.fround(READOUT_GAINS[j] * q[j * D + d]);
  }
  const b = Float64Array.from(theta0, Math.fround);
  return { hiddenSize: D, W, b };
}

/** The tiny text model: vocabulary, embedding table and read-out. */
export interface TextModel extends BpeVocabulary {
  /** Embedding table, V×D row-major (float32 values). */
  embeddings: Float32Array;
  /** θ read-out. */
  readout: Readout;
  /** Token count T. */
  maxLength: number;
  /** Δθ of each effect word (as intended; the table realises it up to float32 rounding). */
  shifts: Record<string, Float64Array>;
}

/**
 * Build the vocabulary, the embedding table e_w = T·W⁺Δθ_w and the read-out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildTextModel, EXACT_HIDDEN_SIZE } from "./params.ts";
 * const t = buildTextModel();
 * assert.equal(t.embeddings.length, t.vocab.length * EXACT_HIDDEN_SIZE);
 * assert.ok(t.vocab.includes("sharp</w>"));
 * assert.ok(t.shifts.sharp[3] < 0); // "sharp" lowers β
 * ```
 */
export function buildTextModel(
  theta0: readonly number[] = DEFAULT_THETA,
  spectrum: SpectrumConstants = DEFAULT_SPECTRUM,
  D = EXACT_HIDDEN_SIZE,
  T = EXACT_MAX_LENGTH,
): TextModel {
  const readout = makeReadout(theta0, D);
  const effectWords = Object.keys(WORD_EFFECTS);
  const words = [...new Set([...NEUTRAL_WORDS, ...effectWords])].sort((x, y) =>
    x.length - y.length || (x < y ? -1 : 1)
  );
  const v = buildBpeVocabulary(words);
  const V = v.vocab.length;
  const embeddings = new Float32Array(V * D);
  const q = readoutBasis(D);
  const ids = new Map(v.vocab.map((t, i) => [t, i] as const));
  const shifts: Record<string, Float64Array> = {};
  for (const w of effectWords) {
    const dt = wordShift(WORD_EFFECTS[w], spectrum);
    shifts[w] = dt;
    const id = ids.get(w + "</w>")!;
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let j = 0; j < THETA_SIZE; j++) s += q[j * D + d] * dt[j] / READOUT_GAINS[j];
      embeddings[id * D + d] = T * s;
    }
  }
  return { ...v, embeddings, readout, maxLength: T, shifts };
}
