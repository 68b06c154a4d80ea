/**
 * Tiny ONNX graphs with exactly the input/output names and shapes of diffusers/Optimum exports,
 * built so that every output is a known affine function of the inputs, plus helpers to lay them
 * out as a pipeline folder (on disk or in memory). Used by tests only.
 */
import { GraphBuilder } from "../core/onnx/builder.ts";
import { decodeModel, encodeModel, type IModelProto, onnx } from "../core/onnx/proto.ts";
import { join } from "node:path";
import { streams } from "../core/rng.ts";

/** Image/latent sizes of every fixture: 16×16 RGB images, 4×2×2 latents (f = 8). */
export const IMG = 16, LAT = 2, C = 4, F = 8;

/** Per-channel UNet gain a_c (out = a_c·sample + …). */
export const UNET_A = [0.5, -0.25, 1.5, 0.75];
/** UNet coefficients of t, mean(encoder_hidden_states), mean(text_embeds), mean(time_ids), mean(timestep_cond). */
export const UNET_K = { t: 0.001, ehs: 0.01, pooled: 0.02, timeIds: 0.003, timeCond: 0.5 };
/** Consistency UNet: out = CU_A·sample + CU_B·t. */
export const CU_A = 0.25, CU_B = 0.002;

/** How the UNet takes its timestep. */
export type TimestepKind = "f32-scalar" | "i64-batch" | "f32-batch";

/** Options of {@link unetGraph}. */
export interface UnetSpec {
  timestep: TimestepKind;
  /** encoder_hidden_states feature size (0 = no such input). */
  ehsDim?: number;
  /** SDXL: pooled text_embeds size (adds text_embeds and time_ids [B,6]). */
  pooledDim?: number;
  /** LCM: timestep_cond size. */
  timeCondDim?: number;
  /** Declare timestep_cond's size as a symbolic dim (its size then comes from config.json). */
  timeCondSymbolic?: boolean;
  /** Rename the latent input (error tests). */
  sampleName?: string;
  /** Rank of the latent input (error tests; default 4). */
  sampleRank?: number;
  /** Fixed latent size instead of symbolic dims. */
  fixedLatent?: number;
  /** Consistency-UNet flavour: out = CU_A·sample + CU_B·t (+ UNET_K.ehs·mean(ehs)). */
  consistency?: boolean;
  /**
   * Add NONLINEAR_K · tanh(sample) · (mean(tanh(ehs)) + mean(tanh(text_embeds))), so that the
   * Jacobians depend on the point (for gradient tests against finite differences).
   */
  nonlinear?: boolean;
}

/** Weight of the nonlinear term of {@link UnetSpec.nonlinear}. */
export const NONLINEAR_K = 0.3;

function reduceAll(g: GraphBuilder, x: string): string {
  return g.op("ReduceMean", [x], { keepdims: 0 });
}

/** A UNet whose output is an exactly known affine function of its inputs. */
export function unetGraph(spec: UnetSpec): Uint8Array {
  const g = new GraphBuilder("unet");
  const rank = spec.sampleRank ?? 4;
  const lat = spec.fixedLatent;
  const dims = rank === 4
    ? ["batch", C, lat ?? "height", lat ?? "width"]
    : ["batch", C, lat ?? "height"];
  const sample = g.input(spec.sampleName ?? "sample", "float32", dims);
  let tf: string;
  if (spec.timestep === "f32-scalar") {
    tf = g.input("timestep", "float32", []);
  } else {
    const t = g.input("timestep", spec.timestep === "i64-batch" ? "int64" : "float32", ["batch"]);
    const cast = spec.timestep === "i64-batch" ? g.op("Cast", [t], { to: 1 }) : t;
    tf = g.op("Reshape", [cast, g.constI("shape_t", [-1, 1, 1, 1])]);
  }
  let out: string;
  if (spec.consistency) {
    out = g.op("Add", [
      g.op("Mul", [sample, g.constF("cu_a", [1], [CU_A])]),
      g.op("Mul", [tf, g.constF("cu_b", [1], [CU_B])]),
    ]);
  } else {
    const a = g.constF("a", [1, C, 1, 1], UNET_A);
    out = g.op("Add", [
      g.op("Mul", [sample, a]),
      g.op("Mul", [tf, g.constF("kt", [1], [UNET_K.t])]),
    ]);
  }
  if (spec.ehsDim) {
    const ehs = g.input("encoder_hidden_states", "float32", ["batch", 77, spec.ehsDim]);
    out = g.op("Add", [out, g.op("Mul", [reduceAll(g, ehs), g.constF("ke", [], [UNET_K.ehs])])]);
  }
  if (spec.pooledDim) {
    const te = g.input("text_embeds", "float32", ["batch", spec.pooledDim]);
    const ti = g.input("time_ids", "float32", ["batch", 6]);
    out = g.op("Add", [out, g.op("Mul", [reduceAll(g, te), g.constF("kp", [], [UNET_K.pooled])])]);
    out = g.op("Add", [out, g.op("Mul", [reduceAll(g, ti), g.constF("ki", [], [UNET_K.timeIds])])]);
  }
  if (spec.timeCondDim) {
    const tc = g.input("timestep_cond", "float32", [
      "batch",
      spec.timeCondSymbolic ? "cond_dim" : spec.timeCondDim,
    ]);
    out = g.op("Add", [
      out,
      g.op("Mul", [reduceAll(g, tc), g.constF("kc", [], [UNET_K.timeCond])]),
    ]);
  }
  if (spec.nonlinear) {
    const means: string[] = [];
    for (const name of ["encoder_hidden_states", "text_embeds"]) {
      if (g.inputs.some((i) => i.name === name)) {
        means.push(reduceAll(g, g.op("Tanh", [name])));
      }
    }
    let m = means[0] ?? g.constF("one", [], [1]);
    for (const x of means.slice(1)) m = g.op("Add", [m, x]);
    const term = g.op("Mul", [g.op("Tanh", [sample]), m]);
    out = g.op("Add", [out, g.op("Mul", [term, g.constF("knl", [], [NONLINEAR_K])])]);
  }
  g.output(out, "out_sample", "float32", dims);
  return g.toBytes();
}

/** VAE encoder weights: 1×1 conv after an 8×8 average pool. W[o][k], bias[o]. */
export const ENC_W = Array.from(
  { length: 8 },
  (_, o) => [0.1 * (o + 1), -0.05 * o, 0.2 - 0.03 * o],
);
/** VAE encoder biases. */
export const ENC_B = [0.01, -0.02, 0.03, -0.04, 0.5, 0.6, 0.7, 0.8];

/** VAE encoder: sample [B,3,H,W] → latent_parameters [B,8,h,w] (mean‖logvar) or latent_sample [B,4,h,w]. */
export function vaeEncoderGraph(kind: "parameters" | "sample"): Uint8Array {
  const g = new GraphBuilder("vae_encoder");
  const x = g.input("sample", "float32", ["batch", 3, "height", "width"]);
  const pooled = g.op("AveragePool", [x], { kernel_shape: [F, F], strides: [F, F] });
  const n = kind === "parameters" ? 8 : 4;
  const w = g.constF("w", [n, 3, 1, 1], ENC_W.slice(0, n).flat());
  const b = g.constF("b", [n], ENC_B.slice(0, n));
  const name = kind === "parameters" ? "latent_parameters" : "latent_sample";
  g.output(g.op("Conv", [pooled, w, b]), name, "float32", ["batch", n, "h", "w"]);
  return g.toBytes();
}

/** VAE decoder weights: 1×1 conv then nearest ×8 upsampling. */
export const DEC_W = [[0.3, -0.2, 0.1, 0.05], [0.0, 0.4, -0.1, 0.2], [-0.3, 0.1, 0.25, 0.15]];
/** VAE decoder biases. */
export const DEC_B = [0.1, -0.1, 0.05];

/** VAE decoder: latent_sample [B,4,h,w] → sample [B,3,8h,8w]. */
export function vaeDecoderGraph(): Uint8Array {
  const g = new GraphBuilder("vae_decoder");
  const z = g.input("latent_sample", "float32", ["batch", C, "h", "w"]);
  const conv = g.op("Conv", [
    z,
    g.constF("w", [3, C, 1, 1], DEC_W.flat()),
    g.constF("b", [3], DEC_B),
  ]);
  const up = g.op("Resize", [conv, "", g.constF("scales", [4], [1, 1, F, F])], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });
  g.output(up, "sample", "float32", ["batch", 3, "H", "W"]);
  return g.toBytes();
}

/** Random weights, seeded: N(0, scale²) values from the stream `fixture/NAME` of `seed`. */
function randomWeights(seed: number, name: string, n: number, scale: number): number[] {
  const r = streams(seed).get(`fixture/${name}`);
  return Array.from({ length: n }, () => scale * r.normal());
}

/**
 * A small UNet with random weights (seeded) and SD's input/output names: out = Conv3×3(SiLU(
 * Conv3×3(sample) + sin(t·f)·w_t + tanh(mean_tokens(ehs)/10)·W_c)), 8 hidden channels; f32 scalar
 * timestep.
 * Nonlinear in the latent and the conditioning (gradient tests against finite differences).
 */
export function randomUnetGraph(seed: number, ehsDim = 8, hidden = 8): Uint8Array {
  const g = new GraphBuilder("unet");
  const dims = ["batch", C, "height", "width"];
  const sample = g.input("sample", "float32", dims);
  const t = g.input("timestep", "float32", []);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", 77, ehsDim]);
  const conv = (x: string, name: string, o: number, i: number, k: number) =>
    g.op("Conv", [
      x,
      g.constF(
        `${name}_w`,
        [o, i, k, k],
        randomWeights(seed, `${name}.w`, o * i * k * k, 1 / Math.sqrt(i * k * k)),
      ),
      g.constF(`${name}_b`, [o], randomWeights(seed, `${name}.b`, o, 0.1)),
    ], { pads: [(k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2] });
  const h1 = conv(sample, "conv_in", hidden, C, 3);
  // time embedding: sin(t · f_j) · w_j per hidden channel
  const f = g.constF(
    "t_freq",
    [1, hidden, 1, 1],
    Array.from({ length: hidden }, (_, j) => 0.001 * (j + 1)),
  );
  const wt = g.constF("t_w", [1, hidden, 1, 1], randomWeights(seed, "t.w", hidden, 0.5));
  const temb = g.op("Mul", [g.op("Sin", [g.op("Mul", [t, f])]), wt]);
  // conditioning: mean over tokens, then a random projection to the hidden channels
  // (tanh of a tenth of the token mean: CLIP-like fixture embeddings reach tens)
  const cbar = g.op("Tanh", [
    g.op("Mul", [
      g.op("ReduceMean", [ehs], { axes: [1], keepdims: 0 }),
      g.constF("c_k", [], [0.1]),
    ]),
  ]);
  const wc = g.constF("c_w", [ehsDim, hidden], randomWeights(seed, "c.w", ehsDim * hidden, 1));
  const cemb = g.op("Reshape", [
    g.op("MatMul", [cbar, wc]),
    g.constI("c_shape", [-1, hidden, 1, 1]),
  ]);
  const pre = g.op("Add", [g.op("Add", [h1, temb]), cemb]);
  const act = g.op("Mul", [pre, g.op("Sigmoid", [pre])]); // SiLU
  const out = conv(act, "conv_out", C, hidden, 3);
  g.output(out, "out_sample", "float32", dims);
  return g.toBytes();
}

/** A VAE decoder with random weights: Conv3×3 → tanh → nearest ×8 → Conv1×1 (3 channels). */
export function randomVaeDecoderGraph(seed: number, hidden = 8): Uint8Array {
  const g = new GraphBuilder("vae_decoder");
  const z = g.input("latent_sample", "float32", ["batch", C, "h", "w"]);
  const h = g.op("Tanh", [g.op("Conv", [
    z,
    g.constF(
      "w1",
      [hidden, C, 3, 3],
      randomWeights(seed, "dec.w1", hidden * C * 9, 1 / Math.sqrt(C * 9)),
    ),
    g.constF("b1", [hidden], randomWeights(seed, "dec.b1", hidden, 0.1)),
  ], { pads: [1, 1, 1, 1] })]);
  const up = g.op("Resize", [h, "", g.constF("scales", [4], [1, 1, F, F])], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });
  const out = g.op("Conv", [
    up,
    g.constF(
      "w2",
      [3, hidden, 1, 1],
      randomWeights(seed, "dec.w2", 3 * hidden, 1 / Math.sqrt(hidden)),
    ),
    g.constF("b2", [3], randomWeights(seed, "dec.b2", 3, 0.1)),
  ]);
  g.output(out, "sample", "float32", ["batch", 3, "H", "W"]);
  return g.toBytes();
}

/** A VAE encoder with random weights: 8×8 average pool → Conv1×1 → tanh → Conv1×1 (mean ‖ logvar). */
export function randomVaeEncoderGraph(seed: number, hidden = 8): Uint8Array {
  const g = new GraphBuilder("vae_encoder");
  const x = g.input("sample", "float32", ["batch", 3, "height", "width"]);
  const pooled = g.op("AveragePool", [x], { kernel_shape: [F, F], strides: [F, F] });
  const h = g.op("Tanh", [g.op("Conv", [
    pooled,
    g.constF("w1", [hidden, 3, 1, 1], randomWeights(seed, "enc.w1", hidden * 3, 1)),
    g.constF("b1", [hidden], randomWeights(seed, "enc.b1", hidden, 0.1)),
  ])]);
  const out = g.op("Conv", [
    h,
    g.constF(
      "w2",
      [2 * C, hidden, 1, 1],
      randomWeights(seed, "enc.w2", 2 * C * hidden, 1 / Math.sqrt(hidden)),
    ),
    g.constF("b2", [2 * C], randomWeights(seed, "enc.b2", 2 * C, 0.1)),
  ]);
  g.output(out, "latent_parameters", "float32", ["batch", 2 * C, "h", "w"]);
  return g.toBytes();
}

/** Text-encoder weight w_d (token embedding of id i is i·w_d·(layer+1)). */
export function textW(d: number, D: number, salt = 0): number {
  return (d + 1 + salt) / (1000 * D);
}

/** Options of {@link textEncoderGraph}. */
export interface TextSpec {
  ids: "int32" | "int64";
  dim: number;
  /** Number of layers L: adds outputs hidden_states.0 … hidden_states.L (hidden_states.k = ids·w·(k+1)). */
  layers?: number;
  /** CLIPTextModelWithProjection flavour: output text_embeds = mean over tokens of hidden_states.L. */
  projection?: boolean;
  /** Weight salt so the two SDXL encoders differ. */
  salt?: number;
}

/** CLIP-like text encoder with outputs last_hidden_state [B,77,D], pooler_output or text_embeds [B,D]. */
export function textEncoderGraph(spec: TextSpec): Uint8Array {
  const g = new GraphBuilder("text_encoder");
  const D = spec.dim, salt = spec.salt ?? 0;
  const ids = g.input("input_ids", spec.ids, ["batch", "sequence"]);
  const u = g.op("Unsqueeze", [g.op("Cast", [ids], { to: 1 }), g.constI("ax", [2])]);
  const w = Array.from({ length: D }, (_, d) => textW(d, D, salt));
  const L = spec.layers ?? 0;
  const layer = (k: number) => g.op("Mul", [u, g.constF(`w${k}`, [D], w.map((v) => v * (k + 1)))]);
  const last = layer(L === 0 ? 0 : L + 1);
  // last_hidden_state is "after the final layer norm": a different scale than hidden_states.L.
  const seq = ["batch", "sequence", D];
  if (spec.projection) {
    g.output(g.op("ReduceMean", [layer(L)], { axes: [1], keepdims: 0 }), "text_embeds", "float32", [
      "batch",
      D,
    ]);
    g.output(last, "last_hidden_state", "float32", seq);
  } else {
    g.output(last, "last_hidden_state", "float32", seq);
    g.output(g.op("ReduceMean", [last], { axes: [1], keepdims: 0 }), "pooler_output", "float32", [
      "batch",
      D,
    ]);
  }
  for (let k = 0; k <= L && L > 0; k++) g.output(layer(k), `hidden_states.${k}`, "float32", seq);
  return g.toBytes();
}

/** Move every initializer of a model into one external-data blob ("model.onnx_data"). */
export function externalize(bytes: Uint8Array): { onnx: Uint8Array; data: Uint8Array } {
  const m = decodeModel(bytes);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of m.graph!.initializer!) {
    const raw = t.rawData!;
    chunks.push(raw);
    t.externalData = [
      onnx.StringStringEntryProto.create({ key: "location", value: "model.onnx_data" }),
      onnx.StringStringEntryProto.create({ key: "offset", value: String(offset) }),
      onnx.StringStringEntryProto.create({ key: "length", value: String(raw.length) }),
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  const data = new Uint8Array(offset);
  let o = 0;
  for (const c of chunks) {
    data.set(c, o);
    o += c.length;
  }
  return { onnx: encodeModel(m as unknown as IModelProto), data };
}

/** The SD1.5 scheduler config (PNDMScheduler as shipped). */
export const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  prediction_type: "epsilon",
  clip_sample: false,
  trained_betas: null,
};

/** An LCMScheduler config. */
export const LCM_SCHEDULER = {
  _class_name: "LCMScheduler",
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  num_train_timesteps: 1000,
  original_inference_steps: 50,
  timestep_scaling: 10.0,
  prediction_type: "epsilon",
};

/** The CLIP tokenizer files (real vocabulary) as folder entries under `dir`. */
export function clipTokenizerFiles(
  dir: string,
  pad = "<|endoftext|>",
): [string, Uint8Array | string][] {
  const src = new URL("../../shared/data/clip-tokenizer/", import.meta.url);
  return [
    [`${dir}/vocab.json`, Deno.readFileSync(new URL("vocab.json", src))],
    [`${dir}/merges.txt`, Deno.readFileSync(new URL("merges.txt", src))],
    [
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        model_max_length: 77,
        bos_token: { __type: "AddedToken", content: "<|startoftext|>" },
        eos_token: { __type: "AddedToken", content: "<|endoftext|>" },
        unk_token: { __type: "AddedToken", content: "<|endoftext|>" },
        pad_token: pad,
        tokenizer_class: "CLIPTokenizer",
      }),
    ],
    [
      `${dir}/special_tokens_map.json`,
      JSON.stringify({
        bos_token: "<|startoftext|>",
        eos_token: "<|endoftext|>",
        unk_token: "<|endoftext|>",
        pad_token: pad,
      }),
    ],
  ];
}

/** A whole pipeline folder description. */
export interface PipelineSpec {
  unet?: UnetSpec | null;
  consistencyUnet?: UnetSpec;
  consistencyConfig?: Record<string, unknown>;
  scheduler?: Record<string, unknown> | null;
  vaeEncoder?: "parameters" | "sample" | null;
  vaeConfig?: Record<string, unknown> | null;
  text?: TextSpec | null;
  text2?: TextSpec;
  unetConfig?: Record<string, unknown>;
  externalUnet?: boolean;
  tokenizer?: boolean;
  /**
   * Random-weight networks from this seed instead of the affine ones: {@link randomUnetGraph}
   * (f32 scalar timestep, encoder_hidden_states of the text encoder's width),
   * {@link randomVaeDecoderGraph}, {@link randomVaeEncoderGraph} (mean ‖ logvar).
   */
  random?: number;
}

/** Lay out a pipeline folder as path → contents. */
export function pipelineFiles(spec: PipelineSpec): Map<string, Uint8Array | string> {
  const m = new Map<string, Uint8Array | string>();
  const json = (v: unknown) => JSON.stringify(v, null, 2);
  m.set(
    "model_index.json",
    json({ _class_name: "ORTStableDiffusionPipeline", _diffusers_version: "0.30.0" }),
  );
  if (spec.scheduler !== null) {
    m.set("scheduler/scheduler_config.json", json(spec.scheduler ?? SD15_SCHEDULER));
  }
  if (spec.unet !== null) {
    const ehsDim = spec.text?.dim ?? 8;
    const unet = spec.random !== undefined
      ? randomUnetGraph(spec.random, ehsDim)
      : unetGraph(spec.unet ?? { timestep: "f32-scalar", ehsDim: 8 });
    if (spec.externalUnet) {
      const { onnx, data } = externalize(unet);
      m.set("unet/model.onnx", onnx);
      m.set("unet/model.onnx_data", data);
    } else m.set("unet/model.onnx", unet);
    m.set("unet/config.json", json(spec.unetConfig ?? { in_channels: C, sample_size: LAT }));
  }
  if (spec.consistencyUnet) {
    m.set("consistency_unet/model.onnx", unetGraph({ ...spec.consistencyUnet, consistency: true }));
    m.set(
      "consistency_unet/config.json",
      json(spec.consistencyConfig ?? { prediction_type: "sample" }),
    );
  }
  const vaeCfg = spec.vaeConfig === null ? undefined : spec.vaeConfig ??
    { latent_channels: C, block_out_channels: [8, 8, 8, 8], scaling_factor: 0.5 };
  if (spec.vaeEncoder !== null) {
    m.set(
      "vae_encoder/model.onnx",
      spec.random !== undefined
        ? randomVaeEncoderGraph(spec.random)
        : vaeEncoderGraph(spec.vaeEncoder ?? "parameters"),
    );
    if (vaeCfg) m.set("vae_encoder/config.json", json(vaeCfg));
  }
  m.set(
    "vae_decoder/model.onnx",
    spec.random !== undefined ? randomVaeDecoderGraph(spec.random) : vaeDecoderGraph(),
  );
  if (vaeCfg) m.set("vae_decoder/config.json", json(vaeCfg));
  const text = spec.text === undefined ? { ids: "int64" as const, dim: 8 } : spec.text;
  if (text) {
    m.set("text_encoder/model.onnx", textEncoderGraph(text));
    m.set("text_encoder/config.json", json({ hidden_size: text.dim }));
  }
  if (spec.tokenizer !== false) {
    for (const [k, v] of clipTokenizerFiles("tokenizer")) {
      m.set(k, v);
    }
  }
  if (spec.text2) {
    m.set("text_encoder_2/model.onnx", textEncoderGraph(spec.text2));
    for (const [k, v] of clipTokenizerFiles("tokenizer_2", "!")) m.set(k, v);
  }
  return m;
}

/** Write folder entries under `dir` (creating sub-folders). */
export async function writeFolder(dir: string, files: Map<string, Uint8Array | string>) {
  for (const [rel, v] of files) {
    const p = join(dir, ...rel.split("/"));
    await Deno.mkdir(join(p, ".."), { recursive: true });
    if (typeof v === "string") await Deno.writeTextFile(p, v);
    else await Deno.writeFile(p, v);
  }
}
