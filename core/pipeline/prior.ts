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
  type PriorFamily,
  type VjpResult,
} from "../contracts.ts";
import type { Feed } from "../backend/session.ts";
import { denoiserAffine, type PriorNetworks } from "../networks.ts";
import { fromPrediction } from "../sampling/mod.ts";
import { PriorGradients } from "./gradients.ts";
import type { Tensor } from "../tensor.ts";
import { InputError } from "../errors.ts";
import { type SessionPool, sessionPool } from "../backend/pool.ts";
import type { ModelSource } from "../backend/pool.ts";
import { resolveDevice } from "../backend/device.ts";
import { hashModelFiles, type ModelFiles } from "./files.ts";
import type { ModelFolder } from "./folder.ts";
import { lcmBoundary, predictX0, type SchedulerInfo } from "./schedule.ts";
import { concatLastAxis, guidanceEmbedding, sdxlTimeIds, tileBatch } from "./conditioning.ts";
import { detectFamily, type PriorFamilyId } from "./family.ts";
import {
  checkFixedSizes,
  conditioningInfo,
  defaultImageShape,
  loadTextEncoders,
  loadTimeCondDim,
  loadUnet,
  loadVae,
  networksOf,
  pipelineLoader,
  readPipeline,
  type TextPart,
  type UnetPart,
  type VaePart,
} from "./load.ts";

export { DIFFERENTIABLE_CONDITIONING, UNET_CONDITION_INPUTS } from "./load.ts";

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
  /**
   * The model family, when the config files cannot tell it (see core/pipeline/family.ts);
   * overrides the detected one.
   */
  family?: PriorFamilyId;
  /** Session pool (default: the process-wide pool). */
  pool?: SessionPool;
}

/** The default LCM guidance scale (diffusers `LatentConsistencyModelPipeline.__call__`). */
export const DEFAULT_LCM_GUIDANCE = 8.5;

/** Prior over a diffusers/Optimum ONNX pipeline folder. */
export class DiffusersPrior implements Prior {
  /** Folder name. */
  readonly name: string;
  /** The model family, from the config files (see family.ts) or the `family` load option. */
  readonly family: PriorFamily;
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
    family: PriorFamily;
  }) {
    this.family = init.family;
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
   * expectation. The stages are in load.ts.
   */
  static async load(
    files: ModelFiles,
    options: DiffusersLoadOptions = {},
  ): Promise<DiffusersPrior> {
    const pool = options.pool ?? sessionPool();
    const device = options.device ?? "auto";
    const choice = await resolveDevice(device);
    const { schedule, modelIndex, have } = await readPipeline(files);
    const loader = pipelineLoader(files, schedule, pool, device);
    const unet = have.unet ? await loadUnet(loader, "unet") : undefined;
    const cunet = have.consistencyUnet ? await loadUnet(loader, "consistency_unet") : undefined;
    const unets = [unet, cunet].filter((u): u is UnetPart => u !== undefined);
    const needs = new Set(unets.flatMap((u) => u.conditionInputs));
    const vae = await loadVae(loader, have.encoder);
    const text = await loadTextEncoders(loader, needs);
    const timeCondDim = await loadTimeCondDim(loader, unets, needs);
    const detected = detectFamily({
      modelIndex,
      schedulerClass: schedule.className,
      unetConfig: unets[0].config,
      unetInputs: unets[0].conditionInputs,
    });
    const family: PriorFamily = options.family && options.family !== detected.id
      ? { id: options.family, evidence: `set by family= (the config files say ${detected.id})` }
      : detected;
    const prior = new DiffusersPrior({
      files,
      schedule,
      unet,
      cunet,
      vae,
      text,
      sources: loader.sources,
      imageShape: options.imageShape ?? defaultImageShape(unets[0], vae),
      lcmGuidance: options.lcmGuidance ?? DEFAULT_LCM_GUIDANCE,
      timeCondDim,
      deviceReport: choice.report,
      provider: choice.provider,
      warnings: loader.warnings,
      pool,
      device,
      family,
    });
    if (options.imageShape) {
      checkFixedSizes(files, unets, options.imageShape, prior.latentShape(options.imageShape));
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
      family: this.family,
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
