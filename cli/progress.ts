/**
 * Progress on stderr for the command-line tools: bars with an ETA in a terminal (npm
 * `cli-progress`), one JSON line per update otherwise (logs, batch jobs), nothing with `--quiet`.
 *
 * Tasks nest: an outer task (benchmark cases, comparison cells) holds at most one running inner
 * task (a solver's steps) at a time, and the outer ETA counts the inner task's progress, so it
 * moves smoothly inside a long cell.
 *
 * ```ts ignore
 * const progress = new Progress({ enabled: !quiet });
 * const cells = progress.task("cells", 12);
 * for (const cell of plan) {
 *   const steps = progress.solverSteps({ parent: cells, label: cell.name });
 *   for await (const ev of solver.run(…)) steps.update(ev);   // inner bar: steps, ETA
 *   steps.done();
 *   cells.tick({ cell: cell.name });                           // outer bar: cells, ETA
 * }
 * progress.stop();
 * ```
 *
 * The ETA of a task is (elapsed / fraction done) × (fraction left), with the fraction including
 * the running inner task's fraction; it is unknown ("–") until some progress is made. JSON lines
 * carry it as `eta_s` (seconds, null when unknown).
 *
 * @module
 */
import cliProgress from "cli-progress";
import process from "node:process";
import type { StepEvent } from "../core/contracts.ts";

/** Extra fields shown after the count (terminal) or added to the JSON line. */
export type ProgressInfo = Record<string, string | number | undefined>;

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** false: print nothing (`--quiet`). Default true. */
  enabled?: boolean;
  /** "bar" (terminal), "json" (one line per update) or "auto" (bar when stderr is a terminal). */
  mode?: "auto" | "bar" | "json";
  /** Clock in milliseconds (tests). Default `performance.now`. */
  now?: () => number;
  /** Where JSON lines go (tests). Default: stderr. */
  write?: (line: string) => void;
}

/**
 * Format a number of seconds for the ETA: `45s`, `3m05s`, `1h02m`; "–" when unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEta } from "./progress.ts";
 * assert.equal(formatEta(4.2), "5s");
 * assert.equal(formatEta(185), "3m05s");
 * assert.equal(formatEta(3720), "1h02m");
 * assert.equal(formatEta(undefined), "–");
 * ```
 */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** One task: a count toward a total, with an optional running inner task. */
export class ProgressTask {
  /** Label shown before the bar and in JSON lines. */
  readonly label: string;
  /** Total units. */
  readonly total: number;
  /** The task this one runs inside, if any. */
  readonly parent: ProgressTask | undefined;
  #done = 0;
  #info: ProgressInfo = {};
  #child: ProgressTask | undefined;
  #started: number;
  #owner: Progress;
  #finished = false;
  #event: string;

  /** @internal use {@link Progress.task} */
  constructor(
    owner: Progress,
    label: string,
    total: number,
    parent: ProgressTask | undefined,
    started: number,
    event: string,
  ) {
    this.#owner = owner;
    this.label = label;
    this.total = Math.max(1, total);
    this.parent = parent;
    this.#started = started;
    this.#event = event;
  }

  /** Units done. */
  get value(): number {
    return this.#done;
  }

  /** Fields shown with the last update. */
  get info(): ProgressInfo {
    return this.#info;
  }

  /** Name of the JSON event this task's lines carry. */
  get event(): string {
    return this.#event;
  }

  /** Fraction done in [0,1], counting the running inner task's fraction. */
  fraction(): number {
    const inner = this.#child && !this.#child.#finished ? this.#child.fraction() : 0;
    return Math.min(1, (this.#done + inner) / this.total);
  }

  /** Seconds left by the linear rule (undefined before any progress). */
  eta(now = this.#owner.now()): number | undefined {
    const f = this.fraction();
    if (f <= 0) return undefined;
    if (f >= 1) return 0;
    return ((now - this.#started) / 1000) * (1 - f) / f;
  }

  /** Set the count (and the fields shown beside it). */
  update(done: number, info: ProgressInfo = {}): void {
    this.#done = Math.min(this.total, Math.max(0, done));
    this.#info = { ...info };
    this.#owner.changed(this);
  }

  /** One more unit done. */
  tick(info: ProgressInfo = {}): void {
    this.update(this.#done + 1, info);
  }

  /** Finish this task (an inner task's bar goes away; the parent keeps its count). */
  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (this.parent && this.parent.#child === this) this.parent.#child = undefined;
    this.#owner.finished(this);
  }

  /** @internal */
  adopt(child: ProgressTask): void {
    if (this.#child && !this.#child.#finished) this.#child.done();
    this.#child = child;
  }
}

/** Solver steps reported into a task (see {@link Progress.solverSteps}). */
export interface StepProgress {
  /** Report one solver step. */
  update(ev: StepEvent): void;
  /** The steps are over. */
  done(): void;
  /** The underlying task. */
  readonly task: ProgressTask | undefined;
}

/** Progress output of one command: tasks, nested at most one level per parent. */
export class Progress {
  readonly #enabled: boolean;
  readonly #json: boolean;
  readonly #write: (line: string) => void;
  /** Clock in milliseconds. */
  readonly now: () => number;
  #multi: cliProgress.MultiBar | null = null;
  #bars = new Map<ProgressTask, cliProgress.SingleBar>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @param options see {@link ProgressOptions} */
  constructor(options: ProgressOptions = {}) {
    this.#enabled = options.enabled ?? true;
    const mode = options.mode ?? "auto";
    this.#json = mode === "json" || (mode === "auto" && !Deno.stderr.isTerminal());
    this.#write = options.write ?? ((line) => console.error(line));
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Start a task of `total` units; with `parent`, it runs inside that task (replacing its
   * previous inner task). `event` names its JSON lines (default "progress"); `started` is the
   * clock reading the work began at (default: now).
   */
  task(
    label: string,
    total: number,
    options: { parent?: ProgressTask; event?: string; started?: number } = {},
  ): ProgressTask {
    const t = new ProgressTask(
      this,
      label,
      total,
      options.parent,
      options.started ?? this.now(),
      options.event ?? "progress",
    );
    options.parent?.adopt(t);
    if (this.#enabled && !this.#json) this.#bar(t);
    return t;
  }

  /**
   * Report a solver's step events (call it just before the solver starts): a task of `ev.total`
   * steps, created at the first event, showing
   * t, the residual, a gradient solver's loss and ‖∇‖, the model calls, the VJP calls and the
   * solver's own fields (`ev.info`, e.g. LATINO-PRO's SAPG iteration). JSON lines keep the
   * solver's fields
   * (`{"event":"step","step":…,"total":…,"t":…,"nfe":…,"vjp":…,"residual":…,"ms":…,"info":…,"eta_s":…}`,
   * plus `"note"` when the solver has one); on a terminal a note is a line above the bar.
   */
  solverSteps(options: { parent?: ProgressTask; label?: string } = {}): StepProgress {
    let task: ProgressTask | undefined;
    let last: StepEvent | undefined;
    const started = this.now(); // the solver starts now; its first event comes after step 0
    return {
      update: (ev: StepEvent) => {
        task ??= this.task(options.label ?? "steps", ev.total, {
          parent: options.parent,
          event: "step",
          started,
        });
        last = ev;
        task.update(ev.step + 1, {
          t: ev.t ?? "-",
          "‖Ax−y‖": ev.residual !== undefined ? ev.residual.toExponential(3) : "-",
          loss: ev.loss !== undefined ? ev.loss.toExponential(3) : undefined,
          "‖∇‖": ev.gradNorm !== undefined ? ev.gradNorm.toExponential(3) : undefined,
          nfe: Object.entries(ev.nfe).filter(([, v]) => v > 0).map(([k, v]) => `${k}=${v}`)
            .join(" "),
          vjp: Object.entries(ev.vjp ?? {}).filter(([, v]) => v > 0)
            .map(([k, v]) => `${k}=${v}`).join(" ") || undefined,
          ...solverInfo(ev.info),
        });
        if (ev.note && !this.#json) this.note(ev.note); // JSON lines carry it as a field
        if (this.#enabled && this.#json) {
          const { preview: _, ...fields } = last;
          this.#write(JSON.stringify({
            event: "step",
            ...(options.label ? { label: options.label } : {}),
            ...fields,
            eta_s: roundEta(task.eta()),
          }));
        }
      },
      done: () => task?.done(),
      get task() {
        return task;
      },
    };
  }

  /**
   * Print a line of text to stderr without breaking the bars (e.g. "stopping after this step…").
   */
  note(text: string): void {
    if (!this.#enabled) return;
    if (this.#multi) this.#multi.log(text + "\n");
    else console.error(text);
  }

  /** @internal a task changed */
  changed(t: ProgressTask): void {
    if (!this.#enabled) return;
    if (this.#json) {
      if (t.event !== "step") {
        this.#write(JSON.stringify({
          event: t.event,
          label: t.label,
          done: t.value,
          total: t.total,
          eta_s: roundEta(t.eta()),
          ...t.info,
        }));
      }
      return;
    }
    this.#redraw();
  }

  /** @internal a task finished */
  finished(t: ProgressTask): void {
    const bar = this.#bars.get(t);
    if (!bar) return;
    this.#redraw();
    if (t.parent) {
      this.#multi?.remove(bar);
      this.#bars.delete(t);
    }
  }

  /** Stop every bar (call once at the end, also on errors). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#multi) {
      this.#redraw();
      this.#multi.stop();
    }
    this.#multi = null;
    this.#bars.clear();
  }

  #bar(t: ProgressTask): void {
    if (!this.#multi) {
      this.#multi = new cliProgress.MultiBar({
        stream: process.stderr,
        format: "{label} {bar} {value}/{total} ETA {eta} | {info}",
        hideCursor: true,
        barsize: 24,
        fps: 5,
      }, cliProgress.Presets.shades_classic);
      // the ETA counts down between updates (a step can take many seconds)
      const timer = setInterval(() => this.#redraw(), 1000);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
    const depth = t.parent ? "  " : "";
    this.#bars.set(
      t,
      this.#multi.create(t.total, 0, { label: depth + t.label, info: "", eta: "–" }),
    );
  }

  #redraw(): void {
    const now = this.now();
    for (const [t, bar] of this.#bars) {
      const info = Object.entries(t.info).filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${v}`).join(" ");
      bar.update(t.value, {
        label: (t.parent ? "  " : "") + t.label,
        info,
        eta: formatEta(t.eta(now)),
      });
    }
  }
}

/** A step event's solver-specific fields for the bar (numbers to 4 significant digits). */
function solverInfo(info: StepEvent["info"]): ProgressInfo {
  const out: ProgressInfo = {};
  for (const [k, v] of Object.entries(info ?? {})) {
    out[k] = typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v;
  }
  return out;
}

function roundEta(s: number | undefined): number | null {
  return s === undefined ? null : Math.round(s * 10) / 10;
}

/**
 * Solver progress for `solve`: one task of solver steps (kept for callers of the first API).
 * Prefer {@link Progress} and {@link Progress.solverSteps}.
 */
export class ProgressReporter {
  readonly #progress: Progress;
  readonly #steps: StepProgress;

  /** @param enabled false for `--quiet` */
  constructor(enabled: boolean) {
    this.#progress = new Progress({ enabled });
    this.#steps = this.#progress.solverSteps();
  }

  /** Report one step. */
  update(ev: StepEvent): void {
    this.#steps.update(ev);
  }

  /** Print a line without breaking the bar. */
  note(text: string): void {
    this.#progress.note(text);
  }

  /** Finish the bar. */
  stop(): void {
    this.#steps.done();
    this.#progress.stop();
  }
}
