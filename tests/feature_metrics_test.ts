/**
 * FID and KID in float64 against closed forms: synthetic feature sets whose sample mean and
 * covariance are exactly prescribed Gaussians' (both routes: fewer and more vectors than
 * dimensions), a 2-D case with non-commuting covariances, and KID by hand.
 */
import assert from "node:assert/strict";
import {
  type FeatureSet,
  featureSet,
  frechetDistance,
  kernelDistance,
} from "../core/feature_metrics.ts";
import { streams } from "../core/rng.ts";

/** Columns orthonormal and orthogonal to the all-ones vector (modified Gram–Schmidt). */
function orthonormal(rows: number, cols: number, seed: number, withOnes: boolean): number[][] {
  const rng = streams(seed).get("test");
  const basis: number[][] = withOnes ? [Array(rows).fill(1 / Math.sqrt(rows))] : [];
  const out: number[][] = [];
  while (out.length < cols) {
    const v = Array.from({ length: rows }, () => rng.normal());
    for (let pass = 0; pass < 2; pass++) {
      for (const b of [...basis, ...out]) {
        const d = v.reduce((s, x, i) => s + x * b[i], 0);
        for (let i = 0; i < rows; i++) v[i] -= d * b[i];
      }
    }
    const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    out.push(v.map((x) => x / n));
  }
  return out; // cols vectors of length rows
}

/**
 * n vectors in d dimensions whose sample mean is μ and whose unbiased sample covariance is
 * Q diag(a) Qᵀ (Q: d × k orthonormal columns, k = a.length ≤ min(d, n − 1)):
 * X = 1μᵀ + √(n−1) U diag(√a) Qᵀ with U (n × k) orthonormal and orthogonal to 1.
 */
function gaussianSample(
  n: number,
  mu: number[],
  Q: number[][],
  a: number[],
  seed: number,
): FeatureSet {
  const d = mu.length, k = a.length;
  const U = orthonormal(n, k, seed, true);
  const data = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      let s = mu[j];
      for (let c = 0; c < k; c++) s += Math.sqrt(n - 1) * U[c][i] * Math.sqrt(a[c]) * Q[c][j];
      data[i * d + j] = s;
    }
  }
  return { n, d, data };
}

/** ‖μ₁ − μ₂‖² + Σ (√aᵢ − √bᵢ)²: the Fréchet distance of N(μ₁, QAQᵀ) and N(μ₂, QBQᵀ). */
function commutingFrechet(mu1: number[], mu2: number[], a: number[], b: number[]): number {
  return mu1.reduce((s, v, i) => s + (v - mu2[i]) ** 2, 0) +
    a.reduce((s, v, i) => s + (Math.sqrt(v) - Math.sqrt(b[i])) ** 2, 0);
}

Deno.test("FID equals the closed-form Fréchet distance of two Gaussians (n > d: covariance route)", () => {
  const d = 6, k = 6;
  const Q = orthonormal(d, k, 1, false);
  const mu1 = [0.1, -0.4, 2, 0, 1.5, -1], mu2 = [0.3, 0.2, 1, -0.5, 1.5, 0];
  const a = [4, 2, 1, 0.5, 0.1, 3], b = [1, 2, 3, 0.2, 0.4, 0.05];
  const A = gaussianSample(40, mu1, Q, a, 2), B = gaussianSample(25, mu2, Q, b, 3);
  const exact = commutingFrechet(mu1, mu2, a, b);
  assert.ok(
    Math.abs(frechetDistance(A, B) - exact) < 1e-9 * Math.max(1, exact),
    `${frechetDistance(A, B)} vs ${exact}`,
  );
  assert.ok(Math.abs(frechetDistance(B, A) - exact) < 1e-9 * Math.max(1, exact));
  assert.ok(frechetDistance(A, A) < 1e-9);
});

Deno.test("FID equals the closed-form Fréchet distance with fewer vectors than dimensions (Gram route)", () => {
  // n = 5 vectors in d = 12 dimensions: rank-4 covariances sharing their eigenvectors.
  const d = 12, k = 4;
  const Q = orthonormal(d, k, 4, false);
  const mu1 = Array.from({ length: d }, (_, i) => Math.sin(i)),
    mu2 = Array.from({ length: d }, (_, i) => Math.cos(i) / 2);
  const a = [3, 1, 0.25, 0.01], b = [0.5, 2, 0.25, 1];
  const A = gaussianSample(5, mu1, Q, a, 5), B = gaussianSample(5, mu2, Q, b, 6);
  const exact = commutingFrechet(mu1, mu2, a, b);
  const fid = frechetDistance(A, B);
  assert.ok(Math.abs(fid - exact) < 1e-9 * Math.max(1, exact), `${fid} vs ${exact}`);
  // Unequal sizes: the smaller set drives the Gram route either way round.
  const C = gaussianSample(8, mu2, Q, b, 7);
  const e2 = commutingFrechet(mu1, mu2, a, b);
  assert.ok(Math.abs(frechetDistance(A, C) - e2) < 1e-9 * e2);
  assert.ok(Math.abs(frechetDistance(C, A) - e2) < 1e-9 * e2);
});

Deno.test("FID with non-commuting 2×2 covariances: tr √(Σ₁Σ₂) = √(tr P + 2√det P)", () => {
  // Σ₁ = diag(4, 1); Σ₂ = R diag(2, 0.5) Rᵀ, R a rotation by 0.7 rad: not commuting.
  const c = Math.cos(0.7), s = Math.sin(0.7);
  const S2 = [2 * c * c + 0.5 * s * s, (2 - 0.5) * c * s, 0, 2 * s * s + 0.5 * c * c];
  S2[2] = S2[1];
  const A = gaussianSample(30, [1, 2], [[1, 0], [0, 1]], [4, 1], 8);
  const B = gaussianSample(30, [0, 0], [[c, s], [-s, c]], [2, 0.5], 9);
  // P = Σ₁Σ₂ for Σ₁ = diag(4,1).
  const P = [4 * S2[0], 4 * S2[1], S2[2], S2[3]];
  const trP = P[0] + P[3], detP = P[0] * P[3] - P[1] * P[2];
  const exact = 1 + 4 + (4 + 1) + (2 + 0.5) - 2 * Math.sqrt(trP + 2 * Math.sqrt(detP));
  const fid = frechetDistance(A, B);
  assert.ok(Math.abs(fid - exact) < 1e-9 * Math.max(1, exact), `${fid} vs ${exact}`);
});

Deno.test("KID: the unbiased polynomial-kernel MMD² by hand", () => {
  // d = 1, k(x, y) = (xy + 1)³. Within {0,1}: k = 1 → 1; within {1,2}: 27; cross: (1+1+8+27)·2/4.
  const a = featureSet([[0], [1]]), b = featureSet([[1], [2]]);
  assert.ok(Math.abs(kernelDistance(a, b) - (1 + 27 - 18.5)) < 1e-12);
  assert.throws(() => kernelDistance(a, featureSet([[1]])), /at least 2/);
  assert.throws(() => frechetDistance(a, featureSet([[1, 2], [3, 4]])), /dimensions differ/);
});
