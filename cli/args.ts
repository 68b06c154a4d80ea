/**
 * Argument parsing and the exit-code runner of the command-line tools, free of native libraries (so
 * light entry points such as `pack` can use them without loading ONNX Runtime): strict `node:util`
 * parseArgs, option value parsing, and `main`, which turns errors into one line and an exit code.
 *
 * Exit codes: 0 success; 2 bad input (InputError, a schema or argument error: the message names
 * the input); 1 anything else (a bug or an environment failure: one line, the stack with
 * `--debug`).
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { InputError } from "../core/errors.ts";
import { formatIssues } from "../core/registry.ts";

/** Options every tool accepts. */
export const COMMON_OPTIONS = {
  plugin: { type: "string", multiple: true },
  "allow-remote-plugins": { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/** First line of an error's message. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}

/** True for the TypeErrors `node:util` parseArgs throws on bad arguments. */
function isParseArgsError(e: unknown): e is Error & { code: string } {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

/** True for a zod (or zod-like) validation error. */
function isSchemaError(
  e: unknown,
): e is Error & { issues: { path: PropertyKey[]; message: string }[] } {
  return e instanceof Error && (e.name === "ZodError" || e.name === "$ZodError") &&
    Array.isArray((e as { issues?: unknown }).issues);
}

/** The value type parseArgs gives one option. */
type OptionValue<O> = O extends { type: "boolean"; multiple: true } ? boolean[]
  : O extends { type: "boolean" } ? boolean
  : O extends { multiple: true } ? string[]
  : string;

/** Parsed option values (absent when not given and without a default). */
export type CliValues<T> = { [K in keyof T]?: OptionValue<T[K]> };

/**
 * Parse command-line arguments strictly (unknown options are errors) into typed values; a parse
 * problem becomes an InputError with one line. The {@link COMMON_OPTIONS} are always included.
 */
export function parseCli<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  positionals: { min?: number; max?: number; names?: string } = { max: 0 },
): { values: CliValues<T & typeof COMMON_OPTIONS>; positionals: string[] } {
  let parsed: { values: CliValues<T & typeof COMMON_OPTIONS>; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: { ...COMMON_OPTIONS, ...options } as T & typeof COMMON_OPTIONS,
      strict: true,
      allowPositionals: true,
    }) as typeof parsed;
  } catch (e) {
    if (isParseArgsError(e)) throw new InputError(parseArgsMessage(e));
    throw e;
  }
  const n = parsed.positionals.length;
  const { min = 0, max = Infinity, names = "arguments" } = positionals;
  if (!parsed.values.help && (n < min || n > max)) {
    const want = min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min} to ${max}`;
    throw new InputError(
      n > max && max === 0
        ? `unexpected argument "${parsed.positionals[0]}"`
        : `expected ${want} ${names}, got ${n}`,
    );
  }
  return parsed;
}

/** One line from a parseArgs error ("Unknown option '--x'. To specify …" → "unknown option --x"). */
function parseArgsMessage(e: Error & { code: string }): string {
  const m = e.message;
  const opt = /'(-[^']*)'/.exec(m)?.[1];
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${opt ?? m.split(".")[0]}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/ambiguous/.test(m) && opt) {
        return `option ${opt}: a value starting with "-" must be written ${opt}=VALUE`;
      }
      return m.split("\n")[0].replace(/^Option /, "option ");
    default:
      return m.split("\n")[0];
  }
}

/**
 * Parse a numeric option value, or throw an InputError naming the option.
 *
 * @param value the raw string (undefined → `fallback`)
 * @param name option name for messages, e.g. "--noise"
 */
export function parseNumber(
  value: string | undefined,
  name: string,
  rules: { fallback?: number; min?: number; max?: number; integer?: boolean } = {},
): number {
  if (value === undefined) {
    if (rules.fallback === undefined) throw new InputError(`${name} is required`);
    return rules.fallback;
  }
  const v = Number(value.trim());
  const kind = rules.integer ? "an integer" : "a number";
  if (value.trim() === "" || !Number.isFinite(v) || (rules.integer && !Number.isInteger(v))) {
    throw new InputError(`${name} "${value}": expected ${kind}`);
  }
  if (rules.min !== undefined && v < rules.min) {
    throw new InputError(`${name} ${value}: must be ≥ ${rules.min}`);
  }
  if (rules.max !== undefined && v > rules.max) {
    throw new InputError(`${name} ${value}: must be ≤ ${rules.max}`);
  }
  return v;
}

/** Parse `HxW` (or a single `N` for N×N), e.g. `--size 512x768`. */
export function parseSize(value: string, name = "--size"): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*$/.exec(value);
  const h = m ? Number(m[1]) : NaN, w = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || h < 1 || w < 1) throw new InputError(`${name} "${value}": expected HxW, e.g. 512x512`);
  return [h, w];
}

/** The exit code and one-line message for an error (2: the user's input, 1: anything else). */
export function classifyError(e: unknown): { exitCode: 1 | 2; message: string } {
  if (e instanceof InputError) return { exitCode: 2, message: firstLine(e) };
  if (isSchemaError(e)) return { exitCode: 2, message: formatIssues(e) };
  if (isParseArgsError(e)) return { exitCode: 2, message: parseArgsMessage(e) };
  return { exitCode: 1, message: firstLine(e) || (e instanceof Error ? e.name : "unknown error") };
}

/**
 * Run a tool's body and exit: 0 on success (or the number it returns), otherwise `error: <one
 * line>` on stderr with exit code 2 for bad input and 1 for other failures (stack trace only with
 * `--debug`).
 */
export async function main(
  body: (args: string[]) => Promise<number | void>,
  args: string[] = Deno.args,
): Promise<never> {
  let code = 0;
  try {
    code = (await body(args)) ?? 0;
  } catch (e) {
    const { exitCode, message } = classifyError(e);
    console.error(`error: ${message}`);
    if (args.includes("--debug") && e instanceof Error && e.stack) console.error(e.stack);
    code = exitCode;
  }
  Deno.exit(code);
}
