/**
 * `deno task bench:dps`: LDPS and PSLD per step on CPU at 256² images.
 *
 * Cases, each in a fresh child process (its peak resident memory is the process's high-water mark,
 * `VmHWM`, beside its resident memory when the solver starts):
 * - `builtin-ldps-blur`, `builtin-psld-blur`: the built-in exact model (lossless DCT autoencoder,
 *   latent 3×256×256), Gaussian blur σ = 3 through its ONNX export — or, with `--prior SPEC` /
 *   `--model DIR`, that prior instead (the case names keep their `builtin-` prefix);
 * - `builtin-ldps-jpeg`: the same with JPEG q = 10, which has no ONNX export (the TypeScript
 *   fallback: graph forward, A and its VJP in TypeScript, graph backward);
 * - `standin-ldps-blur`: the SD-block composite at SD1.5's first-level widths as a stand-in UNet
 *   (core/onnx/vjp/fixtures.ts; latent 4×32×32, ε-prediction, SD's schedule) and the SD-layout
 *   VAE-decoder block (8× up-sampling, a quarter of SD's widths) as the decoder.
 *
 * For each: the time per step (median over the steps after the first, which builds and loads the
 * whole-loss graph), model calls per step (NFE and VJPs per network, the prior's convention: a VJP
 * runs its network's forward and backward once), and the whole-loss graph's forward + VJP against its
 * forward alone (medians of interleaved runs at one step's inputs; target ≤ 2.5×). The papers count
 * 1000 NFE + 1000 VJPs for LDPS (1000 DDIM steps, one UNet forward and one backward each) — here one
 * VJP call of the UNet and of the decoder per step (and of the encoder for PSLD), plus one decoder
 * forward at the end.
 *
 * The machine is shared: read ratios from one run. JSON in `bench-results/dps.json`.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { fileURLToPath } from "node:url";
import type {
  Conditioning,
  ModelStats,
  NoiseSchedule,
  Prior,
  PriorNetworks,
} from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { sessionPool } from "../core/backend/pool.ts";
import { decodeModel } from "../core/onnx/proto.ts";
import { sdBlockGraph, vaeDecoderGraph } from "../core/onnx/vjp/fixtures.ts";
import { schedulerFromConfig } from "../core/pipeline/schedule.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { testScene } from "../core/scene.ts";
import type { Tensor } from "../core/tensor.ts";
import { solveContext } from "../core/context.ts";
import { DpsStepLoss } from "../solvers/dps_loss.ts";
import { dpsSettings, ldpsOptions, psldOptions, runDps } from "../solvers/ldps.ts";
import { childEnv, formatTable, timeIt } from "./bench_util.ts";
import { taskForScript } from "./gate.ts";
import { configFor, WIDTHS } from "./bench_vjp.ts";
import {
  buildRegistry,
  checkPriorSpec,
  childFailure,
  main,
  parseCli,
  parseNumber,
  priorSpecFromFlags,
} from "./common.ts";
import { formatSpec, type Spec } from "../core/spec.ts";
import { Progress } from "./progress.ts";

const USAGE =
  `Usage: deno task bench:dps [--sizes 256] [--steps N] [--runs N] [--only LIST] [--quiet]
                         [--prior SPEC | --model DIR] [--out bench-results/dps.json]

LDPS/PSLD per step on CPU (built-in model; SD-block stand-in UNet + VAE-decoder block): ms per
step, NFE and VJPs per step, peak memory (fresh child process per case), whole-loss forward+VJP vs
forward. Progress with an ETA on stderr.

Options:
  --sizes LIST image sizes, comma-separated (default 256; multiples of 32)
  --steps N    solver steps per case (default 12; the first, which builds the graph, is not timed)
  --runs N     timed runs of the forward / forward+VJP comparison (default 9)
  --only LIST  cases, comma-separated (default all): builtin-ldps-blur, builtin-psld-blur,
               builtin-ldps-jpeg, standin-ldps-blur
  --prior SPEC the prior of the builtin-* cases, as in solve (default builtin; diffusers:path=DIR,
               or one a --plugin module provides)
  --model DIR  shorthand for --prior diffusers:path=DIR
  --out PATH   JSON results (default bench-results/dps.json)
`;

const CASES = ["builtin-ldps-blur", "builtin-psld-blur", "builtin-ldps-jpeg", "standin-ldps-blur"];

/** What one case measured. */
export interface CaseResult {
  case: string;
  /** The prior the case ran (a spec, or "stand-in"). */
  prior: string;
  size: number;
  steps: number;
  /** Median ms per step (steps after the first). */
  msPerStep: number;
  /** ms of the first step (graph build, transform, session loads). */
  firstStepMs: number;
  /** Forward calls per step by network (averaged over the steps). */
  nfePerStep: Record<string, number>;
  /** VJP calls per step by network. */
  vjpPerStep: Record<string, number>;
  /** Whole-loss graph: median ms of its forward, of forward + VJP, and the ratio. */
  lossForwardMs: number;
  lossForwardVjpMs: number;
  ratio: number;
  /** Whether the operator ran in TypeScript (no ONNX export). */
  fallback: boolean;
  /** Resident memory when the solver starts and the process's peak (MB). */
  rssStartMB: number;
  peakMB: number;
}

/** The process's peak resident memory (VmHWM, Linux), else the current RSS. */
function peakRssMB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return Number(m[1]) / 1024;
  } catch { /* not Linux */ }
  return Deno.memoryUsage().rss / 2 ** 20;
}

/**
 * A prior over the SD-block composite (stand-in UNet, ε-prediction) and the VAE-decoder block, with
 * SD1.5's schedule and a fixed random text embedding: enough of the Prior contract for LDPS.
 */
function standInPrior(size: number): Prior {
  const lat = size / 8;
  const w = WIDTHS.sd15;
  const unetBytes = sdBlockGraph(configFor(lat, w.channels, w.heads));
  const decBytes = vaeDecoderGraph({ height: lat, width: lat, channels: 128, groups: 8 });
  const tInput = decodeModel(unetBytes).graph!.input!.find((i) => i.name === "timestep")!;
  const tDims = (tInput.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue ?? 1));
  const schedule = schedulerFromConfig({
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    num_train_timesteps: 1000,
    prediction_type: "epsilon",
  });
  const sched: NoiseSchedule = schedule;
  const scaling = 0.18215;
  const r = streams(0).get("bench-dps/ehs");
  const ehs: Tensor = {
    data: Float32Array.from({ length: 77 * 768 }, () => 0.5 * r.normal()),
    shape: [1, 77, 768],
  };
  const nets: PriorNetworks = {
    schedule: sched,
    unet: {
      name: "unet",
      source: { key: `bench-dps/sd-block/${lat}`, bytes: unetBytes, label: "sd-block" },
      predictionType: "epsilon",
      sample: "sample",
      timestep: { name: "timestep", type: "float32", shape: tDims },
      conditioning: ["encoder_hidden_states"],
      differentiable: ["encoder_hidden_states"],
      output: "out_sample",
    },
    decoder: {
      name: "vae_decoder",
      source: { key: `bench-dps/vae-decoder/${lat}`, bytes: decBytes, label: "vae-decoder" },
      input: "latent_sample",
      output: "sample",
      scalingFactor: scaling,
      shiftFactor: 0,
    },
  };
  let decodes = 0;
  const c: Conditioning = { tensors: { encoder_hidden_states: ehs } };
  const stats = (): ModelStats => ({
    calls: { vae_decoder: decodes },
    ms: {},
    vjp: {},
    vjpMs: {},
  });
  return {
    name: "sd-block-standin",
    capabilities: {
      consistency: false,
      denoise: true,
      encode: false,
      latentGradients: true,
      conditioningGradients: true,
      decoderGradients: true,
      encoderGradients: false,
    },
    schedule: sched,
    latentShape: (s) => [1, 4, s[2] / 8, s[3] / 8],
    async decode(z) {
      decodes++;
      const s = await sessionPool().session("vae_decoder", nets.decoder.source, { device: "cpu" });
      const zs = { data: z.data.map((v) => v / scaling), shape: z.shape };
      return (await s.run({ latent_sample: zs })).sample;
    },
    condition: () => Promise.resolve(c),
    conditioningTensors: () => [],
    conditionFromTensors: () => c,
    networks: () => nets,
    stats,
  };
}

/** Run one case in this process. */
async function runCase(
  name: string,
  size: number,
  steps: number,
  runs: number,
  priorSpec: Spec,
  plugins: readonly string[],
) {
  const [family, solver, opName] = name.split("-");
  if (!CASES.includes(name)) throw new InputError(`--case: unknown case "${name}"`);
  const shape = [1, 3, size, size];
  const registry = await buildRegistry({ plugins });
  let prior: Prior;
  if (family === "builtin") {
    const p = registry.get("prior", priorSpec.name);
    prior = await p.create(validateOptions(p, priorSpec.options), {
      device: "cpu",
      imageShape: shape,
    });
  } else prior = standInPrior(size);
  const op = await createOperator(
    registry,
    opName === "jpeg" ? "jpeg:quality=10" : "blur:sigma=3",
    shape,
    0,
  );
  const clean = testScene(size, size);
  const y = await measure(op, clean, 0.01, streams(0).get("measurement-noise"));
  const problem = {
    y,
    operator: op,
    noise: { kind: "gaussian" as const, sigma: 0.01 },
    imageShape: shape,
  };
  const options = solver === "psld" ? psldOptions.parse({ steps }) : ldpsOptions.parse({ steps });
  const settings = dpsSettings(solver as "ldps" | "psld", options, prior, op);
  const ctx = solveContext(problem, prior, { rng: streams(0).get("solver"), device: "cpu" });
  const rssStartMB = Deno.memoryUsage().rss / 2 ** 20;
  const it = runDps(settings, problem, prior, ctx);
  const ms: number[] = [];
  let first: Record<string, number> = {}, firstVjp: Record<string, number> = {};
  let last: Record<string, number> = {}, lastVjp: Record<string, number> = {};
  let k = 0;
  for (let r = await it.next(); !r.done; r = await it.next(), k++) {
    ms.push(r.value.ms);
    if (k === 0) [first, firstVjp] = [{ ...r.value.nfe }, { ...r.value.vjp }];
    [last, lastVjp] = [{ ...r.value.nfe }, { ...r.value.vjp }];
  }
  const per = (a: Record<string, number>, b: Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const [n, v] of Object.entries(a)) {
      const d = (v - (b[n] ?? 0)) / Math.max(1, steps - 1);
      if (d) out[n] = d;
    }
    return out;
  };
  const timed = ms.slice(1).sort((a, b) => a - b);
  // forward vs forward + VJP of the step's whole-loss graph at one step's inputs
  const loss = await DpsStepLoss.build({ gluing: settings.gamma > 0, squared: false }, {
    networks: prior.networks!(),
    operator: op,
    latentShape: ctx.latentShape,
    pool: ctx.sessions,
    device: "cpu",
  });
  const zr = streams(1).get("bench-dps/z");
  const zt = {
    data: Float32Array.from(
      { length: ctx.latentShape.reduce((a, b) => a * b, 1) },
      () => zr.normal(),
    ),
    shape: [...ctx.latentShape],
  };
  const inputs = {
    zt,
    t: 500,
    c: await prior.condition(""),
    y,
    yMeas: y,
    omega: settings.omega,
    gamma: settings.gamma,
  };
  const fwd: number[] = [], both: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const a = await timeIt(() => loss.forward(inputs), { warmup: 0, runs: 1 });
    const b = await timeIt(() => loss.evaluate(inputs), { warmup: 0, runs: 1 });
    if (i > 0) [fwd[i - 1], both[i - 1]] = [a.median, b.median];
  }
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const result: CaseResult = {
    case: name,
    prior: family === "builtin" ? formatSpec(priorSpec) : "stand-in",
    size,
    steps,
    msPerStep: med(timed),
    firstStepMs: ms[0],
    nfePerStep: per(last, first),
    vjpPerStep: per(lastVjp, firstVjp),
    lossForwardMs: med(fwd),
    lossForwardVjpMs: med(both),
    ratio: med(both) / med(fwd),
    fallback: loss.usesFallback,
    rssStartMB,
    peakMB: peakRssMB(),
  };
  return result;
}

/** The deno binary for child processes (the running one when allowed, else `deno` on PATH). */
function denoBinary(): string {
  const exec = Deno.execPath();
  return Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
}

/** Run one case in a fresh child process. */
async function caseInChild(
  name: string,
  size: number,
  steps: number,
  runs: number,
  priorSpec: Spec,
  plugins: readonly string[],
): Promise<CaseResult> {
  const flags = taskForScript("cli/bench_dps.ts")?.flags ??
    ["--allow-read", "--allow-ffi", "--allow-env", "--allow-sys"];
  const script = fileURLToPath(import.meta.url);
  const r = await new Deno.Command(denoBinary(), {
    args: [
      "run",
      ...flags,
      script,
      "--case",
      name,
      "--sizes",
      String(size),
      "--steps",
      String(steps),
      "--runs",
      String(runs),
      "--prior",
      formatSpec(priorSpec),
      ...plugins.flatMap((p) => ["--plugin", p]),
    ],
    stdin: "null",
    env: childEnv(),
    clearEnv: true,
  }).output();
  if (r.code !== 0) {
    throw childFailure(`case ${name}`, r.code, new TextDecoder().decode(r.stderr));
  }
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

const fmtCounts = (c: Record<string, number>) =>
  Object.entries(c).map(([k, v]) => `${k} ${Number(v.toFixed(2))}`).join(", ") || "–";

/** Run `bench:dps` with command-line arguments. */
export async function benchDps(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    steps: { type: "string" },
    quiet: { type: "boolean" },
    runs: { type: "string" },
    only: { type: "string" },
    out: { type: "string" },
    case: { type: "string" },
    prior: { type: "string" },
    model: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sizes = (values.sizes ?? "256").split(",").map((v) =>
    parseNumber(v, "--sizes", { min: 32, max: 2048, integer: true })
  );
  for (const size of sizes) {
    if (size % 32) throw new InputError(`--sizes ${size}: expected a multiple of 32`);
  }
  const steps = parseNumber(values.steps, "--steps", { fallback: 12, min: 2, integer: true });
  const runs = parseNumber(values.runs, "--runs", { fallback: 9, min: 1, integer: true });
  const priorSpec = priorSpecFromFlags(values), plugins = values.plugin ?? [];
  if (values.case) {
    const r = await runCase(values.case, sizes[0], steps, runs, priorSpec, plugins);
    console.log(JSON.stringify(r));
    return 0;
  }
  const out = values.out ?? "bench-results/dps.json";
  if (Deno.permissions.querySync({ name: "write", path: out }).state !== "granted") {
    throw new InputError(
      `--out ${out}: not writable under this task's permissions (bench-results/)`,
    );
  }
  const cases = values.only ? values.only.split(",").map((s) => s.trim()) : CASES;
  for (const c of cases) {
    if (!CASES.includes(c)) {
      throw new InputError(`--only: unknown case "${c}" (known: ${CASES.join(", ")})`);
    }
  }
  // the prior is checked before any case starts: it exists (a --plugin module loads), its
  // options validate, it builds at the first size
  if (cases.some((c) => c.startsWith("builtin-"))) {
    await checkPriorSpec(priorSpec, plugins, [1, 3, sizes[0], sizes[0]]);
  } else if (values.prior !== undefined || values.model !== undefined) {
    throw new InputError(
      `${values.prior !== undefined ? "--prior" : "--model"}: applies to the builtin-* cases, ` +
        "which --only leaves out",
    );
  }
  const progress = new Progress({ enabled: !values.quiet });
  const task = progress.task("bench:dps", cases.length * sizes.length);
  const results: CaseResult[] = [];
  try {
    for (const size of sizes) {
      for (const c of cases) {
        results.push(await caseInChild(c, size, steps, runs, priorSpec, plugins));
        task.tick({ case: `${c} ${size}²` });
      }
    }
  } finally {
    task.done();
    progress.stop();
  }
  const rows = [[
    "case",
    "ms/step",
    "NFE/step",
    "VJPs/step",
    "loss fwd ms",
    "fwd+VJP ms",
    "ratio",
    "RSS start MB",
    "peak MB",
  ]];
  for (const r of results) {
    rows.push([
      r.case + (r.fallback ? " (TS operator)" : ""),
      r.msPerStep.toFixed(1),
      fmtCounts(r.nfePerStep),
      fmtCounts(r.vjpPerStep),
      r.lossForwardMs.toFixed(1),
      r.lossForwardVjpMs.toFixed(1),
      r.ratio.toFixed(2),
      r.rssStartMB.toFixed(0),
      r.peakMB.toFixed(0),
    ]);
  }
  console.log(formatTable(rows));
  await Deno.mkdir(out.replace(/\/[^/]*$/, "") || ".", { recursive: true });
  await writeFileAtomic(
    out,
    new TextEncoder().encode(
      JSON.stringify(
        { date: new Date().toISOString(), prior: formatSpec(priorSpec), results },
        null,
        2,
      ) + "\n",
    ),
  );
  return 0;
}

if (import.meta.main) await main(benchDps);
