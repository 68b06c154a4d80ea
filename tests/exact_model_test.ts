import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { streams } from "../core/rng.ts";
import {
  choleskySolve,
  consistencyMap,
  decode64,
  denoiserVjp,
  diagonalProblem,
  embeddingForTheta,
  embeddingGradient,
  encode64,
  evidenceGainFraction,
  exactSchedule,
  expectedPriorScoreTheta,
  type LatentLayout,
  latentLayout,
  LATINO_TIMESTEPS,
  latinoMoments,
  type LinearOperator64,
  linearOperator64,
  logEvidence,
  maskGramDiagonal,
  maximiseEvidence,
  posteriorDiagonal,
  posteriorMeanCG,
  posteriorSampleCG,
  posteriorVarianceCG,
  type PriorMoments,
  priorMoments,
  thetaFromEmbedding,
  tweedie,
} from "../plugins/builtin-gaussian/closed_form.ts";
import {
  buildExactModelFiles,
  exactModelFromFiles,
  VAE_LOGVAR,
  writeExactModelFolder,
} from "../plugins/builtin-gaussian/emit.ts";
import {
  createExactModel,
  embedIds,
  type ExactModel,
  modelMoments,
  promptIds,
  promptTheta,
} from "../plugins/builtin-gaussian/model.ts";
import {
  DEFAULT_SPECTRUM,
  DEFAULT_THETA,
  NEUTRAL_WORDS,
  WORD_EFFECTS,
} from "../plugins/builtin-gaussian/params.ts";
import {
  bpeSymbols,
  mergeRanks,
  referenceTokenize,
  wordSymbols,
} from "../plugins/builtin-gaussian/bpe_vocab.ts";
import { transform } from "../core/onnx/vjp/transform.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { ClipTokenizer } from "../core/pipeline/tokenizer.ts";
import { createOperator, PluginRegistry } from "../core/registry.ts";
import { operatorPlugins } from "../operators/mod.ts";
import type { BlurOperator } from "../operators/blur.ts";
import { directoryFiles, memoryFiles } from "../core/pipeline/files.ts";

// ---------------------------------------------------------------------------------------------
// helpers

const H = 16, W = 24;
const PROMPTS = [
  "",
  "a sharp photo of a brick wall",
  "a blurry dark red photo",
  "grayscale smooth image",
];
const TIMESTEPS = [0, 1, 124, 499, 874, 999];

function session(
  files: Map<string, Uint8Array | string>,
  rel: string,
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(files.get(rel) as Uint8Array);
}

function f32(shape: number[], data: ArrayLike<number>): ort.Tensor {
  return new ort.Tensor("float32", Float32Array.from(data), shape);
}

/** max|a − b| / max|b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let e = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    n = Math.max(n, Math.abs(b[i]));
  }
  return e / (n || 1);
}

/** Elementwise |a − b| ≤ rtol·|b| + atol. */
function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
) {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - b[i]) <= rtol * Math.abs(b[i]) + atol;
    if (!ok) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

function randomImage(n: number, seed: string): Float64Array {
  const r = streams(7).get(seed);
  return Float64Array.from({ length: n }, () => Math.max(-1, Math.min(1, 0.5 * r.normal())));
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** Dense matrix (rows × cols, row-major) of a linear map given on unit vectors. */
function denseOf(
  f: (v: Float64Array) => Float64Array,
  cols: number,
): { M: Float64Array; rows: number } {
  let rows = 0;
  let M = new Float64Array(0);
  for (let j = 0; j < cols; j++) {
    const e = new Float64Array(cols);
    e[j] = 1;
    const col = f(e);
    if (j === 0) {
      rows = col.length;
      M = new Float64Array(rows * cols);
    }
    for (let i = 0; i < rows; i++) M[i * cols + j] = col[i];
  }
  return { M, rows };
}

function matT(M: Float64Array, r: number, c: number): Float64Array {
  const o = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) o[j * r + i] = M[i * c + j];
  return o;
}

function matMul(A: Float64Array, B: Float64Array, m: number, k: number, n: number): Float64Array {
  const o = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a !== 0) { for (let j = 0; j < n; j++) o[i * n + j] += a * B[p * n + j]; }
    }
  }
  return o;
}

function matVec(A: Float64Array, x: ArrayLike<number>, m: number, n: number): Float64Array {
  const o = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += A[i * n + j] * x[j];
    o[i] = s;
  }
  return o;
}

/** Inverse of an SPD matrix by Cholesky solves. */
function spdInverse(M: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const e = new Float64Array(n);
    e[j] = 1;
    const x = choleskySolve(M, e, n);
    assert.ok(x, "matrix is SPD");
    for (let i = 0; i < n; i++) inv[i * n + j] = x![i];
  }
  return inv;
}

/**
 * Half-sample symmetric 1-D blur [1,2,1]/4 as a dense n×n matrix: x_{−1} = x_0, x_n = x_{n−1}.
 */
function symBlur1d(n: number): Float64Array {
  const B = new Float64Array(n * n);
  const at = (i: number) => (i < 0 ? -i - 1 : i >= n ? 2 * n - 1 - i : i);
  for (let i = 0; i < n; i++) {
    for (const [o, w] of [[-1, 0.25], [0, 0.5], [1, 0.25]]) B[i * n + at(i + o)] += w;
  }
  return B;
}

/** The 3-channel blur (same separable kernel per channel) as a float64 operator, plus its h. */
function symBlur(
  h: number,
  w: number,
): { op: LinearOperator64; hdiag: Float64Array; dense: Float64Array } {
  const BH = symBlur1d(h), BW = symBlur1d(w);
  const n = h * w;
  const apply = (x: Float64Array, t: boolean) => {
    const out = new Float64Array(x.length);
    for (let c = 0; c < 3; c++) {
      const X = x.subarray(c * n, (c + 1) * n);
      const bh = t ? matT(BH, h, h) : BH, bw = t ? matT(BW, w, w) : BW;
      const Y = matMul(matMul(bh, X, h, h, w), matT(bw, w, w), h, w, w);
      out.set(Y, c * n);
    }
    return out;
  };
  const op = {
    forward: (x: Float64Array) => apply(x, false),
    adjoint: (y: Float64Array) => apply(y, true),
  };
  // h_{u,v} = (1 + cos(πu/h))/2 · (1 + cos(πv/w))/2 (DCT-II eigenvalues of this kernel)
  const hdiag = new Float64Array(n);
  for (let u = 0; u < h; u++) {
    for (let v = 0; v < w; v++) {
      hdiag[u * w + v] = 0.25 * (1 + Math.cos(Math.PI * u / h)) * (1 + Math.cos(Math.PI * v / w));
    }
  }
  const dense = denseOf((x) => apply(x, false), 3 * n).M;
  return { op, hdiag, dense };
}

/** Draw z ~ N(μ, Λ) and a blurred noisy measurement y on [0,1]. */
function simulate(
  l: LatentLayout,
  mom: PriorMoments,
  op: LinearOperator64,
  sigmaY: number,
  seed: string,
): { z: Float64Array; y: Float64Array } {
  const r = streams(11).get(seed);
  const z = mom.mu.map((m, i) => m + Math.sqrt(mom.lambda[i]) * r.normal());
  const x01 = decode64(z, l).map((v) => (v + 1) / 2);
  const y = (op.forward(x01) as Float64Array).map((v) => v + sigmaY * r.normal());
  return { z, y };
}

const model = createExactModel({ imageShape: [1, 3, H, W] });
const files = buildExactModelFiles(model);

// ---------------------------------------------------------------------------------------------
// Autoencoder

Deno.test("exact model: VAE graphs equal the closed forms; lossless E is orthonormal, D∘E = I", async () => {
  const l = model.layout;
  const enc = await session(files, "vae_encoder/model.onnx");
  const dec = await session(files, "vae_decoder/model.onnx");
  const x = randomImage(3 * H * W, "x");
  const z64 = encode64(x, l);
  // float64: orthonormal and invertible
  assert.ok(Math.abs(norm(z64) - norm(x)) < 1e-12 * norm(x));
  assert.ok(relErr(decode64(z64, l), x) < 1e-14);
  // ONNX
  const lp = (await enc.run({ sample: f32([1, 3, H, W], x) })).latent_parameters;
  assert.deepEqual(lp.dims, [1, 6, H, W]);
  const data = lp.data as Float32Array;
  assert.ok(relErr(data.subarray(0, z64.length), z64) < 1e-6, "encoder vs encode64");
  assert.ok(data.subarray(z64.length).every((v) => v === VAE_LOGVAR), "logvar channel");
  const xs = (await dec.run({ latent_sample: f32([1, 3, H, W], z64) })).sample;
  assert.deepEqual(xs.dims, [1, 3, H, W]);
  assert.ok(relErr(xs.data as Float32Array, x) < 1e-6, "D∘E = I in float32");
  // batch of two images
  const x2 = randomImage(3 * H * W, "x2");
  const both = Float32Array.from([...x, ...x2]);
  const lp2 = (await enc.run({ sample: new ort.Tensor("float32", both, [2, 3, H, W]) }))
    .latent_parameters
    .data as Float32Array;
  assert.ok(relErr(lp2.subarray(6 * H * W, 9 * H * W), encode64(x2, l)) < 1e-6, "batch item 2");
});

Deno.test("exact model: lossy VAE keeps the low-frequency block; D∘E is an orthogonal projection", async () => {
  const m = createExactModel({ imageShape: [1, 3, H, W], lossy: [5, 7] });
  const f = buildExactModelFiles(m);
  const l = m.layout;
  assert.deepEqual([l.keepH, l.keepW], [5, 7]);
  assert.deepEqual(createExactModel({ imageShape: [1, 3, H, W], lossy: 0.5 }).layout.keepW, 12);
  const x = randomImage(3 * H * W, "x"), y = randomImage(3 * H * W, "y");
  const px = decode64(encode64(x, l), l), py = decode64(encode64(y, l), l);
  // P² = P, Pᵀ = P, ‖Px‖ = ‖E x‖ ≤ ‖x‖, E∘D = I on latents
  assert.ok(relErr(decode64(encode64(px, l), l), px) < 1e-13, "idempotent");
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);
  assert.ok(Math.abs(dot(px, y) - dot(x, py)) < 1e-12 * norm(x) * norm(y), "symmetric");
  assert.ok(Math.abs(norm(encode64(x, l)) - norm(px)) < 1e-12 * norm(x));
  assert.ok(norm(px) < norm(x));
  const zr = randomImage(3 * 5 * 7, "z");
  assert.ok(relErr(encode64(decode64(zr, l), l), zr) < 1e-13, "E∘D = I");
  const enc = await session(f, "vae_encoder/model.onnx"),
    dec = await session(f, "vae_decoder/model.onnx");
  const lp = (await enc.run({ sample: f32([1, 3, H, W], x) })).latent_parameters;
  assert.deepEqual(lp.dims, [1, 6, 5, 7]);
  assert.ok(relErr((lp.data as Float32Array).subarray(0, 105), encode64(x, l)) < 1e-6);
  const xs = (await dec.run({ latent_sample: f32([1, 3, 5, 7], zr) })).sample.data as Float32Array;
  assert.ok(relErr(xs, decode64(zr, l)) < 1e-6);
  const cfg = JSON.parse(f.get("vae_decoder/config.json") as string);
  assert.deepEqual(cfg.latent_shape, [3, 5, 7]);
  assert.equal(cfg.scaling_factor, 1);
});

// ---------------------------------------------------------------------------------------------
// Text encoder and tokenizer

Deno.test("exact model: text encoder is the embedding lookup; prompts change θ as documented", async () => {
  const te = await session(files, "text_encoder/model.onnx");
  const D = model.text.readout.hiddenSize;
  const thetas: Float64Array[] = [];
  for (const p of PROMPTS) {
    const ids = promptIds(model, p);
    assert.equal(ids.length, 77);
    const out = await te.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, 77]),
    });
    const c = embedIds(model, ids);
    assert.deepEqual(out.last_hidden_state.dims, [1, 77, D]);
    assert.deepEqual(Array.from(out.last_hidden_state.data as Float32Array), Array.from(c));
    const pooled = out.pooler_output.data as Float32Array;
    const mean = Array.from(
      { length: D },
      (_, d) => c.reduce((s, v, i) => (i % D === d ? s + v : s), 0) / 77,
    );
    assert.ok(relErr(pooled, mean) < 1e-6);
    thetas.push(thetaFromEmbedding(out.last_hidden_state.data as Float32Array, model.text.readout));
  }
  // The empty prompt gives θ0; word effects add up.
  assertClose(thetas[0], DEFAULT_THETA, 1e-7, 0, "θ(empty)");
  for (let i = 1; i < thetas.length; i++) {
    assert.ok(
      relErr(thetas[i], thetas[0]) > 1e-3,
      `prompt ${JSON.stringify(PROMPTS[i])} changes θ`,
    );
  }
  const t0 = promptTheta(model, "");
  const sharp = promptTheta(model, "a sharp photo");
  const blurry = promptTheta(model, "a blurry photo");
  const bright = promptTheta(model, "bright"), dark = promptTheta(model, "dark");
  const photo = promptTheta(model, "a photo of a face");
  for (let k = 0; k < 3; k++) {
    assert.ok(sharp[3 + k] < t0[3 + k] && blurry[3 + k] > t0[3 + k], "β: sharp < plain < blurry");
  }
  assert.ok(bright[6] > t0[6] && dark[6] < t0[6], "m_1: dark < plain < bright");
  assertClose(photo, t0, 1e-7, 1e-7, "neutral words");
  const twice = promptTheta(model, "sharp sharp");
  for (let j = 0; j < 9; j++) {
    assert.ok(Math.abs(twice[j] - t0[j] - 2 * (sharp[j] - t0[j])) < 1e-5, "word effects add");
    assert.ok(Math.abs(sharp[j] - t0[j] - model.text.shifts.sharp[j]) < 1e-5, "Δθ(sharp)");
  }
});

Deno.test("exact model: tokenizer files are valid CLIP BPE; every word is one token; same ids as @huggingface/tokenizers", async () => {
  const ranks = mergeRanks(model.text.merges);
  for (const w of [...NEUTRAL_WORDS, ...Object.keys(WORD_EFFECTS)]) {
    assert.deepEqual(bpeSymbols(wordSymbols(w), ranks), [w + "</w>"], w);
  }
  const vocab = JSON.parse(files.get("tokenizer/vocab.json") as string);
  assert.equal(Object.keys(vocab).length, model.text.vocab.length, "no duplicate tokens");
  assert.equal(vocab["<|startoftext|>"], model.text.bosId);
  assert.equal(vocab["<|endoftext|>"], model.text.eosId);
  assert.ok((files.get("tokenizer/merges.txt") as string).startsWith("#version: 0.2\n"));
  const tok = await ClipTokenizer.load(memoryFiles("exact", files));
  const long = Array.from({ length: 100 }, (_, i) => (i % 3 ? "sharp" : "photo")).join(" ");
  for (
    const p of [
      ...PROMPTS,
      "A Blurry, DARK red-brick wall!!",
      "unknownword xyz 123 héllo wörld ✓",
      "  spaces\tand\nnewlines  ",
      long,
    ]
  ) {
    assert.deepEqual(Array.from(tok.encode(p)), referenceTokenize(p, model.text), p);
  }
  assert.equal(tok.encode(long).length, 77);
});

// ---------------------------------------------------------------------------------------------
// UNets

Deno.test("exact model: unet (ε) and consistency_unet (G) equal the closed forms", async () => {
  const unet = await session(files, "unet/model.onnx");
  const cu = await session(files, "consistency_unet/model.onnx");
  const l = model.layout;
  let worstEps = 0, worstG = 0;
  for (const p of PROMPTS) {
    const c = embedIds(model, promptIds(model, p));
    const mom = modelMoments(model, promptTheta(model, p));
    const z0 = mom.mu.map((m, i) => m + Math.sqrt(mom.lambda[i]) * Math.sin(1.3 * i + 0.2));
    for (const t of TIMESTEPS) {
      const { alphasCumprod } = exactSchedule();
      const zt = z0.map((v, i) =>
        Math.sqrt(alphasCumprod[t]) * v + Math.sqrt(1 - alphasCumprod[t]) * Math.cos(0.7 * i)
      );
      const feeds = {
        sample: f32([1, 3, l.keepH, l.keepW], zt),
        timestep: new ort.Tensor("float32", new Float32Array([t]), []),
        encoder_hidden_states: f32([1, 77, 16], c),
      };
      // closed forms on the float32-rounded input the graph sees
      const zt32 = Float32Array.from(zt);
      const eps = (await unet.run(feeds)).out_sample.data as Float32Array;
      const g = (await cu.run(feeds)).out_sample.data as Float32Array;
      worstEps = Math.max(worstEps, relErr(eps, tweedie(zt32, t, mom).eps));
      worstG = Math.max(worstG, relErr(g, consistencyMap(zt32, t, mom)));
    }
  }
  console.log(
    `ONNX vs closed form, max relative error: eps ${worstEps.toExponential(2)}, G ${
      worstG.toExponential(2)
    }`,
  );
  assert.ok(worstEps < 1e-5 && worstG < 1e-5);
});

Deno.test("exact model: UNets with a batch of two embeddings and a non-unit scale", async () => {
  const m = createExactModel({ imageShape: [1, 3, 8, 12], scale: 0.7, lossy: [6, 9] });
  const f = buildExactModelFiles(m);
  const unet = await session(f, "unet/model.onnx");
  const cu = await session(f, "consistency_unet/model.onnx");
  const [p1, p2] = ["a sharp photo", "a blurry dark photo"];
  const c = Float32Array.from([...embedIds(m, promptIds(m, p1)), ...embedIds(m, promptIds(m, p2))]);
  const n = 3 * 6 * 9;
  const z = Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(0.37 * i) * 3);
  const feeds = {
    sample: new ort.Tensor("float32", z, [2, 3, 6, 9]),
    timestep: new ort.Tensor("float32", new Float32Array([374]), []),
    encoder_hidden_states: new ort.Tensor("float32", c, [2, 77, 16]),
  };
  const eps = (await unet.run(feeds)).out_sample.data as Float32Array;
  const g = (await cu.run(feeds)).out_sample.data as Float32Array;
  for (const [b, p] of [[0, p1], [1, p2]] as const) {
    const mom = modelMoments(m, promptTheta(m, p));
    const zb = z.subarray(b * n, (b + 1) * n);
    assert.ok(relErr(eps.subarray(b * n, (b + 1) * n), tweedie(zb, 374, mom).eps) < 1e-5);
    assert.ok(relErr(g.subarray(b * n, (b + 1) * n), consistencyMap(zb, 374, mom)) < 1e-5);
  }
  // s enters λ as s² and μ as s
  const mom = modelMoments(m, DEFAULT_THETA);
  const mom1 = priorMoments(DEFAULT_THETA, { ...m.layout, scale: 1 }, m.spectrum);
  assert.ok(Math.abs(mom.lambda[5] / mom1.lambda[5] - 0.49) < 1e-12);
  assert.ok(Math.abs(mom.mu[0] / mom1.mu[0] - 0.7) < 1e-12);
  const cfg = JSON.parse(f.get("consistency_unet/config.json") as string);
  assert.equal(cfg.prediction_type, "sample");
  assert.equal(JSON.parse(f.get("vae_encoder/config.json") as string).scaling_factor, 0.7);
});

Deno.test("exact model: closed-form denoiser VJPs match finite differences (float64)", () => {
  const m = createExactModel({ imageShape: [1, 3, 6, 8] });
  const l = m.layout, sp = m.spectrum, n = 3 * 6 * 8;
  const theta = promptTheta(m, "a sharp red photo");
  const w = Float64Array.from({ length: n }, (_, i) => Math.cos(0.9 * i));
  const fns = {
    eps: (z: ArrayLike<number>, th: ArrayLike<number>, t: number) =>
      tweedie(z, t, priorMoments(th, l, sp)).eps,
    z0: (z: ArrayLike<number>, th: ArrayLike<number>, t: number) =>
      tweedie(z, t, priorMoments(th, l, sp)).z0,
    G: (z: ArrayLike<number>, th: ArrayLike<number>, t: number) =>
      consistencyMap(z, t, priorMoments(th, l, sp)),
  };
  const dotw = (v: Float64Array) => v.reduce((s, x, i) => s + x * w[i], 0);
  for (const t of [124, 624, 999]) {
    const mom = priorMoments(theta, l, sp);
    const zt = mom.mu.map((mu, i) => 0.5 * mu + Math.sqrt(mom.lambda[i] + 1) * Math.sin(i));
    for (const out of ["eps", "z0", "G"] as const) {
      const f = fns[out];
      const vjp = denoiserVjp(out, zt, t, theta, l, sp, w);
      const h = 1e-6;
      for (let j = 0; j < 9; j++) {
        const tp = Float64Array.from(theta), tm = Float64Array.from(theta);
        tp[j] += h;
        tm[j] -= h;
        const fd = (dotw(f(zt, tp, t)) - dotw(f(zt, tm, t))) / (2 * h);
        assert.ok(
          Math.abs(fd - vjp.dtheta[j]) < 1e-6 * (Math.abs(fd) + 1),
          `${out} t=${t} θ${j}: ${fd} vs ${vjp.dtheta[j]}`,
        );
      }
      for (const i of [0, 17, 100]) {
        const zp = Float64Array.from(zt), zm = Float64Array.from(zt);
        zp[i] += 1e-6;
        zm[i] -= 1e-6;
        const fd = (dotw(f(zp, theta, t)) - dotw(f(zm, theta, t))) / 2e-6;
        assert.ok(Math.abs(fd - vjp.dz[i]) < 1e-6 * (Math.abs(fd) + 1), `${out} ∂z`);
      }
    }
  }
});

Deno.test("exact model: the VJP transform of both UNets gives the closed-form gradients (sample and embedding)", async () => {
  const m = createExactModel({ imageShape: [1, 3, 8, 12] });
  const f = buildExactModelFiles(m);
  const l = m.layout, n = 3 * 8 * 12;
  const prompt = "a blurry bright photo";
  const c = embedIds(m, promptIds(m, prompt));
  const theta = promptTheta(m, prompt);
  const mom = modelMoments(m, theta);
  const zt = Float32Array.from(
    mom.mu,
    (mu, i) => 0.3 * mu + Math.sqrt(mom.lambda[i] + 0.5) * Math.sin(0.7 * i),
  );
  const w = Float32Array.from({ length: n }, (_, i) => Math.cos(1.1 * i));
  for (const [folder, out] of [["unet", "eps"], ["consistency_unet", "G"]] as const) {
    const { model: vjpModel } = await transform(
      decodeModel(f.get(`${folder}/model.onnx`) as Uint8Array),
      {
        of: ["out_sample"],
        wrt: ["sample", "encoder_hidden_states"],
        dims: { batch: 1 },
      },
    );
    const s = await ort.InferenceSession.create(encodeModel(vjpModel));
    for (const t of [124, 749]) {
      const res = await s.run({
        sample: f32([1, 3, 8, 12], zt),
        timestep: new ort.Tensor("float32", new Float32Array([t]), []),
        encoder_hidden_states: f32([1, 77, 16], c),
        "out_sample.cotangent": f32([1, 3, 8, 12], w),
      });
      const want = denoiserVjp(out, zt, t, theta, l, m.spectrum, w);
      const wantC = embeddingGradient(want.dtheta, 77, m.text.readout);
      const ez = relErr(res["sample.grad"].data as Float32Array, want.dz);
      const ec = relErr(res["encoder_hidden_states.grad"].data as Float32Array, wantC);
      console.log(
        `${folder} t=${t}: VJP vs closed form, ∂z rel ${ez.toExponential(1)}, ∂c rel ${
          ec.toExponential(1)
        }`,
      );
      assert.ok(ez < 1e-5 && ec < 1e-4);
    }
  }
});

Deno.test("exact model: G is the probability-flow ODE solved to ᾱ = 1 (RK4, float64)", () => {
  // dz/dℓ = ½ z + ½ ∇log p_ℓ(z), ℓ = log ᾱ, ∇log p = −(z − √ᾱ μ)/(ᾱλ + 1 − ᾱ); integrate from
  // ℓ_t to 0 on a grid geometric in −ℓ (the ODE is stiff near ℓ = 0 for small λ).
  const { alphasCumprod } = exactSchedule();
  let worst = 0;
  for (const t of [999, 499, 124]) {
    for (const lam of [1e-6, 1e-5, 1e-3, 1, 1e3, 1e5]) {
      for (const [mu, k] of [[0, 1.3], [0.4, -0.8]]) {
        const ab = alphasCumprod[t];
        const zt = Math.sqrt(ab) * mu + k * Math.sqrt(ab * lam + 1 - ab);
        const f = (l: number, z: number) => {
          const a = Math.exp(l);
          return 0.5 * z - 0.5 * (z - Math.sqrt(a) * mu) / (a * lam - Math.expm1(l));
        };
        const N = 20000, tau0 = -Math.log(ab), tauMin = 1e-18;
        const r = Math.pow(tauMin / tau0, 1 / N);
        let z = zt, l = -tau0;
        for (let j = 0; j <= N; j++) {
          const lNext = j === N ? 0 : -tau0 * Math.pow(r, j + 1);
          const h = lNext - l;
          const k1 = f(l, z), k2 = f(l + h / 2, z + h * k1 / 2), k3 = f(l + h / 2, z + h * k2 / 2);
          const k4 = f(lNext, z + h * k3);
          z += (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4);
          l = lNext;
        }
        const g =
          consistencyMap([zt], t, { lambda: Float64Array.of(lam), mu: Float64Array.of(mu) })[0];
        worst = Math.max(worst, Math.abs(z - g) / Math.sqrt(lam));
      }
    }
  }
  console.log(`|ODE − G|/√λ ≤ ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-8);
});

Deno.test("exact model: Tweedie ẑ0 and ε̂ are the posterior means of z0 and ε given z_t", () => {
  const mom = modelMoments(model, promptTheta(model, "a sharp photo"));
  const { alphasCumprod } = exactSchedule();
  for (const t of [10, 124, 624, 999]) {
    const ab = alphasCumprod[t];
    const zt = mom.mu.map((m, i) => Math.sqrt(ab) * m + Math.cos(i));
    const tw = tweedie(zt, t, mom);
    // Bayes in precision form: z0 | z_t ~ N(m, v), 1/v = 1/λ + ᾱ/(1−ᾱ), m = v(μ/λ + √ᾱ z_t/(1−ᾱ))
    const post = zt.map((z, i) => {
      const lam = mom.lambda[i];
      const v = 1 / (1 / lam + ab / (1 - ab));
      return v * (mom.mu[i] / lam + Math.sqrt(ab) * z / (1 - ab));
    });
    assertClose(tw.z0, post, 1e-9, 1e-12, `ẑ0 at t=${t}`);
    const epsPost = zt.map((z, i) => (z - Math.sqrt(ab) * post[i]) / Math.sqrt(1 - ab));
    assertClose(tw.eps, epsPost, 1e-7, 1e-9, `ε̂ at t=${t}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Posteriors, evidence, LATINO

const small = latentLayout([1, 3, 4, 6]);
const smallModel = createExactModel({ imageShape: [1, 3, 4, 6] });

Deno.test("exact model: diagonal posterior and evidence equal dense Gaussian algebra (symmetric blur)", () => {
  const l = small, n = 3 * 4 * 6, sigmaY = 0.02;
  const blur = symBlur(4, 6);
  // The symmetric-boundary blur is diagonal in the DCT basis with the expected h.
  const Dm = denseOf((z) => decode64(z, l), n).M; // image ← latent
  const AD = matMul(blur.dense, Dm, n, n, n);
  const M = matMul(matT(Dm, n, n), AD, n, n, n); // Dᵀ A D
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const want = i === j ? blur.hdiag[i % 24] : 0;
      assert.ok(Math.abs(M[i * n + j] - want) < 1e-14, `DᵀAD[${i},${j}]`);
    }
  }
  const theta = promptTheta(smallModel, "a sharp photo");
  const mom = modelMoments(smallModel, theta);
  const { y } = simulate(l, mom, blur.op, sigmaY, "diag");
  const prob = diagonalProblem(y, blur.hdiag, sigmaY, l);
  const post = posteriorDiagonal(prob, mom);
  // dense: P = DᵀAᵀAD/σ′² + Λ⁻¹, b = DᵀAᵀy′/σ′² + Λ⁻¹μ, y′ = 2y − A1
  const s2 = (2 * sigmaY) ** 2;
  const ones = blur.op.forward(new Float64Array(n).fill(1)) as Float64Array;
  const yp = y.map((v, i) => 2 * v - ones[i]);
  const P = matMul(matT(AD, n, n), AD, n, n, n).map((v) => v / s2);
  for (let i = 0; i < n; i++) P[i * n + i] += 1 / mom.lambda[i];
  const b = matVec(matT(AD, n, n), yp, n, n).map((v, i) => v / s2 + mom.mu[i] / mom.lambda[i]);
  const mean = choleskySolve(P, b, n)!;
  const cov = spdInverse(P, n);
  assertClose(post.mean, mean, 1e-9, 1e-9, "posterior mean");
  assertClose(
    post.variance,
    Array.from({ length: n }, (_, i) => cov[i * n + i]),
    1e-9,
    0,
    "posterior variance",
  );
  // evidence: y′ ~ N(A D μ, A D Λ Dᵀ Aᵀ + σ′² I), dense log-density
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += AD[i * n + k] * mom.lambda[k] * AD[j * n + k];
      S[i * n + j] = s + (i === j ? s2 : 0);
    }
  }
  const r = yp.map((v, i) => v - matVec(AD, mom.mu, n, n)[i]);
  const Sr = choleskySolve(S, r, n)!;
  let logdet = 0;
  { // log det by Cholesky diagonal
    const L = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let s = S[i * n + j];
        for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
        L[i * n + j] = i === j ? Math.sqrt(s) : s / L[j * n + j];
      }
      logdet += 2 * Math.log(L[i * n + i]);
    }
  }
  const dense = -0.5 *
    (n * Math.log(2 * Math.PI) + logdet + r.reduce((s, v, i) => s + v * Sr[i], 0));
  const ev = logEvidence(theta, prob, smallModel.spectrum).value;
  assert.ok(Math.abs(ev - dense) < 1e-9 * Math.abs(dense), `evidence ${ev} vs dense ${dense}`);
});

Deno.test("exact model: evidence gradient and Hessian match finite differences; θ* is a maximum", () => {
  const l = latentLayout([1, 3, 12, 16]);
  const m = createExactModel({ imageShape: [1, 3, 12, 16], refSize: 64 });
  const blur = symBlur(12, 16);
  const thetaTrue = promptTheta(m, "a sharp bright photo");
  const { y } = simulate(l, modelMoments(m, thetaTrue), blur.op, 0.01, "evidence");
  const prob = diagonalProblem(y, blur.hdiag, 0.01, l);
  const sp = m.spectrum;
  const theta0 = promptTheta(m, "");
  const d = logEvidence(theta0, prob, sp);
  const step = 1e-5;
  let gErr = 0, hErr = 0, gMax = 0, hMax = 0;
  for (let j = 0; j < 9; j++) {
    const tp = Float64Array.from(theta0), tm = Float64Array.from(theta0);
    tp[j] += step;
    tm[j] -= step;
    const ep = logEvidence(tp, prob, sp), em = logEvidence(tm, prob, sp);
    gErr = Math.max(gErr, Math.abs((ep.value - em.value) / (2 * step) - d.gradient[j]));
    gMax = Math.max(gMax, Math.abs(d.gradient[j]));
    for (let i = 0; i < 9; i++) {
      hErr = Math.max(
        hErr,
        Math.abs((ep.gradient[i] - em.gradient[i]) / (2 * step) - d.hessian[i * 9 + j]),
      );
      hMax = Math.max(hMax, Math.abs(d.hessian[i * 9 + j]));
    }
  }
  console.log(
    `evidence FD: gradient rel ${(gErr / gMax).toExponential(2)}, Hessian rel ${
      (hErr / hMax).toExponential(2)
    }`,
  );
  assert.ok(gErr / gMax < 1e-6 && hErr / hMax < 1e-6);
  // embedding gradient: ∂/∂c of log p(y|θ(c))
  const c0 = embedIds(m, promptIds(m, ""));
  const gc = embeddingGradient(d.gradient, 77, m.text.readout);
  const dir = c0.map((_, i) => Math.sin(i));
  const fd =
    (logEvidence(thetaFromEmbedding(c0.map((v, i) => v + 1e-4 * dir[i]), m.text.readout), prob, sp)
      .value -
      logEvidence(thetaFromEmbedding(c0.map((v, i) => v - 1e-4 * dir[i]), m.text.readout), prob, sp)
        .value) / 2e-4;
  const an = gc.reduce((s, v, i) => s + v * dir[i], 0);
  assert.ok(Math.abs(fd - an) < 1e-5 * Math.abs(an), `∇_c: ${fd} vs ${an}`);
  // θ* by Newton
  const best = maximiseEvidence(prob, sp, theta0);
  console.log(
    `θ*: ${Array.from(best.theta, (v) => v.toFixed(3)).join(" ")} (true ${
      Array.from(thetaTrue, (v) => v.toFixed(3)).join(" ")
    }), ‖∇‖ = ${best.gradientNorm.toExponential(1)}, ${best.iterations} iterations, gain ${
      (best.logEvidence - d.value).toFixed(2)
    } nats`,
  );
  assert.ok(best.converged && best.gradientNorm < 1e-6);
  assert.ok(best.logEvidence >= logEvidence(thetaTrue, prob, sp).value);
  for (let j = 0; j < 9; j++) {
    for (const s of [-1e-2, 1e-2]) {
      const t = Float64Array.from(best.theta);
      t[j] += s;
      assert.ok(logEvidence(t, prob, sp).value < best.logEvidence);
    }
  }
  assert.ok(Math.abs(evidenceGainFraction(best.theta, theta0, prob, sp) - 1) < 1e-9);
  assert.equal(evidenceGainFraction(theta0, theta0, prob, sp, best.theta), 0);
  // Fisher identity: E_post[∇_θ log p(z|θ)] = ∇_θ log p(y|θ), in closed form
  const fisher = expectedPriorScoreTheta(
    posteriorDiagonal(prob, modelMoments(m, theta0)),
    theta0,
    l,
    sp,
  );
  assert.ok(relErr(fisher, d.gradient) < 1e-9, `Fisher identity: ${relErr(fisher, d.gradient)}`);
  // the embedding that realises θ*
  const cStar = embeddingForTheta(best.theta, 77, m.text.readout);
  assertClose(thetaFromEmbedding(cStar, m.text.readout), best.theta, 1e-12, 1e-12, "θ(c*)");
});

Deno.test("exact model: LATINO moment recursion equals a float64 simulation of the pipeline", () => {
  const l = small, n = 3 * 4 * 6, sigmaY = 0.01, delta = 0.3;
  const blur = symBlur(4, 6);
  const mom = modelMoments(smallModel, promptTheta(smallModel, "a photo"));
  const { y } = simulate(l, mom, blur.op, sigmaY, "latino");
  const prob = diagonalProblem(y, blur.hdiag, sigmaY, l);
  const law = latinoMoments(prob, mom, { delta });
  // The pipeline in image space: x_init = Aᵀy′, z = E(x_init); per step: noise to t, G, decode,
  // prox (γAᵀA + I)u = γAᵀy′ + x with γ = δ(1−ᾱ)/σ′² (dense), encode.
  const { alphasCumprod } = exactSchedule();
  const ones = blur.op.forward(new Float64Array(n).fill(1)) as Float64Array;
  const yp = y.map((v, i) => 2 * v - ones[i]);
  const AtA = matMul(matT(blur.dense, n, n), blur.dense, n, n, n);
  const aty = matVec(matT(blur.dense, n, n), yp, n, n);
  const proxInv = LATINO_TIMESTEPS.map((t) => {
    const gamma = delta * (1 - alphasCumprod[t]) / (2 * sigmaY) ** 2;
    const M = AtA.map((v) => gamma * v);
    for (let i = 0; i < n; i++) M[i * n + i] += 1;
    return { gamma, inv: spdInverse(M, n) };
  });
  const run = (noise: () => number) => {
    let z = encode64(aty, l);
    LATINO_TIMESTEPS.forEach((t, s) => {
      const ab = alphasCumprod[t];
      const zt = z.map((v) => Math.sqrt(ab) * v + Math.sqrt(1 - ab) * noise());
      const x = decode64(consistencyMap(zt, t, mom), l);
      const rhs = x.map((v, i) => proxInv[s].gamma * aty[i] + v);
      z = encode64(matVec(proxInv[s].inv, rhs, n, n), l);
    });
    return z;
  };
  assertClose(run(() => 0), law.mean, 1e-10, 1e-12, "zero-noise output = propagated mean");
  const N = 400, r = streams(3).get("latino-test");
  const sum = new Float64Array(n), sq = new Float64Array(n);
  const outs: Float64Array[] = [];
  for (let k = 0; k < N; k++) outs.push(run(() => r.normal()));
  for (const o of outs) o.forEach((v, i) => (sum[i] += v));
  const mean = sum.map((v) => v / N);
  for (const o of outs) o.forEach((v, i) => (sq[i] += (v - mean[i]) ** 2));
  let ratio = 0, zmax = 0;
  for (let i = 0; i < n; i++) {
    ratio += sq[i] / (N - 1) / law.variance[i];
    zmax = Math.max(zmax, Math.abs(mean[i] - law.mean[i]) / Math.sqrt(law.variance[i] / N));
  }
  ratio /= n;
  const bound = 5 * Math.sqrt(2 / (N - 1)) / Math.sqrt(n);
  console.log(
    `LATINO variance: pooled s²/v = ${ratio.toFixed(4)} (bound ±${
      bound.toFixed(4)
    }), max |mean z| ${zmax.toFixed(2)}`,
  );
  assert.ok(Math.abs(ratio - 1) < bound);
  assert.ok(zmax < 5);
});

Deno.test("exact model: CG posterior (box inpainting) equals dense algebra; perturbation samples", async () => {
  const h = 6, w = 8, l = latentLayout([1, 3, h, w]), n = 3 * h * w, sigmaY = 0.02;
  const m = createExactModel({ imageShape: [1, 3, h, w] });
  const mask = new Float64Array(n).fill(1);
  for (let c = 0; c < 3; c++) {
    for (let i = 2; i < 4; i++) for (let j = 3; j < 6; j++) mask[(c * h + i) * w + j] = 0;
  }
  const op: LinearOperator64 = {
    forward: (x) => x.map((v, i) => v * mask[i]),
    adjoint: (y) => y.map((v, i) => v * mask[i]),
  };
  const mom = modelMoments(m, promptTheta(m, "a smooth photo"));
  const { y } = simulate(l, mom, op, sigmaY, "inpaint");
  const Dm = denseOf((z) => decode64(z, l), n).M;
  const MD = Dm.map((v, i) => v * mask[Math.floor(i / n)]);
  const s2 = (2 * sigmaY) ** 2;
  const P = matMul(matT(Dm, n, n), MD, n, n, n);
  const gram = Array.from({ length: n }, (_, i) => P[i * n + i]);
  assertClose(maskGramDiagonal(mask, l), gram, 1e-12, 1e-14, "diag(DᵀMD)");
  for (let i = 0; i < n * n; i++) P[i] /= s2;
  for (let i = 0; i < n; i++) P[i * n + i] += 1 / mom.lambda[i];
  const yp = y.map((v, i) => 2 * v - mask[i]);
  const b = matVec(matT(MD, n, n), yp, n, n).map((v, i) => v / s2 + mom.mu[i] / mom.lambda[i]);
  const dense = choleskySolve(P, b, n)!;
  const prob = { y, op, sigmaY, layout: l, gramDiagonal: maskGramDiagonal(mask, l) };
  const cg = await posteriorMeanCG(prob, mom);
  assertClose(cg.x, dense, 1e-8, 1e-10, "CG posterior mean");
  const cgPlain = await posteriorMeanCG({ ...prob, gramDiagonal: undefined }, mom);
  assertClose(cgPlain.x, dense, 1e-8, 1e-10, "CG posterior mean, default preconditioner");
  const cov = spdInverse(P, n);
  const idx = [0, 5, 27, 50, 100, 143];
  const v = await posteriorVarianceCG(prob, mom, idx);
  assertClose(v, idx.map((i) => cov[i * n + i]), 1e-8, 0, "CG posterior variances");
  // perturbation samples: (x − m)ᵀ P (x − m) ~ χ²_n for exact posterior samples
  const r = streams(5).get("samples");
  const N = 300;
  let q = 0;
  for (let k = 0; k < N; k++) {
    const d = (await posteriorSampleCG(prob, mom, r)).x.map((x, i) => x - dense[i]);
    const pd = matVec(P, d, n, n);
    q += d.reduce((s, v, i) => s + v * pd[i], 0);
  }
  q /= N;
  const bound = 5 * Math.sqrt(2 * n / N);
  console.log(
    `CG iterations ${cg.iterations} (Jacobi with diag(DᵀMD)), ${cgPlain.iterations} (default); ` +
      `mean Mahalanobis² of samples ${q.toFixed(2)} (expected ${n} ± ${bound.toFixed(2)})`,
  );
  assert.ok(Math.abs(q - n) < bound);
});

Deno.test("exact model: CG on a diagonal operator agrees with the closed form, lossless and lossy", async () => {
  const blur = symBlur(8, 12);
  for (const lossy of [null, [5, 7] as [number, number]]) {
    const m = createExactModel({ imageShape: [1, 3, 8, 12], lossy, scale: 0.8 });
    const l = m.layout;
    const mom = modelMoments(m, promptTheta(m, "a sharp photo"));
    const { y } = simulate(l, mom, blur.op, 0.01, "cg-diag");
    const post = posteriorDiagonal(diagonalProblem(y, blur.hdiag, 0.01, l), mom);
    const cg = await posteriorMeanCG({ y, op: blur.op, sigmaY: 0.01, layout: l }, mom);
    assertClose(cg.x, post.mean, 1e-8, 1e-10, `lossy=${lossy}`);
    const v = await posteriorVarianceCG({ y, op: blur.op, sigmaY: 0.01, layout: l }, mom, [
      0,
      7,
      30,
    ]);
    assertClose(v, [0, 7, 30].map((i) => post.variance[i]), 1e-8, 0, "variances");
  }
});

Deno.test("exact model: closed forms with the blur operator plugin (symmetric boundary, its dctDiagonal)", async () => {
  const shape = [1, 3, 16, 24];
  const reg = new PluginRegistry().registerAll(operatorPlugins);
  const op = await createOperator(
    reg,
    "blur:sigma=1.5,boundary=symmetric",
    shape,
    0,
  ) as BlurOperator;
  assert.ok(op.dctDiagonal, "symmetric Gaussian blur exposes its DCT diagonal");
  const l = model.layout;
  const mom = modelMoments(model, promptTheta(model, "a sharp photo"));
  const op64 = linearOperator64(op);
  // A x = D(h · E x) for a 3-channel image (A commutes with the colour transform).
  const x = randomImage(3 * H * W, "blur-x");
  const hx = encode64(x, l).map((v, i) => v * op.dctDiagonal![i % (H * W)]);
  assertClose(await op64.forward(x), decode64(hx, l), 0, 1e-6, "A = D diag(h) E");
  const { y } = simulate(
    l,
    mom,
    {
      forward: (v) => decode64(encode64(v, l).map((u, i) => u * op.dctDiagonal![i % (H * W)]), l),
      adjoint: (v) => v,
    },
    0.01,
    "blur-y",
  );
  const post = posteriorDiagonal(diagonalProblem(y, op.dctDiagonal!, 0.01, l), mom);
  const cg = await posteriorMeanCG({ y, op: op64, sigmaY: 0.01, layout: l }, mom, { tol: 1e-7 });
  assert.ok(
    relErr(cg.x, post.mean) < 1e-5,
    `CG through the plugin vs closed form: ${relErr(cg.x, post.mean)}`,
  );
});

// ---------------------------------------------------------------------------------------------
// Folder

Deno.test("exact model: folder files, exact_model.json round trip, writing to disk", async () => {
  for (
    const rel of [
      "model_index.json",
      "scheduler/scheduler_config.json",
      "unet/model.onnx",
      "unet/config.json",
      "consistency_unet/model.onnx",
      "vae_encoder/config.json",
      "vae_decoder/model.onnx",
      "text_encoder/model.onnx",
      "tokenizer/tokenizer_config.json",
      "tokenizer/special_tokens_map.json",
    ]
  ) assert.ok(files.has(rel), rel);
  const sched = JSON.parse(files.get("scheduler/scheduler_config.json") as string);
  assert.equal(sched.beta_schedule, "scaled_linear");
  assert.equal(sched.prediction_type, "epsilon");
  const back: ExactModel = exactModelFromFiles(files);
  assert.deepEqual(back.options, model.options);
  assert.deepEqual(Array.from(back.text.embeddings), Array.from(model.text.embeddings));
  const unet = await session(files, "unet/model.onnx");
  assert.deepEqual(unet.inputNames, ["sample", "timestep", "encoder_hidden_states"]);
  assert.deepEqual(unet.outputNames, ["out_sample"]);
  const dir = await Deno.makeTempDir();
  try {
    const target = `${dir}/exact`;
    await writeExactModelFolder(target, files);
    const disk = directoryFiles(target);
    assert.equal(await disk.readText("unet/config.json"), files.get("unet/config.json"));
    assert.deepEqual(
      new Uint8Array((await disk.readBytes("vae_decoder/model.onnx"))!),
      new Uint8Array(files.get("vae_decoder/model.onnx") as Uint8Array),
    );
    await assert.rejects(() => writeExactModelFolder(target, files), /exists/);
    await writeExactModelFolder(target, { imageShape: [1, 3, 4, 4] }, { overwrite: true });
    assert.equal(JSON.parse((await disk.readText("exact_model.json"))!).image_shape[3], 4);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["exact"], "no temporary left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exact model: default prior is finite and sensible at several sizes", () => {
  for (const [h, w] of [[16, 24], [64, 64], [512, 768]]) {
    const m = createExactModel({ imageShape: [1, 3, h, w] });
    const mom = modelMoments(m, DEFAULT_THETA);
    assert.ok(mom.lambda.every((v) => Number.isFinite(v) && v > 0));
    // Std of the mean luminance (DC/√(HW)/√3 on the [-1,1] scale) is size-independent.
    const dcStd = Math.sqrt(mom.lambda[0]) / Math.sqrt(h * w) / Math.sqrt(3);
    // N_ref = 16 widens the low-frequency prior 4× (see DEFAULT_SPECTRUM): a vague brightness prior.
    assert.ok(dcStd > 0.1 && dcStd < 1.5, `${h}×${w}: mean-intensity std ${dcStd}`);
  }
  assert.equal(DEFAULT_SPECTRUM.refSize, 16);
});
