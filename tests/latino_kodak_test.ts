/**
 * LATINO with default options on the built-in model restores kodim01–12 (Gaussian blur σ = 3,
 * σ_y = 0.01) better than the initialisation Aᵀy, in PSNR.
 */
import { solveContext } from "../core/context.ts";
import assert from "node:assert/strict";
import { builtinRegistry } from "../mod.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { readImage } from "../core/io/image.ts";
import { psnr } from "../core/metrics.ts";
import { latinoOptions, runLatino } from "../solvers/latino.ts";

Deno.test("latino (default options) beats Aᵀy on kodim01–12, Gaussian blur σ=3, σ_y=0.01", async () => {
  const registry = builtinRegistry();
  const rows: string[] = [];
  let gainSum = 0;
  for (let k = 1; k <= 12; k++) {
    const id = String(k).padStart(2, "0");
    const x = await readImage(`../shared/data/kodak/kodim${id}.png`);
    const op = await createOperator(registry, "blur:kernel=gaussian,sigma=3", x.shape, 0);
    const y = await measure(op, x, 0.01, streams(0).get("measurement-noise"));
    const aty = await op.adjoint!(y);
    const plugin = registry.get("prior", "builtin");
    const prior = await plugin.create(validateOptions(plugin, {}), {
      device: "cpu",
      imageShape: x.shape,
    });
    const it = runLatino(
      latinoOptions.parse({}),
      { y, operator: op, noise: { kind: "gaussian", sigma: 0.01 }, imageShape: x.shape },
      prior,
      solveContext({ imageShape: x.shape }, prior, {
        rng: streams(0).get("solver"),
        device: "cpu",
      }),
    );
    let r = await it.next();
    while (!r.done) r = await it.next();
    const pl = psnr(r.value.x, x), pa = psnr(aty, x);
    rows.push(`kodim${id}: Aᵀy ${pa.toFixed(2)} dB, LATINO ${pl.toFixed(2)} dB`);
    gainSum += pl - pa;
    assert.ok(pl > pa, `kodim${id}: LATINO ${pl.toFixed(2)} dB ≤ Aᵀy ${pa.toFixed(2)} dB`);
  }
  rows.push(`mean gain ${(gainSum / 12).toFixed(2)} dB`);
  console.log(rows.join("\n"));
});
