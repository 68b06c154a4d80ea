/**
 * `bench:vjp`, prior section: the prior-level VJPs of a prior — the built-in exact model by default,
 * any prior with `--prior SPEC` / `--model DIR` — at image sizes 256² and 512² (the built-in
 * model: latent = image size, 3 channels, lossless): for each network the prior can differentiate,
 * the forward method against its VJP method through the Prior API, interleaved in one process —
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
 * network; the VJP model of its head, built by the same spec as the prior's). A network the prior
 * lacks (no encoder, no consistency map) or cannot differentiate is left out; a prior that does
 * not expose its networks (`Prior.networks`) gets times but no memory figures.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { type Conditioning, LATENT, type Prior, type PriorNetworks } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import { type DenoiserNetwork, HEAD, headVjpSource } from "../core/networks.ts";
import { type ModelSource, SessionPool } from "../core/backend/pool.ts";
import { decoderVjpSpec, denoiserVjpSpec, encoderVjpSpec } from "../core/pipeline/gradients.ts";
import { validateOptions } from "../core/registry.ts";
import { formatSpec, parseSpec, type Spec } from "../core/spec.ts";
import { streams } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import { buildRegistry, checkPriorSpec } from "./common.ts";
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

/** Which prior the section measures: a spec (default `builtin`) and the `--plugin` modules. */
export interface PriorSelection {
  /** The prior spec, e.g. `builtin` or `diffusers:path=DIR`. */
  spec: Spec;
  /** `--plugin` module paths, for a prior a plugin provides. */
  plugins: readonly string[];
}

/** Options of {@link benchPriorVjps}. */
export interface PriorBenchOptions {
  /** The prior (default: the built-in model). */
  prior?: PriorSelection;
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
const BUILTIN: PriorSelection = { spec: { name: "builtin", options: {} }, plugins: [] };

/**
 * Check the selection before anything is measured: the prior exists (built-in or from a
 * `--plugin` module), its options validate and it builds at the first image size (a folder that
 * is not there is found here). Errors are InputErrors naming the input.
 */
export async function checkPriorSelection(sel: PriorSelection, size: number): Promise<void> {
  await checkPriorSpec(sel.spec, sel.plugins, [1, 3, size, size]);
}

/** The prior as `solve` builds it, on CPU, with its own pool when a thread count is given. */
async function loadPrior(sel: PriorSelection, size: number, threads?: number): Promise<Prior> {
  const registry = await buildRegistry({ plugins: sel.plugins });
  const plugin = registry.get("prior", sel.spec.name);
  return await plugin.create(validateOptions(plugin, sel.spec.options), {
    device: "cpu",
    imageShape: [1, 3, size, size],
    sessions: threads ? new SessionPool({ threads }) : undefined,
  });
}

/** The networks this prior can run and differentiate, in report order. */
function measurable(prior: Prior): Net[] {
  const c = prior.capabilities;
  const has: Record<Net, boolean> = {
    unet: c.denoise && c.latentGradients && !!prior.denoise && !!prior.denoiseVjp,
    consistency_unet: c.consistency && c.latentGradients && !!prior.consistency &&
      !!prior.consistencyVjp,
    vae_decoder: c.decoderGradients && !!prior.decodeVjp,
    vae_encoder: c.encode && c.encoderGradients && !!prior.encode && !!prior.encodeVjp,
  };
  return PRIOR_NETWORKS.filter((n) => has[n]);
}

/** The conditioning tensors the VJPs differentiate (with the latent). */
function conditioningWrt(prior: Prior): string[] {
  if (!prior.capabilities.conditioningGradients) return [];
  return prior.conditioningTensors().filter((t) => t.differentiable).map((t) => t.name);
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
  const wrt = [LATENT, ...conditioningWrt(prior)];
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

/** Forward vs forward+VJP of every network of the prior (default: the built-in model) at every size. */
export async function benchPriorVjps(o: PriorBenchOptions): Promise<PriorVjpResult[]> {
  const sel = o.prior ?? BUILTIN;
  const results: PriorVjpResult[] = [];
  for (const size of o.sizes) {
    const prior = await loadPrior(sel, size, o.threads);
    const c = await prior.condition("a sharp photo");
    for (const net of measurable(prior)) {
      const label = `${sel.spec.name} ${net} ${size}²`;
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
      const child = (which: string) =>
        peakInFreshProcess([
          "prior",
          JSON.stringify({
            spec: formatSpec(sel.spec),
            plugins: sel.plugins,
            net,
            which,
            size,
            threads: o.threads ?? 0,
          }),
        ]);
      const pf = prior.networks ? await child("forward") : undefined;
      const pv = prior.networks ? await child("vjp") : undefined;
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
          measuredIn: pf !== undefined && pv !== undefined
            ? "child process"
            : prior.networks
            ? "not measured (no child process)"
            : "not measured (the prior does not expose its networks)",
        },
      });
      o.onCaseDone?.(label);
    }
  }
  return results;
}

/** What a child is asked to measure (one JSON argument). */
interface ChildRequest {
  spec: string;
  plugins: string[];
  net: Net;
  which: "forward" | "vjp";
  size: number;
  threads: number;
}

function parseChildRequest(args: string[]): ChildRequest {
  let r: Partial<ChildRequest> = {};
  try {
    r = JSON.parse(args[0] ?? "");
  } catch { /* reported below */ }
  if (
    typeof r.spec !== "string" || !Array.isArray(r.plugins) ||
    !PRIOR_NETWORKS.includes(r.net as Net) || (r.which !== "forward" && r.which !== "vjp") ||
    !Number.isInteger(r.size) || !Number.isInteger(r.threads)
  ) {
    throw new InputError(
      `--peak-child prior ${args.join(" ")}: expected one JSON argument ` +
        `{spec, plugins, net, which: forward|vjp, size, threads}`,
    );
  }
  return r as ChildRequest;
}

/** A zero-filled timestep tensor of the network's declared type and shape, holding t. */
function timestepTensor(net: DenoiserNetwork, t: number): { tensor: ort.Tensor; shape: number[] } {
  const shape = net.timestep.shape.map((d) => (typeof d === "number" && d > 0 ? d : 1));
  const n = shape.reduce((a, b) => a * b, 1);
  const type = net.timestep.type;
  const tensor = type.includes("int64")
    ? new ort.Tensor("int64", BigInt64Array.from({ length: n }, () => BigInt(t)), shape)
    : type.includes("int32")
    ? new ort.Tensor("int32", Int32Array.from({ length: n }, () => t), shape)
    : new ort.Tensor("float32", Float32Array.from({ length: n }, () => t), shape);
  return { tensor, shape };
}

/** The model (raw network or its head's VJP model) and feeds of one network, as the prior runs it. */
async function childModel(
  nets: PriorNetworks,
  r: ChildRequest,
  c: Conditioning,
  ls: number[],
  is: number[],
): Promise<{ source: ModelSource; feeds: Record<string, ort.Tensor> }> {
  const t = (shape: number[], name: string) =>
    new ort.Tensor("float32", randn(shape, name).data, shape);
  if (r.net === "unet" || r.net === "consistency_unet") {
    const network = r.net === "unet" ? nets.unet : nets.consistency;
    if (!network) throw new Error(`${r.net}: the prior exposes no such network`);
    const ts = timestepTensor(network, T);
    const feeds: Record<string, ort.Tensor> = {
      [network.sample]: t(ls, "z"),
      [network.timestep.name]: ts.tensor,
    };
    const shapes: Record<string, number[]> = {
      [network.sample]: ls,
      [network.timestep.name]: ts.shape,
    };
    for (const name of network.conditioning) {
      const v = c.tensors[name];
      if (!v) throw new Error(`${r.net}: no conditioning tensor "${name}"`);
      feeds[name] = new ort.Tensor("float32", Float32Array.from(v.data), [...v.shape]);
      shapes[name] = [...v.shape];
    }
    if (r.which === "forward") return { source: network.source, feeds };
    feeds[HEAD.coefZ] = new ort.Tensor("float32", Float32Array.of(1), []);
    feeds[HEAD.coefOut] = new ort.Tensor("float32", Float32Array.of(-1), []);
    feeds[`${HEAD.prediction}.cotangent`] = t(ls, "gz");
    return { source: await headVjpSource(network, denoiserVjpSpec(network, shapes)), feeds };
  }
  if (r.net === "vae_decoder") {
    const network = nets.decoder;
    if (r.which === "forward") {
      return { source: network.source, feeds: { [network.input]: t(ls, "z") } };
    }
    return {
      source: await headVjpSource(network, decoderVjpSpec(network, ls)),
      feeds: { [HEAD.latent]: t(ls, "z"), [`${network.output}.cotangent`]: t(is, "gx") },
    };
  }
  const network = nets.encoder;
  if (!network) throw new Error(`${r.net}: the prior exposes no encoder`);
  const feeds = { [network.input]: t(is, "x") };
  if (r.which === "forward") return { source: network.source, feeds };
  return {
    source: await headVjpSource(network, encoderVjpSpec(network, is)),
    feeds: { ...feeds, [`${HEAD.latent}.cotangent`]: t(ls, "gz") },
  };
}

/**
 * Child mode (`bench_vjp.ts --peak-child prior JSON`, JSON = {spec, plugins, net, which, size,
 * threads}): the peak memory of one model of the prior — the raw network, or its VJP model as the
 * prior builds it — created and run twice; prints `{"peakMB": …}`.
 */
export async function priorPeakChild(args: string[]): Promise<number> {
  const r = parseChildRequest(args);
  const sel = { spec: parseSpec(r.spec, "--prior"), plugins: r.plugins };
  const prior = await loadPrior(sel, r.size, r.threads || undefined);
  if (!prior.networks) throw new Error(`prior ${r.spec}: does not expose its networks`);
  const ls = prior.latentShape([1, 3, r.size, r.size]), is = [1, 3, r.size, r.size];
  const c = await prior.condition("a sharp photo");
  const { source, feeds } = await childModel(prior.networks(), r, c, ls, is);
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all" };
  if (r.threads > 0) options.intraOpNumThreads = r.threads;
  // as the prior's pool loads them: gradient sessions without ORT's memory pattern
  if (r.which === "vjp") options.enableMemPattern = false;
  if (source.externalData?.length) options.externalData = source.externalData;
  const model = source.bytes ?? source.path;
  if (!model) throw new Error(`${r.net}: the model source has neither bytes nor a path`);
  const sampler = new PeakSampler();
  const peakMB = await peakOf(sampler, model, feeds, options);
  sampler.close();
  console.log(JSON.stringify({ peakMB }));
  return 0;
}
