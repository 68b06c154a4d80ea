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
 * @module
 */
import type { Conditioning, ModelStats, Prior, PriorCapabilities } from "../../core/contracts.ts";
import type { Tensor } from "../../core/tensor.ts";
import { InputError } from "../../core/errors.ts";
import { type SessionPool, sessionPool } from "../../core/backend/pool.ts";
import type { ModelSession, ValueInfo } from "../../core/backend/session.ts";
import type { ModelSource } from "../../core/backend/pool.ts";
import { resolveDevice } from "../../core/backend/device.ts";
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
}

interface VaePart {
  encoder: ModelSession;
  encoderOutput: string;
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
  /** Consistency map G (present when `consistency_unet/` exists or the scheduler is LCM). */
  readonly consistency?: (zt: Tensor, t: number, c: Conditioning) => Promise<Tensor>;

  #files: ModelFiles;
  #unet?: UnetPart;
  #cunet?: UnetPart;
  #vae: VaePart;
  #text: TextPart[];
  #sources: Map<string, ModelSource>;
  #imageShape: readonly number[];
  #lcmGuidance: number;
  #timeCondDim?: number;

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
    const lcm = init.schedule.isLcm && init.unet !== undefined;
    this.capabilities = {
      consistency: init.cunet !== undefined || lcm,
      denoise: init.unet !== undefined,
      gradients: false,
    };
    if (init.unet) this.denoise = (zt, t, c) => this.#denoise(zt, t, c);
    if (this.capabilities.consistency) this.consistency = (zt, t, c) => this.#consistency(zt, t, c);
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
    for (const f of ["vae_encoder", "vae_decoder"] as const) {
      if (!(await hasModel(files, f))) missing.push(`${f}/model.onnx (the VAE ${f.slice(4)})`);
    }
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
      return {
        folder,
        session: s,
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
    const encoder = await open("vae_encoder");
    requireInput(files, encoder, "vae_encoder", "sample", SPEC.latent);
    rejectUnknownInputs(files, encoder, "vae_encoder", ["sample"]);
    const encOut = requireOutput(
      files,
      encoder,
      "vae_encoder",
      ["latent_parameters", "latent_sample"],
      SPEC.latent,
    );
    if (encOut.name === "latent_sample") {
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
      encoderOutput: encOut.name,
      parameters: encOut.name === "latent_parameters",
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
        text.push({
          folder: enc,
          session: s,
          tokenizer,
          ids,
          attentionMask: mask,
          sequence,
          pooled,
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

  /** z = s · (mean of E(x) − shift), x on [−1,1]. */
  async encode(x: Tensor): Promise<Tensor> {
    if (x.shape.length !== 4) {
      throw new InputError(`encode: image has shape [${x.shape}], expected [B,C,H,W]`);
    }
    const v = this.#vae;
    const out =
      (await v.encoder.run({ sample: x }, { outputs: [v.encoderOutput] }))[v.encoderOutput];
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

  /** Encode a prompt into the tensors the UNet(s) take (keyed by UNet input name). */
  async condition(prompt: string): Promise<Conditioning> {
    const needs = new Set([this.#unet, this.#cunet].flatMap((u) => u?.conditionInputs ?? []));
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
    if (needs.has("time_ids")) {
      tensors.time_ids = sdxlTimeIds(this.#imageShape[2], this.#imageShape[3]);
    }
    if (needs.has("timestep_cond")) {
      tensors.timestep_cond = guidanceEmbedding(this.#lcmGuidance, this.#timeCondDim!);
    }
    return { prompt, tensors };
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

  /** Run a UNet at integer timestep t; returns its raw output. */
  async #runUnet(u: UnetPart, zt: Tensor, t: number, c: Conditioning): Promise<Float32Array> {
    const B = zt.shape[0];
    const ts = u.timestep.shape.length === 0
      ? { data: [t], shape: [] as number[] }
      : { data: new Array<number>(B).fill(t), shape: [B] };
    const feeds: Record<string, { data: Float32Array | number[]; shape: readonly number[] }> = {
      sample: zt,
      timestep: ts,
    };
    for (const name of u.conditionInputs) {
      const v = c.tensors[name];
      if (!v) {
        throw new InputError(
          `model "${this.name}": ${u.folder} needs the conditioning tensor "${name}" (have: ${
            Object.keys(c.tensors).join(", ") || "none"
          })`,
        );
      }
      feeds[name] = tileBatch(v, B);
    }
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

  /** Calls and milliseconds per model of this prior. */
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
    return { calls, ms };
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
      vaeEncoderOutput: this.#vae.encoderOutput,
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
