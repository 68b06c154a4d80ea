/**
 * `deno task bench:operators`: operator throughput, and equal-work NumPy/SciPy references for the
 * closed-form proxes measured in the same run.
 *
 * For every built-in operator plugin (`operatorPlugins`), with representative options per plugin
 * name (plugins without an entry are tried with their defaults, and skipped with a note when that
 * fails), at each size (512² and 1024² RGB by default) on the procedural test scene:
 * - forward A(x) and prox_L2 (γ = 1, and for JPEG also γ = 2500, LATINO's first-step weight at
 *   σ_y = 0.01) wall time: median, p10, p90 of N runs after a warm-up, in ms, and megapixels per
 *   second (H·W / time);
 * - the references (`cli/bench_reference.ts`): for the circular Gaussian blur (σ = 3), circular
 *   bicubic SR ×4 and box inpainting, our prox_L2 and an equal-work NumPy/SciPy float32 version of
 *   the same closed form (same caching, one thread; blur also with two FFT workers), timed call by
 *   call interleaved in the same run, and the ratio ours/reference of the medians (> 1: slower).
 *
 * Results go to `bench-results/operators.json` (or `--out`), and a short table to stdout. Further
 * benchmark sections (e.g. VJPs) plug in through {@link BenchSection} and `SECTIONS` below, using
 * `timeIt` from cli/bench_util.ts.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { createOperator } from "../core/registry.ts";
import type { ForwardOperator } from "../core/contracts.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { testScene } from "../core/scene.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { InputError } from "../core/errors.ts";
import { operatorPlugins } from "../operators/mod.ts";
import { firstLine, main, parseCli, parseNumber, registryFromFlags } from "./common.ts";
import { Progress, type ProgressTask } from "./progress.ts";
import { formatTable, megapixelsPerSecond, summarize, timeIt, type Timing } from "./bench_util.ts";
import { type ReferenceCase, type ReferenceServer, startReference } from "./bench_reference.ts";

const USAGE =
  `Usage: deno task bench:operators [--sizes 512,1024] [--runs 7] [--out bench-results/operators.json]

Operator forward/prox throughput at each size (RGB, procedural scene), and the blur, SR and
inpainting proxes against equal-work NumPy/SciPy references timed interleaved with ours in the
same run (python3 + numpy + scipy), with the ratio ours/reference.

Options:
  --sizes LIST        square sizes, comma-separated (default 512,1024)
  --runs N            timed runs per measurement (default 7; fewer for very slow ones)
  --warmup N          untimed runs first (default 1)
  --only LIST         benchmark only these operator plugins (comma-separated names)
  --no-reference      skip the python3 NumPy/SciPy references
  --out PATH          JSON output (default bench-results/operators.json)
  --quiet             no progress bar (it goes to stderr, with an ETA)
`;

/**
 * Representative spec strings per built-in plugin name, tried in order (the first that the plugin
 * accepts is used). Several entries that all validate are benchmarked one after the other when
 * marked with `all: true`.
 */
const REPRESENTATIVE: Record<string, { specs: string[]; all?: boolean; gammas?: number[] }> = {
  blur: {
    specs: [
      "blur:kernel=gaussian,sigma=3,boundary=circular",
      "blur:sigma=3,boundary=circular",
      "blur:sigma=3",
    ],
  },
  sr: { specs: ["sr:factor=4", "sr:factor=4,boundary=reflect"], all: true },
  inpaint: { specs: ["inpaint:mask=box", "inpaint:mask=random,p=0.2"], all: true },
  // γ = 2500: what LATINO's first step gives (δ = 1, σ_y = 0.01), where most coefficients of a
  // prior sample lie outside y's bins; z = x + 0.05 noise keeps fewer outside, so both are shown.
  jpeg: { specs: ["jpeg:quality=10"], gammas: [1, 2500] },
};

/** The proxes compared with an equal-work NumPy/SciPy reference, and the reference cases. */
const REFERENCE_CASES: {
  spec: string;
  cases: (size: number) => ReferenceCase[];
}[] = [
  {
    spec: "blur:kernel=gaussian,sigma=3,boundary=circular",
    cases: (size) => [1, 2].map((workers) => ({ kind: "blur", size, workers })),
  },
  { spec: "sr:factor=4", cases: (size) => [{ kind: "sr", size, factor: 4, workers: 1 }] },
  { spec: "inpaint:mask=box", cases: (size) => [{ kind: "inpaint", size }] },
];

/** One timed measurement in the JSON. */
interface TimedEntry extends Timing {
  /** Megapixels (of the input image) per second at the median. */
  mpps: number;
}

/** One operator at one size. */
interface OperatorResult {
  spec: string;
  size: number;
  /** γ of the timed prox. */
  gamma: number;
  inputShape: number[];
  outputShape: number[];
  proxMethod: "closed-form" | "iterative";
  forward: TimedEntry;
  prox: TimedEntry;
}

/** What a benchmark section receives. */
export interface BenchContext {
  /** Square sizes to measure. */
  sizes: number[];
  /** Timed runs per measurement. */
  runs: number;
  /** Untimed runs before. */
  warmup: number;
  /** Progress over the benchmark's cases (one task; sections tick it). */
  progress?: ProgressTask;
}

/** A section of the benchmark: JSON for the results file and a table for the terminal. */
export interface BenchSection {
  /** Key in the JSON output. */
  name: string;
  /** Run it. */
  run(ctx: BenchContext): Promise<{ json: unknown; table: string }>;
}

/**
 * Time `fn` with `runs` timed runs, unless one run takes more than ~2 s: then fewer (at least 3),
 * and a single timed run past ~20 s (the JPEG prox at 1024²), so that slow iterative proxes do not
 * take many minutes.
 */
async function timeAdaptive(fn: () => Promise<unknown>, ctx: BenchContext): Promise<Timing> {
  const t0 = performance.now();
  await fn();
  const once = performance.now() - t0;
  const runs = once > 20000
    ? 1
    : once > 2000
    ? Math.max(3, Math.min(ctx.runs, Math.floor(10000 / once)))
    : ctx.runs;
  return await timeIt(fn, { warmup: Math.max(0, ctx.warmup - 1), runs });
}

function entry(t: Timing, size: number): TimedEntry {
  return { ...t, mpps: megapixelsPerSecond(size, size, t.median) };
}

/** Create every representative operator of one plugin for a shape (skipped ones get a reason). */
async function representativeOperators(
  name: string,
  shape: number[],
): Promise<{ ops: { spec: string; op: ForwardOperator }[]; skipped?: string }> {
  const registry = await registryFromFlags({});
  const rep = REPRESENTATIVE[name] ?? { specs: [name] };
  const ops: { spec: string; op: ForwardOperator }[] = [];
  const reasons: string[] = [];
  for (const spec of rep.specs) {
    try {
      ops.push({ spec, op: await createOperator(registry, spec, shape, 0) });
      if (!rep.all) break;
    } catch (e) {
      reasons.push(`${spec}: ${firstLine(e)}`);
    }
  }
  return ops.length ? { ops } : { ops, skipped: reasons.join("; ") };
}

/** The operator section: forward and prox of every built-in operator plugin. */
const operatorSection: BenchSection & { only?: string[] } = {
  name: "operators",
  async run(ctx) {
    const results: OperatorResult[] = [];
    const skipped: { plugin: string; reason: string }[] = [];
    const rows: string[][] = [[
      "operator",
      "size",
      "fwd ms",
      "fwd MP/s",
      "prox ms",
      "prox MP/s",
      "prox",
    ]];
    for (const plugin of operatorPlugins) {
      if (this.only && !this.only.includes(plugin.name)) continue;
      for (const size of ctx.sizes) {
        ctx.progress?.update(ctx.progress.value, { case: `${plugin.name} ${size}²` });
        const shape = [1, 3, size, size];
        const { ops, skipped: why } = await representativeOperators(plugin.name, shape);
        if (why !== undefined) {
          if (size === ctx.sizes[0]) skipped.push({ plugin: plugin.name, reason: why });
          ctx.progress?.tick({ case: `${plugin.name} ${size}² skipped` });
          continue;
        }
        const x = testScene(size, size);
        const gammas = REPRESENTATIVE[plugin.name]?.gammas ?? [1];
        for (const { spec, op } of ops) {
          const y = await measure(op, x, 0.01, streams(0).get("measurement-noise"));
          const noise = streams(0).get("bench-z");
          const z = { data: x.data.map((v) => v + 0.05 * noise.normal()), shape: [...x.shape] };
          const forward = await timeAdaptive(() => op.forward(x), ctx);
          for (const gamma of gammas) {
            const prox = await timeAdaptive(() => op.proxL2(z, y, gamma), ctx);
            const r: OperatorResult = {
              spec,
              size,
              gamma,
              inputShape: [...op.inputShape],
              outputShape: [...op.outputShape],
              proxMethod: op.capabilities.closedFormProx ? "closed-form" : "iterative",
              forward: entry(forward, size),
              prox: entry(prox, size),
            };
            results.push(r);
            rows.push([
              spec,
              `${size}²`,
              forward.median.toFixed(1),
              r.forward.mpps.toFixed(1),
              gammas.length > 1 ? `${prox.median.toFixed(1)} (γ=${gamma})` : prox.median.toFixed(1),
              r.prox.mpps.toFixed(1),
              r.proxMethod,
            ]);
          }
        }
        ctx.progress?.tick({ case: `${plugin.name} ${size}²` });
      }
    }
    let table = formatTable(rows);
    if (skipped.length) {
      table += "\n" + skipped.map((s) => `skipped ${s.plugin}: ${s.reason}`).join("\n");
    }
    return { json: { results, skipped }, table };
  },
};

/** One interleaved comparison of our prox with its reference. */
interface ReferenceResult {
  spec: string;
  size: number;
  reference: ReferenceCase;
  ours: Timing;
  ref: Timing;
  /** ours / reference, medians. */
  ratio: number;
}

/**
 * Our prox and the reference's, alternated call by call (`runs` each after a warm-up), so both see
 * the same load; medians and their ratio.
 */
async function referenceSection(
  ctx: BenchContext,
  server: ReferenceServer,
  only: string[] | undefined,
): Promise<{ results: ReferenceResult[]; rows: string[][] }> {
  const registry = await registryFromFlags({});
  const results: ReferenceResult[] = [];
  const rows: string[][] = [["prox", "size", "reference", "ours ms", "ref ms", "ratio"]];
  for (const { spec, cases } of REFERENCE_CASES) {
    if (only && !only.includes(spec.split(":")[0])) continue;
    for (const size of ctx.sizes) {
      const shape = [1, 3, size, size];
      const op = await createOperator(registry, spec, shape, 0);
      const x = testScene(size, size);
      const y = await measure(op, x, 0.01, streams(0).get("measurement-noise"));
      const z = { data: x.data.slice(), shape: [...x.shape] };
      const out = { data: new Float32Array(x.data.length), shape: [...x.shape] };
      const ours = () => op.proxL2(z, y, 1, { out });
      for (const c of cases(size)) {
        for (let i = 0; i < Math.max(1, ctx.warmup); i++) {
          await ours();
          await server.time(c);
        }
        const a: number[] = [], b: number[] = [];
        for (let i = 0; i < ctx.runs; i++) {
          const t0 = performance.now();
          await ours();
          a.push(performance.now() - t0);
          b.push(await server.time(c));
        }
        const r: ReferenceResult = {
          spec,
          size,
          reference: c,
          ours: summarize(a),
          ref: summarize(b),
          ratio: NaN,
        };
        r.ratio = r.ours.median / r.ref.median;
        results.push(r);
        rows.push([
          spec,
          `${size}²`,
          `${c.kind}${c.workers ? `, ${c.workers} worker${c.workers > 1 ? "s" : ""}` : ""}`,
          r.ours.median.toFixed(1),
          r.ref.median.toFixed(1),
          r.ratio.toFixed(2),
        ]);
      }
    }
  }
  return { results, rows };
}

/** Every section, in order. Other benchmarks add themselves here. */
const SECTIONS: BenchSection[] = [operatorSection];

/** A checked `bench:operators` invocation, ready to run. */
export interface OperatorBenchPlan {
  /** Sizes, runs, warm-up. */
  ctx: BenchContext;
  /** Operator plugins to measure (all when undefined). */
  only?: string[];
  /** Run the SciPy reference. */
  reference: boolean;
  /** JSON output path. */
  out: string;
  /** No progress output. */
  quiet: boolean;
}

/** Names `--only` accepts here: the operator plugins. */
export function operatorNames(): string[] {
  return operatorPlugins.map((p) => p.name);
}

/**
 * Check `bench:operators` arguments and return what to run (undefined after printing `--help`).
 * Every argument problem is an InputError here, before anything is measured.
 */
export function planOperatorBench(args: string[]): OperatorBenchPlan | undefined {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    warmup: { type: "string" },
    only: { type: "string" },
    "no-reference": { type: "boolean" },
    out: { type: "string" },
    quiet: { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const sizes = (values.sizes ?? "512,1024").split(",").map((s) =>
    parseNumber(s, "--sizes", { min: 16, max: 8192, integer: true })
  );
  const ctx: BenchContext = {
    sizes,
    runs: parseNumber(values.runs, "--runs", { fallback: 7, min: 1, integer: true }),
    warmup: parseNumber(values.warmup, "--warmup", { fallback: 1, min: 0, integer: true }),
  };
  const out = values.out ?? "bench-results/operators.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  if (only) {
    const known = operatorNames();
    const bad = only.find((n) => !known.includes(n));
    if (bad) {
      throw new InputError(`--only ${bad}: no such operator plugin (known: ${known.join(", ")})`);
    }
  }
  return { ctx, only, reference: !values["no-reference"], out, quiet: values.quiet ?? false };
}

/** Run a checked operator benchmark: measurements, the SciPy reference, the JSON file. */
export async function runOperatorBench(plan: OperatorBenchPlan): Promise<void> {
  const { ctx, out } = plan;
  operatorSection.only = plan.only;
  const plugins = operatorPlugins.filter((p) => !plan.only || plan.only.includes(p.name));
  const progress = new Progress({ enabled: !plan.quiet });
  const cases = progress.task(
    "operators",
    plugins.length * ctx.sizes.length + (plan.reference ? 1 : 0),
  );
  const report: Record<string, unknown> = {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    os: Deno.build.os,
    arch: Deno.build.arch,
    hardwareConcurrency: navigator.hardwareConcurrency,
    config: { sizes: ctx.sizes, runs: ctx.runs, warmup: ctx.warmup },
  };
  const tables: string[] = [];
  try {
    for (const section of SECTIONS) {
      const { json, table } = await section.run({ ...ctx, progress: cases });
      report[section.name] = json;
      tables.push(`\n${section.name}\n${table}`);
    }
    if (plan.reference) {
      cases.update(cases.value, { case: "NumPy/SciPy references" });
      const server = await startReference();
      if ("error" in server) {
        report.reference = { error: server.error };
        tables.push(`\nreferences skipped: ${server.error}`);
      } else {
        try {
          const { results, rows } = await referenceSection(ctx, server, plan.only);
          report.reference = {
            kind: "equal-work NumPy/SciPy float32 references, interleaved call by call with ours",
            ...server.info,
            results,
          };
          tables.push(`\nequal-work references (ratio = ours / reference)\n${formatTable(rows)}`);
        } finally {
          await server.close();
        }
      }
      cases.tick({ case: "NumPy/SciPy references" });
    }
  } finally {
    cases.done();
    progress.stop();
  }
  for (const t of tables) console.log(t);
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  console.log(`\nwrote ${out}`);
}

/** Run `bench:operators` with command-line arguments. */
export async function bench(args: string[]): Promise<number> {
  const plan = planOperatorBench(args);
  if (plan) await runOperatorBench(plan);
  return 0;
}

if (import.meta.main) await main(bench);
