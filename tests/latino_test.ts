/**
 * LATINO against the exact answers of the built-in model (exact-model.md §6): with a DCT-diagonal
 * operator (half-sample symmetric Gaussian blur), constant δ and clipping off, LATINO is an affine
 * Gaussian recursion whose output law is known exactly.
 */
import { solveContext } from "../core/context.ts";
import assert from "node:assert/strict";
import { blurPlugin } from "../operators/blur.ts";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  createExactModel,
  decode64,
  diagonalProblem,
  encode64,
  latinoMoments,
  modelMoments,
  promptTheta,
} from "../plugins/builtin-gaussian/mod.ts";
import { createOperator, PluginRegistry, validateOptions } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { streams, zeroNoiseStream } from "../core/rng.ts";
import { testScene } from "../core/scene.ts";
import type { ForwardOperator, Prior, SolveResult } from "../core/contracts.ts";
import {
  type LatinoOptions,
  latinoOptions,
  latinoPlugin,
  latinoTimesteps,
} from "../solvers/latino.ts";
import type { RandomStream } from "../core/rng.ts";

const SHAPE = [1, 3, 16, 24];
const SIGMA = 0.01;

async function setup() {
  const registry = new PluginRegistry().register(blurPlugin);
  const op = await createOperator(registry, "blur:sigma=1.5,boundary=symmetric", SHAPE, 0);
  const x = testScene(SHAPE[2], SHAPE[3]);
  const y = await measure(op, x, SIGMA, streams(0).get("measurement-noise"));
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, {}), {
    device: "cpu",
    imageShape: SHAPE,
  });
  return { op, x, y, prior };
}

async function runToEnd(
  options: Partial<LatinoOptions>,
  op: ForwardOperator,
  y: { data: Float32Array; shape: number[] },
  prior: Prior,
  rng: RandomStream,
): Promise<SolveResult> {
  const o = latinoOptions.parse(options);
  const solver = await latinoPlugin.create(o, {});
  const it = solver.run(
    { y, operator: op, noise: { kind: "gaussian", sigma: SIGMA }, imageShape: SHAPE },
    prior,
    solveContext({ imageShape: SHAPE }, prior, { rng, device: "cpu" }),
  );
  while (true) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

function exactLaw(op: ForwardOperator, y: { data: Float32Array }, delta: number) {
  const model = createExactModel({ imageShape: SHAPE });
  const moments = modelMoments(model, promptTheta(model, ""));
  const h = (op as ForwardOperator & { dctDiagonal: Float64Array }).dctDiagonal;
  assert.ok(h, "symmetric blur exposes its DCT diagonal");
  const problem = diagonalProblem(y.data, h, SIGMA, model.layout);
  return { law: latinoMoments(problem, moments, { delta }), model };
}

Deno.test("latino: timesteps are 999, 874, …, 124 for 8 steps and 999, 749, 499, 249 for 4", () => {
  assert.deepEqual(latinoTimesteps(8), [999, 874, 749, 624, 499, 374, 249, 124]);
  assert.deepEqual(latinoTimesteps(4), [999, 749, 499, 249]);
});

Deno.test("latino: with zero solver noise the output equals the exactly propagated mean", async () => {
  const { op, y, prior } = await setup();
  for (const delta of [0.05, 0.3, 1]) {
    const res = await runToEnd({ delta, clip: false }, op, y, prior, zeroNoiseStream());
    const { law, model } = exactLaw(op, y, delta);
    // Exact output mean in image space: x̂ = (D(m) + 1)/2.
    const xm = decode64(law.mean, model.layout);
    let num = 0, den = 0, maxAbsLatent = 0;
    const zOut = encode64(Array.from(res.x.data, (v) => 2 * v - 1), model.layout);
    for (let i = 0; i < xm.length; i++) {
      const e = (xm[i] + 1) / 2;
      num += (res.x.data[i] - e) ** 2;
      den += e * e;
      maxAbsLatent = Math.max(maxAbsLatent, Math.abs(zOut[i] - law.mean[i]));
    }
    const rel = Math.sqrt(num / den);
    assert.ok(rel < 1e-4, `δ=${delta}: relative error ${rel.toExponential(2)} vs the exact mean`);
    assert.ok(maxAbsLatent < 5e-6 * 4, `δ=${delta}: max latent error ${maxAbsLatent}`);
    // The run really depends on δ (guards against a test that cannot fail).
    assert.equal(res.info.deltaRule, `constant ${delta}`);
  }
  // NFE: 8 consistency calls, 9 encodes and 9 decodes.
  const calls = prior.stats().calls;
  const total = Object.values(calls).reduce((a, b) => a + b, 0);
  assert.ok(total > 0);
});

Deno.test("latino: empirical variance over seeds matches the propagated variance (χ² bounds)", async () => {
  const { op, y, prior } = await setup();
  const delta = 0.3;
  const { law, model } = exactLaw(op, y, delta);
  const N = 48;
  const n = law.mean.length;
  const sum = new Float64Array(n), sumSq = new Float64Array(n);
  const samples: Float64Array[] = [];
  for (let s = 0; s < N; s++) {
    const res = await runToEnd(
      { delta, clip: false },
      op,
      y,
      prior,
      streams(1000 + s).get("solver"),
    );
    const z = encode64(Array.from(res.x.data, (v) => 2 * v - 1), model.layout);
    samples.push(z);
    for (let i = 0; i < n; i++) {
      sum[i] += z[i];
      sumSq[i] += z[i] * z[i];
    }
  }
  // Pooled ratio of the unbiased sample variance to the propagated variance.
  let pooled = 0, meanZ2 = 0;
  for (let i = 0; i < n; i++) {
    const m = sum[i] / N;
    const s2 = (sumSq[i] - N * m * m) / (N - 1);
    pooled += s2 / law.variance[i];
    meanZ2 += ((m - law.mean[i]) ** 2) / (law.variance[i] / N);
  }
  pooled /= n;
  meanZ2 /= n;
  const band = 5 * Math.sqrt(2 / (N - 1)) / Math.sqrt(n);
  assert.ok(Math.abs(pooled - 1) < band, `pooled s²/v = ${pooled} (band ±${band})`);
  // The sample means are N(m, v/N): their mean squared z-score is ≈ 1.
  assert.ok(Math.abs(meanZ2 - 1) < 5 * Math.sqrt(2 / n), `mean z² = ${meanZ2}`);
});

Deno.test("latino: stops between steps when its AbortSignal fires", async () => {
  const { op, y, prior } = await setup();
  const solver = await latinoPlugin.create(latinoOptions.parse({ delta: 0.3 }), {});
  const controller = new AbortController();
  const it = solver.run(
    { y, operator: op, noise: { kind: "gaussian", sigma: SIGMA }, imageShape: SHAPE },
    prior,
    solveContext({ imageShape: SHAPE }, prior, {
      rng: streams(0).get("solver"),
      signal: controller.signal,
      device: "cpu",
    }),
  );
  const first = await it.next();
  assert.equal(first.done, false);
  controller.abort();
  await assert.rejects(() => it.next(), (e: unknown) => (e as Error).name === "AbortError");
});

Deno.test("latino: same seed ⇒ bit-identical output; another seed differs", async () => {
  const { op, y, prior } = await setup();
  const a = await runToEnd({}, op, y, prior, streams(7).get("solver"));
  const b = await runToEnd({}, op, y, prior, streams(7).get("solver"));
  const c = await runToEnd({}, op, y, prior, streams(8).get("solver"));
  assert.deepEqual(a.x.data, b.x.data);
  assert.notDeepEqual(a.x.data, c.x.data);
});

Deno.test("latino: runs with every built-in operator, JPEG included (iterative prox)", async () => {
  const { builtinRegistry } = await import("../mod.ts");
  const registry = builtinRegistry();
  const shape = [1, 3, 32, 32];
  const x = testScene(32, 32);
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, {}), {
    device: "cpu",
    imageShape: shape,
  });
  for (
    const spec of [
      "blur:kernel=motion,size=9",
      "sr:factor=2,boundary=reflect",
      "inpaint:mask=box",
      "jpeg:quality=10",
    ]
  ) {
    const op = await createOperator(registry, spec, shape, 0);
    const y = await measure(op, x, SIGMA, streams(0).get("measurement-noise"));
    const o = latinoOptions.parse({ prox_max_iter: 10 });
    const solver = await latinoPlugin.create(o, {});
    const it = solver.run(
      { y, operator: op, noise: { kind: "gaussian", sigma: SIGMA }, imageShape: shape },
      prior,
      solveContext({ imageShape: shape }, prior, { rng: streams(0).get("solver"), device: "cpu" }),
    );
    let steps = 0;
    let r = await it.next();
    while (!r.done) {
      steps++;
      r = await it.next();
    }
    assert.equal(steps, 8, spec);
    assert.ok(r.value.x.data.every((v) => Number.isFinite(v) && v >= 0 && v <= 1), spec);
    assert.equal(
      r.value.info.deltaRule,
      `builtin/${spec.split(":")[0] === "blur" ? "motion" : spec.split(":")[0]}`,
    );
  }
});

Deno.test("latino: a residual δ rule gives the same run through proxL2Adaptive as through forward + proxL2", async () => {
  const shape = [1, 3, 32, 64]; // circular blur on the PFFFT path
  const registry = new PluginRegistry().register(blurPlugin);
  const op = await createOperator(registry, "blur:sigma=1.5", shape, 0);
  assert.ok(op.proxL2Adaptive, "circular blur shares its transforms");
  const y = await measure(op, testScene(32, 64), SIGMA, streams(0).get("measurement-noise"));
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, {}), {
    device: "cpu",
    imageShape: shape,
  });
  const { proxL2Adaptive: _, ...plain } = op;
  const run = async (operator: ForwardOperator) => {
    const o = latinoOptions.parse({ preset: "sd15-lcm/gaussian", steps: 4 });
    const it = (await latinoPlugin.create(o, {})).run(
      { y, operator, noise: { kind: "gaussian", sigma: SIGMA }, imageShape: shape },
      prior,
      solveContext({ imageShape: shape }, prior, { rng: streams(3).get("solver"), device: "cpu" }),
    );
    const residuals: number[] = [];
    while (true) {
      const r = await it.next();
      if (r.done) return { x: r.value.x, deltas: r.value.info.deltas, residuals };
      residuals.push(r.value.residual!);
    }
  };
  const a = await run(op), b = await run(plain as ForwardOperator);
  assert.equal((a.deltas as number[]).length, 4);
  assert.deepEqual(a.deltas, b.deltas, "the same δ (df from the same A x and noise)");
  assert.deepEqual(a.x.data, b.x.data);
  assert.deepEqual(a.residuals, b.residuals);
  assert.ok(a.residuals.every((r) => r > 0 && Number.isFinite(r)));
});
