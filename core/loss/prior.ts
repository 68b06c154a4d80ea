/**
 * A prior's networks in whole-loss graphs: the denoiser (x̂0, ε̂ or the consistency map), the decoder
 * and the encoder of `Prior.networks()` (`core/networks.ts`) spliced into a {@link LossGraphBuilder},
 * with the scheduler formula as per-step scalar inputs — so that a solver writes its loss as in the
 * paper and feeds, per step, the coefficients {@link denoiserFeeds} computes from the sampling layer
 * (`denoiserAffine`: ε/v/x0-prediction and LCM's c_skip/c_out).
 *
 * @example
 * ```ts ignore
 * const nets = prior.networks!();
 * const b = new LossGraphBuilder("ldps");
 * const z = b.input("z_t", latentShape);
 * const den = await addDenoiser(b, nets.unet!, z, { encoder_hidden_states: b.input(EHS, [1, 77, 768]) });
 * const x = await addDecoder(b, nets.decoder, den.value);          // image on [−1,1]
 * b.loss(b.norm(b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", op.outputShape)), { scale: 2 }));
 * const loss = await b.build({ key, wrt: ["z_t"] });
 * // per step t:
 * const r = await loss.lossAndGrad({ z_t, [EHS]: c, y, ...denoiserFeeds(den, nets.unet!, nets.schedule, t) });
 * ```
 *
 * @module
 */
import type { Feed } from "../backend/session.ts";
import type { NoiseSchedule } from "../contracts.ts";
import { InputError } from "../errors.ts";
import {
  type DecoderNetwork,
  denoiserAffine,
  type DenoiserNetwork,
  type EncoderNetwork,
} from "../networks.ts";
import type { LossGraphBuilder, Value } from "./builder.ts";

/** A denoiser spliced into a loss graph. */
export interface DenoiserInGraph {
  /** The prediction (x̂0, ε̂ or G). */
  value: Value;
  /** The network's own output (ε, v or x0), e.g. for a second prediction from the same call. */
  raw: Value;
  /** What it predicts. */
  output: "x0" | "eps" | "consistency";
  /** Graph input names: the timestep and the two coefficients. */
  inputs: { timestep: string; coefZ: string; coefOut: string };
}

/**
 * Splice a denoising network: value = coef_z · z + coef_out · network(z, t, conditioning), the
 * coefficients and the timestep being graph inputs (fed by {@link denoiserFeeds}).
 *
 * @param b the builder
 * @param net the network (`Prior.networks().unet` or `.consistency`)
 * @param z the latent z_t
 * @param conditioning a value for every conditioning input of the network (e.g. encoder_hidden_states)
 * @param options what to predict (default x0; "consistency" needs a consistency network) and the
 *   prefix of the input names (default the network's name)
 */
export async function addDenoiser(
  b: LossGraphBuilder,
  net: DenoiserNetwork,
  z: Value,
  conditioning: Record<string, Value>,
  options: { output?: "x0" | "eps" | "consistency"; prefix?: string } = {},
): Promise<DenoiserInGraph> {
  const output = options.output ?? "x0";
  const p = options.prefix ?? net.name;
  const missing = net.conditioning.filter((c) => !(c in conditioning));
  if (missing.length) {
    throw new InputError(`${net.name}: conditioning inputs not wired: ${missing.join(", ")}`);
  }
  const timestep = `${p}.timestep`, coefZ = `${p}.coef_z`, coefOut = `${p}.coef_out`;
  const t = await b.inputLike(net.source, net.timestep.name, timestep);
  const inputs: Record<string, Value> = { [net.sample]: z, [net.timestep.name]: t };
  for (const c of net.conditioning) inputs[c] = conditioning[c];
  const o = (await b.network(net.name, net.source, inputs))[net.output];
  const value = b.lincomb([[z, b.scalar(coefZ)], [o, b.scalar(coefOut)]]);
  return { value, raw: o, output, inputs: { timestep, coefZ, coefOut } };
}

/**
 * The per-step feeds of a spliced denoiser: the timestep (in the element type and shape the network
 * declares) and the coefficients of the prediction at t (`denoiserAffine`).
 *
 * @param d the spliced denoiser
 * @param net its network
 * @param schedule the prior's schedule
 * @param t integer timestep
 * @param dtype element type of the graph's coefficients (default float32)
 */
export function denoiserFeeds(
  d: DenoiserInGraph,
  net: DenoiserNetwork,
  schedule: NoiseSchedule,
  t: number,
  dtype: "float32" | "float64" = "float32",
): Record<string, Feed> {
  const a = denoiserAffine(net, schedule, t, d.output);
  const scalar = (v: number): Feed =>
    dtype === "float64"
      ? { data: Float64Array.of(v), shape: [] }
      : { data: Float32Array.of(v), shape: [] };
  const tShape = net.timestep.shape.map((s) => (typeof s === "number" && s > 0 ? s : 1));
  return {
    [d.inputs.timestep]: {
      data: new Array(Math.max(1, tShape.reduce((p, q) => p * q, 1))).fill(t),
      shape: tShape,
    },
    [d.inputs.coefZ]: scalar(a.z),
    [d.inputs.coefOut]: scalar(a.out),
  };
}

/**
 * Splice the decoder: the image D(z/s + shift) on [−1,1] for a scaled latent z.
 *
 * @param b the builder
 * @param net the decoder (`Prior.networks().decoder`)
 * @param z the scaled latent
 */
export async function addDecoder(
  b: LossGraphBuilder,
  net: DecoderNetwork,
  z: Value,
): Promise<Value> {
  const unscaled = b.affine(z, 1 / net.scalingFactor, net.shiftFactor);
  return (await b.network(net.name, net.source, { [net.input]: unscaled }))[net.output];
}

/**
 * Splice the encoder: the scaled latent mean s·(E(x) − shift) of an image x on [−1,1].
 *
 * @param b the builder
 * @param net the encoder (`Prior.networks().encoder`)
 * @param x the image
 */
export async function addEncoder(
  b: LossGraphBuilder,
  net: EncoderNetwork,
  x: Value,
): Promise<Value> {
  let out = (await b.network(net.name, net.source, { [net.input]: x }))[net.output];
  if (net.parameters) out = b.channels(out, 0, net.latentChannels);
  return b.scale(b.sub(out, net.shiftFactor), net.scalingFactor);
}
