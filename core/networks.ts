/**
 * A prior's networks as ONNX graphs, and the small "heads" that turn a raw network into the map a
 * prior's method computes, so that gradients come from one VJP model per network:
 *
 * - denoiser head: `prediction = coef_z · sample + coef_out · out_sample` with the two scalars as
 *   inputs. x̂0, ε̂ (any prediction type) and the LCM consistency map c_out x̂0 + c_skip z_t are all
 *   of this form ({@link denoiserAffine}), so one VJP model per UNet serves `denoiseVjp` (x̂0 and ε̂)
 *   and `consistencyVjp` at every t;
 * - decoder head: input `latent` (scaled), `latent_sample = latent / s + shift` → D → `sample`;
 * - encoder head: `sample` → E → mean (first C channels of `latent_parameters`) → `latent =
 *   s · (mean − shift)`.
 *
 * The heads are plain ONNX ops, so a graph composer (whole-loss graphs) can splice them, and a test
 * can convert a head to float64 and check the whole chain rule against closed forms. The raw models
 * keep their external data: a head over a model on disk references the same weight files
 * ({@link networkModel} returns the folder they are relative to).
 *
 * @module
 */
import { modelKey, type ModelSource, type SessionPool } from "./backend/pool.ts";
import type { ModelSession } from "./backend/session.ts";
import type { NoiseSchedule } from "./contracts.ts";
import { InputError } from "./errors.ts";
import { inlineExternalData, loadModel } from "./onnx/external.ts";
import type { IModelProto, NodeProto, TensorProto, ValueInfoProto } from "./onnx/proto.ts";
import { DataType, encodeModel } from "./onnx/proto.ts";
import { COTANGENT_SUFFIX, GRAD_SUFFIX, type VjpModelSource, vjpSource } from "./onnx/vjp.ts";
import { type Affine, lcmBoundary, predictionAffine, type PredictionType } from "./sampling/mod.ts";

/** One ONNX network of a prior. */
export interface NetworkSource {
  /** Statistics name, e.g. "unet", "vae_decoder". */
  name: string;
  /** The model for the session pool (a path, or bytes with a key; external data). */
  source: ModelSource;
}

/** A denoising network (UNet): inputs `sample`, `timestep`, conditioning; one latent output. */
export interface DenoiserNetwork extends NetworkSource {
  /** What the output is: ε, v or x̂0 ("sample"). */
  predictionType: PredictionType;
  /** The latent input (diffusers: `sample`). */
  sample: string;
  /** The timestep input: name, element type and declared shape ([] scalar, or [B]). */
  timestep: { name: string; type: string; shape: (number | string)[] };
  /** Inputs fed from `Conditioning.tensors`, e.g. `encoder_hidden_states`, `text_embeds`. */
  conditioning: string[];
  /** Conditioning inputs that gradients may be taken with respect to. */
  differentiable: string[];
  /** The output (diffusers: `out_sample`). */
  output: string;
  /**
   * For the consistency map of an LCM UNet: G = c_out(t) x̂0 + c_skip(t) z_t with s = t ·
   * timestepScaling (see `lcmBoundary`). Absent: the map is the network's x̂0.
   */
  lcm?: { timestepScaling: number; sigmaData: number };
}

/** The VAE decoder: `input` (unscaled latent) → `output` (image on [−1,1]). */
export interface DecoderNetwork extends NetworkSource {
  /** Input name (diffusers: `latent_sample`). */
  input: string;
  /** Output name (diffusers: `sample`). */
  output: string;
  /** Scaled latent z = s · (unscaled − shift). */
  scalingFactor: number;
  /** See `scalingFactor`. */
  shiftFactor: number;
}

/** The VAE encoder: `input` (image on [−1,1]) → `output`. */
export interface EncoderNetwork extends NetworkSource {
  /** Input name (diffusers: `sample`). */
  input: string;
  /** Output name: `latent_parameters` (mean ‖ logvar) or `latent_sample`. */
  output: string;
  /** True when the output is mean ‖ logvar (the mean is its first `latentChannels` channels). */
  parameters: boolean;
  /** Latent channels C. */
  latentChannels: number;
  /** Scaled latent z = s · (mean − shift). */
  scalingFactor: number;
  /** See `scalingFactor`. */
  shiftFactor: number;
}

/** Everything a graph composer needs to chain a prior's networks. */
export interface PriorNetworks {
  /** The noise schedule (ᾱ_t). */
  schedule: NoiseSchedule;
  /** The ε/v/x0 network behind `denoise`/`predict`. */
  unet?: DenoiserNetwork;
  /** The network behind `consistency` (a consistency UNet, or the LCM UNet with `lcm` set). */
  consistency?: DenoiserNetwork;
  /** The decoder. */
  decoder: DecoderNetwork;
  /** The encoder, when the model has one. */
  encoder?: EncoderNetwork;
}

/**
 * Names the heads add: inputs `coef_z`/`coef_out`, outputs `prediction`/`latent`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HEAD } from "./networks.ts";
 * assert.equal(`${HEAD.prediction}.cotangent`, "prediction.cotangent"); // the VJP model's input
 * ```
 */
export const HEAD = {
  coefZ: "head.coef_z",
  coefOut: "head.coef_out",
  prediction: "prediction",
  latent: "latent",
} as const;

/**
 * The affine coefficients of x̂0, ε̂ or the consistency map in (z_t, network output) at t.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoiserAffine } from "./networks.ts";
 * const schedule = { numTrainTimesteps: 2, alphasCumprod: Float64Array.of(0.75, 0.25) };
 * const net = { predictionType: "epsilon" as const };
 * // x̂0 = (z − √0.75 ε)/√0.25
 * assert.deepEqual(denoiserAffine(net, schedule, 1, "x0"), { z: 2, out: -2 * Math.sqrt(0.75) });
 * // LCM: G = c_out x̂0 + c_skip z; at t = 0 c_skip = 1, c_out = 0
 * const lcm = { ...net, lcm: { timestepScaling: 10, sigmaData: 0.5 } };
 * const g = denoiserAffine(lcm, schedule, 0, "consistency");
 * assert.ok(g.z === 1 && g.out === 0);
 * ```
 */
export function denoiserAffine(
  net: Pick<DenoiserNetwork, "predictionType" | "lcm">,
  schedule: NoiseSchedule,
  t: number,
  output: "x0" | "eps" | "consistency",
): Affine {
  const T = schedule.numTrainTimesteps;
  if (!Number.isInteger(t) || t < 0 || t >= T) {
    throw new RangeError(`timestep ${t} must be an integer in [0, ${T - 1}]`);
  }
  const p = predictionAffine(net.predictionType, schedule.alphasCumprod[t]);
  if (output !== "consistency") return p[output];
  if (!net.lcm) return p.x0;
  const { cSkip, cOut } = lcmBoundary(t, net.lcm.timestepScaling, net.lcm.sigmaData);
  return { z: cOut * p.x0.z + cSkip, out: cOut * p.x0.out };
}

/**
 * Decode a network's model (from its path, or its bytes with in-memory external data inlined).
 * `baseDir` is the folder external data is relative to (for models read from disk).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { networkModel } from "./networks.ts";
 * const g = new GraphBuilder("unet");
 * g.output(g.op("Neg", [g.input("sample", "float32", [1, 4])]), "out_sample", "float32", [1, 4]);
 * const { model } = await networkModel({ name: "unet", source: { key: "u", bytes: g.toBytes() } });
 * assert.equal(model.graph?.output?.[0].name, "out_sample");
 * ```
 */
export async function networkModel(
  net: NetworkSource,
): Promise<{ model: IModelProto; baseDir?: string }> {
  const src = net.source;
  if (src.path) return await loadModel(src.path);
  if (!src.bytes) throw new RangeError(`network ${net.name}: a source needs a path or bytes`);
  const { model } = await loadModel(src.bytes);
  if (src.externalData?.length) inlineExternalData(model, src.externalData);
  return { model };
}

function graphOf(model: IModelProto, what: string) {
  const g = model.graph;
  if (!g) throw new InputError(`${what}: the model has no graph`);
  return g;
}

function usedNames(model: IModelProto): Set<string> {
  const g = model.graph!;
  const s = new Set<string>();
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.initializer ?? [])]) {
    s.add(v.name ?? "");
  }
  for (const n of g.node ?? []) for (const o of [...(n.input ?? []), ...(n.output ?? [])]) s.add(o);
  return s;
}

function fresh(used: Set<string>, names: string[], what: string): void {
  for (const n of names) {
    if (used.has(n)) throw new InputError(`${what}: the graph already has a value named "${n}"`);
  }
}

function elemOf(v: ValueInfoProto | undefined, what: string): number {
  const e = v?.type?.tensorType?.elemType;
  if (e !== DataType.FLOAT && e !== DataType.DOUBLE) {
    throw new InputError(`${what}: expected a float32 or float64 tensor (got element type ${e})`);
  }
  return e;
}

function scalarInfo(name: string, elem: number): ValueInfoProto {
  return { name, type: { tensorType: { elemType: elem, shape: { dim: [] } } } };
}

function scalarInit(name: string, elem: number, value: number): TensorProto {
  const raw = elem === DataType.DOUBLE
    ? new Uint8Array(Float64Array.of(value).buffer)
    : new Uint8Array(Float32Array.of(value).buffer);
  return { name, dims: [], dataType: elem, rawData: raw };
}

function node(opType: string, input: string[], output: string, name: string): NodeProto {
  return { opType, input, output: [output], name };
}

/**
 * Denoiser head: output `prediction = coef_z · sample + coef_out · output` with scalar inputs
 * `head.coef_z`, `head.coef_out` (the network's element type); the raw output is no longer a graph
 * output.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { denoiserHead, HEAD } from "./networks.ts";
 * const g = new GraphBuilder("unet");
 * const x = g.input("sample", "float32", [1, 4]);
 * g.output(g.op("Neg", [x]), "out_sample", "float32", [1, 4]);
 * const head = denoiserHead(g.toModel(), { sample: "sample", output: "out_sample" });
 * assert.deepEqual(head.graph?.output?.map((o) => o.name), [HEAD.prediction]);
 * assert.ok(head.graph?.input?.some((i) => i.name === HEAD.coefZ));
 * ```
 */
export function denoiserHead(
  model: IModelProto,
  net: Pick<DenoiserNetwork, "sample" | "output">,
): IModelProto {
  const what = "denoiser head";
  const g = graphOf(model, what);
  const out = (g.output ?? []).find((o) => o.name === net.output);
  if (!out) throw new InputError(`${what}: the graph has no output "${net.output}"`);
  const elem = elemOf(out, what);
  const used = usedNames(model);
  const zTerm = "head.z_term", oTerm = "head.out_term";
  fresh(used, [HEAD.coefZ, HEAD.coefOut, HEAD.prediction, zTerm, oTerm], what);
  return {
    ...model,
    graph: {
      ...g,
      input: [...(g.input ?? []), scalarInfo(HEAD.coefZ, elem), scalarInfo(HEAD.coefOut, elem)],
      node: [
        ...(g.node ?? []),
        node("Mul", [net.sample, HEAD.coefZ], zTerm, "head/mul_z"),
        node("Mul", [net.output, HEAD.coefOut], oTerm, "head/mul_out"),
        node("Add", [zTerm, oTerm], HEAD.prediction, "head/add"),
      ],
      output: [{ ...out, name: HEAD.prediction }],
    },
  };
}

/**
 * Decoder head: new input `latent` (scaled) replaces `input`, fed through `latent / s + shift`;
 * the only output is `output`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { decoderHead, HEAD } from "./networks.ts";
 * const g = new GraphBuilder("vae_decoder");
 * g.output(g.op("Neg", [g.input("latent_sample", "float32", [1, 4])]), "sample", "float32", [1, 4]);
 * const net = { input: "latent_sample", output: "sample", scalingFactor: 0.5, shiftFactor: 0 };
 * const head = decoderHead(g.toModel(), net);
 * assert.deepEqual(head.graph?.input?.map((i) => i.name), [HEAD.latent]);
 * ```
 */
export function decoderHead(
  model: IModelProto,
  net: Pick<DecoderNetwork, "input" | "output" | "scalingFactor" | "shiftFactor">,
): IModelProto {
  const what = "decoder head";
  const g = graphOf(model, what);
  const inp = (g.input ?? []).find((i) => i.name === net.input);
  const out = (g.output ?? []).find((o) => o.name === net.output);
  if (!inp || !out) {
    throw new InputError(`${what}: expected input "${net.input}" and output "${net.output}"`);
  }
  const elem = elemOf(inp, what);
  const used = usedNames(model);
  const inv = "head.inv_scale", shift = "head.shift", scaled = "head.unscaled";
  fresh(used, [HEAD.latent, inv, shift, scaled], what);
  return {
    ...model,
    graph: {
      ...g,
      input: (g.input ?? []).map((i) => (i === inp ? { ...inp, name: HEAD.latent } : i)),
      initializer: [
        ...(g.initializer ?? []),
        scalarInit(inv, elem, 1 / net.scalingFactor),
        scalarInit(shift, elem, net.shiftFactor),
      ],
      node: [
        node("Mul", [HEAD.latent, inv], scaled, "head/mul_inv_scale"),
        node("Add", [scaled, shift], net.input, "head/add_shift"),
        ...(g.node ?? []),
      ],
      output: [out],
    },
  };
}

/**
 * Encoder head: the only output is `latent = s · (mean − shift)`, mean = the first C channels of
 * `latent_parameters` (or the output itself for `latent_sample` encoders).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { encoderHead, HEAD } from "./networks.ts";
 * const g = new GraphBuilder("vae_encoder");
 * const x = g.input("sample", "float32", [1, 8, 2, 2]);
 * g.output(g.op("Neg", [x]), "latent_parameters", "float32", [1, 8, 2, 2]);
 * const net = {
 *   input: "sample",
 *   output: "latent_parameters",
 *   parameters: true,
 *   latentChannels: 4,
 *   scalingFactor: 0.5,
 *   shiftFactor: 0,
 * };
 * const head = encoderHead(g.toModel(), net);
 * assert.deepEqual(head.graph?.output?.map((o) => o.name), [HEAD.latent]);
 * ```
 */
export function encoderHead(
  model: IModelProto,
  net: Pick<
    EncoderNetwork,
    "output" | "parameters" | "latentChannels" | "scalingFactor" | "shiftFactor"
  >,
): IModelProto {
  const what = "encoder head";
  const g = graphOf(model, what);
  const out = (g.output ?? []).find((o) => o.name === net.output);
  if (!out) throw new InputError(`${what}: the graph has no output "${net.output}"`);
  const elem = elemOf(out, what);
  const used = usedNames(model);
  const names = {
    starts: "head.slice_starts",
    ends: "head.slice_ends",
    axes: "head.slice_axes",
    mean: "head.mean",
    shift: "head.shift",
    scale: "head.scale",
    centred: "head.centred",
  };
  fresh(used, [HEAD.latent, ...Object.values(names)], what);
  const i64 = (name: string, v: number): TensorProto => ({
    name,
    dims: [1],
    dataType: DataType.INT64,
    rawData: new Uint8Array(BigInt64Array.of(BigInt(v)).buffer),
  });
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [
    scalarInit(names.shift, elem, net.shiftFactor),
    scalarInit(names.scale, elem, net.scalingFactor),
  ];
  let mean = net.output;
  if (net.parameters) {
    inits.push(i64(names.starts, 0), i64(names.ends, net.latentChannels), i64(names.axes, 1));
    nodes.push(
      node("Slice", [net.output, names.starts, names.ends, names.axes], names.mean, "head/mean"),
    );
    mean = names.mean;
  }
  nodes.push(
    node("Sub", [mean, names.shift], names.centred, "head/sub_shift"),
    node("Mul", [names.centred, names.scale], HEAD.latent, "head/mul_scale"),
  );
  const dims = out.type?.tensorType?.shape?.dim?.map((d, i) =>
    i === 1 && net.parameters ? { dimValue: net.latentChannels } : { ...d }
  );
  return {
    ...model,
    graph: {
      ...g,
      initializer: [...(g.initializer ?? []), ...inits],
      node: [...(g.node ?? []), ...nodes],
      output: [{
        name: HEAD.latent,
        type: { tensorType: { elemType: elem, shape: dims ? { dim: dims } : undefined } },
      }],
    },
  };
}

/** A loaded VJP model of a network (through a head): feed names and output names. */
export interface HeadVjp {
  /** The session (counted as VJP calls of the network's name). */
  session: ModelSession;
  /** The differentiated output (also returned: the forward value). */
  output: string;
  /** The cotangent input of `output`. */
  cotangent: string;
  /** Gradient output per differentiated input. */
  grads: Record<string, string>;
}

/** What to differentiate through a head: the VJP model of `compose(network)`. */
export interface HeadVjpSpec {
  /** A name for the head in cache keys, e.g. "denoiser-head". */
  head: string;
  /** Compose the head over the raw model. */
  compose: (model: IModelProto) => IModelProto;
  /** The head's output to differentiate. */
  of: string;
  /** Inputs of the head to differentiate with respect to. */
  wrt: string[];
  /** Concrete dims of the head's inputs (the VJP model is specialised to them). */
  inputShapes: Record<string, number[]>;
}

/** Options of {@link headVjp}. */
export interface HeadVjpOptions extends HeadVjpSpec {
  /** The session pool and device request. */
  pool: SessionPool;
  /** "auto" | "cpu" | "cuda" | "webgpu". */
  device: string;
}

/**
 * The VJP model of `head(network)` as a pool source (bytes, or a path referencing the network's
 * external weight files), built once per process (`vjpSource`). An op the transform cannot
 * differentiate is an InputError naming the network.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { denoiserHead, HEAD, headVjpSource } from "./networks.ts";
 * const g = new GraphBuilder("unet");
 * g.output(g.op("Neg", [g.input("sample", "float32", [1, 4])]), "out_sample", "float32", [1, 4]);
 * const net = { name: "unet", source: { key: "tiny-unet", bytes: g.toBytes() } };
 * const src = await headVjpSource(net, {
 *   head: "denoiser-head",
 *   compose: (m) => denoiserHead(m, { sample: "sample", output: "out_sample" }),
 *   of: HEAD.prediction,
 *   wrt: ["sample"],
 *   inputShapes: { sample: [1, 4] },
 * });
 * assert.ok(src.key.startsWith("tiny-unet#denoiser-head#vjp"));
 * ```
 */
export async function headVjpSource(net: NetworkSource, o: HeadVjpSpec): Promise<VjpModelSource> {
  try {
    const { model, baseDir } = await networkModel(net);
    const bytes = encodeModel(o.compose(model));
    return await vjpSource(
      {
        key: `${modelKey(net.source)}#${o.head}`,
        bytes,
        label: `${net.source.label ?? net.name} (${o.head})`,
      },
      [o.of],
      o.wrt,
      { inputShapes: o.inputShapes, baseDir },
    );
  } catch (e) {
    if (e instanceof InputError) {
      throw new InputError(`${net.source.label ?? net.name}: cannot differentiate: ${e.message}`);
    }
    throw e;
  }
}

/**
 * The VJP model of `head(network)` for one set of input shapes, loaded in the pool and counted as
 * VJP calls of the network ({@link headVjpSource}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./onnx/builder.ts";
 * import { SessionPool } from "./backend/pool.ts";
 * import { decoderHead, HEAD, headVjp } from "./networks.ts";
 * // D(u) = 3u with s = 0.5: decode(z) = D(z / 0.5) = 6z, so ∂⟨g, decode⟩/∂z = 6g
 * const g = new GraphBuilder("vae_decoder");
 * const u = g.input("latent_sample", "float32", [1, 2]);
 * g.output(g.op("Mul", [u, g.constF("three", [], [3])]), "sample", "float32", [1, 2]);
 * const net = { name: "vae_decoder", source: { key: "tiny-decoder", bytes: g.toBytes() } };
 * const spec = { input: "latent_sample", output: "sample", scalingFactor: 0.5, shiftFactor: 0 };
 * const pool = new SessionPool({ threads: 1 });
 * const m = await headVjp(net, {
 *   head: "decoder-head",
 *   compose: (model) => decoderHead(model, spec),
 *   of: "sample",
 *   wrt: [HEAD.latent],
 *   inputShapes: { [HEAD.latent]: [1, 2] },
 *   pool,
 *   device: "cpu",
 * });
 * const out = await m.session.run({
 *   [HEAD.latent]: { data: [1, 2], shape: [1, 2] },
 *   [m.cotangent]: { data: [1, 1], shape: [1, 2] },
 * });
 * assert.deepEqual(Array.from(out[m.grads[HEAD.latent]].data), [6, 6]);
 * assert.deepEqual(pool.stats().vjp, { vae_decoder: 1 }); // counted as a VJP of the decoder
 * await pool.release();
 * ```
 */
export async function headVjp(net: NetworkSource, o: HeadVjpOptions): Promise<HeadVjp> {
  const src = await headVjpSource(net, o);
  const session = await o.pool.session(net.name, src, { device: o.device, kind: "vjp" });
  return {
    session,
    output: o.of,
    cotangent: o.of + COTANGENT_SUFFIX,
    grads: Object.fromEntries(o.wrt.map((w) => [w, w + GRAD_SUFFIX])),
  };
}
