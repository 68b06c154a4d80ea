/**
 * Plugins and their registry.
 *
 * A plugin is a plain object `{ kind, name, description, options, create }` where `options` is a zod
 * schema. Built-in plugins register exactly as third-party plugins do: `registry.register(plugin)`.
 * (The command-line tools also load plugin modules named on their command line, `--plugin PATH`:
 * cli/common.ts. The library itself imports no module by a computed name.)
 *
 * @module
 */
import type { ForwardOperator, Prior, Solver } from "./contracts.ts";
import type { RandomStream } from "./rng.ts";
import type { SessionPool } from "./backend/pool.ts";
import { STREAMS, streams } from "./rng.ts";
import { InputError } from "./errors.ts";
import { parseSpec, type Spec } from "./spec.ts";

/** Context given to an operator plugin's `create`. */
export interface OperatorContext {
  /** Shape of the unknown image x, [1,C,H,W]. */
  shape: readonly number[];
  /** The operator's random stream (masks, motion kernels…), derived from the run seed. */
  rng: RandomStream;
}

/** Context given to a prior plugin's `create`. */
export interface PriorContext {
  /** Execution provider request: "auto" | "cpu" | "cuda" | "webgpu". */
  device: string;
  /** Shape of the images the prior will see, [1,3,H,W] (size-specific models need it). */
  imageShape: readonly number[];
  /**
   * The session pool to load the prior's networks into (default: the process-wide pool). A
   * benchmark passes its own to set the intra-op thread count.
   */
  sessions?: SessionPool;
}

/**
 * Context given to a solver plugin's `create`: empty by design. A solver is built from its options
 * alone; everything about a run reaches it in `run(problem, prior, ctx)` (the operator and
 * measurement in `Problem`; device, shapes, streams and sessions in `SolveContext`), so one solver
 * object can serve several runs.
 */
export type SolverContext = Record<string, never>;

/** One problem found by a schema. */
export interface SchemaIssue {
  /** Where in the options object. */
  path: PropertyKey[];
  /** What is wrong. */
  message: string;
}

/** The result of validating options. */
export type SchemaResult<O> =
  | { success: true; data: O }
  | { success: false; error: { issues: readonly SchemaIssue[] } };

/**
 * An options schema: anything with zod's `safeParse` (a zod schema is one). Kept structural so the
 * public API does not expose zod's own types.
 */
export interface OptionsSchema<O = unknown> {
  /** Validate and normalise (defaults, coercions) an options object. */
  safeParse(value: unknown): SchemaResult<O>;
}

/** Fields shared by every plugin kind. */
export interface PluginBase<K extends string, O, T, C> {
  /** What the plugin provides. */
  kind: K;
  /** Unique name within its kind: lower-case letters, digits, dashes. */
  name: string;
  /** One line for `--help`. */
  description: string;
  /** zod schema of the options (use `z.strictObject` so unknown keys are rejected). */
  options: OptionsSchema<O>;
  /** Build the thing from validated options. */
  create(options: O, context: C): T | Promise<T>;
}

/** An operator plugin. */
// deno-lint-ignore no-explicit-any -- options are contravariant in create(); `any` lets a typed plugin join a list
export type OperatorPlugin<O = any> = PluginBase<
  "operator",
  O,
  ForwardOperator,
  OperatorContext
>;
/** A prior (model family) plugin. */
// deno-lint-ignore no-explicit-any -- options are contravariant in create(); `any` lets a typed plugin join a list
export type PriorPlugin<O = any> = PluginBase<
  "prior",
  O,
  Prior,
  PriorContext
>;
/** A solver plugin. */
// deno-lint-ignore no-explicit-any -- options are contravariant in create(); `any` lets a typed plugin join a list
export type SolverPlugin<O = any> = PluginBase<
  "solver",
  O,
  Solver,
  SolverContext
>;
/** Any plugin. */
export type Plugin = OperatorPlugin | PriorPlugin | SolverPlugin;
/** Plugin kinds. */
export type PluginKind = Plugin["kind"];

/**
 * Identity helper that gives an operator plugin full type inference for its options.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { defineOperator } from "./registry.ts";
 * const gain = defineOperator({
 *   kind: "operator",
 *   name: "gain",
 *   description: "multiply by a constant",
 *   options: z.strictObject({ g: z.number().default(2) }),
 *   create: () => {
 *     throw new Error("sketch");
 *   },
 * });
 * assert.ok(gain.options.safeParse({}).success);
 * ```
 */
export function defineOperator<O>(p: OperatorPlugin<O>): OperatorPlugin<O> {
  return p;
}
/**
 * Identity helper that gives a solver plugin full type inference for its options.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { defineSolver } from "./registry.ts";
 * const noop = defineSolver({
 *   kind: "solver",
 *   name: "noop",
 *   description: "returns the pseudo-inverse",
 *   options: z.strictObject({}),
 *   create: () => {
 *     throw new Error("sketch");
 *   },
 * });
 * assert.ok(noop.kind === "solver");
 * ```
 */
export function defineSolver<O>(p: SolverPlugin<O>): SolverPlugin<O> {
  return p;
}
/**
 * Identity helper that gives a prior plugin full type inference for its options.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { definePrior } from "./registry.ts";
 * const flat = definePrior({
 *   kind: "prior",
 *   name: "flat",
 *   description: "no prior",
 *   options: z.strictObject({ model: z.string().optional() }),
 *   create: () => {
 *     throw new Error("sketch");
 *   },
 * });
 * assert.ok(flat.name === "flat");
 * ```
 */
export function definePrior<O>(p: PriorPlugin<O>): PriorPlugin<O> {
  return p;
}

const KINDS = ["operator", "prior", "solver"] as const;

/**
 * Return a list of what is wrong with a would-be plugin object (empty when it is valid).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pluginProblems } from "./registry.ts";
 * assert.deepEqual(pluginProblems(null), ["is not an object"]);
 * assert.equal(pluginProblems({ kind: "operator", name: "Bad" }).length, 4);
 * ```
 */
export function pluginProblems(p: unknown): string[] {
  if (typeof p !== "object" || p === null) return ["is not an object"];
  const o = p as Record<string, unknown>;
  const out: string[] = [];
  if (!KINDS.includes(o.kind as PluginKind)) {
    out.push(`kind must be one of ${KINDS.join(", ")} (got ${JSON.stringify(o.kind)})`);
  }
  if (typeof o.name !== "string" || !/^[a-z][a-z0-9-]*$/.test(o.name)) {
    out.push(`name must be lower-case letters, digits and dashes (got ${JSON.stringify(o.name)})`);
  }
  if (typeof o.description !== "string" || o.description.length === 0) {
    out.push("description must be a non-empty string");
  }
  const opts = o.options as { safeParse?: unknown } | undefined;
  if (typeof opts !== "object" || opts === null || typeof opts.safeParse !== "function") {
    out.push("options must be a zod schema");
  }
  if (typeof o.create !== "function") out.push("create must be a function");
  return out;
}

/**
 * Format zod issues as one line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatIssues } from "./registry.ts";
 * const line = formatIssues({ issues: [{ path: ["sigma"], message: "expected number" }] });
 * assert.equal(line, "sigma: expected number");
 * ```
 */
export function formatIssues(error: { issues: readonly SchemaIssue[] }): string {
  return error.issues.map((i) => {
    const path = i.path.length ? i.path.map(String).join(".") + ": " : "";
    return path + i.message;
  }).join("; ");
}

/**
 * The snake_case spelling of an option key: `minArea` → `min_area`, `proxMaxIter` →
 * `prox_max_iter` (keys without capitals are returned as they are).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { snakeCase } from "./registry.ts";
 * assert.equal(snakeCase("residualNoise"), "residual_noise");
 * assert.equal(snakeCase("sigma_x"), "sigma_x");
 * ```
 */
export function snakeCase(key: string): string {
  return key.replace(/(?<=[a-z0-9])([A-Z])/g, "_$1").toLowerCase();
}

const warnedKeys = new Set<string>();

/**
 * The option-key convention, applied to every plugin in one place: keys are snake_case. A
 * camelCase key whose snake_case spelling the schema knows (and the camelCase one it does not) is
 * a deprecated alias: it is renamed, with one line `warning: …` on stderr (once per plugin and key
 * per process). Giving both spellings is an error. Schemas without a `shape` (not zod objects) are
 * left alone.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { normaliseOptionKeys } from "./registry.ts";
 * const plugin = { kind: "operator", name: "demo", options: z.strictObject({ min_area: z.number() }) };
 * assert.deepEqual(normaliseOptionKeys(plugin, { min_area: 0.1 }), { min_area: 0.1 });
 * assert.deepEqual(normaliseOptionKeys(plugin, { minArea: 0.1 }), { min_area: 0.1 }); // + a warning
 * assert.throws(() => normaliseOptionKeys(plugin, { minArea: 0.1, min_area: 0.2 }), /not both/);
 * ```
 */
export function normaliseOptionKeys(
  plugin: { kind: string; name: string; options: unknown },
  options: unknown,
): unknown {
  const shape = (plugin.options as { shape?: Record<string, unknown> } | null)?.shape;
  if (!shape || typeof options !== "object" || options === null || Array.isArray(options)) {
    return options;
  }
  let out: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(options)) {
    const snake = snakeCase(key);
    if (snake === key || key in shape || !(snake in shape)) continue;
    const where = `${plugin.kind} "${plugin.name}"`;
    if (snake in options) {
      throw new InputError(`${where}: give either "${key}" or "${snake}", not both`);
    }
    out ??= { ...options };
    delete out[key];
    out[snake] = value;
    if (!warnedKeys.has(`${where}/${key}`)) {
      warnedKeys.add(`${where}/${key}`);
      console.error(`warning: ${where}: option "${key}" is deprecated, use "${snake}"`);
    }
  }
  return out ?? options;
}

/**
 * Validate options against a plugin's schema, or throw an InputError naming the plugin. Keys
 * follow the snake_case convention; deprecated camelCase spellings are accepted with a warning
 * ({@link normaliseOptionKeys}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { validateOptions } from "./registry.ts";
 * const plugin = { kind: "operator", name: "gain", options: z.strictObject({ g: z.number() }) };
 * assert.deepEqual(validateOptions(plugin, { g: 2 }), { g: 2 });
 * assert.throws(() => validateOptions(plugin, { g: "x" }), /operator "gain": g:/);
 * ```
 */
export function validateOptions<O>(
  plugin: { kind: string; name: string; options: OptionsSchema<O> },
  options: unknown,
): O {
  const r = plugin.options.safeParse(normaliseOptionKeys(plugin, options));
  if (!r.success) {
    throw new InputError(`${plugin.kind} "${plugin.name}": ${formatIssues(r.error)}`);
  }
  return r.data;
}

/**
 * Plugins by kind and name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { defineSolver, PluginRegistry } from "./registry.ts";
 * const noop = defineSolver({
 *   kind: "solver",
 *   name: "noop",
 *   description: "does nothing",
 *   options: z.strictObject({}),
 *   create: () => {
 *     throw new Error("sketch");
 *   },
 * });
 * const registry = new PluginRegistry().register(noop);
 * assert.equal(registry.get("solver", "noop"), noop);
 * assert.throws(() => registry.get("solver", "other"), /known: noop/);
 * ```
 */
export class PluginRegistry {
  #byKind = new Map<PluginKind, Map<string, Plugin>>();

  /** Register one plugin; throws an InputError naming the problem when it is malformed. */
  register(p: Plugin, origin = "plugin"): this {
    const problems = pluginProblems(p);
    if (problems.length) {
      const label = (p as { name?: unknown })?.name;
      throw new InputError(
        `${origin}${label ? ` "${String(label)}"` : ""} is not a valid plugin: ${
          problems.join("; ")
        }`,
      );
    }
    let m = this.#byKind.get(p.kind);
    if (!m) this.#byKind.set(p.kind, m = new Map());
    if (m.has(p.name)) {
      throw new InputError(`${origin}: a ${p.kind} plugin named "${p.name}" is already registered`);
    }
    m.set(p.name, p);
    return this;
  }

  /** Register several plugins. */
  registerAll(ps: readonly Plugin[], origin = "plugin"): this {
    for (const p of ps) this.register(p, origin);
    return this;
  }

  /** The plugin of this kind and name, or an InputError listing the known names. */
  get<K extends PluginKind>(kind: K, name: string): Extract<Plugin, { kind: K }> {
    const p = this.#byKind.get(kind)?.get(name);
    if (!p) {
      const known = this.list(kind).map((q) => q.name).join(", ") || "none";
      throw new InputError(`unknown ${kind} "${name}" (known: ${known})`);
    }
    return p as Extract<Plugin, { kind: K }>;
  }

  /** All plugins of a kind, in registration order. */
  list<K extends PluginKind>(kind: K): Extract<Plugin, { kind: K }>[] {
    return [...(this.#byKind.get(kind)?.values() ?? [])] as Extract<Plugin, { kind: K }>[];
  }
}

/**
 * Build an operator from a spec string for an image shape and a run seed. The operator's random
 * stream is `operator/NAME` of the seed, so masks and kernels depend only on (seed, spec).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { z } from "zod";
 * import { createOperator, defineOperator, PluginRegistry } from "./registry.ts";
 * import { linearOperator } from "./linear_operator.ts";
 * import type { Tensor } from "./tensor.ts";
 * // y = s·x as a plugin with one option.
 * const scale = defineOperator({
 *   kind: "operator",
 *   name: "scale",
 *   description: "y = s·x",
 *   options: z.strictObject({ s: z.number().default(2) }),
 *   create({ s }, { shape }) {
 *     const f = (t: Tensor) => ({ data: t.data.map((v) => s * v), shape: [...shape] });
 *     return linearOperator({ name: "scale", options: { s }, inputShape: shape, outputShape: shape, forward: f, adjoint: f });
 *   },
 * });
 * const registry = new PluginRegistry().register(scale);
 * const op = await createOperator(registry, "scale:s=3", [1, 3, 4, 4], 0);
 * assert.equal(op.capabilities.linear, true);
 * assert.deepEqual(op.options, { s: 3 });
 * ```
 */
export async function createOperator(
  registry: PluginRegistry,
  spec: string | Spec,
  shape: readonly number[],
  seed: number,
): Promise<ForwardOperator> {
  const s = typeof spec === "string" ? parseSpec(spec, "operator") : spec;
  const plugin = registry.get("operator", s.name);
  const options = validateOptions(plugin, s.options);
  if (shape.length !== 4 || shape[0] !== 1) {
    throw new InputError(`image shape [${shape}]: expected [1,C,H,W]`);
  }
  const rng = streams(seed).get(STREAMS.operator).child(s.name);
  return await plugin.create(options, { shape, rng });
}
