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
import * as ort from "onnxruntime-node";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { chainedSdBlocks, type SdBlockConfig, sdBlockGraph } from "../core/onnx/vjp/fixtures.ts";
import { streams } from "../core/rng.ts";
import { formatTable, timeIt, type Timing } from "./bench_util.ts";
import { main, parseCli, parseNumber } from "./common.ts";

const USAGE = `Usage: deno task bench:vjp [--sizes 64,128] [--runs 7] [--threads N] [--out PATH]

Forward vs forward+VJP wall time and peak memory of the SD-block composite on CPU.

Options:
  --sizes LIST     latent sizes (square), comma-separated (default 64,128)
  --runs N         timed runs per model (default 7; 3 at sizes ≥ 128)
  --warmup N       untimed runs first (default 2)
  --threads N      ORT intra-op threads (default: ORT's choice)
  --channels N     base channels of the composite (default 64)
  --out PATH       JSON output (default bench-results/vjp.json)
`;

/**
 * Peak resident memory sampler: a worker polls the process's RSS (`Deno.memoryUsage().rss`, the
 * whole process) every millisecond while the main thread is blocked inside `session.run`.
 */
class PeakSampler {
  #worker: Worker;
  constructor() {
    const code = `let peak = 0;
      self.onmessage = (e) => {
        if (e.data === "reset") { peak = 0; self.postMessage("ok"); }
        else self.postMessage(peak);
      };
      setInterval(() => { const r = Deno.memoryUsage().rss; if (r > peak) peak = r; }, 1);`;
    const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
    this.#worker = new Worker(url, { type: "module" });
  }
  #ask(msg: string): Promise<unknown> {
    return new Promise((res) => {
      this.#worker.onmessage = (e) => res(e.data);
      this.#worker.postMessage(msg);
    });
  }
  /** Restart the maximum. */
  async reset(): Promise<void> {
    await this.#ask("reset");
    await new Promise((r) => setTimeout(r, 5));
  }
  /** Peak RSS since the last reset, MB. */
  async peakMB(): Promise<number> {
    await new Promise((r) => setTimeout(r, 5));
    return (await this.#ask("get") as number) / 2 ** 20;
  }
  /** Stop the worker. */
  close(): void {
    this.#worker.terminate();
  }
}

interface SizeResult {
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
  peakMB: { forward: number; vjp: number; ratio: number };
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

/** Peak RSS above the level before the session existed, over session creation and two runs. */
async function peakOf(
  sampler: PeakSampler,
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  options: ort.InferenceSession.SessionOptions,
): Promise<number> {
  const before = Deno.memoryUsage().rss / 2 ** 20;
  await sampler.reset();
  const s = await ort.InferenceSession.create(bytes, options);
  await s.run(feeds);
  await s.run(feeds);
  const peak = await sampler.peakMB();
  await s.release();
  return peak - before;
}

async function benchSize(
  size: number,
  channels: number,
  runs: number,
  warmup: number,
  options: ort.InferenceSession.SessionOptions,
): Promise<SizeResult> {
  const config: SdBlockConfig = {
    height: size,
    width: size,
    channels,
    groups: 32,
    heads: 4,
    contextLength: 77,
    contextDim: 768,
    timeDim: 320,
  };
  const fwdBytes = sdBlockGraph(config);
  const t0 = performance.now();
  const g = await vjpTransform(fwdBytes, ["out_sample"], ["sample"]);
  const transformMs = performance.now() - t0;
  const vjpBytes = g.bytes();
  const ff = feedsFor(size, config, false);
  const fb = feedsFor(size, config, true);
  // peak memory, one model at a time
  const sampler = new PeakSampler();
  const pf = await peakOf(sampler, fwdBytes, ff, options);
  const pv = await peakOf(sampler, vjpBytes, fb, options);
  sampler.close();
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
    peakMB: { forward: pf, vjp: pv, ratio: pv / pf },
  };
}

/** Run the VJP benchmark with command-line arguments. */
export async function benchVjp(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    warmup: { type: "string" },
    threads: { type: "string" },
    channels: { type: "string" },
    out: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sizes = (values.sizes ?? "64,128").split(",").map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 8 || v % 4 !== 0) {
      throw new InputError(`--sizes "${s}": expected multiples of 4, ≥ 8`);
    }
    return v;
  });
  const runsArg = values.runs;
  const warmup = parseNumber(values.warmup, "--warmup", { fallback: 2, min: 0, integer: true });
  const channels = parseNumber(values.channels, "--channels", {
    fallback: 64,
    min: 8,
    integer: true,
  });
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all" };
  if (values.threads) {
    options.intraOpNumThreads = parseNumber(values.threads, "--threads", { min: 1, integer: true });
  }
  const results: SizeResult[] = [];
  const rows = [[
    "latent",
    "fwd ms",
    "fwd+vjp ms",
    "ratio",
    "ratio(min)",
    "fwd MB",
    "fwd+vjp MB",
    "nodes f/b",
    "transform ms",
  ]];
  for (const size of sizes) {
    const runs = parseNumber(runsArg, "--runs", {
      fallback: size >= 128 ? 3 : 7,
      min: 1,
      integer: true,
    });
    const r = await benchSize(size, channels, runs, warmup, options);
    results.push(r);
    rows.push([
      `1x4x${size}x${size}`,
      r.forward.median.toFixed(1),
      r.vjp.median.toFixed(1),
      r.ratio.toFixed(2),
      r.ratioMin.toFixed(2),
      r.peakMB.forward.toFixed(0),
      r.peakMB.vjp.toFixed(0),
      `${r.forwardNodes}/${r.backwardNodes}`,
      r.transformMs.toFixed(0),
    ]);
  }
  // transform time of a large graph (24 chained composites, ~4000 nodes; no ORT run needed)
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
  const report = {
    kind: "vjp",
    date: new Date().toISOString(),
    target: "forward+VJP ≤ 2.5 × forward",
    machine: {
      cpus: navigator.hardwareConcurrency,
      loadavg: Deno.loadavg(),
      threads: options.intraOpNumThreads ?? "ort default",
    },
    results,
    largeGraph,
  };
  const out = values.out ?? "bench-results/vjp.json";
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  console.log(`vjp (SD-block composite, CPU, load ${Deno.loadavg()[0].toFixed(2)})`);
  console.log(formatTable(rows));
  console.log(
    `transform of a ${largeGraph.forwardNodes}-node graph: ${
      largeGraph.transformMs.toFixed(0)
    } ms ` +
      `(${largeGraph.backwardNodes} backward nodes, shapes ${largeGraph.shapeSource})`,
  );
  console.log(`wrote ${out}`);
  return 0;
}

if (import.meta.main) main(benchVjp);
