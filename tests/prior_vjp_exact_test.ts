/**
 * Prior VJPs (decodeVjp, encodeVjp, denoiseVjp for x̂0 and ε̂, consistencyVjp) on the built-in exact
 * model against its closed forms (`denoiserVjp`, `embeddingGradient`, the linear encoder and
 * decoder):
 * - through the Prior API in float32 at 64² and 256²: max error / max value ≤ 1e-5 for ∂/∂latent
 *   and ∂/∂image, ≤ 2e-4 for ∂/∂conditioning;
 * - the same heads and coefficients on a float64 emission of the graphs, to 1e-9.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  createExactModel,
  decode64,
  decodeAdjoint64,
  decoderGraph,
  denoiserVjp,
  embeddingGradient,
  embeddingTheta,
  encode64,
  encoderGraph,
  type ExactModel,
  exactSchedule,
  modelMoments,
  unetGraph,
} from "../plugins/builtin-gaussian/mod.ts";
import { validateOptions } from "../core/registry.ts";
import { type Conditioning, LATENT, type Prior } from "../core/contracts.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  decoderHead,
  denoiserAffine,
  denoiserHead,
  type DenoiserNetwork,
  encoderHead,
  HEAD,
} from "../core/networks.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { sessionPool } from "../core/backend/pool.ts";
import { normals, relErr } from "./exact_model_helpers.ts";

const EHS = "encoder_hidden_states";

const f32 = (shape: number[], v: ArrayLike<number>): Tensor => ({
  data: Float32Array.from(v),
  shape,
});

interface Setup {
  prior: Prior;
  model: ExactModel;
  c: Conditioning;
  /** The embedding as float32 values (what the graphs see). */
  ehs: Float64Array;
  latentShape: number[];
  imageShape: number[];
}

/** A built-in prior and a non-prompt embedding (a prompt's embedding plus noise, from tensors). */
async function setup(size: number, options: Record<string, unknown> = {}): Promise<Setup> {
  const imageShape = [1, 3, size, size];
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, options), {
    device: "cpu",
    imageShape,
  });
  const model = createExactModel({
    imageShape,
    lossy: options.lossy as number | undefined,
    scale: options.scale as number | undefined,
  });
  const base = (await prior.condition("a sharp red photo")).tensors[EHS];
  const noise = normals(base.data.length, "ehs-noise", 0.05);
  const ehsT = f32(base.shape, Array.from(base.data, (v, i) => v + noise[i]));
  const c = prior.conditionFromTensors({ [EHS]: ehsT });
  return {
    prior,
    model,
    c,
    ehs: Float64Array.from(ehsT.data),
    latentShape: prior.latentShape(imageShape),
    imageShape,
  };
}

/** A latent z_t drawn from the model's marginal at t (float32 values). */
function noisyLatent(s: Setup, t: number): Float64Array {
  const mom = modelMoments(s.model, embeddingTheta(s.model, s.ehs));
  const ab = exactSchedule().alphasCumprod[t];
  const xi = normals(mom.mu.length, `zt-${t}`);
  return Float64Array.from(
    mom.mu,
    (m, i) => Math.fround(Math.sqrt(ab) * m + Math.sqrt(ab * mom.lambda[i] + 1 - ab) * xi[i]),
  );
}

const OUTPUTS = [
  ["denoiseVjp", "x0", "z0"],
  ["denoiseVjp", "eps", "eps"],
  ["consistencyVjp", undefined, "G"],
] as const;

for (const size of [64, 256]) {
  Deno.test(`prior VJPs at ${size}² (float32, Prior API) equal the closed forms`, async () => {
    const s = await setup(size);
    const { model } = s;
    const T = model.text.maxLength;
    const theta = embeddingTheta(model, s.ehs);
    const before = s.prior.stats();
    let worstZ = 0, worstC = 0;
    for (const t of [999, 437, 20]) {
      const zt = noisyLatent(s, t);
      const g = Float64Array.from(normals(zt.length, `g-${t}`), Math.fround);
      for (const [method, output, kind] of OUTPUTS) {
        const fn = s.prior[method]!;
        const r = await fn(f32(s.latentShape, zt), t, s.c, f32(s.latentShape, g), {
          wrt: [LATENT, EHS],
          ...(output ? { output } : {}),
        });
        const ref = denoiserVjp(kind, zt, t, theta, model.layout, model.spectrum, g);
        const dc = embeddingGradient(ref.dtheta, T, model.text.readout);
        const eZ = relErr(r.grads[LATENT].data, ref.dz);
        const eC = relErr(r.grads[EHS].data, dc);
        worstZ = Math.max(worstZ, eZ);
        worstC = Math.max(worstC, eC);
        assert.ok(eZ <= 1e-5, `${size}² t=${t} ${kind}: ∂/∂latent ${eZ.toExponential(2)}`);
        assert.ok(eC <= 2e-4, `${size}² t=${t} ${kind}: ∂/∂c ${eC.toExponential(2)}`);
        assert.deepEqual(r.grads[EHS].shape, [1, T, model.text.readout.hiddenSize]);
      }
    }
    // Decoder and encoder: linear, so the VJP is the adjoint (with the scaling factor s).
    const n = s.latentShape.reduce((a, b) => a * b, 1);
    const z = Float64Array.from(normals(n, "z"), Math.fround);
    const gx = Float64Array.from(normals(3 * size * size, "gx"), Math.fround);
    const dec = await s.prior.decodeVjp!(f32(s.latentShape, z), f32(s.imageShape, gx));
    const eD = relErr(dec.grad.data, decodeAdjoint64(gx, model.layout));
    assert.ok(eD <= 1e-5, `decodeVjp ${eD}`);
    assert.ok(relErr(dec.value.data, decode64(z, model.layout)) <= 1e-5, "decodeVjp value");
    const x = Float64Array.from(normals(3 * size * size, "x", 0.5), Math.fround);
    const gz = Float64Array.from(normals(n, "gz"), Math.fround);
    const enc = await s.prior.encodeVjp!(f32(s.imageShape, x), f32(s.latentShape, gz));
    // Eᵀ g = s² D(g) (E = s P DCT C, D = Cᵀ IDCT Pᵀ / s)
    const sc = model.layout.scale;
    const eE = relErr(enc.grad.data, decode64(gz, model.layout).map((v) => v * sc * sc));
    assert.ok(eE <= 1e-5, `encodeVjp ${eE}`);
    assert.ok(relErr(enc.value.data, encode64(x, model.layout)) <= 1e-5, "encodeVjp value");
    // Counters: VJPs are counted apart from forward calls.
    const after = s.prior.stats();
    assert.equal((after.vjp.unet ?? 0) - (before.vjp.unet ?? 0), 6);
    assert.equal((after.vjp.consistency_unet ?? 0) - (before.vjp.consistency_unet ?? 0), 3);
    assert.equal(after.vjp.vae_decoder, 1);
    assert.equal(after.vjp.vae_encoder, 1);
    assert.equal(after.calls.unet ?? 0, before.calls.unet ?? 0);
    console.log(
      `${size}²: worst ∂/∂latent ${worstZ.toExponential(2)}, ∂/∂c ${worstC.toExponential(2)}, ` +
        `decoder ${eD.toExponential(2)}, encoder ${eE.toExponential(2)}`,
    );
  });
}

Deno.test("prior VJPs with a lossy latent and s = 0.5: scaling lives inside the prior", async () => {
  const s = await setup(64, { lossy: 0.5, scale: 0.5 });
  const { model } = s;
  assert.deepEqual(s.latentShape, [1, 3, 32, 32]);
  const t = 500;
  const zt = noisyLatent(s, t);
  const g = Float64Array.from(normals(zt.length, "g"), Math.fround);
  const r = await s.prior.denoiseVjp!(f32(s.latentShape, zt), t, s.c, f32(s.latentShape, g), {
    wrt: [LATENT, EHS],
  });
  const theta = embeddingTheta(model, s.ehs);
  const ref = denoiserVjp("z0", zt, t, theta, model.layout, model.spectrum, g);
  assert.ok(relErr(r.grads[LATENT].data, ref.dz) <= 1e-5);
  const dc = embeddingGradient(ref.dtheta, model.text.maxLength, model.text.readout);
  assert.ok(relErr(r.grads[EHS].data, dc) <= 2e-4);
  const gx = Float64Array.from(normals(3 * 64 * 64, "gx"), Math.fround);
  const dec = await s.prior.decodeVjp!(f32(s.latentShape, zt), f32(s.imageShape, gx));
  assert.ok(relErr(dec.grad.data, decodeAdjoint64(gx, model.layout)) <= 1e-5);
  // each VJP model is built once per process: another t, and another prior over the same model,
  // reuse it (the pool holds one session per model)
  const pooled = sessionPool().size;
  const again = await setup(64, { lossy: 0.5, scale: 0.5 });
  await again.prior.denoiseVjp!(f32(s.latentShape, zt), 20, again.c, f32(s.latentShape, g));
  await s.prior.denoiseVjp!(f32(s.latentShape, zt), 999, s.c, f32(s.latentShape, g));
  assert.equal(sessionPool().size, pooled);
  // only the requested gradients come back; an unknown name is refused
  const only = await s.prior.denoiseVjp!(f32(s.latentShape, zt), t, s.c, f32(s.latentShape, g));
  assert.deepEqual(Object.keys(only.grads), [LATENT]);
  await assert.rejects(
    () =>
      s.prior.denoiseVjp!(f32(s.latentShape, zt), t, s.c, f32(s.latentShape, g), {
        wrt: ["time_ids"],
      }),
    /cannot differentiate w\.r\.t\. "time_ids"/,
  );
});

// ---------- float64: the prior's heads and coefficients on a float64 emission of the graphs ----

/**
 * Run a float64 model. Graph optimisation stays at "basic": the extended level's MatMulScaleFusion
 * folds a scalar Mul into FusedMatMul's float32 `alpha` attribute, a float32 rounding of the
 * head's 1/s that would show at 2e-8 here (harmless in float32 models).
 */
async function run64(bytes: Uint8Array, feeds: Record<string, ort.Tensor>) {
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: 1,
    graphOptimizationLevel: "basic",
  });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

const t64 = (v: ArrayLike<number>, dims: number[]) =>
  new ort.Tensor("float64", Float64Array.from(v), dims);

Deno.test("prior VJP heads on float64 graphs equal the closed forms to 1e-9", async () => {
  const s = await setup(64, { scale: 0.7 });
  const { model } = s;
  const nets = s.prior.networks!();
  const T = model.text.maxLength, D = model.text.readout.hiddenSize;
  const theta = embeddingTheta(model, s.ehs);
  const cases: [DenoiserNetwork, "x0" | "eps" | "consistency", "z0" | "eps" | "G", Uint8Array][] = [
    [nets.unet!, "x0", "z0", unetGraph(model, "epsilon", "float64")],
    [nets.unet!, "eps", "eps", unetGraph(model, "epsilon", "float64")],
    [nets.consistency!, "consistency", "G", unetGraph(model, "sample", "float64")],
  ];
  let worst = 0;
  for (const [net, output, kind, bytes] of cases) {
    const head = encodeModel(denoiserHead(decodeModel(bytes), net));
    const vjp = await vjpTransform(head, [HEAD.prediction], [net.sample, EHS], {
      inputShapes: { [net.sample]: s.latentShape, [EHS]: [1, T, D] },
    });
    for (const t of [999, 437, 20]) {
      const zt = noisyLatent(s, t);
      const g = normals(zt.length, `g64-${t}`);
      const a = denoiserAffine(net, s.prior.schedule, t, output);
      const out = await run64(vjp.bytes(), {
        [net.sample]: t64(zt, s.latentShape),
        timestep: t64([t], []),
        [EHS]: t64(s.ehs, [1, T, D]),
        [HEAD.coefZ]: t64([a.z], []),
        [HEAD.coefOut]: t64([a.out], []),
        [vjp.cotangentName(HEAD.prediction)]: t64(g, s.latentShape),
      });
      const ref = denoiserVjp(kind, zt, t, theta, model.layout, model.spectrum, g);
      const dc = embeddingGradient(ref.dtheta, T, model.text.readout);
      const eZ = relErr(out[vjp.gradName(net.sample)].data as Float64Array, ref.dz);
      const eC = relErr(out[vjp.gradName(EHS)].data as Float64Array, dc);
      worst = Math.max(worst, eZ, eC);
      assert.ok(eZ <= 1e-9 && eC <= 1e-9, `t=${t} ${kind}: ${eZ}, ${eC}`);
    }
  }
  // decoder and encoder heads (scaling 0.7)
  const n = s.latentShape.reduce((a, b) => a * b, 1);
  const dh = encodeModel(decoderHead(decodeModel(decoderGraph(model, "float64")), nets.decoder));
  const dv = await vjpTransform(dh, [nets.decoder.output], [HEAD.latent]);
  const gx = normals(3 * 64 * 64, "gx64");
  const dOut = await run64(dv.bytes(), {
    [HEAD.latent]: t64(normals(n, "z64"), s.latentShape),
    [dv.cotangentName(nets.decoder.output)]: t64(gx, s.imageShape),
  });
  const eD = relErr(
    dOut[dv.gradName(HEAD.latent)].data as Float64Array,
    decodeAdjoint64(gx, model.layout),
  );
  const eh = encodeModel(encoderHead(decodeModel(encoderGraph(model, "float64")), nets.encoder!));
  const ev = await vjpTransform(eh, [HEAD.latent], [nets.encoder!.input]);
  const gz = normals(n, "gz64");
  const eOut = await run64(ev.bytes(), {
    [nets.encoder!.input]: t64(normals(3 * 64 * 64, "x64"), s.imageShape),
    [ev.cotangentName(HEAD.latent)]: t64(gz, s.latentShape),
  });
  const sc = model.layout.scale;
  const eE = relErr(
    eOut[ev.gradName(nets.encoder!.input)].data as Float64Array,
    decode64(gz, model.layout).map((v) => v * sc * sc),
  );
  assert.ok(eD <= 1e-9 && eE <= 1e-9, `decoder ${eD}, encoder ${eE}`);
  console.log(
    `float64: worst denoiser ${worst.toExponential(2)}, decoder ${eD.toExponential(2)}, ` +
      `encoder ${eE.toExponential(2)}`,
  );
});
