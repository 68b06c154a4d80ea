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

const USAGE = `Usage: deno task bench:compare [--images 4] [--seeds 4] [--size 64] [--runs 1]
                               [--out bench-results/compare.json]

Time N = images × seeds LATINO cells through one \`compare\` process against N \`solve\` processes.
`;

const OPTIONS = {
  images: { type: "string" },
  seeds: { type: "string" },
  size: { type: "string" },
  runs: { type: "string" },
  out: { type: "string" },
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
  const size = parseNumber(values.size, "--size", { fallback: 64, min: 16, integer: true });
  const runs = parseNumber(values.runs, "--runs", { fallback: 1, min: 1, integer: true });
  const out = values.out ?? "bench-results/compare.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);

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
    compareMs.push(
      await timed([
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
    const rows = (await Deno.readTextFile(join(dir, "results.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    let ms = 0;
    for (let k = 0; k < nImages; k++) {
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
        const psnr = JSON.parse(await Deno.readTextFile(join(o, "run.json"))).metrics.psnr;
        const row = rows.find((r) => r.image.name === `scene${k}` && r.seed === s);
        if (!row || row.metrics.psnr !== psnr) mismatches++;
      }
    }
    solveMs.push(ms);
    console.log(JSON.stringify({
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
    speedup: med(solveMs) / med(compareMs),
    identical_results: mismatches === 0,
  };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(result, null, 2) + "\n"));
  console.log(
    `${cells} cells at ${size}²: compare ${result.compare.cells_per_s.toFixed(2)} cells/s, ` +
      `separate solve ${result.solve.cells_per_s.toFixed(2)} cells/s → ${
        result.speedup.toFixed(1)
      }×; ` +
      `results identical: ${mismatches === 0} (${out})`,
  );
  return mismatches === 0 ? 0 : 1;
}

if (import.meta.main) await main(benchCompare);
