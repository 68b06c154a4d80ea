/**
 * Whole-loss graphs on plain ONNX models: the SD-block composite (UNet stand-in), a
 * VAE-decoder-shaped block and the blur operator's export, with ‖2(A((D(x̂0/s)+1)/2) − y)‖ as the
 * loss. The gradient of the one-run whole-loss graph equals the network-by-network chain (separate
 * VJP models, the operator's TypeScript VJP) and the operator fallback (two-phase and recompute);
 * each network's forward runs once per step; the two-phase VJP equals the one-phase VJP; every op
 * of the whole-loss VJP graph has a GPU kernel.
 */
import assert from "node:assert/strict";
import { SessionPool } from "../core/backend/pool.ts";
import type { Feed } from "../core/backend/session.ts";
import { offDeviceNodes } from "../core/onnx/device_ops.ts";
import { sdBlockGraph, vaeDecoderGraph } from "../core/onnx/vjp/fixtures.ts";
import { decodeModel } from "../core/onnx/proto.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { DifferentiableGraph } from "../core/loss/differentiable.ts";
import { LossGraphBuilder } from "../core/loss/builder.ts";
import { createOperator } from "../core/registry.ts";
import type { ForwardOperator } from "../core/contracts.ts";
import { streams } from "../core/rng.ts";
import { builtinRegistry } from "../mod.ts";
import { SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";
import { relErr } from "./exact_model_helpers.ts";

const H = 8, W = 8, L = SMALL_SD_BLOCK.contextLength, D = SMALL_SD_BLOCK.contextDim;
const unet = { key: "test/sd-block", bytes: sdBlockGraph(SMALL_SD_BLOCK), label: "sd-block" };
const vae = {
  key: "test/vae-decoder",
  bytes: vaeDecoderGraph({ height: H, width: W, channels: 16, groups: 4 }),
  label: "vae-decoder",
};
const IMG = [1, 3, 8 * H, 8 * W];
const SCALE = 0.18215, ALPHA = 1.7, BETA = -0.9; // x̂0 = α z + β ε (ε-prediction at some ᾱ)

function randn(shape: number[], name: string, s = 1): Float32Array {
  const r = streams(11).get(`loss-graph-test/${name}`);
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, () => s * r.normal());
}

async function lossGraph(
  op: ForwardOperator,
  key: string,
  pool: SessionPool,
  fallback?: "two-phase" | "recompute",
) {
  const b = new LossGraphBuilder("ldps-test");
  const z = b.input("z_t", [1, 4, H, W]);
  const c = b.input("encoder_hidden_states", [1, L, D]);
  const t = await b.inputLike(unet, "timestep");
  const [a, be] = [b.scalar("x0_z"), b.scalar("x0_out")];
  const eps = (await b.network("unet", unet, { sample: z, timestep: t, encoder_hidden_states: c }))
    .out_sample;
  const z0 = b.lincomb([[z, a], [eps, be]]);
  const x = (await b.network("vae_decoder", vae, { latent_sample: b.scale(z0, 1 / SCALE) })).sample;
  const r = b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", op.outputShape));
  b.loss(b.norm(r, { scale: 2 }));
  b.output("x0", z0);
  return await b.build({
    key,
    wrt: ["z_t", "encoder_hidden_states"],
    pool,
    device: "cpu",
    fallback,
  });
}

const feeds: Record<string, Feed> = {
  z_t: { data: randn([1, 4, H, W], "z"), shape: [1, 4, H, W] },
  encoder_hidden_states: { data: randn([1, L, D], "c", 0.5), shape: [1, L, D] },
  timestep: { data: [412], shape: [1] },
  x0_z: { data: [ALPHA], shape: [] },
  x0_out: { data: [BETA], shape: [] },
  y: { data: randn(IMG, "y", 0.1).map((v) => 0.5 + v), shape: IMG },
};

/** The loss and gradients network by network: separate forward and VJP models, TS operator. */
async function chained(op: ForwardOperator, pool: SessionPool) {
  const uF = await pool.session("chain/unet", unet, { device: "cpu" });
  const dF = await pool.session("chain/vae", vae, { device: "cpu" });
  const uV = await vjpTransform(unet.bytes, ["out_sample"], ["sample", "encoder_hidden_states"]);
  const dV = await vjpTransform(vae.bytes, ["sample"], ["latent_sample"]);
  const uB = await pool.session("chain/unet-vjp", { key: "chain/unet-vjp", bytes: uV.bytes() }, {
    device: "cpu",
  });
  const dB = await pool.session("chain/vae-vjp", { key: "chain/vae-vjp", bytes: dV.bytes() }, {
    device: "cpu",
  });
  const z = feeds.z_t.data as Float32Array;
  const unetFeeds = {
    sample: feeds.z_t,
    timestep: feeds.timestep,
    encoder_hidden_states: feeds.encoder_hidden_states,
  };
  const eps = (await uF.run(unetFeeds)).out_sample;
  const zs = Float32Array.from(z, (v, i) => (ALPHA * v + BETA * eps.data[i]) / SCALE);
  const lat = { data: zs, shape: [1, 4, H, W] };
  const x = (await dF.run({ latent_sample: lat })).sample;
  const u = { data: x.data.map((v) => 0.5 * v + 0.5), shape: x.shape };
  const ax = await op.forward(u);
  const y = feeds.y.data as Float32Array;
  const r = Float64Array.from(ax.data, (v, i) => 2 * (v - y[i]));
  const nr = Math.sqrt(r.reduce((s, v) => s + v * v, 0));
  const gAx = { data: Float32Array.from(r, (v) => (2 * v) / nr), shape: ax.shape };
  const gU = await op.vjp(u, gAx);
  const gX = { data: gU.data.map((v) => 0.5 * v), shape: gU.shape };
  const gLat = (await dB.run({ latent_sample: lat, "sample.cotangent": gX }))["latent_sample.grad"];
  const gZ0 = Float32Array.from(gLat.data, (v) => v / SCALE);
  const gEps = { data: gZ0.map((v) => BETA * v), shape: [1, 4, H, W] };
  const ub = await uB.run({ ...unetFeeds, "out_sample.cotangent": gEps });
  const gz = Float32Array.from(gZ0, (v, i) => ALPHA * v + ub["sample.grad"].data[i]);
  return { loss: nr, gz, gc: ub["encoder_hidden_states.grad"].data };
}

Deno.test("whole-loss graph: one run gives the chained network-by-network loss and gradients; forwards once", async () => {
  const pool = new SessionPool({ threads: 2 });
  const op = await createOperator(builtinRegistry(), "blur:sigma=1", IMG, 0);
  const lg = await lossGraph(op, "test/loss/blur", pool);
  assert.equal(lg.usesFallback, false);
  const got = await lg.lossAndGrad(feeds);
  const want = await chained(op, pool);
  assert.ok(
    Math.abs(got.value - want.loss) / want.loss < 1e-5,
    `loss ${got.value} vs ${want.loss}`,
  );
  const ez = relErr(got.grads.z_t.data, want.gz),
    ec = relErr(got.grads.encoder_hidden_states.data, want.gc);
  assert.ok(
    ez < 1e-4 && ec < 1e-4,
    `gradient vs chain: z ${ez.toExponential(2)}, c ${ec.toExponential(2)}`,
  );
  assert.ok(got.outputs.x0.data.length === 4 * H * W);
  // one session run, each network's forward once — in the counters and in the graph itself
  const s = lg.stats();
  assert.deepEqual(s.runs, { forward: 0, vjp: 1, phase1: 0, phase2: 0 });
  assert.deepEqual(s.forwards, { unet: 1, vae_decoder: 1 });
  const model = lg.graph.vjpGraph.model;
  for (const [name, src] of [["unet", unet], ["vae_decoder", vae]] as const) {
    const n = decodeModel(src.bytes).graph!.node!.length;
    const inlined = model.graph!.node!.filter((x) => x.name?.startsWith(`${name}/`)).length;
    assert.equal(
      inlined,
      n,
      `${name}: ${inlined} forward nodes in the VJP graph, the network has ${n}`,
    );
  }
  assert.deepEqual(offDeviceNodes(model), [], "whole-loss VJP graph has ops without GPU kernels");
  await pool.release();
});

Deno.test("whole-loss graph: operators without an ONNX export fall back to the chained VJP, same numbers", async () => {
  const pool = new SessionPool({ threads: 2 });
  const op = await createOperator(builtinRegistry(), "blur:sigma=1", IMG, 0);
  const whole = await (await lossGraph(op, "test/loss/blur", pool)).lossAndGrad(feeds);
  const { exportOnnx: _drop, ...noExport } = op;
  for (const mode of ["two-phase", "recompute"] as const) {
    const lg = await lossGraph(noExport, "test/loss/blur-fallback", pool, mode);
    assert.equal(lg.usesFallback, true);
    const r = await lg.lossAndGrad(feeds);
    assert.ok(Math.abs(r.value - whole.value) / whole.value < 1e-5);
    for (const k of ["z_t", "encoder_hidden_states"]) {
      const e = relErr(r.grads[k].data, whole.grads[k].data);
      assert.ok(e < 1e-5, `${mode} ${k}: ${e.toExponential(2)}`);
    }
    const s = lg.stats();
    assert.deepEqual(
      s.forwards,
      mode === "two-phase" ? { unet: 1, vae_decoder: 1 } : { unet: 2, vae_decoder: 2 },
    );
    assert.deepEqual(s.vjps, { unet: 1, vae_decoder: 1 });
  }
  await pool.release();
});

Deno.test("two-phase VJP equals the one-phase VJP (SD-block composite, ∂/∂sample and ∂/∂context)", async () => {
  const pool = new SessionPool({ threads: 2 });
  const g = await DifferentiableGraph.create(unet, {
    key: "test/two-phase/sd-block",
    of: ["out_sample"],
    wrt: ["sample", "encoder_hidden_states"],
    pool,
    device: "cpu",
  });
  const f = {
    sample: feeds.z_t,
    timestep: feeds.timestep,
    encoder_hidden_states: feeds.encoder_hidden_states,
  };
  const w = { out_sample: { data: randn([1, 4, H, W], "w"), shape: [1, 4, H, W] } };
  const one = await g.vjp(f, w);
  const pass = await g.begin(f, "two-phase");
  assert.ok(relErr(pass.outputs.out_sample.data, one.outputs.out_sample.data) < 1e-6);
  const two = await pass.backward(w);
  await assert.rejects(() => pass.backward(w), /twice/);
  const again = await (await g.begin(f, "recompute")).backward(w);
  for (const k of ["sample", "encoder_hidden_states"]) {
    const e2 = relErr(two[k].data, one.grads[k].data),
      e3 = relErr(again[k].data, one.grads[k].data);
    assert.ok(
      e2 < 1e-6 && e3 < 1e-6,
      `${k}: two-phase ${e2.toExponential(2)}, recompute ${e3.toExponential(2)}`,
    );
  }
  assert.ok((await g.heldElements()) > 0);
  const s = g.stats();
  assert.deepEqual(s.runs, { forward: 1, vjp: 2, phase1: 1, phase2: 1 });
  await pool.release();
});
