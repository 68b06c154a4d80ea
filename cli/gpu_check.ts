/**
 * `deno task gpu-check`: do gradient graphs stay on the GPU? For each graph — the SD-block composite's
 * VJP (SD1.5 widths), the whole-loss graph (composite + VAE-decoder-shaped block + blur + norm) and
 * the built-in model's VJP graphs — on the chosen provider (default webgpu):
 *
 * 1. create the session with ONNX Runtime's `session.disable_cpu_ep_fallback = 1`: creation fails
 *    when any node would be placed on the CPU provider;
 * 2. run it with profiling on and read the profile: every node event names its provider; nodes on
 *    the CPU are listed, and those computing shapes (int64/bool outputs, `Shape`, …) are set apart;
 * 3. time forward and forward+VJP (medians) — target forward+VJP / forward ≤ 3.
 *
 * Exit code 1 when a compute node (shape computations aside) runs on the CPU; results in
 * `bench-results/gpu.json`. On a machine without a GPU, `--device cpu` exercises the same code (every
 * node is then on the CPU, which is reported, not failed). Running WebGPU on Linux needs the Vulkan
 * loader and the driver's ICD (`../shared/reference/gpu.md`): e.g.
 * `VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json XDG_RUNTIME_DIR=/tmp
 * deno task gpu-check`.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import * as ort from "onnxruntime-node";
import { join } from "node:path";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { sdBlockGraph, vaeDecoderGraph } from "../core/onnx/vjp/fixtures.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { LossGraphBuilder } from "../core/loss/builder.ts";
import { createOperator } from "../core/registry.ts";
import { streams } from "../core/rng.ts";
import { createExactModel } from "../plugins/builtin-gaussian/model.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { builtinRegistry } from "../mod.ts";
import { formatTable } from "./bench_util.ts";
import { configFor, WIDTHS } from "./bench_vjp.ts";
import { main, parseCli, parseNumber } from "./common.ts";

const USAGE = `Usage: deno task gpu-check [--device webgpu|cuda|cpu] [--sizes 64,128] [--runs 5]
                          [--out bench-results/gpu.json]

Check that gradient graphs run with no compute node on the CPU (ORT's disable_cpu_ep_fallback and
the profile), and time forward vs forward+VJP on the device. Exit code 1 when a compute node runs
on the CPU.
`;

/** One node event of an ONNX Runtime profile. */
export interface ProfiledNode {
  /** Node name. */
  name: string;
  /** Op type. */
  op: string;
  /** Execution provider, e.g. "WebGpuExecutionProvider", "CPUExecutionProvider". */
  provider: string;
  /** Output element types, when the profile records them. */
  outputTypes: string[];
}

/** Ops that compute shapes or indices only (allowed on the CPU). */
const SHAPE_OPS = new Set(["Shape", "Size", "ConstantOfShape", "Range", "NonZero"]);

/**
 * The node events of an ONNX Runtime JSON profile (one per node, first run's events).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { profiledNodes } from "./gpu_check.ts";
 * const events = [{ cat: "Node", name: "mm_kernel_time", args: { op_name: "MatMul",
 *   provider: "WebGpuExecutionProvider", output_type_shape: [{ float: [2, 2] }] } }];
 * assert.deepEqual(profiledNodes(events).map((n) => n.provider), ["WebGpuExecutionProvider"]);
 * ```
 */
export function profiledNodes(events: unknown[]): ProfiledNode[] {
  const seen = new Map<string, ProfiledNode>();
  for (const e of events as { cat?: string; name?: string; args?: Record<string, unknown> }[]) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time") || !e.args) continue;
    const name = e.name.slice(0, -"_kernel_time".length);
    if (seen.has(name)) continue;
    const outs = (e.args.output_type_shape ?? []) as Record<string, unknown>[];
    seen.set(name, {
      name,
      op: String(e.args.op_name ?? ""),
      provider: String(e.args.provider ?? ""),
      outputTypes: outs.flatMap((o) => Object.keys(o)),
    });
  }
  return [...seen.values()];
}

/** Whether a CPU node only computes shapes or indices (int64/int32/bool outputs or a shape op). */
export function isShapeNode(n: ProfiledNode): boolean {
  if (SHAPE_OPS.has(n.op)) return true;
  return n.outputTypes.length > 0 &&
    n.outputTypes.every((t) => t === "int64" || t === "int32" || t === "bool");
}

interface GraphCase {
  name: string;
  forward: Uint8Array | string;
  vjp: Uint8Array | string;
  feeds: Record<string, ort.Tensor>;
  cotangents: Record<string, ort.Tensor>;
}

function randn(n: number, name: string, s = 1): Float32Array {
  const a = new Float32Array(n);
  streams(0).get(`gpu-check/${name}`).fillNormal(a);
  if (s !== 1) { for (let i = 0; i < n; i++) a[i] *= s; }
  return a;
}

async function cases(sizes: number[]): Promise<GraphCase[]> {
  const out: GraphCase[] = [];
  const w = WIDTHS.sd15;
  for (const size of sizes) {
    const cfg = configFor(size, w.channels, w.heads);
    const unetBytes = sdBlockGraph(cfg);
    const lat = [1, 4, size, size], n = 4 * size * size;
    const feeds = {
      sample: new ort.Tensor("float32", randn(n, "z"), lat),
      timestep: new ort.Tensor("float32", Float32Array.of(500), [1]),
      encoder_hidden_states: new ort.Tensor("float32", randn(77 * 768, "c", 0.5), [1, 77, 768]),
    };
    const g = await vjpTransform(unetBytes, ["out_sample"], ["sample"]);
    out.push({
      name: `sd-block composite ${size}²`,
      forward: unetBytes,
      vjp: g.bytes(),
      feeds,
      cotangents: { "out_sample.cotangent": new ort.Tensor("float32", randn(n, "w"), lat) },
    });
    // the whole-loss graph of the bench: composite + VAE-decoder-shaped block + blur + norm
    const unet = { key: `gpu/unet/${size}`, bytes: unetBytes };
    const vae = { key: `gpu/vae/${size}`, bytes: vaeDecoderGraph({ height: size, width: size }) };
    const img = [1, 3, 8 * size, 8 * size];
    const op = await createOperator(builtinRegistry(), "blur:sigma=3", img, 0);
    const b = new LossGraphBuilder("ldps");
    const z = b.input("z_t", lat), c = b.input("encoder_hidden_states", [1, 77, 768]);
    const t = await b.inputLike(unet, "timestep");
    const e = (await b.network("unet", unet, { sample: z, timestep: t, encoder_hidden_states: c }))
      .out_sample;
    const z0 = b.lincomb([[z, b.scalar("x0_z")], [e, b.scalar("x0_out")]]);
    const x = (await b.network("vae_decoder", vae, { latent_sample: b.scale(z0, 1 / 0.18215) }))
      .sample;
    b.loss(b.norm(b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", img)), { scale: 2 }));
    const lg = await b.build({ key: `gpu-check/loss/${size}`, wrt: ["z_t"], device: "cpu" });
    const m = img.reduce((p, q) => p * q, 1);
    out.push({
      name: `whole-loss graph ${size}²`,
      forward: await lg.graph.forwardModel(),
      vjp: lg.graph.vjpGraph.bytes(),
      feeds: {
        z_t: feeds.sample,
        encoder_hidden_states: feeds.encoder_hidden_states,
        timestep: feeds.timestep,
        x0_z: new ort.Tensor("float32", Float32Array.of(1.9), []),
        x0_out: new ort.Tensor("float32", Float32Array.of(-0.8), []),
        y: new ort.Tensor("float32", randn(m, "y", 0.1).map((v) => 0.5 + v), img),
      },
      cotangents: { "loss.cotangent": new ort.Tensor("float32", Float32Array.of(1), []) },
    });
  }
  // the built-in model's ε-UNet and decoder at 256² (latent 32²)
  const files = buildExactModelFiles(createExactModel({ imageShape: [1, 3, 256, 256] }));
  const ub = files.get("unet/model.onnx") as Uint8Array;
  const ug = await vjpTransform(ub, ["out_sample"], ["sample", "encoder_hidden_states"]);
  const ubIn = ug.tensorInfo("sample")!.dims, cIn = ug.tensorInfo("encoder_hidden_states")!.dims;
  const k = ubIn.reduce((p, q) => p * q, 1);
  out.push({
    name: "built-in ε-UNet 256²",
    forward: ub,
    vjp: ug.bytes(),
    feeds: {
      sample: new ort.Tensor("float32", randn(k, "bz"), ubIn),
      timestep: new ort.Tensor("float32", Float32Array.of(437), []),
      encoder_hidden_states: new ort.Tensor(
        "float32",
        randn(cIn.reduce((p, q) => p * q, 1), "bc", 0.3),
        cIn,
      ),
    },
    cotangents: { "out_sample.cotangent": new ort.Tensor("float32", randn(k, "bw"), ubIn) },
  });
  return out;
}

interface CaseResult {
  name: string;
  fallbackOption: { vjpCreated: boolean; error?: string };
  nodes: { total: number; device: number; cpuCompute: string[]; cpuShape: number };
  forwardMs?: number;
  vjpMs?: number;
  ratio?: number;
}

/** A session from bytes or a path. */
function open(
  src: Uint8Array | string,
  options: ort.InferenceSession.SessionOptions,
): Promise<ort.InferenceSession> {
  return typeof src === "string"
    ? ort.InferenceSession.create(src, options)
    : ort.InferenceSession.create(src, options);
}

function providerName(device: string): string {
  return device === "webgpu"
    ? "WebGpuExecutionProvider"
    : device === "cuda"
    ? "CUDAExecutionProvider"
    : "CPUExecutionProvider";
}

async function checkCase(
  c: GraphCase,
  device: string,
  runs: number,
  profileDir: string,
): Promise<CaseResult> {
  const base: ort.InferenceSession.SessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
  const res: CaseResult = {
    name: c.name,
    fallbackOption: { vjpCreated: false },
    nodes: { total: 0, device: 0, cpuCompute: [], cpuShape: 0 },
  };
  // 1. no CPU fallback allowed
  try {
    const s = await open(c.vjp, {
      ...base,
      logSeverityLevel: 4, // the refusal is the answer, not an error to print
      extra: { session: { disable_cpu_ep_fallback: "1" } },
    } as ort.InferenceSession.SessionOptions);
    res.fallbackOption.vjpCreated = true;
    await s.release();
  } catch (e) {
    res.fallbackOption.error = String((e as Error).message ?? e).split("\n")[0];
  }
  // 2. profile one run
  const prefix = join(profileDir, `profile-${c.name.replace(/[^A-Za-z0-9]+/g, "-")}`);
  const sp = await open(c.vjp, {
    ...base,
    enableProfiling: true,
    profileFilePrefix: prefix,
  } as ort.InferenceSession.SessionOptions);
  await sp.run({ ...c.feeds, ...c.cotangents });
  sp.endProfiling();
  await sp.release();
  const file = [...Deno.readDirSync(profileDir)].map((e) => join(profileDir, e.name))
    .find((p) => p.startsWith(prefix) && p.endsWith(".json"));
  if (file) {
    const nodes = profiledNodes(JSON.parse(await Deno.readTextFile(file)));
    const want = providerName(device);
    res.nodes.total = nodes.length;
    res.nodes.device = nodes.filter((n) => n.provider === want).length;
    for (const n of nodes.filter((n) => n.provider !== want)) {
      if (isShapeNode(n)) res.nodes.cpuShape++;
      else res.nodes.cpuCompute.push(`${n.op} '${n.name}'`);
    }
  }
  // 3. timing
  const fwd = await open(c.forward, base);
  const bwd = await open(c.vjp, base);
  const time = async (s: ort.InferenceSession, feeds: Record<string, ort.Tensor>) => {
    await s.run(feeds);
    const t: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await s.run(feeds);
      t.push(performance.now() - t0);
    }
    t.sort((a, b) => a - b);
    return t[Math.floor(t.length / 2)];
  };
  res.forwardMs = await time(fwd, c.feeds);
  res.vjpMs = await time(bwd, { ...c.feeds, ...c.cotangents });
  res.ratio = res.vjpMs / res.forwardMs;
  await fwd.release();
  await bwd.release();
  return res;
}

/** Run the GPU check with command-line arguments. */
export async function gpuCheck(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    device: { type: "string" },
    sizes: { type: "string" },
    runs: { type: "string" },
    out: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const device = values.device ?? "webgpu";
  if (!["webgpu", "cuda", "cpu"].includes(device)) {
    throw new InputError(`--device ${device}: expected webgpu, cuda or cpu`);
  }
  const sizes = (values.sizes ?? "64,128").split(",").map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 8 || v % 4 !== 0) {
      throw new InputError(`--sizes "${s}": expected multiples of 4, ≥ 8`);
    }
    return v;
  });
  const runs = parseNumber(values.runs, "--runs", { fallback: 5, min: 1, integer: true });
  const profileDir = "bench-results/.profiles";
  await Deno.mkdir(profileDir, { recursive: true });
  const results: CaseResult[] = [];
  try {
    for (const c of await cases(sizes)) results.push(await checkCase(c, device, runs, profileDir));
  } finally {
    await Deno.remove(profileDir, { recursive: true }).catch(() => {});
  }
  // a compute node on the CPU fails the check; so does a missing profile (nothing was verified)
  const failed = device !== "cpu" &&
    results.some((r) => r.nodes.cpuCompute.length > 0 || r.nodes.total === 0);
  const out = values.out ?? "bench-results/gpu.json";
  const report = { kind: "gpu-check", date: new Date().toISOString(), device, results, failed };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  const rows = [[
    "graph",
    "no-fallback session",
    "nodes on device",
    "CPU compute",
    "CPU shape",
    "fwd ms",
    "fwd+vjp ms",
    "ratio",
  ]];
  for (const r of results) {
    rows.push([
      r.name,
      r.fallbackOption.vjpCreated ? "created" : "refused",
      `${r.nodes.device}/${r.nodes.total}`,
      String(r.nodes.cpuCompute.length),
      String(r.nodes.cpuShape),
      r.forwardMs?.toFixed(1) ?? "–",
      r.vjpMs?.toFixed(1) ?? "–",
      r.ratio?.toFixed(2) ?? "–",
    ]);
  }
  console.log(`gpu-check (${device})`);
  console.log(formatTable(rows));
  for (const r of results) {
    if (r.nodes.cpuCompute.length && device !== "cpu") {
      console.log(`${r.name}: on the CPU: ${r.nodes.cpuCompute.slice(0, 10).join(", ")}`);
    }
  }
  console.log(`wrote ${out}`);
  return failed ? 1 : 0;
}

if (import.meta.main) await main(gpuCheck);
