/**
 * Developer script: fit the default prior θ0 of the exact model to natural images.
 *
 *   deno run -A plugins/builtin-gaussian/fit_defaults.ts ../shared/data/kodak [factor=8]
 *
 * Reads kodim01…12.png, box-downsamples each by `factor` (an exact change of scene scale: the
 * whole image stays in view), maps to [−1,1], encodes losslessly and maximises the pooled
 * likelihood of the prior (ρ0 = 1/64, N_ref = 64). Prints θ0 for params.ts (the fit at `factor`),
 * and, as a check of the size scaling, the fits at 2× and ½× the factor and how much the θ0 fit
 * loses there, with the scaling on and off. Not part of the product (needs the test data).
 *
 * @module
 */
import sharp from "sharp";
import {
  type DiagonalProblem,
  encode64,
  latentLayout,
  logEvidence,
  maximiseEvidence,
} from "./closed_form.ts";
import { DEFAULT_SPECTRUM, STUDY_THETA } from "./params.ts";

async function loadDownsampled(
  path: string,
  f: number,
): Promise<{ x: Float64Array; h: number; w: number }> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({
    resolveWithObject: true,
  });
  const H = Math.floor(info.height / f), W = Math.floor(info.width / f);
  const x = new Float64Array(3 * H * W);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) {
        let s = 0;
        for (let a = 0; a < f; a++) {
          for (let b = 0; b < f; b++) s += data[((i * f + a) * info.width + (j * f + b)) * 3 + c];
        }
        x[(c * H + i) * W + j] = 2 * (s / (f * f * 255)) - 1;
      }
    }
  }
  return { x, h: H, w: W };
}

/** Clean latents of the twelve images at one downsampling factor. */
async function latentsAt(dir: string, f: number): Promise<DiagonalProblem[]> {
  const out: DiagonalProblem[] = [];
  for (let i = 1; i <= 12; i++) {
    const img = await loadDownsampled(`${dir}/kodim${String(i).padStart(2, "0")}.png`, f);
    const l = latentLayout([1, 3, img.h, img.w]);
    // Clean latents: the evidence with A = I and σ_y = 0 is the likelihood of the prior.
    out.push({
      yhat: encode64(img.x, l),
      h: new Float64Array(img.h * img.w).fill(1),
      sigmaY: 0,
      layout: l,
    });
  }
  return out;
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? "../shared/data/kodak";
  const f = Number(Deno.args[1] ?? 8);
  const factors = [2 * f, f, f / 2];
  const data = await Promise.all(factors.map((g) => latentsAt(dir, g)));
  for (const spectrum of [DEFAULT_SPECTRUM, { ...DEFAULT_SPECTRUM, refSize: 0 }]) {
    const fits = data.map((d) => maximiseEvidence(d, spectrum, STUDY_THETA));
    fits.forEach((r, i) =>
      console.log(JSON.stringify({
        refSize: spectrum.refSize,
        factor: factors[i],
        theta: Array.from(r.theta, (v) => Number(v.toFixed(4))),
        logLikelihood: r.logEvidence,
        gradientNorm: r.gradientNorm,
      }))
    );
    // Transfer: the fit at `f` evaluated on the other sizes, against their own optimum.
    for (const i of [0, 2]) {
      const n = data[i].reduce((s, p) => s + p.yhat.length, 0);
      const loss = (fits[i].logEvidence - logEvidence(fits[1].theta, data[i], spectrum).value) / n;
      console.log(
        `refSize ${spectrum.refSize}: fit at ${f}x on ${factors[i]}x loses ${
          loss.toFixed(4)
        } nats/coordinate`,
      );
    }
  }
}
