/**
 * `deno task compare-merge RUN_DIR… --out DIR`: merge the run folders of a sharded comparison (a
 * Slurm job array, a Kubernetes Indexed Job, or any runs of the same configuration) into one, and
 * write its reports.
 *
 * Refused (exit 2, nothing written): folders whose configurations differ (solvers, operators,
 * images by content hash, prior, perceptual models…; file locations may differ), cells computed
 * with different model files for the same image shape, and a cell that two folders computed with
 * different results. A cell recorded as failed in one folder and ok in another is taken as ok.
 *
 * Exit codes: 0 every planned cell present and ok; 3 some cell failed or is missing (the reports
 * say which); 2 refused.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { join, relative, resolve } from "node:path";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { main, parseCli } from "./common.ts";
import { planCells } from "./compare/cells.ts";
import {
  canonicalJson,
  type CompareConfig,
  configDifferences,
  configIdentity,
} from "./compare/config.ts";
import { writeReports } from "./compare/report.ts";
import {
  type CellRow,
  deterministicFields,
  formatResults,
  parseResults,
} from "./compare/results.ts";
import { RUN_FILES } from "./compare/runner.ts";
import { readConfig } from "./compare.ts";

const USAGE = `Usage: deno task compare-merge RUN_DIR [RUN_DIR…] --out DIR [--quiet] [--json]

Merge the folders of a sharded comparison (same configuration, e.g. --shard 0/4 … 3/4) into DIR
and write its results.jsonl, summary.md, summary.csv, grids and report.html. Folders whose
configuration or model files differ are refused.
`;

const OPTIONS = {
  out: { type: "string" },
  quiet: { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** Folders of per-cell files copied into the merged run. */
const ARTIFACT_DIRS = ["cells", "clean", "measurements", "features"];

async function copyTree(from: string, to: string): Promise<number> {
  let n = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(from));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
  await Deno.mkdir(to, { recursive: true });
  for (const e of entries) {
    if (!e.isFile || e.name.startsWith(".")) continue;
    const dst = join(to, e.name);
    try {
      await Deno.stat(dst);
      continue; // same cell, same deterministic content
    } catch { /* copy */ }
    const tmp = join(to, `.${e.name}.${crypto.randomUUID()}.tmp`);
    await Deno.copyFile(join(from, e.name), tmp);
    await Deno.rename(tmp, dst);
    n++;
  }
  return n;
}

/**
 * Merge rows of several runs: one row per key, refusing disagreements (see the module doc).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeRows } from "./compare_merge.ts";
 * const row = (key: string, status: string, psnr?: number) =>
 *   ({ key, status, metrics: { psnr }, method: { kind: "solver" }, image: { shape: [1, 3, 8, 8] }, prior: { sha256: "a" }, timing: {} }) as never;
 * const m = mergeRows([[row("x", "failed")], [row("x", "ok", 20), row("y", "ok", 21)]], ["a", "b"]);
 * assert.deepEqual([...m.keys()], ["x", "y"]);
 * assert.throws(() => mergeRows([[row("x", "ok", 20)], [row("x", "ok", 22)]], ["a", "b"]), /disagree/);
 * ```
 */
export function mergeRows(runs: CellRow[][], names: string[]): Map<string, CellRow> {
  const out = new Map<string, CellRow>();
  const from = new Map<string, string>();
  const models = new Map<string, { sha256: string | null; where: string }>();
  runs.forEach((rows, i) => {
    for (const r of rows) {
      if (r.method.kind === "solver" && r.status !== "skipped") {
        const shape = r.image.shape.join("x");
        const seen = models.get(shape);
        if (!seen) models.set(shape, { sha256: r.prior.sha256, where: names[i] });
        else if (seen.sha256 !== r.prior.sha256) {
          throw new InputError(
            `${names[i]} and ${seen.where} used different model files at ${shape} ` +
              `(sha256 ${r.prior.sha256?.slice(0, 16) ?? "unknown"}… vs ${
                seen.sha256?.slice(0, 16) ?? "unknown"
              }…)`,
          );
        }
      }
      const prev = out.get(r.key);
      if (!prev || (prev.status !== "ok" && r.status === "ok")) {
        out.set(r.key, r);
        from.set(r.key, names[i]);
      } else if (prev.status === "ok" && r.status === "ok") {
        if (canonicalJson(deterministicFields(prev)) !== canonicalJson(deterministicFields(r))) {
          throw new InputError(
            `${names[i]} and ${from.get(r.key)} disagree on cell ${r.key} ` +
              `(${r.method?.label} · ${r.operator?.label} · σ=${r.noise} · ${r.image?.name} · seed ${r.seed})`,
          );
        }
      }
    }
  });
  return out;
}

/** Run `compare-merge` with command-line arguments. */
export async function compareMerge(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, OPTIONS, { min: 1, names: "run folders" });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.out) throw new InputError("--out DIR is required");
  const outDir = resolve(values.out);
  const dirs = positionals.map((p) => resolve(p));
  if (dirs.includes(outDir)) {
    throw new InputError(`--out ${values.out} is one of the folders to merge`);
  }
  if (new Set(dirs).size !== dirs.length) throw new InputError("a run folder is listed twice");

  // Same configuration everywhere.
  const configs: CompareConfig[] = [];
  for (const d of dirs) {
    const c = await readConfig(d);
    if (!c) throw new InputError(`${d}: not a compare run folder (no ${RUN_FILES.config})`);
    configs.push(c);
  }
  const config = configs[0];
  configs.forEach((c, i) => {
    if (configIdentity(c) !== configIdentity(config)) {
      throw new InputError(
        `${positionals[i]} was run with a different configuration than ${positionals[0]} ` +
          `(${configDifferences(config, c).join(", ")} differ); refusing to merge`,
      );
    }
  });
  const existing = await readConfig(outDir);
  if (existing && configIdentity(existing) !== configIdentity(config)) {
    throw new InputError(`--out ${values.out}: holds a run with a different configuration`);
  }

  const runs: CellRow[][] = [];
  let torn = 0;
  for (const d of dirs) {
    let text = "";
    try {
      text = await Deno.readTextFile(join(d, RUN_FILES.results));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const parsed = parseResults(text);
    torn += parsed.bad;
    runs.push([...parsed.rows.values()]);
  }
  const merged = mergeRows(runs, positionals);
  const providers = new Set([...merged.values()].map((r) => r.provider).filter((p) => p));

  // Write: files first, then results and reports.
  for (const d of dirs) {
    for (const sub of ARTIFACT_DIRS) await copyTree(join(d, sub), join(outDir, sub));
  }
  const cells = planCells(config);
  const ordered = cells.map((c) => merged.get(c.key)).filter((r): r is CellRow => !!r);
  const enc = new TextEncoder();
  await writeFileAtomic(
    join(outDir, RUN_FILES.config),
    enc.encode(JSON.stringify(config, null, 2) + "\n"),
  );
  await writeFileAtomic(join(outDir, RUN_FILES.results), enc.encode(formatResults(ordered)));
  const warnings: string[] = [];
  const missing = cells.length - ordered.length;
  if (missing > 0) {
    warnings.push(`${missing} of ${cells.length} cells are in none of the merged folders`);
  }
  if (torn) warnings.push(`${torn} torn line(s) in the shards' results were ignored`);
  if (providers.size > 1) {
    warnings.push(`cells ran on different execution providers (${[...providers].join(", ")})`);
  }
  const rowsByKey = new Map(ordered.map((r) => [r.key, r]));
  await writeReports(outDir, config, rowsByKey, ["compare-merge", ...args], warnings);
  const failed = ordered.filter((r) => r.status === "failed").length;
  const done = {
    event: "done",
    out: outDir,
    merged: dirs.map((d) => relative(Deno.cwd(), d) || "."),
    cells: cells.length,
    present: ordered.length,
    failed,
    report: join(outDir, RUN_FILES.report),
  };
  if (values.json) console.log(JSON.stringify(done));
  else if (!values.quiet) {
    for (const w of warnings) console.error(`warning: ${w}`);
    console.log(
      `merged ${dirs.length} folders: ${ordered.length}/${cells.length} cells, ${failed} failed\n` +
        `report: ${done.report}`,
    );
  }
  return failed > 0 || missing > 0 ? 3 : 0;
}

if (import.meta.main) await main(compareMerge);
