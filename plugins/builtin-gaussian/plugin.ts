/**
 * The "builtin" prior plugin: the exact model, emitted for the run's image size and served by the
 * same loader as a diffusers folder on disk (`DiffusersPrior` over an in-memory folder). No
 * download; every quantity is known in closed form (see closed_form.ts).
 *
 * Options (spec string `builtin:lossy=0.5,scale=1`):
 * - `lossy`: keep only the low-frequency block of the latent: a per-axis fraction in (0,1], a
 *   block "KhxKw" (e.g. `lossy=16x24`), or `true` (= {@link DEFAULT_LOSSY_FRACTION}); absent or
 *   `false`: lossless (latent [1,3,H,W]).
 * - `scale`: the latent scaling factor s (VAE `scaling_factor`), default 1.
 * - `ref_size`: the size reference N_ref of the prior's size scaling (0: none), default 16.
 * - `write_model`: also write the emitted folder to this (new) directory, to inspect it.
 *
 * @module
 */
import { z } from "zod";
import { definePrior, type PriorPlugin } from "../../core/registry.ts";
import { InputError } from "../../core/errors.ts";
import { memoryFiles } from "../../core/pipeline/files.ts";
import { DiffusersPrior } from "../../core/pipeline/prior.ts";
import { buildExactModelFiles, writeExactModelFolder } from "./emit.ts";
import { createExactModel, type ExactModel } from "./model.ts";
import { DEFAULT_SPECTRUM } from "./params.ts";

/** The per-axis keep fraction `lossy=true` stands for. */
export const DEFAULT_LOSSY_FRACTION = 0.5;

/** Options of the builtin prior (after validation). */
export interface BuiltinPriorOptions {
  /** Per-axis keep fraction, "KhxKw", or true (= {@link DEFAULT_LOSSY_FRACTION}) / false. */
  lossy?: number | string | boolean;
  /** Latent scaling factor s. */
  scale: number;
  /** Size reference N_ref (0 disables the size scaling). */
  ref_size: number;
  /** Directory to write the emitted folder to. */
  write_model?: string;
}

/** Parse the `lossy` option. */
function lossyOf(
  v: number | string | boolean | undefined,
  H: number,
  W: number,
): [number, number] | number | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return DEFAULT_LOSSY_FRACTION;
  if (typeof v === "number") return v;
  const m = /^(\d+)x(\d+)$/.exec(v);
  if (!m) {
    throw new InputError(`prior "builtin": lossy=${v}: expected a fraction in (0,1] or KhxKw`);
  }
  const kh = Number(m[1]), kw = Number(m[2]);
  if (kh < 1 || kw < 1 || kh > H || kw > W) {
    throw new InputError(`prior "builtin": lossy=${v}: the block must fit the ${H}x${W} image`);
  }
  return [kh, kw];
}

/**
 * The exact model a `builtin` prior with these (validated) options serves for an image shape: the
 * closed forms of `closed_form.ts` evaluated on it describe exactly what the ONNX graphs compute
 * (e.g. the exact posterior baselines of `compare`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { builtinExactModel, builtinPlugin } from "./plugin.ts";
 * import { validateOptions } from "../../core/registry.ts";
 * const m = builtinExactModel(validateOptions(builtinPlugin, { lossy: "4x8" }), [1, 3, 16, 16]);
 * assert.deepEqual([m.layout.keepH, m.layout.keepW], [4, 8]);
 * ```
 */
export function builtinExactModel(
  o: BuiltinPriorOptions,
  imageShape: readonly number[],
): ExactModel {
  const [, , H, W] = imageShape;
  return createExactModel({
    imageShape,
    lossy: lossyOf(o.lossy, H, W),
    scale: o.scale,
    refSize: o.ref_size,
  });
}

/** The built-in exact model as a prior plugin. */
export const builtinPlugin: PriorPlugin<BuiltinPriorOptions> = definePrior<BuiltinPriorOptions>({
  kind: "prior",
  name: "builtin",
  description:
    "built-in exact latent-diffusion model (DCT autoencoder, Gaussian prior, closed-form Tweedie and consistency UNets; no download)",
  options: z.strictObject({
    lossy: z.union([
      z.number().gt(0).max(1),
      z.string().regex(/^\d+x\d+$/, "expected KhxKw, e.g. 16x24"),
      z.boolean(),
    ]).optional().describe(
      `keep only the low-frequency latent block: fraction in (0,1], KhxKw, or true (= ${DEFAULT_LOSSY_FRACTION}); default lossless`,
    ),
    scale: z.number().positive().default(1).describe(
      "latent scaling factor s (VAE scaling_factor)",
    ),
    ref_size: z.number().min(0).default(DEFAULT_SPECTRUM.refSize)
      .describe("size reference N_ref of the prior's size scaling κ = √(HW)/N_ref (0: none)"),
    write_model: z.string().min(1).optional()
      .describe("also write the emitted model folder to this new directory"),
  }),
  async create(o, ctx) {
    const shape = ctx.imageShape;
    if (shape.length !== 4 || shape[0] !== 1 || shape[1] !== 3) {
      throw new InputError(`prior "builtin": images must be [1,3,H,W] RGB (got [${shape}])`);
    }
    const model = builtinExactModel(o, shape);
    const files = buildExactModelFiles(model);
    if (o.write_model) await writeExactModelFolder(o.write_model, files);
    return await DiffusersPrior.load(memoryFiles("builtin", files), {
      device: ctx.device,
      imageShape: shape,
      pool: ctx.sessions,
    });
  },
});
