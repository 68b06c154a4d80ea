/**
 * The encoder's linear part E (steps 1–4 without the level shift: colour, replicate padding, 4:2:0
 * averaging, block DCT) and its transpose, written as plain loops into caller-owned buffers: the
 * prox applies them dozens of times per call, and a typed-array `map` or a fresh padded copy per
 * plane costs more than the DCT itself (at 512² the DCT of a plane takes ≈ 0.6 ms).
 *
 * E = S ∘ (255·C): C the JFIF colour matrix per pixel, S the spatial part per plane k (Y, Cb, Cr).
 *
 * @module
 */
import { type Geometry, RGB2YCC } from "./colour.ts";
import { blockDct } from "./quantise.ts";

/** Coded-plane sizes [rows, cols] of plane k (0 = Y, 1 = Cb, 2 = Cr). */
export function codedSize(g: Geometry, k: number): [number, number] {
  return k === 0 ? [g.yh, g.yw] : [g.ch, g.cw];
}

/** Fresh zeroed coded planes (Y, Cb, Cr) for a geometry. */
export function codedPlanes(g: Geometry): Float64Array[] {
  return [0, 1, 2].map((k) => {
    const [ph, pw] = codedSize(g, k);
    return new Float64Array(ph * pw);
  });
}

/**
 * S_k: an h×w plane ↦ its coded DCT coefficients, written to `out` (coded size): replicate padding,
 * the 2×2 average for 4:2:0 chroma, the block DCT.
 */
export function spatialForward(
  plane: Float64Array,
  k: number,
  g: Geometry,
  out: Float64Array,
): Float64Array {
  const { h, w } = g, [ch, cw] = codedSize(g, k);
  if (k > 0 && g.sub) {
    for (let i = 0; i < ch; i++) {
      const r0 = Math.min(2 * i, h - 1) * w, r1 = Math.min(2 * i + 1, h - 1) * w;
      for (let j = 0; j < cw; j++) {
        const c0 = Math.min(2 * j, w - 1), c1 = Math.min(2 * j + 1, w - 1);
        out[i * cw + j] = 0.25 *
          (plane[r0 + c0] + plane[r0 + c1] + plane[r1 + c0] + plane[r1 + c1]);
      }
    }
  } else {
    for (let i = 0; i < ch; i++) {
      const src = Math.min(i, h - 1) * w, dst = i * cw;
      for (let j = 0; j < w; j++) out[dst + j] = plane[src + j];
      const edge = plane[src + w - 1];
      for (let j = w; j < cw; j++) out[dst + j] = edge;
    }
  }
  blockDct(out, ch, cw, false);
  return out;
}

/** S_kᵀ: coded coefficients (overwritten) ↦ an h×w plane, written to `out`. */
export function spatialAdjoint(
  coef: Float64Array,
  k: number,
  g: Geometry,
  out: Float64Array,
): Float64Array {
  const { h, w } = g, [ch, cw] = codedSize(g, k);
  blockDct(coef, ch, cw, true);
  if (k > 0 && g.sub) {
    out.fill(0);
    for (let i = 0; i < ch; i++) {
      const r0 = Math.min(2 * i, h - 1) * w, r1 = Math.min(2 * i + 1, h - 1) * w;
      for (let j = 0; j < cw; j++) {
        const c0 = Math.min(2 * j, w - 1), c1 = Math.min(2 * j + 1, w - 1);
        const v = 0.25 * coef[i * cw + j];
        out[r0 + c0] += v, out[r0 + c1] += v, out[r1 + c0] += v, out[r1 + c1] += v;
      }
    }
    return out;
  }
  for (let i = 0; i < h; i++) {
    const src = i * cw, dst = i * w;
    for (let j = 0; j < w; j++) out[dst + j] = coef[src + j];
    let fold = 0;
    for (let j = w; j < cw; j++) fold += coef[src + j];
    out[dst + w - 1] += fold;
  }
  const last = (h - 1) * w;
  for (let i = h; i < ch; i++) {
    const src = i * cw;
    for (let j = 0; j < w; j++) out[last + j] += coef[src + j];
    let fold = 0;
    for (let j = w; j < cw; j++) fold += coef[src + j];
    out[last + w - 1] += fold;
  }
  return out;
}

/** Scratch planes per geometry (3·h·w), reused by every call on that geometry. */
const scratch = new WeakMap<Geometry, Float64Array[]>();
function planesOf(g: Geometry): Float64Array[] {
  let s = scratch.get(g);
  if (!s) scratch.set(g, s = [0, 1, 2].map(() => new Float64Array(g.h * g.w)));
  return s;
}

/**
 * c = E x for one image: x (3·h·w, [0,1] scale) ↦ coded DCT coefficients (levels) of each plane,
 * into `out` (default fresh planes).
 */
export function encode(
  x: ArrayLike<number>,
  g: Geometry,
  out: Float64Array[] = codedPlanes(g),
): Float64Array[] {
  const n = g.h * g.w, [py, pb, pr] = planesOf(g);
  const [my, mb, mr] = RGB2YCC;
  for (let p = 0; p < n; p++) {
    const r = 255 * x[p], gg = 255 * x[n + p], b = 255 * x[2 * n + p];
    py[p] = my[0] * r + my[1] * gg + my[2] * b;
    pb[p] = mb[0] * r + mb[1] * gg + mb[2] * b;
    pr[p] = mr[0] * r + mr[1] * gg + mr[2] * b;
  }
  spatialForward(py, 0, g, out[0]);
  spatialForward(pb, 1, g, out[1]);
  spatialForward(pr, 2, g, out[2]);
  return out;
}

/**
 * x = Eᵀ c for one image (c is overwritten), into `out` (3·h·w, default fresh). With `add`, adds
 * Eᵀ c to `out` instead.
 */
export function encodeT(
  c: Float64Array[],
  g: Geometry,
  out: Float64Array = new Float64Array(3 * g.h * g.w),
  add = false,
): Float64Array {
  const n = g.h * g.w, [py, pb, pr] = planesOf(g);
  spatialAdjoint(c[0], 0, g, py);
  spatialAdjoint(c[1], 1, g, pb);
  spatialAdjoint(c[2], 2, g, pr);
  const [my, mb, mr] = RGB2YCC;
  for (let ch = 0; ch < 3; ch++) {
    const a = 255 * my[ch], b = 255 * mb[ch], d = 255 * mr[ch], o = ch * n;
    if (add) { for (let p = 0; p < n; p++) out[o + p] += a * py[p] + b * pb[p] + d * pr[p]; }
    else for (let p = 0; p < n; p++) out[o + p] = a * py[p] + b * pb[p] + d * pr[p];
  }
  return out;
}
