/**
 * The JPEG restoration study behind the README's "JPEG restoration" section (issue 15): the real
 * codec's measurement of Kodak centre crops, LATINO on the built-in model, and data consistency in
 * the codec's own sense (the restored image re-encoded by the same codec, coefficient by coefficient
 * against y's file).
 *
 *   deno run --allow-read --allow-write --allow-ffi --allow-env --allow-sys examples/jpeg_study.ts \
 *     cause|table|ceiling [--crops 1,3,5,9] [--size 256] [--qualities 10,30] [--seeds 8] [--json F]
 *
 * - `cause`: LATINO (seed 0) with the old least-squares prox (`data_term=surrogate`) and with the
 *   bin prox; for every prox call, how many of y's non-zero coefficients the prox input z and its
 *   output u have in y's bins.
 * - `table`: y, one LATINO sample and the mean of `--seeds` samples (PSNR, SSIM), the worst bin
 *   agreement and colour shift over the seeds.
 * - `ceiling`: where a mean of samples goes: PSNR of the mean of the first k samples for k = 1, 2,
 *   4, … and the fit MSE_k = a + b/k (a: the limit, b: the spread a single sample adds), and a
 *   Bayes estimate with the same prior that needs no sampler: the LMMSE estimate with the
 *   quantisation error taken as N(0, Q²/12) per coefficient (solved by Jacobi-preconditioned CG in
 *   the prior's whitened coordinates), then projected on y's bins with the bin prox.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { solveContext } from "../core/context.ts";
import { conjugateGradientSync, jacobi } from "../core/linalg/cg.ts";
import { builtinRegistry } from "../mod.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import type { ForwardOperator, Prior } from "../core/contracts.ts";
import { streams } from "../core/rng.ts";
import { readImage } from "../core/io/image.ts";
import { psnr, ssim } from "../core/metrics.ts";
import { type Tensor, tensor } from "../core/tensor.ts";
import { latinoOptions, runLatino } from "../solvers/latino.ts";
import { decodeJpeg, encodeJpeg, jpegBinAgreement } from "../operators/jpeg.ts";
import { geometry } from "../operators/jpeg/colour.ts";
import { quantiser } from "../operators/jpeg/quantise.ts";
import { encode, encodeT } from "../operators/jpeg/linear.ts";
import { BIN_SHRINK_DEFAULT, binProxImage, measurementBins } from "../operators/jpeg/bin_prox.ts";
import {
  decode64,
  encode64,
  latentLayout,
  priorMoments,
} from "../plugins/builtin-gaussian/closed_form.ts";
import { DEFAULT_SPECTRUM, DEFAULT_THETA } from "../plugins/builtin-gaussian/params.ts";

/** The centred size×size crop of kodimNN. */
export async function kodakCrop(k: number, size: number): Promise<Tensor> {
  const x = await readImage(
    new URL(`../../shared/data/kodak/kodim${String(k).padStart(2, "0")}.png`, import.meta.url)
      .pathname,
  );
  const [, c, H, W] = x.shape, oy = (H - size) >> 1, ox = (W - size) >> 1;
  const out = tensor([1, c, size, size]);
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < size; i++) {
      const src = (ch * H + oy + i) * W + ox;
      out.data.set(x.data.subarray(src, src + size), (ch * size + i) * size);
    }
  }
  return out;
}

/** The real codec's measurement of x: the file and its decode. */
async function measurement(x: Tensor, quality: number) {
  const bytes = await encodeJpeg(x, quality);
  return { bytes, y: await decodeJpeg(bytes) };
}

function channelMeans(t: Tensor): number[] {
  const n = t.data.length / 3;
  return [0, 1, 2].map((c) => t.data.subarray(c * n, (c + 1) * n).reduce((a, v) => a + v, 0) / n);
}

const clamp01 = (t: Tensor): Tensor => ({
  data: t.data.map((v) => (v < 0 ? 0 : v > 1 ? 1 : v)),
  shape: [...t.shape],
});

async function builtinPrior(shape: number[]): Promise<Prior> {
  const plugin = builtinRegistry().get("prior", "builtin");
  return await plugin.create(validateOptions(plugin, {}), { device: "cpu", imageShape: shape });
}

/** One LATINO run (default options, σ_y = 0.01 nominal). */
async function latino(y: Tensor, op: ForwardOperator, prior: Prior, seed: number) {
  const it = runLatino(
    latinoOptions.parse({}),
    { y, operator: op, noise: { kind: "gaussian", sigma: 0.01 }, imageShape: y.shape },
    prior,
    solveContext({ imageShape: y.shape }, prior, {
      rng: streams(seed).get("solver"),
      device: "cpu",
    }),
  );
  let r = await it.next();
  while (!r.done) r = await it.next();
  return r.value.x;
}

/** `cause`: bins of the prox input and output at every LATINO step, old prox vs bin prox. */
async function cause(crops: number[], size: number, quality: number) {
  const rows: Record<string, unknown>[] = [];
  for (const k of crops) {
    const x = await kodakCrop(k, size), { bytes, y } = await measurement(x, quality);
    const prior = await builtinPrior(x.shape);
    for (const dataTerm of ["surrogate", "bins"]) {
      const spec = `jpeg:quality=${quality},data_term=${dataTerm}`;
      const op = await createOperator(builtinRegistry(), spec, x.shape, 0);
      const steps: { gamma: number; z: number; u: number; ms: number }[] = [];
      const recorded: ForwardOperator = {
        ...op,
        async proxL2(z, yy, gamma, o) {
          const t0 = performance.now(), u = await op.proxL2(z, yy, gamma, o);
          const ms = performance.now() - t0;
          const bz = jpegBinAgreement(await encodeJpeg(clamp01(z), quality), bytes);
          const bu = jpegBinAgreement(await encodeJpeg(clamp01(u), quality), bytes);
          steps.push({ gamma, z: bz.nonzero, u: bu.nonzero, ms });
          return u;
        },
      };
      const xh = await latino(y, recorded, prior, 0);
      const a = jpegBinAgreement(await encodeJpeg(xh, quality), bytes);
      rows.push({
        crop: k,
        dataTerm,
        yPsnr: psnr(y, x),
        psnr: psnr(xh, x),
        binsAll: a.all,
        binsNonzero: a.nonzero,
        steps,
      });
      console.log(
        `kodim${k} ${size}² q${quality} ${dataTerm}: y ${psnr(y, x).toFixed(2)} dB, LATINO ${
          psnr(xh, x).toFixed(2)
        } dB, bins all ${a.all.toFixed(4)} non-zero ${a.nonzero.toFixed(3)}; per step (γ, z → u ` +
          `non-zero in bins, prox ms): ${
            steps.map((s) =>
              `${s.gamma.toFixed(0)}: ${s.z.toFixed(3)} → ${s.u.toFixed(3)} (${s.ms.toFixed(0)})`
            ).join("; ")
          }`,
      );
    }
  }
  return rows;
}

/** LATINO over seeds on one crop: samples, their mean, and the data-consistency extremes. */
async function seedsOn(k: number, size: number, quality: number, seeds: number) {
  const x = await kodakCrop(k, size), { bytes, y } = await measurement(x, quality);
  const op = await createOperator(builtinRegistry(), `jpeg:quality=${quality}`, x.shape, 0);
  const prior = await builtinPrior(x.shape);
  const samples: Tensor[] = [];
  let binsAll = 1, binsNonzero = 1, colour = 0;
  const my = channelMeans(y);
  for (let s = 0; s < seeds; s++) {
    const xh = await latino(y, op, prior, s);
    samples.push(xh);
    const a = jpegBinAgreement(await encodeJpeg(xh, quality), bytes);
    binsAll = Math.min(binsAll, a.all), binsNonzero = Math.min(binsNonzero, a.nonzero);
    colour = Math.max(colour, ...channelMeans(xh).map((v, c) => Math.abs(v - my[c])));
  }
  return { x, y, bytes, samples, binsAll, binsNonzero, colour };
}

function meanOf(ts: Tensor[]): Tensor {
  const out = tensor(ts[0].shape);
  for (const t of ts) {
    for (let i = 0; i < out.data.length; i++) out.data[i] += t.data[i] / ts.length;
  }
  return out;
}

/** `table`: the README table. */
async function table(crops: number[], size: number, qualities: number[], seeds: number) {
  const rows: Record<string, number>[] = [];
  console.log(
    "| quality | crop | y PSNR / SSIM | one sample PSNR / SSIM | mean of " + seeds +
      " PSNR / SSIM | bins all / non-zero (worst seed) | colour shift (worst) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const quality of qualities) {
    for (const k of crops) {
      const r = await seedsOn(k, size, quality, seeds);
      const m = meanOf(r.samples);
      const sp = r.samples.map((s) => psnr(s, r.x)), ss = r.samples.map((s) => ssim(s, r.x));
      const row = {
        quality,
        crop: k,
        yPsnr: psnr(r.y, r.x),
        ySsim: ssim(r.y, r.x),
        samplePsnr: sp.reduce((a, b) => a + b) / seeds,
        sampleSsim: ss.reduce((a, b) => a + b) / seeds,
        meanPsnr: psnr(m, r.x),
        meanSsim: ssim(m, r.x),
        binsAll: r.binsAll,
        binsNonzero: r.binsNonzero,
        colour: r.colour,
      };
      rows.push(row);
      const f = (v: number, d = 2) => v.toFixed(d);
      console.log(
        `| ${quality} | kodim${String(k).padStart(2, "0")} | ${f(row.yPsnr)} / ${
          f(row.ySsim, 3)
        } | ${f(row.samplePsnr)} / ${f(row.sampleSsim, 3)} | ${f(row.meanPsnr)} / ${
          f(row.meanSsim, 3)
        } | ${f(row.binsAll, 4)} / ${f(row.binsNonzero, 3)} | ${f(row.colour, 4)} |`,
      );
    }
  }
  return rows;
}

/**
 * The LMMSE estimate of x from y's bins under the built-in prior (empty prompt), the quantisation
 * error taken as N(0, Q²/12): z = μ + √Λ w with (I + √Λ Jᵀ V⁻¹ J √Λ) w = √Λ Jᵀ V⁻¹ (c − J μ − E½),
 * J = E D / 2 (x = (D z + 1)/2, E the encoder's linear part), solved by CG with a Jacobi
 * preconditioner (the block frequency of a global DCT index u is ≈ 8u/N).
 */
function lmmse(y: Tensor, quality: number): Float64Array {
  const [, , h, w] = y.shape, g = geometry(h, w, true), qz = quantiser(quality, 1);
  const bins = measurementBins(y.data, g, qz, 0, 0);
  const l = latentLayout(y.shape);
  const { lambda, mu } = priorMoments(DEFAULT_THETA, l, DEFAULT_SPECTRUM);
  const sl = lambda.map(Math.sqrt), n = lambda.length;
  const vinv = bins.lo.map((lo, p) => lo.map((v, i) => 12 / (bins.hi[p][i] - v) ** 2));
  const J = (z: Float64Array) => encode(decode64(z, l).map((v) => v / 2), g);
  const JT = (c: Float64Array[]) => encode64(encodeT(c, g).map((v) => v / 2), l);
  const base = encode(decode64(mu, l).map((v) => (v + 1) / 2), g);
  const rhs = JT(
    base.map((c, p) => c.map((v, i) => ((bins.lo[p][i] + bins.hi[p][i]) / 2 - v) * vinv[p][i])),
  ).map((v, i) => v * sl[i]);
  const apply = (v: Float64Array) => {
    const c = J(v.map((x, i) => x * sl[i]));
    c.forEach((ck, p) => ck.forEach((x, i) => ck[i] = x * vinv[p][i]));
    return JT(c).map((x, i) => v[i] + sl[i] * x);
  };
  const diag = new Float64Array(n);
  for (let c = 0; c < 3; c++) {
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < w; v++) {
        const ku = Math.min(7, Math.round(8 * u / h)), kv = Math.min(7, Math.round(8 * v / w));
        const q = c === 0
          ? qz.q[0][ku * 8 + kv]
          : qz.q[1][Math.min(7, 2 * ku) * 8 + Math.min(7, 2 * kv)];
        const i = (c * h + u) * w + v;
        diag[i] = 1 + lambda[i] * (255 / 2) ** 2 * 0.45 * 12 / (q * q);
      }
    }
  }
  const { x } = conjugateGradientSync(apply, rhs, {
    maxIter: 500,
    tol: 1e-6,
    precondition: jacobi(diag),
  });
  return decode64(mu.map((m, i) => m + sl[i] * x[i]), l).map((v) => (v + 1) / 2);
}

/** `ceiling`: means of k samples, the a + b/k fit, and the LMMSE estimate (plain, and in bins). */
async function ceiling(crops: number[], size: number, qualities: number[], seeds: number) {
  const rows: Record<string, unknown>[] = [];
  for (const quality of qualities) {
    for (const k of crops) {
      const r = await seedsOn(k, size, quality, seeds);
      const mse = (t: Tensor) => 10 ** (-psnr(t, r.x) / 10);
      const ks: number[] = [];
      for (let m = 1; m <= seeds; m *= 2) ks.push(m);
      // MSE of the mean of the first m samples; least squares for MSE_m = a + b/m.
      const curve = ks.map((m) => ({ m, mse: mse(meanOf(r.samples.slice(0, m))) }));
      const X = curve.map((c) => 1 / c.m), Y = curve.map((c) => c.mse);
      const xm = X.reduce((s, v) => s + v) / X.length, ym = Y.reduce((s, v) => s + v) / Y.length;
      const b = X.reduce((s, v, i) => s + (v - xm) * (Y[i] - ym), 0) /
        X.reduce((s, v) => s + (v - xm) ** 2, 0);
      const a = ym - b * xm;
      const g = geometry(size, size, true), qz = quantiser(quality, 1);
      const est = lmmse(r.y, quality);
      const binsOf = measurementBins(r.y.data, g, qz, 2, BIN_SHRINK_DEFAULT);
      const proj = binProxImage(est, g, binsOf, 1e6).u;
      const t = (d: ArrayLike<number>) => clamp01(tensor(r.x.shape, Float32Array.from(d)));
      const row = {
        quality,
        crop: k,
        yPsnr: psnr(r.y, r.x),
        meanOfK: curve.map((c) => ({ k: c.m, psnr: -10 * Math.log10(c.mse) })),
        limitPsnr: -10 * Math.log10(a),
        spreadShare: b / (a + b),
        lmmsePsnr: psnr(t(est), r.x),
        lmmseInBinsPsnr: psnr(t(proj), r.x),
      };
      rows.push(row);
      console.log(
        `q${quality} kodim${String(k).padStart(2, "0")}: y ${row.yPsnr.toFixed(2)} dB; mean of k ${
          row.meanOfK.map((c) => `${c.k}: ${c.psnr.toFixed(2)}`).join(", ")
        }; a + b/k fit: limit ${row.limitPsnr.toFixed(2)} dB, single-sample spread b/(a+b) ${
          row.spreadShare.toFixed(2)
        }; LMMSE ${row.lmmsePsnr.toFixed(2)} dB, in y's bins ${row.lmmseInBinsPsnr.toFixed(2)} dB`,
      );
    }
  }
  return rows;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      crops: { type: "string", default: "1,2,3,4,5,6,7,8,9,10,11,12" },
      size: { type: "string", default: "256" },
      qualities: { type: "string", default: "10,30" },
      seeds: { type: "string", default: "8" },
      json: { type: "string" },
    },
  });
  const list = (v: string) => v.split(",").map(Number);
  const crops = list(values.crops), qualities = list(values.qualities);
  const size = Number(values.size), seeds = Number(values.seeds);
  const part = positionals[0];
  let out: unknown;
  if (part === "cause") out = await cause(crops, size, qualities[0]);
  else if (part === "table") out = await table(crops, size, qualities, seeds);
  else if (part === "ceiling") out = await ceiling(crops, size, qualities, seeds);
  else {
    console.error("usage: jpeg_study.ts cause|table|ceiling [--crops …] [--size …] …");
    Deno.exit(2);
  }
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(out, null, 1));
}
