/**
 * `bench:vjp`, prior section: the prior-level VJPs on the built-in exact model at image sizes
 * 256² and 512² (latent = image size, 3 channels, lossless): for each network, the forward method
 * against its VJP method through the Prior API, interleaved in one process —
 *
 * | network          | forward          | forward + VJP                                        |
 * | ---------------- | ---------------- | ---------------------------------------------------- |
 * | unet             | `denoise`        | `denoiseVjp` (x̂0; w.r.t. latent and conditioning)    |
 * | consistency_unet | `consistency`    | `consistencyVjp` (w.r.t. latent and conditioning)    |
 * | vae_decoder      | `decode`         | `decodeVjp`                                          |
 * | vae_encoder      | `encode`         | `encodeVjp`                                          |
 *
 * — median wall times, their ratio, and the peak memory of each model (session creation and two
 * runs, weights included) measured in a fresh process on the very bytes the prior runs (the raw
 * network; the VJP model of its head, built by the same spec as the prior's).
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { type Conditioning, LATENT, type Prior } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import { HEAD, headVjpSource } from "../core/networks.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { memoryFiles } from "../core/pipeline/files.ts";
import { DiffusersPrior } from "../core/pipeline/prior.ts";
import { decoderVjpSpec, denoiserVjpSpec, encoderVjpSpec } from "../core/pipeline/gradients.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { streams } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import { peakInFreshProcess, peakOf, PeakSampler } from "./bench_memory.ts";
import type { Timing } from "./bench_util.ts";

/** The networks measured, in report order. */
export const PRIOR_NETWORKS = ["unet", "consistency_unet", "vae_decoder", "vae_encoder"] as const;
type Net = typeof PRIOR_NETWORKS[number];

/** One network at one size. */
export interface PriorVjpResult {
  /** Network name. */
  network: Net;
  /** The two Prior methods compared. */
  methods: string;
  /** Image size (square). */
  size: number;
  /** Latent shape. */
  latent: number[];
  /** Forward method. */
  forward: Timing;
  /** VJP method (forward + backward in one run). */
  vjp: Timing;
  /** Ratio of medians. */
  ratio: number;
  /** Ratio of the fastest runs. */
  ratioMin: number;
  /** Peak resident memory of each model, MB (weights included). */
  peakMB: { forward?: number; vjp?: number; ratio?: number; measuredIn: string };
}

/** Options of {@link benchPriorVjps}. */
export interface PriorBenchOptions {
  /** Image sizes (square). */
  sizes: number[];
  /** Timed runs per method (default 5). */
  runs?: number;
  /** Untimed runs first (the first VJP call also builds the VJP model). */
  warmup: number;
  /** ORT intra-op threads (default: the pool's, the number of cores). */
  threads?: number;
  /** Called before each (network, size). */
  onCase?: (label: string) => void;
  /** Called after each (network, size). */
  onCaseDone?: (label: string) => void;
}

const T = 500;

async function builtinPrior(size: number, threads?: number): Promise<DiffusersPrior> {
  const imageShape = [1, 3, size, size];
  const files = memoryFiles("builtin", buildExactModelFiles({ imageShape }));
  const pool = threads ? new SessionPool({ threads }) : undefined;
  return await DiffusersPrior.load(files, { device: "cpu", imageShape, pool });
}

function randn(shape: number[], name: string): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: streams(0).get(`bench-prior/${name}`).fillNormal(new Float32Array(n)), shape };
}

function summary(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => {
    const pos = p * (s.length - 1);
    const lo = Math.floor(pos), hi = Math.ceil(pos);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  };
  return { median: q(0.5), p10: q(0.1), p90: q(0.9), runs: xs };
}

/** The forward and VJP calls of one network through the Prior API. */
function calls(prior: Prior, net: Net, c: Conditioning, size: number) {
  const ls = prior.latentShape([1, 3, size, size]), is = [1, 3, size, size];
  const z = randn(ls, "z"), gz = randn(ls, "gz"), x = randn(is, "x"), gx = randn(is, "gx");
  const wrt = [LATENT, "encoder_hidden_states"];
  switch (net) {
    case "unet":
      return {
        methods: "denoise / denoiseVjp",
        fwd: () => prior.denoise!(z, T, c),
        vjp: () => prior.denoiseVjp!(z, T, c, gz, { wrt }),
      };
    case "consistency_unet":
      return {
        methods: "consistency / consistencyVjp",
        fwd: () => prior.consistency!(z, T, c),
        vjp: () => prior.consistencyVjp!(z, T, c, gz, { wrt }),
      };
    case "vae_decoder":
      return {
        methods: "decode / decodeVjp",
        fwd: () => prior.decode(z),
        vjp: () => prior.decodeVjp!(z, gx),
      };
    case "vae_encoder":
      return {
        methods: "encode / encodeVjp",
        fwd: () => prior.encode!(x),
        vjp: () => prior.encodeVjp!(x, gz),
      };
  }
}

/** Forward vs forward+VJP of every network of the built-in prior at every size. */
export async function benchPriorVjps(o: PriorBenchOptions): Promise<PriorVjpResult[]> {
  const results: PriorVjpResult[] = [];
  for (const size of o.sizes) {
    const prior = await builtinPrior(size, o.threads);
    const c = await prior.condition("a sharp photo");
    for (const net of PRIOR_NETWORKS) {
      const label = `builtin ${net} ${size}²`;
      o.onCase?.(label);
      const f = calls(prior, net, c, size);
      for (let i = 0; i < o.warmup + 1; i++) { // + 1: the first VJP builds its model
        await f.fwd();
        await f.vjp();
      }
      const tf: number[] = [], tv: number[] = [];
      for (let i = 0; i < (o.runs ?? 5); i++) {
        let t0 = performance.now();
        await f.fwd();
        tf.push(performance.now() - t0);
        t0 = performance.now();
        await f.vjp();
        tv.push(performance.now() - t0);
      }
      const threads = String(o.threads ?? 0);
      const pf = await peakInFreshProcess(["prior", net, "forward", String(size), threads]);
      const pv = await peakInFreshProcess(["prior", net, "vjp", String(size), threads]);
      const forward = summary(tf), vjp = summary(tv);
      results.push({
        network: net,
        methods: f.methods,
        size,
        latent: prior.latentShape([1, 3, size, size]),
        forward,
        vjp,
        ratio: vjp.median / forward.median,
        ratioMin: Math.min(...tv) / Math.min(...tf),
        peakMB: {
          forward: pf,
          vjp: pv,
          ratio: pf !== undefined && pv !== undefined ? pv / pf : undefined,
          measuredIn: pf !== undefined && pv !== undefined ? "child process" : "not measured",
        },
      });
      o.onCaseDone?.(label);
    }
  }
  return results;
}

/**
 * Child mode (`bench_vjp.ts --peak-child prior NET forward|vjp SIZE THREADS`): the peak memory of
 * one model of the built-in prior — the raw network, or its VJP model as the prior builds it —
 * created and run twice; prints `{"peakMB": …}`.
 */
export async function priorPeakChild(args: string[]): Promise<number> {
  const [net, which] = args as [Net, string];
  const size = Number(args[2]), threads = Number(args[3]);
  if (!PRIOR_NETWORKS.includes(net) || (which !== "forward" && which !== "vjp")) {
    throw new InputError(`--peak-child prior ${args.join(" ")}: expected NET forward|vjp SIZE`);
  }
  const prior = await builtinPrior(size, threads || undefined);
  const nets = prior.networks();
  const ls = prior.latentShape([1, 3, size, size]), is = [1, 3, size, size];
  const t = (shape: number[], name: string) =>
    new ort.Tensor("float32", randn(shape, name).data, shape);
  const ehs = (await prior.condition("a sharp photo")).tensors.encoder_hidden_states;
  let network, feeds: Record<string, ort.Tensor>, bytes: Uint8Array | undefined;
  if (net === "unet" || net === "consistency_unet") {
    network = net === "unet" ? nets.unet! : nets.consistency!;
    feeds = {
      sample: t(ls, "z"),
      timestep: new ort.Tensor("float32", Float32Array.of(T), []),
      encoder_hidden_states: new ort.Tensor("float32", ehs.data, ehs.shape),
    };
    if (which === "vjp") {
      const spec = denoiserVjpSpec(network, {
        sample: ls,
        timestep: [],
        encoder_hidden_states: [...ehs.shape],
      });
      bytes = (await headVjpSource(network, spec)).bytes;
      feeds[HEAD.coefZ] = new ort.Tensor("float32", Float32Array.of(1), []);
      feeds[HEAD.coefOut] = new ort.Tensor("float32", Float32Array.of(-1), []);
      feeds[`${HEAD.prediction}.cotangent`] = t(ls, "gz");
    }
  } else if (net === "vae_decoder") {
    network = nets.decoder;
    feeds = which === "vjp"
      ? { [HEAD.latent]: t(ls, "z"), [`${network.output}.cotangent`]: t(is, "gx") }
      : { [network.input]: t(ls, "z") };
    if (which === "vjp") bytes = (await headVjpSource(network, decoderVjpSpec(network, ls))).bytes;
  } else {
    network = nets.encoder!;
    feeds = { [network.input]: t(is, "x") };
    if (which === "vjp") {
      bytes = (await headVjpSource(network, encoderVjpSpec(network, is))).bytes;
      feeds[`${HEAD.latent}.cotangent`] = t(ls, "gz");
    }
  }
  bytes ??= network.source.bytes;
  if (!bytes) throw new Error(`${net}: the built-in model's networks are held in memory`);
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all" };
  if (threads > 0) options.intraOpNumThreads = threads;
  const sampler = new PeakSampler();
  const peakMB = await peakOf(sampler, bytes, feeds, options);
  sampler.close();
  console.log(JSON.stringify({ peakMB }));
  return 0;
}
