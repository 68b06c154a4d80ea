/**
 * The "diffusers" prior plugin: a diffusers/Optimum ONNX pipeline folder on disk
 * (`--prior diffusers:path=./sd15-onnx`), served by {@link DiffusersPrior}.
 *
 * @module
 */
import { z } from "zod";
import { definePrior, type PriorPlugin } from "../../core/registry.ts";
import { InputError } from "../../core/errors.ts";
import { directoryFiles } from "../../core/pipeline/files.ts";
import { DEFAULT_LCM_GUIDANCE, DiffusersPrior } from "../../core/pipeline/prior.ts";
import { PRIOR_FAMILIES, type PriorFamilyId } from "../../core/pipeline/family.ts";

/** Options of the "diffusers" prior plugin. */
export interface DiffusersPluginOptions {
  /** The pipeline folder. */
  path: string;
  /** LCM guidance scale for `timestep_cond` (default 8.5). */
  lcm_guidance: number;
  /** The model family, when the config files cannot tell it (default: detected). */
  family?: PriorFamilyId;
}

/** Prior plugin over a diffusers/Optimum ONNX pipeline folder. */
export const diffusersPlugin: PriorPlugin<DiffusersPluginOptions> = definePrior({
  kind: "prior",
  name: "diffusers",
  description:
    "diffusers/Optimum ONNX pipeline folder (SD 1.x/2.x, SDXL, LCM): unet, vae_encoder, vae_decoder, text encoders",
  options: z.strictObject({
    path: z.string().min(1).describe("the pipeline folder (model_index.json, unet/, vae_*/, …)"),
    lcm_guidance: z.number().positive().default(DEFAULT_LCM_GUIDANCE)
      .describe("LCM guidance scale w+1 for timestep_cond (diffusers default 8.5)"),
    family: z.enum(PRIOR_FAMILIES).optional().describe(
      `model family when the config files cannot tell it: ${
        PRIOR_FAMILIES.join(" | ")
      } (default: detected from the configs)`,
    ),
  }),
  async create(options, ctx) {
    let isDir = false;
    try {
      isDir = (await Deno.stat(options.path)).isDirectory;
    } catch { /* reported below */ }
    if (!isDir) {
      throw new InputError(
        `prior "diffusers": path "${options.path}" is not a directory (expected a diffusers ONNX pipeline folder)`,
      );
    }
    return await DiffusersPrior.load(directoryFiles(options.path), {
      device: ctx.device,
      imageShape: ctx.imageShape,
      pool: ctx.sessions,
      lcmGuidance: options.lcm_guidance,
      family: options.family,
    });
  },
});
