/**
 * The named streams and their normal sampler (ziggurat): determinism, the exact word budget, the
 * tables, and the law of the draws (moments, Kolmogorov–Smirnov on 10⁶ draws, tail frequencies).
 * Every check runs on fixed seeds, so it either always passes or always fails; the thresholds are
 * 5 standard deviations (or the KS 0.1 % point) so a correct sampler passes on any seed.
 */
import assert from "node:assert/strict";
import { streams, zigguratTables } from "../core/rng.ts";
import { KS_0_001, ksStatistic } from "./ks.ts";

/** erfc(z) for z ≥ 0 (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7 everywhere). */
function erfcPos(z: number): number {
  const t = 1 / (1 + 0.5 * z);
  return t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                  t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                  t * (-0.82215223 + t * 0.17087277)))))))),
  );
}

/** Upper tail P(X > x) of N(0,1), accurate in relative terms far into the tail. */
function upperTail(x: number): number {
  return x >= 0 ? 0.5 * erfcPos(x / Math.SQRT2) : 1 - 0.5 * erfcPos(-x / Math.SQRT2);
}

Deno.test("streams: same seed and name give bit-identical draws; names and seeds are independent", () => {
  const a = streams(3).get("x").fillNormal(new Float64Array(1000));
  const b = streams(3).get("x").fillNormal(new Float64Array(1000));
  assert.deepEqual(a, b);
  const c = streams(3).get("y").fillNormal(new Float64Array(1000));
  const d = streams(4).get("x").fillNormal(new Float64Array(1000));
  assert.ok(a.some((v, i) => v !== c[i]) && a.some((v, i) => v !== d[i]));
  // A child derived after draws equals one derived before: streams do not depend on order.
  const s = streams(3).get("x");
  s.fillNormal(new Float32Array(17));
  assert.deepEqual(
    s.child("k").fillNormal(new Float64Array(5)),
    streams(3).get("x").child("k").fillNormal(new Float64Array(5)),
  );
});

Deno.test("normal sampler: pinned first draws of one stream (changes only with the sampler)", () => {
  // Pinned when the ziggurat replaced Box–Muller (issue 14). A change here means every seeded
  // result in the toolkit changes: re-baseline the README's seeded figures in the same commit.
  const s = streams(42).get("golden");
  const got = Array.from({ length: 4 }, () => s.normal());
  assert.deepEqual(got, GOLDEN);
});

const GOLDEN = [2.032810233505202, -1.3046527522636338, 0.7383627220401918, -0.5424868244139079];

Deno.test("normal sampler: fillNormal equals successive normal() calls; two words per draw", () => {
  const a = streams(5).get("same"), b = streams(5).get("same");
  const f64 = a.fillNormal(new Float64Array(20000));
  const one = Float64Array.from({ length: 20000 }, () => b.normal());
  assert.deepEqual(f64, one);
  const c = streams(5).get("same");
  assert.deepEqual(c.fillNormal(new Float32Array(20000)), Float32Array.from(one));
  // Draws crossing the slow path (1.5 % of 20000) still advance the main generator by 2 words.
  const skip = () => {
    const w = streams(5).get("same");
    for (let i = 0; i < 40000; i++) w.nextUint32();
    return w;
  };
  assert.equal(a.nextUint32(), skip().nextUint32());
  assert.equal(c.uniform(), skip().uniform());
});

Deno.test("ziggurat tables: every layer has the area V; the base layer is the rectangle plus the tail", () => {
  const { x, v, r } = zigguratTables();
  const f = (t: number) => Math.exp(-0.5 * t * t);
  assert.equal(x[1], r);
  assert.ok(Math.abs(x[0] * f(r) - v) < 1e-15, "base: pseudo-width x₀ with height f(r)");
  // Base layer: rectangle [0,r]×[0,f(r)] plus the tail ∫_r^∞ f = √(2π)·P(X > r).
  const tail = Math.sqrt(2 * Math.PI) * upperTail(r);
  assert.ok(Math.abs(r * f(r) + tail - v) / v < 1e-6, `base area ${r * f(r) + tail} vs ${v}`);
  for (let i = 1; i < 256; i++) {
    const area = x[i] * (f(x[i + 1]) - f(x[i]));
    assert.ok(Math.abs(area - v) / v < 1e-10, `layer ${i}: area ${area} vs ${v}`);
    assert.ok(x[i + 1] < x[i]);
  }
  assert.equal(x[256], 0);
});

Deno.test("normal sampler: moments of 10⁶ draws", () => {
  const n = 1_000_000;
  const z = streams(11).get("moments").fillNormal(new Float64Array(n));
  let m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (const v of z) {
    const q = v * v;
    m1 += v;
    m2 += q;
    m3 += q * v;
    m4 += q * q;
  }
  m1 /= n, m2 /= n, m3 /= n, m4 /= n;
  // Standard deviations of the sample moments of N(0,1): √(1/n), √(2/n), √(15/n), √(96/n).
  const tol = (varOfTerm: number) => 5 * Math.sqrt(varOfTerm / n);
  assert.ok(Math.abs(m1) < tol(1), `mean ${m1}`);
  assert.ok(Math.abs(m2 - 1) < tol(2), `E x² ${m2}`);
  assert.ok(Math.abs(m3) < tol(15), `E x³ ${m3}`);
  assert.ok(Math.abs(m4 - 3) < tol(96), `E x⁴ ${m4}`);
});

Deno.test("normal sampler: Kolmogorov–Smirnov on 10⁶ draws, float64 and float32 paths", () => {
  const cdf = (x: number) => 1 - upperTail(x);
  for (const [name, arr] of [["f64", new Float64Array(1e6)], ["f32", new Float32Array(1e6)]]) {
    const z = Float64Array.from(streams(12).get(`ks-${name}`).fillNormal(arr as Float64Array));
    z.sort();
    const k = ksStatistic(z, cdf);
    assert.ok(k < KS_0_001, `${name}: √n·D = ${k.toFixed(3)} ≥ ${KS_0_001}`);
  }
});

Deno.test("normal sampler: tail frequencies beyond r = 3.654, 4, 4.5, 5σ and the law beyond 4σ", () => {
  const n = 10_000_000, chunk = 1 << 20;
  const s = streams(13).get("tails");
  const buf = new Float64Array(chunk);
  const thresholds = [zigguratTables().r, 4, 4.5, 5];
  const pos = thresholds.map(() => 0), neg = thresholds.map(() => 0);
  const beyond4: number[] = [];
  for (let done = 0; done < n; done += chunk) {
    const z = s.fillNormal(buf).subarray(0, Math.min(chunk, n - done));
    for (const v of z) {
      const a = Math.abs(v);
      if (a <= thresholds[0]) continue;
      thresholds.forEach((t, i) => {
        if (a > t) v > 0 ? pos[i]++ : neg[i]++;
      });
      if (a > 4) beyond4.push(a);
    }
  }
  thresholds.forEach((t, i) => {
    // Each side is Poisson(n·P(X > t)) to high accuracy: 5 standard deviations.
    const lambda = n * upperTail(t);
    for (const [side, count] of [["+", pos[i]], ["−", neg[i]]] as const) {
      assert.ok(
        Math.abs(count - lambda) < 5 * Math.sqrt(lambda) + 1,
        `${side}${t}σ: ${count} draws, expected ${lambda.toFixed(1)}`,
      );
    }
  });
  // Conditional law of |X| given |X| > 4: P(|X| ≤ x | |X| > 4) = 1 − Q(x)/Q(4).
  const q4 = upperTail(4);
  const k = ksStatistic(Float64Array.from(beyond4).sort(), (x) => 1 - upperTail(x) / q4);
  assert.ok(k < KS_0_001, `tail beyond 4σ (${beyond4.length} draws): √n·D = ${k.toFixed(3)}`);
});
