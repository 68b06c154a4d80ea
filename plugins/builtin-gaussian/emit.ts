/**
 * The exact model as an Optimum/diffusers-style ONNX folder, emitted by our own code:
 *
 * ```
 * model_index.json, exact_model.json (our description of the closed forms)
 * scheduler/scheduler_config.json      DDPMScheduler, scaled_linear, epsilon, 1000 steps
 * text_encoder/{model.onnx,config.json}     input_ids [B,77] int64 → last_hidden_state [B,77,D], pooler_output [B,D]
 * tokenizer/{vocab.json,merges.txt,tokenizer_config.json,special_tokens_map.json}
 * unet/{model.onnx,config.json}             ε-prediction = exact Tweedie
 * consistency_unet/{model.onnx,config.json} prediction_type "sample" = exact consistency map G
 * vae_encoder/{model.onnx,config.json}      sample [B,3,H,W] → latent_parameters [B,6,K_h,K_w]
 * vae_decoder/{model.onnx,config.json}      latent_sample [B,3,K_h,K_w] → sample [B,3,H,W]
 * ```
 *
 * The graphs are float32 and size-specific. As in diffusers, the VAE graphs work on unscaled
 * latents (DCT coefficients); the loader multiplies by `scaling_factor` = s after encoding and
 * divides before decoding. The UNets work on scaled latents z = s·DCT(Cx′).
 *
 * VAE variance convention: `latent_parameters` = mean ‖ logvar with logvar = −30 everywhere, the
 * lower clamp of diffusers' DiagonalGaussianDistribution (std e^−15 ≈ 3e−7, below float32
 * resolution at unit scale), so `.mode()`/`.mean` is the exact encoder and `.sample()` differs
 * from it by float32 noise only.
 *
 * The UNets compute λ and μ inside the graph from `encoder_hidden_states` (ReduceMean over tokens,
 * MatMul with Wᵀ, Add b, Exp), so gradients with respect to the embedding flow through plain ops;
 * ᾱ_t is looked up by Gather from 1000-entry tables (timestep rounded, clipped to [0,999], cast to
 * int64). 1 − ᾱ, √ᾱ and √(1−ᾱ) have their own tables (computed in float64) to avoid float32
 * cancellation near t = 0.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { GraphBuilder } from "../../core/onnx/builder.ts";
import { dctMatrix } from "../../core/linalg/dct.ts";
import { InputError } from "../../core/errors.ts";
import {
  COLOR_MATRIX,
  dcWeight,
  exactSchedule,
  logFrequencyTerm,
  logVarianceOffset,
  NUM_TRAIN_TIMESTEPS,
  THETA_SIZE,
} from "./closed_form.ts";
import { BOS_TOKEN, EOS_TOKEN, mergesTxt, vocabJson } from "./bpe_vocab.ts";
import {
  createExactModel,
  type ExactModel,
  exactModelFromJson,
  exactModelJson,
  type ExactModelOptions,
} from "./model.ts";

/** log-variance written by the VAE encoder (diffusers' lower clamp). */
export const VAE_LOGVAR: number = -30;

const OPSET = 17;

/** Φ restricted to its first k rows (k×n), float64 (rounded once when emitted in float32). */
function dctRows(n: number, k: number): Float64Array {
  return Float64Array.from(dctMatrix(n).subarray(0, k * n));
}

/** Transpose an r×c row-major matrix. */
function transpose(m: ArrayLike<number>, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = m[i * c + j];
  return out;
}

/**
 * Element type of the emitted graphs: float32 (the model), or float64 for tests that compare the
 * graphs and their VJPs with the float64 closed forms to 1e-9 (ONNX Runtime has double kernels
 * for every op used here).
 */
export type EmitType = "float32" | "float64";

/** A float constant of the graph's element type. */
function constT(
  g: GraphBuilder,
  dtype: EmitType,
  hint: string,
  dims: number[],
  v: ArrayLike<number>,
) {
  return g.initializer(hint, dtype, dims, v);
}

/** Apply a 3×3 colour matrix to [B,3,H,W] by MatMul over the channel axis. */
function colourMix(
  g: GraphBuilder,
  dtype: EmitType,
  x: string,
  M: ArrayLike<number>,
  H: number,
  W: number,
): string {
  const flat = g.op("Reshape", [x, g.constI("shape_b3n", [-1, 3, H * W])]);
  const mixed = g.op("MatMul", [constT(g, dtype, "colour", [3, 3], M), flat]);
  return g.op("Reshape", [mixed, g.constI("shape_b3hw", [-1, 3, H, W])]);
}

/** vae_encoder: sample [B,3,H,W] → latent_parameters [B,6,K_h,K_w] = DCT(Cx) ‖ −30. */
export function encoderGraph(m: ExactModel, dtype: EmitType = "float32"): Uint8Array {
  const { height: H, width: W, keepH: kh, keepW: kw } = m.layout;
  const g = new GraphBuilder("exact_vae_encoder", OPSET);
  const x = g.input("sample", dtype, ["batch", 3, H, W]);
  const y = colourMix(g, dtype, x, COLOR_MATRIX, H, W);
  const t = g.op("MatMul", [constT(g, dtype, "dct_h", [kh, H], dctRows(H, kh)), y]); // Φ_H[:K] Y
  const dctWt = transpose(dctRows(W, kw), kw, W);
  const z = g.op("MatMul", [t, constT(g, dtype, "dct_w_t", [W, kw], dctWt)]);
  const logvar = g.op("Expand", [
    constT(g, dtype, "logvar", [1, 1, 1, 1], [VAE_LOGVAR]),
    g.op("Shape", [z]),
  ]);
  const out = g.op("Concat", [z, logvar], { axis: 1 });
  g.output(out, "latent_parameters", dtype, ["batch", 6, kh, kw]);
  return g.toBytes();
}

/** vae_decoder: latent_sample [B,3,K_h,K_w] → sample [B,3,H,W] = Cᵀ IDCT(Pᵀ z). */
export function decoderGraph(m: ExactModel, dtype: EmitType = "float32"): Uint8Array {
  const { height: H, width: W, keepH: kh, keepW: kw } = m.layout;
  const g = new GraphBuilder("exact_vae_decoder", OPSET);
  const z = g.input("latent_sample", dtype, ["batch", 3, kh, kw]);
  const dctHt = transpose(dctRows(H, kh), kh, H);
  const t = g.op("MatMul", [constT(g, dtype, "dct_h_t", [H, kh], dctHt), z]);
  const x = g.op("MatMul", [t, constT(g, dtype, "dct_w", [kw, W], dctRows(W, kw))]);
  const ct = transpose(COLOR_MATRIX, 3, 3);
  g.output(colourMix(g, dtype, x, ct, H, W), "sample", dtype, ["batch", 3, H, W]);
  return g.toBytes();
}

/** text_encoder: Gather from the embedding table; pooler_output = mean over tokens. */
export function textEncoderGraph(m: ExactModel): Uint8Array {
  const D = m.text.readout.hiddenSize, V = m.text.vocab.length, T = m.text.maxLength;
  const g = new GraphBuilder("exact_text_encoder", OPSET);
  const ids = g.input("input_ids", "int64", ["batch", T]);
  const table = g.constF("token_embedding", [V, D], m.text.embeddings);
  const h = g.op("Gather", [table, ids], { axis: 0 });
  g.output(h, "last_hidden_state", "float32", ["batch", T, D]);
  const pooled = g.op("ReduceMean", [h], { axes: [1], keepdims: 0 });
  g.output(pooled, "pooler_output", "float32", ["batch", D]);
  return g.toBytes();
}

/** Which UNet output. */
export type UnetKind = "epsilon" | "sample";

/**
 * unet (ε) / consistency_unet (sample): inputs sample [B,3,K_h,K_w], timestep f32 [],
 * encoder_hidden_states [B,T,D]; output out_sample.
 *   θ = W mean_tokens(c) + b;  log λ = a + log(s²κ²) − (β/2) L;  μ = m·√(HW)s at DC;
 *   d = z − √ᾱ μ;  den = ᾱλ + (1 − ᾱ);
 *   ε̂ = √(1−ᾱ) d / den;   G = μ + √(λ/den) d.
 */
export function unetGraph(m: ExactModel, kind: UnetKind, dtype: EmitType = "float32"): Uint8Array {
  const { keepH: kh, keepW: kw } = m.layout;
  const { hiddenSize: D, W, b } = m.text.readout;
  const T = m.text.maxLength;
  const g = new GraphBuilder(kind === "epsilon" ? "exact_unet" : "exact_consistency_unet", OPSET);
  const cf = (hint: string, dims: number[], v: ArrayLike<number>) =>
    constT(g, dtype, hint, dims, v);
  const z = g.input("sample", dtype, ["batch", 3, kh, kw]);
  const ts = g.input("timestep", dtype, []);
  const c = g.input("encoder_hidden_states", dtype, ["batch", T, D]);

  // θ = W · mean_tokens(c) + b  → a, β, m as [B,3,1,1]
  const cbar = g.op("ReduceMean", [c], { axes: [1], keepdims: 0 });
  const wt = cf("readout_w_t", [D, THETA_SIZE], transpose(W, THETA_SIZE, D));
  const theta = g.op(
    "Add",
    [g.op("MatMul", [cbar, wt]), cf("readout_b", [THETA_SIZE], b)],
    {},
    "theta",
  );
  const axis1 = g.constI("axis1", [1]);
  const shape4 = g.constI("shape_b311", [-1, 3, 1, 1]);
  const part = (from: number, hint: string) =>
    g.op(
      "Reshape",
      [
        g.op("Slice", [theta, g.constI("start", [from]), g.constI("end", [from + 3]), axis1]),
        shape4,
      ],
      {},
      hint,
    );
  const a = part(0, "a"), beta = part(3, "beta"), mk = part(6, "m");

  // λ = exp(a + log(s²κ²) − (β/2) L)
  const L = cf(
    "log_freq",
    [1, 1, kh, kw],
    Float64Array.from(logFrequencyTerm(m.layout, m.spectrum)),
  );
  const off = cf("log_var_offset", [], [logVarianceOffset(m.layout, m.spectrum)]);
  const halfBeta = g.op("Mul", [beta, cf("minus_half", [], [-0.5])]);
  const logLam = g.op("Add", [g.op("Add", [a, off]), g.op("Mul", [halfBeta, L])]);
  const lam = g.op("Exp", [logLam], {}, "lambda");
  // μ = m · √(HW)s · δ_{(u,v)=(0,0)}
  const dcMask = new Float64Array(kh * kw);
  dcMask[0] = dcWeight(m.layout);
  const mu = g.op("Mul", [mk, cf("dc_weight", [1, 1, kh, kw], dcMask)], {}, "mu");

  // Schedule lookups.
  const sched = exactSchedule();
  const tab = (hint: string, f: (t: number) => number) =>
    cf(
      hint,
      [NUM_TRAIN_TIMESTEPS],
      Float64Array.from({ length: NUM_TRAIN_TIMESTEPS }, (_, t) => f(t)),
    );
  // round to the nearest integer as Floor(t + ½) (ONNX `Round` has no WebGPU kernel; the two
  // differ only at exact halves, which integer timesteps never hit)
  const tClip = g.op("Clip", [
    g.op("Floor", [g.op("Add", [ts, cf("half", [], [0.5])])]),
    cf("t_min", [], [0]),
    cf("t_max", [], [NUM_TRAIN_TIMESTEPS - 1]),
  ]);
  const idx = g.op("Cast", [tClip], { to: 7 /* INT64 */ }, "t_index");
  const look = (table: string, hint: string) => g.op("Gather", [table, idx], { axis: 0 }, hint);
  const ab = look(tab("alphas_cumprod", (t) => sched.alphasCumprod[t]), "abar");
  const om = look(
    tab("one_minus_alphas_cumprod", (t) => sched.oneMinusAlphasCumprod[t]),
    "one_minus_abar",
  );
  const sab = look(
    tab("sqrt_alphas_cumprod", (t) => Math.sqrt(sched.alphasCumprod[t])),
    "sqrt_abar",
  );

  const d = g.op("Sub", [z, g.op("Mul", [sab, mu])], {}, "centred");
  const den = g.op("Add", [g.op("Mul", [ab, lam]), om], {}, "marginal_var");
  let out: string;
  if (kind === "epsilon") {
    const som = look(
      tab("sqrt_one_minus_alphas_cumprod", (t) => Math.sqrt(sched.oneMinusAlphasCumprod[t])),
      "sqrt_one_minus_abar",
    );
    out = g.op("Mul", [som, g.op("Div", [d, den])], {}, "eps");
  } else {
    const k = g.op("Sqrt", [g.op("Div", [lam, den])], {}, "gain");
    out = g.op("Add", [mu, g.op("Mul", [k, d])], {}, "g_map");
  }
  g.output(out, "out_sample", dtype, ["batch", 3, kh, kw]);
  return g.toBytes();
}

/** Files of a folder: relative path → bytes (ONNX) or text (JSON, txt). */
export type ExactModelFileMap = Map<string, Uint8Array | string>;

function json(o: unknown): string {
  return JSON.stringify(o, null, 2) + "\n";
}

/**
 * Build the whole folder in memory for `options.imageShape`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildExactModelFiles } from "./emit.ts";
 * const files = buildExactModelFiles({ imageShape: [1, 3, 16, 24] });
 * assert.ok(files.has("unet/model.onnx") && files.has("tokenizer/vocab.json"));
 * ```
 */
export function buildExactModelFiles(options: ExactModelOptions | ExactModel): ExactModelFileMap {
  const m = "layout" in options ? options : createExactModel(options);
  const { height: H, width: W, keepH: kh, keepW: kw, scale: s } = m.layout;
  const D = m.text.readout.hiddenSize, T = m.text.maxLength;
  const files: ExactModelFileMap = new Map();
  const ver = "0.32.2";
  files.set(
    "model_index.json",
    json({
      _class_name: "ORTStableDiffusionPipeline",
      _diffusers_version: ver,
      _exact_model: "exact_model.json",
      scheduler: ["diffusers", "DDPMScheduler"],
      text_encoder: ["diffusers", "OnnxRuntimeModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      unet: ["diffusers", "OnnxRuntimeModel"],
      consistency_unet: ["diffusers", "OnnxRuntimeModel"],
      vae_encoder: ["diffusers", "OnnxRuntimeModel"],
      vae_decoder: ["diffusers", "OnnxRuntimeModel"],
    }),
  );
  files.set("exact_model.json", exactModelJson(m) + "\n");
  files.set(
    "scheduler/scheduler_config.json",
    json({
      _class_name: "DDPMScheduler",
      _diffusers_version: ver,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      num_train_timesteps: NUM_TRAIN_TIMESTEPS,
      prediction_type: "epsilon",
      clip_sample: false,
      set_alpha_to_one: false,
      steps_offset: 1,
      timestep_spacing: "leading",
      trained_betas: null,
      variance_type: "fixed_small",
    }),
  );
  const unetConfig = (prediction: UnetKind) => ({
    _class_name: "UNet2DConditionModel",
    _diffusers_version: ver,
    in_channels: 3,
    out_channels: 3,
    sample_size: [kh, kw],
    cross_attention_dim: D,
    prediction_type: prediction,
    exact_model: prediction === "epsilon"
      ? "exact Tweedie denoiser as epsilon prediction"
      : "exact consistency map G(z_t,t) (probability-flow ODE to alpha_bar = 1), c_skip = 0",
  });
  files.set("unet/model.onnx", unetGraph(m, "epsilon"));
  files.set("unet/config.json", json(unetConfig("epsilon")));
  files.set("consistency_unet/model.onnx", unetGraph(m, "sample"));
  files.set("consistency_unet/config.json", json(unetConfig("sample")));
  const vaeConfig = {
    _class_name: "AutoencoderKL",
    _diffusers_version: ver,
    in_channels: 3,
    out_channels: 3,
    latent_channels: 3,
    sample_size: [H, W],
    scaling_factor: s,
    latent_shape: [3, kh, kw],
    exact_model: "orthonormal colour transform + whole-image orthonormal DCT-II" +
      (kh < H || kw < W ? `, low-frequency ${kh}x${kw} block kept` : ", lossless") +
      `; logvar = ${VAE_LOGVAR}`,
  };
  files.set("vae_encoder/model.onnx", encoderGraph(m));
  files.set("vae_encoder/config.json", json(vaeConfig));
  files.set("vae_decoder/model.onnx", decoderGraph(m));
  files.set("vae_decoder/config.json", json(vaeConfig));
  files.set("text_encoder/model.onnx", textEncoderGraph(m));
  files.set(
    "text_encoder/config.json",
    json({
      architectures: ["CLIPTextModel"],
      model_type: "clip_text_model",
      hidden_size: D,
      projection_dim: D,
      max_position_embeddings: T,
      vocab_size: m.text.vocab.length,
      bos_token_id: m.text.bosId,
      eos_token_id: m.text.eosId,
      pad_token_id: m.text.eosId,
      exact_model: "embedding-table lookup; pooler_output = mean over tokens",
    }),
  );
  files.set("tokenizer/vocab.json", vocabJson(m.text));
  files.set("tokenizer/merges.txt", mergesTxt(m.text));
  files.set(
    "tokenizer/tokenizer_config.json",
    json({
      add_prefix_space: false,
      bos_token: BOS_TOKEN,
      eos_token: EOS_TOKEN,
      pad_token: EOS_TOKEN,
      unk_token: EOS_TOKEN,
      do_lower_case: true,
      errors: "replace",
      model_max_length: T,
      tokenizer_class: "CLIPTokenizer",
    }),
  );
  files.set(
    "tokenizer/special_tokens_map.json",
    json({
      bos_token: BOS_TOKEN,
      eos_token: EOS_TOKEN,
      pad_token: EOS_TOKEN,
      unk_token: EOS_TOKEN,
    }),
  );
  return files;
}

/** The exact model described by a folder's `exact_model.json`. */
export function exactModelFromFiles(files: ExactModelFileMap): ExactModel {
  const text = files.get("exact_model.json");
  if (text === undefined) throw new RangeError("folder has no exact_model.json");
  return exactModelFromJson(typeof text === "string" ? text : new TextDecoder().decode(text));
}

/**
 * Write the folder to `dir` atomically (into a temporary sibling, then rename). Refuses to replace
 * an existing path unless `overwrite` is set, and then replaces it only after the new folder is
 * complete.
 */
export async function writeExactModelFolder(
  dir: string,
  options: ExactModelOptions | ExactModel | ExactModelFileMap,
  { overwrite = false }: { overwrite?: boolean } = {},
): Promise<void> {
  const files = options instanceof Map ? options : buildExactModelFiles(options);
  let exists = false;
  try {
    await Deno.lstat(dir);
    exists = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (exists && !overwrite) {
    throw new InputError(`--write-model ${dir}: the path exists (choose a new folder)`);
  }
  const parent = dirname(dir);
  const tmp = join(parent, `.${basename(dir)}.tmp-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(tmp, { recursive: true });
  try {
    for (const [rel, content] of files) {
      const p = join(tmp, rel);
      await Deno.mkdir(dirname(p), { recursive: true });
      if (typeof content === "string") await Deno.writeTextFile(p, content);
      else await Deno.writeFile(p, content);
    }
    if (exists) {
      const old = `${tmp}.old`;
      await Deno.rename(dir, old);
      await Deno.rename(tmp, dir);
      await Deno.remove(old, { recursive: true });
    } else await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}
