/**
 * `deno task metrics A B`: PSNR and SSIM between two images or `.npy` files of the same shape, as
 * JSON on stdout: `{"psnr": 31.2, "ssim": 0.91}`. Both on the [0,1] scale with data range 1, SSIM
 * with the Gaussian 11×11 window (σ = 1.5) averaged over channels (see core/metrics.ts). PSNR is
 * `null` when the two are identical (+∞ has no JSON form).
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { psnr, ssim } from "../core/metrics.ts";
import { InputError } from "../core/errors.ts";
import { sameShape } from "../core/tensor.ts";
import { main, parseCli, readInput } from "./common.ts";

const USAGE = `Usage: deno task metrics A B

Print {"psnr": dB, "ssim": value} for two images (PNG/JPEG/WebP/TIFF) or .npy files of the same
shape, values on [0,1] (data range 1). PSNR is null for identical inputs.
`;

/** Run `metrics` with command-line arguments. */
export async function metricsCli(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, {}, { min: 2, max: 2, names: "files (A B)" });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [pathA, pathB] = positionals;
  const [a, b] = await Promise.all([readInput(pathA), readInput(pathB)]);
  if (!sameShape(a.shape, b.shape)) {
    throw new InputError(
      `${pathA} has shape [${a.shape}] but ${pathB} has shape [${b.shape}]; they must match`,
    );
  }
  const p = psnr(a, b);
  console.log(JSON.stringify({ psnr: Number.isFinite(p) ? p : null, ssim: ssim(a, b) }));
  return 0;
}

if (import.meta.main) await main(metricsCli);
