/**
 * Safe output files: atomic writes (temp file in the same folder, then rename) and a guard that an
 * output path is not one of the inputs.
 *
 * A reader of the output path sees either the old file or the complete new one, never a partial
 * write: `rename(2)` within one folder (one file system) replaces the target atomically. The
 * temporary name starts with a dot and ends in `.tmp`, so it is hidden and git-ignored if a crash
 * leaves it behind.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { InputError } from "../errors.ts";

/**
 * Write `bytes` to `path` atomically, creating the parent folder when needed.
 *
 * The bytes go to `.<name>.<random>.tmp` beside the target, which is then renamed over it; on any
 * failure the temporary file is removed and the target is untouched.
 *
 * @example
 * ```ts ignore
 * import { writeFileAtomic } from "./atomic.ts";
 * await writeFileAtomic("out/y.npy", new Uint8Array([1, 2, 3]));
 * ```
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const dir = dirname(resolve(path));
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new InputError(`cannot create output folder ${dir}: ${oneLine(e)}`);
  }
  const suffix = crypto.getRandomValues(new Uint32Array(2)).join("");
  const tmp = join(dir, `.${basename(path)}.${suffix}.tmp`);
  try {
    await Deno.writeFile(tmp, bytes, { createNew: true });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
      throw new InputError(`cannot write ${path}: permission denied`);
    }
    if (e instanceof Deno.errors.IsADirectory) {
      throw new InputError(`cannot write ${path}: it is a folder`);
    }
    throw e;
  }
}

/** The first line of an error's message. */
function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** Identity of an existing file (device + inode), or undefined when it does not exist. */
function fileId(path: string): string | undefined {
  try {
    const st = Deno.statSync(path);
    return st.ino !== null && st.dev !== null ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Throw an InputError when `output` names the same file as one of `inputs`: the same resolved
 * path, or (for existing files) the same device and inode, which also catches symbolic and hard
 * links.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertNotInput } from "./atomic.ts";
 * let refused = false;
 * try {
 *   assertNotInput("./a/../x.png", ["x.png"]);
 * } catch {
 *   refused = true;
 * }
 * assert.ok(refused);
 * ```
 */
export function assertNotInput(output: string, inputs: readonly string[], what = "--out"): void {
  const out = resolve(output);
  const outId = fileId(out);
  for (const input of inputs) {
    const inp = resolve(input);
    if (inp === out || (outId !== undefined && fileId(inp) === outId)) {
      throw new InputError(`${what} ${output}: refusing to overwrite the input file ${input}`);
    }
  }
}
