/**
 * A {@link Prior} over a diffusers/Optimum ONNX pipeline folder (SD 1.x/2.x, SDXL, LCM), loaded
 * unchanged, or over an in-memory folder in the same layout (the built-in exact model).
 *
 * Math (latents are *scaled* latents z = s·(E(x) − shift), s = VAE `scaling_factor`):
 * - encode(x)  = s · (mean of E(x) − shift)      (mean = first C channels of `latent_parameters`)
 * - decode(z)  = D(z / s + shift)                 (on [−1,1], not clipped)
 * - denoise(z_t, t, c) = Tweedie x̂0 from the UNet output at ᾱ_t:
 *     ε:  (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t,   v:  √ᾱ_t z_t − √(1−ᾱ_t) v̂,   sample: the output
 * - consistency(z_t, t, c) = G(z_t, t, c):
 *     `consistency_unet/` present: its output converted to x̂0 like above (with prediction_type
 *     "sample" the output *is* G; c_skip = 0, c_out = 1 exactly);
 *     otherwise with an LCMScheduler: c_out(t)·x̂0 + c_skip(t)·z_t, s = t·timestep_scaling,
 *     c_skip = σ_d²/(s²+σ_d²), c_out = s/√(s²+σ_d²), σ_d = 0.5.
 *
 * Every exporter variant is read from session metadata: `timestep` float32 scalar (current
 * Optimum), int64 [B] (older Optimum) or float32 [B] (legacy diffusers script); `input_ids` int32
 * or int64; VAE encoder `latent_parameters` (mean‖logvar) or `latent_sample`.
 *
 * A folder without `vae_encoder/` loads: `encode` and `encodeVjp` are then absent (capability
 * `encode` false), so solvers that encode (LATINO) are refused up front, while decoder-only
 * samplers (DDIM, LDPS) run.
 *
 * Gradients (gradients.ts): `denoiseVjp`, `consistencyVjp`, `decodeVjp`, `encodeVjp` through one
 * VJP model per network (core/networks.ts heads + the VJP transform), built on first use and
 * cached per process; `conditionFromTensors` builds conditioning from tensors (an embedding read
 * from `.npy` or produced by an optimiser) instead of a prompt.
 *
 * @module
 */
import {
  type Conditioning,
  type ConditioningTensorInfo,
  type DenoiserVjpOptions,
  type DenoiserVjpResult,
  LATENT,
  type ModelStats,
  type Prediction,
  type Prior,
  type PriorCapabilities,
  type VjpResult,
} from "../contracts.ts";
import type { Feed } from "../backend/session.ts";
import {
  type DecoderNetwork,
  denoiserAffine,
  type DenoiserNetwork,
  type EncoderNetwork,
  type PriorNetworks,
} from "../networks.ts";
import { fromPrediction } from "../sampling/mod.ts";
import { PriorGradients } from "./gradients.ts";
import type { Tensor } from "../tensor.ts";
import { InputError } from "../errors.ts";
import { type SessionPool, sessionPool } from "../backend/pool.ts";
import type { ModelSession, ValueInfo } from "../backend/session.ts";
import type { ModelSource } from "../backend/pool.ts";
import { resolveDevice } from "../backend/device.ts";
import { hashModelFiles, type ModelFiles } from "./files.ts";
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
  lcmBoundary,
  type PredictionType,
  predictX0,
  ScheduleError,
  schedulerFromConfig,
  type SchedulerInfo,
} from "./schedule.ts";
import { ClipTokenizer } from "./tokenizer.ts";
import {
  concatLastAxis,
  guidanceEmbedding,
  penultimateHiddenState,
  sdxlTimeIds,
  tileBatch,
} from "./conditioning.ts";

/** Options of {@link DiffusersPrior.load}. */
export interface DiffusersLoadOptions {
  /** "auto" | "cpu" | "cuda" | "webgpu" (default "auto"). */
  device?: string;
  /**
   * Shape of the images the prior will see, [1,3,H,W]: checked against fixed-size graphs and
   * used for SDXL's `time_ids` (default: 8× the UNet's fixed latent size, else 1024×1024).
   */
  imageShape?: readonly number[];
  /**
   * LCM guidance scale for the `timestep_cond` embedding (w = scale − 1, diffusers convention).
   * Default 8.5, the diffusers LatentConsistencyModelPipeline default.
   */
  lcmGuidance?: number;
  /** Session pool (default: the process-wide pool). */
  pool?: SessionPool;
}

/** The default LCM guidance scale (diffusers `LatentConsistencyModelPipeline.__call__`). */
export const DEFAULT_LCM_GUIDANCE = 8.5;

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

interface UnetPart {
  folder: "unet" | "consistency_unet";
  session: ModelSession;
  net: DenoiserNetwork;
  sample: ValueInfo;
  timestep: ValueInfo;
  output: string;
  predictionType: PredictionType;
  conditionInputs: string[];
}

interface TextPart {
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

interface VaePart {
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
const SPEC = {
  latent: { types: F32, ranks: [4] },
  timestep: { types: ["float32", "float64", "int64", "int32"], ranks: [0, 1] },
  hidden: { types: F32, ranks: [3] },
  vector: { types: F32, ranks: [2] },
  ids: { types: ["int32", "int64"], ranks: [2] },
} satisfies Record<string, ValueSpec>;

function fixedDim(d: number | string | undefined): number | undefined {
  return typeof d === "number" && d > 0 ? d : undefined;
}

/** Prior over a diffusers/Optimum ONNX pipeline folder. */
export class DiffusersPrior implements Prior {
  /** Folder name. */
  readonly name: string;
  /** What it supports. */
  readonly capabilities: PriorCapabilities;
  /** Why a capability is missing. */
  readonly capabilityNotes: Partial<Record<keyof PriorCapabilities, string>>;
  /** Noise schedule and parameterisation from scheduler_config.json. */
  readonly schedule: SchedulerInfo;
  /** VAE scaling factor s. */
  readonly scalingFactor: number;
  /** VAE shift factor (0 for SD/SDXL). */
  readonly shiftFactor: number;
  /** Which execution provider runs the models, and why (for stderr). */
  readonly deviceReport: string;
  /** The execution provider that runs the models. */
  readonly provider: string;
  /** Things worth telling the user (e.g. a VAE encoder that samples instead of returning its mean). */
  readonly warnings: readonly string[];
  /** Tweedie x̂0 (present when the folder has `unet/`). */
  readonly denoise?: (zt: Tensor, t: number, c: Conditioning) => Promise<Tensor>;
  /** x̂0 and ε̂ from one UNet call (present when the folder has `unet/`). */
  readonly predict?: (zt: Tensor, t: number, c: Conditioning) => Promise<Prediction>;
  /** Consistency map G (present when `consistency_unet/` exists or the scheduler is LCM). */
  readonly consistency?: (zt: Tensor, t: number, c: Conditioning) => Promise<Tensor>;
  /** z = s · (mean of E(x) − shift), x on [−1,1] (present when the folder has `vae_encoder/`). */
  readonly encode?: (x: Tensor) => Promise<Tensor>;
  /** VJP of `denoise`'s x̂0 (or ε̂) (present with `unet/`). */
  readonly denoiseVjp?: (
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options?: DenoiserVjpOptions,
  ) => Promise<DenoiserVjpResult>;
  /** VJP of `consistency` (present with `consistency`). */
  readonly consistencyVjp?: (
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options?: Omit<DenoiserVjpOptions, "output">,
  ) => Promise<DenoiserVjpResult>;
  /** ∂⟨g, E(x)⟩/∂x (present when the encoder returns `latent_parameters`). */
  readonly encodeVjp?: (x: Tensor, g: Tensor) => Promise<VjpResult>;

  #files: ModelFiles;
  #unet?: UnetPart;
  #cunet?: UnetPart;
  #vae: VaePart;
  #text: TextPart[];
  #sources: Map<string, ModelSource>;
  #imageShape: readonly number[];
  #lcmGuidance: number;
  #timeCondDim?: number;
  #networks: PriorNetworks;
  #grads: PriorGradients;
  #conditioning: ConditioningTensorInfo[];
  #fingerprint?: Promise<string | undefined>;

  private constructor(init: {
    files: ModelFiles;
    schedule: SchedulerInfo;
    unet?: UnetPart;
    cunet?: UnetPart;
    vae: VaePart;
    text: TextPart[];
    sources: Map<string, ModelSource>;
    imageShape: readonly number[];
    lcmGuidance: number;
    timeCondDim?: number;
    deviceReport: string;
    provider: string;
    warnings: string[];
    pool: SessionPool;
    device: string;
  }) {
    this.#files = init.files;
    this.name = init.files.name;
    this.schedule = init.schedule;
    this.#unet = init.unet;
    this.#cunet = init.cunet;
    this.#vae = init.vae;
    this.#text = init.text;
    this.#sources = init.sources;
    this.#imageShape = init.imageShape;
    this.#lcmGuidance = init.lcmGuidance;
    this.#timeCondDim = init.timeCondDim;
    this.scalingFactor = init.vae.scalingFactor;
    this.shiftFactor = init.vae.shiftFactor;
    this.deviceReport = init.deviceReport;
    this.provider = init.provider;
    this.warnings = init.warnings;
    this.#networks = networksOf(init);
    this.#grads = new PriorGradients(init.pool, init.device);
    this.#conditioning = conditioningInfo(init);
    const nets = this.#networks;
    const enc = init.vae.encoder !== undefined;
    const denoisers = [nets.unet, nets.consistency].filter((n) => n !== undefined);
    this.capabilities = {
      consistency: nets.consistency !== undefined,
      denoise: nets.unet !== undefined,
      encode: enc,
      latentGradients: denoisers.length > 0,
      conditioningGradients: denoisers.some((n) => n.differentiable.length > 0),
      decoderGradients: true,
      encoderGradients: nets.encoder?.parameters === true,
    };
    const notes: Partial<Record<keyof PriorCapabilities, string>> = {};
    const folder = `model folder "${this.name}"`;
    if (!enc) notes.encode = notes.encoderGradients = `${folder} has no vae_encoder/model.onnx`;
    else if (!this.capabilities.encoderGradients) {
      notes.encoderGradients = `${folder}: vae_encoder returns latent_sample (drawn inside the ` +
        "graph), not latent_parameters";
    }
    if (!this.capabilities.consistency) {
      notes.consistency = `${folder} has no consistency_unet/ and its scheduler is not LCM`;
    }
    if (!this.capabilities.denoise) notes.denoise = `${folder} has no unet/`;
    if (!this.capabilities.conditioningGradients) {
      notes.conditioningGradients = `${folder}: the UNet takes no text conditioning`;
    }
    this.capabilityNotes = notes;
    if (init.unet) {
      this.denoise = (zt, t, c) => this.#denoise(zt, t, c);
      this.predict = (zt, t, c) => this.#predict(zt, t, c);
      this.denoiseVjp = (zt, t, c, g, o) => this.#denoiseVjp(zt, t, c, g, o);
    }
    if (this.capabilities.consistency) {
      this.consistency = (zt, t, c) => this.#consistency(zt, t, c);
      this.consistencyVjp = (zt, t, c, g, o) => this.#consistencyVjp(zt, t, c, g, o);
    }
    if (enc) this.encode = (x) => this.#encode(x);
    if (this.capabilities.encoderGradients) this.encodeVjp = (x, g) => this.#encodeVjp(x, g);
  }

  /**
   * Load a pipeline folder. Every graph is opened and its inputs/outputs checked; a missing file
   * or a graph that does not fit gets one {@link InputError} naming the folder, file and
   * expectation.
   */
  static async load(
    files: ModelFiles,
    options: DiffusersLoadOptions = {},
  ): Promise<DiffusersPrior> {
    const pool = options.pool ?? sessionPool();
    const device = options.device ?? "auto";
    const choice = await resolveDevice(device);
    const warnings: string[] = [];

    // 1. Files every pipeline needs.
    const missing: string[] = [];
    const schedRel = "scheduler/scheduler_config.json";
    // model_index.json is checked to be valid JSON when present but not required: the loader keys
    // on the sub-folders that exist, not on `_class_name`.
    await readJson(files, "model_index.json");
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

    const sources = new Map<string, ModelSource>();
    const open = async (folder: ModelFolder): Promise<ModelSession> => {
      const src = await modelSource(files, folder);
      sources.set(folder, src);
      return await pool.session(folder, src, { device });
    };

    // 2. UNets.
    const loadUnet = async (folder: "unet" | "consistency_unet"): Promise<UnetPart> => {
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
        session: s,
        net,
        sample,
        timestep,
        output: out.name,
        predictionType: pt,
        conditionInputs,
      };
    };
    const unet = haveUnet ? await loadUnet("unet") : undefined;
    const cunet = haveCunet ? await loadUnet("consistency_unet") : undefined;
    const unets = [unet, cunet].filter((u): u is UnetPart => u !== undefined);
    const needs = new Set(unets.flatMap((u) => u.conditionInputs));

    // 3. VAE.
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

    // 4. Text encoders, as the UNet inputs require.
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
          pooledSize: pooled
            ? fixedDim(s.output(pooled)!.shape[1]) ?? cfgNum("projection_dim")
            : -1,
        });
      }
    }

    // 5. LCM guidance embedding size.
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

    const prior = new DiffusersPrior({
      files,
      schedule,
      unet,
      cunet,
      vae,
      text,
      sources,
      imageShape: options.imageShape ?? defaultImageShape(unets[0], vae),
      lcmGuidance: options.lcmGuidance ?? DEFAULT_LCM_GUIDANCE,
      timeCondDim,
      deviceReport: choice.report,
      provider: choice.provider,
      warnings,
      pool,
      device,
    });

    // 6. Fixed-size graphs must fit the images we will see.
    if (options.imageShape) {
      const ls = prior.latentShape(options.imageShape);
      for (const u of unets) {
        const dims = u.sample.shape;
        const fits = dims.length !== 4 ||
          dims.every((d, i) => fixedDim(d) === undefined || d === ls[i]);
        if (!fits) {
          throw folderError(
            files,
            `${u.folder}/model.onnx`,
            `takes latents [${dims}], but images [${options.imageShape}] give latents [${ls}]`,
          );
        }
      }
    }
    return prior;
  }

  /** The ONNX source (path or bytes) of one of the folder's models, e.g. for the VJP transform. */
  modelSource(folder: ModelFolder): ModelSource | undefined {
    return this.#sources.get(folder);
  }

  /** Latent shape [B, C, H/f, W/f] (or the config's `latent_shape` override) for [B,3,H,W]. */
  latentShape(imageShape: readonly number[]): number[] {
    if (imageShape.length !== 4) {
      throw new InputError(`image shape [${imageShape}]: expected [B,C,H,W]`);
    }
    const [B, , H, W] = imageShape;
    const v = this.#vae;
    if (v.latentShapeOverride) return [B, ...v.latentShapeOverride];
    const f = v.downsampling;
    if (H % f !== 0 || W % f !== 0) {
      throw new InputError(
        `image ${H}×${W}: model "${this.name}" needs height and width divisible by ${f}`,
      );
    }
    return [B, v.latentChannels, H / f, W / f];
  }

  async #encode(x: Tensor): Promise<Tensor> {
    if (x.shape.length !== 4) {
      throw new InputError(`encode: image has shape [${x.shape}], expected [B,C,H,W]`);
    }
    const v = this.#vae;
    const name = v.encoderOutput!;
    const out = (await v.encoder!.run({ sample: x }, { outputs: [name] }))[name];
    let mean = out;
    if (v.parameters) {
      const [B, C2, h, w] = out.shape;
      if (C2 % 2 !== 0) throw new Error(`vae_encoder latent_parameters has ${C2} channels (odd)`);
      const n = (C2 / 2) * h * w;
      const data = new Float32Array(B * n);
      for (let b = 0; b < B; b++) data.set(out.data.subarray(2 * b * n, 2 * b * n + n), b * n);
      mean = { data, shape: [B, C2 / 2, h, w] };
    }
    const s = v.scalingFactor, m = v.shiftFactor;
    const z = new Float32Array(mean.data.length);
    for (let i = 0; i < z.length; i++) z[i] = s * (mean.data[i] - m);
    return { data: z, shape: mean.shape };
  }

  /** D(z / s + shift), on [−1,1] (not clipped). */
  async decode(z: Tensor): Promise<Tensor> {
    if (z.shape.length !== 4) {
      throw new InputError(`decode: latent has shape [${z.shape}], expected [B,C,h,w]`);
    }
    const v = this.#vae;
    const inv = 1 / v.scalingFactor, m = v.shiftFactor;
    const data = new Float32Array(z.data.length);
    for (let i = 0; i < data.length; i++) data[i] = z.data[i] * inv + m;
    const out = await v.decoder.run(
      { latent_sample: { data, shape: z.shape } },
      { outputs: [v.decoderOutput] },
    );
    return out[v.decoderOutput];
  }

  /** ∂⟨g, D(z/s + shift)⟩/∂z and D(z/s + shift); g shaped like the decoded image. */
  async decodeVjp(z: Tensor, g: Tensor): Promise<VjpResult> {
    if (z.shape.length !== 4) {
      throw new InputError(`decodeVjp: latent has shape [${z.shape}], expected [B,C,h,w]`);
    }
    return await this.#grads.decoder(this.#networks.decoder, z, g);
  }

  async #encodeVjp(x: Tensor, g: Tensor): Promise<VjpResult> {
    if (x.shape.length !== 4) {
      throw new InputError(`encodeVjp: image has shape [${x.shape}], expected [B,C,H,W]`);
    }
    return await this.#grads.encoder(this.#networks.encoder!, x, g);
  }

  /** Encode a prompt into the tensors the UNet(s) take (keyed by UNet input name). */
  async condition(prompt: string): Promise<Conditioning> {
    const needs = this.#needs();
    const tensors: Record<string, Tensor> = {};
    if (needs.has("encoder_hidden_states")) {
      const runs = [];
      for (const te of this.#text) runs.push(await this.#encodeText(te, prompt));
      if (runs.length === 1) tensors.encoder_hidden_states = runs[0].sequence;
      else {
        tensors.encoder_hidden_states = concatLastAxis(runs[0].sequence, runs[1].sequence);
        tensors.text_embeds = runs[1].pooled!;
      }
    }
    for (const name of ["time_ids", "timestep_cond"]) {
      if (needs.has(name)) tensors[name] = this.#fixedTensor(name);
    }
    return { prompt, tensors };
  }

  /** The conditioning tensors the UNet(s) take: names, batch-1 shapes, sources. */
  conditioningTensors(): readonly ConditioningTensorInfo[] {
    return this.#conditioning.map((i) => ({ ...i, shape: [...i.shape] }));
  }

  /**
   * Conditioning from tensors: every "prompt" tensor must be given ([1, …] or [B, …] with the
   * sizes of {@link conditioningTensors}); "fixed" ones (`time_ids`, `timestep_cond`) are computed
   * unless given.
   */
  conditionFromTensors(tensors: Record<string, Tensor>): Conditioning {
    const infos = this.#conditioning;
    const expected = () =>
      infos.map((i) => `${i.name} [${i.shape.map((d) => (d < 0 ? "?" : d))}]`).join(", ") ||
      "none";
    for (const name of Object.keys(tensors)) {
      if (!infos.some((i) => i.name === name)) {
        throw new InputError(
          `model "${this.name}" takes no conditioning tensor "${name}" (expected: ${expected()})`,
        );
      }
    }
    const out: Record<string, Tensor> = {};
    for (const info of infos) {
      const t = tensors[info.name];
      if (!t) {
        if (info.source === "fixed") out[info.name] = this.#fixedTensor(info.name);
        else {
          throw new InputError(
            `model "${this.name}": conditioning tensor "${info.name}" is missing (expected: ${expected()})`,
          );
        }
        continue;
      }
      const fits = t.shape.length === info.shape.length && t.shape[0] >= 1 &&
        info.shape.every((d, k) => k === 0 || d < 0 || d === t.shape[k]) &&
        t.data.length === t.shape.reduce((a, b) => a * b, 1);
      if (!fits) {
        throw new InputError(
          `model "${this.name}": conditioning tensor "${info.name}" has shape [${t.shape}], ` +
            `expected [${info.shape.map((d, k) => (k === 0 ? "B" : d < 0 ? "?" : d))}]`,
        );
      }
      if (!t.data.every(Number.isFinite)) {
        throw new InputError(
          `model "${this.name}": conditioning tensor "${info.name}" has non-finite values`,
        );
      }
      out[info.name] = t;
    }
    return { tensors: out };
  }

  #needs(): Set<string> {
    return new Set([this.#unet, this.#cunet].flatMap((u) => u?.conditionInputs ?? []));
  }

  /** A conditioning tensor computed by the prior, not from the prompt. */
  #fixedTensor(name: string): Tensor {
    if (name === "time_ids") return sdxlTimeIds(this.#imageShape[2], this.#imageShape[3]);
    if (name === "timestep_cond") {
      return guidanceEmbedding(this.#lcmGuidance, this.#timeCondDim!);
    }
    throw new RangeError(`no fixed conditioning tensor "${name}"`);
  }

  async #encodeText(te: TextPart, prompt: string): Promise<{ sequence: Tensor; pooled?: Tensor }> {
    const ids = te.tokenizer.encode(prompt);
    const shape = [1, ids.length];
    const feeds: Record<string, { data: Int32Array | number[]; shape: number[] }> = {
      input_ids: { data: ids, shape },
    };
    if (te.attentionMask) {
      feeds.attention_mask = { data: new Int32Array(ids.length).fill(1), shape };
    }
    const outputs = te.pooled ? [te.sequence, te.pooled] : [te.sequence];
    const out = await te.session.run(feeds, { outputs });
    return { sequence: out[te.sequence], pooled: te.pooled ? out[te.pooled] : undefined };
  }

  #checkT(t: number, what: string): number {
    const T = this.schedule.numTrainTimesteps;
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw new RangeError(`${what}: timestep ${t} must be an integer in [0, ${T - 1}]`);
    }
    return this.schedule.alphasCumprod[t];
  }

  /** The feeds of a UNet call; `batchOne` lists conditioning tensors given at batch 1. */
  #unetFeeds(
    u: UnetPart,
    zt: Tensor,
    t: number,
    c: Conditioning,
  ): { feeds: Record<string, Feed>; batchOne: Set<string> } {
    if (zt.shape.length !== 4) {
      throw new InputError(`${u.folder}: latent has shape [${zt.shape}], expected [B,C,h,w]`);
    }
    const B = zt.shape[0];
    const ts = u.timestep.shape.length === 0
      ? { data: [t], shape: [] as number[] }
      : { data: new Array<number>(B).fill(t), shape: [B] };
    const feeds: Record<string, Feed> = { sample: zt, timestep: ts };
    const batchOne = new Set<string>();
    for (const name of u.conditionInputs) {
      const v = c.tensors[name];
      if (!v) {
        throw new InputError(
          `model "${this.name}": ${u.folder} needs the conditioning tensor "${name}" (have: ${
            Object.keys(c.tensors).join(", ") || "none"
          })`,
        );
      }
      if (v.shape[0] === 1) batchOne.add(name);
      feeds[name] = tileBatch(v, B);
    }
    return { feeds, batchOne };
  }

  /** Run a UNet at integer timestep t; returns its raw output. */
  async #runUnet(u: UnetPart, zt: Tensor, t: number, c: Conditioning): Promise<Float32Array> {
    const { feeds } = this.#unetFeeds(u, zt, t, c);
    const out = (await u.session.run(feeds, { outputs: [u.output] }))[u.output];
    if (out.data.length !== zt.data.length) {
      throw new Error(
        `${u.folder} returned shape [${out.shape}] for a latent of shape [${zt.shape}]`,
      );
    }
    return out.data;
  }

  async #denoise(zt: Tensor, t: number, c: Conditioning): Promise<Tensor> {
    const abar = this.#checkT(t, "denoise");
    const u = this.#unet!;
    const out = await this.#runUnet(u, zt, t, c);
    return { data: predictX0(u.predictionType, zt.data, out, abar), shape: [...zt.shape] };
  }

  async #predict(zt: Tensor, t: number, c: Conditioning): Promise<Prediction> {
    const abar = this.#checkT(t, "predict");
    const u = this.#unet!;
    const out = { data: await this.#runUnet(u, zt, t, c), shape: [...zt.shape] };
    return fromPrediction(u.predictionType, zt, out, abar);
  }

  async #consistency(zt: Tensor, t: number, c: Conditioning): Promise<Tensor> {
    const abar = this.#checkT(t, "consistency");
    if (this.#cunet) {
      const u = this.#cunet;
      const out = await this.#runUnet(u, zt, t, c);
      return { data: predictX0(u.predictionType, zt.data, out, abar), shape: [...zt.shape] };
    }
    const u = this.#unet!;
    const x0 = predictX0(u.predictionType, zt.data, await this.#runUnet(u, zt, t, c), abar);
    const { cSkip, cOut } = lcmBoundary(t, this.schedule.timestepScaling);
    const g = new Float32Array(x0.length);
    for (let i = 0; i < g.length; i++) g[i] = cOut * x0[i] + cSkip * zt.data[i];
    return { data: g, shape: [...zt.shape] };
  }

  async #denoiseVjp(
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options: DenoiserVjpOptions = {},
  ): Promise<DenoiserVjpResult> {
    this.#checkT(t, "denoiseVjp");
    const u = this.#unet!;
    const affine = denoiserAffine(u.net, this.schedule, t, options.output ?? "x0");
    const { feeds, batchOne } = this.#unetFeeds(u, zt, t, c);
    return await this.#grads.denoiser(
      u.net,
      feeds,
      affine,
      g,
      options.wrt ?? [LATENT],
      batchOne,
    );
  }

  async #consistencyVjp(
    zt: Tensor,
    t: number,
    c: Conditioning,
    g: Tensor,
    options: Omit<DenoiserVjpOptions, "output"> = {},
  ): Promise<DenoiserVjpResult> {
    this.#checkT(t, "consistencyVjp");
    const u = this.#cunet ?? this.#unet!;
    const net = this.#networks.consistency!;
    const affine = denoiserAffine(net, this.schedule, t, "consistency");
    const { feeds, batchOne } = this.#unetFeeds(u, zt, t, c);
    return await this.#grads.denoiser(net, feeds, affine, g, options.wrt ?? [LATENT], batchOne);
  }

  /** The networks as model sources, with prediction types and VAE scaling (for composers). */
  networks(): PriorNetworks {
    return this.#networks;
  }

  /** Forward and VJP calls and milliseconds per model of this prior. */
  stats(): ModelStats {
    const calls: Record<string, number> = {}, ms: Record<string, number> = {};
    const sessions = [
      this.#unet?.session,
      this.#cunet?.session,
      this.#vae.encoder,
      this.#vae.decoder,
      ...this.#text.map((t) => t.session),
    ];
    for (const s of sessions) {
      if (!s) continue;
      calls[s.name] = (calls[s.name] ?? 0) + s.calls;
      ms[s.name] = (ms[s.name] ?? 0) + s.ms;
    }
    return { calls, ms, ...this.#grads.stats() };
  }

  /**
   * SHA-256 over the model folder's files (paths and contents; see `hashModelFiles`), computed
   * once. For the built-in model it covers the graphs emitted for this image size.
   */
  fingerprint(): Promise<string | undefined> {
    this.#fingerprint ??= hashModelFiles(this.#files);
    return this.#fingerprint;
  }

  /** Facts for run reports: folder, provider, scheduler, exporter variants, warnings. */
  info(): Record<string, unknown> {
    const unetInfo = (u?: UnetPart) =>
      u && {
        predictionType: u.predictionType,
        timestep: `${u.timestep.type} [${u.timestep.shape.join(",")}]`,
        conditioning: u.conditionInputs,
      };
    return {
      model: this.name,
      provider: this.provider,
      device: this.deviceReport,
      scheduler: this.schedule.className,
      betaSchedule: this.schedule.betaSchedule,
      unet: unetInfo(this.#unet),
      consistencyUnet: unetInfo(this.#cunet),
      consistency: this.#cunet
        ? "consistency_unet"
        : this.capabilities.consistency
        ? "lcm"
        : "none",
      vaeEncoderOutput: this.#vae.encoderOutput ?? "none (no vae_encoder/)",
      scalingFactor: this.scalingFactor,
      shiftFactor: this.shiftFactor,
      textEncoders: this.#text.map((t) => ({
        folder: t.folder,
        inputIds: t.ids.type,
        output: t.sequence,
        pooled: t.pooled,
      })),
      lcmGuidance: this.#timeCondDim !== undefined ? this.#lcmGuidance : undefined,
      warnings: this.warnings,
    };
  }

  /** The model files this prior reads. */
  get files(): ModelFiles {
    return this.#files;
  }
}

function defaultImageShape(u: UnetPart | undefined, vae: VaePart): number[] {
  const h = fixedDim(u?.sample.shape[2]), w = fixedDim(u?.sample.shape[3]);
  if (h !== undefined && w !== undefined && !vae.latentShapeOverride) {
    return [1, 3, h * vae.downsampling, w * vae.downsampling];
  }
  return [1, 3, 1024, 1024];
}

type PriorInit = {
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
function networksOf(init: PriorInit): PriorNetworks {
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
function conditioningInfo(init: PriorInit): ConditioningTensorInfo[] {
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
