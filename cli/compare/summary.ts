/**
 * From cell rows to the tables of a comparison: mean ± standard error per method × operator × σ_y,
 * the best solver per column, and paired differences against a reference method, rendered as
 * `summary.md` and `summary.csv`.
 *
 * Statistics. The unit is the image: each image's metric is first averaged over its seeds, then
 * mean = (1/n) Σᵢ mᵢ and s.e. = sd(mᵢ)/√n over the n images (sd with divisor n − 1; undefined for
 * one image). The paired difference against the reference pairs cells by (image, seed):
 * dᵢ = mean over seeds of (metric − reference metric), then mean ± s.e. of dᵢ over images — the
 * standard error of a paired comparison, much smaller than the two separate s.e. when images vary
 * more than methods. Only cells with status "ok" count.
 *
 * @module
 */
import type { CompareConfig, MethodEntry } from "./config.ts";
import type { CellRow } from "./results.ts";

/** A per-cell metric and how to show it. */
export interface MetricDef {
  /** Key in `row.metrics`. */
  key: "psnr" | "ssim" | "lpips" | "measurement_psnr";
  /** Column title. */
  title: string;
  /** Which way is better (null: not ranked). */
  better: "higher" | "lower" | null;
  /** Decimals shown. */
  digits: number;
}

/** The per-cell metrics, in table order. */
export const CELL_METRICS: readonly MetricDef[] = [
  { key: "psnr", title: "PSNR↑", better: "higher", digits: 2 },
  { key: "ssim", title: "SSIM↑", better: "higher", digits: 4 },
  { key: "lpips", title: "LPIPS↓", better: "lower", digits: 4 },
  { key: "measurement_psnr", title: "meas. PSNR", better: null, digits: 2 },
];

/** Mean and standard error over n units. */
export interface Estimate {
  /** Mean. */
  mean: number;
  /** Standard error (NaN for n < 2). */
  se: number;
  /** Number of units. */
  n: number;
}

/**
 * Mean ± standard error of values (sample sd with divisor n − 1, divided by √n).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { estimate } from "./summary.ts";
 * const e = estimate([1, 2, 3, 4]);
 * assert.equal(e.mean, 2.5);
 * assert.ok(Math.abs(e.se - Math.sqrt(5 / 3) / 2) < 1e-15);
 * assert.ok(Number.isNaN(estimate([7]).se));
 * ```
 */
export function estimate(values: readonly number[]): Estimate {
  const n = values.length;
  if (n === 0) return { mean: NaN, se: NaN, n: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, se: NaN, n };
  const ss = values.reduce((a, v) => a + (v - mean) ** 2, 0);
  return { mean, se: Math.sqrt(ss / (n - 1)) / Math.sqrt(n), n };
}

/** Distribution metrics of one group (from feature networks), when computed. */
export interface SetMetrics {
  /** FID. */
  fid?: number;
  /** KID. */
  kid?: number;
  /** Number of restored images the features came from. */
  n: number;
  /** Feature dimension. */
  d: number;
}

/** One method × operator × σ_y. */
export interface GroupSummary {
  /** The method. */
  method: MethodEntry;
  /** Operator label. */
  operator: string;
  /** σ_y. */
  noise: number;
  /** Cell counts by status, and the number of images with an ok cell. */
  counts: { cells: number; ok: number; failed: number; skipped: number; images: number };
  /** Per-cell metrics: mean ± s.e. over images. */
  metrics: Partial<Record<MetricDef["key"], Estimate>>;
  /** Paired differences against the reference method (absent for the reference itself). */
  deltas: Partial<Record<MetricDef["key"], Estimate>>;
  /** Metrics in which this is the best solver of its column. */
  best: Set<string>;
  /** FID/KID of the group. */
  set?: SetMetrics;
  /** Mean total model calls per ok cell. */
  nfe: number;
  /** Mean VJP calls per ok cell, when counted. */
  vjp?: number;
  /** Mean wall seconds per ok cell. */
  seconds: number;
  /** Largest peak resident memory of a cell (MB), when measured. */
  peakMb?: number;
}

/** The tables of a run. */
export interface Summary {
  /** The configuration. */
  config: CompareConfig;
  /** Groups in table order: (operator, σ_y) columns, methods as configured. */
  groups: GroupSummary[];
  /** (operator, σ_y) columns, in order. */
  columns: { operator: string; noise: number }[];
  /** Metrics shown (those some ok cell has). */
  metrics: MetricDef[];
  /** Failed cells. */
  failures: CellRow[];
  /** Statements the report must carry (few samples for FID, missing cells…). */
  warnings: string[];
  /** Cells expected by the configuration, and present. */
  cells: { expected: number; present: number };
  /** Prior model hashes by image shape, and execution providers seen. */
  models: { shape: string; sha256: string | null }[];
  /** Execution providers that ran cells. */
  providers: string[];
}

/** Key of a (method, operator, σ_y) group. */
export function groupKey(method: string, operator: string, noise: number): string {
  return JSON.stringify([method, operator, noise]);
}

function total(r: Record<string, number> | undefined): number {
  return Object.values(r ?? {}).reduce((a, b) => a + b, 0);
}

/**
 * Summarise rows (deterministic: sorted by the configuration, not by file order).
 *
 * @param expected number of cells the configuration plans
 * @param sets FID/KID by {@link groupKey}
 */
export function summarize(
  config: CompareConfig,
  rows: readonly CellRow[],
  expected: number,
  sets: Map<string, SetMetrics> = new Map(),
  warnings: string[] = [],
): Summary {
  const byGroup = new Map<string, CellRow[]>();
  for (const r of rows) {
    const k = groupKey(r.method.label, r.operator.label, r.noise);
    const list = byGroup.get(k);
    if (list) list.push(r);
    else byGroup.set(k, [r]);
  }
  const metrics = CELL_METRICS.filter((m) =>
    rows.some((r) => r.status === "ok" && r.metrics[m.key] !== undefined)
  );
  const columns = config.operators.flatMap((op) =>
    config.noise.map((noise) => ({ operator: op.label, noise }))
  );
  // metric value of (group rows) per image → per-seed map.
  const perImageSeed = (list: CellRow[], key: MetricDef["key"]) => {
    const m = new Map<string, Map<number, number>>();
    for (const r of list) {
      const v = r.metrics[key];
      if (r.status !== "ok" || v === undefined || !Number.isFinite(v)) continue;
      let s = m.get(r.image.name);
      if (!s) m.set(r.image.name, s = new Map());
      s.set(r.seed, v);
    }
    return m;
  };
  const imageOrder = config.images.map((i) => i.name);
  const groups: GroupSummary[] = [];
  for (const col of columns) {
    const refRows = byGroup.get(groupKey(config.reference, col.operator, col.noise)) ?? [];
    const colGroups: GroupSummary[] = [];
    for (const method of config.methods) {
      const list = byGroup.get(groupKey(method.label, col.operator, col.noise));
      if (!list) continue;
      const ok = list.filter((r) => r.status === "ok");
      const g: GroupSummary = {
        method,
        operator: col.operator,
        noise: col.noise,
        counts: {
          cells: list.length,
          ok: ok.length,
          failed: list.filter((r) => r.status === "failed").length,
          skipped: list.filter((r) => r.status === "skipped").length,
          images: new Set(ok.map((r) => r.image.name)).size,
        },
        metrics: {},
        deltas: {},
        best: new Set(),
        set: sets.get(groupKey(method.label, col.operator, col.noise)),
        nfe: ok.length ? ok.reduce((a, r) => a + total(r.nfe), 0) / ok.length : NaN,
        seconds: ok.length ? ok.reduce((a, r) => a + r.timing.wall_ms, 0) / ok.length / 1000 : NaN,
      };
      if (ok.some((r) => r.vjp)) g.vjp = ok.reduce((a, r) => a + total(r.vjp), 0) / ok.length;
      const peaks = ok.map((r) => r.timing.peak_rss_mb).filter((v): v is number => v !== null);
      if (peaks.length) g.peakMb = Math.max(...peaks);
      for (const m of metrics) {
        const mine = perImageSeed(list, m.key);
        const perImage = imageOrder.filter((n) => mine.has(n)).map((n) => {
          const s = [...mine.get(n)!.values()];
          return s.reduce((a, b) => a + b, 0) / s.length;
        });
        if (perImage.length) g.metrics[m.key] = estimate(perImage);
        if (method.label === config.reference) continue;
        const ref = perImageSeed(refRows, m.key);
        const diffs: number[] = [];
        for (const n of imageOrder) {
          const a = mine.get(n), b = ref.get(n);
          if (!a || !b) continue;
          const d = [...a].filter(([s]) => b.has(s)).map(([s, v]) => v - b.get(s)!);
          if (d.length) diffs.push(d.reduce((x, y) => x + y, 0) / d.length);
        }
        if (diffs.length) g.deltas[m.key] = estimate(diffs);
      }
      colGroups.push(g);
    }
    // Best solver per ranked metric (ties: all of them).
    for (const m of [...metrics, ...SET_METRICS]) {
      if (!m.better) continue;
      const value = (g: GroupSummary) =>
        m.key === "fid" || m.key === "kid"
          ? g.set?.[m.key]
          : g.metrics[m.key as MetricDef["key"]]?.mean;
      const cands = colGroups.filter((g) =>
        g.method.kind === "solver" && Number.isFinite(value(g) ?? NaN)
      );
      if (!cands.length) continue;
      const vals = cands.map((g) => value(g)!);
      const best = m.better === "higher" ? Math.max(...vals) : Math.min(...vals);
      cands.forEach((g, i) => vals[i] === best && g.best.add(m.key));
    }
    groups.push(...colGroups);
  }
  const models = new Map<string, string | null>();
  for (const r of rows) {
    if (r.method.kind === "solver" && r.status !== "skipped") {
      models.set(r.image.shape.join("x"), r.prior.sha256);
    }
  }
  return {
    config,
    groups,
    columns,
    metrics,
    failures: rows.filter((r) => r.status === "failed"),
    warnings,
    cells: { expected, present: rows.length },
    models: [...models].map(([shape, sha256]) => ({ shape, sha256 })),
    providers: [...new Set(rows.map((r) => r.provider).filter((p): p is string => !!p))],
  };
}

/** Set-level metrics shown in the detail tables. */
export const SET_METRICS = [
  { key: "fid", title: "FID↓", better: "lower", digits: 3 },
  { key: "kid", title: "KID↓", better: "lower", digits: 5 },
] as const;

/** A number with fixed decimals ("—" when missing). */
export function fmt(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(digits);
}

/** "mean ± s.e." (just the mean for one unit). */
export function fmtEstimate(e: Estimate | undefined, digits: number): string {
  if (!e || !Number.isFinite(e.mean)) return "—";
  return Number.isFinite(e.se)
    ? `${e.mean.toFixed(digits)} ± ${e.se.toFixed(digits)}`
    : e.mean.toFixed(digits);
}

/** "+0.42 ± 0.10" for a paired difference. */
export function fmtDelta(e: Estimate | undefined, digits: number): string {
  if (!e || !Number.isFinite(e.mean)) return "—";
  const sign = e.mean >= 0 ? "+" : "−";
  const m = `${sign}${Math.abs(e.mean).toFixed(digits)}`;
  return Number.isFinite(e.se) ? `${m} ± ${e.se.toFixed(digits)}` : m;
}

/** Column heading of an (operator, σ_y) pair. */
export function columnTitle(c: { operator: string; noise: number }): string {
  return `${c.operator} · σ=${c.noise}`;
}

/** Method name as tables show it (baselines marked). */
export function methodTitle(m: MethodEntry): string {
  switch (m.label) {
    case "posterior-mean":
      return "posterior mean (exact)";
    case "posterior-sample":
      return "posterior sample (exact)";
    default:
      return m.label;
  }
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, "\\|");
}

function mdTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map(mdEscape).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The groups of one column, solvers first. */
export function columnGroups(s: Summary, c: { operator: string; noise: number }): GroupSummary[] {
  return s.groups.filter((g) => g.operator === c.operator && g.noise === c.noise);
}

/** Methods that have at least one group, solvers first then baselines (configuration order). */
export function shownMethods(s: Summary): MethodEntry[] {
  const have = new Set(s.groups.map((g) => g.method.label));
  return s.config.methods.filter((m) => have.has(m.label));
}

function find(s: Summary, m: MethodEntry, c: { operator: string; noise: number }) {
  return s.groups.find((g) =>
    g.method.label === m.label && g.operator === c.operator && g.noise === c.noise
  );
}

/** The main metrics (ranked ones) shown in the overview table. */
export function rankedMetrics(s: Summary): MetricDef[] {
  return s.metrics.filter((m) => m.better !== null);
}

/** One line describing the run. */
export function runLine(s: Summary): string {
  const c = s.config;
  const solvers = c.methods.filter((m) => m.kind === "solver").length;
  const n = (k: number, w: string) => `${k} ${w}${k === 1 ? "" : "s"}`;
  return `${n(solvers, "solver")} × ${n(c.operators.length, "operator")} × ` +
    `${n(c.noise.length, "noise level")} × ${n(c.images.length, "image")} × ` +
    `${n(c.seeds.length, "seed")}`;
}

/** Render summary.md. */
export function renderMarkdown(s: Summary): string {
  const c = s.config;
  const out: string[] = [];
  const counts = s.groups.reduce(
    (a, g) => ({
      ok: a.ok + g.counts.ok,
      failed: a.failed + g.counts.failed,
      skipped: a.skipped + g.counts.skipped,
    }),
    { ok: 0, failed: 0, skipped: 0 },
  );
  out.push(`# Comparison: ${runLine(s)}`, "");
  out.push(
    `Prior \`${c.prior.spec}\`${
      s.models.length
        ? ` (model sha256 ${
          [...new Set(s.models.map((m) => m.sha256?.slice(0, 12) ?? "unknown"))].join(", ")
        })`
        : ""
    }, device ${c.device}${s.providers.length ? ` → ${s.providers.join(", ")}` : ""}; ` +
      `${s.cells.present} of ${s.cells.expected} cells: ${counts.ok} ok, ${counts.failed} failed, ` +
      `${counts.skipped} skipped.`,
    "",
    `Mean ± standard error over images (each image's seeds averaged first); best solver per column ` +
      `in **bold**; baselines (no model) after the solvers. Images on [0,1], data range 1.`,
    "",
  );
  const ranked = rankedMetrics(s);
  const methods = shownMethods(s);
  if (ranked.length && s.columns.length) {
    out.push("## Quality", "");
    const header = ["method"];
    for (const col of s.columns) {
      for (const m of ranked) header.push(`${columnTitle(col)} ${m.title}`);
    }
    const rows = methods.map((m) => {
      const cells = [m.kind === "baseline" ? `*${methodTitle(m)}*` : methodTitle(m)];
      for (const col of s.columns) {
        const g = find(s, m, col);
        for (const def of ranked) {
          const v = fmtEstimate(g?.metrics[def.key], def.digits);
          cells.push(g?.best.has(def.key) ? `**${v}**` : v);
        }
      }
      return cells;
    });
    out.push(mdTable(header, rows), "");
    const others = methods.filter((m) => m.label !== c.reference);
    if (others.length && methods.some((m) => m.label === c.reference)) {
      out.push(`## Paired difference vs \`${c.reference}\` (mean ± s.e. over images)`, "");
      const dh = ["method"];
      for (const col of s.columns) {
        for (const m of ranked) dh.push(`${columnTitle(col)} Δ${m.title}`);
      }
      out.push(
        mdTable(
          dh,
          others.map((m) => {
            const cells = [methodTitle(m)];
            for (const col of s.columns) {
              const g = find(s, m, col);
              for (const def of ranked) cells.push(fmtDelta(g?.deltas[def.key], def.digits));
            }
            return cells;
          }),
        ),
        "",
      );
    }
  }
  out.push("## Per operator and noise level", "");
  for (const col of s.columns) {
    const gs = columnGroups(s, col);
    if (!gs.length) continue;
    out.push(`### ${col.operator}, σ_y = ${col.noise}`, "");
    const { header, rows } = detailTable(s, gs);
    out.push(mdTable(header, rows), "");
  }
  if (s.warnings.length) {
    out.push("## Warnings", "", ...s.warnings.map((w) => `- ${w}`), "");
  }
  if (s.failures.length) {
    out.push("## Failed cells", "");
    out.push(
      mdTable(
        ["method", "operator", "σ_y", "image", "seed", "error"],
        s.failures.map((r) => [
          r.method.label,
          r.operator.label,
          String(r.noise),
          r.image.name,
          String(r.seed),
          r.error ?? "",
        ]),
      ),
      "",
    );
  }
  return out.join("\n");
}

/** The detail table of one (operator, σ_y): every metric, cost and counts. */
export function detailTable(
  s: Summary,
  gs: GroupSummary[],
): { header: string[]; rows: string[][]; bold: boolean[][] } {
  const hasSet = gs.some((g) => g.set);
  const hasVjp = gs.some((g) => g.vjp !== undefined);
  const header = [
    "method",
    ...s.metrics.map((m) => m.title),
    ...(hasSet ? SET_METRICS.map((m) => m.title) : []),
    "NFE",
    ...(hasVjp ? ["VJP"] : []),
    "s/cell",
    "peak MB",
    "ok/cells",
  ];
  const rows: string[][] = [], bold: boolean[][] = [];
  for (const g of gs) {
    const cells = [methodTitle(g.method)], b = [false];
    for (const m of s.metrics) {
      cells.push(fmtEstimate(g.metrics[m.key], m.digits));
      b.push(g.best.has(m.key));
    }
    if (hasSet) {
      for (const m of SET_METRICS) {
        cells.push(fmt(g.set?.[m.key], m.digits));
        b.push(g.best.has(m.key));
      }
    }
    cells.push(fmt(g.nfe, 1));
    if (hasVjp) cells.push(fmt(g.vjp, 1));
    cells.push(fmt(g.seconds, 2), fmt(g.peakMb, 0), `${g.counts.ok}/${g.counts.cells}`);
    while (b.length < cells.length) b.push(false);
    rows.push(cells.map((v, i) => (b[i] && v !== "—" ? `**${v}**` : v)));
    bold.push(b);
  }
  return { header, rows, bold };
}

function csvCell(v: string | number | undefined): string {
  if (v === undefined || (typeof v === "number" && !Number.isFinite(v))) return "";
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Render summary.csv: one row per method × operator × σ_y, full precision. */
export function renderCsv(s: Summary): string {
  const header = [
    "method",
    "kind",
    "operator",
    "noise",
    "images",
    "cells",
    "ok",
    "failed",
    "skipped",
  ];
  for (const m of CELL_METRICS) {
    header.push(`${m.key}_mean`, `${m.key}_se`, `${m.key}_delta`, `${m.key}_delta_se`);
  }
  header.push("fid", "kid", "fid_images", "fid_dims", "nfe", "vjp", "seconds", "peak_rss_mb");
  const lines = [header.join(",")];
  for (const g of s.groups) {
    const row: (string | number | undefined)[] = [
      g.method.label,
      g.method.kind,
      g.operator,
      g.noise,
      g.counts.images,
      g.counts.cells,
      g.counts.ok,
      g.counts.failed,
      g.counts.skipped,
    ];
    for (const m of CELL_METRICS) {
      const e = g.metrics[m.key], d = g.deltas[m.key];
      row.push(e?.mean, e?.se, d?.mean, d?.se);
    }
    row.push(g.set?.fid, g.set?.kid, g.set?.n, g.set?.d, g.nfe, g.vjp, g.seconds, g.peakMb);
    lines.push(row.map(csvCell).join(","));
  }
  return lines.join("\n") + "\n";
}
