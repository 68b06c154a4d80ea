/**
 * ONNX models with external data: loading a model without reading its weights, reading the few
 * small external tensors a transform needs, and writing a derived model that *references* the same
 * data files instead of copying them.
 *
 * ONNX Runtime (1.30) only accepts external data that lies inside the model file's directory
 * (relative `location`, no `..`, no absolute path, symbolic links resolved). A derived model is
 * therefore written either next to the source model, or into another directory on the same file
 * system with hard links to the data files (a hard link is the same file, not a copy).
 *
 * @module
 */
import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { InputError } from "../errors.ts";
import { decodeModel, encodeModel, type IModelProto, type ModelProto } from "./proto.ts";
import type { GraphProto, TensorProto } from "./proto.ts";

/** A model decoded from bytes or a file, with the directory its external data is relative to. */
export interface LoadedOnnxModel {
  /** The decoded model (external tensors keep only their references). */
  model: ModelProto;
  /** Directory that external data locations are relative to (the model file's directory). */
  baseDir?: string;
  /** The file the model was read from, if any. */
  path?: string;
}

/**
 * Whether a tensor's data is stored externally.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isExternal } from "./external.ts";
 * const w = { name: "w", dataLocation: 1, externalData: [{ key: "location", value: "w.bin" }] };
 * assert.equal(isExternal(w), true);
 * assert.equal(isExternal({ name: "b", rawData: new Uint8Array(4) }), false);
 * ```
 */
export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === 1 || (t.externalData?.length ?? 0) > 0;
}

/**
 * The external-data fields of a tensor: location, offset, length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { externalInfo } from "./external.ts";
 * const w = {
 *   name: "w",
 *   externalData: [{ key: "location", value: "model.onnx_data" }, { key: "length", value: "8" }],
 * };
 * assert.deepEqual(externalInfo(w), { location: "model.onnx_data", offset: 0, length: 8 });
 * ```
 */
export function externalInfo(
  t: TensorProto,
): { location: string; offset: number; length?: number } {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
  const location = kv.get("location");
  if (!location) throw new InputError(`tensor '${t.name}': external data without a location`);
  const length = kv.get("length");
  return {
    location,
    offset: Number(kv.get("offset") ?? 0),
    length: length !== undefined ? Number(length) : undefined,
  };
}

function* allTensors(g: GraphProto | null | undefined): Generator<TensorProto> {
  if (!g) return;
  for (const t of g.initializer ?? []) yield t;
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) yield a.t;
      for (const t of a.tensors ?? []) yield t;
      if (a.g) yield* allTensors(a.g);
      for (const sg of a.graphs ?? []) yield* allTensors(sg);
    }
  }
}

/**
 * The distinct external data locations a model references (relative paths).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { externalLocations } from "./external.ts";
 * const model = {
 *   graph: { initializer: [{ name: "w", externalData: [{ key: "location", value: "weights.bin" }] }] },
 * };
 * assert.deepEqual(externalLocations(model), ["weights.bin"]);
 * ```
 */
export function externalLocations(model: IModelProto): string[] {
  const locs = new Set<string>();
  for (const t of allTensors(model.graph)) if (isExternal(t)) locs.add(externalInfo(t).location);
  return [...locs];
}

/**
 * Load a model from bytes or a path. Only the protobuf is read; external data stays on disk.
 *
 * @param src model bytes or a file path
 * @param baseDir directory for external data when `src` is bytes
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { loadModel } from "./external.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Identity", [g.input("x", "float32", [1])]), "y", "float32", [1]);
 * const { model, baseDir } = await loadModel(g.toBytes(), "models");
 * assert.equal(model.graph?.name, "id");
 * assert.ok(baseDir?.endsWith("models"));
 * ```
 */
export async function loadModel(
  src: Uint8Array | string,
  baseDir?: string,
): Promise<LoadedOnnxModel> {
  if (typeof src === "string") {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(src);
    } catch (e) {
      throw new InputError(`model '${src}': cannot read (${(e as Error).message})`);
    }
    let model: ModelProto;
    try {
      model = decodeModel(bytes);
    } catch (e) {
      throw new InputError(`model '${src}': not an ONNX model (${(e as Error).message})`);
    }
    return { model, baseDir: dirname(resolve(src)), path: resolve(src) };
  }
  try {
    return { model: decodeModel(src), baseDir: baseDir ? resolve(baseDir) : undefined };
  } catch (e) {
    throw new InputError(`model bytes: not an ONNX model (${(e as Error).message})`);
  }
}

/** Check a location is relative and stays inside its directory. */
function safeLocation(loc: string): string {
  const n = normalize(loc);
  if (isAbsolute(n) || n.startsWith("..")) {
    throw new InputError(
      `external data location '${loc}' must be a relative path inside the model folder`,
    );
  }
  return n;
}

/**
 * Raw bytes of a tensor's data (embedded or external). For the small tensors a transform needs to
 * read (shape constants, scales); weights are never read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { tensorBytes } from "./external.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(join(dir, "w.bin"), new Uint8Array([9, 1, 2, 3, 4]));
 * const w = {
 *   name: "w",
 *   externalData: [{ key: "location", value: "w.bin" }, { key: "offset", value: "1" }, {
 *     key: "length",
 *     value: "4",
 *   }],
 * };
 * assert.deepEqual(Array.from(await tensorBytes(w, dir)), [1, 2, 3, 4]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function tensorBytes(t: TensorProto, baseDir?: string): Promise<Uint8Array> {
  if (!isExternal(t)) return t.rawData ?? new Uint8Array();
  if (!baseDir) {
    throw new InputError(
      `tensor '${t.name}' is stored externally: load the model from its path or pass baseDir`,
    );
  }
  const { location, offset, length } = externalInfo(t);
  const f = await Deno.open(join(baseDir, safeLocation(location)), { read: true });
  try {
    const size = length ?? (await f.stat()).size - offset;
    const buf = new Uint8Array(size);
    await f.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < size) {
      const n = await f.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got !== size) throw new InputError(`tensor '${t.name}': external data file too short`);
    return buf;
  } finally {
    f.close();
  }
}

/**
 * Replace the external references of small tensors (≤ `maxBytes`) by embedded raw data, so that
 * value-dependent analysis can read them. Large tensors stay external.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { embedSmallExternal, isExternal } from "./external.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(join(dir, "w.bin"), new Uint8Array(4));
 * const w = {
 *   name: "w",
 *   dims: [1],
 *   dataType: 1,
 *   externalData: [{ key: "location", value: "w.bin" }, { key: "length", value: "4" }],
 * };
 * await embedSmallExternal({ graph: { initializer: [w] } }, dir);
 * assert.equal(isExternal(w), false); // now embedded as rawData
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function embedSmallExternal(
  model: IModelProto,
  baseDir: string | undefined,
  maxBytes = 4096,
): Promise<void> {
  for (const t of allTensors(model.graph)) {
    if (!isExternal(t)) continue;
    const { length } = externalInfo(t);
    if (length === undefined || length > maxBytes) continue;
    t.rawData = await tensorBytes(t, baseDir);
    t.externalData = [];
    t.dataLocation = 0;
  }
}

/**
 * Embed the external data of a model held in memory: every tensor whose location is one of `files`
 * gets its bytes as raw data (for models loaded from bytes with in-memory external data, which a
 * transform cannot read from disk).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { inlineExternalData, isExternal } from "./external.ts";
 * import type { TensorProto } from "./proto.ts";
 * const w: TensorProto = {
 *   name: "w",
 *   externalData: [{ key: "location", value: "model.onnx_data" }, { key: "offset", value: "1" }, {
 *     key: "length",
 *     value: "2",
 *   }],
 * };
 * inlineExternalData({ graph: { initializer: [w] } }, [
 *   { path: "model.onnx_data", data: Uint8Array.of(9, 1, 2) },
 * ]);
 * assert.equal(isExternal(w), false);
 * assert.deepEqual([...w.rawData!], [1, 2]);
 * ```
 */
export function inlineExternalData(
  model: IModelProto,
  files: readonly { path: string; data: Uint8Array }[],
): void {
  const byPath = new Map(files.map((f) => [normalize(f.path), f.data]));
  for (const t of allTensors(model.graph)) {
    if (!isExternal(t)) continue;
    const { location, offset, length } = externalInfo(t);
    const data = byPath.get(normalize(location));
    if (!data) throw new InputError(`tensor '${t.name}': external data '${location}' not given`);
    const end = length !== undefined ? offset + length : data.length;
    if (end > data.length) throw new InputError(`tensor '${t.name}': external data too short`);
    (t as { rawData?: Uint8Array }).rawData = data.slice(offset, end);
    t.externalData = [];
    t.dataLocation = 0;
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([Deno.stat(a), Deno.stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino && sa.ino !== null;
  } catch {
    return false;
  }
}

/**
 * Make the external data files of `model` (relative to `fromDir`) available in `toDir` without
 * copying: nothing to do when the directories are the same, else one hard link per file.
 * Throws an InputError when a link cannot be made (another file system, permissions).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { linkExternalData } from "./external.ts";
 * const from = await Deno.makeTempDir(), to = await Deno.makeTempDir();
 * await Deno.writeFile(join(from, "w.bin"), new Uint8Array(4));
 * const model = {
 *   graph: { initializer: [{ name: "w", externalData: [{ key: "location", value: "w.bin" }] }] },
 * };
 * await linkExternalData(model, from, to); // a hard link, not a copy
 * assert.equal((await Deno.stat(join(to, "w.bin"))).nlink, 2);
 * await Deno.remove(from, { recursive: true });
 * await Deno.remove(to, { recursive: true });
 * ```
 */
export async function linkExternalData(
  model: IModelProto,
  fromDir: string | undefined,
  toDir: string,
): Promise<void> {
  const locs = externalLocations(model);
  if (locs.length === 0) return;
  if (!fromDir) {
    throw new InputError("model has external data but its folder is unknown (pass baseDir)");
  }
  if (resolve(fromDir) === resolve(toDir)) return;
  for (const loc of locs) {
    const rel = safeLocation(loc);
    const src = join(fromDir, rel);
    const dst = join(toDir, rel);
    if (await sameFile(src, dst)) continue;
    try {
      await Deno.mkdir(dirname(dst), { recursive: true });
      await Deno.link(src, dst);
    } catch (e) {
      throw new InputError(
        `cannot reference external data '${src}' from '${toDir}' (${(e as Error).message}): ` +
          `ONNX Runtime requires it inside the model folder; write the model next to ` +
          `'${fromDir}' or on the same file system`,
      );
    }
  }
}

/**
 * Write a model atomically (temp file + rename). External data stays referenced: when the target
 * folder differs from `sourceDir`, the data files are hard-linked into it (never copied).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { GraphBuilder } from "./builder.ts";
 * import { loadModel, writeModel } from "./external.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Identity", [g.input("x", "float32", [1])]), "y", "float32", [1]);
 * const dir = await Deno.makeTempDir();
 * await writeModel(g.toModel(), join(dir, "model.onnx"));
 * assert.equal((await loadModel(join(dir, "model.onnx"))).model.graph?.name, "id");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeModel(
  model: IModelProto,
  outPath: string,
  sourceDir?: string,
): Promise<void> {
  const out = resolve(outPath);
  const dir = dirname(out);
  await Deno.mkdir(dir, { recursive: true });
  await linkExternalData(model, sourceDir, dir);
  const bytes = encodeModel(model);
  const tmp = `${out}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, out);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
