/**
 * `deno task bench:compare`: what one process per image shape buys. The same N cells (LATINO ×
 * blur on K images × S seeds) run once through `compare` (one process, one model load for the
 * shape, measurements shared) and once as N separate `solve` processes (a model load each), both
 * timed end to end as a user would run them, on CPU. Reports cells/s of both and the ratio, and
 * checks that every `solve` result equals its `compare` cell (same PSNR to the last bit).
 *
 * Output: bench-results/compare.json (or --out) and one line per run on stdout. Work files go to
 * .bench/compare/ (git-ignored).
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { join, resolve } from "node:path";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { writePng } from "../core/io/image.ts";
import { testScene } from "../core/scene.ts";
import type { Tensor } from "../core/tensor.ts";
import { main, parseCli, parseNumber } from "./common.ts";
import { childEnv, percentile } from "./bench_util.ts";
import { Progress, type ProgressTask } from "./progress.ts";

const USAGE = `Usage: deno task bench:compare [--images 4] [--seeds 4] [--sizes 64] [--runs 1]
                               [--only compare,solve] [--out bench-results/compare.json] [--quiet]

Time N = images × seeds LATINO cells through one \`compare\` process against N \`solve\` processes,
at each size (--size N is --sizes N). --only compare or --only solve times one side (no ratio).
Progress with an ETA goes to stderr.
`;

const OPTIONS = {
  images: { type: "string" },
  seeds: { type: "string" },
  size: { type: "string" },
  sizes: { type: "string" },
  runs: { type: "string" },
  only: { type: "string" },
  out: { type: "string" },
  quiet: { type: "boolean" },
} as const;

const ROOT = resolve(new URL("..", import.meta.url).pathname);

/** The test scene turned by k quarter turns (k = 0…3) and mirrored for k ≥ 4: distinct images. */
function variant(x: Tensor, k: number): Tensor {
  const [, c, h, w] = x.shape;
  const out = new Float32Array(x.data.length);
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let si = i, sj = j;
        for (let r = 0; r < k % 4; r++) [si, sj] = [sj, h - 1 - si]; // square images
        if (k >= 4) sj = w - 1 - sj;
        out[(ch * h + i) * w + j] = x.data[(ch * h + si) * w + sj];
      }
    }
  }
  return { data: out, shape: [...x.shape] };
}

async function taskArgs(name: string): Promise<string[]> {
  const cfg = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  return String(cfg.tasks[name]).split(/\s+/).slice(1);
}

/** This deno binary when the permissions allow running it, else `deno` from PATH. */
const DENO =
  Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state === "granted"
    ? Deno.execPath()
    : "deno";

async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await new Deno.Command(DENO, {
    args,
    cwd: ROOT,
    stdin: "null",
    env: childEnv(), // without LD_*: Deno refuses to pass LD_LIBRARY_PATH under --allow-run=deno
    clearEnv: true,
  }).output();
  const ms = performance.now() - t0;
  if (r.code !== 0) {
    throw new Error(
      `deno ${args.slice(-12).join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`,
    );
  }
  return ms;
}

/** One size: `runs` × (one compare process, `cells` solve processes). */
async function measureAt(
  size: number,
  nImages: number,
  nSeeds: number,
  runs: number,
  sides: { compare: boolean; solve: boolean },
  cases: ProgressTask,
  lines: string[],
): Promise<{ result: Record<string, unknown>; mismatches: number }> {
  const work = join(ROOT, ".bench", "compare");
  await Deno.remove(work, { recursive: true }).catch(() => {});
  const scene = testScene(size, size);
  const images: string[] = [];
  for (let k = 0; k < nImages; k++) {
    const p = join(work, "images", `scene${k}.png`);
    await writePng(p, variant(scene, k));
    images.push(p);
  }
  const cells = nImages * nSeeds;
  const common = ["--operator", "blur:sigma=1", "--noise", "0.01", "--device", "cpu", "--quiet"];
  const compareArgs = await taskArgs("compare"), solveArgs = await taskArgs("solve");
  const compareMs: number[] = [], solveMs: number[] = [];
  let mismatches = 0;
  for (let run = 0; run < runs; run++) {
    const dir = join(work, `compare-${run}`);
    if (sides.compare) cases.update(cases.value, { case: `compare ${size}², run ${run + 1}` });
    compareMs.push(
      !sides.compare ? NaN : await timed([
        ...compareArgs,
        "--solvers",
        "latino",
        "--operators",
        "blur:sigma=1",
        "--noise",
        "0.01",
        "--seeds",
        `0-${nSeeds - 1}`,
        "--images",
        join(work, "images"),
        "--baselines",
        "none",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        dir,
      ]),
    );
    if (sides.compare) cases.tick({ case: `compare ${size}², run ${run + 1}` });
    const rows = !sides.compare
      ? []
      : (await Deno.readTextFile(join(dir, "results.jsonl"))).trim().split("\n")
        .map((l) => JSON.parse(l));
    let ms = 0;
    for (let k = 0; k < nImages && sides.solve; k++) {
      for (let s = 0; s < nSeeds; s++) {
        const o = join(work, `solve-${run}-${k}-${s}`);
        ms += await timed([
          ...solveArgs,
          "--solver",
          "latino",
          ...common,
          "--seed",
          String(s),
          "--input",
          images[k],
          "--out",
          o,
        ]);
        cases.tick({ case: `solve ${size}², cell ${k * nSeeds + s + 1}/${cells}` });
        if (!sides.compare) continue;
        const psnr = JSON.parse(await Deno.readTextFile(join(o, "run.json"))).metrics.psnr;
        const row = rows.find((r) => r.image.name === `scene${k}` && r.seed === s);
        if (!row || row.metrics.psnr !== psnr) mismatches++;
      }
    }
    solveMs.push(sides.solve ? ms : NaN);
    lines.push(JSON.stringify({
      run,
      cells,
      compare_s: compareMs[run] / 1000,
      solve_s: ms / 1000,
      ratio: ms / compareMs[run],
    }));
  }
  const med = (v: number[]) => percentile([...v].sort((a, b) => a - b), 0.5);
  const result = {
    benchmark: "compare vs separate solve runs",
    machine: { cores: navigator.hardwareConcurrency, deno: Deno.version.deno },
    setup: {
      solver: "latino",
      operator: "blur:sigma=1",
      noise: 0.01,
      size,
      images: nImages,
      seeds: nSeeds,
      cells,
      runs,
    },
    compare: {
      wall_s: med(compareMs) / 1000,
      cells_per_s: cells / (med(compareMs) / 1000),
      runs_s: compareMs.map((v) => v / 1000),
    },
    solve: {
      wall_s: med(solveMs) / 1000,
      cells_per_s: cells / (med(solveMs) / 1000),
      runs_s: solveMs.map((v) => v / 1000),
    },
    speedup: sides.compare && sides.solve ? med(solveMs) / med(compareMs) : null,
    identical_results: sides.compare && sides.solve ? mismatches === 0 : null,
  };
  return { result, mismatches };
}

/** Run the benchmark. */
export async function benchCompare(args: string[]): Promise<number> {
  const { values } = parseCli(args, OPTIONS);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const nImages = parseNumber(values.images, "--images", {
    fallback: 4,
    min: 1,
    max: 8,
    integer: true,
  });
  const nSeeds = parseNumber(values.seeds, "--seeds", { fallback: 4, min: 1, integer: true });
  if (values.size !== undefined && values.sizes !== undefined) {
    throw new InputError("--size and --sizes: give one (--size N is --sizes N)");
  }
  const sizes = (values.sizes ?? values.size ?? "64").split(",").map((v) =>
    parseNumber(v, values.sizes !== undefined ? "--sizes" : "--size", { min: 16, integer: true })
  );
  const only = values.only?.split(",").map((v) => v.trim()).filter(Boolean);
  const badSide = only?.find((v) => v !== "compare" && v !== "solve");
  if (badSide !== undefined || (only && only.length === 0)) {
    throw new InputError(`--only ${values.only}: expected compare, solve or both`);
  }
  const runs = parseNumber(values.runs, "--runs", { fallback: 1, min: 1, integer: true });
  const out = values.out ?? "bench-results/compare.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);

  const sides = {
    compare: !only || only.includes("compare"),
    solve: !only || only.includes("solve"),
  };
  const progress = new Progress({ enabled: !values.quiet });
  const cellsPerSize = nImages * nSeeds;
  const cases = progress.task(
    "bench:compare",
    sizes.length * runs * ((sides.compare ? 1 : 0) + (sides.solve ? cellsPerSize : 0)),
  );
  const lines: string[] = [];
  const measured: Record<string, unknown>[] = [];
  let mismatches = 0;
  try {
    for (const size of sizes) {
      const m = await measureAt(size, nImages, nSeeds, runs, sides, cases, lines);
      measured.push(m.result);
      mismatches += m.mismatches;
    }
  } finally {
    cases.done();
    progress.stop();
  }
  for (const l of lines) console.log(l);
  const result = measured.length === 1
    ? measured[0]
    : { benchmark: measured[0].benchmark, sizes: measured };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(result, null, 2) + "\n"));
  type Measured = {
    setup: { cells: number; size: number };
    compare: { cells_per_s: number };
    solve: { cells_per_s: number };
    speedup: number | null;
    identical_results: boolean | null;
  };
  const rate = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)} cells/s` : "not run");
  for (const r of measured as Measured[]) {
    console.log(
      `${r.setup.cells} cells at ${r.setup.size}²: compare ${rate(r.compare.cells_per_s)}, ` +
        `separate solve ${rate(r.solve.cells_per_s)}` +
        (r.speedup === null ? "" : ` → ${r.speedup.toFixed(1)}×`) +
        (r.identical_results === null ? "" : `; results identical: ${r.identical_results}`) +
        ` (${out})`,
    );
  }
  return mismatches === 0 ? 0 : 1;
}

if (import.meta.main) await main(benchCompare);
