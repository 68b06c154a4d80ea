/**
 * Two-dimensional discrete Fourier transforms of any size, in float64.
 *
 *   forward:  X[u,v] = Σ_{i,j} x[i,j] · exp(−2πi (u·i/h + v·j/w))
 *   inverse:  x[i,j] = 1/(h·w) Σ_{u,v} X[u,v] · exp(+2πi (u·i/h + v·j/w))
 *
 * The butterflies come from the npm package `fft.js` (radix-4, float64, powers of two). Other
 * lengths are reduced to it:
 * - n with an odd prime factor p ≤ {@link MAX_SMALL_RADIX}: one Cooley–Tukey decimation-in-time
 *   step: p transforms of length n/p (recursively, down to fft.js), twiddles, then n/p direct
 *   p-point DFTs;
 * - n whose smallest odd prime factor is larger: Bluestein's chirp-z algorithm on a library FFT
 *   of length M = 2^⌈log₂(2n−1)⌉.
 *
 * Why fft.js. Measured 2026-11-25 on the 2-core dev machine (shared, so ±30 %), Deno 2.9.6, one
 * process, median of 7, complex 2-D forward transform of an h×w plane including the copies in and
 * out, every candidate with the same cache-blocked row/column driver (a scratch script, not in the
 * repo):
 *
 * | engine                               | precision | 512×512 | 768×512 | 512×768 | 1024²   |
 * |--------------------------------------|-----------|---------|---------|---------|---------|
 * | this module (first version, m ≤ 15)  | float64   | 5.4 ms  | 12.3 ms | 12.3 ms | 22–35 ms|
 * | fft.js + Bluestein for 768           | float64   | 5.6 ms  | 27.9 ms | 29.2 ms | 24–38 ms|
 * | @echogarden/pffft-wasm 0.4.2 (SIMD)  | float32   | 4.8 ms  | 7.4 ms  | 8.4 ms  | 20–30 ms|
 * | kissfft-wasm 1.1.2 fftnd (own 2-D)   | float32   | 10.0 ms | 15.5 ms | 15.8 ms | 40 ms   |
 *
 * (kissfft under Node 20 with a loader workaround.) The mixed-radix step was then made recursive
 * with a symmetric direct DFT: one 1-D line now costs 5.5 µs (512), 12.8 µs (576 = 2⁶·3²), 18.4 µs
 * (768, was 28.1 µs) and 12.1 µs (1024).
 *
 * Both WASM libraries are single precision: relative error 1.1e-7 against a naive DFT, versus
 * 2e-14 here. The exact-model tests need the blur's DCT diagonal to 1e-12 (exact-model-study.md
 * §5), so single precision is unfit as the one engine. It is the second one since issue 14:
 * `fft32.ts` drives PFFFT with its own transposed-spectrum layout for the operators' hot paths
 * (2–3× this module at 1024², ≈ SciPy's float32 speed; `deno task bench:fft`), and this module
 * stays for float64 work: the DCT, the exact diagonals, SR's low-resolution solve, any size. kissfft-wasm is also unmaintained (2021): its loader fails under
 * Node ≥ 18 (it `fetch`es a file path) after installing process-wide `uncaughtException` /
 * `unhandledRejection` handlers. pffft needs n = 2^a·3^b·5^c with a ≥ 5, so odd sizes would need
 * Bluestein anyway. fft.js with Bluestein alone is 2.3× slower at Kodak's 768, hence the
 * mixed-radix step written here (inner library FFTs plus direct p-point DFTs for small odd primes
 * p; no unrolled butterflies).
 *
 * @module
 */
import FFT from "fft.js";

/** A 2-D FFT plan for h×w complex planes stored as separate row-major real and imaginary parts. */
export interface Fft2 {
  /** Number of rows. */
  readonly h: number;
  /** Number of columns. */
  readonly w: number;
  /** In-place unnormalised 2-D DFT of an h×w complex plane (row-major). */
  forward(re: Float64Array, im: Float64Array): void;
  /** In-place inverse, including the 1/(h·w) factor. */
  inverse(re: Float64Array, im: Float64Array): void;
}

/**
 * Odd prime factors up to this size get a direct mixed-radix step; larger ones use Bluestein.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fft2, MAX_SMALL_RADIX } from "./fft.ts";
 * assert.equal(MAX_SMALL_RADIX, 13);
 * // 13 is still a direct radix step; 17 goes through Bluestein. Both are exact DFTs.
 * const re = new Float64Array(17).fill(1), im = new Float64Array(17);
 * fft2(1, 17).forward(re, im);
 * assert.ok(Math.abs(re[0] - 17) < 1e-9 && Math.abs(re[1]) < 1e-9);
 * ```
 */
export const MAX_SMALL_RADIX = 13;

/**
 * A 1-D complex DFT of length n on interleaved (re, im) Float64Arrays of length 2n.
 * `transform(src, dst)` writes DFT(src) into dst; src may be overwritten; src ≠ dst.
 */
interface Line {
  readonly n: number;
  transform(src: Float64Array, dst: Float64Array): void;
}

type FftJs = {
  transform(out: Float64Array, data: Float64Array): void;
  inverseTransform(out: Float64Array, data: Float64Array): void;
};

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** Length 1: the identity. */
function unitLine(): Line {
  return {
    n: 1,
    transform(src, dst) {
      dst[0] = src[0];
      dst[1] = src[1];
    },
  };
}

/** Powers of two ≥ 2: fft.js directly. */
function pow2Line(n: number): Line {
  const f = new FFT(n) as unknown as FftJs;
  return { n, transform: (src, dst) => f.transform(dst, src) };
}

/**
 * n = m·L with m a small odd prime. Decimation in time:
 *   X[k1 + L·k2] = Σ_{r<m} W_m^{r·k2} · t_r,   t_r = W_n^{r·k1} · Y_r[k1],   Y_r = DFT_L(x[m·j + r])_j,
 * with W_N = exp(−2πi/N): m inner transforms, then for each k1 one m-point DFT of the twiddled t_r.
 * That DFT uses the symmetry of the cosines and sines for odd m: with u_r = t_r + t_{m−r},
 * v_r = t_r − t_{m−r} (1 ≤ r ≤ (m−1)/2), A = Σ u_r cos(2πr·k2/m), B = Σ v_r sin(2πr·k2/m),
 *   X[k2] = t_0 + A − i·B,   X[m − k2] = t_0 + A + i·B,   X[0] = t_0 + Σ u_r,
 * about m²/4 complex multiply-adds per group instead of m².
 */
function mixedLine(n: number, m: number): Line {
  const L = n / m, half = (m - 1) / 2;
  const inner = makeLine(L);
  // Twiddles W_n^{r·k1} for r < m, k1 < L (row r at offset 2·r·L).
  const tw = new Float64Array(2 * m * L);
  for (let r = 0; r < m; r++) {
    for (let k1 = 0; k1 < L; k1++) {
      const a = (-2 * Math.PI * ((r * k1) % n)) / n;
      tw[2 * (r * L + k1)] = Math.cos(a);
      tw[2 * (r * L + k1) + 1] = Math.sin(a);
    }
  }
  // cos/sin(2π·r·k/m) for 1 ≤ r, k ≤ half, at (k−1)·half + (r−1).
  const cs = new Float64Array(half * half), sn = new Float64Array(half * half);
  for (let k = 1; k <= half; k++) {
    for (let r = 1; r <= half; r++) {
      const a = (2 * Math.PI * ((r * k) % m)) / m;
      cs[(k - 1) * half + r - 1] = Math.cos(a);
      sn[(k - 1) * half + r - 1] = Math.sin(a);
    }
  }
  const sub = new Float64Array(2 * L);
  const y = new Float64Array(2 * n); // Y_r at offset 2·r·L
  const views = Array.from({ length: m }, (_, r) => y.subarray(2 * r * L, 2 * (r + 1) * L));
  const tr = new Float64Array(m), ti = new Float64Array(m);
  const ur = new Float64Array(half + 1), ui = new Float64Array(half + 1);
  const vr = new Float64Array(half + 1), vi = new Float64Array(half + 1);
  return {
    n,
    transform(src, dst) {
      for (let r = 0; r < m; r++) {
        for (let j = 0, o = 2 * r; j < L; j++, o += 2 * m) {
          sub[2 * j] = src[o];
          sub[2 * j + 1] = src[o + 1];
        }
        inner.transform(sub, views[r]);
      }
      for (let k1 = 0; k1 < L; k1++) {
        tr[0] = y[2 * k1];
        ti[0] = y[2 * k1 + 1];
        for (let r = 1; r < m; r++) {
          const o = 2 * (r * L + k1);
          const ar = y[o], ai = y[o + 1], cr = tw[o], ci = tw[o + 1];
          tr[r] = ar * cr - ai * ci;
          ti[r] = ar * ci + ai * cr;
        }
        let x0r = tr[0], x0i = ti[0];
        for (let r = 1; r <= half; r++) {
          ur[r] = tr[r] + tr[m - r];
          ui[r] = ti[r] + ti[m - r];
          vr[r] = tr[r] - tr[m - r];
          vi[r] = ti[r] - ti[m - r];
          x0r += ur[r];
          x0i += ui[r];
        }
        dst[2 * k1] = x0r;
        dst[2 * k1 + 1] = x0i;
        for (let k = 1; k <= half; k++) {
          let ar = tr[0], ai = ti[0], br = 0, bi = 0;
          const row = (k - 1) * half - 1;
          for (let r = 1; r <= half; r++) {
            const c = cs[row + r], s = sn[row + r];
            ar += ur[r] * c;
            ai += ui[r] * c;
            br += vr[r] * s;
            bi += vi[r] * s;
          }
          // X[k] = A − i·B, X[m−k] = A + i·B (A includes t_0)
          const o1 = 2 * (k1 + L * k), o2 = 2 * (k1 + L * (m - k));
          dst[o1] = ar + bi;
          dst[o1 + 1] = ai - br;
          dst[o2] = ar - bi;
          dst[o2 + 1] = ai + br;
        }
      }
    },
  };
}

/**
 * Bluestein: with the chirp c_k = exp(−πi k²/n), X_k = c_k · Σ_j (x_j c_j) · conj(c_{k−j}), a
 * circular convolution of length M ≥ 2n−1 done with library FFTs. k² is reduced mod 2n so the
 * angle stays exact for large k.
 */
function bluesteinLine(n: number): Line {
  let M = 1;
  while (M < 2 * n - 1) M <<= 1;
  const f = new FFT(M) as unknown as FftJs;
  const cr = new Float64Array(n), ci = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const a = (-Math.PI * ((k * k) % (2 * n))) / n;
    cr[k] = Math.cos(a);
    ci[k] = Math.sin(a);
  }
  const b = new Float64Array(2 * M);
  for (let k = 0; k < n; k++) {
    b[2 * k] = cr[k];
    b[2 * k + 1] = -ci[k];
    if (k > 0) {
      b[2 * (M - k)] = cr[k];
      b[2 * (M - k) + 1] = -ci[k];
    }
  }
  const B = new Float64Array(2 * M);
  f.transform(B, b);
  const a = new Float64Array(2 * M), A = new Float64Array(2 * M);
  return {
    n,
    transform(src, dst) {
      a.fill(0);
      for (let k = 0; k < n; k++) {
        const xr = src[2 * k], xi = src[2 * k + 1];
        a[2 * k] = xr * cr[k] - xi * ci[k];
        a[2 * k + 1] = xr * ci[k] + xi * cr[k];
      }
      f.transform(A, a);
      for (let k = 0; k < M; k++) {
        const ar = A[2 * k], ai = A[2 * k + 1], br = B[2 * k], bi = B[2 * k + 1];
        A[2 * k] = ar * br - ai * bi;
        A[2 * k + 1] = ar * bi + ai * br;
      }
      f.inverseTransform(a, A);
      for (let k = 0; k < n; k++) {
        const xr = a[2 * k], xi = a[2 * k + 1];
        dst[2 * k] = xr * cr[k] - xi * ci[k];
        dst[2 * k + 1] = xr * ci[k] + xi * cr[k];
      }
    },
  };
}

/** The smallest odd prime factor of n, or 1 when n is a power of two. */
function smallestOddPrime(n: number): number {
  while (n % 2 === 0) n /= 2;
  for (let p = 3; p * p <= n; p += 2) if (n % p === 0) return p;
  return n;
}

/** Pick the algorithm for length n. */
function makeLine(n: number): Line {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`FFT length must be ≥ 1, got ${n}`);
  if (n === 1) return unitLine();
  if (isPow2(n)) return pow2Line(n);
  const p = smallestOddPrime(n);
  if (p <= MAX_SMALL_RADIX) return mixedLine(n, p);
  return bluesteinLine(n);
}

/**
 * Estimated cost of a length-n transform per element: log₂ of the power-of-two part plus the sum
 * of the odd prime factors (each mixed-radix step costs about p per element); Infinity when a
 * prime factor needs Bluestein.
 */
function lineCost(n: number): number {
  let k = 0, cost = 0;
  while (n % 2 === 0) {
    n /= 2;
    k++;
  }
  for (let p = 3; p <= MAX_SMALL_RADIX; p += 2) {
    while (n % p === 0) {
      cost += p;
      n /= p;
    }
  }
  return n > 1 ? Infinity : cost + k;
}

/**
 * The cheapest length ≥ n for a zero-padded (linear) convolution: among the lengths in [n, 2^⌈log₂n⌉]
 * without prime factors above {@link MAX_SMALL_RADIX}, the one with the smallest estimated total
 * cost n'·(log₂(2-part) + Σ odd primes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastFftSize } from "./fft.ts";
 * assert.ok(fastFftSize(572) === 576); // 576 = 2⁶·3², cheaper than 572 = 4·11·13 or 640
 * ```
 */
export function fastFftSize(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`fastFftSize: need n ≥ 1, got ${n}`);
  let pow2 = 1;
  while (pow2 < n) pow2 *= 2;
  let best = pow2, bestCost = pow2 * lineCost(pow2);
  for (let m = n; m < pow2; m++) {
    const c = m * lineCost(m);
    if (c < bestCost) {
      best = m;
      bestCost = c;
    }
  }
  return best;
}

/** Columns handled per pass: contiguous reads of this many doubles per row keep the cache warm. */
const COLUMN_BLOCK = 16;

class Plan2 implements Fft2 {
  readonly #row: Line;
  readonly #col: Line;
  readonly #a: Float64Array;
  readonly #b: Float64Array;
  readonly #cols: Float64Array;
  constructor(readonly h: number, readonly w: number) {
    this.#row = makeLine(w);
    this.#col = h === w ? this.#row : makeLine(h);
    const n = Math.max(h, w);
    this.#a = new Float64Array(2 * n);
    this.#b = new Float64Array(2 * n);
    this.#cols = new Float64Array(2 * h * COLUMN_BLOCK);
  }

  #check(re: Float64Array, im: Float64Array): void {
    const n = this.h * this.w;
    if (re.length !== n || im.length !== n) {
      throw new RangeError(
        `fft2 ${this.h}×${this.w}: planes have ${re.length} and ${im.length} values, need ${n}`,
      );
    }
  }

  /** DFT along rows then columns. */
  #run(re: Float64Array, im: Float64Array): void {
    const { h, w } = this;
    const a = this.#a, b = this.#b;
    if (w > 1) {
      for (let i = 0; i < h; i++) {
        const o = i * w;
        for (let j = 0; j < w; j++) {
          a[2 * j] = re[o + j];
          a[2 * j + 1] = im[o + j];
        }
        this.#row.transform(a, b);
        for (let j = 0; j < w; j++) {
          re[o + j] = b[2 * j];
          im[o + j] = b[2 * j + 1];
        }
      }
    }
    this.columns(re, im, w);
  }

  /**
   * In place: DFT along the h-long columns of the first `width` columns of h×width planes
   * (internal; shared with the real-input plan).
   */
  columns(re: Float64Array, im: Float64Array, width: number): void {
    const h = this.h, b = this.#b;
    if (h > 1) {
      const cols = this.#cols;
      for (let j0 = 0; j0 < width; j0 += COLUMN_BLOCK) {
        const nb = Math.min(COLUMN_BLOCK, width - j0);
        for (let i = 0; i < h; i++) {
          const o = i * width + j0;
          for (let c = 0; c < nb; c++) {
            cols[2 * (c * h + i)] = re[o + c];
            cols[2 * (c * h + i) + 1] = im[o + c];
          }
        }
        for (let c = 0; c < nb; c++) {
          const col = cols.subarray(2 * c * h, 2 * (c + 1) * h);
          this.#col.transform(col, b);
          col.set(b.subarray(0, 2 * h));
        }
        for (let i = 0; i < h; i++) {
          const o = i * width + j0;
          for (let c = 0; c < nb; c++) {
            re[o + c] = cols[2 * (c * h + i)];
            im[o + c] = cols[2 * (c * h + i) + 1];
          }
        }
      }
    }
  }

  /** The row transform and its scratch buffers (internal; shared with the real-input plan). */
  rowLine(): { line: Line; a: Float64Array; b: Float64Array } {
    return { line: this.#row, a: this.#a, b: this.#b };
  }

  forward(re: Float64Array, im: Float64Array): void {
    this.#check(re, im);
    this.#run(re, im);
  }

  inverse(re: Float64Array, im: Float64Array): void {
    this.#check(re, im);
    // DFT⁻¹(x) = swap(DFT(swap(x)))/N, where swap exchanges real and imaginary parts.
    this.#run(im, re);
    const s = 1 / (this.h * this.w);
    for (let k = 0; k < re.length; k++) {
      re[k] *= s;
      im[k] *= s;
    }
  }
}

/**
 * A 2-D FFT plan for real h×w planes: the half spectrum X[u,v], v ≤ ⌊w/2⌋ (the rest is
 * X[u,v] = conj X[−u,−v]), stored as h×wh row-major planes with wh = ⌊w/2⌋ + 1 (numpy's `rfft2`
 * layout). About half the work of a complex transform.
 */
export interface RealFft2 {
  /** Number of rows. */
  readonly h: number;
  /** Number of columns of the real plane. */
  readonly w: number;
  /** Columns of the half spectrum, ⌊w/2⌋ + 1. */
  readonly wh: number;
  /** Half spectrum of the real plane x (h·w values) into re, im (h·wh values each). */
  forward(x: Float64Array, re: Float64Array, im: Float64Array): void;
  /**
   * The real plane x (h·w values) whose half spectrum is (re, im), including the 1/(h·w) factor.
   * Like numpy's `irfft2`: a complex inverse along columns, then a real inverse along rows that
   * ignores the imaginary parts of columns 0 and (even w) w/2. Inputs are not changed.
   */
  inverse(re: Float64Array, im: Float64Array, x: Float64Array): void;
}

/**
 * Real plans pack two real rows into one complex row transform (a + i·b; A_v = (Z_v + conj
 * Z_{w−v})/2, B_v = (Z_v − conj Z_{w−v})/(2i)), then transform only the wh columns that are kept.
 */
class RealPlan2 implements RealFft2 {
  readonly wh: number;
  readonly #c: Plan2;
  readonly #re: Float64Array;
  readonly #im: Float64Array;
  constructor(readonly h: number, readonly w: number) {
    this.wh = Math.floor(w / 2) + 1;
    this.#c = plan2(h, w) as Plan2;
    this.#re = new Float64Array(h * this.wh);
    this.#im = new Float64Array(h * this.wh);
  }

  #check(nx: number, nre: number, nim: number): void {
    const { h, w, wh } = this;
    if (nx !== h * w || nre !== h * wh || nim !== h * wh) {
      throw new RangeError(
        `rfft2 ${h}×${w}: got ${nx} real and ${nre}/${nim} spectral values, need ${h * w} and ${
          h * wh
        }`,
      );
    }
  }

  forward(x: Float64Array, re: Float64Array, im: Float64Array): void {
    this.#check(x.length, re.length, im.length);
    const { h, w, wh } = this;
    const { line, a, b } = this.#c.rowLine();
    for (let i = 0; i < h; i += 2) {
      const two = i + 1 < h;
      const o = i * w;
      for (let j = 0; j < w; j++) {
        a[2 * j] = x[o + j];
        a[2 * j + 1] = two ? x[o + w + j] : 0;
      }
      line.transform(a, b);
      const p = i * wh, q = p + wh;
      for (let v = 0; v < wh; v++) {
        const m = v === 0 ? 0 : w - v;
        const zr = b[2 * v], zi = b[2 * v + 1], cr = b[2 * m], ci = b[2 * m + 1];
        re[p + v] = 0.5 * (zr + cr);
        im[p + v] = 0.5 * (zi - ci);
        if (two) {
          re[q + v] = 0.5 * (zi + ci);
          im[q + v] = -0.5 * (zr - cr);
        }
      }
    }
    this.#c.columns(re, im, wh);
  }

  inverse(re: Float64Array, im: Float64Array, x: Float64Array): void {
    this.#check(x.length, re.length, im.length);
    const { h, w, wh } = this;
    const sr = this.#re, si = this.#im;
    // Columns: IDFT = swap ∘ DFT ∘ swap (times h), with swap exchanging real and imaginary parts.
    sr.set(re);
    si.set(im);
    this.#c.columns(si, sr, wh);
    const { line, a, b } = this.#c.rowLine();
    const s = 1 / (h * w);
    for (let i = 0; i < h; i += 2) {
      const two = i + 1 < h;
      const p = i * wh, q = p + wh;
      // Z = A + i·B with A, B the full (Hermitian) row spectra; fill swap(Z) into a.
      for (let v = 0; v < w; v++) {
        const k = v < wh ? v : w - v;
        // Hermitian rows: conj above w/2; DC and (even w) Nyquist are real, as in numpy's irfft.
        const cj = k === 0 || 2 * k === w ? 0 : v < wh ? 1 : -1;
        const ar = sr[p + k], ai = cj * si[p + k];
        const br = two ? sr[q + k] : 0, bi = two ? cj * si[q + k] : 0;
        a[2 * v] = ai + br; // Im Z
        a[2 * v + 1] = ar - bi; // Re Z
      }
      line.transform(a, b);
      const o = i * w;
      for (let j = 0; j < w; j++) {
        x[o + j] = s * b[2 * j + 1];
        if (two) x[o + w + j] = s * b[2 * j];
      }
    }
  }
}

const plans = new Map<string, Fft2>();

/**
 * The (cached) 2-D FFT plan for h×w planes. Plans hold scratch buffers, so a plan must not be used
 * re-entrantly (JavaScript is single-threaded, and every method is synchronous, so it is not).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fft2 } from "./fft.ts";
 * const p = fft2(3, 5);
 * const re = new Float64Array(15), im = new Float64Array(15);
 * re[0] = 1; // a delta has a flat spectrum
 * p.forward(re, im);
 * assert.ok(re.every((v) => Math.abs(v - 1) < 1e-12));
 * p.inverse(re, im);
 * assert.ok(Math.abs(re[0] - 1) < 1e-12 && Math.abs(re[1]) < 1e-12);
 * ```
 */
export function fft2(h: number, w: number): Fft2 {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`fft2: size must be positive integers, got ${h}×${w}`);
  }
  return plan2(h, w);
}

function plan2(h: number, w: number): Fft2 {
  const key = `${h}x${w}`;
  let p = plans.get(key);
  if (!p) plans.set(key, p = new Plan2(h, w));
  return p;
}

const realPlans = new Map<string, RealFft2>();

/**
 * The (cached) real-input 2-D FFT plan for h×w planes (half spectrum, numpy `rfft2` layout).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rfft2 } from "./fft.ts";
 * const p = rfft2(4, 6); // half spectrum 4×4
 * const x = Float64Array.from({ length: 24 }, (_, i) => i % 5);
 * const re = new Float64Array(16), im = new Float64Array(16), back = new Float64Array(24);
 * p.forward(x, re, im);
 * assert.ok(Math.abs(re[0] - x.reduce((a, b) => a + b)) < 1e-12); // DC = sum
 * p.inverse(re, im, back);
 * assert.ok(back.every((v, i) => Math.abs(v - x[i]) < 1e-12));
 * ```
 */
export function rfft2(h: number, w: number): RealFft2 {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`rfft2: size must be positive integers, got ${h}×${w}`);
  }
  const key = `${h}x${w}`;
  let p = realPlans.get(key);
  if (!p) realPlans.set(key, p = new RealPlan2(h, w));
  return p;
}
