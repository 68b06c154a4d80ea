/**
 * Everything a run folder shows a person, rebuilt from `config.json`, `results.jsonl` and the saved
 * images (so `compare` and `compare-merge` write the same files): summary.md, summary.csv, the
 * grids and report.html, each written atomically.
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../../core/io/atomic.ts";
import { readImage } from "../../core/io/image.ts";
import { decodeNpy } from "../../core/io/npy.ts";
import { type Tensor, tensor } from "../../core/tensor.ts";
import {
  featureSet,
  fewSamplesWarning,
  frechetDistance,
  kernelDistance,
} from "../../core/feature_metrics.ts";
import { type Cell, planCells } from "./cells.ts";
import { type CompareConfig, sha256 } from "./config.ts";
import { gridLayout, type GridTile, renderGrid } from "./grid.ts";
import { renderHtml, type ReportGrid, type ResidualCurve } from "./html.ts";
import type { CellRow } from "./results.ts";
import { RUN_FILES } from "./runner.ts";
import {
  fmt,
  groupKey,
  methodTitle,
  renderCsv,
  renderMarkdown,
  type SetMetrics,
  summarize,
  type Summary,
} from "./summary.ts";

const enc = new TextEncoder();

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A saved feature vector (.npy). */
async function readFeatures(path: string): Promise<Float32Array> {
  return decodeNpy(await Deno.readFile(path), path).data;
}

/** FID/KID per (method, operator, σ_y) from the saved features, and the warnings they need. */
async function setMetrics(
  outDir: string,
  config: CompareConfig,
  rows: readonly CellRow[],
): Promise<{ sets: Map<string, SetMetrics>; warnings: string[] }> {
  const sets = new Map<string, SetMetrics>();
  const warnings: string[] = [];
  if (!config.fid) return { sets, warnings };
  const clean = new Map<string, Float32Array>();
  for (const img of config.images) {
    const p = join(outDir, RUN_FILES.cleanFeatures(img.name));
    if (await exists(p)) clean.set(img.name, await readFeatures(p));
  }
  const groups = new Map<string, CellRow[]>();
  for (const r of rows) {
    if (r.status !== "ok" || !r.files.features) continue;
    const k = groupKey(r.method.label, r.operator.label, r.noise);
    groups.get(k)?.push(r) ?? groups.set(k, [r]);
  }
  let small: { n: number; d: number } | null = null;
  for (const [k, list] of groups) {
    const feats = await Promise.all(
      list.map((r) => readFeatures(join(outDir, r.files.features!))),
    );
    const names = [...new Set(list.map((r) => r.image.name))].filter((n) => clean.has(n));
    if (feats.length < 2 || names.length < 2) continue;
    const a = featureSet(feats), b = featureSet(names.map((n) => clean.get(n)!));
    sets.set(k, { fid: frechetDistance(a, b), kid: kernelDistance(a, b), n: a.n, d: a.d });
    if (a.n < a.d && (!small || a.n < small.n)) small = { n: a.n, d: a.d };
  }
  if (small) warnings.push(fewSamplesWarning(small.n, small.d)!);
  return { sets, warnings };
}

/** Name of a grid file: image, operator (slug + short hash) and σ_y. */
export function gridName(image: string, operator: string, noise: number): string {
  const slug = operator.replace(/[^A-Za-z0-9=.-]+/g, "_").slice(0, 40);
  return `${image}__${slug}-${sha256(operator).slice(0, 6)}__s${noise}`;
}

/** Caption of a tile: the metrics of its row. */
function caption(r: CellRow | undefined): string {
  if (!r) return "not run yet";
  if (r.status !== "ok") return `${r.status}: ${r.error ?? ""}`;
  const m = r.metrics;
  const parts = [`PSNR ${fmt(m.psnr, 2)}`, `SSIM ${fmt(m.ssim, 3)}`];
  if (m.lpips !== undefined) parts.push(`LPIPS ${fmt(m.lpips, 3)}`);
  return parts.join("  ");
}

function grey(shape: readonly number[]): Tensor {
  return tensor(shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.85));
}

/** Render the grids of the first seed: one per (image, operator, σ_y) with at least one row. */
async function writeGrids(
  outDir: string,
  config: CompareConfig,
  cells: readonly Cell[],
  rows: Map<string, CellRow>,
): Promise<ReportGrid[]> {
  const seed = config.seeds[0];
  const groups = new Map<string, Cell[]>();
  for (const c of cells) {
    if (c.seed !== seed) continue;
    groups.get(c.measurementKey)?.push(c) ?? groups.set(c.measurementKey, [c]);
  }
  const grids: ReportGrid[] = [];
  for (const [mkey, list] of groups) {
    if (!list.some((c) => rows.has(c.key))) continue;
    const first = list[0];
    const img = config.images[first.image], op = config.operators[first.operator];
    const [, , h, w] = img.shape;
    const cleanPath = join(outDir, RUN_FILES.clean(img.name));
    const measPath = join(outDir, RUN_FILES.measurement(mkey));
    const tiles: GridTile[] = [
      {
        label: "clean",
        caption: img.name,
        image: (await exists(cleanPath)) ? await readImage(cleanPath) : grey(img.shape),
      },
      {
        label: "measurement y",
        caption: `${op.label}, σ=${first.noise}`,
        image: (await exists(measPath)) ? await readImage(measPath) : grey(img.shape),
      },
    ];
    for (const c of list) {
      if (c.method.label === "measurement") continue; // the y tile
      const r = rows.get(c.key);
      const p = r?.files.restored ? join(outDir, r.files.restored) : undefined;
      tiles.push({
        label: methodTitle(c.method),
        caption: caption(r),
        image: p && (await exists(p)) ? await readImage(p) : grey(img.shape),
      });
    }
    const name = gridName(img.name, op.label, first.noise);
    const title = `${img.name} · ${op.label} · σ_y = ${first.noise} · seed ${seed}`;
    const png = await renderGrid(tiles, h, w, title);
    const file = RUN_FILES.grid(name);
    await writeFileAtomic(join(outDir, file), png);
    const L = gridLayout(h, w, tiles.length);
    grids.push({
      file,
      image: img.name,
      operator: op.label,
      noise: first.noise,
      seed,
      width: L.width,
      height: L.height,
    });
  }
  return grids;
}

/** Mean log₁₀ residual per step for every solver in every (operator, σ_y). */
function residualCurves(config: CompareConfig, rows: readonly CellRow[]): ResidualCurve[] {
  const out: ResidualCurve[] = [];
  for (const op of config.operators) {
    for (const noise of config.noise) {
      for (const m of config.methods) {
        if (m.kind !== "solver") continue;
        const list = rows.filter((r) =>
          r.status === "ok" && r.method.label === m.label && r.operator.label === op.label &&
          r.noise === noise && r.steps.some((s) => s.residual !== undefined)
        );
        if (!list.length) continue;
        const n = Math.max(...list.map((r) => r.steps.length));
        const log10 = Array.from({ length: n }, (_, k) => {
          const v = list.map((r) => r.steps[k]?.residual).filter((x): x is number =>
            x !== undefined && x > 0
          );
          return v.length ? v.reduce((a, x) => a + Math.log10(x), 0) / v.length : NaN;
        });
        out.push({ method: m.label, operator: op.label, noise, log10 });
      }
    }
  }
  return out;
}

/**
 * Write summary.md, summary.csv, the grids and report.html for the rows of a run folder.
 *
 * @param command the command line, shown in the report
 */
export async function writeReports(
  outDir: string,
  config: CompareConfig,
  rows: Map<string, CellRow>,
  command: string[],
  extraWarnings: string[] = [],
): Promise<Summary> {
  const cells = planCells(config);
  const planned = new Set(cells.map((c) => c.key));
  const list = cells.map((c) => rows.get(c.key)).filter((r): r is CellRow => r !== undefined);
  const { sets, warnings } = await setMetrics(outDir, config, list);
  const summary = summarize(config, list, planned.size, sets, [...extraWarnings, ...warnings]);
  await writeFileAtomic(join(outDir, RUN_FILES.summaryMd), enc.encode(renderMarkdown(summary)));
  await writeFileAtomic(join(outDir, RUN_FILES.summaryCsv), enc.encode(renderCsv(summary)));
  const grids = await writeGrids(outDir, config, cells, rows);
  const html = renderHtml(summary, grids, residualCurves(config, list), command);
  await writeFileAtomic(join(outDir, RUN_FILES.report), enc.encode(html));
  return summary;
}
