/**
 * The configuration of a comparison run: what the command line asks for, checked and normalised
 * before any expensive work, and written to `RUN_DIR/config.json`.
 *
 * Two configurations are "the same run" (resume, merge) when their identities are equal: the
 * identity is the configuration without file locations (an image, a plugin or a perceptual model
 * is identified by its name and content hash, not by where it lies on one machine).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, extname, join, resolve } from "node:path";
import { InputError } from "../../core/errors.ts";
import type { Tensor } from "../../core/tensor.ts";
import { readTensor } from "../../core/io/image.ts";
import { readError } from "../../core/io/npy.ts";

/** Format tag of config.json and results rows. */
export const COMPARE_FORMAT = "latent-inverse/compare@1";

/** A method: a solver (from a spec) or a baseline that needs no model. */
export interface MethodEntry {
  /** "solver" or "baseline". */
  kind: "solver" | "baseline";
  /** What tables call it: the solver spec as written, or the baseline's name. */
  label: string;
  /** Plugin name (solvers) or baseline name. */
  name: string;
  /** Options after validation, defaults included (solvers); {} for baselines. */
  options: Record<string, unknown>;
}

/** An operator of the comparison. */
export interface OperatorEntry {
  /** The spec as written, e.g. "blur:sigma=3". */
  label: string;
  /** Plugin name. */
  name: string;
  /** Options after validation, defaults included. */
  options: Record<string, unknown>;
}

/** A clean image of the comparison. */
export interface ImageEntry {
  /** Unique name (the file name without extension). */
  name: string;
  /** SHA-256 of the file's bytes. */
  sha256: string;
  /** Shape after cropping, [1,3,H,W]. */
  shape: number[];
  /** Where it was read from (not part of the identity). */
  source: string;
}

/** A file the run depends on (perceptual models, plugins). */
export interface FileEntry {
  /** SHA-256 of its bytes. */
  sha256: string;
  /** Where it was read from (not part of the identity). */
  source: string;
}

/** The baselines `compare` knows. */
export const BASELINES = [
  "measurement",
  "pseudo-inverse",
  "posterior-mean",
  "posterior-sample",
] as const;
/** A baseline name. */
export type BaselineName = typeof BASELINES[number];

/** A cell (method, operator) that is not run, and why. */
export interface Exclusion {
  /** Method label. */
  method: string;
  /** Operator label. */
  operator: string;
  /** Why not. */
  reason: string;
}

/** Everything that defines a comparison run (config.json). */
export interface CompareConfig {
  /** {@link COMPARE_FORMAT}. */
  format: string;
  /** Toolkit version that ran it. */
  toolkit: string;
  /** Solvers (in the order given) then baselines. */
  methods: MethodEntry[];
  /** Operators, in the order given. */
  operators: OperatorEntry[];
  /** Noise levels σ_y on [0,1]. */
  noise: number[];
  /** Seeds. */
  seeds: number[];
  /** Clean images, in the order given (folders sorted by name). */
  images: ImageEntry[];
  /** Centre crop [H, W], or null. */
  crop: [number, number] | null;
  /** The prior. */
  prior: { spec: string; name: string; options: Record<string, unknown> };
  /** Prompt given with --prompt (solvers with a prompt option and the exact posterior), or null. */
  prompt: string | null;
  /** Execution provider request. */
  device: string;
  /** Label of the reference method for paired differences. */
  reference: string;
  /** CG settings of the exact posterior baselines. */
  exact: { tol: number; max_iter: number };
  /** LPIPS network, or null. */
  lpips: FileEntry | null;
  /** FID feature network and the input range it expects, or null. */
  fid: (FileEntry & { range: [number, number] }) | null;
  /** Plugin modules loaded with --plugin. */
  plugins: FileEntry[];
  /** (method, operator) pairs left out, with the reason. */
  excluded: Exclusion[];
}

/**
 * The identity of a configuration: the configuration without file locations, as canonical JSON.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configIdentity } from "./config.ts";
 * const a = { images: [{ name: "x", sha256: "ab", shape: [1, 3, 8, 8], source: "/a/x.png" }] };
 * const b = { images: [{ name: "x", sha256: "ab", shape: [1, 3, 8, 8], source: "/b/x.png" }] };
 * assert.equal(configIdentity(a), configIdentity(b));
 * ```
 */
export function configIdentity(config: unknown): string {
  return canonicalJson(config, (k) => k === "source");
}

/**
 * JSON with object keys sorted (and keys for which `drop` is true left out), for hashing and
 * comparing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalJson } from "./config.ts";
 * assert.equal(canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }), '{"a":[2,{"c":4,"d":3}],"b":1}');
 * ```
 */
export function canonicalJson(
  value: unknown,
  drop: (key: string) => boolean = () => false,
): string {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (!drop(k) && x !== undefined) out[k] = walk(x);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(walk(value));
}

/**
 * The first top-level fields in which two configurations differ (for error messages).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configDifferences } from "./config.ts";
 * assert.deepEqual(configDifferences({ seeds: [0], noise: [0.01] }, { seeds: [0, 1], noise: [0.01] }), ["seeds"]);
 * ```
 */
export function configDifferences(a: unknown, b: unknown): string[] {
  const ra = a as Record<string, unknown>, rb = b as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(ra ?? {}), ...Object.keys(rb ?? {})])].sort();
  return keys.filter((k) => configIdentity(ra?.[k] ?? null) !== configIdentity(rb?.[k] ?? null));
}

/** Hex SHA-256 of bytes or text. */
export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Split a `;`-separated list (specs contain commas), dropping empty items.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitList } from "./config.ts";
 * assert.deepEqual(splitList("latino; latino:delta=0.3,steps=4;", "--solvers"), ["latino", "latino:delta=0.3,steps=4"]);
 * ```
 */
export function splitList(value: string | string[] | undefined, what: string): string[] {
  const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
  const items = values.flatMap((v) => v.split(";")).map((s) => s.trim()).filter((s) => s !== "");
  const seen = new Set<string>();
  for (const s of items) {
    if (seen.has(s)) throw new InputError(`${what}: "${s}" is listed twice`);
    seen.add(s);
  }
  return items;
}

/**
 * Parse a comma-separated list of numbers; with `integer`, `a-b` ranges are allowed (`0-3,7`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNumberList } from "./config.ts";
 * assert.deepEqual(parseNumberList("0-2,5", "--seeds", { integer: true, min: 0 }), [0, 1, 2, 5]);
 * assert.deepEqual(parseNumberList("0.01, 0.05", "--noise", { min: 0 }), [0.01, 0.05]);
 * ```
 */
export function parseNumberList(
  value: string,
  what: string,
  rules: { integer?: boolean; min?: number } = {},
): number[] {
  const out: number[] = [];
  for (const raw of value.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const range = rules.integer ? /^(\d+)\s*-\s*(\d+)$/.exec(raw) : null;
    if (range) {
      const a = Number(range[1]), b = Number(range[2]);
      if (b < a) throw new InputError(`${what} "${raw}": a range must go up (a-b with a ≤ b)`);
      if (b - a > 100_000) throw new InputError(`${what} "${raw}": range too long`);
      for (let v = a; v <= b; v++) out.push(v);
      continue;
    }
    const v = Number(raw);
    if (!Number.isFinite(v) || (rules.integer && !Number.isInteger(v))) {
      throw new InputError(
        `${what} "${raw}": expected ${rules.integer ? "an integer" : "a number"}`,
      );
    }
    if (rules.min !== undefined && v < rules.min) {
      throw new InputError(`${what} ${raw}: must be ≥ ${rules.min}`);
    }
    out.push(v);
  }
  if (out.length === 0) throw new InputError(`${what}: expected at least one value`);
  if (new Set(out).size !== out.length) throw new InputError(`${what}: a value is listed twice`);
  return out;
}

/** Image file extensions read from folders. */
export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".npy"];

/**
 * Expand `--images` values (folders → their image files sorted by name; files as given) into
 * (name, path) pairs with unique names.
 */
export async function listImages(values: string[]): Promise<{ name: string; path: string }[]> {
  const out: { name: string; path: string }[] = [];
  for (const v of values) {
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(v);
    } catch (e) {
      throw readError(v, e);
    }
    if (st.isDirectory) {
      const files: string[] = [];
      for await (const e of Deno.readDir(v)) {
        if (e.isFile && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase())) {
          files.push(e.name);
        }
      }
      if (files.length === 0) {
        throw new InputError(
          `--images ${v}: the folder holds no image (${IMAGE_EXTENSIONS.join(", ")})`,
        );
      }
      files.sort();
      for (const f of files) out.push({ name: imageName(f), path: join(v, f) });
    } else out.push({ name: imageName(v), path: v });
  }
  if (out.length === 0) throw new InputError("--images is required (a folder or image files)");
  const seen = new Map<string, string>();
  for (const { name, path } of out) {
    const prev = seen.get(name);
    if (prev !== undefined) {
      throw new InputError(`--images: two images are named "${name}" (${prev} and ${path})`);
    }
    seen.set(name, path);
  }
  return out;
}

/** A file name without extension, made safe for file names in the run folder. */
function imageName(path: string): string {
  const b = basename(path);
  return b.slice(0, b.length - extname(b).length).replace(/[^A-Za-z0-9._-]+/g, "_") || "image";
}

/**
 * The centre H×W crop of a [1,C,H0,W0] image (top-left offset ⌊(H0−H)/2⌋, ⌊(W0−W)/2⌋).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { centreCrop } from "./config.ts";
 * const t = { data: Float32Array.from({ length: 16 }, (_, i) => i), shape: [1, 1, 4, 4] };
 * assert.deepEqual([...centreCrop(t, 2, 2, "t").data], [5, 6, 9, 10]);
 * ```
 */
export function centreCrop(t: Tensor, h: number, w: number, what: string): Tensor {
  const [, c, H, W] = t.shape;
  if (h > H || w > W) {
    throw new InputError(`${what}: ${H}×${W} is smaller than --crop ${h}x${w}`);
  }
  const top = Math.floor((H - h) / 2), left = Math.floor((W - w) / 2);
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h; i++) {
      const src = (k * H + top + i) * W + left;
      out.set(t.data.subarray(src, src + w), (k * h + i) * w);
    }
  }
  return { data: out, shape: [1, c, h, w] };
}

/** A [1,1,H,W] grey image as [1,3,H,W]; RGB unchanged; anything else refused. */
export function asRgb(t: Tensor, what: string): Tensor {
  const [n, c, h, w] = t.shape;
  if (t.shape.length !== 4 || n !== 1 || (c !== 1 && c !== 3)) {
    throw new InputError(`${what}: expected an RGB or grey image, got shape [${t.shape}]`);
  }
  if (c === 3) return t;
  const out = new Float32Array(3 * h * w);
  for (let k = 0; k < 3; k++) out.set(t.data, k * h * w);
  return { data: out, shape: [1, 3, h, w] };
}

/** Read a clean image as the comparison uses it: RGB, cropped when asked. */
export async function readCleanImage(
  path: string,
  crop: [number, number] | null,
): Promise<Tensor> {
  const t = asRgb(await readTensor(path), path);
  return crop ? centreCrop(t, crop[0], crop[1], path) : t;
}

/** Read a file's bytes and hash them (errors name the option and path). */
export async function fileEntry(path: string, what: string): Promise<FileEntry> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const err = readError(path, e);
    throw new InputError(`${what} ${err.message}`);
  }
  return { sha256: sha256(bytes), source: resolve(path) };
}

/**
 * Parse `--shard`: `i/n` (0 ≤ i < n), `auto` (Slurm: SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN
 * of SLURM_ARRAY_TASK_COUNT) or `auto/n` (index from SLURM_ARRAY_TASK_ID or Kubernetes'
 * JOB_COMPLETION_INDEX, n given).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseShard } from "./config.ts";
 * assert.deepEqual(parseShard("1/4", {}), { index: 1, count: 4 });
 * assert.deepEqual(parseShard("auto/3", { JOB_COMPLETION_INDEX: "2" }), { index: 2, count: 3 });
 * assert.deepEqual(
 *   parseShard("auto", { SLURM_ARRAY_TASK_ID: "5", SLURM_ARRAY_TASK_MIN: "4", SLURM_ARRAY_TASK_COUNT: "2" }),
 *   { index: 1, count: 2 },
 * );
 * ```
 */
export function parseShard(
  value: string | undefined,
  env: Record<string, string | undefined>,
): { index: number; count: number } | null {
  if (value === undefined) return null;
  const int = (s: string | undefined, what: string): number => {
    const v = Number(s);
    if (s === undefined || s.trim() === "" || !Number.isInteger(v) || v < 0) {
      throw new InputError(
        `--shard ${value}: ${what} is ${s === undefined ? "not set" : `"${s}"`}`,
      );
    }
    return v;
  };
  let index: number, count: number;
  const m = /^\s*(auto|\d+)\s*(?:\/\s*(\d+))?\s*$/.exec(value);
  if (!m) throw new InputError(`--shard "${value}": expected i/n, auto or auto/n`);
  if (m[1] === "auto") {
    const slurm = env.SLURM_ARRAY_TASK_ID;
    if (slurm !== undefined) {
      index = int(slurm, "SLURM_ARRAY_TASK_ID") -
        (env.SLURM_ARRAY_TASK_MIN !== undefined
          ? int(env.SLURM_ARRAY_TASK_MIN, "SLURM_ARRAY_TASK_MIN")
          : 0);
      count = m[2] !== undefined
        ? Number(m[2])
        : int(env.SLURM_ARRAY_TASK_COUNT, "SLURM_ARRAY_TASK_COUNT");
    } else if (env.JOB_COMPLETION_INDEX !== undefined) {
      index = int(env.JOB_COMPLETION_INDEX, "JOB_COMPLETION_INDEX");
      if (m[2] === undefined) {
        throw new InputError(
          `--shard auto: Kubernetes sets JOB_COMPLETION_INDEX but not the number of shards; ` +
            `write --shard auto/N with N = the Job's completions`,
        );
      }
      count = Number(m[2]);
    } else {
      throw new InputError(
        `--shard ${value}: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor ` +
          `JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set`,
      );
    }
  } else {
    if (m[2] === undefined) throw new InputError(`--shard "${value}": expected i/n, e.g. 0/4`);
    index = Number(m[1]);
    count = Number(m[2]);
  }
  if (!(count >= 1)) throw new InputError(`--shard ${value}: the number of shards must be ≥ 1`);
  if (!(index >= 0 && index < count)) {
    throw new InputError(`--shard ${value}: shard index ${index} is not in 0…${count - 1}`);
  }
  return { index, count };
}
