/**
 * `results.jsonl`: one JSON line per finished cell, appended as each cell finishes (one `write`
 * of the whole line, then an fsync), so an interrupted run loses at most the cell in flight. On
 * reading, a torn last line (a crash mid-write) is dropped and the file rewritten atomically without
 * it; when a cell appears twice (`--retry-failed`), the last line wins.
 *
 * Fields that vary between runs of the same cell (wall time, memory, host) live under `timing`;
 * everything else is deterministic — equal in every process, shard and order
 * ({@link deterministicFields}).
 *
 * @module
 */
import { writeFileAtomic } from "../../core/io/atomic.ts";

/** Outcome of a cell. */
export type CellStatus = "ok" | "failed" | "skipped";

/** One line of results.jsonl. */
export interface CellRow {
  /** Format tag. */
  format: string;
  /** Cell key (see cells.ts). */
  key: string;
  /** Measurement key (operator, σ_y, image, seed). */
  measurement_key: string;
  /** The method. */
  method: { kind: "solver" | "baseline"; label: string; name: string; options: unknown };
  /** The operator. */
  operator: { label: string; name: string; options: unknown };
  /** σ_y on [0,1]. */
  noise: number;
  /** The clean image. */
  image: { name: string; sha256: string; shape: number[] };
  /** Seed. */
  seed: number;
  /** The prior and a hash of its model files (null when the prior cannot say). */
  prior: { spec: string; name: string; sha256: string | null };
  /** Execution provider that ran the models (null for cells without a model). */
  provider: string | null;
  /** ok, failed (error set) or skipped (not applicable, reason in error). */
  status: CellStatus;
  /** What went wrong, or why skipped. */
  error: string | null;
  /** Scores on [0,1] images (absent when failed). */
  metrics: {
    psnr?: number;
    ssim?: number;
    measurement_psnr?: number;
    lpips?: number;
  };
  /** Model calls per model made by this cell. */
  nfe: Record<string, number>;
  /** VJP calls per model, when the prior counts them. */
  vjp?: Record<string, number>;
  /** Solver- or baseline-specific facts (δ rule, CG iterations…). */
  info: Record<string, unknown>;
  /** Per-step records (residual ‖Ax−y‖ on [0,1], timestep). */
  steps: { step: number; t?: number; residual?: number }[];
  /** Files of this cell, relative to the run folder. */
  files: { restored?: string; features?: string };
  /** Varies between runs: times, memory, where it ran. */
  timing: {
    wall_ms: number;
    model_ms: Record<string, number>;
    step_ms: number[];
    peak_rss_mb: number | null;
    finished_at: string;
    host: string;
  };
}

/** Everything in a row but `timing`: what must be equal wherever and whenever the cell ran. */
export function deterministicFields(row: CellRow): Omit<CellRow, "timing"> {
  const { timing: _, ...rest } = row;
  return rest;
}

/** The rows of a results file, in file order, last line per key winning; and torn lines. */
export interface ResultsFile {
  /** One row per key (the last one in the file). */
  rows: Map<string, CellRow>;
  /** Lines that were not valid rows (a torn last line after a crash). */
  bad: number;
}

/** Parse results.jsonl text. */
export function parseResults(text: string): ResultsFile {
  const rows = new Map<string, CellRow>();
  let bad = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const row = JSON.parse(line) as CellRow;
      if (typeof row?.key !== "string" || typeof row.status !== "string") throw new Error("no key");
      rows.delete(row.key); // re-insert: file order of the winning line
      rows.set(row.key, row);
    } catch {
      bad++;
    }
  }
  return { rows, bad };
}

/** Serialise rows as JSONL. */
export function formatResults(rows: Iterable<CellRow>): string {
  let s = "";
  for (const r of rows) s += JSON.stringify(r) + "\n";
  return s;
}

/**
 * Read a run's results (empty when the file does not exist). A file with torn lines is rewritten
 * atomically without them, so appends continue on a clean file.
 */
export async function loadResults(path: string): Promise<ResultsFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { rows: new Map(), bad: 0 };
    throw e;
  }
  const parsed = parseResults(text);
  if (parsed.bad > 0 || (text.length > 0 && !text.endsWith("\n"))) {
    await writeFileAtomic(path, new TextEncoder().encode(formatResults(parsed.rows.values())));
  }
  return parsed;
}

/** Appends rows to results.jsonl, one durable write per row. */
export class ResultsWriter {
  #file: Deno.FsFile;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Open (create) the file for appending. */
  static async open(path: string): Promise<ResultsWriter> {
    return new ResultsWriter(await Deno.open(path, { append: true, create: true }));
  }

  /** Append one row: a single write of the whole line, then fsync. */
  async append(row: CellRow): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(row) + "\n");
    let off = 0;
    while (off < bytes.length) off += await this.#file.write(bytes.subarray(off));
    await this.#file.syncData();
  }

  /** Close the file. */
  close(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }
}
