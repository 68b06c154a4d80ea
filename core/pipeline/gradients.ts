/**
 * The VJPs of a pipeline prior's networks: one VJP model per network and input shape, built from
 * the network through its head (core/networks.ts) and cached, so that
 *
 * - `denoiseVjp` (x̂0 or ε̂) and `consistencyVjp` (x̂0 of a consistency UNet, or c_out x̂0 + c_skip z_t
 *   of an LCM UNet) share the UNet's one VJP model: they differ only in the two head coefficients;
 * - `decodeVjp` differentiates `latent ↦ D(latent/s + shift)`, `encodeVjp` `x ↦ s·(mean E(x) − shift)`.
 *
 * Each denoiser VJP model is taken w.r.t. the latent and every differentiable conditioning input at
 * once: the backward pass through the UNet is needed for either, and the extra input gradients cost
 * a few small products, while separate models would each hold the weights again.
 *
 * @module
 */
import type { SessionPool } from "../backend/pool.ts";
import type { Feed, ModelSession } from "../backend/session.ts";
import { type DenoiserVjpResult, LATENT, type VjpResult } from "../contracts.ts";
import { InputError } from "../errors.ts";
import {
  decoderHead,
  type DecoderNetwork,
  denoiserHead,
  type DenoiserNetwork,
  encoderHead,
  type EncoderNetwork,
  HEAD,
  type HeadVjp,
  headVjp,
  type HeadVjpSpec,
  type NetworkSource,
} from "../networks.ts";
import type { Affine } from "../sampling/mod.ts";
import type { Tensor } from "../tensor.ts";

function checkCotangent(g: Tensor, like: readonly number[], what: string): void {
  const n = like.reduce((a, b) => a * b, 1);
  if (g.data.length !== n) {
    throw new InputError(`${what}: cotangent has shape [${g.shape}], expected [${like}]`);
  }
}

/** Sum a [B, …] gradient over the batch to [1, …]. */
function sumBatch(t: Tensor): Tensor {
  const B = t.shape[0];
  if (B === 1) return t;
  const n = t.data.length / B;
  const out = new Float32Array(n);
  for (let b = 0; b < B; b++) {
    const off = b * n;
    for (let i = 0; i < n; i++) out[i] += t.data[off + i];
  }
  return { data: out, shape: [1, ...t.shape.slice(1)] };
}

/**
 * The VJP model of a UNet: its denoiser head (`prediction = coef_z · sample + coef_out · output`)
 * w.r.t. the latent and every differentiable conditioning input, at the given input shapes.
 */
export function denoiserVjpSpec(
  net: DenoiserNetwork,
  inputShapes: Record<string, number[]>,
): HeadVjpSpec {
  return {
    head: "denoiser-head",
    compose: (model) => denoiserHead(model, net),
    of: HEAD.prediction,
    wrt: [net.sample, ...net.differentiable],
    inputShapes,
  };
}

/** The VJP model of the decoder head (`latent` → D(latent/s + shift)) at a latent shape. */
export function decoderVjpSpec(net: DecoderNetwork, latentShape: readonly number[]): HeadVjpSpec {
  return {
    head: "decoder-head",
    compose: (model) => decoderHead(model, net),
    of: net.output,
    wrt: [HEAD.latent],
    inputShapes: { [HEAD.latent]: [...latentShape] },
  };
}

/** The VJP model of the encoder head (x → s·(mean E(x) − shift)) at an image shape. */
export function encoderVjpSpec(net: EncoderNetwork, imageShape: readonly number[]): HeadVjpSpec {
  return {
    head: "encoder-head",
    compose: (model) => encoderHead(model, net),
    of: HEAD.latent,
    wrt: [net.input],
    inputShapes: { [net.input]: [...imageShape] },
  };
}

/** The VJP models of one prior's networks. */
export class PriorGradients {
  #pool: SessionPool;
  #device: string;
  #models = new Map<string, Promise<HeadVjp>>();
  #sessions: ModelSession[] = [];

  /**
   * @param pool where the VJP models are loaded
   * @param device the device request of the prior
   */
  constructor(pool: SessionPool, device: string) {
    this.#pool = pool;
    this.#device = device;
  }

  #model(net: NetworkSource, spec: HeadVjpSpec): Promise<HeadVjp> {
    const key = `${net.name}|${spec.head}|${JSON.stringify(spec.inputShapes)}`;
    let p = this.#models.get(key);
    if (!p) {
      p = headVjp(net, { ...spec, pool: this.#pool, device: this.#device }).then((m) => {
        this.#sessions.push(m.session);
        return m;
      });
      this.#models.set(key, p);
      p.catch(() => this.#models.delete(key));
    }
    return p;
  }

  /**
   * ∂⟨g, α z_t + β o(z_t, c)⟩ w.r.t. the latent and the named conditioning inputs, through the
   * UNet `net` fed with `feeds` (its forward feeds: sample, timestep, conditioning at batch B).
   *
   * @param wrt "latent" and/or conditioning input names (each must be in `net.differentiable`)
   * @param batchOne conditioning inputs the caller gave with batch 1 (their gradients are summed
   *   over the batch)
   */
  async denoiser(
    net: DenoiserNetwork,
    feeds: Record<string, Feed>,
    affine: Affine,
    g: Tensor,
    wrt: readonly string[],
    batchOne: ReadonlySet<string>,
  ): Promise<DenoiserVjpResult> {
    const sample = feeds[net.sample];
    checkCotangent(g, sample.shape, `${net.name} VJP`);
    for (const w of wrt) {
      if (w !== LATENT && !net.differentiable.includes(w)) {
        const known = [LATENT, ...net.differentiable].join(", ");
        throw new InputError(
          `${net.name} VJP: cannot differentiate w.r.t. "${w}" (known: ${known})`,
        );
      }
    }
    const shapes: Record<string, number[]> = {};
    for (const name of [net.sample, net.timestep.name, ...net.conditioning]) {
      shapes[name] = [...feeds[name].shape];
    }
    const m = await this.#model(net, denoiserVjpSpec(net, shapes));
    const grads = wrt.map((w) => m.grads[w === LATENT ? net.sample : w]);
    const out = await m.session.run({
      ...feeds,
      [HEAD.coefZ]: { data: [affine.z], shape: [] },
      [HEAD.coefOut]: { data: [affine.out], shape: [] },
      [m.cotangent]: { data: g.data, shape: sample.shape },
    }, { outputs: [m.output, ...grads] });
    const result: Record<string, Tensor> = {};
    wrt.forEach((w, i) => {
      const t = out[grads[i]];
      result[w] = w !== LATENT && batchOne.has(w) ? sumBatch(t) : t;
    });
    return { value: out[m.output], grads: result };
  }

  /** ∂⟨g, D(z/s + shift)⟩/∂z. */
  async decoder(net: DecoderNetwork, z: Tensor, g: Tensor): Promise<VjpResult> {
    const m = await this.#model(net, decoderVjpSpec(net, z.shape));
    const out = await m.session.run({
      [HEAD.latent]: z,
      [m.cotangent]: g,
    }, { outputs: [m.output, m.grads[HEAD.latent]] });
    return { value: out[m.output], grad: out[m.grads[HEAD.latent]] };
  }

  /** ∂⟨g, s·(mean E(x) − shift)⟩/∂x. */
  async encoder(net: EncoderNetwork, x: Tensor, g: Tensor): Promise<VjpResult> {
    const m = await this.#model(net, encoderVjpSpec(net, x.shape));
    const out = await m.session.run({
      [net.input]: x,
      [m.cotangent]: g,
    }, { outputs: [m.output, m.grads[net.input]] });
    return { value: out[m.output], grad: out[m.grads[net.input]] };
  }

  /** VJP calls and milliseconds per network name. */
  stats(): { vjp: Record<string, number>; vjpMs: Record<string, number> } {
    const vjp: Record<string, number> = {}, vjpMs: Record<string, number> = {};
    for (const s of this.#sessions) {
      vjp[s.name] = (vjp[s.name] ?? 0) + s.calls;
      vjpMs[s.name] = (vjpMs[s.name] ?? 0) + s.ms;
    }
    return { vjp, vjpMs };
  }
}
