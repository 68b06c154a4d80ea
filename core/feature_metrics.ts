/**
 * Distribution metrics on feature vectors (e.g. InceptionV3 pool features of restored vs clean
 * images), in float64: the Fréchet distance (FID) and the kernel distance (KID).
 *
 * FID (Heusel et al. 2017) between the Gaussians fitted to two feature sets:
 *
 *   FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{½},
 *
 * μ the sample means and Σ the unbiased sample covariances (divisor n − 1, as pytorch-fid and
 * torch-fidelity compute them). tr (Σ₁Σ₂)^{½} is the sum of the square roots of the eigenvalues of
 * Σ₁Σ₂ (real and ≥ 0: Σ₁Σ₂ is similar to Σ₁^{½} Σ₂ Σ₁^{½}). Two exact routes, chosen by size:
 *
 * - Gram route (n ≤ d, the usual case for benchmarks: fewer images than Inception's 2048
 *   features). With Aᵢ = (Xᵢ − μᵢ)/√(nᵢ − 1) (nᵢ × d), Σᵢ = AᵢᵀAᵢ and the non-zero eigenvalues of
 *   Σ₁Σ₂ = A₁ᵀ(A₁A₂ᵀA₂) equal those of M = (A₁A₂ᵀ)(A₂A₁ᵀ), an n₁ × n₁ symmetric PSD matrix. So
 *   tr (Σ₁Σ₂)^{½} = Σⱼ √λⱼ(M), with the smaller set as set 1.
 * - Covariance route (both n > d): Σ₁^{½} from the symmetric eigendecomposition of Σ₁, then
 *   tr (Σ₁Σ₂)^{½} = Σⱼ √λⱼ(Σ₁^{½} Σ₂ Σ₁^{½}).
 *
 * Tiny negative eigenvalues from round-off are clipped to 0. With fewer samples than feature
 * dimensions the covariances are singular and FID is strongly biased upward (and KID is the better
 * small-sample statistic); callers should say so ({@link fewSamplesWarning}).
 *
 * KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial kernel
 * k(x, y) = (xᵀy/d + 1)³ over all pairs (torch-fidelity averages it over random subsets of 1000
 * when sets are larger; we use every pair, which is the same estimator without subset noise).
 *
 * The symmetric eigensolver is ml-matrix's (a JAMA port: Householder tridiagonalisation + QL).
 *
 * @module
 */
import { EigenvalueDecomposition, Matrix } from "ml-matrix";

/** n feature vectors of dimension d, row-major (n × d). */
export interface FeatureSet {
  /** Number of vectors. */
  n: number;
  /** Dimension. */
  d: number;
  /** n·d values, vector i at [i·d, (i+1)·d). */
  data: Float64Array;
}

/**
 * Stack feature vectors (float32 or float64 arrays of one length) into a {@link FeatureSet}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureSet } from "./feature_metrics.ts";
 * const f = featureSet([Float32Array.of(1, 2), Float32Array.of(3, 4)]);
 * assert.deepEqual([f.n, f.d, ...f.data], [2, 2, 1, 2, 3, 4]);
 * ```
 */
export function featureSet(vectors: readonly ArrayLike<number>[]): FeatureSet {
  const n = vectors.length;
  const d = n ? vectors[0].length : 0;
  const data = new Float64Array(n * d);
  vectors.forEach((v, i) => {
    if (v.length !== d) {
      throw new RangeError(`feature vector ${i} has ${v.length} values, expected ${d}`);
    }
    for (let j = 0; j < d; j++) data[i * d + j] = v[j];
  });
  return { n, d, data };
}

/** Sample mean of a feature set. */
function mean(f: FeatureSet): Float64Array {
  const mu = new Float64Array(f.d);
  for (let i = 0; i < f.n; i++) {
    for (let j = 0; j < f.d; j++) mu[j] += f.data[i * f.d + j];
  }
  for (let j = 0; j < f.d; j++) mu[j] /= f.n;
  return mu;
}

/** A = (X − μ)/√(n − 1) as an ml-matrix (n × d). */
function centred(f: FeatureSet, mu: Float64Array): Matrix {
  const s = 1 / Math.sqrt(f.n - 1);
  const a = new Matrix(f.n, f.d);
  for (let i = 0; i < f.n; i++) {
    for (let j = 0; j < f.d; j++) a.set(i, j, (f.data[i * f.d + j] - mu[j]) * s);
  }
  return a;
}

/** Σ √max(λ, 0) over the eigenvalues of a symmetric matrix. */
function sumSqrtEigenvalues(m: Matrix): number {
  // Symmetrise against round-off before the symmetric solver.
  const s = m.add(m.transpose()).mul(0.5);
  const e = new EigenvalueDecomposition(s, { assumeSymmetric: true });
  let t = 0;
  for (const v of e.realEigenvalues) t += Math.sqrt(Math.max(v, 0));
  return t;
}

/** tr of AᵀA = squared Frobenius norm of A. */
function frobenius2(a: Matrix): number {
  let t = 0;
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < a.columns; j++) t += a.get(i, j) ** 2;
  }
  return t;
}

function checkPair(a: FeatureSet, b: FeatureSet, what: string): void {
  if (a.d !== b.d) throw new RangeError(`${what}: feature dimensions differ (${a.d} vs ${b.d})`);
  if (a.n < 2 || b.n < 2) {
    throw new RangeError(`${what}: needs at least 2 vectors per set (got ${a.n} and ${b.n})`);
  }
}

/**
 * Fréchet distance between the Gaussians fitted to two feature sets (FID when the features are
 * InceptionV3 pool features), in float64. See the module doc for the two exact routes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureSet, frechetDistance } from "./feature_metrics.ts";
 * // Same covariance, means 3 apart along one axis: FID = 3² = 9.
 * const a = featureSet([[0, 1], [0, -1], [1, 0], [-1, 0]]);
 * const b = featureSet([[3, 1], [3, -1], [4, 0], [2, 0]]);
 * assert.ok(Math.abs(frechetDistance(a, b) - 9) < 1e-12);
 * ```
 */
export function frechetDistance(a: FeatureSet, b: FeatureSet): number {
  checkPair(a, b, "Fréchet distance");
  const mu1 = mean(a), mu2 = mean(b);
  let dm = 0;
  for (let j = 0; j < a.d; j++) dm += (mu1[j] - mu2[j]) ** 2;
  // Set 1 is the smaller one (the trace term is symmetric in the two sets).
  const [s1, m1, s2, m2] = a.n <= b.n ? [a, mu1, b, mu2] : [b, mu2, a, mu1];
  const A1 = centred(s1, m1), A2 = centred(s2, m2);
  const tr1 = frobenius2(A1), tr2 = frobenius2(A2);
  let trSqrt: number;
  if (s1.n <= s1.d) {
    const C = A1.mmul(A2.transpose()); // n₁ × n₂
    trSqrt = sumSqrtEigenvalues(C.mmul(C.transpose()));
  } else {
    const S1 = A1.transpose().mmul(A1), S2 = A2.transpose().mmul(A2);
    const e = new EigenvalueDecomposition(S1.add(S1.transpose()).mul(0.5), {
      assumeSymmetric: true,
    });
    const V = e.eigenvectorMatrix;
    const r = e.realEigenvalues.map((v) => Math.sqrt(Math.max(v, 0)));
    const root = V.mmul(Matrix.diag(r)).mmul(V.transpose()); // Σ₁^{½}
    trSqrt = sumSqrtEigenvalues(root.mmul(S2).mmul(root));
  }
  return Math.max(0, dm + tr1 + tr2 - 2 * trSqrt);
}

/**
 * Kernel distance (KID): the unbiased squared MMD with k(x, y) = (xᵀy/d + 1)³, over every pair.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { featureSet, kernelDistance } from "./feature_metrics.ts";
 * const a = featureSet([[0, 1], [1, 0], [1, 1]]);
 * const far = featureSet([[5, 5], [6, 5], [5, 6]]);
 * assert.ok(kernelDistance(a, far) > kernelDistance(a, a) + 1);
 * ```
 */
export function kernelDistance(a: FeatureSet, b: FeatureSet): number {
  checkPair(a, b, "kernel distance");
  const d = a.d;
  const k = (x: FeatureSet, i: number, y: FeatureSet, j: number) => {
    let s = 0;
    const oi = i * d, oj = j * d;
    for (let t = 0; t < d; t++) s += x.data[oi + t] * y.data[oj + t];
    return (s / d + 1) ** 3;
  };
  const within = (x: FeatureSet) => {
    let s = 0;
    for (let i = 0; i < x.n; i++) {
      for (let j = i + 1; j < x.n; j++) s += k(x, i, x, j);
    }
    return (2 * s) / (x.n * (x.n - 1));
  };
  let cross = 0;
  for (let i = 0; i < a.n; i++) {
    for (let j = 0; j < b.n; j++) cross += k(a, i, b, j);
  }
  return within(a) + within(b) - (2 * cross) / (a.n * b.n);
}

/**
 * The warning a report should carry when a set has fewer vectors than feature dimensions (its
 * covariance is singular, FID is biased upward), or undefined when there is enough data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fewSamplesWarning } from "./feature_metrics.ts";
 * assert.match(fewSamplesWarning(12, 2048)!, /12 images < 2048/);
 * assert.equal(fewSamplesWarning(5000, 2048), undefined);
 * ```
 */
export function fewSamplesWarning(n: number, d: number): string | undefined {
  if (n >= d) return undefined;
  return `FID from ${n} images < ${d} feature dimensions: the covariance is singular and FID is ` +
    `biased upward (compare it only between methods at the same n; KID is the better small-sample ` +
    `statistic)`;
}
