/**
 * The built-in prior (model family) plugins.
 *
 * @module
 */
import type { PriorPlugin } from "../core/registry.ts";

/** Every built-in prior plugin. */
export const priorPlugins: PriorPlugin[] = [];
