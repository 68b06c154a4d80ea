/**
 * Developer script: how the `builtin/*` δ presets of LATINO were chosen. For an operator spec and a
 * list of constant δ, runs LATINO on Kodak images (full size, σ_y = 0.01, seed 0) with a prior (a
 * spec as in solve; default the built-in model) and prints PSNR next to the operator's
 * pseudo-inverse.
 *
 *   deno run --allow-read --allow-ffi --allow-env --allow-sys examples/tune_latino_delta.ts \
 *     --operator blur:sigma=3 --deltas 0.1,0.3,1 --images 01,02,05 [--prior builtin:ref_size=16]
 *
 * Needs the Kodak test images in ../shared/data/kodak (the product itself does not).
 *
 * @module
 */
import { solveContext } from "../core/context.ts";
import { parseArgs } from "node:util";
import { builtinRegistry } from "../mod.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { parseSpec } from "../core/spec.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { readImage } from "../core/io/image.ts";
import { psnr } from "../core/metrics.ts";
import { latinoOptions, runLatino } from "../solvers/latino.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      operator: { type: "string", default: "blur:sigma=3" },
      deltas: { type: "string", default: "0.1,0.3,1" },
      images: { type: "string", default: "01,02,05" },
      prior: { type: "string", default: "builtin" },
      sigma: { type: "string", default: "0.01" },
    },
  });
  const registry = builtinRegistry();
  const sigma = Number(values.sigma);
  for (const id of values.images.split(",")) {
    const x = await readImage(`../shared/data/kodak/kodim${id}.png`);
    const op = await createOperator(registry, values.operator, x.shape, 0);
    const y = await measure(op, x, sigma, streams(0).get("measurement-noise"));
    const init = op.pseudoInverse ? await op.pseudoInverse(y) : await op.adjoint!(y);
    const priorSpec = parseSpec(values.prior, "--prior");
    const plugin = registry.get("prior", priorSpec.name);
    const prior = await plugin.create(validateOptions(plugin, priorSpec.options), {
      device: "cpu",
      imageShape: x.shape,
    });
    const row = [`kodim${id}`, `pseudo-inverse ${psnr(init, x).toFixed(2)}`];
    for (const delta of values.deltas.split(",").map(Number)) {
      const it = runLatino(
        latinoOptions.parse({ delta }),
        { y, operator: op, noise: { kind: "gaussian", sigma }, imageShape: x.shape },
        prior,
        solveContext({ imageShape: x.shape }, prior, {
          rng: streams(0).get("solver"),
          device: "cpu",
        }),
      );
      let r = await it.next();
      while (!r.done) r = await it.next();
      row.push(`δ=${delta}: ${psnr(r.value.x, x).toFixed(2)}`);
    }
    console.log(row.join("  "));
  }
}
