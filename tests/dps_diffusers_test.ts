/**
 * LDPS and PSLD on tiny diffusers-layout SD1.5 folders built here (ε- and v-prediction; a random-
 * weight conv UNet, VAE decoder and encoder, so every Jacobian depends on the point):
 * - both solvers run end to end through the solver API (step events with the loss, ‖∇‖ and the
 *   VJP counts; a finite image);
 * - one step's gradient of the whole-loss graph matches central differences (with a Richardson
 *   step) of the loss computed
 *   through the prior's forward methods (predict, decode, encode) and the TypeScript operator
 *   (float32, relative error < 2e-3), PSLD's gluing term included; ẑ0 and ε̂ equal `predict`'s;
 * - the official timestep off-by-one feeds the UNet t + 1 while the coefficients use ᾱ_t.
 */
import assert from "node:assert/strict";
import { memoryFiles } from "../core/pipeline/files.ts";
import { DiffusersPrior } from "../core/pipeline/prior.ts";
import type { Conditioning, ForwardOperator, Prior } from "../core/contracts.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { solveContext } from "../core/context.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import { builtinRegistry } from "../mod.ts";
import { DpsStepLoss } from "../solvers/dps_loss.ts";
import { ldpsPlugin, psldPlugin } from "../solvers/ldps.ts";
import { pipelineFiles, SD15_SCHEDULER } from "./diffusers_fixtures.ts";

const IMAGE = [1, 3, 16, 16];
const H = 1e-2;

function randn(n: number, name: string, scale = 1): Float32Array {
  const r = streams(3).get(name);
  return Float32Array.from({ length: n }, () => scale * r.normal());
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

const norm = (v: ArrayLike<number>) => Math.sqrt(dot(v, v));

async function tinyPrior(prediction: "epsilon" | "v_prediction"): Promise<Prior> {
  const files = pipelineFiles({
    random: 5,
    scheduler: { ...SD15_SCHEDULER, prediction_type: prediction },
  });
  return await DiffusersPrior.load(memoryFiles(`tiny-random-${prediction}`, files), {
    device: "cpu",
    imageShape: IMAGE,
  });
}

async function problem(op: string) {
  const operator = await createOperator(builtinRegistry(), op, IMAGE, 0);
  const x = { data: randn(3 * 16 * 16, "clean", 0.2).map((v) => 0.5 + v), shape: IMAGE };
  const y = await measure(operator, x, 0.01, streams(0).get("measurement-noise"));
  return { operator, y };
}

/** The loss through the prior's forward methods and the TypeScript operator (no graph). */
async function lossThroughPrior(
  prior: Prior,
  op: ForwardOperator,
  z: Tensor,
  t: number,
  c: Conditioning,
  y: Tensor,
  yMeas: Tensor,
  omega: number,
  gamma: number,
): Promise<number> {
  const { x0 } = await prior.predict!(z, t, c);
  const x = await prior.decode(x0);
  const ax = await op.forward({ data: x.data.map((v) => 0.5 * v + 0.5), shape: x.shape });
  const meas = norm(ax.data.map((v, i) => 2 * (v - yMeas.data[i])));
  if (gamma === 0) return omega * meas;
  const atr = await op.adjoint!({ data: ax.data.map((v, i) => v - y.data[i]), shape: ax.shape });
  const u = { data: x.data.map((v, i) => v - 2 * atr.data[i]), shape: x.shape };
  const eu = await prior.encode!(u);
  return omega * meas + gamma * norm(eu.data.map((v, i) => v - x0.data[i]));
}

for (const prediction of ["epsilon", "v_prediction"] as const) {
  Deno.test(`ldps/psld on a tiny random SD1.5 folder (${prediction}): end to end`, async () => {
    const prior = await tinyPrior(prediction);
    const { operator, y } = await problem("blur:sigma=1");
    for (const plugin of [ldpsPlugin, psldPlugin]) {
      const solver = await plugin.create(validateOptions(plugin, { steps: 4, eta: 0.5 }), {});
      const ctx = solveContext({ imageShape: IMAGE }, prior, {
        rng: streams(0).get("solver"),
        device: "cpu",
      });
      const it = solver.run(
        { y, operator, noise: { kind: "gaussian", sigma: 0.01 }, imageShape: IMAGE },
        prior,
        ctx,
      );
      let r = await it.next();
      let k = 0;
      while (!r.done) {
        const ev = r.value;
        assert.ok(Number.isFinite(ev.loss) && Number.isFinite(ev.gradNorm), `step ${k}: loss/‖∇‖`);
        assert.equal(ev.vjp.unet, k + 1 + (prior.stats().vjp.unet ?? 0));
        r = await it.next();
        k++;
      }
      assert.equal(k, 4);
      assert.ok(r.value.x.data.every(Number.isFinite));
      assert.equal(r.value.info.preset, "sd15");
      assert.equal(ctx.modelStats.vjp.unet, 4);
      assert.equal(ctx.modelStats.vjp.vae_encoder, plugin === psldPlugin ? 4 : undefined);
    }
  });

  for (const gamma of [0, 0.3]) {
    Deno.test(`${gamma ? "PSLD" : "LDPS"} step gradient = central differences (${prediction})`, async () => {
      const prior = await tinyPrior(prediction);
      const { operator, y } = await problem("blur:sigma=1");
      const c = await prior.condition("a photo");
      const pool = new SessionPool({ threads: 2 });
      const loss = await DpsStepLoss.build({ gluing: gamma > 0, squared: false }, {
        networks: prior.networks!(),
        operator,
        latentShape: prior.latentShape(IMAGE),
        pool,
        device: "cpu",
      });
      const zt = { data: randn(16, "zt"), shape: [1, 4, 2, 2] };
      const yMeas = { data: y.data.map((v, i) => v - 0.01 * Math.sin(i)), shape: y.shape };
      const t = 500, omega = 0.8;
      const r = await loss.evaluate({ zt, t, c, y, yMeas, omega, gamma });
      const p = await prior.predict!(zt, t, c);
      const rel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
        let e = 0, m = 0;
        for (let i = 0; i < a.length; i++) {
          e = Math.max(e, Math.abs(a[i] - b[i]));
          m = Math.max(m, Math.abs(b[i]));
        }
        return e / m;
      };
      const e0 = rel(r.x0, p.x0.data), ee = rel(r.eps, p.eps.data);
      assert.ok(e0 < 1e-5 && ee < 1e-5, `ẑ0 ${e0}, ε̂ ${ee} vs predict (max error / max value)`);
      const at = (z: Tensor) => lossThroughPrior(prior, operator, z, t, c, y, yMeas, omega, gamma);
      assert.ok(Math.abs(r.loss - (await at(zt))) / r.loss < 1e-5, "loss vs the prior's methods");
      const gn = Math.sqrt(dot(r.grad, r.grad));
      for (const dir of ["v1", "v2"]) {
        // random directions with a component along the gradient, so that the derivative is not
        // small against float32 rounding of the loss
        const v = randn(16, dir).map((a, i) => a + 0.5 * r.grad[i] / gn);
        const shift = (h: number) => ({
          data: zt.data.map((a, i) => a + h * v[i]),
          shape: zt.shape,
        });
        // central differences with one Richardson step (error O(h⁴)): the ε-prediction chain has
        // enough curvature for O(h²) at h = 1e-2 to reach ~3e-3
        const cd = async (h: number) => ((await at(shift(h))) - (await at(shift(-h)))) / (2 * h);
        const fd = (4 * (await cd(H / 2)) - (await cd(H))) / 3;
        const an = dot(r.grad, v);
        const e = Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an));
        console.log(
          `${prediction} γ=${gamma} ${dir}: FD ${fd.toFixed(6)}, VJP ${an.toFixed(6)}, rel ${
            e.toExponential(2)
          }`,
        );
        assert.ok(e < 2e-3, `${dir}: relative error ${e}`);
        assert.ok(Math.abs(an) > 1e-3, "degenerate direction");
      }
      await pool.release();
    });
  }
}

Deno.test("timestep_offset=1 feeds the UNet t + 1, coefficients at ᾱ_t (the official off-by-one)", async () => {
  const prior = await tinyPrior("epsilon");
  const { operator, y } = await problem("blur:sigma=1");
  const c = await prior.condition("");
  const pool = new SessionPool({ threads: 2 });
  const loss = await DpsStepLoss.build({ gluing: false, squared: false }, {
    networks: prior.networks!(),
    operator,
    latentShape: prior.latentShape(IMAGE),
    pool,
    device: "cpu",
  });
  const zt = { data: randn(16, "zt"), shape: [1, 4, 2, 2] };
  const t = 999;
  const r = await loss.evaluate({ zt, t, timestepOffset: 1, c, y, yMeas: y, omega: 1, gamma: 0 });
  // the UNet itself at t + 1 = 1000 (ε-prediction: ε̂ is its output)
  const unet = prior.networks!().unet!;
  const s = await pool.session("unet-direct", unet.source, { device: "cpu" });
  const direct = (await s.run({
    sample: zt,
    timestep: { data: [t + 1], shape: [] },
    encoder_hidden_states: c.tensors.encoder_hidden_states,
  })).out_sample;
  const ab = prior.schedule.alphasCumprod[t];
  for (let i = 0; i < 16; i++) {
    assert.ok(Math.abs(r.eps[i] - direct.data[i]) < 1e-5 * Math.max(1, Math.abs(direct.data[i])));
    const x0 = (zt.data[i] - Math.sqrt(1 - ab) * direct.data[i]) / Math.sqrt(ab); // ᾱ_t, not ᾱ_{t+1}
    assert.ok(Math.abs(x0 - r.x0[i]) < 1e-4 * Math.max(1, Math.abs(x0)));
  }
  const plain = await loss.evaluate({ zt, t, c, y, yMeas: y, omega: 1, gamma: 0 });
  assert.ok(
    r.eps.some((v, i) => Math.abs(v - plain.eps[i]) > 1e-4),
    "t + 1 changes the UNet output",
  );
  await pool.release();
});
