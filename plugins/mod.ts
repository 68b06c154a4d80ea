/**
 * The built-in prior (model family) plugins.
 *
 * @module
 */
import type { PriorPlugin } from "../core/registry.ts";
import { diffusersPlugin } from "./diffusers/mod.ts";
import { builtinPlugin } from "./builtin-gaussian/plugin.ts";

/** Every built-in prior plugin. */
export const priorPlugins: PriorPlugin[] = [builtinPlugin, diffusersPlugin];
