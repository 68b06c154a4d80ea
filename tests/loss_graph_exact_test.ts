/**
 * Whole-loss graphs on the built-in (linear-Gaussian) model against the closed forms: the loss
 * ‖s(A((D(ẑ0(z_t, c)) + 1)/2) − y)‖² (and un-squared for SR) and its gradients w.r.t. z_t and
 * `encoder_hidden_states`, for blur, SR and inpainting —
 * - float64 emission of the networks and the operators, to 1e-9;
 * - the prior's float32 networks, within the differentiable-priors tolerances (∂/∂latent 1e-5,
 *   ∂/∂conditioning 2e-4, max error / max value);
 * - the chained fallback (operator in TypeScript) gives the whole graph's numbers;
 * - each network's forward once per step (counters and the graph's node count).
 * The references: the exact Tweedie denoiser and its VJP (`denoiserVjp`, `embeddingGradient`), the
 * linear decoder and its adjoint, and float64 loops for A and Aᵀ written here from their definitions.
 */
import assert from "node:assert/strict";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  createExactModel,
  decode64,
  decodeAdjoint64,
  decoderGraph,
  denoiserVjp,
  embeddingGradient,
  embeddingTheta,
  exactSchedule,
  modelMoments,
  tweedie,
  unetGraph,
} from "../plugins/builtin-gaussian/mod.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import type { ForwardOperator, PriorNetworks } from "../core/contracts.ts";
import { streams } from "../core/rng.ts";
import { SessionPool } from "../core/backend/pool.ts";
import type { Feed } from "../core/backend/session.ts";
import { LossGraphBuilder } from "../core/loss/builder.ts";
import { addDecoder, addDenoiser, denoiserFeeds } from "../core/loss/prior.ts";
import { offDeviceNodes } from "../core/onnx/device_ops.ts";
import { srFilterTaps } from "../operators/sr.ts";
import type { BlurOperator } from "../operators/blur.ts";
import { builtinRegistry } from "../mod.ts";
import { relErr } from "./exact_model_helpers.ts";

const EHS = "encoder_hidden_states";
const SIZE = 32;
const IMG = [1, 3, SIZE, SIZE];

function normals(n: number, name: string, scale = 1): Float64Array {
  const r = streams(0).get(`loss-exact/${name}`);
  return Float64Array.from({ length: n }, () => Math.fround(scale * r.normal()));
}

/** A and Aᵀ in float64, from the operators' definitions (independent of their ONNX exports). */
function reference(
  op: ForwardOperator,
): { A: (x: Float64Array) => Float64Array; At: (y: Float64Array) => Float64Array } {
  const [, C, H, W] = op.inputShape;
  const mod = (i: number, n: number) => ((i % n) + n) % n;
  if (op.name === "blur") {
    const k = (op as BlurOperator).kernel, ch = Math.floor(k.h / 2), cw = Math.floor(k.w / 2);
    const A = (x: Float64Array) => {
      const y = new Float64Array(x.length);
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H; i++) {
          for (let j = 0; j < W; j++) {
            let s = 0;
            for (let a = 0; a < k.h; a++) {
              for (let b = 0; b < k.w; b++) {
                s += k.data[a * k.w + b] *
                  x[c * H * W + mod(i - a + ch, H) * W + mod(j - b + cw, W)];
              }
            }
            y[c * H * W + i * W + j] = s;
          }
        }
      }
      return y;
    };
    const At = (y: Float64Array) => {
      const x = new Float64Array(y.length);
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H; i++) {
          for (let j = 0; j < W; j++) {
            const v = y[c * H * W + i * W + j];
            for (let a = 0; a < k.h; a++) {
              for (let b = 0; b < k.w; b++) {
                x[c * H * W + mod(i - a + ch, H) * W + mod(j - b + cw, W)] += k.data[a * k.w + b] *
                  v;
              }
            }
          }
        }
      }
      return x;
    };
    return { A, At };
  }
  if (op.name === "sr") {
    // circular bicubic: y[a,b] = Σ_{k,l} h[K−1−k] h[K−1−l] x[fa + k − K/2, fb + l − K/2]
    const f = op.options.factor as number, h = srFilterTaps("bicubic", f), K = h.length;
    const m = H / f, n = W / f;
    const visit = (cb: (yi: number, xi: number, w: number) => void) => {
      for (let c = 0; c < C; c++) {
        for (let a = 0; a < m; a++) {
          for (let b = 0; b < n; b++) {
            for (let k = 0; k < K; k++) {
              for (let l = 0; l < K; l++) {
                const xi = c * H * W + mod(f * a + k - K / 2, H) * W + mod(f * b + l - K / 2, W);
                cb(c * m * n + a * n + b, xi, h[K - 1 - k] * h[K - 1 - l]);
              }
            }
          }
        }
      }
    };
    return {
      A: (x) => {
        const y = new Float64Array(C * m * n);
        visit((yi, xi, w) => (y[yi] += w * x[xi]));
        return y;
      },
      At: (y) => {
        const x = new Float64Array(C * H * W);
        visit((yi, xi, w) => (x[xi] += w * y[yi]));
        return x;
      },
    };
  }
  const mask = op.artifacts!().mask.data;
  const apply = (v: Float64Array) => v.map((e, i) => e * mask[i % (H * W)]);
  return { A: apply, At: apply };
}

interface Case {
  spec: string;
  squared: boolean;
  scale: number;
}

const CASES: Case[] = [
  { spec: "blur:sigma=1", squared: true, scale: 1 },
  { spec: "sr:factor=2", squared: false, scale: 2 },
  { spec: "inpaint:mask=box", squared: true, scale: 1 },
];

async function setup() {
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, { scale: 0.7 }), {
    device: "cpu",
    imageShape: IMG,
  });
  const model = createExactModel({ imageShape: IMG, scale: 0.7 });
  const nets = prior.networks!();
  const base = (await prior.condition("a sharp red photo")).tensors[EHS];
  const ehs = Float64Array.from(base.data, (v, i) => Math.fround(v + 0.05 * Math.sin(i)));
  return { prior, model, nets, ehs, ehsShape: base.shape, latentShape: prior.latentShape(IMG) };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** The closed-form loss and gradients (z_t, c) at t. */
function closedForm(
  s: Setup,
  op: ForwardOperator,
  c: Case,
  zt: Float64Array,
  t: number,
  y: Float64Array,
) {
  const { model } = s;
  const theta = embeddingTheta(model, s.ehs);
  const z0 = tweedie(zt, t, modelMoments(model, theta)).z0;
  const x = decode64(z0, model.layout);
  const u = x.map((v) => 0.5 * v + 0.5);
  const { A, At } = reference(op);
  const r = A(u).map((v, i) => c.scale * (v - y[i]));
  const ss = r.reduce((p, v) => p + v * v, 0);
  const loss = c.squared ? ss : Math.sqrt(ss);
  const k = c.squared ? 2 * c.scale : c.scale / Math.sqrt(ss);
  const gu = At(r.map((v) => k * v));
  const gz0 = decodeAdjoint64(gu.map((v) => 0.5 * v), model.layout);
  const vjp = denoiserVjp("z0", zt, t, theta, model.layout, model.spectrum, gz0);
  return {
    loss,
    gz: vjp.dz,
    gc: embeddingGradient(vjp.dtheta, model.text.maxLength, model.text.readout),
  };
}

async function buildLoss(
  s: Setup,
  op: ForwardOperator,
  c: Case,
  nets: PriorNetworks,
  dtype: "float32" | "float64",
  pool: SessionPool,
  key: string,
) {
  const b = new LossGraphBuilder("exact-loss", { dtype });
  const z = b.input("z_t", s.latentShape);
  const den = await addDenoiser(b, nets.unet!, z, { [EHS]: b.input(EHS, s.ehsShape) });
  const x = await addDecoder(b, nets.decoder, den.value);
  const r = b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", op.outputShape));
  b.loss(b.norm(r, { squared: c.squared, scale: c.scale }));
  const lg = await b.build({
    key,
    wrt: ["z_t", EHS],
    pool,
    device: "cpu",
    optimization: dtype === "float64" ? "basic" : "all",
  });
  return { lg, den };
}

function feeds(
  s: Setup,
  den: Awaited<ReturnType<typeof addDenoiser>>,
  zt: Float64Array,
  t: number,
  y: Float64Array,
  op: ForwardOperator,
  dtype: "float32" | "float64",
): Record<string, Feed> {
  const arr = (v: Float64Array) => (dtype === "float64" ? v : Float32Array.from(v));
  return {
    z_t: { data: arr(zt), shape: s.latentShape },
    [EHS]: { data: arr(s.ehs), shape: s.ehsShape },
    y: { data: arr(y), shape: [...op.outputShape] },
    ...denoiserFeeds(den, s.nets.unet!, s.prior.schedule, t, dtype),
  };
}

Deno.test("whole-loss graph on the built-in model equals the closed forms (float64 to 1e-9; float32; fallback; forwards once)", async () => {
  const s = await setup();
  const pool = new SessionPool({ threads: 2 });
  const { model } = s;
  const nets64: PriorNetworks = {
    ...s.nets,
    unet: {
      ...s.nets.unet!,
      source: { key: "exact-unet-f64", bytes: unetGraph(model, "epsilon", "float64") },
    },
    decoder: {
      ...s.nets.decoder,
      source: { key: "exact-decoder-f64", bytes: decoderGraph(model, "float64") },
    },
  };
  const n = s.latentShape.reduce((a, b) => a * b, 1);
  const worst = { f64: 0, z32: 0, c32: 0, fallback: 0 };
  for (const c of CASES) {
    const op = await createOperator(builtinRegistry(), c.spec, IMG, 0);
    const m = op.outputShape.reduce((a, b) => a * b, 1);
    const y = normals(m, `y-${c.spec}`, 0.1).map((v) => Math.fround(0.5 + v));
    const g64 = await buildLoss(s, op, c, nets64, "float64", pool, `exact/${c.spec}/f64`);
    const g32 = await buildLoss(s, op, c, s.nets, "float32", pool, `exact/${c.spec}/f32`);
    const { exportOnnx: _no, ...tsOnly } = op;
    const gfb = await buildLoss(s, tsOnly, c, s.nets, "float32", pool, `exact/${c.spec}/fallback`);
    assert.ok(gfb.lg.usesFallback && !g32.lg.usesFallback);
    assert.deepEqual(offDeviceNodes(g32.lg.graph.vjpGraph.model), []);
    for (const t of [999, 437, 20]) {
      const mom = modelMoments(model, embeddingTheta(model, s.ehs));
      const ab = exactSchedule().alphasCumprod[t];
      const xi = normals(n, `xi-${t}`);
      const zt = Float64Array.from(
        mom.mu,
        (mu, i) => Math.fround(Math.sqrt(ab) * mu + Math.sqrt(ab * mom.lambda[i] + 1 - ab) * xi[i]),
      );
      const ref = closedForm(s, op, c, zt, t, y);
      const label = `${c.spec} t=${t}`;
      // float64: the whole chain to 1e-9
      const r64 = await g64.lg.lossAndGrad(feeds(s, g64.den, zt, t, y, op, "float64"));
      const e64 = Math.max(
        Math.abs(r64.value - ref.loss) / ref.loss,
        relErr(r64.grads.z_t.data, ref.gz),
        relErr(r64.grads[EHS].data, ref.gc),
      );
      worst.f64 = Math.max(worst.f64, e64);
      assert.ok(e64 <= 1e-9, `${label} float64: ${e64.toExponential(2)}`);
      // float32: the prior's own networks
      const r32 = await g32.lg.lossAndGrad(feeds(s, g32.den, zt, t, y, op, "float32"));
      const ez = relErr(r32.grads.z_t.data, ref.gz), ec = relErr(r32.grads[EHS].data, ref.gc);
      worst.z32 = Math.max(worst.z32, ez);
      worst.c32 = Math.max(worst.c32, ec);
      assert.ok(Math.abs(r32.value - ref.loss) / ref.loss <= 1e-5, `${label} float32 loss`);
      assert.ok(
        ez <= 1e-5 && ec <= 2e-4,
        `${label} float32: z ${ez.toExponential(2)} c ${ec.toExponential(2)}`,
      );
      // the chained fallback: the same numbers as the whole graph
      const rfb = await gfb.lg.lossAndGrad(feeds(s, gfb.den, zt, t, y, op, "float32"));
      const ef = Math.max(
        relErr(rfb.grads.z_t.data, r32.grads.z_t.data),
        relErr(rfb.grads[EHS].data, r32.grads[EHS].data),
      );
      worst.fallback = Math.max(worst.fallback, ef);
      assert.ok(ef <= 1e-5, `${label} fallback vs whole: ${ef.toExponential(2)}`);
    }
    // one run per step; every network's forward once per step
    const st = g32.lg.stats();
    assert.deepEqual(st.runs, { forward: 0, vjp: 3, phase1: 0, phase2: 0 });
    assert.deepEqual(st.forwards, { unet: 3, vae_decoder: 3 });
    assert.deepEqual(gfb.lg.stats().forwards, { unet: 3, vae_decoder: 3 });
  }
  console.log(
    `worst: float64 ${worst.f64.toExponential(2)}, float32 ∂z ${worst.z32.toExponential(2)} ` +
      `∂c ${worst.c32.toExponential(2)}, fallback ${worst.fallback.toExponential(2)}`,
  );
  await pool.release();
});
