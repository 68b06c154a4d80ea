/**
 * Quality of LDPS and PSLD on the built-in model without an unreachable bar: on kodim01–12 64×64
 * centre crops, for Gaussian blur (σ = 3, half-sample symmetric) and bicubic SR ×4 (σ_y = 0.01), the
 * mean PSNR of each solver (its built-in preset, 100 steps) is at least the expected PSNR of an
 * exact posterior sample minus 1 dB. The expected error is E‖x_s − x‖² = ‖μ − x‖² + tr Σ:
 * - blur is diagonal in the model's latent basis: μ and diag Σ in closed form;
 * - SR: μ by `posteriorMeanCG`, diag Σ (independent of y) by `posteriorVarianceWoodbury`, itself
 *   checked against `posteriorVarianceCG` on a few coordinates.
 * About 15 s on one free core (the 48 runs of 100 steps take ~5 s; the SR variances ~3 s).
 */
import assert from "node:assert/strict";
import { builtinRegistry } from "../mod.ts";
import type { Prior } from "../core/contracts.ts";
import { validateOptions } from "../core/registry.ts";
import { readImage } from "../core/io/image.ts";
import { centreCrop } from "../cli/compare/config.ts";
import { psnr } from "../core/metrics.ts";
import { runSolver, simulate } from "../cli/run_problem.ts";
import {
  exactPosteriorMoments,
  expectedSampleError,
  linearOperator64,
  modelMoments,
  posteriorVarianceCG,
  promptTheta,
} from "../plugins/builtin-gaussian/mod.ts";
import { builtinExactModel } from "../plugins/builtin-gaussian/plugin.ts";
import { ldpsPlugin, psldPlugin } from "../solvers/ldps.ts";

const S = 64, SIGMA = 0.01, STEPS = 100;
const OPS = ["blur:sigma=3,boundary=symmetric", "sr:factor=4"];

Deno.test(`ldps/psld on kodim01–12 (${S}² crops, ${STEPS} steps): mean PSNR ≥ exact posterior sample − 1 dB`, async () => {
  const registry = builtinRegistry();
  const plugin = registry.get("prior", "builtin");
  const shape = [1, 3, S, S];
  const prior: Prior = await plugin.create(validateOptions(plugin, {}), {
    device: "cpu",
    imageShape: shape,
  });
  const model = builtinExactModel(validateOptions(plugin, {}), shape);
  const moments = modelMoments(model, promptTheta(model, ""));
  const solvers = await Promise.all(
    [ldpsPlugin, psldPlugin].map((p) => p.create(validateOptions(p, { steps: STEPS }), {})),
  );
  const clean = [];
  for (let k = 1; k <= 12; k++) {
    const id = String(k).padStart(2, "0");
    clean.push(
      centreCrop(await readImage(`../shared/data/kodak/kodim${id}.png`), S, S, `kodim${id}`),
    );
  }
  const lines: string[] = [];
  for (const opSpec of OPS) {
    const cache: { variance?: Float64Array } = {};
    let checked = false;
    const sums = { exact: 0, ldps: 0, psld: 0 };
    for (const x of clean) {
      const { op, y } = await simulate(registry, opSpec, x, SIGMA, 0);
      const { mean, variance } = await exactPosteriorMoments(
        op,
        y.data,
        SIGMA,
        model.layout,
        moments,
        {
          cache,
        },
      );
      if (!checked && !(op as { dctDiagonal?: unknown }).dctDiagonal) {
        // the Woodbury variances against one CG solve per coordinate, on a few coordinates
        const p = {
          y: Float64Array.from(y.data),
          op: linearOperator64(op),
          sigmaY: SIGMA,
          layout: model.layout,
        };
        const idx = [0, 1000, 7000];
        const cg = await posteriorVarianceCG(p, moments, idx, { tol: 1e-12 });
        idx.forEach((i, j) => {
          const e = Math.abs(cg[j] - variance[i]) / variance[i];
          assert.ok(e < 1e-6, `Woodbury vs CG variance at ${i}: ${e}`);
        });
        checked = true;
      }
      sums.exact += expectedSampleError(mean, variance, model.layout, x.data).psnr;
      for (const [j, solver] of solvers.entries()) {
        const run = await runSolver(
          solver,
          { y, operator: op, noise: { kind: "gaussian", sigma: SIGMA }, imageShape: shape },
          prior,
          { seed: 0, device: "cpu" },
        );
        sums[j === 0 ? "ldps" : "psld"] += psnr(run.result.x, x);
      }
    }
    const m = { exact: sums.exact / 12, ldps: sums.ldps / 12, psld: sums.psld / 12 };
    lines.push(
      `${opSpec}: exact-sample ${m.exact.toFixed(2)} dB, LDPS ${m.ldps.toFixed(2)} dB, PSLD ${
        m.psld.toFixed(2)
      } dB`,
    );
    assert.ok(
      m.ldps >= m.exact - 1,
      `${opSpec}: LDPS ${m.ldps.toFixed(2)} < ${m.exact.toFixed(2)} − 1 dB`,
    );
    assert.ok(
      m.psld >= m.exact - 1,
      `${opSpec}: PSLD ${m.psld.toFixed(2)} < ${m.exact.toFixed(2)} − 1 dB`,
    );
  }
  console.log(lines.join("\n"));
});
