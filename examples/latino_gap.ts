/**
 * LATINO's gap to the exact posterior on the built-in exact model, in closed form
 * (exact-model.md §5–7, exact-model-study.md §3(c)).
 *
 *   deno run --allow-read --allow-ffi --allow-env --allow-sys examples/latino_gap.ts \
 *     [--json out.json] [--seed 0] [--mc 32] [--mc-delta 0.316] [--image PATH]
 *     [--theta fit|study|default]
 *
 * (`--json` also needs `--allow-write`; `--mc 0` skips the Monte-Carlo row, which is the only
 * part that runs ONNX; `--seed` is the measurement-noise seed.)
 *
 * Setting (the study's): the 64×64 crop kodim01[224:288, 352:416], Gaussian blur σ = 1.5 with the
 * half-sample symmetric boundary (diagonal in the DCT basis, A = Cᵀ Φᵀ diag(h) Φ C), σ_y = 0.01 on
 * [0,1], 8 LATINO steps t = 999, 874, …, 124 with constant δ and no clipping, prior θ = the
 * maximum-likelihood fit on the clean crop (ρ0 = 1/64, N_ref = 64, so κ = 1 at 64×64).
 *
 * Everything is per latent coordinate i (lossless latent, s = 1, z = E(2x − 1), D orthonormal):
 * - exact posterior N(m_P, v_P): v_P = 1/(1/λ + h²/σ′²), m_P = v_P(μ/λ + h ŷ/σ′²), σ′ = 2σ_y;
 * - LATINO's output law N(m_L, v_L), exact because every step is affine-Gaussian (§6):
 *   m′ = (γhŷ + μ + k√ᾱ(m − μ))/(γh² + 1), v′ = k²(ᾱv + 1 − ᾱ)/(γh² + 1)², γ = δ(1 − ᾱ)/σ′².
 * Images are x = (D(z) + 1)/2 and D is orthonormal, so image-space squared distances are latent
 * ones divided by 4. With N = 3·H·W pixel values:
 * - PSNR(a, b) = 10 log₁₀(N / ‖a − b‖²) on [0,1] (peak 1);
 * - expected single-sample PSNR = 10 log₁₀(N / E‖x − x_true‖²), E‖x − x_true‖² = ‖E x − x_true‖²
 *   + tr Cov x, tr Cov x = Σ v/4 (a PSNR of the expected MSE, as in the study);
 * - variance ratios: Σ v_L / Σ v_P over all coordinates, and over the informative ones (h > 0.1):
 *   the ratio of sums and the median of v_L/v_P.
 *
 * The Monte-Carlo row runs the real pipeline (`runLatino` with the ONNX `builtin` prior, clipping
 * off) over seeds. The builtin plugin serves its fixed default θ0, so that row is compared with the
 * closed form for θ0 (not with the θ_MLE table).
 *
 * @module
 */
import { solveContext } from "../core/context.ts";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { blurPlugin } from "../operators/blur.ts";
import { createOperator, PluginRegistry, validateOptions } from "../core/registry.ts";
import { measure } from "../core/noise.ts";
import { streams } from "../core/rng.ts";
import { readImage } from "../core/io/image.ts";
import { psnr } from "../core/metrics.ts";
import { InputError } from "../core/errors.ts";
import type { ForwardOperator, Prior } from "../core/contracts.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  decode64,
  type DiagonalProblem,
  diagonalProblem,
  encode64,
  fitTheta,
  latentLayout,
  LATINO_TIMESTEPS,
  latinoMoments,
  posteriorDiagonal,
  type PosteriorMoments,
  type PriorMoments,
  priorMoments,
  type SpectrumConstants,
} from "../plugins/builtin-gaussian/closed_form.ts";
import { DEFAULT_THETA, STUDY_THETA } from "../plugins/builtin-gaussian/params.ts";

/** δ values of the study's table. */
export const STUDY_DELTAS: readonly number[] = [0.001, 0.01, 0.1, 0.2, 0.316, 1, 3, 10];

/** The study's setting (exact-model-study.md §3). */
export interface GapSetting {
  /** Image file the crop is taken from. */
  imagePath: string;
  /** First row of the crop. */
  top: number;
  /** First column of the crop. */
  left: number;
  /** Crop size (square). */
  size: number;
  /** Gaussian blur σ in pixels (symmetric boundary). */
  blurSigma: number;
  /** Measurement noise σ_y on [0,1]. */
  sigmaY: number;
  /** Seed of the measurement noise (stream "measurement-noise"). */
  seed: number;
  /** Constant δ values. */
  deltas: readonly number[];
  /** Coordinates with h above this count as informative. */
  informativeH: number;
  /** "fit": ML fit on the clean crop (started at STUDY_THETA); or explicit θ (9 numbers). */
  theta: "fit" | readonly number[];
}

/** The study's spectrum constants: ρ0 = 1/64, N_ref = 64 (κ = 1 at 64×64). */
export const STUDY_SPECTRUM: Readonly<SpectrumConstants> = Object.freeze({
  rho0: 1 / 64,
  refSize: 64,
});

/** The default setting: the study's. */
export const DEFAULT_SETTING: Readonly<GapSetting> = Object.freeze({
  imagePath: fileURLToPath(new URL("../../shared/data/kodak/kodim01.png", import.meta.url)),
  top: 224,
  left: 352,
  size: 64,
  blurSigma: 1.5,
  sigmaY: 0.01,
  seed: 0,
  deltas: STUDY_DELTAS,
  informativeH: 0.1,
  theta: "fit",
});

/** One row of the gap table (PSNR in dB on [0,1]). */
export interface GapRow {
  /** Constant δ. */
  delta: number;
  /** PSNR of the LATINO output mean against the exact posterior mean. */
  psnrMeanVsPosteriorMean: number;
  /** Σ v_L / Σ v_P over all coordinates. */
  totalVarianceRatio: number;
  /** Σ v_L / Σ v_P over the informative coordinates (h > informativeH). */
  informativeVarianceSumRatio: number;
  /** Median of v_L / v_P over the informative coordinates. */
  informativeVarianceMedianRatio: number;
  /** PSNR of the LATINO output mean against the clean image. */
  psnrMean: number;
  /** Expected PSNR of one LATINO sample against the clean image (PSNR of the expected MSE). */
  psnrSample: number;
}

/** Reference PSNRs (dB on [0,1]). */
export interface GapReferences {
  /** Exact posterior mean vs clean. */
  posteriorMean: number;
  /** One exact posterior sample vs clean (PSNR of the expected MSE). */
  posteriorSample: number;
  /** The measurement y vs clean. */
  measurement: number;
}

/** Everything the script reports. */
export interface GapReport {
  /** The setting used. */
  setting: GapSetting;
  /** The prior θ used. */
  theta: number[];
  /** ‖∇ log p‖ at the fit (0 when θ was given). */
  fitGradientNorm: number;
  /** Latent coordinates 3·H·W. */
  coordinates: number;
  /** Coordinates with h > informativeH (all channels). */
  informative: number;
  /** min and max of the blur's DCT diagonal h. */
  hRange: [number, number];
  /** Empirical std of the latent residual ŷ − h z_true (≈ σ′ = 2σ_y). */
  latentNoiseStd: number;
  /** Reference PSNRs. */
  references: GapReferences;
  /** One row per δ. */
  rows: GapRow[];
}

/** Inputs of the closed-form gap computation (all float64, latent basis). */
export interface GapInputs {
  /** Latent measurement problem. */
  problem: DiagonalProblem;
  /** Prior moments. */
  moments: PriorMoments;
  /** Clean latent z_true = E(2x − 1). */
  zTrue: Float64Array;
  /** Threshold on h for the informative coordinates. */
  informativeH: number;
}

/** ‖a − b‖² in float64. */
function sqDist(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

function median(values: number[]): number {
  const v = [...values].sort((p, q) => p - q);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/** PSNR on [0,1] from a total squared error over n pixel values. */
export function psnrFromSquaredError(sq: number, n: number): number {
  return 10 * Math.log10(n / sq);
}

/**
 * Image-space squared distance of two latents: ‖(D(a)+1)/2 − (D(b)+1)/2‖² = ‖D(a − b)‖²/4,
 * computed through the decoder (equal to ‖a − b‖²/4 since D is orthonormal; decoding keeps the
 * computation literal and checks that identity for free).
 */
function imageSqDist(a: Float64Array, b: Float64Array, l: GapInputs["problem"]["layout"]): number {
  const d = decode64(a.map((v, i) => v - b[i]), l);
  let s = 0;
  for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  return s / 4;
}

/** Variance ratios of a law against the posterior (all coordinates; informative ones). */
export function varianceRatios(
  variance: ArrayLike<number>,
  post: PosteriorMoments,
  h: ArrayLike<number>,
  informativeH: number,
): { total: number; informativeSum: number; informativeMedian: number; informative: number } {
  const n = h.length;
  let sl = 0, sp = 0;
  const ratios: number[] = [];
  for (let i = 0; i < variance.length; i++) {
    if (h[i % n] > informativeH) {
      sl += variance[i];
      sp += post.variance[i];
      ratios.push(variance[i] / post.variance[i]);
    }
  }
  return {
    total: sum(variance) / sum(post.variance),
    informativeSum: sl / sp,
    informativeMedian: median(ratios),
    informative: ratios.length,
  };
}

/** One row of the table for a constant δ, in closed form. */
export function gapRow(g: GapInputs, post: PosteriorMoments, delta: number): GapRow {
  const l = g.problem.layout;
  const N = g.zTrue.length; // = 3·H·W pixel values (lossless)
  const law = latinoMoments(g.problem, g.moments, { delta, timesteps: LATINO_TIMESTEPS });
  const r = varianceRatios(law.variance, post, g.problem.h, g.informativeH);
  const biasSq = imageSqDist(law.mean, g.zTrue, l);
  return {
    delta,
    psnrMeanVsPosteriorMean: psnrFromSquaredError(imageSqDist(law.mean, post.mean, l), N),
    totalVarianceRatio: r.total,
    informativeVarianceSumRatio: r.informativeSum,
    informativeVarianceMedianRatio: r.informativeMedian,
    psnrMean: psnrFromSquaredError(biasSq, N),
    psnrSample: psnrFromSquaredError(biasSq + sum(law.variance) / 4, N),
  };
}

/** Reference PSNRs of the exact posterior. */
export function posteriorReferences(
  g: GapInputs,
  post: PosteriorMoments,
): Omit<GapReferences, "measurement"> {
  const N = g.zTrue.length;
  const biasSq = imageSqDist(post.mean, g.zTrue, g.problem.layout);
  return {
    posteriorMean: psnrFromSquaredError(biasSq, N),
    posteriorSample: psnrFromSquaredError(biasSq + sum(post.variance) / 4, N),
  };
}

/** The [1,3,S,S] crop of an image tensor, rows top…top+S−1, columns left…left+S−1. */
export function cropImage(x: Tensor, top: number, left: number, size: number): Tensor {
  const [, C, H, W] = x.shape;
  if (top < 0 || left < 0 || top + size > H || left + size > W) {
    throw new RangeError(`crop [${top}:${top + size}, ${left}:${left + size}] outside ${H}×${W}`);
  }
  const out = new Float32Array(C * size * size);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        out[(c * size + i) * size + j] = x.data[(c * H + top + i) * W + left + j];
      }
    }
  }
  return { data: out, shape: [1, C, size, size] };
}

/** The measured problem of the setting: clean crop, operator, measurement. */
export interface GapProblem {
  /** Clean crop on [0,1]. */
  x: Tensor;
  /** The symmetric-boundary blur. */
  op: ForwardOperator & { dctDiagonal: Float64Array };
  /** Measurement y = A x + σ_y n. */
  y: Tensor;
  /** Latent problem ŷ = E(2y − A(1)), h. */
  problem: DiagonalProblem;
  /** z_true = E(2x − 1). */
  zTrue: Float64Array;
}

/** Read the crop, build the blur and measure (measurement noise from stream "measurement-noise"). */
export async function setupProblem(s: GapSetting): Promise<GapProblem> {
  const x = cropImage(await readImage(s.imagePath), s.top, s.left, s.size);
  const registry = new PluginRegistry().register(blurPlugin);
  const op = await createOperator(
    registry,
    `blur:kernel=gaussian,sigma=${s.blurSigma},boundary=symmetric`,
    x.shape,
    s.seed,
  ) as ForwardOperator & { dctDiagonal?: Float64Array };
  if (!op.dctDiagonal) throw new Error("symmetric Gaussian blur should expose its DCT diagonal");
  const y = await measure(op, x, s.sigmaY, streams(s.seed).get("measurement-noise"));
  const layout = latentLayout(x.shape);
  const problem = diagonalProblem(y.data, op.dctDiagonal, s.sigmaY, layout);
  const zTrue = encode64(Array.from(x.data, (v) => 2 * v - 1), layout);
  return { x, op: op as GapProblem["op"], y, problem, zTrue };
}

/** Compute the whole closed-form report for a setting (defaults: the study's). */
export async function latinoGap(overrides: Partial<GapSetting> = {}): Promise<GapReport> {
  const s: GapSetting = { ...DEFAULT_SETTING, ...overrides };
  const { x, y, problem, zTrue } = await setupProblem(s);
  const layout = problem.layout;
  let theta: number[], fitGradientNorm = 0;
  if (s.theta === "fit") {
    // ML fit of the prior on the clean latent (evidence with h = 1, σ_y = 0), as in the study.
    const fit = fitTheta([zTrue], [layout], STUDY_SPECTRUM, STUDY_THETA);
    theta = Array.from(fit.theta);
    fitGradientNorm = fit.gradientNorm;
  } else theta = [...s.theta];
  const moments = priorMoments(theta, layout, STUDY_SPECTRUM);
  const g: GapInputs = { problem, moments, zTrue, informativeH: s.informativeH };
  const post = posteriorDiagonal(problem, moments);
  const rows = s.deltas.map((d) => gapRow(g, post, d));
  // Residual of the latent measurement: ŷ − h z_true = E(2n) for this draw.
  const n = problem.h.length;
  let rs = 0;
  for (let i = 0; i < zTrue.length; i++) rs += (problem.yhat[i] - problem.h[i % n] * zTrue[i]) ** 2;
  return {
    setting: s,
    theta,
    fitGradientNorm,
    coordinates: zTrue.length,
    informative: varianceRatios(post.variance, post, problem.h, s.informativeH).informative,
    hRange: [Math.min(...problem.h), Math.max(...problem.h)],
    latentNoiseStd: Math.sqrt(rs / zTrue.length),
    references: { ...posteriorReferences(g, post), measurement: psnr(y, x) },
    rows,
  };
}

/** Empirical counterpart of a {@link GapRow} from LATINO runs, with the closed form beside it. */
export interface MonteCarloCheck {
  /** δ of the runs. */
  delta: number;
  /** Number of runs (solver seeds 1000 … 1000+N−1). */
  runs: number;
  /** θ0 served by the builtin plugin. */
  theta: number[];
  /** Closed-form row for θ0. */
  exact: GapRow;
  /** The same quantities estimated from the runs (see {@link monteCarloCheck}). */
  empirical: GapRow;
  /** Pooled mean of s²/v_L (≈ 1) and its 5σ band. */
  pooledVarianceRatio: number;
  /** 5·√(2/(N−1))/√n. */
  pooledBand: number;
}

/**
 * Run LATINO (ONNX builtin prior with `ref_size = 64`, default θ0, clipping off, constant δ) N
 * times on the setting's measurement and estimate the row's quantities:
 * - mean distances are debiased: E‖m̄ − a‖² = ‖m − a‖² + tr(v)/N, so ‖m̄ − a‖² − Σs²/N is used;
 * - the sample PSNR is that of the average per-run MSE against the clean crop;
 * - variances are the unbiased per-coordinate s² (the median of s²/v_P carries the small χ²
 *   median bias, ≈ −2/(3(N−1)) relative).
 */
export async function monteCarloCheck(
  delta: number,
  runs: number,
  overrides: Partial<GapSetting> = {},
): Promise<MonteCarloCheck> {
  const s: GapSetting = { ...DEFAULT_SETTING, ...overrides };
  const { builtinPlugin } = await import("../plugins/builtin-gaussian/plugin.ts");
  const { createExactModel, promptTheta } = await import("../plugins/builtin-gaussian/model.ts");
  const { latinoOptions, runLatino } = await import("../solvers/latino.ts");
  const { x, op, y, problem, zTrue } = await setupProblem(s);
  const shape = x.shape;
  const prior: Prior = await builtinPlugin.create(
    validateOptions(builtinPlugin, { ref_size: STUDY_SPECTRUM.refSize }),
    { device: "cpu", imageShape: shape },
  );
  // The closed form for exactly what the plugin serves: θ0 = fround(DEFAULT_THETA), N_ref = 64.
  const model = createExactModel({ imageShape: shape, refSize: STUDY_SPECTRUM.refSize });
  const theta = Array.from(promptTheta(model, ""));
  const moments = priorMoments(theta, problem.layout, model.spectrum);
  const g: GapInputs = { problem, moments, zTrue, informativeH: s.informativeH };
  const post = posteriorDiagonal(problem, moments);
  const exact = gapRow(g, post, delta);
  const law = latinoMoments(problem, moments, { delta });

  const n = zTrue.length;
  const acc = new Float64Array(n), acc2 = new Float64Array(n);
  let mseSum = 0;
  const o = latinoOptions.parse({ delta, clip: false });
  for (let r = 0; r < runs; r++) {
    const it = runLatino(
      o,
      { y, operator: op, noise: { kind: "gaussian", sigma: s.sigmaY }, imageShape: shape },
      prior,
      solveContext({ imageShape: shape }, prior, {
        rng: streams(1000 + r).get("solver"),
        device: "cpu",
      }),
    );
    let step = await it.next();
    while (!step.done) step = await it.next();
    const out = step.value.x;
    mseSum += sqDist(out.data, x.data) / n;
    const z = encode64(Array.from(out.data, (v) => 2 * v - 1), problem.layout);
    for (let i = 0; i < n; i++) {
      acc[i] += z[i];
      acc2[i] += z[i] * z[i];
    }
  }
  const mean = acc.map((v) => v / runs);
  const s2 = acc2.map((v, i) => (v - runs * mean[i] * mean[i]) / (runs - 1));
  const trS2 = sum(s2);
  const r = varianceRatios(s2, post, problem.h, s.informativeH);
  let pooled = 0;
  for (let i = 0; i < n; i++) pooled += s2[i] / law.variance[i];
  const debiased = (a: Float64Array) => (sqDist(mean, a) - trS2 / runs) / 4;
  const empirical: GapRow = {
    delta,
    psnrMeanVsPosteriorMean: psnrFromSquaredError(debiased(post.mean), n),
    totalVarianceRatio: r.total,
    informativeVarianceSumRatio: r.informativeSum,
    informativeVarianceMedianRatio: r.informativeMedian,
    psnrMean: psnrFromSquaredError(debiased(zTrue), n),
    psnrSample: 10 * Math.log10(runs / mseSum),
  };
  return {
    delta,
    runs,
    theta,
    exact,
    empirical,
    pooledVarianceRatio: pooled / n,
    pooledBand: 5 * Math.sqrt(2 / (runs - 1)) / Math.sqrt(n),
  };
}

function fmt(v: number, digits: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 1e4)) return v.toPrecision(2);
  return v.toFixed(digits);
}

/** Table header and one Markdown row per {@link GapRow}. */
export function markdownRows(rows: readonly GapRow[], label = (r: GapRow) => String(r.delta)) {
  const head = [
    "| δ | PSNR(LATINO mean vs posterior mean) | total var ratio L/post | var ratio, h > 0.1 (sum / median) | PSNR LATINO mean | PSNR LATINO single sample |",
    "|---|---|---|---|---|---|",
  ];
  return head.concat(
    rows.map((r) =>
      `| ${label(r)} | ${fmt(r.psnrMeanVsPosteriorMean, 1)} | ${fmt(r.totalVarianceRatio, 2)} | ${
        fmt(r.informativeVarianceSumRatio, 3)
      } / ${fmt(r.informativeVarianceMedianRatio, 3)} | ${fmt(r.psnrMean, 2)} | ${
        fmt(r.psnrSample, 2)
      } |`
    ),
  );
}

/** The report as Markdown. */
export function markdownReport(rep: GapReport, mc?: MonteCarloCheck): string {
  const s = rep.setting, ref = rep.references;
  const lines = [
    `Setting: ${s.size}×${s.size} crop [${s.top}:${s.top + s.size}, ${s.left}:${
      s.left + s.size
    }] of ${
      s.imagePath.split("/").pop()
    }, Gaussian blur σ = ${s.blurSigma} (symmetric boundary), ` +
    `σ_y = ${s.sigmaY}, measurement seed ${s.seed}, ${LATINO_TIMESTEPS.length} steps ` +
    `t = ${LATINO_TIMESTEPS.join(", ")}, constant δ, no clipping.`,
    `θ = (${rep.theta.map((v) => v.toFixed(3)).join(", ")})` +
    (s.theta === "fit" ? ` (ML fit on the clean crop, ‖∇‖ = ${fmt(rep.fitGradientNorm, 1)})` : ""),
    `h ∈ [${rep.hRange[0].toExponential(2)}, ${rep.hRange[1].toFixed(3)}]; ` +
    `${rep.informative} of ${rep.coordinates} coordinates have h > ${s.informativeH}; ` +
    `latent residual std ${rep.latentNoiseStd.toFixed(5)} (σ′ = ${2 * s.sigmaY}).`,
    `References: exact posterior mean ${ref.posteriorMean.toFixed(2)} dB; exact posterior sample ` +
    `(expected MSE) ${ref.posteriorSample.toFixed(2)} dB; y itself ${
      ref.measurement.toFixed(2)
    } dB.`,
    "",
    ...markdownRows(rep.rows),
  ];
  if (mc) {
    lines.push(
      "",
      `Monte-Carlo check (ONNX builtin prior, ref_size 64, default θ0 = (${
        mc.theta.map((v) => v.toFixed(3)).join(", ")
      }), ${mc.runs} runs, δ = ${mc.delta}, clip off): closed form for θ0 vs the runs ` +
        `(mean distances debiased by Σs²/N). Pooled s²/v_L = ${
          mc.pooledVarianceRatio.toFixed(4)
        } ` +
        `(1 ± ${mc.pooledBand.toFixed(4)}).`,
      "",
      ...markdownRows(
        [mc.exact, mc.empirical],
        (r) => `${r.delta} (θ0, ${r === mc.exact ? "closed form" : `MC, N = ${mc.runs}`})`,
      ),
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "string" },
      seed: { type: "string", default: "0" },
      mc: { type: "string", default: "32" },
      "mc-delta": { type: "string", default: "0.316" },
      image: { type: "string" },
      theta: { type: "string" },
    },
  });
  const num = (name: string, v: string, integer = false) => {
    const x = Number(v);
    if (!Number.isFinite(x) || (integer && !(Number.isInteger(x) && x >= 0))) {
      console.error(`--${name} ${v}: expected ${integer ? "a non-negative integer" : "a number"}`);
      Deno.exit(2);
    }
    return x;
  };
  const overrides: Partial<GapSetting> = { seed: num("seed", values.seed, true) };
  if (values.image) overrides.imagePath = values.image;
  if (values.theta === "study") overrides.theta = STUDY_THETA;
  else if (values.theta === "default") overrides.theta = DEFAULT_THETA;
  else if (values.theta !== undefined && values.theta !== "fit") {
    console.error(`--theta ${values.theta}: expected fit, study or default`);
    Deno.exit(2);
  }
  const runs = num("mc", values.mc, true);
  if (runs === 1) {
    console.error("--mc 1: expected 0 (skip) or at least 2 runs");
    Deno.exit(2);
  }
  const mcDelta = num("mc-delta", values["mc-delta"]);
  if (!(mcDelta > 0)) {
    console.error(`--mc-delta ${mcDelta}: expected a number > 0`);
    Deno.exit(2);
  }
  if (values.json) {
    // Fail before the computation, not after it.
    const perm = await Deno.permissions.query({ name: "write", path: values.json });
    if (perm.state !== "granted") {
      console.error(`--json ${values.json}: needs --allow-write`);
      Deno.exit(2);
    }
  }
  try {
    const report = await latinoGap(overrides);
    const mc = runs > 0 ? await monteCarloCheck(mcDelta, runs, overrides) : undefined;
    console.log(markdownReport(report, mc));
    if (values.json) {
      const { writeFileAtomic } = await import("../core/io/atomic.ts");
      const text = JSON.stringify({ ...report, monteCarlo: mc ?? null }, null, 2) + "\n";
      await writeFileAtomic(values.json, new TextEncoder().encode(text));
      console.error(`wrote ${values.json}`);
    }
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    console.error(e.message);
    Deno.exit(2);
  }
}
