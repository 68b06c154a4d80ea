/**
 * JPEG steps 4–6 of the model (see `operators/jpeg.ts`): the IJG quantisation tables and their
 * quality scaling, the 8×8 orthonormal block DCT, and one coded plane's DCT → soft quantisation →
 * IDCT.
 *
 * @module
 */
import { InputError } from "../../core/errors.ts";
import { JpegSoftRound, LOGISTIC_SCALE_PER_STD } from "./rounding.ts";

/** IJG / JPEG Annex K luminance table, natural (row-major) order. */
export const IJG_LUMINANCE_TABLE: readonly number[] = Object.freeze(
  [
    "16 11 10 16 24 40 51 61",
    "12 12 14 19 26 58 60 55",
    "14 13 16 24 40 57 69 56",
    "14 17 22 29 51 87 80 62",
    "18 22 37 56 68 109 103 77",
    "24 35 55 64 81 104 113 92",
    "49 64 78 87 103 121 120 101",
    "72 92 95 98 112 100 103 99",
  ].join(" ").split(" ").map(Number),
);

/** IJG / JPEG Annex K chrominance table, natural (row-major) order. */
export const IJG_CHROMINANCE_TABLE: readonly number[] = Object.freeze(
  [
    "17 18 24 47 99 99 99 99",
    "18 21 26 66 99 99 99 99",
    "24 26 56 99 99 99 99 99",
    "47 66 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
    "99 99 99 99 99 99 99 99",
  ].join(" ").split(" ").map(Number),
);

/**
 * The IJG quality scaling (libjpeg `jpeg_quality_scaling` + `jpeg_add_quant_table` with
 * force_baseline): s = 5000/q for q < 50, else 200 − 2q; Q = clamp(⌊(T·s + 50)/100⌋, 1, 255).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IJG_LUMINANCE_TABLE, jpegQuantTable } from "./quantise.ts";
 * assert.equal(jpegQuantTable(IJG_LUMINANCE_TABLE, 50)[0], 16);
 * assert.ok(jpegQuantTable(IJG_LUMINANCE_TABLE, 100).every((q) => q === 1));
 * ```
 */
export function jpegQuantTable(base: readonly number[], quality: number): Int32Array {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new InputError(`jpeg: quality must be an integer in 1..100, got ${quality}`);
  }
  const s = quality < 50 ? Math.floor(5000 / quality) : 200 - 2 * quality;
  return Int32Array.from(base, (t) => Math.min(255, Math.max(1, Math.floor((t * s + 50) / 100))));
}

// ---------------------------------------------------------------------------------------------
/** DCT8[k·8 + n] = c_k cos((2n + 1)kπ/16), c_0 = √(1/8), c_k = ½: orthonormal. */
export const DCT8 = (() => {
  const m = new Float64Array(64);
  for (let k = 0; k < 8; k++) {
    for (let n = 0; n < 8; n++) {
      m[k * 8 + n] = (k === 0 ? Math.SQRT1_2 / 2 : 0.5) *
        Math.cos(((2 * n + 1) * k * Math.PI) / 16);
    }
  }
  return m;
})();

const C1 = 0.5 * Math.cos(Math.PI / 16), C2 = 0.5 * Math.cos(2 * Math.PI / 16);
const C3 = 0.5 * Math.cos(3 * Math.PI / 16), C4 = 0.5 * Math.cos(4 * Math.PI / 16);
const C5 = 0.5 * Math.cos(5 * Math.PI / 16), C6 = 0.5 * Math.cos(6 * Math.PI / 16);
const C7 = 0.5 * Math.cos(7 * Math.PI / 16);

/**
 * One 8-point orthonormal DCT-II of v[o], v[o + s], …, v[o + 7s] in place, by the even/odd
 * butterfly (DCT8[k][7 − n] = (−1)^k DCT8[k][n], then once more on the even half): 22 multiplies.
 * With C_k = ½cos(kπ/16): X0,4 = C4(ee0 ± ee1), X2 = C2 eo0 + C6 eo1, X6 = C6 eo0 − C2 eo1, and
 * the odd outputs are the 4×4 matrix of C1…C7 applied to o_n = x_n − x_{7−n}.
 */
function fdct8(v: Float64Array, o: number, s: number): void {
  const x0 = v[o], x1 = v[o + s], x2 = v[o + 2 * s], x3 = v[o + 3 * s];
  const x4 = v[o + 4 * s], x5 = v[o + 5 * s], x6 = v[o + 6 * s], x7 = v[o + 7 * s];
  const e0 = x0 + x7, e1 = x1 + x6, e2 = x2 + x5, e3 = x3 + x4;
  const o0 = x0 - x7, o1 = x1 - x6, o2 = x2 - x5, o3 = x3 - x4;
  const ee0 = e0 + e3, ee1 = e1 + e2, eo0 = e0 - e3, eo1 = e1 - e2;
  v[o] = C4 * (ee0 + ee1);
  v[o + 4 * s] = C4 * (ee0 - ee1);
  v[o + 2 * s] = C2 * eo0 + C6 * eo1;
  v[o + 6 * s] = C6 * eo0 - C2 * eo1;
  v[o + s] = C1 * o0 + C3 * o1 + C5 * o2 + C7 * o3;
  v[o + 3 * s] = C3 * o0 - C7 * o1 - C1 * o2 - C5 * o3;
  v[o + 5 * s] = C5 * o0 - C1 * o1 + C7 * o2 + C3 * o3;
  v[o + 7 * s] = C7 * o0 - C5 * o1 + C3 * o2 - C1 * o3;
}

/** The inverse (= transpose) of {@link fdct8}, in place. */
function idct8(v: Float64Array, o: number, s: number): void {
  const X0 = v[o], X1 = v[o + s], X2 = v[o + 2 * s], X3 = v[o + 3 * s];
  const X4 = v[o + 4 * s], X5 = v[o + 5 * s], X6 = v[o + 6 * s], X7 = v[o + 7 * s];
  const ee0 = C4 * (X0 + X4), ee1 = C4 * (X0 - X4);
  const eo0 = C2 * X2 + C6 * X6, eo1 = C6 * X2 - C2 * X6;
  const e0 = ee0 + eo0, e3 = ee0 - eo0, e1 = ee1 + eo1, e2 = ee1 - eo1;
  const o0 = C1 * X1 + C3 * X3 + C5 * X5 + C7 * X7;
  const o1 = C3 * X1 - C7 * X3 - C1 * X5 - C5 * X7;
  const o2 = C5 * X1 - C1 * X3 + C7 * X5 + C3 * X7;
  const o3 = C7 * X1 - C5 * X3 + C3 * X5 - C1 * X7;
  v[o] = e0 + o0;
  v[o + 7 * s] = e0 - o0;
  v[o + s] = e1 + o1;
  v[o + 6 * s] = e1 - o1;
  v[o + 2 * s] = e2 + o2;
  v[o + 5 * s] = e2 - o2;
  v[o + 3 * s] = e3 + o3;
  v[o + 4 * s] = e3 - o3;
}

/**
 * Blockwise X = D·B·Dᵀ (inverse = false) or B = Dᵀ·X·D (inverse = true) on an h×w plane, in place.
 * Being orthonormal, each is the transpose of the other.
 */
export function blockDct(p: Float64Array, h: number, w: number, inverse: boolean): void {
  const f = inverse ? idct8 : fdct8;
  for (let bi = 0; bi < h; bi += 8) {
    for (let bj = 0; bj < w; bj += 8) {
      const o = bi * w + bj;
      for (let c = 0; c < 8; c++) f(p, o + c, w); // columns
      for (let r = 0; r < 8; r++) f(p, o + r * w, 1); // rows
    }
  }
}

/** The quantisation tables and soft rounders of one operator. */
export interface Quantiser {
  /** Q per in-block position, luma and chroma. */
  q: [Int32Array, Int32Array];
  /** Soft rounder per in-block position, luma and chroma. */
  round: [JpegSoftRound[], JpegSoftRound[]];
  /** Logistic scale of the clamps, in levels. */
  tau: number;
}

/** The tables of an IJG quality and the soft rounders for a dither of `softness` levels. */
export function quantiser(quality: number, softness: number): Quantiser {
  const tau = softness * LOGISTIC_SCALE_PER_STD;
  const ql = jpegQuantTable(IJG_LUMINANCE_TABLE, quality);
  const qc = jpegQuantTable(IJG_CHROMINANCE_TABLE, quality);
  const cache = new Map<number, JpegSoftRound>();
  const rounder = (q: number) => {
    let r = cache.get(q);
    if (!r) cache.set(q, r = new JpegSoftRound(tau / q));
    return r;
  };
  return { q: [ql, qc], round: [Array.from(ql, rounder), Array.from(qc, rounder)], tau };
}

/** Steps 4–6 on one coded plane: DCT, soft quantisation, IDCT, +128. Returns pre-clamp samples. */
export function codePlane(
  p: Float64Array,
  h: number,
  w: number,
  q: Int32Array,
  round: JpegSoftRound[],
): { u: Float64Array; dec: Float64Array } {
  const c = Float64Array.from(p);
  blockDct(c, h, w, false);
  const u = new Float64Array(c.length);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const k = (i & 7) * 8 + (j & 7), idx = i * w + j, qk = q[k];
      u[idx] = c[idx] / qk;
      c[idx] = qk * round[k].value(u[idx]);
    }
  }
  blockDct(c, h, w, true);
  for (let i = 0; i < c.length; i++) c[i] += 128;
  return { u, dec: c };
}
