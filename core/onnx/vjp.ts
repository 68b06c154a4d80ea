/**
 * Gradients through ONNX graphs: a reverse-mode ONNX → ONNX transform emitting standard `ai.onnx`
 * ops only (no `com.microsoft` *Grad kernels), so the result runs on every execution provider.
 *
 * Given f: (x₁, …) ↦ (y₁, …), the transformed model takes the original inputs plus one cotangent
 * `y.cotangent` per differentiated output and returns the original outputs plus, for each chosen
 * input x, `x.grad` = Σ_k (∂y_k/∂x)ᵀ y_k.cotangent — a vector–Jacobian product in one run.
 *
 * The implementation lives in `vjp/`: graph analysis (`graph.ts`), shape inference and probing
 * (`shapes.ts`, `probe.ts`), per-op rules (`rules/`), multi-node units that keep ONNX Runtime's
 * forward fusions (`patterns.ts`: attention core, SiLU, Erf-GELU), emission (`emit.ts`) and the
 * sweep (`transform.ts`). External data stays external (see `external.ts`). The graph is
 * specialised to concrete input dims (a symbolic leading batch axis becomes 1 unless given).
 *
 * With the session pool: `sessionPool().session("unet-vjp", await vjpSource(unetSource, of, wrt))`
 * — the transformed model is built once per process ({@link vjpModel}) and pooled under
 * {@link vjpModelKey} like any other model.
 *
 * @example
 * ```ts ignore
 * import { vjpTransform } from "./vjp.ts";
 * const g = await vjpTransform("unet/model.onnx", ["out_sample"], ["sample"], {
 *   inputShapes: { sample: [1, 4, 64, 64] },
 * });
 * await g.write("unet/model.vjp.onnx"); // next to model.onnx_data: weights stay referenced
 * ```
 *
 * @module
 */
import { join, parse as parsePath, resolve } from "node:path";
import { externalLocations, isExternal, loadModel, tensorBytes, writeModel } from "./external.ts";
import { encodeModel, type IModelProto, type TensorProto } from "./proto.ts";
import { COTANGENT_SUFFIX, GRAD_SUFFIX, transform, type TransformStats } from "./vjp/transform.ts";

export { COTANGENT_SUFFIX, GRAD_SUFFIX, VjpUnsupportedError } from "./vjp/transform.ts";
export type { TransformStats as VjpStats, UnsupportedNode } from "./vjp/transform.ts";
export { supportedOps as vjpSupportedOps } from "./vjp/rules/mod.ts";

/** Options of {@link vjpTransform} (besides what to differentiate). */
export interface VjpOptions {
  /** Concrete dims per graph input (overrides the model's), e.g. `{ sample: [1, 4, 64, 64] }`. */
  inputShapes?: Record<string, number[]>;
  /** Values of symbolic dims by name (e.g. `{ height: 64 }`); the leading (batch) axis defaults to 1. */
  dims?: Record<string, number>;
  /** "auto" (static inference, one probing run if needed), "static" (never run), "probe". */
  shapes?: "auto" | "static" | "probe";
  /** Folder of the model's external data when the model is given as bytes. */
  baseDir?: string;
  /**
   * Turn differentiated initializers into graph inputs (their stored values are dropped and must
   * be fed: ONNX Runtime ignores feeds for initializers that are also listed as inputs).
   */
  exposeInitializers?: boolean;
  /**
   * Accept `wrt` entries whose gradient is identically zero (integer inputs, inputs that reach the
   * outputs only through values without a derivative) and write zeros for them; by default they
   * are refused with an InputError naming why. `stats.zeroGrad` lists them.
   */
  allowZeroGrad?: boolean;
}

/** A transformed model. */
export interface VjpGraph {
  /** The model (external initializers keep their references). */
  model: IModelProto;
  /** Facts about the transform (node counts, shape source, time). */
  stats: TransformStats;
  /** Folder the external data locations are relative to. */
  baseDir?: string;
  /** Whether the model references external data (then load it from a path, see `write`). */
  externalData: boolean;
  /** Name of the cotangent input of output `o`. */
  cotangentName(o: string): string;
  /** Name of the gradient output of input `x`. */
  gradName(x: string): string;
  /** Element type and concrete dims of any tensor of the model (as the transform inferred them). */
  tensorInfo(name: string): { dtype: number; dims: number[] } | undefined;
  /** Serialized model (external data stays referenced, relative to `baseDir`). */
  bytes(): Uint8Array;
  /**
   * Write the model atomically. External data is referenced, never copied: a target folder other
   * than `baseDir` gets hard links to the data files (same file system), else an InputError.
   */
  write(path: string): Promise<void>;
}

/** Copy of small external tensors with their bytes embedded (for value analysis only). */
async function readSmallExternal(
  model: IModelProto,
  baseDir: string | undefined,
): Promise<Map<string, TensorProto>> {
  const out = new Map<string, TensorProto>();
  for (const t of model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const n = (t.dims ?? []).reduce((p: number, d) => p * Number(d), 1);
    if (n > 64) continue;
    out.set(t.name ?? "", { ...t, rawData: await tensorBytes(t, baseDir), externalData: [] });
  }
  return out;
}

/**
 * Build the VJP model of `src` for outputs `of` with respect to inputs (or initializers) `wrt`.
 *
 * @param src model bytes or path (external data allowed)
 * @param of outputs to differentiate
 * @param wrt inputs / initializers to differentiate with respect to
 * @param opts concrete shapes, symbolic dim values, shape source, external-data folder
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { SessionPool } from "../backend/pool.ts";
 * import { vjpTransform } from "./vjp.ts";
 * const g = new GraphBuilder("square"); // y = x ⊙ x, so x.grad = 2 x ⊙ y.cotangent
 * const x = g.input("x", "float32", [2]);
 * g.output(g.op("Mul", [x, x]), "y", "float32", [2]);
 * const vjp = await vjpTransform(g.toBytes(), ["y"], ["x"]);
 * const pool = new SessionPool({ threads: 1 });
 * const m = await pool.session("sq-vjp", { key: "sq-vjp", bytes: vjp.bytes() }, { device: "cpu" });
 * const out = await m.run({
 *   x: { data: [1, 3], shape: [2] },
 *   [vjp.cotangentName("y")]: { data: [1, 1], shape: [2] },
 * });
 * assert.deepEqual(Array.from(out[vjp.gradName("x")].data), [2, 6]);
 * await pool.release();
 * ```
 */
export async function vjpTransform(
  src: Uint8Array | string,
  of: string[],
  wrt: string[],
  opts: VjpOptions = {},
): Promise<VjpGraph> {
  const loaded = await loadModel(src, opts.baseDir);
  const baseDir = loaded.baseDir;
  const small = await readSmallExternal(loaded.model, baseDir);
  const res = await transform(loaded.model, { ...opts, of, wrt, baseDir, constants: small });
  const external = externalLocations(res.model).length > 0;
  return {
    model: res.model,
    stats: res.stats,
    baseDir,
    externalData: external,
    cotangentName: (o) => o + COTANGENT_SUFFIX,
    gradName: (x) => x + GRAD_SUFFIX,
    tensorInfo: (name) => {
      const i = res.info.get(name);
      return i ? { dtype: i.dtype, dims: [...i.dims] } : undefined;
    },
    bytes: () => encodeModel(res.model),
    write: (path) => writeModel(res.model, path, baseDir),
  };
}

/**
 * Key of a transformed model in a session pool.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { vjpModelKey } from "./vjp.ts";
 * assert.equal(vjpModelKey("unet", ["out_sample"], ["sample"]), "unet#vjp(out_sample→sample)");
 * ```
 */
export function vjpModelKey(
  modelKey: string,
  of: string[],
  wrt: string[],
  opts: VjpOptions = {},
): string {
  const extra = opts.inputShapes || opts.dims
    ? `|${JSON.stringify({ s: opts.inputShapes ?? {}, d: opts.dims ?? {} })}`
    : "";
  return `${modelKey}#vjp(${of.join(",")}→${wrt.join(",")})${extra}`;
}

const memo = new Map<string, Promise<Uint8Array | string>>();
let cacheDir: string | undefined;

async function processCacheDir(): Promise<string> {
  if (!cacheDir) {
    cacheDir = await Deno.makeTempDir({ prefix: "latent-inverse-vjp-" });
    const dir = cacheDir;
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // best effort
      }
    });
  }
  return cacheDir;
}

/**
 * The VJP model of (model, outputs, inputs), built once per process and shared: returns model
 * bytes, or — when the model has external data — the path of a model file that references the
 * same data (a per-process cache folder with hard links, or next to the source model when links
 * are impossible). Hand the result to the session pool like any model source.
 *
 * @param modelKey a stable key of the source model (e.g. its path or a content hash)
 * @param bytesOrPath the source model
 * @param of outputs to differentiate
 * @param wrt inputs to differentiate with respect to
 * @param opts shapes and dims (part of the cache key)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { vjpModel } from "./vjp.ts";
 * const g = new GraphBuilder("square");
 * const x = g.input("x", "float32", [2]);
 * g.output(g.op("Mul", [x, x]), "y", "float32", [2]);
 * const a = await vjpModel("square", g.toBytes(), ["y"], ["x"]);
 * assert.ok(a instanceof Uint8Array); // no external data: bytes
 * assert.equal(await vjpModel("square", g.toBytes(), ["y"], ["x"]), a); // built once
 * ```
 */
export function vjpModel(
  modelKey: string,
  bytesOrPath: Uint8Array | string,
  of: string[],
  wrt: string[],
  opts: VjpOptions = {},
): Promise<Uint8Array | string> {
  const key = vjpModelKey(modelKey, of, wrt, opts);
  let p = memo.get(key);
  if (!p) {
    p = (async () => {
      const g = await vjpTransform(bytesOrPath, of, wrt, opts);
      const stem = `${parsePath(typeof bytesOrPath === "string" ? bytesOrPath : "model").name}.vjp`;
      const s = await materializeModel(key, g, stem);
      return s.path ?? s.bytes!;
    })();
    memo.set(key, p);
    p.catch(() => memo.delete(key));
  }
  return p;
}

/** A model that can be serialized, or written next to (links of) its external data. */
export interface WritableModel {
  /** Whether it references external data (then it must be loaded from a file). */
  externalData: boolean;
  /** Folder its external data lies in (fallback location for the file). */
  baseDir?: string;
  /** Serialized model. */
  bytes(): Uint8Array;
  /** Write it atomically, making its external data available beside it (hard links). */
  write(path: string): Promise<void>;
}

const materialized = new Map<string, Promise<{ path?: string; bytes?: Uint8Array }>>();

/**
 * A model as a session-pool source, once per process and key: its bytes when it is
 * self-contained; otherwise the path of a file written into the per-process cache folder with hard
 * links to the external data (or next to the data, when links are impossible) — weights are never
 * copied.
 *
 * @param key identity (the same key returns the same source)
 * @param model the model
 * @param stem file-name stem for the written file
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { materializeModel } from "./vjp.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Neg", [g.input("x", "float32", [1])]), "y", "float32", [1]);
 * const src = await materializeModel("neg", {
 *   externalData: false, bytes: () => g.toBytes(), write: () => Promise.resolve(),
 * }, "neg");
 * assert.ok(src.bytes instanceof Uint8Array);
 * ```
 */
export function materializeModel(
  key: string,
  model: WritableModel,
  stem: string,
): Promise<{ path?: string; bytes?: Uint8Array }> {
  let p = materialized.get(key);
  if (!p) {
    p = (async () => {
      if (!model.externalData) return { bytes: model.bytes() };
      const id = (await sha1(key)).slice(0, 16);
      const file = `${stem.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 60)}-${id}.onnx`;
      try {
        const path = join(await processCacheDir(), id, file);
        await model.write(path);
        return { path };
      } catch (e) {
        if (!model.baseDir) throw e;
        const path = join(model.baseDir, file);
        await model.write(path);
        return { path: resolve(path) };
      }
    })();
    materialized.set(key, p);
    p.catch(() => materialized.delete(key));
  }
  return p;
}

/** A model source for the session pool (the shape of `ModelSource` in core/backend/pool.ts). */
export interface VjpModelSource {
  /** Pool key of the transformed model. */
  key: string;
  /** Model file (when the source has external data). */
  path?: string;
  /** Model bytes (otherwise). */
  bytes?: Uint8Array;
  /** Label for messages. */
  label: string;
}

/**
 * The VJP model of a pool source as another pool source, built once per process
 * ({@link vjpModel}): hand it to `sessionPool().session(…)` like any model.
 *
 * @param source the forward model: `key` (or its `path`) identifies it, `path` or `bytes`
 * @param of outputs to differentiate
 * @param wrt inputs to differentiate with respect to
 * @param opts shapes and dims
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { vjpSource } from "./vjp.ts";
 * const g = new GraphBuilder("square");
 * const x = g.input("x", "float32", [2]);
 * g.output(g.op("Mul", [x, x]), "y", "float32", [2]);
 * const src = await vjpSource({ key: "square", bytes: g.toBytes() }, ["y"], ["x"]);
 * assert.equal(src.key, "square#vjp(y→x)"); // hand `src` to sessionPool().session(…)
 * ```
 */
export async function vjpSource(
  source: { key?: string; path?: string; bytes?: Uint8Array; label?: string },
  of: string[],
  wrt: string[],
  opts: VjpOptions = {},
): Promise<VjpModelSource> {
  const baseKey = source.key ?? (source.path ? resolve(source.path) : undefined);
  const model = source.path ?? source.bytes;
  if (!baseKey || !model) throw new Error("vjpSource: give a path, or bytes with a key");
  const built = await vjpModel(baseKey, model, of, wrt, opts);
  const key = vjpModelKey(baseKey, of, wrt, opts);
  const label = `${source.label ?? source.path ?? baseKey} (VJP of ${of.join(",")} w.r.t. ${
    wrt.join(",")
  })`;
  return typeof built === "string" ? { key, path: built, label } : { key, bytes: built, label };
}

async function sha1(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}
