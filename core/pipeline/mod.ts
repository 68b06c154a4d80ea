/**
 * The generic ONNX latent-diffusion pipeline prior over a diffusers/Optimum-layout folder, on disk
 * or in memory: folder reading, the noise schedule, text conditioning, the CLIP tokenizer and
 * {@link DiffusersPrior}. Prior plugins build on it (the "diffusers" plugin over a folder on disk,
 * the "builtin" plugin over the exact model it emits in memory); none imports another.
 *
 * @module
 */
export * from "./files.ts";
export * from "./schedule.ts";
export * from "./tokenizer.ts";
export * from "./conditioning.ts";
export * from "./family.ts";
export { MODEL_FOLDERS, type ModelFolder } from "./folder.ts";
export { DEFAULT_LCM_GUIDANCE, type DiffusersLoadOptions, DiffusersPrior } from "./prior.ts";
