/**
 * `deno task bench` (VJP part) / `deno task bench:vjp`: cost of a vector–Jacobian product through
 * ONNX graphs on CPU.
 *
 * For the SD-block composite (core/onnx/vjp/fixtures.ts: ResNet blocks with GroupNorm/SiLU and a
 * time embedding, strided downsample, a transformer block with self- and cross-attention and a
 * GEGLU feed-forward, nearest upsample, skip concat) at latent sizes 1×4×64×64 and 1×4×128×128:
 * - the transform time and node counts, and the transform time of a ~4000-node graph;
 * - wall time of the forward model and of the forward+VJP model (∂out/∂sample), measured
 *   interleaved in the same process (median, p10, p90 of N runs after warm-up), and their ratio;
 * - peak memory of each: the process's resident memory sampled every millisecond by a worker
 *   while the session is created and run twice, minus the level before (weights included).
 * The target ratio is ≤ 2.5 (PyTorch autograd level). The machine's load average is recorded:
 * timings on a shared machine drift, compare ratios from the same run.
 *
 * Results go to `bench-results/vjp.json` (or `--out`) and a table to stdout.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import * as ort from "onnxruntime-node";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { attrsOf } from "../core/onnx/vjp/graph.ts";
import { decodeModel, tensorDims, tensorValues } from "../core/onnx/proto.ts";
import { chainedSdBlocks, type SdBlockConfig, sdBlockGraph } from "../core/onnx/vjp/fixtures.ts";
import { streams } from "../core/rng.ts";
import { formatTable, runPythonJson, timeIt, type Timing } from "./bench_util.ts";
import { peakInFreshProcess, peakOf, PeakSampler } from "./bench_memory.ts";
import {
  benchPriorVjps,
  checkPriorSelection,
  PRIOR_NETWORKS,
  priorPeakChild,
  type PriorSelection,
  type PriorVjpResult,
} from "./bench_prior_vjp.ts";
import { main, parseCli, parseNumber, priorSpecFromFlags } from "./common.ts";
import { formatSpec } from "../core/spec.ts";
import { Progress, type ProgressTask } from "./progress.ts";
import { fileURLToPath } from "node:url";

const USAGE =
  `Usage: deno task bench:vjp [--only sd15,narrow,prior] [--sizes 64,128] [--runs 7] [--threads N]
                              [--prior SPEC | --model DIR] [--out PATH]

Forward vs forward+VJP wall time and peak memory on CPU: the SD-block composite, and a prior's
networks through the Prior API (the built-in model unless --prior/--model names another).

Options:
  --sizes LIST     latent sizes (square), comma-separated (default 64,128)
  --runs N         timed runs per model (default 7; 5 at sizes ≥ 128)
  --warmup N       untimed runs first (default 2)
  --threads N      ORT intra-op threads (default: ORT's choice)
  --only LIST      named sections, comma-separated (default all; --widths is the same):
                   sd15    composite: transformer 320 channels, 8 heads of 40 (SD1.5's level 1)
                   narrow  composite: transformer 128 channels, 4 heads of 32 (attention-heavy)
                   prior   the prior through the Prior API: denoise/denoiseVjp,
                           consistency/consistencyVjp, decode/decodeVjp, encode/encodeVjp (the
                           networks it has and can differentiate); "builtin" is the same section
  --prior SPEC     the prior of that section, as in solve (default builtin; builtin:lossy=true,
                   diffusers:path=DIR, or one a --plugin module provides)
  --model DIR      shorthand for --prior diffusers:path=DIR
  --prior-sizes L  image sizes of the prior section (default 256,512; built-in: latent = image size)
  --channels N     custom widths instead: base channels (multiple of 32; the transformer runs at 2N)
  --heads N        with --channels: attention heads (default 4; head width 2N/heads)
  --out PATH       JSON output (default bench-results/vjp.json)
  --no-reference   skip the PyTorch autograd reference
  --torch-python P python with torch for the reference (default: python3, then /usr/bin/python3;
                   another path needs --allow-run for it)
  --quiet          no progress bar (it goes to stderr, with an ETA)

The PyTorch reference (cli/torch_reference.py) runs the same nodes, weights and feeds eagerly with
torch autograd, same thread count, and checks its output and gradient against ours; when python3
or torch is missing the benchmark reports why and goes on.
`;

/** Widths of the composite: base channels (the transformer runs at twice that) and heads. */
interface Widths {
  channels: number;
  heads: number;
  about: string;
}

/**
 * Named widths. `sd15`: the transformer has SD1.5's first-level widths (320 channels, 8 heads of
 * 40), so at a 128² latent it attends over 4,096 tokens exactly as SD1.5 does at 512×512.
 * `narrow`: a quarter of those widths with 4 heads of 32: the same 4,096² score matrices with much
 * less convolution and projection work, an attention-dominated stress case.
 */
export const WIDTHS: Record<string, Widths> = {
  sd15: { channels: 160, heads: 8, about: "transformer 320 ch, 8 heads × 40 (SD1.5 level 1)" },
  narrow: { channels: 64, heads: 4, about: "transformer 128 ch, 4 heads × 32 (attention-heavy)" },
};

interface SizeResult {
  /** Name of the widths (`sd15`, `narrow`, `custom`). */
  widths: string;
  size: number;
  config: SdBlockConfig;
  transformMs: number;
  forwardNodes: number;
  backwardNodes: number;
  units: Record<string, number>;
  forward: Timing;
  vjp: Timing;
  /** Ratio of medians. */
  ratio: number;
  /** Ratio of the fastest runs (less sensitive to other load on a shared machine). */
  ratioMin: number;
  peakMB: { forward: number; vjp: number; ratio: number; measuredIn: string };
  /** PyTorch eager autograd on the same graph, weights and feeds (same run, same threads). */
  torch?: TorchResult;
}

function feedsFor(size: number, cfg: SdBlockConfig, withCotangent: boolean) {
  const rng = streams(0).get(`bench-vjp/${size}`);
  const fill = (n: number) => {
    const a = new Float32Array(n);
    rng.fillNormal(a);
    return a;
  };
  const n = 4 * size * size;
  const L = cfg.contextLength ?? 77, D = cfg.contextDim ?? 64;
  const f: Record<string, ort.Tensor> = {
    sample: new ort.Tensor("float32", fill(n), [1, 4, size, size]),
    timestep: new ort.Tensor("float32", Float32Array.from([500]), [1]),
    encoder_hidden_states: new ort.Tensor("float32", fill(L * D), [1, L, D]),
  };
  if (withCotangent) {
    f["out_sample.cotangent"] = new ort.Tensor("float32", fill(n), [1, 4, size, size]);
  }
  return f;
}

/** The composite at a latent size and widths. */
export function configFor(size: number, channels: number, heads: number): SdBlockConfig {
  return {
    height: size,
    width: size,
    channels,
    groups: 32,
    heads,
    contextLength: 77,
    contextDim: 768,
    timeDim: 320,
  };
}

/**
 * Peak memory of one composite model measured in a fresh process (`--peak-child`): in this
 * process, memory an earlier, larger size freed but the allocator kept would absorb new
 * allocations and hide them. `undefined` when no child can be started (then the caller measures
 * here).
 */
function peakInChild(
  which: "forward" | "vjp",
  size: number,
  channels: number,
  heads: number,
  threads?: number,
): Promise<number | undefined> {
  return peakInFreshProcess([
    which,
    String(size),
    String(channels),
    String(heads),
    String(threads ?? 0),
  ]);
}

/** Child mode: build one model, print `{"peakMB": …}` for a session created and run twice. */
async function peakChild(args: string[]): Promise<number> {
  if (args[0] === "prior") return await priorPeakChild(args.slice(1));
  const which = args[0];
  const [size, channels, heads, threads] = args.slice(1).map(Number);
  const config = configFor(size, channels, heads);
  let bytes = sdBlockGraph(config);
  if (args[0] === "vjp") bytes = (await vjpTransform(bytes, ["out_sample"], ["sample"])).bytes();
  else if (args[0] !== "forward") {
    throw new InputError(`--peak-child ${which}: expected forward|vjp`);
  }
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all" };
  if (threads > 0) options.intraOpNumThreads = threads;
  const sampler = new PeakSampler();
  const peakMB = await peakOf(sampler, bytes, feedsFor(size, config, which === "vjp"), options);
  sampler.close();
  console.log(JSON.stringify({ peakMB }));
  return 0;
}

/** The PyTorch reference's answer for one size, or why there is none. */
type TorchResult = Record<string, unknown> & { ratio?: number; error?: string };

/** Interpreters tried for the PyTorch reference, in order (Debian's torch lives in /usr/bin). */
const TORCH_PYTHONS = ["python3", "/usr/bin/python3"];

/**
 * Run cli/torch_reference.py on the same graph, weights and feeds: the composite's nodes and
 * initializers go to `dir/graph.json` + `dir/data.bin` with ONNX Runtime's output and gradient for
 * the comparison. A missing python3/torch gives `{ error }`, never a failure.
 */
async function torchReference(
  dir: string,
  fwdBytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  cotangent: ort.Tensor,
  expected: { out: Float32Array; grad: Float32Array },
  runs: number,
  warmup: number,
  threads: number,
  pythons: string[],
): Promise<TorchResult> {
  const model = decodeModel(fwdBytes);
  const graph = model.graph!;
  const chunks: Float32Array[] = [];
  let offset = 0;
  const put = (data: ArrayLike<number>, dims: number[]) => {
    const a = Float32Array.from(data);
    chunks.push(a);
    const spec = { dims, offset, length: a.length, dtype: "float32" };
    offset += a.length;
    return spec;
  };
  const initializers: Record<string, unknown> = {};
  for (const t of graph.initializer ?? []) {
    const dims = tensorDims(t);
    initializers[t.name!] = t.dataType === 7
      ? { dims, dtype: "int64", values: Array.from(tensorValues(t)) }
      : put(tensorValues(t), dims);
  }
  const tensors: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(feeds)) tensors[k] = put(v.data as Float32Array, [...v.dims]);
  tensors.cotangent = put(cotangent.data as Float32Array, [...cotangent.dims]);
  tensors.expected_out = put(expected.out, [...cotangent.dims]);
  tensors.expected_grad = put(expected.grad, [...feeds.sample.dims]);
  const nodes = (graph.node ?? []).map((n) => ({
    op: n.opType,
    inputs: n.input ?? [],
    outputs: n.output ?? [],
    attrs: attrsOf(n),
  }));
  const meta = {
    inputs: Object.keys(feeds),
    output: graph.output![0].name,
    wrt: "sample",
    nodes,
    initializers,
    tensors,
  };
  const bin = new Uint8Array(offset * 4);
  let at = 0;
  for (const c of chunks) {
    bin.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), at);
    at += c.byteLength;
  }
  await Deno.mkdir(dir, { recursive: true });
  try {
    await Deno.writeTextFile(`${dir}/graph.json`, JSON.stringify(meta));
    await Deno.writeFile(`${dir}/data.bin`, bin);
    const script = fileURLToPath(new URL("./torch_reference.py", import.meta.url));
    return await runPythonJson(pythons, [
      script,
      dir,
      String(runs),
      String(warmup),
      String(threads),
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function benchSize(
  widths: string,
  size: number,
  channels: number,
  heads: number,
  runs: number,
  warmup: number,
  options: ort.InferenceSession.SessionOptions,
  reference?: { pythons: string[]; threads: number },
): Promise<SizeResult> {
  const config = configFor(size, channels, heads);
  const fwdBytes = sdBlockGraph(config);
  const t0 = performance.now();
  const g = await vjpTransform(fwdBytes, ["out_sample"], ["sample"]);
  const transformMs = performance.now() - t0;
  const vjpBytes = g.bytes();
  const ff = feedsFor(size, config, false);
  const fb = feedsFor(size, config, true);
  // peak memory, one model at a time, each in a fresh process when possible
  const threads = options.intraOpNumThreads;
  let pf = await peakInChild("forward", size, channels, heads, threads);
  let pv = await peakInChild("vjp", size, channels, heads, threads);
  const peakSource = pf !== undefined && pv !== undefined ? "child process" : "this process";
  if (pf === undefined || pv === undefined) {
    const sampler = new PeakSampler();
    pf = await peakOf(sampler, fwdBytes, ff, options);
    pv = await peakOf(sampler, vjpBytes, fb, options);
    sampler.close();
  }
  // timing: both sessions alive, runs interleaved
  const sf = await ort.InferenceSession.create(fwdBytes, options);
  const sv = await ort.InferenceSession.create(vjpBytes, options);
  for (let i = 0; i < warmup; i++) {
    await sf.run(ff);
    await sv.run(fb);
  }
  const tf: number[] = [];
  const tv: number[] = [];
  for (let i = 0; i < runs; i++) {
    tf.push((await timeIt(() => sf.run(ff), { warmup: 0, runs: 1 })).median);
    tv.push((await timeIt(() => sv.run(fb), { warmup: 0, runs: 1 })).median);
  }
  let torch: TorchResult | undefined;
  if (reference) {
    const r = await sv.run(fb);
    torch = await torchReference(
      `bench-results/.torch-reference-${size}`,
      fwdBytes,
      ff,
      fb["out_sample.cotangent"],
      { out: r.out_sample.data as Float32Array, grad: r["sample.grad"].data as Float32Array },
      runs,
      warmup,
      reference.threads,
      reference.pythons,
    );
  }
  await sf.release();
  await sv.release();
  const summary = (xs: number[]): Timing => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p: number) => {
      const pos = p * (s.length - 1);
      const lo = Math.floor(pos), hi = Math.ceil(pos);
      return s[lo] + (s[hi] - s[lo]) * (pos - lo);
    };
    return { median: q(0.5), p10: q(0.1), p90: q(0.9), runs: xs };
  };
  const forward = summary(tf);
  const vjp = summary(tv);
  return {
    widths,
    size,
    config,
    transformMs,
    forwardNodes: g.stats.forwardNodes,
    backwardNodes: g.stats.backwardNodes,
    units: g.stats.units,
    forward,
    vjp,
    ratio: vjp.median / forward.median,
    ratioMin: Math.min(...tv) / Math.min(...tf),
    peakMB: { forward: pf, vjp: pv, ratio: pv / pf, measuredIn: peakSource },
    torch,
  };
}

/** The widths to run: named ones (`--widths`) or one custom pair (`--channels`, `--heads`). */
function chooseWidths(
  names: string | undefined,
  channelsArg: string | undefined,
  headsArg: string | undefined,
  flag = "--widths",
): [string, Widths][] {
  if (channelsArg !== undefined) {
    if (names !== undefined) throw new InputError(`${flag} and --channels: give one or the other`);
    const channels = parseNumber(channelsArg, "--channels", { min: 32, integer: true });
    const heads = parseNumber(headsArg, "--heads", { fallback: 4, min: 1, integer: true });
    if ((2 * channels) % heads !== 0 || channels % 32 !== 0) {
      throw new InputError(
        `--channels ${channels} --heads ${heads}: expected channels a multiple of 32 (GroupNorm ` +
          `groups) and 2·channels divisible by heads`,
      );
    }
    return [["custom", {
      channels,
      heads,
      about: `transformer ${2 * channels} ch, ${heads} heads`,
    }]];
  }
  if (headsArg !== undefined) throw new InputError("--heads: only with --channels");
  const list = (names ?? "sd15,narrow").split(",").map((n) => n.trim())
    .filter((n) => !PRIOR_SECTION_NAMES.includes(n));
  return list.map((n) => {
    const w = WIDTHS[n];
    if (!w) {
      throw new InputError(
        `${flag} "${n}": expected one of ${VJP_NAMES.join(", ")} (comma-separated)`,
      );
    }
    return [n, w];
  });
}

/** The `--only` names of the prior section (`builtin`: its name before `--prior` existed). */
export const PRIOR_SECTION_NAMES: readonly string[] = ["prior", "builtin"];

/** Every name `--only` takes: the composite's widths and the prior section. */
export const VJP_NAMES: readonly string[] = [...Object.keys(WIDTHS), ...PRIOR_SECTION_NAMES];

/** A checked `bench:vjp` invocation, ready to run. */
export interface VjpBenchPlan {
  /** Latent sizes. */
  sizes: number[];
  /** `--runs` as given (undefined: 7 below 128², 5 from 128²). */
  runs?: number;
  /** Untimed runs first. */
  warmup: number;
  /** Named (or custom) widths to run. */
  widths: [string, Widths][];
  /** ORT session options (threads). */
  options: ort.InferenceSession.SessionOptions;
  /** The PyTorch reference, unless skipped. */
  reference?: { pythons: string[]; threads: number };
  /** JSON output path. */
  out: string;
  /** No progress output. */
  quiet: boolean;
  /** The prior section: which prior, image sizes (absent: skipped). */
  prior?: { sizes: number[] } & PriorSelection;
}

/**
 * Check `bench:vjp` arguments and return what to run (undefined after printing `--help`). Every
 * argument problem is an InputError here, before anything is measured.
 */
export function planVjpBench(args: string[]): VjpBenchPlan | undefined {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    warmup: { type: "string" },
    threads: { type: "string" },
    widths: { type: "string" },
    only: { type: "string" },
    channels: { type: "string" },
    heads: { type: "string" },
    out: { type: "string" },
    "no-reference": { type: "boolean" },
    "torch-python": { type: "string" },
    quiet: { type: "boolean" },
    "prior-sizes": { type: "string" },
    prior: { type: "string" },
    model: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  if (values.only !== undefined && values.widths !== undefined) {
    throw new InputError("--only and --widths: give one (they name the same thing here)");
  }
  const sizes = (values.sizes ?? "64,128").split(",").map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 8 || v % 4 !== 0) {
      throw new InputError(`--sizes "${s}": expected multiples of 4, ≥ 8`);
    }
    return v;
  });
  const runs = values.runs === undefined
    ? undefined
    : parseNumber(values.runs, "--runs", { min: 1, integer: true });
  const warmup = parseNumber(values.warmup, "--warmup", { fallback: 2, min: 0, integer: true });
  const widths = chooseWidths(
    values.only ?? values.widths,
    values.channels,
    values.heads,
    values.only !== undefined ? "--only" : "--widths",
  );
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all" };
  if (values.threads) {
    options.intraOpNumThreads = parseNumber(values.threads, "--threads", { min: 1, integer: true });
  }
  const reference = values["no-reference"] ? undefined : {
    pythons: values["torch-python"] ? [values["torch-python"]] : TORCH_PYTHONS,
    threads: options.intraOpNumThreads ?? navigator.hardwareConcurrency,
  };
  const out = values.out ?? "bench-results/vjp.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);
  const named = (values.only ?? values.widths)?.split(",").map((n) => n.trim());
  const withPrior = values.channels === undefined &&
    (named === undefined || named.some((n) => PRIOR_SECTION_NAMES.includes(n)));
  if (!withPrior && (values.prior !== undefined || values.model !== undefined)) {
    throw new InputError(
      `${values.prior !== undefined ? "--prior" : "--model"}: applies to the prior section, ` +
        "which --only/--channels leave out",
    );
  }
  const priorSpec = priorSpecFromFlags(values);
  const priorSizes = (values["prior-sizes"] ?? "256,512").split(",").map((s) =>
    parseNumber(s, "--prior-sizes", { min: 8, max: 4096, integer: true })
  );
  return {
    sizes,
    runs,
    warmup,
    widths,
    options,
    reference,
    out,
    quiet: values.quiet ?? false,
    prior: withPrior
      ? { sizes: priorSizes, spec: priorSpec, plugins: values.plugin ?? [] }
      : undefined,
  };
}

/** Run a checked VJP benchmark: every widths × size, the large-graph transform, the JSON file. */
export async function runVjpBench(plan: VjpBenchPlan): Promise<void> {
  const { sizes, warmup, widths, options, reference } = plan;
  const progress = new Progress({ enabled: !plan.quiet });
  const priorCases = (plan.prior?.sizes.length ?? 0) * PRIOR_NETWORKS.length;
  // the prior is checked before anything is measured (its options; a --plugin module loads)
  if (plan.prior) await checkPriorSelection(plan.prior, plan.prior.sizes[0]);
  const cases = progress.task("vjp", widths.length * sizes.length + 1 + priorCases);
  try {
    await measureVjp(plan, cases, sizes, warmup, widths, options, reference);
  } finally {
    cases.done();
    progress.stop();
  }
}

async function measureVjp(
  plan: VjpBenchPlan,
  cases: ProgressTask,
  sizes: number[],
  warmup: number,
  widths: [string, Widths][],
  options: ort.InferenceSession.SessionOptions,
  reference: VjpBenchPlan["reference"],
): Promise<void> {
  const results: SizeResult[] = [];
  const rows = [[
    "widths",
    "latent",
    "fwd ms",
    "fwd+vjp ms",
    "ratio",
    "ratio(min)",
    "fwd MB",
    "fwd+vjp MB",
    "nodes f/b",
    "transform ms",
    "torch fwd ms",
    "torch fwd+vjp ms",
    "torch ratio",
    "ours/torch (fwd+vjp)",
  ]];
  const notes: string[] = [];
  for (const [name, w] of widths) {
    for (const size of sizes) {
      const runs = plan.runs ?? (size >= 128 ? 5 : 7);
      cases.update(cases.value, { case: `${name} ${size}²` });
      const r = await benchSize(name, size, w.channels, w.heads, runs, warmup, options, reference);
      cases.tick({ case: `${name} ${size}²` });
      const tr = r.torch && r.torch.ratio !== undefined
        ? r.torch as { forward: Timing; vjp: Timing; ratio: number }
        : undefined;
      results.push(r);
      rows.push([
        name,
        `1x4x${size}x${size}`,
        r.forward.median.toFixed(1),
        r.vjp.median.toFixed(1),
        r.ratio.toFixed(2),
        r.ratioMin.toFixed(2),
        r.peakMB.forward.toFixed(0),
        r.peakMB.vjp.toFixed(0),
        `${r.forwardNodes}/${r.backwardNodes}`,
        r.transformMs.toFixed(0),
        tr ? tr.forward.median.toFixed(1) : "–",
        tr ? tr.vjp.median.toFixed(1) : "–",
        tr ? tr.ratio.toFixed(2) : "–",
        tr ? (r.vjp.median / tr.vjp.median).toFixed(2) : "–",
      ]);
      if (r.torch?.error) notes.push(`torch reference (${name}, ${size}): ${r.torch.error}`);
    }
  }
  // the prior's networks through the Prior API (Prior.denoiseVjp, decodeVjp, …)
  let prior: PriorVjpResult[] | undefined;
  if (plan.prior) {
    prior = await benchPriorVjps({
      prior: plan.prior,
      sizes: plan.prior.sizes,
      runs: plan.runs,
      warmup,
      threads: options.intraOpNumThreads,
      onCase: (label) => cases.update(cases.value, { case: label }),
      onCaseDone: (label) => cases.tick({ case: label }),
    });
  }
  // transform time of a large graph (24 chained composites, ~4000 nodes; no ORT run needed)
  cases.update(cases.value, { case: "large-graph transform" });
  const big = chainedSdBlocks(24, {
    height: 64,
    width: 64,
    channels: 64,
    groups: 32,
    heads: 4,
    contextLength: 77,
    contextDim: 768,
    timeDim: 320,
  });
  const tb = performance.now();
  const gb = await vjpTransform(big, ["out_sample"], ["sample", "encoder_hidden_states"]);
  const largeGraph = {
    forwardNodes: gb.stats.forwardNodes,
    backwardNodes: gb.stats.backwardNodes,
    transformMs: performance.now() - tb,
    shapeSource: gb.stats.shapeSource,
  };
  cases.tick({ case: "large-graph transform" });
  const report = {
    kind: "vjp",
    date: new Date().toISOString(),
    target: "forward+VJP ≤ 2.5 × forward",
    machine: {
      cpus: navigator.hardwareConcurrency,
      loadavg: Deno.loadavg(),
      threads: options.intraOpNumThreads ?? "ort default",
    },
    widths: Object.fromEntries(widths),
    results,
    largeGraph,
    priorSpec: plan.prior ? formatSpec(plan.prior.spec) : undefined,
    prior,
  };
  const out = plan.out;
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  for (const n of notes) console.error(n);
  console.log(`vjp (SD-block composite, CPU, load ${Deno.loadavg()[0].toFixed(2)})`);
  if (rows.length > 1) console.log(formatTable(rows));
  if (prior) {
    console.log(`prior-level VJPs, prior ${formatSpec(plan.prior!.spec)} (Prior API, CPU):`);
    console.log(formatTable([
      [
        "network",
        "methods",
        "image",
        "fwd ms",
        "fwd+vjp ms",
        "ratio",
        "ratio(min)",
        "fwd MB",
        "fwd+vjp MB",
      ],
      ...prior.map((r) => [
        r.network,
        r.methods,
        `${r.size}²`,
        r.forward.median.toFixed(1),
        r.vjp.median.toFixed(1),
        r.ratio.toFixed(2),
        r.ratioMin.toFixed(2),
        r.peakMB.forward?.toFixed(0) ?? "–",
        r.peakMB.vjp?.toFixed(0) ?? "–",
      ]),
    ]));
  }
  console.log(
    `transform of a ${largeGraph.forwardNodes}-node graph: ${
      largeGraph.transformMs.toFixed(0)
    } ms ` +
      `(${largeGraph.backwardNodes} backward nodes, shapes ${largeGraph.shapeSource})`,
  );
  console.log(`wrote ${out}`);
}

/** Run the VJP benchmark with command-line arguments. */
export async function benchVjp(args: string[]): Promise<number> {
  if (args[0] === "--peak-child") return await peakChild(args.slice(1));
  const plan = planVjpBench(args);
  if (plan) await runVjpBench(plan);
  return 0;
}

if (import.meta.main) main(benchVjp);
