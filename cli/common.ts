/**
 * Shared plumbing of the command-line tools: the plugin registry (built-ins plus `--plugin`
 * modules), input/output helpers, and (re-exported from cli/args.ts, which loads no native
 * library) argument parsing and the `main` runner that turns errors into one line and an exit code.
 *
 * Exit codes: 0 success; 2 bad input (InputError, a schema or argument error: the message names
 * the input); 1 anything else (a bug or an environment failure: one line, the stack with
 * `--debug`).
 *
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type Plugin,
  type PluginKind,
  pluginProblems,
  type PluginRegistry,
  validateOptions,
} from "../core/registry.ts";
import { parseSpec, type Spec } from "../core/spec.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { z } from "zod";
import { builtinRegistry } from "../mod.ts";
import { isNpyPath, readTensor, writeTensor } from "../core/io/image.ts";
import { decodeNpy, readError, toImageTensor } from "../core/io/npy.ts";
import { InputError } from "../core/errors.ts";
import { assertNotInput } from "../core/io/atomic.ts";
import type { Tensor } from "../core/tensor.ts";

export {
  classifyError,
  type CliValues,
  COMMON_OPTIONS,
  firstLine,
  main,
  parseCli,
  parseNumber,
  parseSize,
} from "./args.ts";

/**
 * Import a module and return the plugins it exports (`default` or `plugins`: one plugin or an array).
 * Remote URLs are refused unless `allowRemote` is set.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPluginModule } from "./common.ts";
 * // A local path (resolved against `baseDir`, default the working directory) is imported;
 * // a URL is refused unless `allowRemote` is set.
 * await assert.rejects(loadPluginModule("https://example.com/p.ts"), /allow-remote-plugins/);
 * ```
 */
export async function loadPluginModule(
  specifier: string,
  options: { allowRemote?: boolean; baseDir?: string } = {},
): Promise<Plugin[]> {
  const isRemote = /^https?:\/\//.test(specifier);
  if (isRemote && !options.allowRemote) {
    throw new InputError(
      `--plugin ${specifier}: loading a plugin from a URL needs --allow-remote-plugins`,
    );
  }
  let url: string;
  if (isRemote || specifier.startsWith("file://")) url = specifier;
  else {
    url = pathToFileURL(resolve(options.baseDir ?? Deno.cwd(), specifier)).href;
  }
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new InputError(`--plugin ${specifier}: cannot load module: ${msg}`);
  }
  const exported = mod.plugins ?? mod.default;
  if (exported === undefined) {
    throw new InputError(
      `--plugin ${specifier}: the module exports neither "default" nor "plugins"`,
    );
  }
  const list = Array.isArray(exported) ? exported : [exported];
  list.forEach((p, i) => {
    const problems = pluginProblems(p);
    if (problems.length) {
      throw new InputError(
        `--plugin ${specifier}: export #${i} is not a valid plugin: ${problems.join("; ")}`,
      );
    }
  });
  return list as Plugin[];
}

/** Options for {@link buildRegistry}. */
export interface RegistryOptions {
  /** `--plugin` values: module paths (relative to `baseDir`) or, with `allowRemote`, URLs. */
  plugins?: readonly string[];
  /** Allow http(s) plugin URLs (`--allow-remote-plugins`). */
  allowRemote?: boolean;
  /** Folder relative plugin paths are resolved against (default: the working directory). */
  baseDir?: string;
}

/**
 * The built-in registry plus every plugin exported by the `--plugin` modules (loaded in order; a
 * name clash with a built-in or an earlier plugin is an InputError).
 */
export async function buildRegistry(options: RegistryOptions = {}): Promise<PluginRegistry> {
  const registry = builtinRegistry();
  for (const spec of options.plugins ?? []) {
    const found = await loadPluginModule(spec, {
      allowRemote: options.allowRemote,
      baseDir: options.baseDir,
    });
    registry.registerAll(found, `--plugin ${spec}`);
  }
  return registry;
}

/** Build the registry from parsed common options. */
export function registryFromFlags(
  values: { plugin?: string[]; "allow-remote-plugins"?: boolean },
): Promise<PluginRegistry> {
  return buildRegistry({
    plugins: values.plugin ?? [],
    allowRemote: values["allow-remote-plugins"] ?? false,
  });
}

/**
 * The measurement noise σ_y (on the [0,1] scale) every command uses when `--noise` is not given:
 * one value, so that `degrade` then `solve --measurement` describe the same problem.
 */
export const DEFAULT_NOISE = 0.01;

/** Values outside this range are "far outside [0,1]" for {@link readInput}'s warning. */
export const INPUT_RANGE_SLACK: readonly [number, number] = [-0.5, 1.5];

/**
 * Index of the first non-finite value of an array of shape `shape` (C order), as `[i, j, …]`,
 * with how many there are; undefined when every value is finite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstNonFinite } from "./common.ts";
 * const r = firstNonFinite(new Float32Array([0, 1, NaN, 2, Infinity, 0]), [2, 3]);
 * assert.deepEqual(r, { index: [0, 2], value: NaN, count: 2 });
 * ```
 */
export function firstNonFinite(
  data: ArrayLike<number>,
  shape: readonly number[],
): { index: number[]; value: number; count: number } | undefined {
  let first = -1, count = 0;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first < 0) return undefined;
  const index: number[] = [];
  let rest = first;
  for (let d = shape.length - 1; d >= 0; d--) {
    index.unshift(rest % shape[d]);
    rest = Math.floor(rest / shape[d]);
  }
  return { index, value: data[first], count };
}

/**
 * Read an image or `.npy` input given on the command line (errors name the path). A `.npy` holding
 * NaN or ±Inf is refused, naming the first bad index in the file's own shape; values far outside
 * [0,1] (below −0.5 or above 1.5) get a one-line warning through `warn` (default: stderr).
 */
export async function readInput(
  path: string,
  options: { warn?: (line: string) => void } = {},
): Promise<Tensor> {
  let t: Tensor;
  if (isNpyPath(path)) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw readError(path, e);
    }
    const raw = decodeNpy(bytes, path);
    const bad = firstNonFinite(raw.data, raw.shape);
    if (bad) {
      throw new InputError(
        `${path}: holds ${bad.value} at index [${bad.index.join(", ")}]` +
          (bad.count > 1 ? ` (${bad.count} non-finite values in all)` : "") +
          `; inputs must be finite`,
      );
    }
    t = toImageTensor(raw, path);
  } else {
    t = await readTensor(path);
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of t.data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo < INPUT_RANGE_SLACK[0] || hi > INPUT_RANGE_SLACK[1]) {
    const f = (v: number) => Number(v.toPrecision(4));
    (options.warn ?? ((l: string) => console.error(l)))(
      `warning: ${path}: values span [${f(lo)}, ${f(hi)}], far outside [0,1] (an array on ` +
        `[-1,1] or [0,255]?); used as they are`,
    );
  }
  return t;
}

/**
 * Write an output tensor (`.png` or `.npy`) after checking that the path is none of the inputs.
 * Only `path` (and a temporary file beside it) is written.
 */
export async function writeOutput(
  path: string,
  t: Tensor,
  inputs: readonly string[],
  options: { bitDepth?: 8 | 16 } = {},
): Promise<void> {
  assertNotInput(path, inputs);
  await writeTensor(path, t, options);
}

/**
 * The prior spec of `--prior SPEC` / `--model DIR` (a shorthand for `diffusers:path=DIR`); the
 * built-in exact model when neither is given. Giving both is an error.
 */
export function priorSpecFromFlags(values: { prior?: string; model?: string }): Spec {
  if (values.prior !== undefined && values.model !== undefined) {
    throw new InputError("give either --prior SPEC or --model DIR, not both");
  }
  if (values.model !== undefined) return { name: "diffusers", options: { path: values.model } };
  return parseSpec(values.prior ?? "builtin", "--prior");
}

/**
 * Check a prior spec before a benchmark's expensive work: the plugin exists (built-in or from a
 * `--plugin` module), its options validate, and it builds at `imageShape` on the CPU (what a
 * plugin checks when it builds — a folder that is not there, a missing network — is found here,
 * not in the first measurement). The prior is built into a throwaway session pool, released.
 */
export async function checkPriorSpec(
  spec: Spec,
  plugins: readonly string[],
  imageShape: readonly number[],
): Promise<void> {
  const registry = await buildRegistry({ plugins });
  const plugin = registry.get("prior", spec.name);
  const options = validateOptions(plugin, spec.options);
  const sessions = new SessionPool({ threads: 1 });
  try {
    await plugin.create(options, { device: "cpu", imageShape, sessions });
  } finally {
    await sessions.release();
  }
}

/**
 * A benchmark child's failure as an error of the parent: exit 2 (bad input, found by the child)
 * stays an input error with the child's own one-line message; anything else names the child.
 */
export function childFailure(what: string, code: number, stderr: string): Error {
  const last = stderr.trim().split("\n").at(-1) ?? "";
  if (code === 2) return new InputError(last.replace(/^error: /, ""));
  return new Error(`${what} failed (exit ${code}): ${last}`);
}

/** What `--help` shows of one option: its spelling, type, default and description. */
export interface OptionHelp {
  /** The key. */
  key: string;
  /** Accepted values, e.g. `NUM`, `INT`, `true|false`, `gaussian|motion|file`. */
  type: string;
  /** `default X`, `optional` or `required`. */
  default: string;
  /** The schema's description (empty when it has none). */
  description: string;
}

type JsonProp = {
  type?: string;
  enum?: unknown[];
  anyOf?: JsonProp[];
  default?: unknown;
  description?: string;
  const?: unknown;
};

function typeText(p: JsonProp): string {
  if (p.enum) return p.enum.map(String).join("|");
  if (p.const !== undefined) return String(p.const);
  if (p.anyOf) return [...new Set(p.anyOf.map(typeText))].join("|");
  return { integer: "INT", number: "NUM", boolean: "true|false", string: "TEXT" }[p.type ?? ""] ??
    "VALUE";
}

/**
 * The options of a plugin as `--help` lists them, read from its zod schema (`z.toJSONSchema`
 * of the input side: types, defaults and `.describe()` texts). A schema that is not a zod object
 * gives its `shape` keys only, or nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { optionsHelp } from "./common.ts";
 * const schema = z.strictObject({ sigma: z.number().positive().default(3).describe("σ in pixels") });
 * assert.deepEqual(optionsHelp(schema), [
 *   { key: "sigma", type: "NUM", default: "default 3", description: "σ in pixels" },
 * ]);
 * ```
 */
export function optionsHelp(schema: unknown): OptionHelp[] {
  let props: Record<string, JsonProp> = {};
  let required: string[] = [];
  try {
    const js = z.toJSONSchema(schema as z.ZodType, { io: "input", unrepresentable: "any" }) as {
      properties?: Record<string, JsonProp>;
      required?: string[];
    };
    props = js.properties ?? {};
    required = js.required ?? [];
  } catch {
    const shape = (schema as { shape?: Record<string, unknown> } | null)?.shape ?? {};
    props = Object.fromEntries(Object.keys(shape).map((k) => [k, {}]));
  }
  return Object.entries(props).map(([key, p]) => ({
    key,
    type: typeText(p),
    default: p.default !== undefined
      ? `default ${p.default === "" ? '""' : String(p.default)}`
      : required.includes(key)
      ? "required"
      : "optional",
    description: p.description ?? "",
  }));
}

/**
 * `--help` text for the plugins of the given kinds: one line per plugin, then one per option
 * (`key=TYPE (default …) description`), generated from the schemas, so every option a plugin has
 * is listed, and reachable through its spec string (`--solver`, `--operator`, `--prior`).
 */
export function describePlugins(
  registry: PluginRegistry,
  kinds: readonly PluginKind[] = ["solver", "operator", "prior"],
): string {
  const flag: Record<PluginKind, string> = {
    solver: "--solver",
    operator: "--operator",
    prior: "--prior",
  };
  const lines: string[] = [];
  for (const kind of kinds) {
    lines.push(`${kind}s (${flag[kind]} NAME[:key=value,...]):`);
    for (const p of registry.list(kind)) {
      lines.push(`  ${p.name.padEnd(10)} ${p.description}`);
      for (const o of optionsHelp(p.options)) {
        const head = `      ${o.key}=${o.type} (${o.default})`;
        lines.push(o.description ? `${head}  ${o.description}` : head);
      }
    }
  }
  return lines.join("\n");
}
