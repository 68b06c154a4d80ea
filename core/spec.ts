/**
 * Plugin spec strings: `NAME[:key=value,...]`, e.g. `blur:kernel=gaussian,sigma=3`.
 *
 * Values are typed before validation: numbers become numbers, `true`/`false` booleans, anything else
 * stays a string, so a plugin's zod schema can say `z.number()` and not care about parsing.
 *
 * @module
 */
import { InputError } from "./errors.ts";

/** A parsed spec. */
export interface Spec {
  /** Plugin name. */
  name: string;
  /** Options, typed (number, boolean or string). */
  options: Record<string, number | boolean | string>;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Type a raw option string: number, boolean, or the string itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { typeValue } from "./spec.ts";
 * assert.equal(typeValue("3"), 3);
 * assert.equal(typeValue("false"), false);
 * assert.equal(typeValue("gaussian"), "gaussian");
 * ```
 */
export function typeValue(raw: string): number | boolean | string {
  if (NUMBER.test(raw)) return Number(raw);
  if (raw === "true") return true;
  if (raw === "false") return false;
  return raw;
}

/**
 * Parse `NAME[:key=value,...]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSpec } from "./spec.ts";
 * const s = parseSpec("blur:kernel=gaussian,sigma=3");
 * assert.ok(s.name === "blur" && s.options.sigma === 3);
 * ```
 */
export function parseSpec(text: string, what = "spec"): Spec {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(":");
  const name = (colon < 0 ? trimmed : trimmed.slice(0, colon)).trim();
  if (!/^[a-z][a-z0-9_-]*$/i.test(name)) {
    throw new InputError(`${what} "${text}": expected NAME[:key=value,...] with a plugin name`);
  }
  const options: Spec["options"] = {};
  if (colon >= 0) {
    const rest = trimmed.slice(colon + 1);
    for (const part of rest.split(",")) {
      if (part.trim() === "") continue;
      const eq = part.indexOf("=");
      if (eq <= 0) {
        throw new InputError(`${what} "${text}": option "${part}" is not key=value`);
      }
      const key = part.slice(0, eq).trim();
      if (key in options) throw new InputError(`${what} "${text}": option "${key}" given twice`);
      options[key] = typeValue(part.slice(eq + 1).trim());
    }
  }
  return { name, options };
}

/**
 * Format options back into a spec string (stable key order as given).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSpec, parseSpec } from "./spec.ts";
 * const s = parseSpec("blur:kernel=gaussian,sigma=3");
 * assert.equal(formatSpec(s), "blur:kernel=gaussian,sigma=3");
 * ```
 */
export function formatSpec(spec: Spec): string {
  const opts = Object.entries(spec.options).map(([k, v]) => `${k}=${v}`).join(",");
  return opts ? `${spec.name}:${opts}` : spec.name;
}
