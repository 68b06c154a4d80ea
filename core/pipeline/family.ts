/**
 * Which model family a pipeline folder holds, told from its config files and its UNet's inputs —
 * never from the folder's name:
 *
 * | family      | evidence                                                                       |
 * | ----------- | ------------------------------------------------------------------------------ |
 * | `builtin`   | `model_index.json` has `_exact_model` (the built-in exact model)               |
 * | `sdxl-lcm`  | SDXL UNet (inputs `text_embeds` + `time_ids`, or `addition_embed_type: text_time`) with an LCM guidance embedding (`timestep_cond` input or `time_cond_proj_dim`) |
 * | `sdxl-dmd2` | SDXL UNet served with `LCMScheduler` and no guidance embedding ("DMD2-like")   |
 * | `sdxl`      | any other SDXL UNet                                                            |
 * | `sd-lcm`    | SD 1.x/2.x UNet with a guidance embedding or an `LCMScheduler` (LCM, LCM-LoRA)  |
 * | `sd`        | any other SD 1.x/2.x UNet                                                      |
 *
 * What the files cannot tell apart: DMD2's SDXL UNet is exported with the SDXL-base config and run
 * with `LCMScheduler`, exactly like an SDXL + LCM-LoRA merge, so both read as `sdxl-dmd2`; and an
 * SD1.5 + LCM-LoRA merge reads like any LCM-scheduled SD model. The user says which with the prior
 * option `family=` (e.g. `diffusers:path=DIR,family=sdxl-lcm`), which overrides the detection.
 *
 * @module
 */
import type { PriorFamily } from "../contracts.ts";

/** The families {@link detectFamily} tells apart (and `family=` accepts). */
export const PRIOR_FAMILIES = ["sd", "sd-lcm", "sdxl", "sdxl-lcm", "sdxl-dmd2", "builtin"] as const;

/** A family id; "unknown" for priors that do not say. */
export type PriorFamilyId = typeof PRIOR_FAMILIES[number] | "unknown";

/** A pipeline prior's family and how it was told. */
export interface PipelineFamily extends PriorFamily {
  /** The family. */
  id: PriorFamilyId;
}

/** The facts of a pipeline folder that decide its family. */
export interface PipelineFacts {
  /** `model_index.json`, when present. */
  modelIndex?: Record<string, unknown>;
  /** `_class_name` of `scheduler/scheduler_config.json`. */
  schedulerClass: string;
  /** `unet/config.json` (or `consistency_unet/config.json`), when present. */
  unetConfig?: Record<string, unknown>;
  /** The UNet's conditioning inputs (from the graph). */
  unetInputs: readonly string[];
}

/**
 * The family of a pipeline folder from its config facts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { detectFamily } from "./family.ts";
 * const sdxl = ["encoder_hidden_states", "text_embeds", "time_ids"];
 * assert.equal(detectFamily({ schedulerClass: "LCMScheduler", unetInputs: sdxl }).id, "sdxl-dmd2");
 * assert.equal(detectFamily({ schedulerClass: "EulerDiscreteScheduler", unetInputs: sdxl }).id, "sdxl");
 * const lcm = ["encoder_hidden_states", "timestep_cond"];
 * assert.equal(detectFamily({ schedulerClass: "LCMScheduler", unetInputs: lcm }).id, "sd-lcm");
 * assert.equal(detectFamily({ schedulerClass: "PNDMScheduler", unetInputs: ["encoder_hidden_states"] }).id, "sd");
 * ```
 */
export function detectFamily(f: PipelineFacts): PipelineFamily {
  if (f.modelIndex && "_exact_model" in f.modelIndex) {
    return { id: "builtin", evidence: 'model_index.json has "_exact_model"' };
  }
  const inputs = new Set(f.unetInputs);
  const cfg = f.unetConfig ?? {};
  const sdxlWhy = inputs.has("text_embeds") && inputs.has("time_ids")
    ? "UNet inputs text_embeds + time_ids"
    : cfg.addition_embed_type === "text_time"
    ? 'unet/config.json addition_embed_type "text_time"'
    : undefined;
  const guidanceWhy = inputs.has("timestep_cond")
    ? "UNet input timestep_cond"
    : typeof cfg.time_cond_proj_dim === "number"
    ? "unet/config.json time_cond_proj_dim"
    : undefined;
  const lcmWhy = f.schedulerClass === "LCMScheduler" ? "scheduler LCMScheduler" : undefined;
  const why = (...parts: (string | undefined)[]) => parts.filter((p) => p).join(", ");
  if (sdxlWhy) {
    if (guidanceWhy) return { id: "sdxl-lcm", evidence: why(sdxlWhy, guidanceWhy, lcmWhy) };
    if (lcmWhy) {
      return {
        id: "sdxl-dmd2",
        evidence: why(sdxlWhy, lcmWhy, "no guidance embedding") +
          " (DMD2-like; an SDXL LCM-LoRA merge looks the same: say family=sdxl-lcm for one)",
      };
    }
    return { id: "sdxl", evidence: why(sdxlWhy, `scheduler ${f.schedulerClass}`) };
  }
  if (guidanceWhy || lcmWhy) return { id: "sd-lcm", evidence: why(guidanceWhy, lcmWhy) };
  return { id: "sd", evidence: `no SDXL inputs, scheduler ${f.schedulerClass}` };
}
