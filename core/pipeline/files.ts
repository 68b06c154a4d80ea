/**
 * Read access to a model folder, so that one loader serves a real directory and an in-memory
 * folder (the built-in exact model emits its graphs into one) through the same code path.
 *
 * Paths are relative and use "/" (e.g. "unet/model.onnx"). A missing file reads as `undefined`.
 *
 * @module
 */
import { basename, join, resolve } from "node:path";

/** A folder of model files. */
export interface ModelFiles {
  /** Folder name, used in messages and as the prior's name. */
  name: string;
  /** Text of a file, or undefined when it does not exist. */
  readText(rel: string): Promise<string | undefined>;
  /** Bytes of a file, or undefined when it does not exist. */
  readBytes(rel: string): Promise<Uint8Array | undefined>;
  /**
   * Absolute path of an existing file on disk, or undefined (always undefined for in-memory
   * folders). Large models are loaded from their path so that external data is found and never
   * copied through JavaScript.
   */
  path?(rel: string): string | undefined;
  /** Every file's relative path ("/"-separated, hidden files left out), sorted. */
  list?(): Promise<string[]>;
}

function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound ||
    (e instanceof Error && (e as { code?: string }).code === "ENOENT");
}

/**
 * The files of a directory on disk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { directoryFiles } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/unet`);
 * await Deno.writeTextFile(`${dir}/unet/config.json`, "{}");
 * const f = directoryFiles(dir);
 * assert.equal(await f.readText("unet/config.json"), "{}");
 * assert.equal(await f.readText("vae_decoder/model.onnx"), undefined);
 * assert.ok(f.path?.("unet/config.json")?.endsWith("config.json"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function directoryFiles(dir: string): ModelFiles {
  const root = resolve(dir);
  const full = (rel: string) => join(root, ...rel.split("/"));
  return {
    name: basename(root),
    async readText(rel) {
      try {
        return await Deno.readTextFile(full(rel));
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    async readBytes(rel) {
      try {
        return await Deno.readFile(full(rel));
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    path(rel) {
      const p = full(rel);
      try {
        return Deno.statSync(p).isFile ? p : undefined;
      } catch {
        return undefined;
      }
    },
    async list() {
      const out: string[] = [];
      const walk = async (dir: string, prefix: string) => {
        for await (const e of Deno.readDir(dir)) {
          if (e.name.startsWith(".")) continue;
          const rel = prefix ? `${prefix}/${e.name}` : e.name;
          if (e.isDirectory) await walk(join(dir, e.name), rel);
          else if (e.isFile || e.isSymlink) out.push(rel);
        }
      };
      await walk(root, "");
      return out.sort();
    },
  };
}

/**
 * An in-memory folder: relative path → bytes or text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryFiles } from "./files.ts";
 * const f = memoryFiles("tiny", new Map([["model_index.json", "{}"]]));
 * assert.ok((await f.readText("model_index.json")) === "{}");
 * ```
 */
export function memoryFiles(name: string, entries: Map<string, Uint8Array | string>): ModelFiles {
  const norm = (rel: string) => rel.replace(/^\.\//, "");
  return {
    name,
    list: () => Promise.resolve([...entries.keys()].map(norm).sort()),
    readText(rel) {
      const v = entries.get(norm(rel));
      return Promise.resolve(
        v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v),
      );
    },
    readBytes(rel) {
      const v = entries.get(norm(rel));
      return Promise.resolve(
        v === undefined ? undefined : typeof v === "string" ? new TextEncoder().encode(v) : v,
      );
    },
  };
}

/**
 * True when the folder has this file. On disk this is a stat (large files are never read just to
 * see whether they exist: `path` finds existing files, and a missing file reads as undefined).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hasFile, memoryFiles } from "./files.ts";
 * const f = memoryFiles("tiny", new Map([["unet/model.onnx", new Uint8Array([1])]]));
 * assert.equal(await hasFile(f, "unet/model.onnx"), true);
 * assert.equal(await hasFile(f, "vae_encoder/model.onnx"), false);
 * ```
 */
export async function hasFile(files: ModelFiles, rel: string): Promise<boolean> {
  if (files.path?.(rel) !== undefined) return true;
  return (await files.readBytes(rel)) !== undefined;
}

/**
 * A SHA-256 over every file of a model folder: for each file in sorted order, its relative path
 * and the SHA-256 of its bytes (files on disk are streamed, never held whole). Identifies the exact
 * weights and configs a run used, e.g. in `compare`'s records. Undefined when the folder cannot list
 * its files.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hashModelFiles, memoryFiles } from "./files.ts";
 * const a = await hashModelFiles(memoryFiles("a", new Map([["unet/model.onnx", "x"]])));
 * const b = await hashModelFiles(memoryFiles("b", new Map([["unet/model.onnx", "y"]])));
 * assert.match(a!, /^[0-9a-f]{64}$/);
 * assert.notEqual(a, b);
 * ```
 */
export async function hashModelFiles(files: ModelFiles): Promise<string | undefined> {
  if (!files.list) return undefined;
  const { createHash } = await import("node:crypto");
  const all = createHash("sha256");
  for (const rel of await files.list()) {
    const h = createHash("sha256");
    const path = files.path?.(rel);
    if (path !== undefined) {
      using f = await Deno.open(path);
      const buf = new Uint8Array(1 << 20);
      while (true) {
        const n = await f.read(buf);
        if (n === null) break;
        h.update(buf.subarray(0, n));
      }
    } else {
      const bytes = await files.readBytes(rel);
      if (bytes) h.update(bytes);
    }
    all.update(`${rel}\0${h.digest("hex")}\n`);
  }
  return all.digest("hex");
}
