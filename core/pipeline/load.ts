/**
 * Loading a pipeline folder, stage by stage: the files every pipeline needs and its schedule, the
 * UNet(s), the VAE, the text encoders the UNet's inputs call for, the LCM guidance embedding, and
 * what a loaded folder gives a prior (its networks, its conditioning tensors). Every graph is
 * opened once and its inputs/outputs checked; a missing file or a graph that does not fit gets one
 * {@link InputError} naming the folder, file and expectation.
 *
 * @module
 */
import type { ConditioningTensorInfo } from "../contracts.ts";
import type { ModelSession, ValueInfo } from "../backend/session.ts";
import type { ModelSource, SessionPool } from "../backend/pool.ts";
import type {
  DecoderNetwork,
  DenoiserNetwork,
  EncoderNetwork,
  PriorNetworks,
} from "../networks.ts";
import { InputError } from "../errors.ts";
import type { ModelFiles } from "./files.ts";
import {
  configNumber,
  folderError,
  hasModel,
  type ModelFolder,
  modelSource,
  readJson,
  rejectUnknownInputs,
  requireInput,
  requireOutput,
  type ValueSpec,
} from "./folder.ts";
import {
  type PredictionType,
  ScheduleError,
  schedulerFromConfig,
  type SchedulerInfo,
} from "./schedule.ts";
import { ClipTokenizer } from "./tokenizer.ts";
import { penultimateHiddenState } from "./conditioning.ts";

/** Conditioning inputs that VJPs may differentiate with respect to (the text embeddings). */
export const DIFFERENTIABLE_CONDITIONING: readonly string[] = [
  "encoder_hidden_states",
  "text_embeds",
];

/** Inputs a UNet may have besides `sample` and `timestep`, fed from the conditioning. */
export const UNET_CONDITION_INPUTS = [
  "encoder_hidden_states",
  "text_embeds",
  "time_ids",
  "timestep_cond",
] as const;

/** A loaded UNet. */
export interface UnetPart {
  folder: "unet" | "consistency_unet";
  /** Its config.json, when present. */
  config?: Record<string, unknown>;
  session: ModelSession;
  net: DenoiserNetwork;
  sample: ValueInfo;
  timestep: ValueInfo;
  output: string;
  predictionType: PredictionType;
  conditionInputs: string[];
}

/** A loaded text encoder with its tokenizer. */
export interface TextPart {
  folder: "text_encoder" | "text_encoder_2";
  session: ModelSession;
  tokenizer: ClipTokenizer;
  ids: ValueInfo;
  attentionMask?: ValueInfo;
  /** Output giving the [B,T,D] token embeddings fed to the UNet. */
  sequence: string;
  /** Output giving the pooled [B,D] embedding (SDXL text_encoder_2), when needed. */
  pooled?: string;
  /** D of the sequence output (graph metadata, else config.json `hidden_size`); −1 if unknown. */
  hiddenSize: number;
  /** Size of the pooled output (graph metadata, else `projection_dim`); −1 if unknown. */
  pooledSize: number;
}

/** The loaded VAE. */
export interface VaePart {
  /** Absent when the folder has no vae_encoder/. */
  encoder?: ModelSession;
  encoderOutput?: string;
  /** True when the encoder returns mean‖logvar (take the mean), false for a latent sample. */
  parameters: boolean;
  decoder: ModelSession;
  decoderOutput: string;
  scalingFactor: number;
  shiftFactor: number;
  latentChannels: number;
  downsampling: number;
  latentShapeOverride?: number[];
}

const F32: ValueSpec["types"] = ["float32"];
/** What the graphs' inputs and outputs must look like. */
export const SPEC = {
  latent: { types: F32, ranks: [4] },
  timestep: { types: ["float32", "float64", "int64", "int32"], ranks: [0, 1] },
  hidden: { types: F32, ranks: [3] },
  vector: { types: F32, ranks: [2] },
  ids: { types: ["int32", "int64"], ranks: [2] },
} satisfies Record<string, ValueSpec>;

/** A fixed (positive numeric) dimension, or undefined for a symbolic one. */
export function fixedDim(d: number | string | undefined): number | undefined {
  return typeof d === "number" && d > 0 ? d : undefined;
}

/** What the loading stages share: the folder, its schedule and the opened sessions. */
export interface Loader {
  /** The folder. */
  files: ModelFiles;
  /** Its noise schedule. */
  schedule: SchedulerInfo;
  /** The ONNX source of every model opened so far, by folder. */
  sources: Map<string, ModelSource>;
  /** Things worth telling the user. */
  warnings: string[];
  /** Open `<folder>/model.onnx` in the session pool (once per process). */
  open(folder: ModelFolder): Promise<ModelSession>;
}

/** What {@link readPipeline} found. */
export interface PipelineFiles {
  /** The noise schedule from `scheduler/scheduler_config.json`. */
  schedule: SchedulerInfo;
  /** `model_index.json`, when present. */
  modelIndex?: Record<string, unknown>;
  /** Which optional models exist. */
  have: { unet: boolean; consistencyUnet: boolean; encoder: boolean };
}

/**
 * Stage 1: the files every pipeline needs (schedule, a UNet, the VAE decoder) and the schedule.
 * `model_index.json` is checked to be valid JSON when present but not required: the loader keys on
 * the sub-folders that exist, not on `_class_name`.
 */
export async function readPipeline(files: ModelFiles): Promise<PipelineFiles> {
  const missing: string[] = [];
  const schedRel = "scheduler/scheduler_config.json";
  const modelIndex = await readJson(files, "model_index.json");
  const schedCfg = await readJson(files, schedRel);
  if (!schedCfg) missing.push(`${schedRel} (the noise schedule)`);
  const haveUnet = await hasModel(files, "unet");
  const haveCunet = await hasModel(files, "consistency_unet");
  if (!haveUnet && !haveCunet) missing.push("unet/model.onnx (the denoising UNet)");
  if (!(await hasModel(files, "vae_decoder"))) {
    missing.push("vae_decoder/model.onnx (the VAE decoder)");
  }
  // vae_encoder/ is optional: without it the prior has no `encode` (capability "encode").
  const haveEncoder = await hasModel(files, "vae_encoder");
  if (missing.length) {
    throw new InputError(
      `model folder "${files.name}" is not a diffusers ONNX pipeline: missing ${
        missing.join(", ")
      }`,
    );
  }
  let schedule: SchedulerInfo;
  try {
    schedule = schedulerFromConfig(schedCfg!);
  } catch (e) {
    if (e instanceof ScheduleError) throw folderError(files, schedRel, e.message);
    throw e;
  }

  return {
    schedule,
    modelIndex,
    have: { unet: haveUnet, consistencyUnet: haveCunet, encoder: haveEncoder },
  };
}

/** A {@link Loader} over a folder whose sessions open in `pool` on `device`. */
export function pipelineLoader(
  files: ModelFiles,
  schedule: SchedulerInfo,
  pool: SessionPool,
  device: string,
): Loader {
  const sources = new Map<string, ModelSource>();
  return {
    files,
    schedule,
    sources,
    warnings: [],
    async open(folder) {
      const src = await modelSource(files, folder);
      sources.set(folder, src);
      return await pool.session(folder, src, { device });
    },
  };
}

/** Stage 2: a UNet (`unet/` or `consistency_unet/`), its inputs, output and prediction type. */
export async function loadUnet(
  l: Loader,
  folder: "unet" | "consistency_unet",
): Promise<UnetPart> {
  const { files, schedule, sources } = l;
  const open = l.open;
  const cfgRel = `${folder}/config.json`;
  const cfg = await readJson(files, cfgRel);
  const s = await open(folder);
  const sample = requireInput(files, s, folder, "sample", SPEC.latent);
  const timestep = requireInput(files, s, folder, "timestep", SPEC.timestep);
  const conditionInputs: string[] = [];
  const condSpecs: Record<string, ValueSpec> = {
    encoder_hidden_states: SPEC.hidden,
    text_embeds: SPEC.vector,
    time_ids: SPEC.vector,
    timestep_cond: SPEC.vector,
  };
  for (const name of UNET_CONDITION_INPUTS) {
    if (s.input(name)) {
      requireInput(files, s, folder, name, condSpecs[name]);
      conditionInputs.push(name);
    }
  }
  rejectUnknownInputs(files, s, folder, ["sample", "timestep", ...UNET_CONDITION_INPUTS]);
  if (conditionInputs.includes("text_embeds") !== conditionInputs.includes("time_ids")) {
    throw folderError(
      files,
      `${folder}/model.onnx`,
      'expected both SDXL inputs "text_embeds" and "time_ids", or neither',
    );
  }
  const out = requireOutput(files, s, folder, ["out_sample"], SPEC.latent, true);
  // Prediction type: the scheduler's, unless the model's config.json says otherwise (our
  // extension; consistency_unet defaults to "sample", i.e. its output is G itself).
  const pt = cfg?.prediction_type ??
    (folder === "consistency_unet" ? "sample" : schedule.predictionType);
  if (pt !== "epsilon" && pt !== "sample" && pt !== "v_prediction") {
    throw folderError(
      files,
      cfgRel,
      `prediction_type ${
        JSON.stringify(pt)
      } is not supported (expected epsilon, sample or v_prediction)`,
    );
  }
  const net: DenoiserNetwork = {
    name: folder,
    source: sources.get(folder)!,
    predictionType: pt,
    sample: "sample",
    timestep: { name: "timestep", type: timestep.type, shape: [...timestep.shape] },
    conditioning: conditionInputs,
    differentiable: conditionInputs.filter((n) => DIFFERENTIABLE_CONDITIONING.includes(n)),
    output: out.name,
  };
  return {
    folder,
    config: cfg,
    session: s,
    net,
    sample,
    timestep,
    output: out.name,
    predictionType: pt,
    conditionInputs,
  };
}

/** Stage 3: the VAE (the encoder is optional) and its scaling from the config. */
export async function loadVae(l: Loader, haveEncoder: boolean): Promise<VaePart> {
  const { files, warnings } = l;
  const open = l.open;
  let vaeCfgRel = "vae_decoder/config.json";
  let vaeCfg = await readJson(files, vaeCfgRel);
  if (!vaeCfg) {
    vaeCfgRel = "vae_encoder/config.json";
    vaeCfg = await readJson(files, vaeCfgRel);
  }
  const encoder = haveEncoder ? await open("vae_encoder") : undefined;
  let encOut: ValueInfo | undefined;
  if (encoder) {
    requireInput(files, encoder, "vae_encoder", "sample", SPEC.latent);
    rejectUnknownInputs(files, encoder, "vae_encoder", ["sample"]);
    encOut = requireOutput(
      files,
      encoder,
      "vae_encoder",
      ["latent_parameters", "latent_sample"],
      SPEC.latent,
    );
  }
  if (encOut?.name === "latent_sample") {
    warnings.push(
      `${files.name}: vae_encoder returns latent_sample, which older exporters draw at random ` +
        "inside the graph (not from our seeded streams); re-export with latent_parameters for a deterministic mean",
    );
  }
  const decoder = await open("vae_decoder");
  requireInput(files, decoder, "vae_decoder", "latent_sample", SPEC.latent);
  rejectUnknownInputs(files, decoder, "vae_decoder", ["latent_sample"]);
  const decOut = requireOutput(files, decoder, "vae_decoder", ["sample"], SPEC.latent, true);
  const blocks = vaeCfg?.block_out_channels;
  const down = Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : 8;
  let override: number[] | undefined;
  if (vaeCfg?.latent_shape !== undefined) {
    const ls = vaeCfg.latent_shape;
    if (
      !Array.isArray(ls) || ls.length !== 3 ||
      !ls.every((d) => Number.isInteger(d) && (d as number) > 0)
    ) {
      throw folderError(files, vaeCfgRel, '"latent_shape" must be [C, h, w] positive integers');
    }
    override = ls as number[];
  }
  const shift = vaeCfg?.shift_factor;
  if (
    shift !== undefined && shift !== null &&
    (typeof shift !== "number" || !Number.isFinite(shift))
  ) {
    throw folderError(
      files,
      vaeCfgRel,
      `"shift_factor" must be a number (got ${JSON.stringify(shift)})`,
    );
  }
  const vae: VaePart = {
    encoder,
    encoderOutput: encOut?.name,
    parameters: encOut?.name === "latent_parameters",
    decoder,
    decoderOutput: decOut.name,
    scalingFactor: configNumber(files, vaeCfgRel, vaeCfg, "scaling_factor", 0.18215),
    shiftFactor: typeof shift === "number" ? shift : 0,
    latentChannels: configNumber(files, vaeCfgRel, vaeCfg, "latent_channels", 4),
    downsampling: down,
    latentShapeOverride: override,
  };
  return vae;
}

/** Stage 4: the text encoders and tokenizers the UNet inputs call for (none, one, or SDXL's two). */
export async function loadTextEncoders(l: Loader, needs: Set<string>): Promise<TextPart[]> {
  const { files } = l;
  const open = l.open;
  const text: TextPart[] = [];
  const sdxl = needs.has("text_embeds");
  if (needs.has("encoder_hidden_states")) {
    const pairs: ["text_encoder" | "text_encoder_2", string][] = sdxl
      ? [["text_encoder", "tokenizer"], ["text_encoder_2", "tokenizer_2"]]
      : [["text_encoder", "tokenizer"]];
    const absent: string[] = [];
    for (const [enc] of pairs) {
      if (!(await hasModel(files, enc))) absent.push(`${enc}/model.onnx`);
    }
    if (absent.length) {
      throw new InputError(
        `model folder "${files.name}": missing ${absent.join(", ")} (the UNet takes ${
          sdxl
            ? "SDXL text conditioning: encoder_hidden_states, text_embeds, time_ids"
            : "encoder_hidden_states"
        })`,
      );
    }
    for (const [enc, tokDir] of pairs) {
      const tokenizer = await ClipTokenizer.load(files, tokDir);
      const s = await open(enc);
      const ids = requireInput(files, s, enc, "input_ids", SPEC.ids);
      const mask = s.input("attention_mask")
        ? requireInput(files, s, enc, "attention_mask", SPEC.ids)
        : undefined;
      rejectUnknownInputs(files, s, enc, ["input_ids", "attention_mask"]);
      const len = fixedDim(ids.shape[1]);
      if (len !== undefined && len !== tokenizer.maxLength) {
        throw folderError(
          files,
          `${enc}/model.onnx`,
          `input_ids has length ${len} but ${tokDir}/ makes ${tokenizer.maxLength} tokens`,
        );
      }
      let sequence: string;
      if (sdxl) {
        const pen = penultimateHiddenState(s.outputNames);
        if (!pen) {
          throw folderError(
            files,
            `${enc}/model.onnx`,
            "SDXL conditioning uses the penultimate hidden state: expected outputs hidden_states.0 … hidden_states.N " +
              `(Optimum exports them for SDXL); the graph's outputs are ${
                s.outputNames.join(", ")
              }`,
          );
        }
        sequence = requireOutput(files, s, enc, [pen], SPEC.hidden).name;
      } else {
        sequence = requireOutput(files, s, enc, ["last_hidden_state"], SPEC.hidden).name;
      }
      const pooled = sdxl && enc === "text_encoder_2"
        ? requireOutput(files, s, enc, ["text_embeds"], SPEC.vector).name
        : undefined;
      const cfg = await readJson(files, `${enc}/config.json`);
      const cfgNum = (k: string) => typeof cfg?.[k] === "number" ? cfg[k] as number : -1;
      text.push({
        folder: enc,
        session: s,
        tokenizer,
        ids,
        attentionMask: mask,
        sequence,
        pooled,
        hiddenSize: fixedDim(s.output(sequence)!.shape[2]) ?? cfgNum("hidden_size"),
        pooledSize: pooled ? fixedDim(s.output(pooled)!.shape[1]) ?? cfgNum("projection_dim") : -1,
      });
    }
  }
  return text;
}

/** Stage 5: the size of the LCM guidance embedding `timestep_cond`, when a UNet takes it. */
export async function loadTimeCondDim(
  l: Loader,
  unets: readonly UnetPart[],
  needs: Set<string>,
): Promise<number | undefined> {
  const { files } = l;
  let timeCondDim: number | undefined;
  if (needs.has("timestep_cond")) {
    const owner = unets.find((u) => u.conditionInputs.includes("timestep_cond"))!;
    const fromCfg = (await readJson(files, `${owner.folder}/config.json`))?.time_cond_proj_dim;
    const fromGraph = fixedDim(owner.session.input("timestep_cond")!.shape[1]);
    timeCondDim = typeof fromCfg === "number" ? fromCfg : fromGraph;
    if (timeCondDim === undefined) {
      throw folderError(
        files,
        `${owner.folder}/config.json`,
        'the UNet takes "timestep_cond" but its size is unknown: expected "time_cond_proj_dim" in config.json',
      );
    }
  }
  return timeCondDim;
}

/** Stage 6: fixed-size UNet graphs must fit the latents of the images the prior will see. */
export function checkFixedSizes(
  files: ModelFiles,
  unets: readonly UnetPart[],
  imageShape: readonly number[],
  ls: readonly number[],
): void {
  for (const u of unets) {
    const dims = u.sample.shape;
    const fits = dims.length !== 4 ||
      dims.every((d, i) => fixedDim(d) === undefined || d === ls[i]);
    if (!fits) {
      throw folderError(
        files,
        `${u.folder}/model.onnx`,
        `takes latents [${dims}], but images [${imageShape}] give latents [${ls}]`,
      );
    }
  }
}

/** 8× the UNet's fixed latent size, else 1024×1024. */
export function defaultImageShape(u: UnetPart | undefined, vae: VaePart): number[] {
  const h = fixedDim(u?.sample.shape[2]), w = fixedDim(u?.sample.shape[3]);
  if (h !== undefined && w !== undefined && !vae.latentShapeOverride) {
    return [1, 3, h * vae.downsampling, w * vae.downsampling];
  }
  return [1, 3, 1024, 1024];
}

/** What a loaded folder gives the prior. */
export type PriorInit = {
  files: ModelFiles;
  schedule: SchedulerInfo;
  unet?: UnetPart;
  cunet?: UnetPart;
  vae: VaePart;
  text: TextPart[];
  sources: Map<string, ModelSource>;
  timeCondDim?: number;
};

/** The networks of a loaded folder, for the VJP heads and for graph composers. */
export function networksOf(init: PriorInit): PriorNetworks {
  const v = init.vae;
  const decoder: DecoderNetwork = {
    name: "vae_decoder",
    source: init.sources.get("vae_decoder")!,
    input: "latent_sample",
    output: v.decoderOutput,
    scalingFactor: v.scalingFactor,
    shiftFactor: v.shiftFactor,
  };
  const encoder: EncoderNetwork | undefined = v.encoder && {
    name: "vae_encoder",
    source: init.sources.get("vae_encoder")!,
    input: "sample",
    output: v.encoderOutput!,
    parameters: v.parameters,
    latentChannels: v.latentShapeOverride?.[0] ?? v.latentChannels,
    scalingFactor: v.scalingFactor,
    shiftFactor: v.shiftFactor,
  };
  const lcm = init.schedule.isLcm && init.unet
    ? {
      ...init.unet.net,
      lcm: { timestepScaling: init.schedule.timestepScaling, sigmaData: 0.5 },
    }
    : undefined;
  return {
    schedule: init.schedule,
    unet: init.unet?.net,
    consistency: init.cunet?.net ?? lcm,
    decoder,
    encoder,
  };
}

/** The conditioning tensors of a loaded folder (from graph metadata and configs). */
export function conditioningInfo(init: PriorInit): ConditioningTensorInfo[] {
  const unets = [init.unet, init.cunet].filter((u): u is UnetPart => u !== undefined);
  const names = new Set(unets.flatMap((u) => u.conditionInputs));
  const dim = (name: string, k: number): number | undefined => {
    for (const u of unets) {
      const d = fixedDim(u.session.input(name)?.shape[k]);
      if (d !== undefined) return d;
    }
    return undefined;
  };
  const out: ConditioningTensorInfo[] = [];
  const sdxl = names.has("text_embeds");
  if (names.has("encoder_hidden_states")) {
    const dims = init.text.map((t) => t.hiddenSize);
    const D = dim("encoder_hidden_states", 2) ??
      (dims.length && dims.every((d) => d > 0) ? dims.reduce((a, b) => a + b, 0) : -1);
    const T = dim("encoder_hidden_states", 1) ?? init.text[0]?.tokenizer.maxLength ?? -1;
    out.push({
      name: "encoder_hidden_states",
      shape: [1, T, D],
      source: "prompt",
      differentiable: true,
      description: sdxl
        ? "penultimate hidden states of text_encoder and text_encoder_2, concatenated"
        : "token embeddings: text_encoder's last_hidden_state",
    });
  }
  if (sdxl) {
    out.push({
      name: "text_embeds",
      shape: [1, dim("text_embeds", 1) ?? init.text[1]?.pooledSize ?? -1],
      source: "prompt",
      differentiable: true,
      description: "pooled text embedding of text_encoder_2",
    });
  }
  if (names.has("time_ids")) {
    out.push({
      name: "time_ids",
      shape: [1, 6],
      source: "fixed",
      differentiable: false,
      description: "SDXL micro-conditioning [H, W, 0, 0, H, W] of the image size",
    });
  }
  if (names.has("timestep_cond")) {
    out.push({
      name: "timestep_cond",
      shape: [1, init.timeCondDim ?? -1],
      source: "fixed",
      differentiable: false,
      description: "LCM guidance-scale embedding",
    });
  }
  return out;
}
