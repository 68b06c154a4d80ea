/**
 * Orthonormal 2-D DCT-II and its inverse (the DCT-III), any size, in float64, through the FFT.
 *
 * 1-D, length N (s_0 = √(1/N), s_k = √(2/N)):
 *   X_k = s_k Σ_{n<N} x_n cos(π(2n+1)k / (2N)),   x_n = Σ_{k<N} s_k X_k cos(π(2n+1)k / (2N)).
 * The matrix Φ[k,n] = s_k cos(π(2n+1)k/(2N)) is orthogonal, so the inverse is Φᵀ. In 2-D the
 * transform is separable: X = Φ_h · x · Φ_wᵀ on an h×w row-major plane.
 *
 * Each 1-D transform uses Makhoul's reordering (IEEE TASSP 1980): v = (x_0, x_2, x_4, …, x_5, x_3,
 * x_1), V = DFT_N(v), then X_k / s_k = Re(e^{−iπk/(2N)} V_k). The inverse rebuilds
 * e^{−iπk/(2N)} V_k = X_k/s_k − i·X_{N−k}/s_{N−k} (with X_N = 0), takes one inverse DFT and undoes
 * the reordering. Two real lines share one complex FFT (one in the real part, one in the imaginary
 * part), so a 2-D transform costs about half a complex 2-D FFT.
 *
 * Convolution with a kernel that is symmetric in each axis under the half-sample symmetric
 * ("symmetric", Neumann) boundary is diagonal in this basis (Ng, Chan & Tang 1999); the blur
 * operator uses it for a closed-form prox.
 *
 * @module
 */
import { type Fft2, fft2 } from "./fft.ts";

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

/** Batched 1-D orthonormal DCT-II / DCT-III of length n, on rows of a row-major array. */
class Dct1 {
  readonly #fft: Fft2;
  readonly #cr: Float64Array; // cos(πk/(2n))
  readonly #ci: Float64Array; // −sin(πk/(2n)), so (cr + i·ci) = e^{−iπk/(2n)}
  readonly #s: Float64Array; // s_k
  readonly #re: Float64Array;
  readonly #im: Float64Array;
  constructor(readonly n: number) {
    this.#fft = fft2(1, n);
    this.#cr = new Float64Array(n);
    this.#ci = new Float64Array(n);
    this.#s = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const a = (Math.PI * k) / (2 * n);
      this.#cr[k] = Math.cos(a);
      this.#ci[k] = -Math.sin(a);
      this.#s[k] = Math.sqrt((k === 0 ? 1 : 2) / n);
    }
    this.#re = new Float64Array(n);
    this.#im = new Float64Array(n);
  }

  /** Index of x_m in Makhoul's reordering v: v_p = x_{src(p)}. */
  #src(p: number): number {
    const n = this.n;
    return p < (n + 1) >> 1 ? 2 * p : 2 * (n - 1 - p) + 1;
  }

  /** Forward DCT-II of `rows` rows of length n starting at `off` (row stride n). */
  forward(x: Float64Array, off: number, rows: number): void {
    const n = this.n, re = this.#re, im = this.#im, cr = this.#cr, ci = this.#ci, s = this.#s;
    for (let r = 0; r < rows; r += 2) {
      const a = off + r * n, two = r + 1 < rows;
      const b = a + n;
      for (let p = 0; p < n; p++) {
        const q = this.#src(p);
        re[p] = x[a + q];
        im[p] = two ? x[b + q] : 0;
      }
      this.#fft.forward(re, im);
      // V = A + iB with A, B the spectra of the two real lines: A_k = (V_k + conj V_{n−k})/2,
      // B_k = (V_k − conj V_{n−k})/(2i).
      for (let k = 0; k < n; k++) {
        const m = k === 0 ? 0 : n - k;
        const vr = re[k], vi = im[k], wr = re[m], wi = im[m];
        const ar = 0.5 * (vr + wr), ai = 0.5 * (vi - wi);
        x[a + k] = s[k] * (cr[k] * ar - ci[k] * ai);
        if (two) {
          const br = 0.5 * (vi + wi), bi = -0.5 * (vr - wr);
          x[b + k] = s[k] * (cr[k] * br - ci[k] * bi);
        }
      }
    }
  }

  /** Inverse (DCT-III) of `rows` rows of length n starting at `off`. */
  inverse(X: Float64Array, off: number, rows: number): void {
    const n = this.n, re = this.#re, im = this.#im, cr = this.#cr, ci = this.#ci, s = this.#s;
    for (let r = 0; r < rows; r += 2) {
      const a = off + r * n, two = r + 1 < rows;
      const b = a + n;
      // For each line: U_k = X_k/s_k, e^{−iπk/(2n)} V_k = U_k − i U_{n−k}, so
      // V_k = e^{+iπk/(2n)} (U_k − i U_{n−k}). Both lines' V are Hermitian, so V_A + i V_B
      // inverse-transforms to v_A + i v_B.
      for (let k = 0; k < n; k++) {
        const ua = X[a + k] / s[k], uan = k === 0 ? 0 : X[a + n - k] / s[n - k];
        const er = cr[k], ei = -ci[k]; // e^{+iπk/(2n)}
        // V_A = (er + i ei)(ua − i uan)
        const var_ = er * ua + ei * uan, vai = ei * ua - er * uan;
        let vbr = 0, vbi = 0;
        if (two) {
          const ub = X[b + k] / s[k], ubn = k === 0 ? 0 : X[b + n - k] / s[n - k];
          vbr = er * ub + ei * ubn;
          vbi = ei * ub - er * ubn;
        }
        re[k] = var_ - vbi;
        im[k] = vai + vbr;
      }
      this.#fft.inverse(re, im);
      for (let p = 0; p < n; p++) {
        const q = this.#src(p);
        X[a + q] = re[p];
        if (two) X[b + q] = im[p];
      }
    }
  }
}

class Plan implements Dct2 {
  readonly #rows: Dct1;
  readonly #cols: Dct1;
  readonly #t: Float64Array;
  constructor(readonly h: number, readonly w: number) {
    this.#rows = new Dct1(w);
    this.#cols = h === w ? this.#rows : new Dct1(h);
    this.#t = new Float64Array(h * w);
  }
  #check(x: Float64Array): void {
    if (x.length !== this.h * this.w) {
      throw new RangeError(`dct2 ${this.h}×${this.w}: plane has ${x.length} values`);
    }
  }
  #transpose(src: Float64Array, dst: Float64Array, h: number, w: number): void {
    const B = 32;
    for (let i0 = 0; i0 < h; i0 += B) {
      for (let j0 = 0; j0 < w; j0 += B) {
        const i1 = Math.min(h, i0 + B), j1 = Math.min(w, j0 + B);
        for (let i = i0; i < i1; i++) {
          for (let j = j0; j < j1; j++) dst[j * h + i] = src[i * w + j];
        }
      }
    }
  }
  forward(x: Float64Array): void {
    this.#check(x);
    const { h, w } = this;
    this.#rows.forward(x, 0, h);
    this.#transpose(x, this.#t, h, w);
    this.#cols.forward(this.#t, 0, w);
    this.#transpose(this.#t, x, w, h);
  }
  inverse(X: Float64Array): void {
    this.#check(X);
    const { h, w } = this;
    this.#transpose(X, this.#t, h, w);
    this.#cols.inverse(this.#t, 0, w);
    this.#transpose(this.#t, X, w, h);
    this.#rows.inverse(X, 0, h);
  }
}

const plans = new Map<string, Dct2>();

/**
 * The (cached) orthonormal 2-D DCT plan for h×w planes.
 *
 * @example
 * ```ts
 * import { dct2 } from "./dct.ts";
 * const p = dct2(4, 6);
 * const x = new Float64Array(24).fill(1); // a constant plane has only a DC coefficient
 * p.forward(x);
 * console.assert(Math.abs(x[0] - Math.sqrt(24)) < 1e-12 && Math.abs(x[1]) < 1e-12);
 * p.inverse(x);
 * console.assert(x.every((v) => Math.abs(v - 1) < 1e-12));
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
 * import { dctMatrix } from "./dct.ts";
 * const P = dctMatrix(3);
 * let s = 0; // row 1 · row 1 = 1
 * for (let i = 0; i < 3; i++) s += P[3 + i] ** 2;
 * console.assert(Math.abs(s - 1) < 1e-15);
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
