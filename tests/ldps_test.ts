/**
 * LDPS and PSLD on the built-in model (small images, few steps): measurement consistency with a
 * linear operator; PSLD with γ = 0, ω = 1 and the official quirks off is bit-identical to LDPS;
 * determinism under the seed (η > 0 and the noise on the prediction draw from named streams);
 * cancellation between steps; step events (loss, ‖∇‖, NFE and VJP counts); an operator without an
 * ONNX export (the TypeScript fallback) gives the exported path's answer; LDPS runs with JPEG
 * through its VJP while PSLD refuses it up front with one line; run.json through `solve`.
 */
import assert from "node:assert/strict";
import { builtinRegistry } from "../mod.ts";
import type { ForwardOperator, Prior, SolveResult, StepEvent } from "../core/contracts.ts";
import { unmetRequirements } from "../core/contracts.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { solveContext } from "../core/context.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { readImage } from "../core/io/image.ts";
import { centreCrop } from "../cli/compare/config.ts";
import { ldpsPlugin, psldPlugin } from "../solvers/ldps.ts";
import { task } from "./subprocess.ts";

const registry = builtinRegistry();

async function builtinPrior(size: number): Promise<Prior> {
  const p = registry.get("prior", "builtin");
  return await p.create(validateOptions(p, {}), { device: "cpu", imageShape: [1, 3, size, size] });
}

async function kodakProblem(id: string, size: number, op: string, sigma = 0.01) {
  const x = centreCrop(await readImage(`../shared/data/kodak/kodim${id}.png`), size, size, "x");
  const operator = await createOperator(registry, op, x.shape, 0);
  const y = await measure(operator, x, sigma, streams(0).get("measurement-noise"));
  return {
    x,
    problem: { y, operator, noise: { kind: "gaussian" as const, sigma }, imageShape: x.shape },
  };
}

async function solve(
  plugin: typeof ldpsPlugin | typeof psldPlugin,
  options: Record<string, unknown>,
  problem: Awaited<ReturnType<typeof kodakProblem>>["problem"],
  prior: Prior,
  seed = 0,
  signal?: AbortSignal,
): Promise<{ result: SolveResult; events: StepEvent[] }> {
  const solver = await plugin.create(validateOptions(plugin, options), {});
  const it = solver.run(
    problem,
    prior,
    solveContext(problem, prior, {
      rng: streams(seed).get("solver"),
      device: "cpu",
      signal,
    }),
  );
  const events: StepEvent[] = [];
  let r = await it.next();
  while (!r.done) {
    events.push(r.value);
    r = await it.next();
  }
  return { result: r.value, events };
}

Deno.test("ldps/psld: measurement consistency ‖A x̂ − y‖/√m within [0.5, 2]·σ_y (blur, 64²)", async () => {
  const prior = await builtinPrior(64);
  for (const id of ["03", "07"]) {
    const { problem } = await kodakProblem(id, 64, "blur:sigma=3,boundary=symmetric");
    for (const plugin of [ldpsPlugin, psldPlugin]) {
      const { result } = await solve(plugin, { steps: 100 }, problem, prior);
      const ax = await problem.operator.forward(result.x);
      const r = Math.sqrt(
        ax.data.reduce((s, v, i) => s + (v - problem.y.data[i]) ** 2, 0) / ax.data.length,
      );
      const ratio = r / problem.noise.sigma;
      console.log(`kodim${id} ${plugin.name}: ‖A x̂ − y‖/(√m σ_y) = ${ratio.toFixed(3)}`);
      assert.ok(ratio >= 0.5 && ratio <= 2, `kodim${id} ${plugin.name}: ${ratio}`);
    }
  }
});

Deno.test("psld with γ = 0, ω = 1 and the quirks off is bit-identical to ldps", async () => {
  const prior = await builtinPrior(32);
  const { problem } = await kodakProblem("05", 32, "sr:factor=4");
  const common = { steps: 12, rho: 2, eta: 0.5 };
  const a = await solve(ldpsPlugin, common, problem, prior, 3);
  const b = await solve(psldPlugin, { ...common, gamma: 0, omega: 1 }, problem, prior, 3);
  assert.deepEqual(b.result.x.data, a.result.x.data);
  assert.deepEqual(b.result.info.losses, a.result.info.losses);
  // and the gluing term does change the answer
  const c = await solve(psldPlugin, { ...common, gamma: 0.1, omega: 1 }, problem, prior, 3);
  assert.notDeepEqual(c.result.x.data, a.result.x.data);
});

Deno.test("ldps: deterministic under the seed (η > 0, noise on the prediction), seed-dependent", async () => {
  const prior = await builtinPrior(32);
  const { problem } = await kodakProblem("02", 32, "blur:sigma=2");
  const o = { steps: 10, eta: 1, noisy_prediction: true };
  const a = await solve(ldpsPlugin, o, problem, prior, 7);
  const b = await solve(ldpsPlugin, o, problem, prior, 7);
  const c = await solve(ldpsPlugin, o, problem, prior, 8);
  assert.deepEqual(a.result.x.data, b.result.x.data);
  assert.notDeepEqual(a.result.x.data, c.result.x.data);
});

Deno.test("ldps: cancellation between steps; step events carry loss, ‖∇‖, NFE and VJP counts", async () => {
  const prior = await builtinPrior(32);
  const { problem } = await kodakProblem("04", 32, "blur:sigma=2");
  const controller = new AbortController();
  const solver = await ldpsPlugin.create(validateOptions(ldpsPlugin, { steps: 20 }), {});
  const ctx = solveContext(problem, prior, {
    rng: streams(0).get("solver"),
    device: "cpu",
    signal: controller.signal,
  });
  const it = solver.run(problem, prior, ctx);
  const before = prior.stats().vjp.unet ?? 0;
  for (let k = 0; k < 3; k++) {
    const r = await it.next();
    assert.ok(!r.done);
    const ev = r.value;
    assert.equal(ev.step, k);
    assert.equal(ev.total, 20);
    // the first event says which preset "auto" picked
    if (k === 0) {
      assert.match(ev.note ?? "", /^ldps: preset builtin \(auto: prior family builtin \(/);
    } else assert.equal(ev.note, undefined);
    assert.ok(ev.loss! > 0 && ev.gradNorm! > 0);
    assert.ok(ev.residual! > 0);
    assert.equal(ev.vjp.unet - before, k + 1);
    assert.equal(ev.vjp.vae_decoder, k + 1 + (prior.stats().vjp.vae_decoder ?? 0));
  }
  controller.abort();
  await assert.rejects(() => it.next(), (e: Error) => e.name === "AbortError");
});

Deno.test("ldps/psld: an operator without an ONNX export (TypeScript fallback) gives the same answer", async () => {
  const prior = await builtinPrior(32);
  const { problem } = await kodakProblem("09", 32, "blur:sigma=2");
  const { exportOnnx: _drop, ...plain } = problem.operator;
  const noExport: ForwardOperator = plain;
  for (const plugin of [ldpsPlugin, psldPlugin]) {
    for (const fallback of ["two-phase", "recompute"]) {
      const o = { steps: 8, fallback };
      const a = await solve(plugin, o, problem, prior);
      const b = await solve(plugin, o, { ...problem, operator: noExport }, prior);
      assert.equal(a.result.info.operator_path, "ONNX export");
      assert.equal(b.result.info.operator_path, `TypeScript (${fallback})`);
      const d = Math.max(...a.result.x.data.map((v, i) => Math.abs(v - b.result.x.data[i])));
      assert.ok(d < 1e-4, `${plugin.name} ${fallback}: max |Δx| = ${d}`);
    }
  }
});

Deno.test("ldps runs with JPEG through its VJP; psld refuses a non-linear operator up front", async () => {
  const prior = await builtinPrior(32);
  const { problem } = await kodakProblem("01", 32, "jpeg:quality=10");
  const { result, events } = await solve(ldpsPlugin, { steps: 3 }, problem, prior);
  assert.equal(result.info.operator_path, "TypeScript (two-phase)");
  assert.ok(result.x.data.every(Number.isFinite));
  assert.equal(events.length, 3);
  const psld = await psldPlugin.create(validateOptions(psldPlugin, {}), {});
  assert.match(
    unmetRequirements(psld.requires, problem.operator, prior) ?? "",
    /"jpeg" is not linear/,
  );
});

Deno.test("solve --solver psld --operator jpeg exits 2 with one line; ldps run.json reports counts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = await task(
      "solve",
      "--solver",
      "psld",
      "--operator",
      "jpeg",
      "--size",
      "32x32",
      "--out",
      `${dir}/bad`,
      "--quiet",
    );
    assert.equal(bad.code, 2, bad.stderr);
    const lines = bad.stderr.trim().split("\n");
    assert.equal(lines.length, 1, bad.stderr);
    assert.match(lines[0], /psld.*jpeg.*not linear/);
    const ok = await task(
      "solve",
      "--solver",
      "ldps:steps=5",
      "--operator",
      "blur:sigma=1",
      "--size",
      "32x32",
      "--out",
      `${dir}/ok`,
      "--quiet",
    );
    assert.equal(ok.code, 0, ok.stderr);
    const run = JSON.parse(await Deno.readTextFile(`${dir}/ok/run.json`));
    assert.equal(run.vjp.unet, 5);
    assert.equal(run.vjp.vae_decoder, 5);
    assert.equal(run.nfe.vae_decoder, 1); // the final decode
    assert.equal(run.solver.info.preset, "builtin");
    assert.match(run.solver.info.preset_reason, /auto/);
    assert.equal(run.timings.steps.length, 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
