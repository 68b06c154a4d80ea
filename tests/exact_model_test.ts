import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import {
  consistencyMap,
  decode64,
  denoiserVjp,
  embeddingGradient,
  encode64,
  exactSchedule,
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
import { directoryFiles, memoryFiles } from "../core/pipeline/files.ts";

import {
  assertClose,
  f32,
  files,
  H,
  model,
  norm,
  PROMPTS,
  randomImage,
  relErr,
  session,
  TIMESTEPS,
  W,
} from "./exact_model_helpers.ts";

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
