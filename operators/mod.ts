/**
 * The built-in operator plugins. Each plugin file adds itself to this list.
 *
 * @module
 */
import type { OperatorPlugin } from "../core/registry.ts";
import { srPlugin } from "./sr.ts";
import { inpaintPlugin } from "./inpaint.ts";
import { blurPlugin } from "./blur.ts";
import { jpegPlugin } from "./jpeg.ts";

/** Every built-in operator plugin, in `--help` order. */
export const operatorPlugins: OperatorPlugin[] = [blurPlugin, srPlugin, inpaintPlugin, jpegPlugin];
