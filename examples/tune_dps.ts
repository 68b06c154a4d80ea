/**
 * Developer script: how the `builtin` presets of LDPS and PSLD were chosen, and the cost/quality
 * curve of the README. For each operator, step count and (ρ, γ, ω), runs the solver on Kodak centre
 * crops with the built-in prior (σ_y = 0.01, seed 0) and prints the mean PSNR, the mean measurement
 * consistency ‖A x̂ − y‖/(√m σ_y), the mean time per run, and the expected PSNR of an exact posterior
 * sample (`exactPosteriorMoments`, `expectedSampleError`) as the reference.
 *
 *   deno run --allow-read --allow-ffi --allow-env --allow-sys examples/tune_dps.ts \
 *     --solver ldps --operators blur:sigma=3,boundary=symmetric\;sr:factor=4 \
 *     --steps 50,100,250,1000 --rho 2,3,5,8 [--gamma 0.1] [--omega 1] [--images 1-12] [--size 64]
 *
 * Lists are comma-separated; operators are separated by ";". Needs the Kodak test images in
 * ../shared/data/kodak (the product itself does not).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { builtinRegistry } from "../mod.ts";
import { validateOptions } from "../core/registry.ts";
import { readImage } from "../core/io/image.ts";
import { centreCrop } from "../cli/compare/config.ts";
import { psnr } from "../core/metrics.ts";
import { runSolver, simulate } from "../cli/run_problem.ts";
import {
  exactPosteriorMoments,
  expectedSampleError,
  modelMoments,
  promptTheta,
} from "../plugins/builtin-gaussian/mod.ts";
import { builtinExactModel } from "../plugins/builtin-gaussian/plugin.ts";

/** "1-12" or "1,5,9" → [1, …]. */
function idList(s: string): number[] {
  const m = /^(\d+)-(\d+)$/.exec(s);
  if (m) return Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, i) => Number(m[1]) + i);
  return s.split(",").map(Number);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      solver: { type: "string", default: "ldps" },
      operators: { type: "string", default: "blur:sigma=3,boundary=symmetric;sr:factor=4" },
      steps: { type: "string", default: "100" },
      rho: { type: "string", default: "5" },
      gamma: { type: "string", default: "0.1" },
      omega: { type: "string", default: "1" },
      images: { type: "string", default: "1-12" },
      size: { type: "string", default: "64" },
      sigma: { type: "string", default: "0.01" },
    },
  });
  const S = Number(values.size), sigma = Number(values.sigma);
  const shape = [1, 3, S, S];
  const registry = builtinRegistry();
  const priorPlugin = registry.get("prior", "builtin");
  const prior = await priorPlugin.create(validateOptions(priorPlugin, {}), {
    device: "cpu",
    imageShape: shape,
  });
  const model = builtinExactModel(validateOptions(priorPlugin, {}), shape);
  const moments = modelMoments(model, promptTheta(model, ""));
  const solverPlugin = registry.get("solver", values.solver);
  const psld = values.solver === "psld";
  const grid: Record<string, number>[] = [];
  for (const steps of values.steps.split(",").map(Number)) {
    for (const rho of values.rho.split(",").map(Number)) {
      for (const gamma of psld ? values.gamma.split(",").map(Number) : [0]) {
        for (const omega of psld ? values.omega.split(",").map(Number) : [1]) {
          grid.push(psld ? { steps, rho, gamma, omega } : { steps, rho });
        }
      }
    }
  }
  const images = [];
  for (const k of idList(values.images)) {
    const id = String(k).padStart(2, "0");
    images.push(centreCrop(await readImage(`../shared/data/kodak/kodim${id}.png`), S, S, id));
  }
  console.log(`${values.solver} on ${images.length} Kodak ${S}² centre crops, σ_y = ${sigma}`);
  for (const opSpec of values.operators.split(";")) {
    const problems = [];
    const cache = {};
    let exact = 0;
    for (const x of images) {
      const { op, y } = await simulate(registry, opSpec, x, sigma, 0);
      const q = await exactPosteriorMoments(op, y.data, sigma, model.layout, moments, { cache });
      exact += expectedSampleError(q.mean, q.variance, model.layout, x.data).psnr / images.length;
      problems.push({ x, op, y });
    }
    console.log(`\n${opSpec}: expected PSNR of an exact posterior sample ${exact.toFixed(2)} dB`);
    console.log("options | mean PSNR (dB) | vs exact sample | consistency | ms/run");
    for (const options of grid) {
      const solver = await solverPlugin.create(validateOptions(solverPlugin, options), {});
      let p = 0, cons = 0, ms = 0;
      for (const { x, op, y } of problems) {
        const problem = {
          y,
          operator: op,
          noise: { kind: "gaussian" as const, sigma },
          imageShape: shape,
        };
        const run = await runSolver(solver, problem, prior, { seed: 0, device: "cpu" });
        p += psnr(run.result.x, x) / problems.length;
        const ax = await op.forward(run.result.x);
        let r = 0;
        for (let i = 0; i < ax.data.length; i++) r += (ax.data[i] - y.data[i]) ** 2;
        cons += Math.sqrt(r / ax.data.length) / sigma / problems.length;
        ms += run.totalMs / problems.length;
      }
      const label = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(",");
      console.log(
        `${label} | ${p.toFixed(2)} | ${(p - exact) >= 0 ? "+" : ""}${(p - exact).toFixed(2)} | ${
          cons.toFixed(2)
        } | ${ms.toFixed(0)}`,
      );
    }
  }
}
