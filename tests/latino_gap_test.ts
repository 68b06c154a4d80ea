/**
 * LATINO's gap to the exact posterior on the study's setting (exact-model-study.md §3(c), §5
 * "LATINO gap"): only the robust coarse facts, all in closed form (examples/latino_gap.ts).
 * Measured margins (measurement seeds 0–5): PSNR(mean vs posterior mean) ≥ 32.1 dB on
 * δ ∈ [0.03, 0.5]; single-sample PSNR within 0.35 dB of a posterior sample on [0.1, 0.5];
 * informative variance ratio 0.44 at δ = 0.3 (it does not depend on y).
 */
import assert from "node:assert/strict";
import { latinoGap, STUDY_SPECTRUM } from "../examples/latino_gap.ts";
import { STUDY_THETA } from "../plugins/builtin-gaussian/params.ts";

const DELTAS = [0.001, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 3, 10];
let cached: ReturnType<typeof latinoGap> | undefined;
/** The closed-form report, computed once (≈ 1 s). */
function gap() {
  return cached ??= latinoGap({
    imagePath: "../shared/data/kodak/kodim01.png",
    seed: 0,
    deltas: DELTAS,
  });
}
const row = async (d: number) => (await gap()).rows.find((r) => r.delta === d)!;
const inRange = (lo: number, hi: number) => DELTAS.filter((d) => d >= lo && d <= hi);

Deno.test("latino gap: the setting is the study's (θ fit, κ = 1, 2091 informative coordinates)", async () => {
  const r = await gap();
  assert.equal(STUDY_SPECTRUM.refSize, 64);
  assert.ok(r.fitGradientNorm < 1e-6, `fit gradient ${r.fitGradientNorm}`);
  r.theta.forEach((v, i) =>
    assert.ok(Math.abs(v - STUDY_THETA[i]) < 0.02, `θ[${i}] = ${v} vs study ${STUDY_THETA[i]}`)
  );
  assert.equal(r.coordinates, 12288);
  assert.equal(r.informative, 2091);
  assert.ok(Math.abs(r.latentNoiseStd - 0.02) < 0.001, `latent noise std ${r.latentNoiseStd}`);
  // References (study: 24.53 / 21.95 / 22.25 dB with its own noise draw).
  assert.ok(Math.abs(r.references.posteriorMean - 24.53) < 0.3);
  assert.ok(Math.abs(r.references.posteriorSample - 21.95) < 0.3);
  assert.ok(Math.abs(r.references.measurement - 22.25) < 0.1);
});

Deno.test("latino gap: mean within 30 dB of the posterior mean for δ ∈ [0.03, 0.5], not at 0.001 or ≥ 3", async () => {
  for (const d of inRange(0.03, 0.5)) {
    const p = (await row(d)).psnrMeanVsPosteriorMean;
    assert.ok(p > 30, `δ=${d}: PSNR(LATINO mean, posterior mean) = ${p.toFixed(2)} dB`);
  }
  // The metric discriminates: far from the sweet spot the mean is far from the posterior mean.
  for (const d of [0.001, 3, 10]) assert.ok((await row(d)).psnrMeanVsPosteriorMean < 27);
});

Deno.test("latino gap: a single sample scores like an exact posterior sample for δ ∈ [0.1, 0.5]", async () => {
  const ref = (await gap()).references.posteriorSample;
  for (const d of inRange(0.1, 0.5)) {
    const p = (await row(d)).psnrSample;
    assert.ok(Math.abs(p - ref) < 0.5, `δ=${d}: sample ${p.toFixed(2)} dB vs posterior ${ref}`);
  }
  for (const d of [0.001, 3]) assert.ok((await row(d)).psnrSample < ref - 1);
});

Deno.test("latino gap: the law has the wrong shape (too tight at δ ≥ 0.3, too wide at δ ≤ 0.01)", async () => {
  for (const d of DELTAS.filter((d) => d >= 0.3)) {
    const r = await row(d);
    assert.ok(r.informativeVarianceSumRatio < 0.5, `δ=${d}: ${r.informativeVarianceSumRatio}`);
    assert.ok(r.informativeVarianceMedianRatio < 0.5);
  }
  for (const d of [0.001, 0.01]) assert.ok((await row(d)).informativeVarianceSumRatio > 2);
});
