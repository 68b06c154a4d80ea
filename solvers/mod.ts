/**
 * The built-in solver plugins.
 *
 * @module
 */
import type { SolverPlugin } from "../core/registry.ts";
import { latinoPlugin } from "./latino.ts";
import { latinoProPlugin } from "./latino_pro.ts";
import { ldpsPlugin, psldPlugin } from "./ldps.ts";

/** Every built-in solver plugin, in `--help` order. */
export const solverPlugins: SolverPlugin[] = [
  latinoPlugin,
  latinoProPlugin,
  ldpsPlugin,
  psldPlugin,
];
