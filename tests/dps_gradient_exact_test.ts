/**
 * LDPS's and PSLD's per-step loss and gradient (solvers/dps_loss.ts: one whole-loss graph through
 * the UNet, the decoder, the operator's ONNX export, its in-graph VJP (Aᵀ) and the encoder) against
 * the closed forms of the built-in model, written here from the definitions:
 *
 *   ẑ0 = μ + g∘(z_t − √ᾱμ), g = √ᾱλ/(ᾱλ + 1 − ᾱ)      (Tweedie)
 *   x̂ = D ẑ0,  r_m = A(x̂+1)/2 − y_m,  r = A(x̂+1)/2 − y
 *   meas = ‖2r_m‖,  u = x̂ − 2Aᵀr,  e = E u − ẑ0,  glue = ‖e‖,  L = ω meas + γ glue
 *   ∂L/∂x̂ = ω Aᵀ(2r_m/‖2r_m‖)·… ,  ∂L/∂ẑ0 = Dᵀ[∂L/∂x̂ + γ(I − AᵀA) Eᵀ ê] − γ ê,  ∇_{z_t}L = g∘∂L/∂ẑ0
 *
 * with A = D diag(h) E for the half-sample symmetric Gaussian blur (diagonal in the model's DCT
 * basis, h = `dctDiagonal`) and A = M (elementwise) for inpainting. Float64 emission of the networks
 * and the operator: 1e-9; the prior's float32 networks: ∂/∂latent within 1e-5 (max error / max
 * value), the differentiable-priors tolerance.
 */
import assert from "node:assert/strict";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  createExactModel,
  decode64,
  decodeAdjoint64,
  decoderGraph,
  embeddingTheta,
  encode64,
  encoderGraph,
  type ExactModel,
  exactSchedule,
  modelMoments,
  tweedie,
  unetGraph,
} from "../plugins/builtin-gaussian/mod.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import type { ForwardOperator, Prior, PriorNetworks } from "../core/contracts.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { SessionPool } from "../core/backend/pool.ts";
import type { Tensor } from "../core/tensor.ts";
import { readImage } from "../core/io/image.ts";
import { centreCrop } from "../cli/compare/config.ts";
import { builtinRegistry } from "../mod.ts";
import { DpsStepLoss } from "../solvers/dps_loss.ts";
import { relErr } from "./exact_model_helpers.ts";

const EHS = "encoder_hidden_states";

interface Case {
  size: number;
  dtype: "float32" | "float64";
  op: string;
  omega: number;
  gamma: number;
  squared: boolean;
  t: number;
  /** Drop the operator's ONNX export: the TypeScript fallback (the same numbers). */
  fallback?: boolean;
}

interface Setup {
  prior: Prior;
  model: ExactModel;
  op: ForwardOperator;
  y: Tensor;
  yMeas: Tensor;
  zt: Float64Array;
  ehs: Float64Array;
}

async function setup(c: Case): Promise<Setup> {
  const imageShape = [1, 3, c.size, c.size];
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, {}), {
    device: "cpu",
    imageShape,
  });
  const model = createExactModel({ imageShape });
  const x = centreCrop(await readImage("../shared/data/kodak/kodim05.png"), c.size, c.size, "x");
  const op = await createOperator(builtinRegistry(), c.op, imageShape, 0);
  const y = await measure(op, x, 0.01, streams(0).get("measurement-noise"));
  // the measurement the residual compares with differs from y (noise on the prediction)
  const n = streams(0).get("dps-exact/prediction-noise");
  const yMeas = { data: y.data.map((v) => v - 0.01 * n.normal()), shape: y.shape };
  const ehs = Float64Array.from((await prior.condition("")).tensors[EHS].data);
  const mom = modelMoments(model, embeddingTheta(model, ehs));
  const ab = exactSchedule().alphasCumprod[c.t];
  const xi = streams(0).get(`dps-exact/zt-${c.t}`);
  const zt = Float64Array.from(
    mom.mu,
    (m, i) => Math.fround(Math.sqrt(ab) * m + Math.sqrt(ab * mom.lambda[i] + 1 - ab) * xi.normal()),
  );
  return { prior, model, op, y, yMeas, zt, ehs };
}

/** A, Aᵀ in float64 from the operator's definition. */
function linear64(op: ForwardOperator, m: ExactModel) {
  if (op.name === "blur") {
    const h = (op as { dctDiagonal?: Float64Array }).dctDiagonal!;
    const n = h.length;
    const A = (v: Float64Array) => {
      const z = encode64(v, m.layout);
      for (let i = 0; i < z.length; i++) z[i] *= h[i % n];
      return decode64(z, m.layout);
    };
    return { A, At: A }; // symmetric: D diag(h) E with Dᵀ = E (s = 1, lossless)
  }
  const mask = op.artifacts!().mask.data; // [H,W], shared by the channels
  const A = (v: Float64Array) => v.map((a, i) => a * mask[i % mask.length]);
  return { A, At: A };
}

/** The closed-form loss, its terms and ∇_{z_t} (float64). */
function closedForm(c: Case, s: Setup) {
  const { model: m } = s;
  const l = m.layout;
  const mom = modelMoments(m, embeddingTheta(m, s.ehs));
  const ab = exactSchedule().alphasCumprod[c.t];
  const { z0, eps } = tweedie(s.zt, c.t, mom);
  const g = mom.lambda.map((lam) => Math.sqrt(ab) * lam / (ab * lam + 1 - ab));
  const { A, At } = linear64(s.op, m);
  const x = decode64(z0, l);
  const ax = A(x.map((v) => 0.5 * v + 0.5));
  const rm = ax.map((v, i) => 2 * (v - s.yMeas.data[i]));
  const nrm = Math.hypot(...rm);
  const meas = c.squared ? nrm * nrm : nrm;
  // ∂meas/∂x̂ = ½ Aᵀ(2 ∂meas/∂(2r_m)) = Aᵀ(k r_m·2/2)…: ∂meas/∂(2r_m) = k·2r_m
  const km = c.squared ? 2 : 1 / nrm;
  const gx = At(rm.map((v) => c.omega * km * v)); // ½·2·Aᵀ(k·2r_m) = Aᵀ(k·2r_m)
  let glue = 0;
  const gz0direct = new Float64Array(z0.length);
  if (c.gamma > 0) {
    const r = ax.map((v, i) => v - s.y.data[i]);
    const atr = At(r);
    const u = x.map((v, i) => v - 2 * atr[i]);
    const e = encode64(u, l).map((v, i) => v - z0[i]);
    const ne = Math.hypot(...e);
    glue = c.squared ? ne * ne : ne;
    const ke = c.squared ? 2 : 1 / ne;
    const ehat = e.map((v) => c.gamma * ke * v);
    const gu = decode64(ehat, l); // Eᵀ = D (s = 1, orthonormal)
    const atagu = At(A(gu));
    for (let i = 0; i < gx.length; i++) gx[i] += gu[i] - atagu[i];
    for (let i = 0; i < z0.length; i++) gz0direct[i] = -ehat[i];
  }
  const gz0 = decodeAdjoint64(gx, l).map((v, i) => v + gz0direct[i]);
  return {
    loss: c.omega * meas + c.gamma * glue,
    meas,
    glue,
    grad: gz0.map((v, i) => g[i] * v),
    x0: z0,
    eps,
  };
}

/** The prior's networks with float64 emissions of the same graphs. */
function float64Networks(nets: PriorNetworks, m: ExactModel, size: number): PriorNetworks {
  const src = (what: string, bytes: Uint8Array) => ({
    key: `dps-exact/f64/${what}/${size}`,
    bytes,
  });
  return {
    ...nets,
    unet: { ...nets.unet!, source: src("unet", unetGraph(m, "epsilon", "float64")) },
    decoder: { ...nets.decoder, source: src("decoder", decoderGraph(m, "float64")) },
    encoder: { ...nets.encoder!, source: src("encoder", encoderGraph(m, "float64")) },
  };
}

const CASES: Case[] = [
  // LDPS (γ = 0) and PSLD (gluing), un-squared as the papers; one squared; float64 and float32
  {
    size: 32,
    dtype: "float64",
    op: "blur:sigma=2,boundary=symmetric",
    omega: 1,
    gamma: 0,
    squared: false,
    t: 600,
  },
  {
    size: 32,
    dtype: "float64",
    op: "blur:sigma=2,boundary=symmetric",
    omega: 0.7,
    gamma: 0.3,
    squared: false,
    t: 400,
  },
  {
    size: 32,
    dtype: "float64",
    op: "inpaint:mask=box",
    omega: 0.1,
    gamma: 0.01,
    squared: true,
    t: 800,
  },
  {
    size: 64,
    dtype: "float32",
    op: "blur:sigma=3,boundary=symmetric",
    omega: 1,
    gamma: 0,
    squared: false,
    t: 600,
  },
  {
    size: 64,
    dtype: "float32",
    op: "blur:sigma=3,boundary=symmetric",
    omega: 1,
    gamma: 0.1,
    squared: false,
    t: 400,
  },
  // the operator in TypeScript (no ONNX export): LDPS's operator fallback, PSLD's tail
  {
    size: 32,
    dtype: "float32",
    op: "blur:sigma=2,boundary=symmetric",
    omega: 0.9,
    gamma: 0,
    squared: false,
    t: 500,
    fallback: true,
  },
  {
    size: 32,
    dtype: "float32",
    op: "blur:sigma=2,boundary=symmetric",
    omega: 0.9,
    gamma: 0.2,
    squared: false,
    t: 500,
    fallback: true,
  },
];

for (const c of CASES) {
  const what = `${c.gamma > 0 ? "PSLD" : "LDPS"} ${c.op} ${c.size}² ${c.dtype}${
    c.squared ? " squared" : ""
  }${c.fallback ? " TypeScript operator" : ""} ω=${c.omega} γ=${c.gamma} t=${c.t}`;
  Deno.test(`dps gradient = closed form: ${what}`, async () => {
    const s = await setup(c);
    const pool = new SessionPool({ threads: 2 });
    const base = s.prior.networks!();
    const nets = c.dtype === "float64" ? float64Networks(base, s.model, c.size) : base;
    const { exportOnnx: _drop, ...noExport } = s.op;
    const loss = await DpsStepLoss.build({ gluing: c.gamma > 0, squared: c.squared }, {
      networks: nets,
      operator: c.fallback ? noExport : s.op,
      latentShape: s.prior.latentShape(s.op.inputShape),
      pool,
      device: "cpu",
      dtype: c.dtype,
      optimization: c.dtype === "float64" ? "basic" : "all",
    });
    assert.equal(loss.usesFallback, c.fallback ?? false);
    const r = await loss.evaluate({
      zt: { data: Float32Array.from(s.zt), shape: [1, 3, c.size, c.size] },
      t: c.t,
      c: {
        tensors: { [EHS]: { data: Float32Array.from(s.ehs), shape: [1, 77, s.ehs.length / 77] } },
      },
      y: s.y,
      yMeas: s.yMeas,
      omega: c.omega,
      gamma: c.gamma,
    });
    const want = closedForm(c, s);
    const tol = c.dtype === "float64" ? 1e-9 : 1e-5;
    const eg = relErr(r.grad, want.grad), e0 = relErr(r.x0, want.x0), ee = relErr(r.eps, want.eps);
    const el = Math.abs(r.loss - want.loss) / want.loss;
    const em = Math.abs(r.meas - want.meas) / want.meas;
    const eglue = c.gamma > 0 ? Math.abs(r.glue - want.glue) / want.glue : 0;
    console.log(
      `${what}: ∇ ${eg.toExponential(2)}, loss ${el.toExponential(2)} (meas ${
        em.toExponential(2)
      }, glue ${eglue.toExponential(2)}), ẑ0 ${e0.toExponential(2)}, ε̂ ${ee.toExponential(2)}`,
    );
    assert.ok(eg <= tol, `∇_{z_t}: ${eg.toExponential(2)} > ${tol}`);
    assert.ok(el <= tol && em <= tol && eglue <= tol, `loss terms off`);
    assert.ok(e0 <= tol && ee <= tol, `ẑ0 / ε̂ off`);
    // one run of the whole-loss graph: each network's forward and backward once
    const st = loss.stats();
    const nets3 = c.gamma > 0 ? ["unet", "vae_decoder", "vae_encoder"] : ["unet", "vae_decoder"];
    assert.deepEqual(Object.keys(st.vjps).sort(), nets3.sort());
    for (const n of nets3) assert.equal(st.vjps[n], 1, `${n} VJPs`);
    for (const n of nets3) assert.equal(st.forwards[n], 1, `${n} forwards`);
    await pool.release();
  });
}
