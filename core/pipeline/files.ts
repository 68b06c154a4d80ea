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
  };
}

/**
 * An in-memory folder: relative path → bytes or text.
 *
 * @example
 * ```ts
 * import { memoryFiles } from "./files.ts";
 * const f = memoryFiles("tiny", new Map([["model_index.json", "{}"]]));
 * console.assert((await f.readText("model_index.json")) === "{}");
 * ```
 */
export function memoryFiles(name: string, entries: Map<string, Uint8Array | string>): ModelFiles {
  const norm = (rel: string) => rel.replace(/^\.\//, "");
  return {
    name,
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
