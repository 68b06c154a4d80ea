/**
 * LATINO-PRO's prompt optimisation on the built-in exact model, in float64 closed form
 * (exact-model-study.md §4 reproduced on this model: T = 77 tokens, D = 16, the read-out W = diag(g)Q).
 *
 *   deno run --allow-read --allow-ffi --allow-env --allow-sys examples/latino_pro_study.ts \
 *     [--prompts wp+,wp-,wpmix] [--gamma0 0.01,0.02] [--radius 5,15] [--delta 0.2] [--x0 G|z0]
 *     [--seeds 8] [--fisher] [--crop kodim01:224:352:64] [--ref-size 16]
 *
 * Setting (the study's): a 64×64 Kodak crop, Gaussian blur σ = 1.5 with the symmetric boundary
 * (diagonal in the latent basis, so the evidence log p(y | θ) is exact), σ_y = 0.01. θ_fit = the
 * ML fit of the prior on the clean crop; a wrong prompt moves it (WP+: a + 2, β + 1, m + 0.2;
 * WP−: the opposite; WPmix: a + 2, β − 1) and enters as tensor conditioning: c0 has every token
 * row = W⁺(θ_wp − b). θ* = argmax log p(y | θ); d* = ‖W⁺(θ* − θ_wp)‖.
 *
 * For each (γ0, R) the official SAPG loop (`core/sapg.ts`: normalised cumulative sum, 4 frozen
 * tokens, per-token balls, γ_j decay) runs 15 iterations on the exact replay of the 4-step
 * LATINO chain (`exactChainEstimator`), and the script prints the median [min, max] over seeds of
 * the fraction of the achievable evidence gain (log p(y|θ_J) − log p(y|θ_wp))/(log p(y|θ*) −
 * log p(y|θ_wp)). `--fisher` adds the textbook SAPG on exact posterior samples (Fisher identity,
 * natural-gradient step, γ0 = 2, 3 samples per iteration) with its fraction at every iteration.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { streams } from "../core/rng.ts";
import {
  type DiagonalProblem,
  embeddingForTheta,
  evidenceGainFraction,
  logEvidence,
  maximiseEvidence,
  thetaFromEmbedding,
} from "../plugins/builtin-gaussian/closed_form.ts";
import {
  createExactModel,
  embedIds,
  type ExactModel,
  promptIds,
} from "../plugins/builtin-gaussian/model.ts";
import {
  embeddingDistance,
  exactChainEstimator,
  fisherEstimator,
  fisherPreconditioner,
  priorFisherTheta,
} from "../plugins/builtin-gaussian/sapg_exact.ts";
import { OFFICIAL_SAPG, sapg, type SapgSettings } from "../core/sapg.ts";
import { DEFAULT_SETTING, setupProblem } from "./latino_gap.ts";

/** The study's wrong-prompt shifts of θ (a, β, m per channel). */
export const WRONG_PROMPTS: Readonly<Record<string, readonly number[]>> = Object.freeze({
  "wp+": [2, 2, 2, 1, 1, 1, 0.2, 0.2, 0.2],
  "wp-": [-2, -2, -2, -1, -1, -1, -0.2, -0.2, -0.2],
  "wpmix": [2, 2, 2, -1, -1, -1, 0, 0, 0],
});

/** One evidence problem: the measured crop, θ_fit, a wrong prompt and the optimum. */
export interface EvidenceCase {
  /** Wrong-prompt name. */
  prompt: string;
  /** Exact model (T = 77, D = 16). */
  model: ExactModel;
  /** The latent measurement problem (diagonal). */
  problem: DiagonalProblem;
  /** θ of the wrong prompt. */
  thetaWrong: Float64Array;
  /** The evidence optimum θ*. */
  thetaStar: Float64Array;
  /** c0: every token row W⁺(θ_wp − b) (T×D). */
  c0: Float64Array;
  /** d* = ‖W⁺(θ* − θ_wp)‖. */
  dStar: number;
  /** log p(y | θ*) − log p(y | θ_wp). */
  gap: number;
}

/** Options of {@link evidenceCase}. */
export interface CaseOptions {
  /** Image path. */
  imagePath?: string;
  /** Crop top, left, size. */
  top?: number;
  /** Crop left. */
  left?: number;
  /** Crop size. */
  size?: number;
  /** N_ref of the model's spectrum (default the built-in default, 16). */
  refSize?: number;
  /** Blur σ (symmetric boundary). */
  blurSigma?: number;
}

/** Build the evidence problem for one wrong prompt. */
export async function evidenceCase(prompt: string, o: CaseOptions = {}): Promise<EvidenceCase> {
  const shift = WRONG_PROMPTS[prompt];
  if (!shift) throw new RangeError(`unknown wrong prompt ${prompt}`);
  const { problem, zTrue } = await setupProblem({
    ...DEFAULT_SETTING,
    imagePath: o.imagePath ?? DEFAULT_SETTING.imagePath,
    top: o.top ?? DEFAULT_SETTING.top,
    left: o.left ?? DEFAULT_SETTING.left,
    size: o.size ?? DEFAULT_SETTING.size,
    blurSigma: o.blurSigma ?? DEFAULT_SETTING.blurSigma,
  });
  const size = o.size ?? DEFAULT_SETTING.size;
  const model = createExactModel({ imageShape: [1, 3, size, size], refSize: o.refSize });
  // ML fit on the clean latent (fitTheta's problem: h = 1, σ_y = 0); its gradient stalls at the
  // float64 rounding floor (≈ 3e-7) after 7 Newton steps, hence tol 1e-6.
  const clean = { yhat: zTrue, h: new Float64Array(problem.h.length).fill(1), sigmaY: 0 };
  const fit =
    maximiseEvidence({ ...clean, layout: problem.layout }, model.spectrum, model.options.theta0, {
      tol: 1e-6,
    }).theta;
  const thetaWrong = fit.map((v, i) => v + shift[i]);
  const T = model.text.maxLength;
  const c0 = embeddingForTheta(thetaWrong, T, model.text.readout);
  const star = maximiseEvidence(problem, model.spectrum, thetaWrong);
  return {
    prompt,
    model,
    problem,
    thetaWrong,
    thetaStar: star.theta,
    c0,
    dStar: embeddingDistance(star.theta, thetaWrong, model.text.readout),
    gap: star.logEvidence - logEvidence(thetaWrong, problem, model.spectrum).value,
  };
}

/** Run SAPG to the end and return c and the per-iteration values. */
export async function runSapg(
  c0: Float64Array,
  width: number,
  estimator: Parameters<typeof sapg>[2],
  settings: SapgSettings,
): Promise<{ c: Float64Array; values: number[] }> {
  const it = sapg(c0, width, estimator, settings);
  const values: number[] = [];
  let r = await it.next();
  while (!r.done) {
    if (r.value.kind === "iteration") values.push(r.value.iteration.value);
    r = await it.next();
  }
  return { c: r.value.c, values };
}

/** The fraction of the gain reached by SAPG with the chain estimator, one seed. */
export async function chainFraction(
  k: EvidenceCase,
  seed: number,
  o: { gamma0: number; radius: number; delta: number; x0: "G" | "z0"; iterations?: number },
): Promise<number> {
  const D = k.model.text.readout.hiddenSize;
  const est = exactChainEstimator(k.problem, k.model, {
    delta: o.delta,
    x0: o.x0,
    rng: streams(seed).get("solver").child("chain"),
  });
  const { c } = await runSapg(k.c0, D, est, {
    ...OFFICIAL_SAPG,
    gamma0: o.gamma0,
    radius: o.radius,
    iterations: o.iterations ?? OFFICIAL_SAPG.iterations,
  });
  const theta = thetaFromEmbedding(c, k.model.text.readout);
  return evidenceGainFraction(theta, k.thetaWrong, k.problem, k.model.spectrum, k.thetaStar);
}

/**
 * Fractions of the gain at c_0 … c_{J−1} and at the end: the textbook SAPG oracle (Fisher-identity
 * gradient on exact posterior samples; natural-gradient step with the prior's Fisher information in
 * θ, trust region `maxStep` on the θ step before γ_j; γ0 = 2, official decay, 3 samples).
 */
export async function fisherFractions(
  k: EvidenceCase,
  seed: number,
  o: { gamma0?: number; samples?: number; iterations?: number; maxStep?: number } = {},
): Promise<number[]> {
  const D = k.model.text.readout.hiddenSize;
  const est = fisherEstimator(k.problem, k.model, {
    samples: o.samples ?? 3,
    rng: streams(seed).get("solver").child("posterior"),
  });
  const settings: SapgSettings = {
    ...OFFICIAL_SAPG,
    gamma0: o.gamma0 ?? 2,
    radius: Infinity,
    iterations: o.iterations ?? OFFICIAL_SAPG.iterations,
    direction: "mean",
    precondition: fisherPreconditioner(
      k.model,
      OFFICIAL_SAPG.frozenTokens,
      (th) => priorFisherTheta(th, k.problem.layout, k.model.spectrum),
      o.maxStep ?? 1,
    ),
  };
  const { c, values } = await runSapg(k.c0, D, est, settings);
  const l0 = values[0];
  const fr = values.map((v) => (v - l0) / k.gap);
  const theta = thetaFromEmbedding(c, k.model.text.readout);
  fr.push(evidenceGainFraction(theta, k.thetaWrong, k.problem, k.model.spectrum, k.thetaStar));
  return fr;
}

/** A prompt case on a centre crop: the real token embedding of `prompt` as c0. */
export interface PromptCase {
  /** Image id, e.g. kodim01. */
  image: string;
  /** Exact model of the crop size. */
  model: ExactModel;
  /** The latent problem. */
  problem: DiagonalProblem;
  /** Clean latent. */
  zTrue: Float64Array;
  /** c0 = the prompt's token embedding. */
  c0: Float64Array;
  /** θ(c0). */
  theta0: Float64Array;
  /** θ*. */
  thetaStar: Float64Array;
  /** d* = ‖W⁺(θ* − θ(c0))‖. */
  dStar: number;
}

/** The size×size centre crop of a Kodak image, symmetric Gaussian blur, and the prompt's c0. */
export async function promptCase(
  image: string,
  prompt: string,
  size: number,
  blurSigma: number,
): Promise<PromptCase> {
  const { readImage } = await import("../core/io/image.ts");
  const path = fileURLToPath(new URL(`../../shared/data/kodak/${image}.png`, import.meta.url));
  const full = await readImage(path);
  const [, , H, W] = full.shape;
  const { problem, zTrue } = await setupProblem({
    ...DEFAULT_SETTING,
    imagePath: path,
    top: Math.floor((H - size) / 2),
    left: Math.floor((W - size) / 2),
    size,
    blurSigma,
  });
  const model = createExactModel({ imageShape: [1, 3, size, size] });
  const c0 = embedIds(model, promptIds(model, prompt));
  const theta0 = thetaFromEmbedding(c0, model.text.readout);
  const star = maximiseEvidence(problem, model.spectrum, theta0);
  return {
    image,
    model,
    problem,
    zTrue,
    c0,
    theta0,
    thetaStar: star.theta,
    dStar: embeddingDistance(star.theta, theta0, model.text.readout),
  };
}

/** PSNR (dB, [0,1] images) of a latent against the clean latent (D orthonormal: ‖·‖²/4). */
export function latentPsnr(z: ArrayLike<number>, zTrue: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < z.length; i++) s += (z[i] - zTrue[i]) ** 2;
  return 10 * Math.log10(zTrue.length / (s / 4));
}

/** LATINO (8 steps, c0) and LATINO-PRO (SAPG then 8 steps) PSNR and evidence fraction, one seed. */
export async function promptRun(
  k: PromptCase,
  seed: number,
  o: { gamma0: number; radius: number; delta: number; x0?: "G" | "z0"; clip?: boolean },
): Promise<{ latino: number; pro: number; fraction: number }> {
  const D = k.model.text.readout.hiddenSize;
  const mk = () =>
    exactChainEstimator(k.problem, k.model, {
      delta: o.delta,
      x0: o.x0 ?? "G",
      clip: o.clip,
      rng: streams(seed).get("solver").child("chain"),
    });
  const latino = latentPsnr(mk().final(k.c0), k.zTrue);
  const est = mk();
  const { c } = await runSapg(k.c0, D, est, {
    ...OFFICIAL_SAPG,
    gamma0: o.gamma0,
    radius: o.radius,
  });
  const theta = thetaFromEmbedding(c, k.model.text.readout);
  return {
    latino,
    pro: latentPsnr(est.final(c), k.zTrue),
    fraction: evidenceGainFraction(theta, k.theta0, k.problem, k.model.spectrum, k.thetaStar),
  };
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      prompts: { type: "string", default: "wp+,wp-,wpmix" },
      gamma0: { type: "string", default: "0.003,0.01,0.02,0.08" },
      radius: { type: "string", default: "2.5,5,15" },
      delta: { type: "string", default: "0.2" },
      x0: { type: "string", default: "G" },
      seeds: { type: "string", default: "8" },
      fisher: { type: "boolean", default: false },
      crop: { type: "string" },
      "ref-size": { type: "string" },
    },
  });
  const caseOpts: CaseOptions = {};
  if (values.crop) {
    const [img, top, left, size] = values.crop.split(":");
    caseOpts.imagePath = fileURLToPath(
      new URL(`../../shared/data/kodak/${img}.png`, import.meta.url),
    );
    [caseOpts.top, caseOpts.left, caseOpts.size] = [Number(top), Number(left), Number(size)];
  }
  if (values["ref-size"]) caseOpts.refSize = Number(values["ref-size"]);
  const seeds = Number(values.seeds);
  for (const prompt of list(values.prompts)) {
    const k = await evidenceCase(prompt, caseOpts);
    console.log(
      `${prompt}: gap ${k.gap.toFixed(1)} nats, d* = ${k.dStar.toFixed(2)}, θ* = [${
        Array.from(k.thetaStar, (v) => v.toFixed(2)).join(", ")
      }]`,
    );
    for (const delta of list(values.delta).map(Number)) {
      for (const gamma0 of list(values.gamma0).map(Number)) {
        const cells: string[] = [];
        for (const radius of list(values.radius).map(Number)) {
          const fr: number[] = [];
          for (let s = 0; s < seeds; s++) {
            fr.push(
              await chainFraction(k, s, { gamma0, radius, delta, x0: values.x0 as "G" | "z0" }),
            );
          }
          const f = (v: number) => (Math.abs(v) < 100 ? v.toFixed(2) : v.toExponential(1));
          cells.push(
            `R=${radius}: ${f(median(fr))} [${f(Math.min(...fr))}, ${f(Math.max(...fr))}]`,
          );
        }
        console.log(`  δ=${delta} γ0=${gamma0} x0=${values.x0}  ${cells.join("  ")}`);
      }
    }
    if (values.fisher) {
      const rows: number[][] = [];
      for (let s = 0; s < seeds; s++) rows.push(await fisherFractions(k, s));
      const perJ = rows[0].map((_, j) => median(rows.map((r) => r[j])));
      console.log(
        `  fisher oracle (median over seeds), j = 0…15: ${perJ.map((v) => v.toFixed(2)).join(" ")}`,
      );
    }
  }
}
