/**
 * `compare` and `compare-merge` end to end, as subprocesses through their tasks: a 2 solvers ×
 * 2 operators × 2 images × 1 seed run on 32×32 crops with the built-in model and tiny perceptual
 * networks, checked for its files, its numbers, its grids and its report (in headless Chromium),
 * then interrupted-and-resumed, sharded-and-merged, and merged with mismatched shards.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { decodeNpy, readImage } from "../mod.ts";
import { featureSet, frechetDistance } from "../core/feature_metrics.ts";
import { gridLayout } from "../cli/compare/grid.ts";
import { type CellRow, deterministicFields } from "../cli/compare/results.ts";
import { canonicalJson } from "../cli/compare/config.ts";
import { channelMeanFeatures, lpipsStandIn } from "./compare_fixtures.ts";
import { findChromium, renderPage } from "./browser.ts";
import { DENO, ROOT, task } from "./subprocess.ts";

const KODAK = join(ROOT, "..", "shared", "data", "kodak");
const IMG1 = join(KODAK, "kodim01.png"), IMG2 = join(KODAK, "kodim02.png");
const SOLVERS = "latino;latino:delta=0.3";
const OPERATORS = "blur:sigma=1;sr:factor=2";
/** Cells: per image 2 solvers × 2 operators + baselines (blur: 4, sr: 3 without y) = 11. */
const CELLS = 22;

/** The arguments of a task in deno.json, e.g. ["run", "--allow-read", …, "cli/compare.ts"]. */
async function taskArgs(name: string): Promise<string[]> {
  const cfg = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const [deno, ...args] = String(cfg.tasks[name]).split(/\s+/);
  assert.equal(deno, "deno");
  return args;
}

function readRows(text: string): CellRow[] {
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function rowsOf(dir: string): Promise<Map<string, CellRow>> {
  const rows = readRows(await Deno.readTextFile(join(dir, "results.jsonl")));
  return new Map(rows.map((r) => [r.key, r]));
}

function sameDeterministic(a: Map<string, CellRow>, b: Map<string, CellRow>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, r] of a) {
    assert.equal(
      canonicalJson(deterministicFields(r)),
      canonicalJson(deterministicFields(b.get(k)!)),
      `cell ${k} (${r.method.label} · ${r.operator.label} · ${r.image.name})`,
    );
  }
}

/** A minimal CSV reader (quoted fields with commas). */
function parseCsv(text: string): Record<string, string>[] {
  const lines = text.trim().split("\n").map((line) => {
    const out: string[] = [];
    let cur = "", q = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (q) {
        if (ch === '"' && line[i + 1] === '"') (cur += '"', i++);
        else if (ch === '"') q = false;
        else cur += ch;
      } else if (ch === '"') q = true;
      else if (ch === ",") (out.push(cur), cur = "");
      else cur += ch;
    }
    out.push(cur);
    return out;
  });
  const [head, ...rest] = lines;
  return rest.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
}

function mean(v: number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** The 2×2×2×1 comparison every step of the test below inspects (with its LPIPS/FID stand-ins). */
interface FullRun {
  dir: string;
  full: string;
  common: string[];
  rows: Awaited<ReturnType<typeof rowsOf>>;
  lpips: string;
  feats: string;
  shards: string[];
}

async function fullRun(): Promise<FullRun> {
  const dir = await Deno.makeTempDir();
  const lpips = join(dir, "lpips.onnx"), feats = join(dir, "features.onnx");
  await Deno.writeFile(lpips, lpipsStandIn());
  await Deno.writeFile(feats, channelMeanFeatures());
  const common = [
    "--solvers",
    SOLVERS,
    "--operators",
    OPERATORS,
    "--images",
    IMG1,
    "--images",
    IMG2,
    "--crop",
    "32x32",
    "--seeds",
    "0",
    "--noise",
    "0.01",
    "--lpips",
    lpips,
    "--fid-features",
    feats,
  ];
  const full = join(dir, "full");
  const r = await task("compare", ...common, "--out", full, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const rows = await rowsOf(full);

  const shards = [join(dir, "shard0"), join(dir, "shard1")];
  return { dir, full, common, rows, lpips, feats, shards };
}

/** Step: files: every cell once, with every field, all ok. */
async function checkFiles(fr: FullRun): Promise<void> {
  const { full, rows } = fr;
  for (const f of ["config.json", "results.jsonl", "summary.md", "summary.csv", "report.html"]) {
    assert.ok((await Deno.stat(join(full, f))).isFile, f);
  }
  assert.equal(rows.size, CELLS);
  const methods = new Set([...rows.values()].map((r) => r.method.label));
  assert.deepEqual([...methods].sort(), [
    "latino",
    "latino:delta=0.3",
    "measurement",
    "posterior-mean",
    "posterior-sample",
    "pseudo-inverse",
  ]);
  for (const r of rows.values()) {
    assert.equal(r.status, "ok", `${r.method.label}: ${r.error}`);
    assert.ok(Number.isFinite(r.metrics.psnr) && Number.isFinite(r.metrics.ssim));
    assert.ok(Number.isFinite(r.metrics.measurement_psnr) && Number.isFinite(r.metrics.lpips));
    assert.equal(r.noise, 0.01);
    assert.equal(r.seed, 0);
    assert.match(r.image.sha256, /^[0-9a-f]{64}$/);
    assert.ok(r.timing.wall_ms >= 0 && r.timing.finished_at && r.timing.host);
    assert.ok((await Deno.stat(join(full, r.files.restored!))).isFile);
    if (r.method.kind === "solver") {
      // One model per image shape: every solver cell names the same model files.
      assert.match(r.prior.sha256!, /^[0-9a-f]{64}$/);
      assert.equal(r.provider, "cpu");
      assert.equal(r.nfe.consistency_unet, 8);
      assert.equal(r.steps.length, 8);
      assert.ok(r.steps.every((s) => s.residual! > 0));
      assert.equal((r.method.options as { steps: number }).steps, 8); // defaults recorded
      assert.ok(r.timing.peak_rss_mb! > 10);
    }
  }
  assert.equal(new Set([...rows.values()].map((r) => r.prior.sha256).filter((s) => s)).size, 1);
  // The exact posterior mean beats every solver on average (it is the MMSE estimate).
  const psnrOf = (m: string) =>
    mean([...rows.values()].filter((r) => r.method.label === m).map((r) => r.metrics.psnr!));
  assert.ok(psnrOf("posterior-mean") > psnrOf("latino"));
  assert.ok(psnrOf("posterior-mean") > psnrOf("pseudo-inverse"));
}

/** Step: summary.csv and summary.md hold the JSONL means. */
async function checkSummaries(fr: FullRun): Promise<void> {
  const { full, rows } = fr;
  const csv = parseCsv(await Deno.readTextFile(join(full, "summary.csv")));
  const md = await Deno.readTextFile(join(full, "summary.md"));
  assert.equal(csv.length, 11); // 6 methods × blur + 5 × sr
  for (const line of csv) {
    const group = [...rows.values()].filter((r) =>
      r.method.label === line.method && r.operator.label === line.operator &&
      r.noise === Number(line.noise)
    );
    assert.equal(group.length, 2);
    for (const key of ["psnr", "ssim", "lpips", "measurement_psnr"] as const) {
      const v = group.map((r) => r.metrics[key]!);
      const m = mean(v);
      assert.ok(Math.abs(Number(line[`${key}_mean`]) - m) <= 1e-12 * Math.abs(m), key);
      // Two images: s.e. = |a − b| / 2.
      const se = Math.abs(v[0] - v[1]) / 2;
      assert.ok(Math.abs(Number(line[`${key}_se`]) - se) <= 1e-9 * (se + 1e-12), `${key} s.e.`);
    }
    const e = mean(group.map((r) => r.metrics.psnr!));
    const se = Math.abs(group[0].metrics.psnr! - group[1].metrics.psnr!) / 2;
    assert.ok(md.includes(`${e.toFixed(2)} ± ${se.toFixed(2)}`), `${line.method} in summary.md`);
    // Paired Δ against the reference (latino), per image.
    if (line.method !== "latino") {
      const ref = [...rows.values()].filter((r) =>
        r.method.label === "latino" && r.operator.label === line.operator
      );
      const d = group.map((r) =>
        r.metrics.psnr! - ref.find((x) => x.image.name === r.image.name)!.metrics.psnr!
      );
      assert.ok(Math.abs(Number(line.psnr_delta) - mean(d)) < 1e-12);
      assert.ok(Math.abs(Number(line.psnr_delta_se) - Math.abs(d[0] - d[1]) / 2) < 1e-12);
    } else assert.equal(line.psnr_delta, "");
  }
  // Best solver per column in bold.
  const blurSolvers = csv.filter((l) => l.kind === "solver" && l.operator === "blur:sigma=1");
  const best = blurSolvers.reduce((a, b) => (Number(a.psnr_mean) > Number(b.psnr_mean) ? a : b));
  assert.ok(md.includes(`**${Number(best.psnr_mean).toFixed(2)} ±`));
}

/** Step: LPIPS and FID/KID columns from the ONNX networks. */
async function checkLpipsFid(fr: FullRun): Promise<void> {
  const { full, rows } = fr;
  for (const r of rows.values()) {
    // The stand-in computes mean((a − b)²) on [−1,1] = 4·MSE on [0,1].
    const expected = 4 * 10 ** (-r.metrics.psnr! / 10);
    assert.ok(Math.abs(r.metrics.lpips! - expected) <= 1e-4 * expected, r.method.label);
  }
  const csv = parseCsv(await Deno.readTextFile(join(full, "summary.csv")));
  const clean = await Promise.all(
    ["kodim01", "kodim02"].map(async (n) =>
      decodeNpy(await Deno.readFile(join(full, `features/clean-${n}.npy`))).data
    ),
  );
  for (const line of csv) {
    const group = [...rows.values()].filter((r) =>
      r.method.label === line.method && r.operator.label === line.operator
    );
    const f = await Promise.all(
      group.map(async (r) => decodeNpy(await Deno.readFile(join(full, r.files.features!))).data),
    );
    const fid = frechetDistance(featureSet(f), featureSet(clean));
    assert.ok(Math.abs(Number(line.fid) - fid) <= 1e-12 * (1 + fid), `${line.method} FID`);
    assert.ok(Number.isFinite(Number(line.kid)));
    assert.equal(line.fid_images, "2");
    assert.equal(line.fid_dims, "3");
    // The features are the channel means of the (saved) reconstruction.
    const x = await readImage(join(full, group[0].files.restored!));
    const n = 32 * 32;
    for (let c = 0; c < 3; c++) {
      const m = mean([...x.data.subarray(c * n, (c + 1) * n)]);
      assert.ok(Math.abs(m - f[0][c]) < 1 / 255, "feature = channel mean");
    }
  }
  const md = await Deno.readTextFile(join(full, "summary.md"));
  assert.match(md, /FID from 2 images < 3 feature dimensions/);
  assert.match(await Deno.readTextFile(join(full, "report.html")), /FID from 2 images &lt; 3/);
}

/** Step: grids: one per image × operator × σ_y, sized by the layout. */
async function checkGrids(fr: FullRun): Promise<void> {
  const { full } = fr;
  const names = [...Deno.readDirSync(join(full, "grids"))].map((e) => e.name).sort();
  assert.equal(names.length, 4);
  for (const n of names) {
    const meta = await sharp(join(full, "grids", n)).metadata();
    // clean | y | 2 solvers | pseudo-inverse | posterior mean | posterior sample = 7 tiles of
    // 32×32 at zoom 8.
    const L = gridLayout(32, 32, 7);
    assert.equal(L.zoom, 8);
    assert.deepEqual([meta.width, meta.height], [7 * 256 + 8 * 8, 26 + 256 + 40 + 8]);
    assert.deepEqual([meta.width, meta.height], [L.width, L.height]);
  }
}

/** Step: report.html references only files that exist, nothing remote. */
async function checkReportLinks(fr: FullRun): Promise<void> {
  const { full } = fr;
  const html = await Deno.readTextFile(join(full, "report.html"));
  const refs = [...html.matchAll(/\b(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
  assert.ok(refs.length >= 4);
  for (const ref of refs) {
    assert.ok(!/^[a-z]+:/i.test(ref), `no URL: ${ref}`);
    assert.ok((await Deno.stat(join(full, ref))).isFile, ref);
  }
  assert.ok(!/<script/i.test(html) && !/<link/i.test(html));
}

/** Step: a cell equals a separate `solve` run of its problem. */
async function checkCellEqualsSolve(fr: FullRun): Promise<void> {
  const { dir, full, rows } = fr;
  const key = [...rows.values()].find((r) =>
    r.method.label === "latino" && r.operator.label === "blur:sigma=1" &&
    r.image.name === "kodim01"
  )!;
  const out = join(dir, "solve");
  const s = await task(
    "solve",
    "--solver",
    "latino",
    "--operator",
    "blur:sigma=1",
    "--noise",
    "0.01",
    "--seed",
    "0",
    "--input",
    join(full, "clean", "kodim01.png"),
    "--out",
    out,
    "--quiet",
  );
  assert.equal(s.code, 0, s.stderr);
  const run = JSON.parse(await Deno.readTextFile(join(out, "run.json")));
  assert.equal(run.metrics.psnr, key.metrics.psnr);
  assert.equal(run.metrics.ssim, key.metrics.ssim);
  assert.deepEqual(
    (await readImage(join(out, "restored.png"))).data,
    (await readImage(join(full, key.files.restored!))).data,
  );
}

/** Step: re-running the same command recomputes nothing. */
async function checkRerunIsNoop(fr: FullRun): Promise<void> {
  const { full, common, rows } = fr;
  const again = await task("compare", ...common, "--out", full, "--json");
  assert.equal(again.code, 0, again.stderr);
  const lines = again.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 1);
  assert.equal(lines[0].event, "done");
  assert.equal(lines[0].ran, 0);
  assert.equal(lines[0].finished, CELLS);
  sameDeterministic(await rowsOf(full), rows);
}

/** Step: Ctrl-C after the first cell, then resume: same deterministic fields. */
async function checkInterruptResume(fr: FullRun): Promise<void> {
  const { dir, common, rows } = fr;
  const out = join(dir, "interrupted");
  const child = new Deno.Command(DENO, {
    args: [...(await taskArgs("compare")), ...common, "--out", out, "--json"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", signalled = false;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    if (!signalled && buf.includes('"event":"cell"')) {
      child.kill("SIGINT");
      signalled = true;
    }
  }
  const status = await child.status;
  assert.ok(signalled);
  assert.equal(status.code, 130, await stderr);
  const partial = await rowsOf(out);
  assert.ok(partial.size >= 1 && partial.size < CELLS, `${partial.size} cells before the stop`);
  // Every line on disk is a whole row.
  const text = await Deno.readTextFile(join(out, "results.jsonl"));
  assert.equal(text.trim().split("\n").length, partial.size);
  assert.ok((await Deno.stat(join(out, "report.html"))).isFile); // reports of what is done
  const resumed = await task("compare", ...common, "--out", out, "--json");
  assert.equal(resumed.code, 0, resumed.stderr);
  const done = JSON.parse(resumed.stdout.trim().split("\n").at(-1)!);
  assert.equal(done.ran, CELLS - partial.size);
  sameDeterministic(await rowsOf(out), rows);
}

/** Step: shards 0/2 and 1/2, merged, equal the single run. */
async function checkShardsMerge(fr: FullRun): Promise<void> {
  const { dir, full, common, rows, shards } = fr;
  for (let i = 0; i < 2; i++) {
    const s = await task(
      "compare",
      ...common,
      "--shard",
      `${i}/2`,
      "--out",
      shards[i],
      "--quiet",
    );
    assert.equal(s.code, 0, s.stderr);
  }
  const a = await rowsOf(shards[0]), b = await rowsOf(shards[1]);
  assert.ok(a.size > 0 && b.size > 0 && a.size + b.size === CELLS);
  const merged = join(dir, "merged");
  const m = await task("compare-merge", ...shards, "--out", merged, "--quiet");
  assert.equal(m.code, 0, m.stderr);
  sameDeterministic(await rowsOf(merged), rows);
  const strip = (s: string) =>
    parseCsv(s).map((l) => {
      const { seconds: _s, peak_rss_mb: _p, ...rest } = l;
      return rest;
    });
  assert.deepEqual(
    strip(await Deno.readTextFile(join(merged, "summary.csv"))),
    strip(await Deno.readTextFile(join(full, "summary.csv"))),
  );
  assert.equal(
    [...Deno.readDirSync(join(merged, "grids"))].length,
    [...Deno.readDirSync(join(full, "grids"))].length,
  );
}

/** Step: a merge of mismatched shards is refused. */
async function checkMismatchedMerge(fr: FullRun): Promise<void> {
  const { dir, common, shards } = fr;
  const other = join(dir, "other");
  const o = await task(
    "compare",
    ...common.map((a) => (a === "0.01" ? "0.02" : a)),
    "--shard",
    "1/2",
    "--out",
    other,
    "--quiet",
  );
  assert.equal(o.code, 0, o.stderr);
  const m = await task("compare-merge", shards[0], other, "--out", join(dir, "bad"));
  assert.equal(m.code, 2);
  assert.match(m.stderr, /^error: .*different configuration.*noise/);
  assert.equal(m.stderr.trim().split("\n").length, 1);
  // Same configuration, other model files: refused too.
  const forged = join(dir, "forged");
  await Deno.mkdir(forged);
  await Deno.copyFile(join(shards[1], "config.json"), join(forged, "config.json"));
  const text = await Deno.readTextFile(join(shards[1], "results.jsonl"));
  await Deno.writeTextFile(
    join(forged, "results.jsonl"),
    text.replace(
      /"sha256":"[0-9a-f]{64}"\},"provider"/g,
      `"sha256":"${"0".repeat(64)}"},"provider"`,
    ),
  );
  const m2 = await task("compare-merge", shards[0], forged, "--out", join(dir, "bad2"));
  assert.equal(m2.code, 2);
  assert.match(m2.stderr, /different model files/);
  await assert.rejects(Deno.stat(join(dir, "bad")));
}

/** The steps, in order (later ones reuse earlier ones' outputs under `dir`). */
const STEPS: [string, (fr: FullRun) => Promise<void>][] = [
  ["files: every cell once, with every field, all ok", checkFiles],
  ["summary.csv and summary.md hold the JSONL means", checkSummaries],
  ["LPIPS and FID/KID columns from the ONNX networks", checkLpipsFid],
  ["grids: one per image × operator × σ_y, sized by the layout", checkGrids],
  ["report.html references only files that exist, nothing remote", checkReportLinks],
  ["a cell equals a separate `solve` run of its problem", checkCellEqualsSolve],
  ["re-running the same command recomputes nothing", checkRerunIsNoop],
  ["Ctrl-C after the first cell, then resume: same deterministic fields", checkInterruptResume],
  ["shards 0/2 and 1/2, merged, equal the single run", checkShardsMerge],
  ["a merge of mismatched shards is refused", checkMismatchedMerge],
];

Deno.test("compare: a 2×2×2×1 run — files, numbers, grids, report; resume, interrupt, shards, merge", async (t) => {
  const fr = await fullRun();
  for (const [name, check] of STEPS) await t.step(name, () => check(fr));
  const { dir, full } = fr;
  const chromium = findChromium();
  if (!chromium && Deno.env.get("CI")) {
    throw new Error("CI: chromium is not installed (.ci/run installs it)");
  }
  await t.step({
    name: "report.html in headless Chromium: no console error; the table and a grid are visible",
    ignore: !chromium,
    fn: async () => {
      const page = await renderPage(chromium!, `file://${join(full, "report.html")}`, [
        "#quality-table",
        "figure.grid img",
      ]);
      assert.deepEqual(page.errors, []);
      assert.ok(
        page.images.length === 4 && page.images.every((i) => i.loaded),
        JSON.stringify(page.images),
      );
      const { data, info } = await sharp(page.screenshot).removeAlpha().raw().toBuffer({
        resolveWithObject: true,
      });
      const bg = [data[0], data[1], data[2]]; // top-left corner: the page background
      const differing = (box: { x: number; y: number; width: number; height: number }) => {
        let n = 0, total = 0;
        for (let y = Math.ceil(box.y); y < Math.floor(box.y + box.height) && y < info.height; y++) {
          for (let x = Math.ceil(box.x); x < Math.floor(box.x + box.width) && x < info.width; x++) {
            const o = (y * info.width + x) * 3;
            total++;
            if (
              Math.abs(data[o] - bg[0]) + Math.abs(data[o + 1] - bg[1]) +
                  Math.abs(data[o + 2] - bg[2]) > 30
            ) n++;
          }
        }
        return n / Math.max(total, 1);
      };
      const table = page.boxes["#quality-table"]!, grid = page.boxes["figure.grid img"]!;
      assert.ok(table.width > 200 && table.height > 100, JSON.stringify(table));
      assert.ok(grid.width > 300 && grid.height > 50, JSON.stringify(grid));
      assert.ok(differing(table) > 0.03, `table ink ${differing(table)}`);
      assert.ok(differing(grid) > 0.5, `grid pixels ${differing(grid)}`);
    },
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compare: failing cells are recorded, the run goes on, the exit code says so", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const args = [
    "--plugin",
    "tests/compare_fixtures.ts",
    "--solvers",
    "latino;broken:mode=nan;broken:mode=throw",
    "--operators",
    "blur:sigma=1",
    "--images",
    IMG1,
    "--crop",
    "32x32",
    "--baselines",
    "none",
    "--out",
    out,
  ];
  const r = await task("compare", ...args, "--json");
  assert.equal(r.code, 3, r.stderr);
  const rows = [...(await rowsOf(out)).values()];
  assert.equal(rows.length, 3);
  const by = (l: string) => rows.find((x) => x.method.label === l)!;
  assert.equal(by("latino").status, "ok");
  assert.equal(by("broken:mode=nan").status, "failed");
  assert.match(by("broken:mode=nan").error!, /NaN/);
  assert.equal(by("broken:mode=throw").status, "failed");
  assert.match(by("broken:mode=throw").error!, /thrown on purpose/);
  // Never a NaN on disk: failed cells carry no metrics.
  assert.deepEqual(by("broken:mode=nan").metrics, {});
  assert.ok(
    !/[:[,]\s*-?(NaN|Infinity)\b/.test(await Deno.readTextFile(join(out, "results.jsonl"))),
  );
  const md = await Deno.readTextFile(join(out, "summary.md"));
  assert.match(md, /## Failed cells/);
  assert.match(md, /thrown on purpose/);
  // Failed cells count as finished; --retry-failed redoes them.
  const again = await task("compare", ...args, "--json");
  assert.equal(again.code, 3);
  assert.equal(JSON.parse(again.stdout.trim()).ran, 0);
  const retry = await task("compare", ...args, "--json", "--retry-failed");
  assert.equal(retry.code, 3);
  assert.equal(JSON.parse(retry.stdout.trim().split("\n").at(-1)!).ran, 2);
  // Another configuration in the same folder is refused before any work.
  const other = await task("compare", ...args.map((a) => (a === "32x32" ? "40x40" : a)));
  assert.equal(other.code, 2);
  assert.match(other.stderr, /^error: .*different configuration \(crop, images differ\)/);
  // Bad input: one line, exit 2, no folder.
  const bad = await task(
    "compare",
    "--solvers",
    "nosuch",
    "--operators",
    "blur",
    "--images",
    IMG1,
    "--out",
    join(dir, "x"),
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^error: unknown solver "nosuch"/);
  await assert.rejects(Deno.stat(join(dir, "x")));
  await Deno.remove(dir, { recursive: true });
});
