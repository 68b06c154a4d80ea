/**
 * Orthonormal 2-D DCT-II and its inverse (the DCT-III), any size, in float64, through the FFT.
 *
 * 1-D, length N (s_0 = √(1/N), s_k = √(2/N)):
 *   X_k = s_k Σ_{n<N} x_n cos(π(2n+1)k / (2N)),   x_n = Σ_{k<N} s_k X_k cos(π(2n+1)k / (2N)).
 * The matrix Φ[k,n] = s_k cos(π(2n+1)k/(2N)) is orthogonal, so the inverse is Φᵀ. In 2-D the
 * transform is separable: X = Φ_h · x · Φ_wᵀ on an h×w row-major plane.
 *
 * Makhoul's reordering (IEEE TASSP 1980) in both axes turns the transform into one real 2-D FFT:
 * with r(p) = 2p for p < ⌈N/2⌉ and 2(N−1−p)+1 otherwise, v[p,q] = x[r_h(p), r_w(q)], V = DFT₂(v),
 * a_k = e^{−iπk/(2N)} per axis, and C = X/(s_{k1} s_{k2}) the unnormalised transform:
 *   forward:  C[k1,k2] = ½ Re( a1 · (a2 · V[k1,k2] + conj(a2) · V[k1,−k2]) ),
 *   inverse:  a1 a2 V[k1,k2] = C[k1,k2] − C[−k1,−k2] − i (C[−k1,k2] + C[k1,−k2]),
 * with indices mod N and C[−0] read as 0 (so C[N] = 0). V is Hermitian, so only its half spectrum
 * (`rfft2`) is computed: the cost is one real FFT plus O(hw).
 *
 * Convolution with a kernel that is symmetric in each axis under the half-sample symmetric
 * ("symmetric", Neumann) boundary is diagonal in this basis (Ng, Chan & Tang 1999); the blur
 * operator uses it for a closed-form prox.
 *
 * @module
 */
import { type RealFft2, rfft2 } from "./fft.ts";

/** A 2-D orthonormal DCT plan for h×w row-major planes. */
export interface Dct2 {
  /** Number of rows. */
  readonly h: number;
  /** Number of columns. */
  readonly w: number;
  /** In place: x ← Φ_h · x · Φ_wᵀ (orthonormal DCT-II along both axes). */
  forward(x: Float64Array): void;
  /** In place: X ← Φ_hᵀ · X · Φ_w (orthonormal DCT-III, the inverse of `forward`). */
  inverse(X: Float64Array): void;
}

/** Makhoul's reordering: v_p = x_{order[p]}. */
function makhoulOrder(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, p) => (p < (n + 1) >> 1 ? 2 * p : 2 * (n - 1 - p) + 1));
}

/** cos and −sin of πk/(2n) (so that cr + i·ci = e^{−iπk/(2n)}), and s_k. */
function twiddles(n: number): { cr: Float64Array; ci: Float64Array; s: Float64Array } {
  const cr = new Float64Array(n), ci = new Float64Array(n), s = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const a = (Math.PI * k) / (2 * n);
    cr[k] = Math.cos(a);
    ci[k] = -Math.sin(a);
    s[k] = Math.sqrt((k === 0 ? 1 : 2) / n);
  }
  return { cr, ci, s };
}

class Plan implements Dct2 {
  readonly #fft: RealFft2;
  readonly #oh: Int32Array;
  readonly #ow: Int32Array;
  readonly #th: ReturnType<typeof twiddles>;
  readonly #tw: ReturnType<typeof twiddles>;
  readonly #v: Float64Array;
  readonly #re: Float64Array;
  readonly #im: Float64Array;
  constructor(readonly h: number, readonly w: number) {
    this.#fft = rfft2(h, w);
    this.#oh = makhoulOrder(h);
    this.#ow = makhoulOrder(w);
    this.#th = twiddles(h);
    this.#tw = twiddles(w);
    this.#v = new Float64Array(h * w);
    this.#re = new Float64Array(h * this.#fft.wh);
    this.#im = new Float64Array(h * this.#fft.wh);
  }

  #check(x: Float64Array): void {
    if (x.length !== this.h * this.w) {
      throw new RangeError(`dct2 ${this.h}×${this.w}: plane has ${x.length} values`);
    }
  }

  forward(x: Float64Array): void {
    this.#check(x);
    const { h, w } = this, wh = this.#fft.wh;
    const v = this.#v, re = this.#re, im = this.#im, oh = this.#oh, ow = this.#ow;
    for (let p = 0; p < h; p++) {
      const src = oh[p] * w, dst = p * w;
      for (let q = 0; q < w; q++) v[dst + q] = x[src + ow[q]];
    }
    this.#fft.forward(v, re, im);
    const { cr: a1r, ci: a1i, s: s1 } = this.#th, { cr: a2r, ci: a2i, s: s2 } = this.#tw;
    for (let k1 = 0; k1 < h; k1++) {
      const row = k1 * wh, neg = ((h - k1) % h) * wh; // rows of V[k1,·] and V[−k1,·]
      for (let k2 = 0; k2 < w; k2++) {
        // V[k1,k2] and M = V[k1,−k2] from the half spectrum (V[k1,k2] = conj V[−k1,−k2]).
        let vr, vi, mr, mi;
        if (k2 < wh) {
          vr = re[row + k2];
          vi = im[row + k2];
        } else {
          vr = re[neg + w - k2];
          vi = -im[neg + w - k2];
        }
        const m = k2 === 0 ? 0 : w - k2;
        if (m < wh) {
          mr = re[row + m];
          mi = im[row + m];
        } else {
          mr = re[neg + k2];
          mi = -im[neg + k2];
        }
        const cr = a2r[k2], ci = a2i[k2];
        const tr = cr * (vr + mr) - ci * (vi - mi);
        const ti = cr * (vi + mi) + ci * (vr - mr);
        x[k1 * w + k2] = 0.5 * (a1r[k1] * tr - a1i[k1] * ti) * s1[k1] * s2[k2];
      }
    }
  }

  inverse(X: Float64Array): void {
    this.#check(X);
    const { h, w } = this, wh = this.#fft.wh;
    const v = this.#v, re = this.#re, im = this.#im, oh = this.#oh, ow = this.#ow;
    const { cr: a1r, ci: a1i, s: s1 } = this.#th, { cr: a2r, ci: a2i, s: s2 } = this.#tw;
    const U = (k1: number, k2: number) => X[k1 * w + k2] / (s1[k1] * s2[k2]);
    for (let k1 = 0; k1 < h; k1++) {
      const n1 = h - k1;
      for (let k2 = 0; k2 < wh; k2++) {
        const n2 = w - k2;
        const c00 = U(k1, k2);
        const c11 = k1 > 0 && k2 > 0 ? U(n1, n2) : 0;
        const c10 = k1 > 0 ? U(n1, k2) : 0;
        const c01 = k2 > 0 ? U(k1, n2) : 0;
        const rr = c00 - c11, ri = -(c10 + c01);
        // V = conj(a1·a2)·R
        const ar = a1r[k1] * a2r[k2] - a1i[k1] * a2i[k2];
        const ai = a1r[k1] * a2i[k2] + a1i[k1] * a2r[k2];
        re[k1 * wh + k2] = ar * rr + ai * ri;
        im[k1 * wh + k2] = ar * ri - ai * rr;
      }
    }
    this.#fft.inverse(re, im, v);
    for (let p = 0; p < h; p++) {
      const dst = oh[p] * w, src = p * w;
      for (let q = 0; q < w; q++) X[dst + ow[q]] = v[src + q];
    }
  }
}

const plans = new Map<string, Dct2>();

/**
 * The (cached) orthonormal 2-D DCT plan for h×w planes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dct2 } from "./dct.ts";
 * const p = dct2(4, 6);
 * const x = new Float64Array(24).fill(1); // a constant plane has only a DC coefficient
 * p.forward(x);
 * assert.ok(Math.abs(x[0] - Math.sqrt(24)) < 1e-12 && Math.abs(x[1]) < 1e-12);
 * p.inverse(x);
 * assert.ok(x.every((v) => Math.abs(v - 1) < 1e-12));
 * ```
 */
export function dct2(h: number, w: number): Dct2 {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`dct2: size must be positive integers, got ${h}×${w}`);
  }
  const key = `${h}x${w}`;
  let p = plans.get(key);
  if (!p) plans.set(key, p = new Plan(h, w));
  return p;
}

/**
 * The orthonormal DCT-II matrix Φ (n×n, row-major): Φ[k,i] = s_k cos(π(2i+1)k/(2n)). Handy for
 * tests and for building DCT layers as MatMul weights.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dctMatrix } from "./dct.ts";
 * const P = dctMatrix(3);
 * let s = 0; // row 1 · row 1 = 1
 * for (let i = 0; i < 3; i++) s += P[3 + i] ** 2;
 * assert.ok(Math.abs(s - 1) < 1e-15);
 * ```
 */
export function dctMatrix(n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = Math.sqrt((k === 0 ? 1 : 2) / n);
    for (let i = 0; i < n; i++) m[k * n + i] = s * Math.cos((Math.PI * (2 * i + 1) * k) / (2 * n));
  }
  return m;
}
