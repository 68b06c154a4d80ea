/**
 * Timing helpers shared by the benchmark sections (operators here; VJPs and others add theirs), and
 * the runner of their optional Python references.
 *
 * @module
 */
import { firstLine } from "./common.ts";

/** Timing summary in milliseconds. */
export interface Timing {
  /** Median of the timed runs. */
  median: number;
  /** 10th percentile (linear interpolation between order statistics). */
  p10: number;
  /** 90th percentile. */
  p90: number;
  /** Every timed run, in order. */
  runs: number[];
}

/** Percentile q ∈ [0,1] of sorted values, linearly interpolated (NumPy's default method). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Time `fn`: `warmup` untimed calls, then `runs` timed ones (each awaited), wall clock.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeIt } from "./bench_util.ts";
 * const t = await timeIt(() => new Float32Array(1000).fill(1), { warmup: 1, runs: 5 });
 * assert.ok(t.runs.length === 5 && t.p10 <= t.median && t.median <= t.p90);
 * ```
 */
export async function timeIt(
  fn: () => unknown,
  options: { warmup?: number; runs?: number } = {},
): Promise<Timing> {
  const { warmup = 1, runs = 7 } = options;
  if (!(runs >= 1)) throw new RangeError(`runs must be ≥ 1, got ${runs}`);
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return summarize(times);
}

/**
 * Median, p10 and p90 of timings in ms (kept in their order under `runs`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { summarize } from "./bench_util.ts";
 * assert.ok(summarize([3, 1, 2]).median === 2);
 * ```
 */
export function summarize(times: number[]): Timing {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    median: percentile(sorted, 0.5),
    p10: percentile(sorted, 0.1),
    p90: percentile(sorted, 0.9),
    runs: times,
  };
}

/** Megapixels per second for an H×W image processed in `ms` milliseconds. */
export function megapixelsPerSecond(height: number, width: number, ms: number): number {
  return (height * width) / 1e6 / (ms / 1000);
}

/** Render rows as a fixed-width text table (first row = header). */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)]
    .join("\n");
}

/**
 * The environment for a child process: this one's, without the dynamic loader's variables
 * (`LD_*`, `DYLD_*`). Deno refuses to start a child under a scoped `--allow-run` while
 * `LD_LIBRARY_PATH` or `LD_PRELOAD` would reach it ("Requires --allow-run permissions to spawn
 * subprocess with LD_LIBRARY_PATH"), and CUDA images set `LD_LIBRARY_PATH`; the references run on
 * the CPU and need neither. Without env permission the child gets an empty environment.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { childEnv } from "./bench_util.ts";
 * assert.ok(!Object.keys(childEnv()).some((k) => k.startsWith("LD_")));
 * ```
 */
export function childEnv(): Record<string, string> {
  let env: Record<string, string> = {};
  try {
    env = Deno.env.toObject();
  } catch { /* no env permission */ }
  for (const k of Object.keys(env)) if (/^(LD_|DYLD_)/.test(k)) delete env[k];
  return env;
}

/**
 * Run a Python reference that prints one JSON object: each interpreter in turn until one exits 0.
 * Never throws: a missing interpreter, a failing script or bad output becomes `{ error }` naming
 * every interpreter tried and its last stderr line (exit code 3 means "dependency missing" by our
 * scripts' convention and is reported with the script's own message).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runPythonJson } from "./bench_util.ts";
 * const r = await runPythonJson(["/nonexistent/python3"], ["-c", "print(1)"]);
 * assert.match(String(r.error), /^\/nonexistent\/python3: /);
 * ```
 */
export async function runPythonJson(
  pythons: readonly string[],
  args: readonly string[],
): Promise<Record<string, unknown> & { error?: string; python?: string }> {
  const errors: string[] = [];
  for (const py of pythons) {
    try {
      const r = await new Deno.Command(py, {
        args: [...args],
        stdin: "null",
        env: childEnv(),
        clearEnv: true,
      }).output();
      const err = new TextDecoder().decode(r.stderr).trim().split("\n").pop() ?? "";
      if (r.code === 0) {
        return { python: py, ...JSON.parse(new TextDecoder().decode(r.stdout)) };
      }
      errors.push(`${py}: ${r.code === 3 ? err : `exited with ${r.code}: ${err}`}`);
    } catch (e) {
      errors.push(`${py}: ${firstLine(e)}`);
    }
  }
  return { error: errors.join("; ") };
}
