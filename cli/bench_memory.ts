/**
 * Peak-memory measurement for the benchmarks: a worker samples the process's resident memory
 * every millisecond while an ONNX Runtime session is created and run, and a helper re-runs
 * `bench_vjp.ts` in a fresh process for one measurement (memory an earlier, larger case freed but
 * the allocator kept would otherwise absorb new allocations and hide them).
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { fileURLToPath } from "node:url";
import { childEnv } from "./bench_util.ts";
import { taskForScript } from "./gate.ts";

/**
 * Peak resident memory sampler: a worker polls the process's RSS (`Deno.memoryUsage().rss`, the
 * whole process) every millisecond while the main thread is blocked inside `session.run`.
 */
export class PeakSampler {
  #worker: Worker;
  /** Start the sampling worker. */
  constructor() {
    const code = `let peak = 0;
      self.onmessage = (e) => {
        if (e.data === "reset") { peak = 0; self.postMessage("ok"); }
        else self.postMessage(peak);
      };
      setInterval(() => { const r = Deno.memoryUsage().rss; if (r > peak) peak = r; }, 1);`;
    const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
    this.#worker = new Worker(url, { type: "module" });
  }
  #ask(msg: string): Promise<unknown> {
    return new Promise((res) => {
      this.#worker.onmessage = (e) => res(e.data);
      this.#worker.postMessage(msg);
    });
  }
  /** Restart the maximum. */
  async reset(): Promise<void> {
    await this.#ask("reset");
    await new Promise((r) => setTimeout(r, 5));
  }
  /** Peak RSS since the last reset, MB. */
  async peakMB(): Promise<number> {
    await new Promise((r) => setTimeout(r, 5));
    return (await this.#ask("get") as number) / 2 ** 20;
  }
  /** Stop the worker. */
  close(): void {
    this.#worker.terminate();
  }
}

/** Peak RSS above the level before the session existed, over session creation and two runs. */
export async function peakOf(
  sampler: PeakSampler,
  model: Uint8Array | string,
  feeds: Record<string, ort.Tensor>,
  options: ort.InferenceSession.SessionOptions,
): Promise<number> {
  // collect the previous size's tensors first (the task passes --expose-gc), else their release
  // during this measurement lowers the level and the difference can even turn negative
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 20));
  const before = Deno.memoryUsage().rss / 2 ** 20;
  await sampler.reset();
  const s = typeof model === "string"
    ? await ort.InferenceSession.create(model, options)
    : await ort.InferenceSession.create(model, options);
  await s.run(feeds);
  await s.run(feeds);
  const peak = await sampler.peakMB();
  await s.release();
  return peak - before;
}

/** The deno binary for child processes (the running one when allowed, else `deno` on PATH). */
function denoBinary(): string {
  const exec = Deno.execPath();
  return Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
}

/**
 * Run `bench_vjp.ts --peak-child ARGS…` in a fresh process and return the `peakMB` it prints;
 * `undefined` when no child can be started (the caller then measures in its own process).
 */
export async function peakInFreshProcess(childArgs: string[]): Promise<number | undefined> {
  // the task's own flags (cli/gate.ts checks them in the child too)
  const flags = taskForScript("cli/bench_vjp.ts")?.flags ??
    ["--v8-flags=--expose-gc", "--allow-read", "--allow-ffi", "--allow-env", "--allow-sys"];
  const script = fileURLToPath(new URL("./bench_vjp.ts", import.meta.url));
  try {
    const r = await new Deno.Command(denoBinary(), {
      args: ["run", ...flags, script, "--peak-child", ...childArgs],
      stdin: "null",
      stderr: "null",
      env: childEnv(),
      clearEnv: true,
    }).output();
    if (r.code !== 0) return undefined;
    const v = JSON.parse(new TextDecoder().decode(r.stdout)).peakMB;
    return typeof v === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}
