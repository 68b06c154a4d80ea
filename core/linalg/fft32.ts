/**
 * Real-input 2-D FFTs in float32 at native-library speed, for the operators' hot paths.
 *
 *   forward:  X[u,v] = Σ_{i,j} x[i,j] · exp(−2πi (u·i/h + v·j/w)),   v ≤ ⌊w/2⌋ (half spectrum)
 *   inverse:  x[i,j] = s · Σ_{u,v} X[u,v] · exp(+2πi (u·i/h + v·j/w))   (s = 1/(h·w) by default)
 *
 * The butterflies are PFFFT (Pommier; the npm package `@echogarden/pffft-wasm`, WebAssembly SIMD):
 * real transforms along the rows, a transpose in JavaScript, complex transforms along the columns.
 * The spectrum is left TRANSPOSED — for each column v < wh = ⌊w/2⌋ + 1 the h complex values
 * X[0..h−1, v], interleaved (re, im) — because everything the operators do in the frequency domain
 * is pointwise (filters, Parseval), and the inverse transposes back: two transposes per
 * forward + inverse pair instead of four. The spectrum lives in the plan's WebAssembly buffer
 * (`forward` returns a view of it), so the hot path copies only the image in and out.
 *
 * Why PFFFT. Measured on the shared 2-core dev machine with `deno task bench:fft` (forward +
 * inverse of one real plane against SciPy's float32 `rfft2`/`irfft2` on one worker, interleaved
 * call by call; issue-14 note for every run): at 1024² PFFFT through this driver is 0.98–1.3× SciPy,
 * fft.js + our mixed radix (float64) 2.6–4.8×, kissfft-wasm's own 2-D real transform 3.4×, webfft
 * (its fastest sub-library, complex, powers of two only) 11–22×. PFFFT transforms rows of a
 * multiple of 32 and columns of a multiple of 16 with factors 2, 3, 5 directly (Kodak's 768×512
 * and 512×768, every power of two ≥ 32); any other length goes through Bluestein's algorithm on
 * PFFFT transforms (odd widths pair two real rows into one complex transform), 3–5× SciPy at
 * 999² and 1000², where the float64 path is 8×. If the module cannot be loaded (no
 * `--allow-read`), every plan falls back to the float64 `fft.ts` with the same layout.
 *
 * Accuracy: float32, relative error ≈ 1e-7·log₂(n) (tests/fft32_test.ts states the bound against
 * the float64 path). Closed-form tests that need 1e-12 (the exact model's DCT diagonal) keep using
 * the float64 `fft.ts`/`dct.ts`.
 *
 * @module
 */
import PFFFT from "@echogarden/pffft-wasm/simd";
import { fft2, type RealFft2, rfft2 } from "./fft.ts";

/** The WebAssembly module's functions we use (Emscripten exports). */
interface PffftModule {
  HEAPF32: Float32Array;
  _pffft_new_setup(n: number, transform: number): number;
  _pffft_transform_ordered(
    setup: number,
    input: number,
    output: number,
    work: number,
    dir: number,
  ): void;
  _pffft_aligned_malloc(bytes: number): number;
}

const PFFFT_REAL = 0, PFFFT_COMPLEX = 1, FORWARD = 0, BACKWARD = 1;

/**
 * The module, or null when it cannot be loaded (reading its .wasm file needs `--allow-read`): then
 * every plan is the float64 fallback — slower, same results to float32 precision.
 */
const wasm: PffftModule | null = await (PFFFT as unknown as (
  o: { print(s: string): void; printErr(s: string): void },
) => Promise<PffftModule>)({ print() {}, printErr() {} }).catch(() => null);

/** A float32 view of the module's heap (re-made if the memory grew since). */
function heap(byteOffset: number, length: number): Float32Array {
  return new Float32Array(wasm!.HEAPF32.buffer, byteOffset, length);
}

function alloc(floats: number): number {
  const p = wasm!._pffft_aligned_malloc(4 * floats);
  if (!p) throw new RangeError(`fft32: cannot allocate ${floats} floats`);
  return p;
}

/** Can PFFFT transform real length n directly (a multiple of 32, factors 2, 3, 5)? */
function pffftReal(n: number): boolean {
  return n % 32 === 0 && smooth235(n);
}

/** 2^a·3^b·5^c? */
function smooth235(n: number): boolean {
  for (const p of [2, 3, 5]) while (n % p === 0) n /= p;
  return n === 1;
}

/**
 * A float32 real-input 2-D FFT plan for h×w planes, spectrum transposed (see the module doc).
 * Plans hold their buffers; calls are synchronous, so a plan is never used re-entrantly.
 */
export interface RealFft2F32 {
  /** Rows. */
  readonly h: number;
  /** Columns of the real plane. */
  readonly w: number;
  /** Columns of the half spectrum, ⌊w/2⌋ + 1. */
  readonly wh: number;
  /** Floats in a spectrum: 2·h·wh (wh columns of h interleaved complex values). */
  readonly spectrumLength: number;
  /**
   * "pffft" (both axes direct), "pffft + Bluestein" (an axis PFFFT cannot do directly), or
   * "float64 fallback" (the module could not be loaded).
   */
  readonly engine: "pffft" | "pffft + Bluestein" | "float64 fallback";
  /**
   * The transposed half spectrum of the real h×w plane x (row-major; h·w values, any array
   * type). Returns the plan's spectrum buffer: valid, and editable in place, until the next call.
   */
  forward(x: ArrayLike<number>): Float32Array;
  /**
   * The real plane whose transposed half spectrum is in the plan's spectrum buffer (as returned
   * by `forward`, possibly edited; it is overwritten), times `scale` (default 1/(h·w): the exact
   * inverse), written to `out` (h·w values). Like numpy's `irfft2`, the imaginary parts of the DC
   * column and (even w) the Nyquist column are ignored.
   */
  inverse(out: Float32Array | Float64Array, scale?: number): void;
  /** The plan's spectrum buffer (same as `forward` returns). */
  spectrum(): Float32Array;
}

/** Transpose block size (floats per side); 16 keeps both sides in L1. */
const BLOCK = 16;

/**
 * A complex 1-D transform of length n on interleaved (re, im) floats in the module's heap, in place
 * at byte offset `ptr`: forward (e^{−2πi·}) or inverse without the 1/n factor.
 */
interface ComplexLine {
  readonly n: number;
  /** "pffft" or "bluestein". */
  readonly kind: "pffft" | "bluestein";
  run(ptr: number, inverse: boolean): void;
}

/** Can PFFFT transform complex length n directly (a multiple of 16, factors 2, 3, 5)? */
function pffftComplex(n: number): boolean {
  return n % 16 === 0 && smooth235(n);
}

/** PFFFT directly. */
function directLine(m: PffftModule, n: number): ComplexLine {
  const setup = m._pffft_new_setup(n, PFFFT_COMPLEX);
  if (!setup) throw new RangeError(`fft32: PFFFT cannot do complex length ${n}`);
  const work = alloc(2 * n);
  return {
    n,
    kind: "pffft",
    run(ptr, inverse) {
      m._pffft_transform_ordered(setup, ptr, ptr, work, inverse ? BACKWARD : FORWARD);
    },
  };
}

/**
 * Any n, by Bluestein's chirp-z algorithm on PFFFT transforms of length M ≥ 2n − 1 (the smallest
 * multiple of 16 with factors 2, 3, 5): with c_k = exp(−πi k²/n),
 * X_k = c_k · Σ_j (x_j c_j) · conj(c_{k−j}), a circular convolution of length M. The chirp and the
 * spectrum of conj(c) (scaled by 1/M) are computed in float64 and stored in float32. The inverse
 * is conj ∘ forward ∘ conj.
 */
function bluesteinLine(m: PffftModule, n: number): ComplexLine {
  let M = 16 * Math.ceil((2 * n - 1) / 16);
  while (!smooth235(M)) M += 16;
  const inner = directLine(m, M);
  const cr = new Float32Array(n), ci = new Float32Array(n);
  for (let k = 0; k < n; k++) {
    const a = (-Math.PI * ((k * k) % (2 * n))) / n; // k² mod 2n keeps the angle exact
    cr[k] = Math.cos(a);
    ci[k] = Math.sin(a);
  }
  const bre = new Float64Array(M), bim = new Float64Array(M);
  for (let k = 0; k < n; k++) {
    const a = (Math.PI * ((k * k) % (2 * n))) / n; // conj(c_k)
    bre[k] = Math.cos(a);
    bim[k] = Math.sin(a);
    if (k > 0) {
      bre[M - k] = bre[k];
      bim[M - k] = bim[k];
    }
  }
  fft2(1, M).forward(bre, bim);
  const B = new Float32Array(2 * M);
  for (let k = 0; k < M; k++) {
    B[2 * k] = bre[k] / M;
    B[2 * k + 1] = bim[k] / M;
  }
  const a = alloc(2 * M);
  return {
    n,
    kind: "bluestein",
    run(ptr, inverse) {
      const H = m.HEAPF32, x = ptr >> 2, o = a >> 2, s = inverse ? -1 : 1;
      for (let k = 0; k < n; k++) {
        const xr = H[x + 2 * k], xi = s * H[x + 2 * k + 1];
        H[o + 2 * k] = xr * cr[k] - xi * ci[k];
        H[o + 2 * k + 1] = xr * ci[k] + xi * cr[k];
      }
      H.fill(0, o + 2 * n, o + 2 * M);
      inner.run(a, false);
      for (let k = 0; k < 2 * M; k += 2) {
        const ar = H[o + k], ai = H[o + k + 1], br = B[k], bi = B[k + 1];
        H[o + k] = ar * br - ai * bi;
        H[o + k + 1] = ar * bi + ai * br;
      }
      inner.run(a, true);
      for (let k = 0; k < n; k++) {
        const ar = H[o + 2 * k], ai = H[o + 2 * k + 1];
        H[x + 2 * k] = ar * cr[k] - ai * ci[k];
        H[x + 2 * k + 1] = s * (ar * ci[k] + ai * cr[k]);
      }
    },
  };
}

function complexLine(m: PffftModule, n: number): ComplexLine {
  return pffftComplex(n) ? directLine(m, n) : bluesteinLine(m, n);
}

class PffftPlan implements RealFft2F32 {
  readonly wh: number;
  readonly spectrumLength: number;
  readonly engine: "pffft" | "pffft + Bluestein";
  readonly #m: PffftModule;
  /** PFFFT real setup of the rows (w a multiple of 32, factors 2, 3, 5), else 0. */
  readonly #rows: number;
  /** Otherwise: complex transforms of two real rows at once (a + i·b). */
  readonly #rowLine: ComplexLine | null;
  readonly #cols: ComplexLine;
  readonly #x: number;
  readonly #c: number;
  readonly #z: number;
  readonly #work: number;
  #X: Float32Array;
  #C: Float32Array;
  #Z: Float32Array;

  constructor(readonly h: number, readonly w: number) {
    this.wh = (w >> 1) + 1;
    this.spectrumLength = 2 * h * this.wh;
    if (!wasm) throw new RangeError("fft32: PFFFT is not loaded");
    this.#m = wasm;
    this.#rows = pffftReal(w) ? wasm._pffft_new_setup(w, PFFFT_REAL) : 0;
    this.#rowLine = this.#rows ? null : complexLine(wasm, w);
    this.#cols = complexLine(wasm, h);
    this.engine = this.#rowLine || this.#cols.kind === "bluestein" ? "pffft + Bluestein" : "pffft";
    this.#x = alloc(h * w);
    this.#c = alloc(this.spectrumLength);
    this.#z = alloc(2 * w);
    this.#work = alloc(2 * Math.max(h, w));
    this.#X = heap(this.#x, h * w);
    this.#C = heap(this.#c, this.spectrumLength);
    this.#Z = heap(this.#z, 2 * w);
  }

  /** Re-make the heap views if another plan grew the memory since. */
  #views(): void {
    if (this.#X.buffer !== this.#m.HEAPF32.buffer) {
      this.#X = heap(this.#x, this.h * this.w);
      this.#C = heap(this.#c, this.spectrumLength);
      this.#Z = heap(this.#z, 2 * this.w);
    }
  }

  spectrum(): Float32Array {
    this.#views();
    return this.#C;
  }

  forward(x: ArrayLike<number>): Float32Array {
    const { h, w } = this;
    if (x.length !== h * w) throw new RangeError(`fft32 ${h}×${w}: got ${x.length} values`);
    this.#views();
    if (this.#rowLine) this.#pairedRowsForward(x);
    else this.#realRowsForward(x);
    // Columns: complex transforms in place.
    for (let v = 0, p = this.#c; v < this.wh; v++, p += 8 * h) this.#cols.run(p, false);
    return this.#C;
  }

  inverse(out: Float32Array | Float64Array, scale = 1 / (this.h * this.w)): void {
    const { h, w } = this;
    if (out.length !== h * w) throw new RangeError(`fft32 ${h}×${w}: got ${out.length} values`);
    this.#views();
    for (let v = 0, p = this.#c; v < this.wh; v++, p += 8 * h) this.#cols.run(p, true);
    if (this.#rowLine) this.#pairedRowsInverse(out, scale);
    else this.#realRowsInverse(out, scale);
  }

  /** PFFFT real row transforms, then the transpose into wh columns (DC and Nyquist are real). */
  #realRowsForward(x: ArrayLike<number>): void {
    const { h, w } = this, X = this.#X, C = this.#C;
    X.set(x);
    // Ordered real transforms in place: [X0, X_{w/2}, re 1, im 1, …, re w/2−1, im w/2−1].
    for (let i = 0, p = this.#x; i < h; i++, p += 4 * w) {
      this.#m._pffft_transform_ordered(this.#rows, p, p, this.#work, FORWARD);
    }
    const half = w >> 1, nyq = 2 * half * h;
    for (let i0 = 0; i0 < h; i0 += BLOCK) {
      const i1 = Math.min(h, i0 + BLOCK);
      for (let i = i0; i < i1; i++) {
        const o = i * w;
        C[2 * i] = X[o];
        C[2 * i + 1] = 0;
        C[nyq + 2 * i] = X[o + 1];
        C[nyq + 2 * i + 1] = 0;
      }
      for (let v0 = 1; v0 < half; v0 += BLOCK) {
        const v1 = Math.min(half, v0 + BLOCK);
        for (let i = i0; i < i1; i++) {
          const o = i * w;
          for (let v = v0, d = 2 * (v0 * h + i); v < v1; v++, d += 2 * h) {
            C[d] = X[o + 2 * v];
            C[d + 1] = X[o + 2 * v + 1];
          }
        }
      }
    }
  }

  #realRowsInverse(out: Float32Array | Float64Array, scale: number): void {
    const { h, w } = this, X = this.#X, C = this.#C;
    const half = w >> 1, nyq = 2 * half * h;
    for (let i0 = 0; i0 < h; i0 += BLOCK) {
      const i1 = Math.min(h, i0 + BLOCK);
      for (let i = i0; i < i1; i++) {
        const o = i * w;
        X[o] = C[2 * i];
        X[o + 1] = C[nyq + 2 * i];
      }
      for (let v0 = 1; v0 < half; v0 += BLOCK) {
        const v1 = Math.min(half, v0 + BLOCK);
        for (let i = i0; i < i1; i++) {
          const o = i * w;
          for (let v = v0, d = 2 * (v0 * h + i); v < v1; v++, d += 2 * h) {
            X[o + 2 * v] = C[d];
            X[o + 2 * v + 1] = C[d + 1];
          }
        }
      }
    }
    for (let i = 0, p = this.#x; i < h; i++, p += 4 * w) {
      this.#m._pffft_transform_ordered(this.#rows, p, p, this.#work, BACKWARD);
    }
    for (let k = 0; k < out.length; k++) out[k] = scale * X[k];
  }

  /**
   * Two real rows a, b per complex transform of z = a + i·b; then A_v = (Z_v + conj Z_{−v})/2,
   * B_v = (Z_v − conj Z_{−v})/(2i), written into the columns.
   */
  #pairedRowsForward(x: ArrayLike<number>): void {
    const { h, w, wh } = this, Z = this.#Z, C = this.#C;
    for (let i = 0; i < h; i += 2) {
      const two = i + 1 < h, o = i * w;
      for (let j = 0; j < w; j++) {
        Z[2 * j] = x[o + j];
        Z[2 * j + 1] = two ? x[o + w + j] : 0;
      }
      this.#rowLine!.run(this.#z, false);
      for (let v = 0; v < wh; v++) {
        const m = v === 0 ? 0 : w - v, d = 2 * (v * h + i);
        const zr = Z[2 * v], zi = Z[2 * v + 1], cr = Z[2 * m], ci = Z[2 * m + 1];
        C[d] = 0.5 * (zr + cr);
        C[d + 1] = 0.5 * (zi - ci);
        if (two) {
          C[d + 2] = 0.5 * (zi + ci);
          C[d + 3] = -0.5 * (zr - cr);
        }
      }
    }
  }

  /** Z = A + i·B over the full (Hermitian) rows, an inverse transform, real and imaginary rows. */
  #pairedRowsInverse(out: Float32Array | Float64Array, scale: number): void {
    const { h, w, wh } = this, Z = this.#Z, C = this.#C;
    for (let i = 0; i < h; i += 2) {
      const two = i + 1 < h;
      for (let v = 0; v < w; v++) {
        const k = v < wh ? v : w - v, d = 2 * (k * h + i);
        // conj above w/2; the DC and (even w) Nyquist columns are real, as in irfft2.
        const cj = k === 0 || 2 * k === w ? 0 : v < wh ? 1 : -1;
        const ar = C[d], ai = cj * C[d + 1];
        const br = two ? C[d + 2] : 0, bi = two ? cj * C[d + 3] : 0;
        Z[2 * v] = ar - bi;
        Z[2 * v + 1] = ai + br;
      }
      this.#rowLine!.run(this.#z, true);
      const o = i * w;
      for (let j = 0; j < w; j++) {
        out[o + j] = scale * Z[2 * j];
        if (two) out[o + w + j] = scale * Z[2 * j + 1];
      }
    }
  }
}

/** Any size: the float64 plan of fft.ts, converted to and from the same transposed layout. */
class FallbackPlan implements RealFft2F32 {
  readonly wh: number;
  readonly spectrumLength: number;
  readonly engine = "float64 fallback" as const;
  readonly #plan: RealFft2;
  readonly #x: Float64Array;
  readonly #re: Float64Array;
  readonly #im: Float64Array;
  readonly #C: Float32Array;
  constructor(readonly h: number, readonly w: number) {
    this.#plan = rfft2(h, w);
    this.wh = this.#plan.wh;
    this.spectrumLength = 2 * h * this.wh;
    this.#x = new Float64Array(h * w);
    this.#re = new Float64Array(h * this.wh);
    this.#im = new Float64Array(h * this.wh);
    this.#C = new Float32Array(this.spectrumLength);
  }
  spectrum(): Float32Array {
    return this.#C;
  }
  forward(x: ArrayLike<number>): Float32Array {
    const { h, wh } = this;
    if (x.length !== h * this.w) {
      throw new RangeError(`fft32 ${h}×${this.w}: got ${x.length} values`);
    }
    this.#x.set(x);
    this.#plan.forward(this.#x, this.#re, this.#im);
    const C = this.#C, re = this.#re, im = this.#im;
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < wh; v++) {
        C[2 * (v * h + u)] = re[u * wh + v];
        C[2 * (v * h + u) + 1] = im[u * wh + v];
      }
    }
    return C;
  }
  inverse(out: Float32Array | Float64Array, scale = 1 / (this.h * this.w)): void {
    const { h, wh } = this;
    if (out.length !== h * this.w) {
      throw new RangeError(`fft32 ${h}×${this.w}: got ${out.length} values`);
    }
    const C = this.#C, re = this.#re, im = this.#im;
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < wh; v++) {
        re[u * wh + v] = C[2 * (v * h + u)];
        im[u * wh + v] = C[2 * (v * h + u) + 1];
      }
    }
    this.#plan.inverse(re, im, this.#x);
    const s = scale * this.h * this.w;
    for (let k = 0; k < out.length; k++) out[k] = s * this.#x[k];
  }
}

/**
 * The smallest length ≥ n that PFFFT transforms along an axis: a multiple of `multiple` (32 for
 * rows, which are real; 16 for columns, complex) without prime factors above 5. For zero-padded
 * (linear) convolutions, whose plane size is free.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastFft32Size } from "./fft32.ts";
 * assert.ok(fastFft32Size(1042, 32) === 1152); // 2⁷·3²
 * assert.ok(fastFft32Size(572, 16) === 576); // 2⁶·3²
 * ```
 */
export function fastFft32Size(n: number, multiple: 16 | 32): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`fastFft32Size: need n ≥ 1, got ${n}`);
  let m = Math.ceil(n / multiple) * multiple;
  while (!smooth235(m)) m += multiple;
  return m;
}

const plans = new Map<string, RealFft2F32>();

/**
 * Whether PFFFT transforms both axes of an h×w real plane directly: rows of a multiple of 32 and
 * columns of a multiple of 16, with factors 2, 3, 5 (other axes go through Bluestein on PFFFT).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pffftSupports } from "./fft32.ts";
 * assert.ok(pffftSupports(512, 768)); // Kodak
 * assert.ok(!pffftSupports(100, 100)); // 100 is not a multiple of 32 (rows) / 16 (columns)
 * ```
 */
export function pffftSupports(h: number, w: number): boolean {
  return wasm !== null && pffftReal(w) && pffftComplex(h);
}

/**
 * The (cached) float32 real-input 2-D FFT plan for h×w planes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rfft2f32 } from "./fft32.ts";
 * const p = rfft2f32(32, 64);
 * const x = Float32Array.from({ length: 32 * 64 }, (_, i) => Math.sin(i));
 * const spec = p.forward(x);
 * assert.equal(spec.length, 2 * 32 * 33); // 33 columns of 32 complex values
 * const back = new Float32Array(x.length);
 * p.inverse(back);
 * assert.ok(back.every((v, i) => Math.abs(v - x[i]) < 1e-5));
 * ```
 */
export function rfft2f32(h: number, w: number): RealFft2F32 {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`rfft2f32: size must be positive integers, got ${h}×${w}`);
  }
  const key = `${h}x${w}`;
  let p = plans.get(key);
  if (!p) {
    p = wasm ? new PffftPlan(h, w) : new FallbackPlan(h, w);
    plans.set(key, p);
  }
  return p;
}
