/**
 * The exact draws of core/distributions.ts: Gamma/χ² against their exact CDFs (Kolmogorov–Smirnov,
 * 2·10⁴ draws per shape, including the boosted a < 1 path), moments at the size LATINO uses
 * (k ≈ 7.9·10⁵), and ‖r + σn‖² from two scalars against the brute-force N-normal draw (two-sample
 * KS). Fixed seeds: every check always passes or always fails; thresholds at the 0.1 % KS point or
 * 5 standard errors, so a correct sampler passes on any seed.
 */
import assert from "node:assert/strict";
import { streams } from "../core/rng.ts";
import { chiSquareVariate, gammaVariate, noisyResidualNormSq } from "../core/distributions.ts";
import { KS_0_001, ksStatistic as ks, ksTwoSample as ks2 } from "./ks.ts";

/** ln Γ(a) (Lanczos, g = 7, 9 terms; relative error ~1e-15 for a > 0). */
function lnGamma(a: number): number {
  const c = [
    0.99999999999980993,
    676.5203681218851,
    -1259.1392167224028,
    771.32342877765313,
    -176.61502916214059,
    12.507343278686905,
    -0.13857109526572012,
    9.9843695780195716e-6,
    1.5056327351493116e-7,
  ];
  if (a < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * a)) - lnGamma(1 - a);
  a -= 1;
  let s = c[0];
  for (let i = 1; i < 9; i++) s += c[i] / (a + i);
  const t = a + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (a + 0.5) * Math.log(t) - t + Math.log(s);
}

/** Regularised lower incomplete gamma P(a, x): series below a + 1, Lentz's continued fraction above. */
function gammaP(a: number, x: number): number {
  if (x <= 0) return 0;
  const front = Math.exp(a * Math.log(x) - x - lnGamma(a));
  if (x < a + 1) {
    let term = 1 / a, sum = term;
    for (let n = 1; n < 100000; n++) {
      term *= x / (a + n);
      sum += term;
      if (term < sum * 1e-16) break;
    }
    return front * sum;
  }
  const tiny = 1e-300;
  let b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (let i = 1; i < 100000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return 1 - front * h;
}

Deno.test("incomplete gamma (the test's reference) against closed forms", () => {
  // P(1, x) = 1 − e^{−x}; P(2, x) = 1 − e^{−x}(1 + x); P(1/2, x) = erf(√x): erf(1) = 0.8427007929…
  for (const x of [0.1, 1, 3, 10]) {
    assert.ok(Math.abs(gammaP(1, x) - (1 - Math.exp(-x))) < 1e-13);
    assert.ok(Math.abs(gammaP(2, x) - (1 - Math.exp(-x) * (1 + x))) < 1e-13);
  }
  assert.ok(Math.abs(gammaP(0.5, 1) - 0.8427007929497149) < 1e-13);
});

Deno.test("gammaVariate / chiSquareVariate: Kolmogorov–Smirnov against the exact CDF, boosted path included", () => {
  const n = 20000;
  for (const k of [1, 2, 3, 10, 51, 1001]) {
    const rng = streams(7).get(`chi2-${k}`);
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = chiSquareVariate(rng, k);
    x.sort();
    const stat = ks(x, (v) => gammaP(k / 2, v / 2));
    assert.ok(stat < KS_0_001, `χ²_${k}: √n·D = ${stat.toFixed(3)}`);
  }
  // A wrong law fails the same check: χ²_10 draws against the χ²_11 CDF.
  const rng = streams(7).get("chi2-wrong");
  const x = Float64Array.from({ length: n }, () => chiSquareVariate(rng, 10)).sort();
  assert.ok(ks(x, (v) => gammaP(5.5, v / 2)) > KS_0_001);
  assert.throws(() => gammaVariate(rng, 0), /shape 0 must be > 0/);
});

Deno.test("chiSquareVariate at LATINO's size (k = 3·512² − 1): mean, variance and skewness", () => {
  const k = 3 * 512 * 512 - 1, m = 20000;
  const rng = streams(8).get("chi2-large");
  let s1 = 0, s2 = 0, s3 = 0;
  const z = new Float64Array(m);
  for (let i = 0; i < m; i++) z[i] = (chiSquareVariate(rng, k) - k) / Math.sqrt(2 * k);
  for (const v of z) s1 += v;
  const mean = s1 / m;
  for (const v of z) s2 += (v - mean) ** 2, s3 += (v - mean) ** 3;
  const variance = s2 / (m - 1), skew = s3 / m / variance ** 1.5;
  assert.ok(Math.abs(mean) < 5 / Math.sqrt(m), `standardised mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / m), `standardised variance ${variance}`);
  // skewness √(8/k) ≈ 0.0032, standard error √(6/m) ≈ 0.017
  assert.ok(Math.abs(skew - Math.sqrt(8 / k)) < 5 * Math.sqrt(6 / m), `skewness ${skew}`);
});

Deno.test("noisyResidualNormSq: the law of ‖r + σn‖² drawn from N normals (two-sample KS)", () => {
  const m = 20000;
  for (
    const [r, sigma] of [
      [[0.3, -1.2, 0.5, 2, 0.1], 0.7],
      [[0, 0, 0], 1.5], // r = 0: σ²χ²_N
      [[2.5], 0.4], // N = 1: (r + σg)²
    ] as [number[], number][]
  ) {
    const rr = r.reduce((s, v) => s + v * v, 0);
    const fast = new Float64Array(m), brute = new Float64Array(m);
    const a = streams(9).get(`fast-${r.length}`), b = streams(9).get(`brute-${r.length}`);
    const nv = new Float64Array(r.length);
    for (let i = 0; i < m; i++) {
      fast[i] = noisyResidualNormSq(a, rr, r.length, sigma);
      b.fillNormal(nv);
      let s = 0;
      for (let j = 0; j < r.length; j++) s += (r[j] + sigma * nv[j]) ** 2;
      brute[i] = s;
    }
    fast.sort();
    brute.sort();
    const stat = ks2(fast, brute);
    assert.ok(stat < KS_0_001, `N = ${r.length}: √(nm/(n+m))·D = ${stat.toFixed(3)}`);
  }
  // The check sees a wrong law: forgetting the r-direction's noise (‖r‖² + σ²χ²_{N−1}).
  const r = [0.3, -1.2, 0.5, 2, 0.1], sigma = 0.7, rr = r.reduce((s, v) => s + v * v, 0);
  const a = streams(9).get("wrong"), b = streams(9).get("brute-wrong");
  const wrong = Float64Array.from({ length: m }, () => rr + sigma ** 2 * chiSquareVariate(a, 4));
  const brute = Float64Array.from({ length: m }, () => {
    const nv = b.fillNormal(new Float64Array(5));
    return r.reduce((s, v, j) => s + (v + sigma * nv[j]) ** 2, 0);
  });
  assert.ok(ks2(wrong.sort(), brute.sort()) > KS_0_001);
});

Deno.test("noisyResidualNormSq: seeded (same stream, same value) and checked N", () => {
  const f = () => noisyResidualNormSq(streams(1).get("residual"), 10, 786432, 0.02);
  assert.equal(f(), f());
  assert.throws(
    () => noisyResidualNormSq(streams(1).get("x"), 1, 0, 1),
    /N = 0 must be a positive integer/,
  );
});
