/**
 * The process-wide ONNX session pool.
 *
 * A model (a file path, or in-memory bytes identified by a key) is loaded once per execution
 * provider and shared by every plugin that asks for it; each asker gets its own
 * {@link ModelSession} handle with its own call counter. Gradient models produced by the VJP
 * transform are held the same way (bytes + key).
 *
 * Session options (onnx.md §1.5): graph optimisation "all"; intra-op threads = number of cores;
 * `session.intra_op.allow_spinning = "0"` so ORT's worker threads do not spin-wait (burning the
 * CPU that TypeScript numerics between model calls need).
 *
 * @example
 * ```ts ignore
 * import { sessionPool } from "./pool.ts";
 * const unet = await sessionPool().session("unet", { path: "sd15/unet/model.onnx" });
 * const out = await unet.run({ sample: { data: z.data, shape: z.shape }, ... });
 * console.error(JSON.stringify(sessionPool().stats()));
 * ```
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import type { ModelStats } from "../contracts.ts";
import { InputError } from "../errors.ts";
import {
  type DeviceChoice,
  providerOptions,
  resolveDevice,
  type SessionOptions,
  shortError,
} from "./device.ts";
import { type LoadedModel, ModelSession } from "./session.ts";
import { captureStderr } from "./stderr_capture.ts";

/** Where a model comes from. Give a `path`, or `bytes` with a `key` that identifies them. */
export interface ModelSource {
  /** Identity in the pool; defaults to the resolved path. Required with `bytes`. */
  key?: string;
  /** Model file (external data next to it is found by ONNX Runtime). */
  path?: string;
  /** Serialized model. */
  bytes?: Uint8Array;
  /** External-data files for an in-memory model: the file name the graph refers to + contents. */
  externalData?: { path: string; data: Uint8Array }[];
  /** Label used in error messages, e.g. "sd15/unet/model.onnx". */
  label?: string;
}

/** Options of {@link SessionPool.session}. */
export interface SessionRequest {
  /** "auto" | "cpu" | "cuda" | "webgpu" (default "auto"). */
  device?: string;
  /**
   * How calls through this handle are counted: "forward" (NFE, the default) or "vjp" (a gradient
   * model: one forward + one backward pass of the network `name`).
   */
  kind?: "forward" | "vjp";
  /**
   * Let ONNX Runtime prepack constant weights per consumer (default true). Gradient models read
   * most weights twice (the forward product and the backward one), and prepacking then keeps a
   * second layout of each: `false` (`session.disable_prepacking`) holds every weight once, at no
   * measured speed cost on the SD-block composite's VJP (README, "Weights once").
   */
  prepack?: boolean;
  /**
   * ONNX Runtime graph optimisation level (default "all"). "basic" keeps float64 graphs exact: the
   * extended level folds scalar multiplications into float32 attributes (MatMulScaleFusion).
   */
  optimization?: "all" | "basic";
  /**
   * ONNX Runtime's memory pattern (default: on for `kind` "forward", off for "vjp"). With it, the
   * first run allocates every tensor from the arena and plans one block for all of them, which the
   * second run allocates beside the first run's chunks (the CPU arena does not shrink): the
   * session then holds its peak activation memory twice, and its second run pays the page faults
   * of the new block. For a gradient model, whose activations are most of the process's memory,
   * that is gigabytes (the whole-loss VJP at a 64² latent: 1.9 GB resident without, 3.6 GB with;
   * its second run 0.56 s of system time slower); steady-state run times are the same within
   * noise. Gradient sessions therefore run without it.
   */
  memPattern?: boolean;
}

/** Options of a pool. */
export interface PoolOptions {
  /** Intra-op threads (default: number of cores). */
  threads?: number;
}

/**
 * Number of logical cores available to this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coreCount } from "./pool.ts";
 * assert.ok(Number.isInteger(coreCount()) && coreCount() >= 1);
 * ```
 */
export function coreCount(): number {
  try {
    return Math.max(1, availableParallelism());
  } catch {
    return Math.max(1, navigator.hardwareConcurrency ?? 1);
  }
}

/**
 * Loaded models shared by key and provider; per-name call statistics.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "../onnx/builder.ts";
 * import { SessionPool } from "./pool.ts";
 * const g = new GraphBuilder("double");
 * g.output(g.op("Add", [g.input("x", "float32", [2]), "x"]), "y", "float32", [2]);
 * const pool = new SessionPool({ threads: 1 });
 * const m = await pool.session("double", { key: "double", bytes: g.toBytes() }, { device: "cpu" });
 * const { y } = await m.run({ x: { data: [1, 2], shape: [2] } });
 * assert.deepEqual(Array.from(y.data), [2, 4]);
 * assert.deepEqual(pool.stats().calls, { double: 1 });
 * await pool.release();
 * ```
 */
export class SessionPool {
  #models = new Map<string, Promise<LoadedModel>>();
  #loaded = new Set<LoadedModel>();
  #calls: Record<string, number> = {};
  #ms: Record<string, number> = {};
  #vjp: Record<string, number> = {};
  #vjpMs: Record<string, number> = {};
  #threads: number;

  /** Make an empty pool (most code uses the process-wide {@link sessionPool}). */
  constructor(options: PoolOptions = {}) {
    this.#threads = options.threads ?? coreCount();
  }

  /** ONNX Runtime session options for a provider. */
  sessionOptions(choice: DeviceChoice, prepack = true, memPattern = true): SessionOptions {
    const session: Record<string, unknown> = { intra_op: { allow_spinning: "0" } };
    if (!prepack) session.disable_prepacking = "1";
    return {
      ...providerOptions(choice.provider),
      graphOptimizationLevel: "all",
      enableMemPattern: memPattern,
      intraOpNumThreads: this.#threads,
      executionMode: "sequential",
      logSeverityLevel: 3,
      extra: { session },
    };
  }

  /** Number of loaded (or loading) models. */
  get size(): number {
    return this.#models.size;
  }

  /**
   * A handle on a model, loading it on first use. Throws an {@link InputError} naming the model
   * when ONNX Runtime cannot load it.
   *
   * @param name statistics name (e.g. "unet")
   * @param source path or bytes+key
   * @param request device request
   */
  async session(
    name: string,
    source: ModelSource,
    request: SessionRequest = {},
  ): Promise<ModelSession> {
    const choice = await resolveDevice(request.device ?? "auto");
    const key = modelKey(source);
    const prepack = request.prepack ?? true, optimization = request.optimization ?? "all";
    const memPattern = request.memPattern ?? request.kind !== "vjp";
    const poolKey = `${choice.provider}|${prepack ? "" : "noprepack|"}${
      memPattern ? "" : "nopattern|"
    }${optimization === "all" ? "" : `${optimization}|`}${key}`;
    let p = this.#models.get(poolKey);
    if (!p) {
      p = this.#load(key, source, choice, prepack, optimization, memPattern);
      this.#models.set(poolKey, p);
      p.catch(() => this.#models.delete(poolKey));
    }
    const model = await p;
    const vjp = request.kind === "vjp";
    const calls = vjp ? this.#vjp : this.#calls, times = vjp ? this.#vjpMs : this.#ms;
    return new ModelSession(name, model, (n, ms) => {
      calls[n] = (calls[n] ?? 0) + 1;
      times[n] = (times[n] ?? 0) + ms;
    }, request.kind ?? "forward");
  }

  async #load(
    key: string,
    source: ModelSource,
    choice: DeviceChoice,
    prepack: boolean,
    optimization: "all" | "basic",
    memPattern: boolean,
  ): Promise<LoadedModel> {
    const options = this.sessionOptions(choice, prepack, memPattern);
    options.graphOptimizationLevel = optimization;
    if (source.externalData?.length) {
      options.externalData = source.externalData.map((e) => ({ path: e.path, data: e.data }));
    }
    let session: ort.InferenceSession;
    const ortOptions = options as ort.InferenceSession.SessionOptions;
    const create = () =>
      source.bytes
        ? ort.InferenceSession.create(source.bytes, ortOptions)
        : ort.InferenceSession.create(source.path!, ortOptions);
    try {
      // GPU providers' native libraries print warnings of their own while a session is set up
      // (Dawn, Vulkan layers): keep them off a successful run's stderr.
      session = choice.provider === "cpu" ? await create() : (await captureStderr(create)).value;
    } catch (e) {
      throw new InputError(
        `${source.label ?? key}: ONNX Runtime cannot load the model (${shortError(e)})`,
      );
    }
    const model = { key, session, released: false };
    this.#loaded.add(model);
    return model;
  }

  /** Forward and VJP calls and milliseconds per model name, over every handle of this pool. */
  stats(): ModelStats {
    return {
      calls: { ...this.#calls },
      ms: { ...this.#ms },
      vjp: { ...this.#vjp },
      vjpMs: { ...this.#vjpMs },
    };
  }

  /** Zero the statistics. */
  resetStats(): void {
    for (const r of [this.#calls, this.#ms, this.#vjp, this.#vjpMs]) {
      for (const k of Object.keys(r)) delete r[k];
    }
  }

  /** Release every session (handles become unusable); the pool can be used again afterwards. */
  async release(): Promise<void> {
    const pending = [...this.#models.values()];
    this.releaseNow();
    // Models still loading when release was called are released once they arrive.
    for (const p of pending) {
      try {
        const m = await p;
        if (!m.released) this.#dispose(m);
      } catch { /* a model that failed to load holds nothing */ }
    }
  }

  /**
   * Release every loaded session synchronously (onnxruntime-node disposes the native session
   * inside the call). Used on process unload, where awaiting would run after teardown began.
   */
  releaseNow(): void {
    this.#models.clear();
    for (const m of this.#loaded) this.#dispose(m);
  }

  #dispose(m: LoadedModel): void {
    this.#loaded.delete(m);
    if (m.released) return;
    m.released = true;
    void m.session.release();
  }
}

/**
 * The pool identity of a source: its key, or its resolved path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolve } from "node:path";
 * import { modelKey } from "./pool.ts";
 * assert.equal(modelKey({ key: "unet-grad", bytes: new Uint8Array() }), "unet-grad");
 * assert.equal(modelKey({ path: "sd15/unet/model.onnx" }), resolve("sd15/unet/model.onnx"));
 * ```
 */
export function modelKey(source: ModelSource): string {
  if (source.key) return source.key;
  if (source.bytes) throw new RangeError("a model given as bytes needs a key");
  if (!source.path) throw new RangeError("a model source needs a path or bytes");
  return resolve(source.path);
}

let processPool: SessionPool | undefined;

/**
 * The process-wide pool. Its sessions are released on process unload; call
 * {@link releaseSessions} to release them earlier.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { releaseSessions, sessionPool } from "./pool.ts";
 * assert.equal(sessionPool(), sessionPool()); // one pool per process
 * await releaseSessions();
 * ```
 */
export function sessionPool(): SessionPool {
  if (!processPool) {
    processPool = new SessionPool();
    const pool = processPool;
    globalThis.addEventListener?.("unload", () => pool.releaseNow());
  }
  return processPool;
}

/**
 * Release every session of the process-wide pool.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { releaseSessions, sessionPool } from "./pool.ts";
 * sessionPool().resetStats();
 * await releaseSessions(); // e.g. before exiting a long-running CLI
 * assert.ok(sessionPool().size === 0);
 * ```
 */
export async function releaseSessions(): Promise<void> {
  if (processPool) await processPool.release();
}
