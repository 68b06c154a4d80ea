/**
 * Runs the cells of a comparison in one process: one prior per distinct image shape (loaded once,
 * through the shared session pool), one measurement per (operator, σ_y, image, seed) shared by the
 * methods of that problem, and one row appended to results.jsonl per finished cell.
 *
 * A cell's row depends only on the cell: the operator comes from (spec, shape, seed), the
 * measurement noise and the solver's draws from named streams of the seed, the solver is created
 * afresh for each cell. A cell that throws or yields non-finite values is recorded as failed and
 * the run goes on; an abort (Ctrl-C) stops between solver steps and leaves the cell in flight
 * unrecorded, so a re-run redoes it.
 *
 * @module
 */
import { hostname } from "node:os";
import { join } from "node:path";
import type { ForwardOperator, Prior, StepEvent } from "../../core/contracts.ts";
import { unmetRequirements } from "../../core/contracts.ts";
import { InputError } from "../../core/errors.ts";
import type { PluginRegistry } from "../../core/registry.ts";
import { allFinite, clamp, type Tensor } from "../../core/tensor.ts";
import { writeNpy } from "../../core/io/npy.ts";
import { writePng } from "../../core/io/image.ts";
import { builtinExactModel } from "../../plugins/builtin-gaussian/mod.ts";
import type { BuiltinPriorOptions } from "../../plugins/builtin-gaussian/mod.ts";
import type { Progress, ProgressTask, StepProgress } from "../progress.ts";
import { runSolver, scoreReconstruction, simulate } from "../run_problem.ts";
import { type ExactContext, runBaseline } from "./baselines.ts";
import type { Cell } from "./cells.ts";
import { type BaselineName, COMPARE_FORMAT, type CompareConfig, readCleanImage } from "./config.ts";
import type { FeatureNet, LpipsNet } from "./perceptual.ts";
import type { CellRow, ResultsWriter } from "./results.ts";

/** Relative paths of a run folder's files. */
export const RUN_FILES = {
  config: "config.json",
  results: "results.jsonl",
  summaryMd: "summary.md",
  summaryCsv: "summary.csv",
  report: "report.html",
  restored: (key: string) => `cells/${key}.png`,
  restoredNpy: (key: string) => `cells/${key}.npy`,
  features: (key: string) => `features/${key}.npy`,
  cleanFeatures: (image: string) => `features/clean-${image}.npy`,
  measurement: (mkey: string) => `measurements/${mkey}.png`,
  clean: (image: string) => `clean/${image}.png`,
  grid: (name: string) => `grids/${name}.png`,
};

/** What the runner needs. */
export interface RunnerContext {
  /** The configuration. */
  config: CompareConfig;
  /** Plugins. */
  registry: PluginRegistry;
  /** Run folder. */
  outDir: string;
  /** Appends rows. */
  writer: ResultsWriter;
  /** Rows already in results.jsonl (by key), updated as cells finish. */
  rows: Map<string, CellRow>;
  /** Progress display. */
  progress: CellProgress;
  /** Abort between steps (Ctrl-C). */
  signal: AbortSignal;
  /** Perceptual networks, when given. */
  lpips?: LpipsNet;
  /** FID feature network, when given. */
  fid?: FeatureNet;
  /** Also save each reconstruction as exact float32 .npy. */
  saveNpy: boolean;
  /** Called with each finished row (e.g. --json output). */
  onRow?: (row: CellRow) => void;
}

/**
 * Progress over cells (with an ETA) and, inside a solver cell, over its steps — on the CLI's shared
 * progress module (bars in a terminal, JSON lines in logs).
 */
export class CellProgress {
  #p: Progress;
  #cells: ProgressTask;
  #steps: StepProgress | undefined;

  /** @param total cells this process will run */
  constructor(progress: Progress, total: number) {
    this.#p = progress;
    this.#cells = progress.task("cells", total, { event: "cell" });
  }

  /** A cell starts (`steps` > 0: a solver, whose steps get an inner bar). */
  start(label: string, steps: number): void {
    this.#steps?.done();
    this.#steps = steps > 0 ? this.#p.solverSteps({ parent: this.#cells, label }) : undefined;
  }

  /** A solver step of the cell in flight. */
  step(ev: StepEvent): void {
    this.#steps?.update(ev);
  }

  /** The cell is recorded. */
  finish(label: string, status: string): void {
    this.#steps?.done();
    this.#steps = undefined;
    this.#cells.tick({ cell: label, status });
  }
}

/** The run's outcome. */
export interface RunOutcome {
  /** Cells computed by this process. */
  ran: number;
  /** Of those, failed. */
  failed: number;
  /** Stopped by an abort before every cell was done. */
  interrupted: boolean;
}

/** Resident-memory peak: reset it (Linux: /proc/self/clear_refs = 5) … */
function resetPeakMemory(): void {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
  } catch { /* not Linux, or not permitted: the peak then covers the whole process */ }
}

/** … and read it (VmHWM, MB), or the current RSS when /proc is not there. */
function peakMemoryMb(): number | null {
  try {
    const m = /VmHWM:\s*(\d+)\s*kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return Number(m[1]) / 1024;
  } catch { /* fall through */ }
  try {
    return Deno.memoryUsage().rss / (1024 * 1024);
  } catch {
    return null;
  }
}

/** The model files differ from those an earlier part of the run used (fatal: exit 2). */
export class ModelChangedError extends InputError {}

function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

function message(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split("\n")[0].trim() || (e instanceof Error ? e.name : "error");
}

interface PriorEntry {
  prior: Prior;
  sha256: string | null;
  provider: string | null;
}

/** Loads and caches what several cells share. */
class Shared {
  #priors = new Map<string, Promise<PriorEntry>>();
  #exact = new Map<string, ExactContext>();
  #clean: { name: string; x: Tensor } | null = null;
  #problem: { key: string; op: ForwardOperator; y: Tensor } | null = null;
  #cleanFeatures = new Map<string, Float32Array>();

  constructor(readonly ctx: RunnerContext) {}

  /** The prior for an image shape (one load per shape; the model hash checked against old rows). */
  prior(shape: readonly number[]): Promise<PriorEntry> {
    const k = shape.join("x");
    let p = this.#priors.get(k);
    if (!p) {
      p = this.#loadPrior(shape);
      this.#priors.set(k, p);
    }
    return p;
  }

  async #loadPrior(shape: readonly number[]): Promise<PriorEntry> {
    const { config, registry } = this.ctx;
    const plugin = registry.get("prior", config.prior.name);
    const prior = await plugin.create(config.prior.options, {
      device: config.device,
      imageShape: shape,
    });
    const sha256 = (await prior.fingerprint?.()) ?? null;
    const info = prior.info?.() ?? {};
    const provider = typeof info.provider === "string" ? info.provider : null;
    const shapeKey = shape.join(",");
    for (const r of this.ctx.rows.values()) {
      if (
        r.method.kind === "solver" && r.status !== "skipped" &&
        r.image.shape.join(",") === shapeKey &&
        r.prior.sha256 !== sha256
      ) {
        throw new ModelChangedError(
          `${this.ctx.outDir}: its cells at ${shape[2]}×${shape[3]} were computed with model ` +
            `files of sha256 ${r.prior.sha256?.slice(0, 16) ?? "unknown"}…, but the prior now ` +
            `has ${sha256?.slice(0, 16) ?? "unknown"}…: the model changed; use a new --out`,
        );
      }
    }
    return { prior, sha256, provider };
  }

  /** The exact model of the built-in prior at a shape. */
  exact(shape: readonly number[]): ExactContext {
    const k = shape.join("x");
    let e = this.#exact.get(k);
    if (!e) {
      const { config } = this.ctx;
      e = {
        model: builtinExactModel(config.prior.options as unknown as BuiltinPriorOptions, shape),
        prompt: config.prompt ?? "",
        tol: config.exact.tol,
        maxIter: config.exact.max_iter,
      };
      this.#exact.set(k, e);
    }
    return e;
  }

  /** The clean image (cropped), saved once to clean/NAME.png. */
  async clean(index: number): Promise<Tensor> {
    const img = this.ctx.config.images[index];
    if (this.#clean?.name !== img.name) {
      const x = await readCleanImage(img.source, this.ctx.config.crop);
      this.#clean = { name: img.name, x };
      await this.#saveOnce(RUN_FILES.clean(img.name), (p) => writePng(p, x));
    }
    return this.#clean.x;
  }

  /** Operator and measurement of a cell's problem (computed once per measurement key). */
  async problem(cell: Cell): Promise<{ op: ForwardOperator; y: Tensor; clean: Tensor }> {
    const clean = await this.clean(cell.image);
    if (this.#problem?.key !== cell.measurementKey) {
      const { config, registry } = this.ctx;
      const opSpec = config.operators[cell.operator].label;
      const { op, y } = await simulate(registry, opSpec, clean, cell.noise, cell.seed);
      this.#problem = { key: cell.measurementKey, op, y };
      await this.#saveOnce(RUN_FILES.measurement(cell.measurementKey), (p) => writePng(p, y));
    }
    return { op: this.#problem.op, y: this.#problem.y, clean };
  }

  /** Features of a clean image (saved once to features/clean-NAME.npy). */
  async cleanFeatures(index: number, net: FeatureNet): Promise<void> {
    const name = this.ctx.config.images[index].name;
    if (this.#cleanFeatures.has(name)) return;
    const f = await net.features(await this.clean(index));
    this.#cleanFeatures.set(name, f);
    await this.#saveOnce(
      RUN_FILES.cleanFeatures(name),
      (p) => writeNpy(p, { data: f, shape: [f.length] }),
    );
  }

  async #saveOnce(rel: string, write: (path: string) => Promise<void>): Promise<void> {
    const path = join(this.ctx.outDir, rel);
    try {
      await Deno.stat(path);
    } catch {
      await write(path);
    }
  }
}

/**
 * Runs cells. `prepare` loads what the first cells need (so a model that cannot load is an input
 * error before any work), `run` computes cells in the order given.
 */
export class CellRunner {
  #shared: Shared;
  constructor(readonly ctx: RunnerContext) {
    this.#shared = new Shared(ctx);
  }

  /** Load the prior of the first solver cell's shape (errors here are the user's input). */
  async prepare(cells: readonly Cell[]): Promise<void> {
    const first = cells.find((c) => c.method.kind === "solver");
    if (first) await this.#shared.prior(this.ctx.config.images[first.image].shape);
  }

  /** Run the given cells (those already finished are left out by the caller). */
  async run(cells: readonly Cell[]): Promise<RunOutcome> {
    const ctx = this.ctx;
    let ran = 0, failed = 0;
    for (const cell of cells) {
      if (ctx.signal.aborted) return { ran, failed, interrupted: true };
      const label = cellLabel(ctx.config, cell);
      const steps = cell.method.kind === "solver" ? Number(cell.method.options.steps ?? 0) || 1 : 0;
      ctx.progress.start(label, steps);
      let row: CellRow;
      try {
        row = await runCell(ctx, this.#shared, cell);
      } catch (e) {
        if (isAbort(e) || ctx.signal.aborted) return { ran, failed, interrupted: true };
        throw e;
      }
      await ctx.writer.append(row);
      ctx.rows.set(row.key, row);
      ran++;
      if (row.status === "failed") failed++;
      ctx.progress.finish(label, row.status);
      ctx.onRow?.(row);
    }
    return { ran, failed, interrupted: false };
  }
}

/** "latino × blur:sigma=3 σ=0.01 · kodim01 · seed 0". */
export function cellLabel(config: CompareConfig, cell: Cell): string {
  return `${cell.method.label} × ${config.operators[cell.operator].label} σ=${cell.noise} · ` +
    `${config.images[cell.image].name} · seed ${cell.seed}`;
}

/** Compute one cell: its row (status ok, failed or skipped). Throws only on abort or fatal input. */
async function runCell(ctx: RunnerContext, shared: Shared, cell: Cell): Promise<CellRow> {
  const { config } = ctx;
  const img = config.images[cell.image];
  const opEntry = config.operators[cell.operator];
  const started = performance.now();
  resetPeakMemory();
  const row: CellRow = {
    format: COMPARE_FORMAT,
    key: cell.key,
    measurement_key: cell.measurementKey,
    method: { ...cell.method },
    operator: { ...opEntry },
    noise: cell.noise,
    image: { name: img.name, sha256: img.sha256, shape: img.shape },
    seed: cell.seed,
    prior: { spec: config.prior.spec, name: config.prior.name, sha256: null },
    provider: null,
    status: "ok",
    error: null,
    metrics: {},
    nfe: {},
    info: {},
    steps: [],
    files: {},
    timing: {
      wall_ms: 0,
      model_ms: {},
      step_ms: [],
      peak_rss_mb: null,
      finished_at: "",
      host: hostname(),
    },
  };
  let x: Tensor | undefined;
  try {
    const { op, y, clean } = await shared.problem(cell);
    if (cell.method.kind === "solver") {
      const p = await shared.prior(img.shape);
      row.prior.sha256 = p.sha256;
      row.provider = p.provider;
      const plugin = ctx.registry.get("solver", cell.method.name);
      const solver = await plugin.create(cell.method.options, {});
      const why = unmetRequirements(solver.requires, op, p.prior);
      if (why) {
        row.status = "skipped";
        row.error = why;
      } else {
        const run = await runSolver(
          solver,
          {
            y,
            operator: op,
            noise: { kind: "gaussian", sigma: cell.noise },
            imageShape: img.shape,
          },
          p.prior,
          { seed: cell.seed, signal: ctx.signal, onStep: (ev) => ctx.progress.step(ev) },
        );
        x = run.result.x;
        row.nfe = run.nfe;
        if (Object.values(run.vjp).some((v) => v > 0)) row.vjp = run.vjp;
        row.info = run.result.info;
        row.steps = run.steps.map(({ step, t, residual }) => ({ step, t, residual }));
        row.timing.model_ms = run.modelMs;
        row.timing.step_ms = run.steps.map((s) => s.ms);
      }
    } else {
      const name = cell.method.name as BaselineName;
      const exact = name.startsWith("posterior-") ? shared.exact(img.shape) : undefined;
      const r = await runBaseline(name, op, y, cell.noise, cell.seed, exact);
      x = r.x;
      row.info = r.info;
    }
    if (x) {
      if (!allFinite(x)) throw new Error("the output holds NaN or ±Inf");
      x = clamp(x, 0, 1);
      const m = await scoreReconstruction(op, x, y, clean);
      row.metrics = { psnr: m.psnr, ssim: m.ssim, measurement_psnr: m.dataFitPsnr };
      if (![m.psnr, m.ssim, m.dataFitPsnr].every((v) => v === Infinity || Number.isFinite(v))) {
        throw new Error("a metric is NaN");
      }
      if (ctx.lpips) row.metrics.lpips = await ctx.lpips.distance(x, clean);
      const restored = RUN_FILES.restored(cell.key);
      await writePng(join(ctx.outDir, restored), x);
      row.files.restored = restored;
      if (ctx.saveNpy) await writeNpy(join(ctx.outDir, RUN_FILES.restoredNpy(cell.key)), x);
      if (ctx.fid) {
        await shared.cleanFeatures(cell.image, ctx.fid);
        const f = await ctx.fid.features(x);
        const rel = RUN_FILES.features(cell.key);
        await writeNpy(join(ctx.outDir, rel), { data: f, shape: [f.length] });
        row.files.features = rel;
      }
    }
  } catch (e) {
    if (isAbort(e) || ctx.signal.aborted || e instanceof ModelChangedError) throw e;
    row.status = "failed";
    row.error = message(e);
    row.metrics = {};
  }
  row.timing.wall_ms = performance.now() - started;
  row.timing.peak_rss_mb = peakMemoryMb();
  row.timing.finished_at = new Date().toISOString();
  // +∞ PSNR (a perfect reconstruction) has no JSON form: store null-free by capping at 999 dB.
  for (const k of ["psnr", "measurement_psnr"] as const) {
    const v = row.metrics[k];
    if (v === Infinity) row.metrics[k] = 999;
  }
  return row;
}
