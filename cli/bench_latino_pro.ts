/**
 * `deno task bench:latino-pro`: LATINO-PRO next to LATINO in the same run, shaped like the
 * LATINO-PRO paper's table (LATINO 5.53 s / 13.6 GB vs LATINO-PRO 48.8 s / 23.4 GB, A100, 1024²).
 *
 * Built-in model, CPU, Gaussian blur σ = 3 (circular), σ_y = 0.01, the procedural scene, default
 * options of each solver (LATINO-PRO from the prompt "a grainy noisy photo"), at 256² and 512² by
 * default. Each (solver, size) runs in a fresh process (so the peak resident memory is its own):
 * one warm-up run (sessions and VJP models built), then `--runs` timed runs. Reported per solver
 * and size: wall time (median), NFE and VJPs per model, time inside forward calls and inside VJP
 * calls (the prior's `stats()`), peak resident memory of the process (RSS sampled every ms from
 * before the prior loads to the end). Ratios, in the same run: wall time and peak memory of
 * LATINO-PRO / LATINO, and the mean time of one UNet VJP / one forward of the same network (the
 * issue's target: ≤ 3). Nothing here is asserted; JSON to `bench-results/latino_pro.json`.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { fileURLToPath } from "node:url";
import { createOperator, validateOptions } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { testScene } from "../core/scene.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { InputError } from "../core/errors.ts";
import { runSolver } from "./run_problem.ts";
import { childEnv, formatTable, summarize } from "./bench_util.ts";
import { PeakSampler } from "./bench_memory.ts";
import { taskForScript } from "./gate.ts";
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
  `Usage: deno task bench:latino-pro [--sizes 256,512] [--runs 3] [--only latino,latino-pro]
                                     [--prior SPEC | --model DIR] [--out PATH] [--quiet]

LATINO-PRO next to LATINO on a prior (default the built-in model; --prior SPEC as in solve; CPU,
blur σ=3, σ_y=0.01): wall time, NFE, VJPs,
time in forwards vs VJPs, peak memory; ratios PRO/LATINO and VJP/forward. Each case runs in a
fresh process. JSON to bench-results/latino_pro.json (or --out).
`;

const SOLVERS = {
  latino: { name: "latino", options: { prompt: "a grainy noisy photo" } },
  "latino-pro": { name: "latino-pro", options: { prompt: "a grainy noisy photo" } },
} as const;
type SolverKey = keyof typeof SOLVERS;

/** What one fresh process measured for one solver at one size. */
export interface CaseResult {
  /** Solver name. */
  solver: string;
  /** Image size (square). */
  size: number;
  /** Wall time of each timed run, ms. */
  wallMs: number[];
  /** Forward calls per model, per run. */
  nfe: Record<string, number>;
  /** VJP calls per model, per run. */
  vjp: Record<string, number>;
  /** ms inside forward calls per model (median over runs). */
  forwardMs: Record<string, number>;
  /** ms inside VJP calls per model (median over runs). */
  vjpMs: Record<string, number>;
  /** Peak resident memory of the process, MB (prior load, warm-up and timed runs). */
  peakRssMB: number;
  /** Resident memory before the prior was loaded, MB. */
  startRssMB: number;
}

const median = (v: number[]) => summarize(v).median;

/** Child mode: one solver at one size, warm-up + timed runs; prints the CaseResult as JSON. */
async function child(
  solver: SolverKey,
  size: number,
  runs: number,
  priorSpec: Spec,
  plugins: readonly string[],
): Promise<CaseResult> {
  const sampler = new PeakSampler();
  const startRssMB = Deno.memoryUsage().rss / 2 ** 20;
  await sampler.reset();
  const registry = await buildRegistry({ plugins });
  const x = testScene(size, size);
  const op = await createOperator(registry, "blur:kernel=gaussian,sigma=3", x.shape, 0);
  const y = await measure(op, x, 0.01, streams(0).get("measurement-noise"));
  const problem = {
    y,
    operator: op,
    noise: { kind: "gaussian" as const, sigma: 0.01 },
    imageShape: x.shape,
  };
  const priorPlugin = registry.get("prior", priorSpec.name);
  const prior = await priorPlugin.create(validateOptions(priorPlugin, priorSpec.options), {
    device: "cpu",
    imageShape: x.shape,
  });
  const spec = SOLVERS[solver];
  const plugin = registry.get("solver", spec.name);
  const s = await plugin.create(validateOptions(plugin, spec.options), {});
  await runSolver(s, problem, prior, { seed: 0, device: "cpu" }); // warm-up
  const wallMs: number[] = [];
  const fwd: Record<string, number[]> = {}, vj: Record<string, number[]> = {};
  let last = { nfe: {}, vjp: {} } as { nfe: Record<string, number>; vjp: Record<string, number> };
  for (let r = 0; r < runs; r++) {
    const run = await runSolver(s, problem, prior, { seed: r + 1, device: "cpu" });
    wallMs.push(run.totalMs);
    for (const [k, v] of Object.entries(run.modelMs)) (fwd[k] ??= []).push(v);
    for (const [k, v] of Object.entries(run.vjpMs)) (vj[k] ??= []).push(v);
    last = { nfe: run.nfe, vjp: run.vjp };
  }
  const peakRssMB = await sampler.peakMB();
  sampler.close();
  const med = (m: Record<string, number[]>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, median(v)]));
  return {
    solver: spec.name,
    size,
    wallMs,
    nfe: last.nfe,
    vjp: last.vjp,
    forwardMs: med(fwd),
    vjpMs: med(vj),
    peakRssMB,
    startRssMB,
  };
}

/** Run one case in a fresh process (this script in child mode). */
async function inChild(
  solver: SolverKey,
  size: number,
  runs: number,
  priorSpec: Spec,
  plugins: readonly string[],
): Promise<CaseResult> {
  const flags = taskForScript("cli/bench_latino_pro.ts")?.flags ??
    ["--allow-read", "--allow-ffi", "--allow-env", "--allow-sys"];
  const script = fileURLToPath(new URL("./bench_latino_pro.ts", import.meta.url));
  const exec = Deno.execPath();
  const deno = Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
  const r = await new Deno.Command(deno, {
    args: [
      "run",
      ...flags,
      script,
      "--child",
      `${solver}:${size}:${runs}`,
      "--prior",
      formatSpec(priorSpec),
      ...plugins.flatMap((p) => ["--plugin", p]),
    ],
    stdin: "null",
    env: childEnv(),
    clearEnv: true,
  }).output();
  const out = new TextDecoder().decode(r.stdout).trim().split("\n").at(-1) ?? "";
  if (r.code !== 0) {
    throw childFailure(
      `bench child ${solver} ${size}²`,
      r.code,
      new TextDecoder().decode(r.stderr),
    );
  }
  return JSON.parse(out) as CaseResult;
}

/** Ratios of one size. */
export interface SizeSummary {
  /** Image size. */
  size: number;
  /** Median wall time LATINO-PRO / LATINO. */
  wallRatio: number;
  /** Peak RSS LATINO-PRO / LATINO. */
  memoryRatio: number;
  /** LATINO-PRO: mean ms of one consistency-UNet VJP / one forward of it (target ≤ 3). */
  vjpOverForward: number;
}

/** Per-size ratios from the two cases. */
export function summarizeSize(latino: CaseResult, pro: CaseResult): SizeSummary {
  const net = "consistency_unet";
  const perFwd = pro.forwardMs[net] / pro.nfe[net], perVjp = pro.vjpMs[net] / pro.vjp[net];
  return {
    size: pro.size,
    wallRatio: median(pro.wallMs) / median(latino.wallMs),
    memoryRatio: pro.peakRssMB / latino.peakRssMB,
    vjpOverForward: perVjp / perFwd,
  };
}

/** Run `bench:latino-pro` with command-line arguments. */
export async function benchLatinoPro(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    out: { type: "string" },
    quiet: { type: "boolean" },
    only: { type: "string" },
    child: { type: "string" },
    prior: { type: "string" },
    model: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const priorSpec = priorSpecFromFlags(values);
  const plugins = values.plugin ?? [];
  if (values.child) {
    const [solver, size, runs] = values.child.split(":");
    if (!(solver in SOLVERS)) throw new InputError(`--child ${values.child}: unknown solver`);
    const r = await child(solver as SolverKey, Number(size), Number(runs), priorSpec, plugins);
    console.log(JSON.stringify(r));
    return 0;
  }
  const sizes = (values.sizes ?? "256,512").split(",").map((s) =>
    parseNumber(s, "--sizes", { min: 32, max: 4096, integer: true }) // blur σ=3: a 23×23 kernel
  );
  const runs = parseNumber(values.runs, "--runs", { fallback: 3, min: 1, integer: true });
  const out = values.out ?? "bench-results/latino_pro.json";
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  const bad = only?.find((s) => !(s in SOLVERS));
  if (bad !== undefined || (only && only.length === 0)) {
    throw new InputError(`--only ${values.only}: expected latino, latino-pro or both`);
  }
  const solvers = (Object.keys(SOLVERS) as SolverKey[]).filter((k) => !only || only.includes(k));
  // the prior, up front: it exists, its options validate, it builds at the first size
  await checkPriorSpec(priorSpec, plugins, [1, 3, sizes[0], sizes[0]]);
  const progress = new Progress({ enabled: !values.quiet });
  const task = progress.task("cases", sizes.length * solvers.length);
  const cases: CaseResult[] = [], summaries: SizeSummary[] = [];
  try {
    for (const size of sizes) {
      const got: Partial<Record<SolverKey, CaseResult>> = {};
      for (const k of solvers) {
        task.update(task.value, { case: `${k} ${size}²` });
        got[k] = await inChild(k, size, runs, priorSpec, plugins);
        task.tick({ case: `${k} ${size}²` });
        cases.push(got[k]!);
      }
      // the ratios need both (--only one of them measures it alone)
      if (got.latino && got["latino-pro"]) {
        summaries.push(summarizeSize(got.latino, got["latino-pro"]));
      }
    }
  } finally {
    progress.stop();
  }
  const rows = [[
    "size",
    "method",
    "NFE (UNet)",
    "VJPs",
    "wall s",
    "peak RSS MB",
    "forwards s",
    "VJPs s",
  ]];
  for (const c of cases) {
    const f = Object.values(c.forwardMs).reduce((a, b) => a + b, 0) / 1000;
    const v = Object.values(c.vjpMs).reduce((a, b) => a + b, 0) / 1000;
    rows.push([
      `${c.size}²`,
      c.solver === "latino" ? "LATINO" : "LATINO-PRO",
      String(c.nfe.consistency_unet ?? 0),
      String(Object.values(c.vjp).reduce((a, b) => a + b, 0)),
      (median(c.wallMs) / 1000).toFixed(3),
      c.peakRssMB.toFixed(0),
      f.toFixed(3),
      v.toFixed(3),
    ]);
  }
  console.log(formatTable(rows));
  console.log(formatTable([
    ["size", "wall PRO/LATINO", "memory PRO/LATINO", "UNet VJP / forward (target ≤ 3)"],
    ...summaries.map((s) => [
      `${s.size}²`,
      s.wallRatio.toFixed(2),
      s.memoryRatio.toFixed(2),
      s.vjpOverForward.toFixed(2),
    ]),
  ]));
  const json = {
    setting: "CPU, blur σ=3 circular, σ_y=0.01, procedural scene, default options",
    prior: formatSpec(priorSpec),
    paper: {
      hardware: "A100, 1024²",
      latino: { seconds: 5.53, memoryGB: 13.6, nfe: 8 },
      latinoPro: { seconds: 48.8, memoryGB: 23.4, nfe: 68 },
      wallRatio: 48.8 / 5.53,
      memoryRatio: 23.4 / 13.6,
    },
    runs,
    cases,
    summaries,
  };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(json, null, 2) + "\n"));
  return 0;
}

if (import.meta.main) await main(benchLatinoPro);
