/**
 * `deno task degrade`: simulate a measurement y = A(x) + σ_y n from an image.
 *
 * The operator is built from its spec for the image's shape with the run seed (its own stream
 * `operator/NAME`), the noise n comes from the seed's `measurement-noise` stream, so the same
 * (input, spec, σ, seed) always gives the same y, and `solve` can rebuild the same operator.
 *
 * Outputs: `.npy` keeps y exactly (float32); `.png` clamps to [0,1] and quantises (8-bit, or 16-bit
 * with `--bit-depth 16`); `.jpg`/`.jpeg` is allowed for the `jpeg` operator only and then holds the
 * real JPEG file of x (whose decode is A(x)), so σ_y must be 0 there.
 *
 * Only the `--out` path (and a temporary file beside it) is written; it may not be an input.
 *
 * Permissions: the `degrade` task grants `--allow-write` without a path list because `--out` may
 * be anywhere; the code writes nothing but `--out` and its temporary sibling (see core/io/atomic.ts).
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { extname } from "node:path";
import { createOperator } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { STREAMS, streams } from "../core/rng.ts";
import { InputError } from "../core/errors.ts";
import { testScene } from "../core/scene.ts";
import { assertNotInput, writeFileAtomic } from "../core/io/atomic.ts";
import type { Tensor } from "../core/tensor.ts";
import { encodeJpeg } from "../operators/jpeg.ts";
import {
  DEFAULT_NOISE,
  describePlugins,
  main,
  parseCli,
  parseNumber,
  parseSize,
  readInput,
  registryFromFlags,
  writeOutput,
} from "./common.ts";

const USAGE = `Usage: deno task degrade --operator SPEC --out y.png|y.npy|y.jpg [options]

Simulate a measurement y = A(x) + σ_y·n (n ~ N(0, I) from the seed's "measurement-noise" stream).

Options:
  --operator SPEC     operator spec, e.g. blur:sigma=3, sr:factor=4, inpaint, jpeg:quality=10
  --input PATH        image (PNG/JPEG/WebP/TIFF) or .npy on [0,1]; default: the procedural test scene
  --size HxW          size of the test scene when --input is not given (default 256x256)
  --noise SIGMA       σ_y on the [0,1] scale (default ${DEFAULT_NOISE}, as in solve; .jpg needs 0)
  --seed N            run seed (default 0)
  --out PATH          .npy (exact), .png (clamped, quantised), .jpg (jpeg operator only: real JPEG)
  --bit-depth 8|16    PNG bit depth (default 8)
  --plugin PATH       load operator plugins from a module (repeatable)
  --allow-remote-plugins  allow --plugin URLs
  --debug             print stack traces of unexpected errors
`;

const OPTIONS = {
  operator: { type: "string" },
  input: { type: "string" },
  size: { type: "string" },
  noise: { type: "string" },
  seed: { type: "string" },
  out: { type: "string" },
  "bit-depth": { type: "string" },
} as const;

/** Encode x as the real JPEG file the `jpeg` operator models (same quality and subsampling). */
async function jpegBytes(
  x: Tensor,
  options: Readonly<Record<string, unknown>>,
): Promise<Uint8Array> {
  const quality = options.quality, subsampling = options.subsampling ?? 420;
  if (typeof quality !== "number") throw new Error("jpeg operator options lack a numeric quality");
  if (subsampling !== 420 && subsampling !== 444) {
    throw new Error(`jpeg operator has subsampling ${subsampling}, expected 420 or 444`);
  }
  return await encodeJpeg(x, quality, subsampling);
}

/** Run `degrade` with command-line arguments. */
export async function degrade(args: string[]): Promise<number> {
  const { values } = parseCli(args, OPTIONS);
  if (values.help) {
    console.log(USAGE + "\n" + describePlugins(await registryFromFlags(values), ["operator"]));
    return 0;
  }
  if (!values.operator) {
    throw new InputError("--operator is required (e.g. --operator blur:sigma=3)");
  }
  if (!values.out) throw new InputError("--out is required (a .png, .npy or .jpg path)");
  const out = values.out;
  const ext = extname(out).toLowerCase();
  const isJpeg = ext === ".jpg" || ext === ".jpeg";
  if (!isJpeg && ext !== ".png" && ext !== ".npy") {
    throw new InputError(`--out ${out}: unsupported extension "${ext}" (use .png, .npy or .jpg)`);
  }
  const sigma = parseNumber(values.noise, "--noise", { fallback: DEFAULT_NOISE, min: 0 });
  const seed = parseNumber(values.seed, "--seed", { fallback: 0, min: 0, integer: true });
  const bitDepth = parseNumber(values["bit-depth"], "--bit-depth", { fallback: 8, integer: true });
  if (bitDepth !== 8 && bitDepth !== 16) throw new InputError("--bit-depth must be 8 or 16");
  if (values.input !== undefined && values.size !== undefined) {
    throw new InputError("--size applies to the test scene only; it cannot be used with --input");
  }
  const inputs = [...(values.input ? [values.input] : []), ...(values.plugin ?? [])];
  assertNotInput(out, inputs);

  const registry = await registryFromFlags(values);
  const x = values.input !== undefined
    ? await readInput(values.input)
    : testScene(...parseSize(values.size ?? "256x256"));
  const op = await createOperator(registry, values.operator, x.shape, seed);

  if (isJpeg) {
    if (op.name !== "jpeg") {
      throw new InputError(
        `--out ${out}: a JPEG file is written only for the jpeg operator (got "${op.name}"); ` +
          `use .png or .npy`,
      );
    }
    if (sigma !== 0) {
      throw new InputError(
        `--out ${out}: a JPEG file holds JPEG(x) exactly and cannot carry noise; ` +
          `add --noise 0 (the default is ${DEFAULT_NOISE}) or write a .npy`,
      );
    }
    await writeFileAtomic(out, await jpegBytes(x, op.options));
  } else {
    const y = await measure(op, x, sigma, streams(seed).get(STREAMS.measurementNoise));
    await writeOutput(out, y, inputs, { bitDepth: bitDepth as 8 | 16 });
  }
  console.log(JSON.stringify({
    operator: values.operator,
    input: values.input ?? `test-scene:${x.shape[2]}x${x.shape[3]}`,
    inputShape: x.shape,
    outputShape: op.outputShape,
    noise: sigma,
    seed,
    out,
  }));
  return 0;
}

if (import.meta.main) await main(degrade);
