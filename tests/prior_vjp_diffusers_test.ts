/**
 * Prior VJPs on tiny diffusers-layout folders built here (ε- and v-prediction, LCM with an int64
 * timestep and timestep_cond, SDXL with text_embeds, a v-prediction consistency_unet) against
 * central finite differences of the prior's own forward methods, in float32: relative error of
 * directional derivatives < 2e-3. The fixture UNets have a nonlinear term (tanh) coupling the
 * latent and the conditioning, so the Jacobians depend on the point.
 */
import assert from "node:assert/strict";
import { memoryFiles } from "../core/pipeline/files.ts";
import { DiffusersPrior } from "../core/pipeline/prior.ts";
import { type Conditioning, LATENT } from "../core/contracts.ts";
import { streams } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  LCM_SCHEDULER,
  pipelineFiles,
  type PipelineSpec,
  SD15_SCHEDULER,
} from "./diffusers_fixtures.ts";

const IMAGE = [1, 3, 16, 16];
const H = 1e-2;

function randn(n: number, name: string, scale = 1): Float32Array {
  const r = streams(1).get(name);
  return Float32Array.from({ length: n }, () => scale * r.normal());
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function shifted(t: Tensor, v: Float32Array, h: number): Tensor {
  return { data: Float32Array.from(t.data, (x, i) => x + h * v[i]), shape: [...t.shape] };
}

/**
 * A direction in a conditioning tensor. The networks read it through means over ~600 entries, so
 * a zero-mean random direction moves the output by ~1/√600 of a coherent one and its finite
 * difference drowns in float32 rounding: directions are 1 + ½·noise, on a random half of the
 * entries for the second one (so that the per-entry weights are checked, not only their sum).
 */
function condDirection(n: number, name: string, half: boolean): Float32Array {
  const r = streams(2).get(name);
  return Float32Array.from({ length: n }, () => {
    const keep = !half || r.uniform() < 0.5;
    return keep ? 1 + 0.5 * r.normal() : 0;
  });
}

function close(fd: number, an: number, what: string): number {
  const e = Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-6);
  assert.ok(e < 2e-3, `${what}: finite difference ${fd}, VJP ${an} (relative error ${e})`);
  assert.ok(Math.abs(an) > 1e-4, `${what}: degenerate direction (${an})`);
  return e;
}

type Output = "x0" | "eps" | "consistency";

async function forward(
  prior: DiffusersPrior,
  out: Output,
  z: Tensor,
  t: number,
  c: Conditioning,
): Promise<Tensor> {
  if (out === "x0") return await prior.denoise!(z, t, c);
  if (out === "eps") return (await prior.predict!(z, t, c)).eps;
  return await prior.consistency!(z, t, c);
}

interface Case {
  name: string;
  spec: PipelineSpec;
  outputs: Output[];
  batch?: number;
  /** Timesteps (default 500). */
  ts?: number[];
}

const CASES: Case[] = [
  {
    name: "SD1.5 ε-prediction (batch 2, conditioning at batch 1)",
    spec: { unet: { timestep: "f32-scalar", ehsDim: 8, nonlinear: true } },
    outputs: ["x0", "eps"],
    batch: 2,
  },
  {
    name: "v-prediction",
    spec: {
      scheduler: { ...SD15_SCHEDULER, prediction_type: "v_prediction" },
      unet: { timestep: "f32-batch", ehsDim: 8, nonlinear: true },
    },
    outputs: ["x0", "eps"],
  },
  {
    name: "LCM (int64 timestep, timestep_cond; consistency = c_out x̂0 + c_skip z)",
    spec: {
      scheduler: LCM_SCHEDULER,
      unet: { timestep: "i64-batch", ehsDim: 8, timeCondDim: 16, nonlinear: true },
      unetConfig: { time_cond_proj_dim: 16 },
    },
    outputs: ["x0", "consistency"],
    ts: [500, 1], // at t = 1, c_skip = 0.0025: the boundary term matters
  },
  {
    name: "SDXL (encoder_hidden_states and text_embeds)",
    spec: {
      unet: { timestep: "f32-scalar", ehsDim: 20, pooledDim: 12, nonlinear: true },
      text: { ids: "int64", dim: 8, layers: 2 },
      text2: { ids: "int64", dim: 12, layers: 3, projection: true, salt: 1 },
    },
    outputs: ["x0"],
  },
  {
    name: "consistency_unet with v-prediction",
    spec: {
      unet: { timestep: "f32-scalar", ehsDim: 8, nonlinear: true },
      consistencyUnet: { timestep: "f32-scalar", ehsDim: 8, nonlinear: true },
      consistencyConfig: { prediction_type: "v_prediction" },
    },
    outputs: ["consistency"],
  },
];

for (const k of CASES) {
  Deno.test(`diffusers prior VJPs vs central differences: ${k.name}`, async () => {
    const prior = await DiffusersPrior.load(memoryFiles("vjp-fixture", pipelineFiles(k.spec)), {
      device: "cpu",
      imageShape: IMAGE,
    });
    const B = k.batch ?? 1;
    const ls = prior.latentShape([B, 3, 16, 16]);
    const n = ls.reduce((a, b) => a * b, 1);
    const z: Tensor = { data: randn(n, "z"), shape: ls };
    const g = randn(n, "g");
    // conditioning from tensors: the prompt's tensors moved off the prompt manifold
    const base = await prior.condition("a photo of a cat");
    const diff = prior.conditioningTensors().filter((i) => i.differentiable).map((i) => i.name);
    const given: Record<string, Tensor> = {};
    for (const name of diff) {
      const b = base.tensors[name];
      given[name] = shifted(b, randn(b.data.length, `c0-${name}`), 0.5);
    }
    const c = prior.conditionFromTensors(given);
    let worst = 0;
    for (const [t, out] of (k.ts ?? [500]).flatMap((t) => k.outputs.map((o) => [t, o] as const))) {
      const r = out === "consistency"
        ? await prior.consistencyVjp!(z, t, c, { data: g, shape: ls }, { wrt: [LATENT, ...diff] })
        : await prior.denoiseVjp!(z, t, c, { data: g, shape: ls }, {
          wrt: [LATENT, ...diff],
          output: out,
        });
      // value = the forward method's output
      const f0 = await forward(prior, out, z, t, c);
      const ev = f0.data.reduce((m, v, i) => Math.max(m, Math.abs(v - r.value.data[i])), 0);
      assert.ok(ev < 1e-5, `${out}: VJP value vs forward ${ev}`);
      for (const dir of ["a", "b"]) {
        const v = randn(n, `v-${out}-${dir}`);
        const fp = await forward(prior, out, shifted(z, v, H), t, c);
        const fm = await forward(prior, out, shifted(z, v, -H), t, c);
        const fd = (dot(g, fp.data) - dot(g, fm.data)) / (2 * H);
        worst = Math.max(worst, close(fd, dot(r.grads[LATENT].data, v), `${out} ∂/∂latent`));
        // At t = 1 the ε-network's output enters x̂0 scaled by √(1−ᾱ₁)/√ᾱ₁ ≈ 0.04, so the
        // conditioning's effect is below float32 finite-difference resolution: latent only there.
        for (const name of t >= 100 ? diff : []) {
          const ct = c.tensors[name];
          assert.deepEqual(r.grads[name].shape, ct.shape, `${name} gradient shape`);
          const w = condDirection(ct.data.length, `w-${out}-${name}-${dir}`, dir === "b");
          const cp = prior.conditionFromTensors({ ...given, [name]: shifted(ct, w, H) });
          const cm = prior.conditionFromTensors({ ...given, [name]: shifted(ct, w, -H) });
          const gp = await forward(prior, out, z, t, cp);
          const gm = await forward(prior, out, z, t, cm);
          const fdc = (dot(g, gp.data) - dot(g, gm.data)) / (2 * H);
          worst = Math.max(worst, close(fdc, dot(r.grads[name].data, w), `${out} ∂/∂${name}`));
        }
      }
    }
    // decoder and encoder
    const x: Tensor = { data: randn(B * 768, "x", 0.5), shape: [B, 3, 16, 16] };
    const gx = randn(B * 768, "gx");
    const dv = await prior.decodeVjp(z, { data: gx, shape: [B, 3, 16, 16] });
    const v = randn(n, "vd");
    const fdD = (dot(gx, (await prior.decode(shifted(z, v, H))).data) -
      dot(gx, (await prior.decode(shifted(z, v, -H))).data)) / (2 * H);
    worst = Math.max(worst, close(fdD, dot(dv.grad.data, v), "decode"));
    const enc = await prior.encodeVjp!(x, { data: g, shape: ls });
    const u = randn(B * 768, "ve");
    const fdE = (dot(g, (await prior.encode!(shifted(x, u, H))).data) -
      dot(g, (await prior.encode!(shifted(x, u, -H))).data)) / (2 * H);
    worst = Math.max(worst, close(fdE, dot(enc.grad.data, u), "encode"));
    console.log(`${k.name}: worst relative error ${worst.toExponential(2)}`);
  });
}

Deno.test("conditionFromTensors: names, shapes and fixed tensors", async () => {
  const prior = await DiffusersPrior.load(
    memoryFiles(
      "lcm",
      pipelineFiles({
        scheduler: LCM_SCHEDULER,
        unet: { timestep: "i64-batch", ehsDim: 8, timeCondDim: 16 },
        unetConfig: { time_cond_proj_dim: 16 },
      }),
    ),
    { device: "cpu", imageShape: IMAGE },
  );
  const info = prior.conditioningTensors();
  assert.deepEqual(
    info.map((i) => [i.name, i.shape, i.source, i.differentiable]),
    [
      ["encoder_hidden_states", [1, 77, 8], "prompt", true],
      ["timestep_cond", [1, 16], "fixed", false],
    ],
  );
  const fromPrompt = await prior.condition("a cat");
  const c = prior.conditionFromTensors({
    encoder_hidden_states: fromPrompt.tensors.encoder_hidden_states,
  });
  // the fixed tensor is filled in, and the result conditions the UNet exactly as the prompt does
  assert.deepEqual(c.tensors.timestep_cond, fromPrompt.tensors.timestep_cond);
  const z: Tensor = { data: randn(16, "z"), shape: [1, 4, 2, 2] };
  assert.deepEqual(
    (await prior.denoise!(z, 300, c)).data,
    (await prior.denoise!(z, 300, fromPrompt)).data,
  );
  const ehs = fromPrompt.tensors.encoder_hidden_states;
  assert.throws(() => prior.conditionFromTensors({}), /"encoder_hidden_states" is missing/);
  assert.throws(
    () =>
      prior.conditionFromTensors({ encoder_hidden_states: { data: ehs.data, shape: [1, 11, 56] } }),
    /has shape \[1,11,56\], expected \[B,77,8\]/,
  );
  assert.throws(
    () => prior.conditionFromTensors({ encoder_hidden_states: ehs, text_embeds: ehs }),
    /takes no conditioning tensor "text_embeds"/,
  );
  const nan = Float32Array.from(ehs.data);
  nan[3] = NaN;
  assert.throws(
    () => prior.conditionFromTensors({ encoder_hidden_states: { data: nan, shape: ehs.shape } }),
    /non-finite/,
  );
});
