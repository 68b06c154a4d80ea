/**
 * Helpers shared by the exact-model tests (exact_model_test.ts: graphs, tokenizer, denoisers,
 * folder; exact_posterior_test.ts: posteriors, evidence, LATINO moments, CG): dense float64 algebra,
 * a symmetric blur in closed form, a simulated measurement, the 16×24 model and its files.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { streams } from "../core/rng.ts";
import {
  choleskySolve,
  decode64,
  type LatentLayout,
  type LinearOperator64,
  type PriorMoments,
} from "../plugins/builtin-gaussian/closed_form.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { createExactModel } from "../plugins/builtin-gaussian/model.ts";

export const H = 16, W = 24;
export const PROMPTS = [
  "",
  "a sharp photo of a brick wall",
  "a blurry dark red photo",
  "grayscale smooth image",
];
export const TIMESTEPS = [0, 1, 124, 499, 874, 999];

export function session(
  files: Map<string, Uint8Array | string>,
  rel: string,
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(files.get(rel) as Uint8Array);
}

export function f32(shape: number[], data: ArrayLike<number>): ort.Tensor {
  return new ort.Tensor("float32", Float32Array.from(data), shape);
}

/** max|a − b| / max|b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let e = 0, n = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    n = Math.max(n, Math.abs(b[i]));
  }
  return e / (n || 1);
}

/** Elementwise |a − b| ≤ rtol·|b| + atol. */
export function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
) {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - b[i]) <= rtol * Math.abs(b[i]) + atol;
    if (!ok) assert.fail(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

export function randomImage(n: number, seed: string): Float64Array {
  const r = streams(7).get(seed);
  return Float64Array.from({ length: n }, () => Math.max(-1, Math.min(1, 0.5 * r.normal())));
}

export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** Dense matrix (rows × cols, row-major) of a linear map given on unit vectors. */
export function denseOf(
  f: (v: Float64Array) => Float64Array,
  cols: number,
): { M: Float64Array; rows: number } {
  let rows = 0;
  let M = new Float64Array(0);
  for (let j = 0; j < cols; j++) {
    const e = new Float64Array(cols);
    e[j] = 1;
    const col = f(e);
    if (j === 0) {
      rows = col.length;
      M = new Float64Array(rows * cols);
    }
    for (let i = 0; i < rows; i++) M[i * cols + j] = col[i];
  }
  return { M, rows };
}

export function matT(M: Float64Array, r: number, c: number): Float64Array {
  const o = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) o[j * r + i] = M[i * c + j];
  return o;
}

export function matMul(
  A: Float64Array,
  B: Float64Array,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const o = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a !== 0) { for (let j = 0; j < n; j++) o[i * n + j] += a * B[p * n + j]; }
    }
  }
  return o;
}

export function matVec(A: Float64Array, x: ArrayLike<number>, m: number, n: number): Float64Array {
  const o = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += A[i * n + j] * x[j];
    o[i] = s;
  }
  return o;
}

/** Inverse of an SPD matrix by Cholesky solves. */
export function spdInverse(M: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const e = new Float64Array(n);
    e[j] = 1;
    const x = choleskySolve(M, e, n);
    assert.ok(x, "matrix is SPD");
    for (let i = 0; i < n; i++) inv[i * n + j] = x![i];
  }
  return inv;
}

/**
 * Half-sample symmetric 1-D blur [1,2,1]/4 as a dense n×n matrix: x_{−1} = x_0, x_n = x_{n−1}.
 */
export function symBlur1d(n: number): Float64Array {
  const B = new Float64Array(n * n);
  const at = (i: number) => (i < 0 ? -i - 1 : i >= n ? 2 * n - 1 - i : i);
  for (let i = 0; i < n; i++) {
    for (const [o, w] of [[-1, 0.25], [0, 0.5], [1, 0.25]]) B[i * n + at(i + o)] += w;
  }
  return B;
}

/** The 3-channel blur (same separable kernel per channel) as a float64 operator, plus its h. */
export function symBlur(
  h: number,
  w: number,
): { op: LinearOperator64; hdiag: Float64Array; dense: Float64Array } {
  const BH = symBlur1d(h), BW = symBlur1d(w);
  const n = h * w;
  const apply = (x: Float64Array, t: boolean) => {
    const out = new Float64Array(x.length);
    for (let c = 0; c < 3; c++) {
      const X = x.subarray(c * n, (c + 1) * n);
      const bh = t ? matT(BH, h, h) : BH, bw = t ? matT(BW, w, w) : BW;
      const Y = matMul(matMul(bh, X, h, h, w), matT(bw, w, w), h, w, w);
      out.set(Y, c * n);
    }
    return out;
  };
  const op = {
    forward: (x: Float64Array) => apply(x, false),
    adjoint: (y: Float64Array) => apply(y, true),
  };
  // h_{u,v} = (1 + cos(πu/h))/2 · (1 + cos(πv/w))/2 (DCT-II eigenvalues of this kernel)
  const hdiag = new Float64Array(n);
  for (let u = 0; u < h; u++) {
    for (let v = 0; v < w; v++) {
      hdiag[u * w + v] = 0.25 * (1 + Math.cos(Math.PI * u / h)) * (1 + Math.cos(Math.PI * v / w));
    }
  }
  const dense = denseOf((x) => apply(x, false), 3 * n).M;
  return { op, hdiag, dense };
}

/** Draw z ~ N(μ, Λ) and a blurred noisy measurement y on [0,1]. */
export function simulate(
  l: LatentLayout,
  mom: PriorMoments,
  op: LinearOperator64,
  sigmaY: number,
  seed: string,
): { z: Float64Array; y: Float64Array } {
  const r = streams(11).get(seed);
  const z = mom.mu.map((m, i) => m + Math.sqrt(mom.lambda[i]) * r.normal());
  const x01 = decode64(z, l).map((v) => (v + 1) / 2);
  const y = (op.forward(x01) as Float64Array).map((v) => v + sigmaY * r.normal());
  return { z, y };
}

export const model = createExactModel({ imageShape: [1, 3, H, W] });
export const files = buildExactModelFiles(model);

/** n normals from the seeded stream `name`, times `scale` (float64). */
export function normals(n: number, name: string, scale = 1): Float64Array {
  const r = streams(0).get(name);
  return Float64Array.from({ length: n }, () => scale * r.normal());
}
