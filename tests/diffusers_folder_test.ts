import assert from "node:assert/strict";
import { InputError } from "../core/errors.ts";
import type { Conditioning } from "../core/contracts.ts";
import type { Tensor } from "../core/tensor.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { builtinRegistry } from "../mod.ts";
import {
  ClipTokenizer,
  DiffusersPrior,
  directoryFiles,
  guidanceEmbedding,
  lcmBoundary,
  memoryFiles,
  type ModelFiles,
  schedulerFromConfig,
} from "../core/pipeline/mod.ts";
import {
  C,
  CU_A,
  CU_B,
  DEC_B,
  DEC_W,
  ENC_B,
  ENC_W,
  F,
  IMG,
  LAT,
  LCM_SCHEDULER,
  pipelineFiles,
  type PipelineSpec,
  SD15_SCHEDULER,
  textW,
  UNET_A,
  UNET_K,
  writeFolder,
} from "./diffusers_fixtures.ts";

const IMAGE = [1, 3, IMG, IMG];
const pool = new SessionPool();
const tokDir = new URL("../../shared/data/clip-tokenizer/", import.meta.url);
const clip = ClipTokenizer.fromVocabMerges(
  JSON.parse(Deno.readTextFileSync(new URL("vocab.json", tokDir))),
  Deno.readTextFileSync(new URL("merges.txt", tokDir)),
);
const clipIds = (p: string, pad = 49407) => {
  const ids = clip.ids(p);
  return [...ids, ...Array(77 - ids.length).fill(pad)];
};

// ---------- independent references (float64) ----------

/** ᾱ_t of SD's scaled_linear schedule, written out from solvers.md §1.1. */
function sdAbar(t: number): number {
  let p = 1;
  for (let s = 0; s <= t; s++) {
    const b = (Math.sqrt(0.00085) + (Math.sqrt(0.012) - Math.sqrt(0.00085)) * s / 999) ** 2;
    p *= 1 - b;
  }
  return p;
}

function pool8(x: Tensor): number[][] {
  // [3][LAT*LAT] block means
  const out: number[][] = [];
  for (let k = 0; k < 3; k++) {
    const row: number[] = [];
    for (let i = 0; i < LAT; i++) {
      for (let j = 0; j < LAT; j++) {
        let s = 0;
        for (let a = 0; a < F; a++) {
          for (let b = 0; b < F; b++) s += x.data[(k * IMG + i * F + a) * IMG + j * F + b];
        }
        row.push(s / (F * F));
      }
    }
    out.push(row);
  }
  return out;
}

/** Reference E(x) mean channels (first C output channels of the 1×1 conv), times s. */
function refEncode(x: Tensor, s: number): number[] {
  const p = pool8(x);
  const out: number[] = [];
  for (let o = 0; o < C; o++) {
    for (let q = 0; q < LAT * LAT; q++) {
      out.push(
        s * (ENC_W[o][0] * p[0][q] + ENC_W[o][1] * p[1][q] + ENC_W[o][2] * p[2][q] + ENC_B[o]),
      );
    }
  }
  return out;
}

/** Reference D(z/s). */
function refDecode(z: Tensor, s: number): number[] {
  const out = new Array(3 * IMG * IMG).fill(0);
  for (let o = 0; o < 3; o++) {
    for (let i = 0; i < IMG; i++) {
      for (let j = 0; j < IMG; j++) {
        const q = Math.floor(i / F) * LAT + Math.floor(j / F);
        let v = DEC_B[o];
        for (let c = 0; c < C; c++) v += DEC_W[o][c] * z.data[c * LAT * LAT + q] / s;
        out[(o * IMG + i) * IMG + j] = v;
      }
    }
  }
  return out;
}

/** Token embeddings ids·w_d·(k+1), [77, D] flattened. */
function refText(ids: number[], D: number, k: number, salt = 0): number[] {
  const out: number[] = [];
  for (const id of ids) for (let d = 0; d < D; d++) out.push(id * textW(d, D, salt) * (k + 1));
  return out;
}

const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;

/** Reference UNet output for the fixture graph. */
function refUnet(z: Tensor, t: number, c: Conditioning): number[] {
  const hw = LAT * LAT;
  let extra = 0;
  const T = c.tensors;
  if (T.encoder_hidden_states) extra += UNET_K.ehs * mean(T.encoder_hidden_states.data);
  if (T.text_embeds) extra += UNET_K.pooled * mean(T.text_embeds.data);
  if (T.time_ids) extra += UNET_K.timeIds * mean(T.time_ids.data);
  if (T.timestep_cond) extra += UNET_K.timeCond * mean(T.timestep_cond.data);
  return Array.from(z.data, (v, i) => UNET_A[Math.floor(i / hw)] * v + UNET_K.t * t + extra);
}

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what = "",
) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  assert.ok(
    worst <= tol,
    `${what}: error ${worst} at ${at} (${actual[at]} vs ${expected[at]}) > ${tol}`,
  );
}

function testImage(): Tensor {
  const data = new Float32Array(3 * IMG * IMG);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(0.37 * i) * 0.9;
  return { data, shape: [...IMAGE] };
}

function testLatent(): Tensor {
  const data = new Float32Array(C * LAT * LAT);
  for (let i = 0; i < data.length; i++) data[i] = Math.cos(1.3 * i + 0.2) * 1.7;
  return { data, shape: [1, C, LAT, LAT] };
}

async function withFolder<T>(
  spec: PipelineSpec,
  fn: (dir: string, files: ModelFiles) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "diffusers-test-" });
  try {
    await writeFolder(dir, pipelineFiles(spec));
    return await fn(dir, directoryFiles(dir));
  } finally {
    await pool.release();
    await Deno.remove(dir, { recursive: true });
  }
}

function load(files: ModelFiles, extra: { lcmGuidance?: number; imageShape?: number[] } = {}) {
  return DiffusersPrior.load(files, { device: "cpu", imageShape: IMAGE, pool, ...extra });
}

// ---------- schedules ----------

Deno.test("schedule: scaled_linear ᾱ matches solvers.md §1.1; other β schedules; LCM boundary", () => {
  const s = schedulerFromConfig(SD15_SCHEDULER);
  assert.equal(s.numTrainTimesteps, 1000);
  assert.equal(s.predictionType, "epsilon");
  assert.equal(s.isLcm, false);
  const table: [number, number][] = [[999, 0.0046601], [874, 0.0184327], [499, 0.2776697], [
    124,
    0.8634076,
  ], [0, 0.99915]];
  for (const [t, v] of table) assert.ok(Math.abs(s.alphasCumprod[t] - v) < 5e-7, `ᾱ_${t}`);
  for (const t of [0, 1, 250, 999]) assert.ok(Math.abs(s.alphasCumprod[t] - sdAbar(t)) < 1e-12);
  const lin = schedulerFromConfig({ beta_schedule: "linear", beta_start: 0.0001, beta_end: 0.02 });
  assert.ok(Math.abs(lin.alphasCumprod[0] - 0.9999) < 1e-15);
  assert.ok(Math.abs(lin.alphasCumprod[1] - 0.9999 * (1 - (0.0001 + 0.0199 / 999))) < 1e-15);
  const cos = schedulerFromConfig({
    beta_schedule: "squaredcos_cap_v2",
    num_train_timesteps: 1000,
  });
  const abarCos = (u: number) => Math.cos((u + 0.008) / 1.008 * Math.PI / 2) ** 2;
  assert.ok(Math.abs(cos.alphasCumprod[10] - abarCos(11 / 1000) / abarCos(0)) < 1e-12);
  const trained = schedulerFromConfig({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.5] });
  assert.deepEqual(Array.from(trained.alphasCumprod).map((v) => +v.toFixed(12)), [0.9, 0.72, 0.36]);
  const zsnr = schedulerFromConfig({ ...SD15_SCHEDULER, rescale_betas_zero_snr: true });
  assert.equal(zsnr.alphasCumprod[999], 0);
  assert.ok(Math.abs(zsnr.alphasCumprod[0] - s.alphasCumprod[0]) < 1e-15);
  const lcm = schedulerFromConfig({ _class_name: "LCMScheduler" }); // constructor defaults
  assert.ok(lcm.isLcm);
  assert.equal(lcm.timestepScaling, 10);
  assert.ok(Math.abs(lcm.alphasCumprod[999] - 0.0046601) < 5e-7);
  const b0 = lcmBoundary(0, 10);
  assert.deepEqual([b0.cSkip, b0.cOut], [1, 0]);
  const b = lcmBoundary(124, 10);
  assert.ok(Math.abs(b.cSkip - 0.25 / (1240 ** 2 + 0.25)) < 1e-20);
  assert.ok(Math.abs(b.cOut - 1240 / Math.sqrt(1240 ** 2 + 0.25)) < 1e-15);
  assert.throws(() => schedulerFromConfig({ beta_schedule: "sigmoid" }), /beta_schedule "sigmoid"/);
  assert.throws(() => schedulerFromConfig({ prediction_type: "flow" }), /prediction_type "flow"/);
  assert.throws(
    () => schedulerFromConfig({ num_train_timesteps: 3, trained_betas: [0.1] }),
    /trained_betas/,
  );
});

// ---------- SD 1.5, current Optimum ----------

Deno.test("SD1.5 (Optimum: float scalar timestep, int64 ids, latent_parameters): encode/decode/condition/denoise exact", async () => {
  await withFolder({}, async (_dir, files) => {
    const prior = await load(files);
    assert.deepEqual(prior.capabilities, {
      consistency: false,
      denoise: true,
      encode: true,
      latentGradients: true,
      conditioningGradients: true,
      decoderGradients: true,
      encoderGradients: true,
    });
    assert.equal(prior.consistency, undefined);
    assert.equal(prior.scalingFactor, 0.5);
    assert.deepEqual(prior.latentShape(IMAGE), [1, C, LAT, LAT]);
    assert.deepEqual(prior.latentShape([1, 3, 64, 48]), [1, C, 8, 6]);
    assert.throws(() => prior.latentShape([1, 3, 12, 16]), InputError);
    const x = testImage();
    const z = await prior.encode!(x);
    assert.deepEqual(z.shape, [1, C, LAT, LAT]);
    assertClose(z.data, refEncode(x, 0.5), 1e-6, "encode");
    const zz = testLatent();
    const d = await prior.decode(zz);
    assert.deepEqual(d.shape, IMAGE);
    assertClose(d.data, refDecode(zz, 0.5), 1e-6, "decode");
    const c = await prior.condition("a photo of a cat");
    assert.equal(c.prompt, "a photo of a cat");
    assert.deepEqual(Object.keys(c.tensors), ["encoder_hidden_states"]);
    assert.deepEqual(c.tensors.encoder_hidden_states.shape, [1, 77, 8]);
    assertClose(
      c.tensors.encoder_hidden_states.data,
      refText(clipIds("a photo of a cat"), 8, 0),
      1e-6,
      "ehs",
    );
    for (const t of [0, 499, 999]) {
      const out = refUnet(zz, t, c);
      const abar = sdAbar(t);
      const want = Array.from(
        zz.data,
        (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar),
      );
      assertClose((await prior.denoise!(zz, t, c)).data, want, 2e-5, `denoise t=${t}`);
    }
    await assert.rejects(
      () => prior.denoise!(zz, 1000, c),
      /timestep 1000 must be an integer in \[0, 999\]/,
    );
    await assert.rejects(() => prior.denoise!(zz, 2.5, c), /integer/);
    await assert.rejects(
      () => prior.denoise!(zz, 10, { tensors: {} }),
      /needs the conditioning tensor "encoder_hidden_states"/,
    );
    assert.deepEqual(prior.stats().calls, {
      unet: 3,
      vae_encoder: 1,
      vae_decoder: 1,
      text_encoder: 1,
    });
    assert.ok(prior.stats().ms.unet > 0);
    const info = prior.info();
    assert.equal(info.provider, "cpu");
    assert.equal(info.scheduler, "PNDMScheduler");
    assert.deepEqual((info.unet as Record<string, unknown>).timestep, "float32 []");
    assert.equal(info.vaeEncoderOutput, "latent_parameters");
    assert.equal(prior.warnings.length, 0);
    assert.ok(prior.modelSource("unet")?.path?.endsWith("model.onnx"));
  });
});

Deno.test("older Optimum (int64 [B] timestep), legacy ids int32, latent_sample encoder, default scaling 0.18215", async () => {
  await withFolder({
    unet: { timestep: "i64-batch", ehsDim: 8 },
    text: { ids: "int32", dim: 8 },
    vaeEncoder: "sample",
    vaeConfig: null,
  }, async (_dir, files) => {
    const prior = await load(files);
    assert.equal(prior.scalingFactor, 0.18215);
    assert.match(prior.warnings.join(" "), /latent_sample/);
    const x = testImage();
    assertClose((await prior.encode!(x)).data, refEncode(x, 0.18215), 1e-6, "encode");
    const zz = testLatent();
    assertClose((await prior.decode(zz)).data, refDecode(zz, 0.18215), 1e-6, "decode");
    const c = await prior.condition("a sharp photo of a dog");
    assertClose(
      c.tensors.encoder_hidden_states.data,
      refText(clipIds("a sharp photo of a dog"), 8, 0),
      1e-6,
    );
    const out = refUnet(zz, 321, c), abar = sdAbar(321);
    const want = Array.from(
      zz.data,
      (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar),
    );
    assertClose((await prior.denoise!(zz, 321, c)).data, want, 2e-5, "denoise");
    const info = prior.info();
    assert.equal((info.unet as Record<string, unknown>).timestep, "int64 [batch]");
    assert.equal((info.textEncoders as { inputIds: string }[])[0].inputIds, "int32");
  });
});

Deno.test("legacy diffusers (float [B] timestep) with v_prediction and sample prediction", async () => {
  for (const pt of ["v_prediction", "sample"] as const) {
    await withFolder({
      unet: { timestep: "f32-batch", ehsDim: 8 },
      scheduler: { ...SD15_SCHEDULER, prediction_type: pt },
    }, async (_dir, files) => {
      const prior = await load(files);
      const zz = testLatent();
      const c = await prior.condition("");
      const t = 700, abar = sdAbar(t);
      const out = refUnet(zz, t, c);
      const want = pt === "sample"
        ? out
        : Array.from(zz.data, (v, i) => Math.sqrt(abar) * v - Math.sqrt(1 - abar) * out[i]);
      assertClose((await prior.denoise!(zz, t, c)).data, want, 2e-5, pt);
      // A batch of two latents: timestep [2], conditioning tiled.
      const z2 = { data: new Float32Array([...zz.data, ...zz.data]), shape: [2, C, LAT, LAT] };
      const d2 = await prior.denoise!(z2, t, c);
      assert.deepEqual(d2.shape, [2, C, LAT, LAT]);
      assertClose(d2.data.subarray(C * LAT * LAT), want, 2e-5, "second batch item");
    });
  }
});

// ---------- SDXL ----------

Deno.test("SDXL: penultimate hidden states of both encoders, pooled text_embeds, time_ids", async () => {
  const spec: PipelineSpec = {
    unet: { timestep: "f32-scalar", ehsDim: 20, pooledDim: 12 },
    text: { ids: "int64", dim: 8, layers: 2 },
    text2: { ids: "int64", dim: 12, layers: 3, projection: true, salt: 1 },
    vaeConfig: { latent_channels: C, block_out_channels: [1, 2, 3, 4], scaling_factor: 0.13025 },
  };
  await withFolder(spec, async (_dir, files) => {
    const prior = await load(files);
    assert.equal(prior.scalingFactor, 0.13025);
    const p = "a high quality photo of a face";
    const c = await prior.condition(p);
    assert.deepEqual(Object.keys(c.tensors).sort(), [
      "encoder_hidden_states",
      "text_embeds",
      "time_ids",
    ]);
    const ids1 = clipIds(p), ids2 = clipIds(p, 0); // tokenizer_2 pads with "!" (id 0)
    const h1 = refText(ids1, 8, 1), h2 = refText(ids2, 12, 2, 1); // hidden_states.{L−1}
    const ehs: number[] = [];
    for (let tok = 0; tok < 77; tok++) {
      ehs.push(...h1.slice(tok * 8, tok * 8 + 8), ...h2.slice(tok * 12, tok * 12 + 12));
    }
    assert.deepEqual(c.tensors.encoder_hidden_states.shape, [1, 77, 20]);
    assertClose(c.tensors.encoder_hidden_states.data, ehs, 1e-6, "ehs");
    const last2 = refText(ids2, 12, 3, 1);
    const pooled = Array.from(
      { length: 12 },
      (_, d) => mean(Array.from({ length: 77 }, (_, tok) => last2[tok * 12 + d])),
    );
    assert.deepEqual(c.tensors.text_embeds.shape, [1, 12]);
    assertClose(c.tensors.text_embeds.data, pooled, 1e-6, "text_embeds");
    assert.deepEqual(Array.from(c.tensors.time_ids.data), [IMG, IMG, 0, 0, IMG, IMG]);
    const zz = testLatent(), t = 250, abar = sdAbar(t), out = refUnet(zz, t, c);
    const want = Array.from(
      zz.data,
      (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar),
    );
    assertClose((await prior.denoise!(zz, t, c)).data, want, 2e-5, "denoise");
    assert.deepEqual(prior.stats().calls, {
      unet: 1,
      vae_encoder: 0,
      vae_decoder: 0,
      text_encoder: 1,
      text_encoder_2: 1,
    });
  });
  // An SDXL text encoder exported without hidden states cannot give the penultimate layer.
  await withFolder({ ...spec, text: { ids: "int64", dim: 8 } }, async (_dir, files) => {
    await assert.rejects(
      () => load(files),
      (e: unknown) =>
        e instanceof InputError && e.message.includes("text_encoder/model.onnx") &&
        e.message.includes("penultimate hidden state"),
    );
  });
});

// ---------- LCM ----------

/** Float64 reference of diffusers' get_guidance_scale_embedding. */
function refGuidance(g: number, d: number): number[] {
  const w = (g - 1) * 1000, half = d / 2;
  const f = Array.from({ length: half }, (_, i) => Math.exp(-i * Math.log(10000) / (half - 1)));
  return [...f.map((v) => Math.sin(w * v)), ...f.map((v) => Math.cos(w * v))];
}

Deno.test("LCM: timestep_cond guidance embedding and consistency with the boundary coefficients", async () => {
  await withFolder({
    unet: { timestep: "f32-scalar", ehsDim: 8, timeCondDim: 16 },
    scheduler: LCM_SCHEDULER,
    unetConfig: { time_cond_proj_dim: 16 },
  }, async (_dir, files) => {
    const prior = await load(files, { lcmGuidance: 1.5 });
    assert.deepEqual(prior.capabilities, {
      consistency: true,
      denoise: true,
      encode: true,
      latentGradients: true,
      conditioningGradients: true,
      decoderGradients: true,
      encoderGradients: true,
    });
    const c = await prior.condition("a photo of a cat");
    assert.deepEqual(c.tensors.timestep_cond.shape, [1, 16]);
    assertClose(c.tensors.timestep_cond.data, refGuidance(1.5, 16), 1e-4, "w-embedding (w=0.5)");
    // Default guidance 8.5 → w = 7.5: float32 rounding of arguments ≈ 7500 moves sin/cos by < 1e-3.
    assertClose(
      guidanceEmbedding(8.5, 256).data,
      refGuidance(8.5, 256),
      2e-3,
      "w-embedding (w=7.5)",
    );
    const zz = testLatent();
    for (const t of [999, 499, 19]) {
      const abar = sdAbar(t), out = refUnet(zz, t, c);
      const x0 = Array.from(
        zz.data,
        (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar),
      );
      const s = 10 * t;
      const cSkip = 0.25 / (s * s + 0.25), cOut = s / Math.sqrt(s * s + 0.25);
      const want = x0.map((v, i) => cOut * v + cSkip * zz.data[i]);
      assertClose((await prior.consistency!(zz, t, c)).data, want, 2e-5, `G t=${t}`);
    }
    assert.equal(prior.info().consistency, "lcm");
  });
  await withFolder({
    unet: { timestep: "f32-scalar", ehsDim: 8, timeCondDim: 16 },
    scheduler: LCM_SCHEDULER,
    unetConfig: {},
  }, async (_dir, files) => {
    // Size known from the graph? It is symbolic here ([batch,16] has 16 fixed): taken from the graph.
    const prior = await load(files);
    const c = await prior.condition("");
    assertClose(
      c.tensors.timestep_cond.data,
      Array.from(guidanceEmbedding(8.5, 16).data),
      0,
      "default guidance",
    );
  });
});

// ---------- our extension: consistency_unet, in-memory folder, external data ----------

Deno.test("in-memory folder with consistency_unet (exact-model layout) and an external-data unet", async () => {
  const entries = pipelineFiles({
    unet: { timestep: "f32-scalar", ehsDim: 8 },
    consistencyUnet: { timestep: "f32-scalar", ehsDim: 8 },
    externalUnet: true,
    vaeConfig: {
      latent_channels: C,
      block_out_channels: [1, 1, 1, 1],
      scaling_factor: 1,
      latent_shape: [C, LAT, LAT],
    },
  });
  assert.ok(entries.has("unet/model.onnx_data"));
  const files = memoryFiles("builtin-test", entries);
  try {
    const prior = await load(files);
    assert.deepEqual(prior.capabilities, {
      consistency: true,
      denoise: true,
      encode: true,
      latentGradients: true,
      conditioningGradients: true,
      decoderGradients: true,
      encoderGradients: true,
    });
    assert.equal(prior.name, "builtin-test");
    assert.deepEqual(prior.latentShape([1, 3, 999, 7]), [1, C, LAT, LAT]); // latent_shape override
    const c = await prior.condition("a photo of a cat");
    const zz = testLatent(), t = 124;
    const e = UNET_K.ehs * mean(c.tensors.encoder_hidden_states.data);
    const want = Array.from(zz.data, (v) => CU_A * v + CU_B * t + e); // G = output, c_skip = 0, c_out = 1
    assertClose((await prior.consistency!(zz, t, c)).data, want, 1e-6, "G from consistency_unet");
    const abar = sdAbar(t), out = refUnet(zz, t, c);
    const x0 = Array.from(zz.data, (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar));
    assertClose(
      (await prior.denoise!(zz, t, c)).data,
      x0,
      2e-5,
      "denoise through external-data unet",
    );
    assert.equal(prior.info().consistency, "consistency_unet");
    assert.match(
      prior.modelSource("unet")!.key!,
      /^memory:builtin-test\/unet\/model.onnx#[0-9a-f]{16}\+[0-9a-f]{16}$/,
    );
    assert.deepEqual(prior.stats().calls, {
      unet: 1,
      consistency_unet: 1,
      vae_encoder: 0,
      vae_decoder: 0,
      text_encoder: 1,
    });
  } finally {
    await pool.release();
  }
});

Deno.test("external-data unet on disk is loaded from its path", async () => {
  await withFolder({ externalUnet: true }, async (dir, files) => {
    assert.ok((await Deno.stat(`${dir}/unet/model.onnx_data`)).size > 0);
    const prior = await load(files);
    const c = await prior.condition("x");
    const zz = testLatent(), out = refUnet(zz, 10, c), abar = sdAbar(10);
    const want = Array.from(
      zz.data,
      (v, i) => (v - Math.sqrt(1 - abar) * out[i]) / Math.sqrt(abar),
    );
    assertClose((await prior.denoise!(zz, 10, c)).data, want, 2e-5);
  });
});

// ---------- errors ----------

async function loadError(spec: PipelineSpec, edit?: (m: Map<string, Uint8Array | string>) => void) {
  const entries = pipelineFiles(spec);
  edit?.(entries);
  const files = memoryFiles("broken-model", entries);
  try {
    await load(files);
  } catch (e) {
    assert.ok(e instanceof InputError, `expected an InputError, got ${e}`);
    assert.ok(!e.message.includes("\n"), "one line");
    assert.ok(e.message.includes('model folder "broken-model"'), e.message);
    return e.message;
  } finally {
    await pool.release();
  }
  assert.fail("loading should have failed");
}

Deno.test("errors: missing files and mismatched graphs get one InputError naming folder, file, expectation", async () => {
  let m = await loadError({ unet: null });
  assert.match(m, /missing unet\/model.onnx/);
  m = await loadError({ scheduler: null }, (e) => e.delete("vae_decoder/model.onnx"));
  assert.match(m, /missing scheduler\/scheduler_config.json .*, vae_decoder\/model.onnx/);
  m = await loadError({ unet: { timestep: "f32-scalar", ehsDim: 8, sampleName: "x" } });
  assert.match(
    m,
    /unet\/model.onnx: expected an input "sample" \(float32, rank 4\); the graph's inputs are x/,
  );
  m = await loadError({ unet: { timestep: "f32-scalar", ehsDim: 8, sampleRank: 3 } });
  assert.match(m, /unet\/model.onnx: input "sample" has rank 3, expected float32, rank 4/);
  m = await loadError({ text: null });
  assert.match(m, /missing text_encoder\/model.onnx/);
  m = await loadError({ tokenizer: false });
  assert.match(m, /tokenizer\/ lacks vocab.json and merges.txt/);
  m = await loadError({}, (e) => e.set("scheduler/scheduler_config.json", "{oops"));
  assert.match(m, /scheduler\/scheduler_config.json: is not valid JSON/);
  m = await loadError({ scheduler: { ...SD15_SCHEDULER, beta_schedule: "cubic" } });
  assert.match(m, /scheduler\/scheduler_config.json: beta_schedule "cubic" is not supported/);
  m = await loadError({ unet: { timestep: "f32-scalar", ehsDim: 8, fixedLatent: 4 } });
  assert.match(
    m,
    /unet\/model.onnx: takes latents \[batch,4,4,4\], but images \[1,3,16,16\] give latents \[1,4,2,2\]/,
  );
  m = await loadError({}, (e) => e.set("vae_decoder/model.onnx", e.get("vae_encoder/model.onnx")!));
  assert.match(m, /vae_decoder\/model.onnx: expected an input "latent_sample"/);
  m = await loadError({}, (e) => e.set("unet/model.onnx", new Uint8Array([9, 9, 9])));
  assert.match(m, /unet\/model.onnx: ONNX Runtime cannot load the model/);
  m = await loadError({
    unet: { timestep: "f32-scalar", ehsDim: 8, timeCondDim: 5, timeCondSymbolic: true },
    unetConfig: {},
  });
  assert.match(m, /unet\/config.json: the UNet takes "timestep_cond" but its size is unknown/);
});

Deno.test("plugin: 'diffusers' is registered and loads a folder by path", async () => {
  const plugin = builtinRegistry().get("prior", "diffusers");
  assert.equal(plugin.options.safeParse({}).success, false);
  assert.equal(plugin.options.safeParse({ path: "x", extra: 1 }).success, false);
  await withFolder({}, async (dir) => {
    const parsed = plugin.options.safeParse({ path: dir });
    assert.ok(parsed.success);
    const prior = await plugin.create(parsed.data, { device: "cpu", imageShape: IMAGE });
    assert.equal(prior.name, dir.split("/").pop());
    assert.deepEqual(prior.latentShape(IMAGE), [1, C, LAT, LAT]);
  });
  const parsed = plugin.options.safeParse({ path: "/nonexistent/model" });
  assert.ok(parsed.success);
  await assert.rejects(
    async () => await plugin.create(parsed.data, { device: "cpu", imageShape: IMAGE }),
    /prior "diffusers": path "\/nonexistent\/model" is not a directory/,
  );
});
