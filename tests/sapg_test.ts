/**
 * SAPG (core/sapg.ts) on the built-in exact model:
 * - the optimiser's mechanics as the official code (step sizes, row normalisation, the cumulative
 *   sum that is never reset, frozen rows, per-token balls);
 * - one transition's SAPG gradient (LATINO-PRO's surrogate through one VJP w.r.t.
 *   `encoder_hidden_states`) equals the closed form `denoiserVjp` + `embeddingGradient`: through
 *   the Prior API in float32 (≤ 2e-4 relative, issue 8's tolerance for ∂/∂conditioning), and on a
 *   float64 emission of the consistency / ε graphs to 1e-9;
 * - the optimiser apart from LATINO's bias: the textbook Fisher-identity estimator on exact
 *   posterior samples with a natural-gradient step reaches ≥ 0.9 of the achievable evidence gain
 *   within 15 iterations on the study's WP+, WP− and WPmix prompts (median over 8 seeds).
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import {
  accumulateRowNormalised,
  OFFICIAL_SAPG,
  projectTokenBalls,
  sapg,
  type SapgIteration,
  sapgStepSize,
  transitionGradient,
} from "../core/sapg.ts";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  consistencyMap,
  createExactModel,
  denoiserVjp,
  embeddingGradient,
  embeddingTheta,
  exactSchedule,
  modelMoments,
  tweedie,
  unetGraph,
} from "../plugins/builtin-gaussian/mod.ts";
import { validateOptions } from "../core/registry.ts";
import { denoiserAffine, denoiserHead, HEAD } from "../core/networks.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { evidenceCase, fisherFractions } from "../examples/latino_pro_study.ts";
import { normals, relErr } from "./exact_model_helpers.ts";

const EHS = "encoder_hidden_states";

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

Deno.test("sapg: γ_j, row normalisation, cumulative sum, frozen rows and token balls as the official code", async () => {
  // γ_j = 0.08·max(0.9^max(0, j − 10), 1e-3)
  const gammas = Array.from({ length: 15 }, (_, j) => sapgStepSize(j, OFFICIAL_SAPG));
  assert.deepEqual(gammas.slice(0, 11), new Array(11).fill(0.08));
  assert.ok(Math.abs(gammas[14] - 0.08 * 0.9 ** 4) < 1e-15);
  // Each token row divided by its own norm.
  const acc = new Float64Array(6);
  accumulateRowNormalised(acc, [0, 3, 4, 1, 0, 0], 3);
  assert.deepEqual([...acc], [0, 0.6, 0.8, 1, 0, 0]);
  // Projection on per-token balls.
  const c = Float64Array.of(0, 10, 0, 0.5), c0 = new Float64Array(4);
  assert.equal(projectTokenBalls(c, c0, 2, 2), 1);
  assert.deepEqual([...c], [0, 2, 0, 0.5]);

  // A constant gradient: rows 0–1 frozen, the other rows' step at iteration j is γ_j·3(j+1)·ĝ
  // (3 samples a iteration, each row-normalised; the sum is never reset), then the balls cap it.
  const T = 6, D = 2;
  const g = new Float64Array(T * D).map((_, i) => (i % 2 ? 4 : 3)); // every row (3, 4)
  const est = {
    name: "constant",
    // deno-lint-ignore require-yield
    async *estimate() {
      return { grads: [g, g, g], value: 0 };
    },
  };
  const settings = { ...OFFICIAL_SAPG, frozenTokens: 2, gamma0: 0.05, radius: 5 };
  const run = sapg(new Float64Array(T * D), D, est, settings);
  const iters: SapgIteration[] = [];
  let r = await run.next();
  while (!r.done) {
    if (r.value.kind === "iteration") iters.push(r.value.iteration);
    r = await run.next();
  }
  let travelled = 0;
  for (const it of iters) {
    const want = Math.min(5 - travelled, sapgStepSize(it.j, settings) * 3 * (it.j + 1));
    travelled += want;
    // ‖Δc‖ over the 4 moving rows = 2 × the row step
    assert.ok(Math.abs(it.step - 2 * want) < 1e-12, `j=${it.j}: ${it.step} vs ${2 * want}`);
    assert.ok(Math.abs(it.distance - travelled) < 1e-12);
  }
  assert.ok(iters.some((it) => it.projected === 4), "the balls were reached");
  const out = r.value.c;
  assert.deepEqual([...out.subarray(0, 2 * D)], [0, 0, 0, 0]);
  for (let k = 2; k < T; k++) {
    assert.ok(Math.abs(out[k * D] - 3) < 1e-12 && Math.abs(out[k * D + 1] - 4) < 1e-12);
  }
});

/** The transition's closed-form gradient: ∇_c ℓ = embeddingGradient(∂⟨w, ẑ0⟩/∂θ). */
function closedFormTransition(
  kind: "G" | "z0",
  model: ReturnType<typeof createExactModel>,
  ehs: Float64Array,
  zt: Float64Array,
  t: number,
  zNext: Float64Array,
  tNext: number,
): Float64Array {
  const theta = embeddingTheta(model, ehs);
  const moments = modelMoments(model, theta);
  const x0 = kind === "G" ? consistencyMap(zt, t, moments) : tweedie(zt, t, moments).z0;
  const ab = exactSchedule().alphasCumprod[tNext];
  const w = zNext.map((v, i) => Math.sqrt(ab) * (v - Math.sqrt(ab) * x0[i]) / (1 - ab));
  const v = denoiserVjp(kind, zt, t, theta, model.layout, model.spectrum, w);
  return embeddingGradient(v.dtheta, model.text.maxLength, model.text.readout);
}

/** A transition of a chain: z_t from the marginal, z' a different draw at t' (float32 values). */
function transition(
  model: ReturnType<typeof createExactModel>,
  ehs: Float64Array,
  t: number,
  tNext: number,
) {
  const mom = modelMoments(model, embeddingTheta(model, ehs));
  const ab = exactSchedule().alphasCumprod;
  const draw = (tt: number, name: string) => {
    const xi = normals(mom.mu.length, name);
    return Float64Array.from(
      mom.mu,
      (m, i) =>
        Math.fround(Math.sqrt(ab[tt]) * m + Math.sqrt(ab[tt] * mom.lambda[i] + 1 - ab[tt]) * xi[i]),
    );
  };
  return { zt: draw(t, `zt-${t}`), zNext: draw(tNext, `zn-${tNext}`) };
}

Deno.test("sapg: one transition's gradient equals the closed form (float32 Prior API, 64²)", async () => {
  const imageShape = [1, 3, 64, 64];
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, {}), {
    device: "cpu",
    imageShape,
  });
  const model = createExactModel({ imageShape });
  const base = (await prior.condition("a sharp red photo")).tensors[EHS];
  const noise = normals(base.data.length, "ehs-noise", 0.05);
  const ehsT = { data: Float32Array.from(base.data, (v, i) => v + noise[i]), shape: base.shape };
  const c = prior.conditionFromTensors({ [EHS]: ehsT });
  const ehs = Float64Array.from(ehsT.data);
  const latentShape = prior.latentShape(imageShape);
  const ab = prior.schedule.alphasCumprod;
  for (const [t, tNext] of [[999, 749], [749, 499], [499, 249]]) {
    const { zt, zNext } = transition(model, ehs, t, tNext);
    const z = { data: Float32Array.from(zt), shape: latentShape };
    for (const kind of ["G", "z0"] as const) {
      // the chain's network forward gives ẑ0; the VJP of the same network gives ∇_c
      const x0 = kind === "G" ? await prior.consistency!(z, t, c) : await prior.denoise!(z, t, c);
      const vjp = kind === "G"
        ? (w: Float32Array) =>
          prior.consistencyVjp!(z, t, c, { data: w, shape: latentShape }, { wrt: [EHS] })
        : (w: Float32Array) =>
          prior.denoiseVjp!(z, t, c, { data: w, shape: latentShape }, { wrt: [EHS] });
      const r = await transitionGradient(
        x0.data,
        Float32Array.from(zNext),
        ab[tNext],
        async (w) => (await vjp(w)).grads[EHS].data,
      );
      const ref = closedFormTransition(kind, model, ehs, zt, t, zNext, tNext);
      const e = relErr(r.grad, ref);
      assert.ok(e <= 2e-4, `t=${t}→${tNext} ${kind}: ${e.toExponential(2)}`);
    }
  }
});

Deno.test("sapg: one transition's gradient on float64 graphs equals the closed form to 1e-9", async () => {
  const imageShape = [1, 3, 32, 32];
  const prior = await builtinPlugin.create(validateOptions(builtinPlugin, { scale: 0.7 }), {
    device: "cpu",
    imageShape,
  });
  const model = createExactModel({ imageShape, scale: 0.7 });
  const T = model.text.maxLength, D = model.text.readout.hiddenSize;
  const base = (await prior.condition("a smooth photo")).tensors[EHS];
  const noise = normals(base.data.length, "ehs64", 0.05);
  const ehs = Float64Array.from(base.data, (v, i) => v + noise[i]);
  const latentShape = prior.latentShape(imageShape);
  const nets = prior.networks!();
  const run64 = async (bytes: Uint8Array, feeds: Record<string, ort.Tensor>) => {
    const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "basic" });
    try {
      return await s.run(feeds);
    } finally {
      await s.release();
    }
  };
  const t64 = (v: ArrayLike<number>, dims: number[]) =>
    new ort.Tensor("float64", Float64Array.from(v), dims);
  const cases = [
    ["G", nets.consistency!, "consistency", unetGraph(model, "sample", "float64")],
    ["z0", nets.unet!, "x0", unetGraph(model, "epsilon", "float64")],
  ] as const;
  for (const [kind, net, output, bytes] of cases) {
    const head = encodeModel(denoiserHead(decodeModel(bytes), net));
    const vjp = await vjpTransform(head, [HEAD.prediction], [EHS], {
      inputShapes: { [net.sample]: latentShape, [EHS]: [1, T, D] },
    });
    for (const [t, tNext] of [[999, 749], [499, 249]]) {
      const { zt, zNext } = transition(model, ehs, t, tNext);
      const a = denoiserAffine(net, prior.schedule, t, output);
      const feeds = {
        [net.sample]: t64(zt, latentShape),
        timestep: t64([t], []),
        [EHS]: t64(ehs, [1, T, D]),
        [HEAD.coefZ]: t64([a.z], []),
        [HEAD.coefOut]: t64([a.out], []),
      };
      const x0 = (await run64(head, feeds))[HEAD.prediction].data as Float64Array;
      const r = await transitionGradient(
        x0,
        zNext,
        prior.schedule.alphasCumprod[tNext],
        async (w) =>
          (await run64(vjp.bytes(), {
            ...feeds,
            [vjp.cotangentName(HEAD.prediction)]: t64(w, latentShape),
          }))[vjp.gradName(EHS)].data as Float64Array,
      );
      const ref = closedFormTransition(kind, model, ehs, zt, t, zNext, tNext);
      const e = relErr(r.grad, ref);
      assert.ok(e <= 1e-9, `float64 t=${t} ${kind}: ${e.toExponential(2)}`);
    }
  }
});

Deno.test("sapg: the Fisher-identity estimator on exact posterior samples reaches ≥ 0.9 of the evidence gain in 15 iterations (WP+, WP−, WPmix)", async () => {
  // Natural-gradient step (the prior's Fisher information in θ, a trust region of 1 in θ),
  // γ0 = 2 with the official decay, 3 exact posterior samples per iteration: see the README.
  const lines: string[] = [];
  for (const prompt of ["wp+", "wp-", "wpmix"]) {
    const k = await evidenceCase(prompt);
    const finals: number[] = [];
    for (let seed = 0; seed < 8; seed++) finals.push((await fisherFractions(k, seed)).at(-1)!);
    const m = median(finals);
    lines.push(
      `${prompt}: median ${m.toFixed(3)} [${Math.min(...finals).toFixed(3)}, ${
        Math.max(...finals).toFixed(3)
      }]`,
    );
    assert.ok(m >= 0.9, `${prompt}: median fraction ${m.toFixed(3)} < 0.9`);
  }
  console.log(lines.join("\n"));
});
