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
import { loadPluginModule, type PluginRegistry } from "../core/registry.ts";
import { builtinRegistry } from "../mod.ts";
import { readTensor, writeTensor } from "../core/io/image.ts";
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

/** Read an image or `.npy` input given on the command line (errors name the path). */
export function readInput(path: string): Promise<Tensor> {
  return readTensor(path);
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
