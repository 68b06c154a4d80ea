/**
 * Reading a diffusers/Optimum ONNX pipeline folder: JSON configs, model sources, and checks of
 * each graph's inputs and outputs against what the pipeline needs, with one clear error naming the
 * folder, the file and what was expected.
 *
 * Layout (onnx.md §3): `model_index.json`, `scheduler/scheduler_config.json`, and per model a
 * sub-folder with `model.onnx` (+ `model.onnx_data`) and `config.json`: `unet/`, `vae_encoder/`,
 * `vae_decoder/`, `text_encoder/` (+ `text_encoder_2/` for SDXL), `tokenizer/` (+ `tokenizer_2/`).
 * Our extension: `consistency_unet/` (same I/O as `unet/`, output = consistency map).
 *
 * @module
 */
import { InputError } from "../errors.ts";
import type { ModelSource } from "../backend/pool.ts";
import type { ModelSession, ValueInfo } from "../backend/session.ts";
import { hasFile, type ModelFiles } from "./files.ts";

/** The ONNX model sub-folders this loader knows. */
export const MODEL_FOLDERS = [
  "unet",
  "consistency_unet",
  "vae_encoder",
  "vae_decoder",
  "text_encoder",
  "text_encoder_2",
] as const;

/** One of {@link MODEL_FOLDERS}. */
export type ModelFolder = typeof MODEL_FOLDERS[number];

/** An InputError about one file of a model folder. */
export function folderError(files: ModelFiles, rel: string, message: string): InputError {
  return new InputError(`model folder "${files.name}": ${rel}: ${message}`);
}

/** Parse a JSON object file; undefined when absent; InputError when invalid. */
export async function readJson(
  files: ModelFiles,
  rel: string,
): Promise<Record<string, unknown> | undefined> {
  const text = await files.readText(rel);
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw folderError(files, rel, `is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw folderError(files, rel, "expected a JSON object");
  }
  return v as Record<string, unknown>;
}

/** True when `<folder>/model.onnx` exists. */
export function hasModel(files: ModelFiles, folder: string): Promise<boolean> {
  return hasFile(files, `${folder}/model.onnx`);
}

async function sha256Hex(bytes: Uint8Array, n = 16): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest.subarray(0, n / 2), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Where the pool loads `<folder>/model.onnx` from: its path on disk (external data next to it is
 * found by ONNX Runtime and never passes through JavaScript), or its bytes with
 * `model.onnx_data` as external data, keyed by folder name, file and a content hash.
 */
export async function modelSource(files: ModelFiles, folder: string): Promise<ModelSource> {
  const rel = `${folder}/model.onnx`;
  const label = `model folder "${files.name}": ${rel}`;
  const path = files.path?.(rel);
  if (path !== undefined) return { path, key: path, label };
  const bytes = await files.readBytes(rel);
  if (!bytes) throw folderError(files, rel, "missing");
  const ext = await files.readBytes(`${folder}/model.onnx_data`);
  const hash = await sha256Hex(bytes);
  const extHash = ext ? "+" + await sha256Hex(ext) : "";
  return {
    bytes,
    key: `memory:${files.name}/${rel}#${hash}${extHash}`,
    label,
    externalData: ext ? [{ path: "model.onnx_data", data: ext }] : undefined,
  };
}

/** What an input or output must look like. */
export interface ValueSpec {
  /** Accepted element types. */
  types: readonly string[];
  /** Accepted ranks (when the model declares a shape). */
  ranks: readonly number[];
}

function describe(spec: ValueSpec): string {
  return `${spec.types.join(" or ")}, rank ${spec.ranks.join(" or ")}`;
}

function describeValue(v: ValueInfo): string {
  return `${v.name} (${v.type} [${v.shape.join(",")}])`;
}

/**
 * Check one declared value (input or output) against a spec; returns a problem or undefined.
 * ONNX Runtime reports both "scalar" and "shape unknown" as [], so [] passes any rank check.
 */
export function checkValue(v: ValueInfo, spec: ValueSpec): string | undefined {
  if (!spec.types.includes(v.type)) return `has element type ${v.type}`;
  if (v.shape.length > 0 && !spec.ranks.includes(v.shape.length)) {
    return `has rank ${v.shape.length}`;
  }
  return undefined;
}

/** Require an input; throws an InputError naming the folder, file and the expectation. */
export function requireInput(
  files: ModelFiles,
  s: ModelSession,
  folder: string,
  name: string,
  spec: ValueSpec,
): ValueInfo {
  const rel = `${folder}/model.onnx`;
  const v = s.input(name);
  if (!v) {
    throw folderError(
      files,
      rel,
      `expected an input "${name}" (${describe(spec)}); the graph's inputs are ${
        s.inputs.map(describeValue).join(", ") || "none"
      }`,
    );
  }
  const problem = checkValue(v, spec);
  if (problem) {
    throw folderError(files, rel, `input "${name}" ${problem}, expected ${describe(spec)}`);
  }
  return v;
}

/**
 * Require one of several output names (first found wins); with `soleFallback`, a graph with a
 * single output is accepted whatever its name.
 */
export function requireOutput(
  files: ModelFiles,
  s: ModelSession,
  folder: string,
  names: readonly string[],
  spec: ValueSpec,
  soleFallback = false,
): ValueInfo {
  const rel = `${folder}/model.onnx`;
  let v = names.map((n) => s.output(n)).find((o) => o !== undefined);
  if (!v && soleFallback && s.outputs.length === 1) v = s.outputs[0];
  if (!v) {
    throw folderError(
      files,
      rel,
      `expected an output ${names.map((n) => `"${n}"`).join(" or ")} (${
        describe(spec)
      }); the graph's outputs are ${s.outputs.map(describeValue).join(", ") || "none"}`,
    );
  }
  const problem = checkValue(v, spec);
  if (problem) {
    throw folderError(files, rel, `output "${v.name}" ${problem}, expected ${describe(spec)}`);
  }
  return v;
}

/** Refuse inputs the pipeline does not know how to feed. */
export function rejectUnknownInputs(
  files: ModelFiles,
  s: ModelSession,
  folder: string,
  known: readonly string[],
): void {
  const extra = s.inputs.filter((i) => !known.includes(i.name));
  if (extra.length) {
    throw folderError(
      files,
      `${folder}/model.onnx`,
      `unexpected input${extra.length > 1 ? "s" : ""} ${
        extra.map(describeValue).join(", ")
      } (this loader feeds ${known.join(", ")})`,
    );
  }
}

/** A positive finite number from a config, or the default. */
export function configNumber(
  files: ModelFiles,
  rel: string,
  cfg: Record<string, unknown> | undefined,
  key: string,
  dflt: number,
): number {
  const v = cfg?.[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw folderError(files, rel, `"${key}" must be a positive number (got ${JSON.stringify(v)})`);
  }
  return v;
}
