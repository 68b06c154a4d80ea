/**
 * JPEG steps 1–3 and 7–8 of the model (see `operators/jpeg.ts`): JFIF colour conversion, replicate
 * padding to whole blocks, 4:2:0 chroma averaging and the decoder's triangular ("fancy") chroma
 * upsampling, as plane geometry and transposable linear maps.
 *
 * @module
 */

const KR = 0.299, KB = 0.114, KG = 1 - KR - KB;
/** B − Y = CB_SCALE·Cb (1.772). */
export const CB_SCALE = 2 * (1 - KB);
/** R − Y = CR_SCALE·Cr (1.402). */
export const CR_SCALE = 2 * (1 - KR);
/** Rows of [Y; Cb; Cr] = M·[R; G; B]. */
export const RGB2YCC = [
  [KR, KG, KB],
  [-KR / CB_SCALE, -KG / CB_SCALE, (1 - KB) / CB_SCALE],
  [(1 - KR) / CR_SCALE, -KG / CR_SCALE, -KB / CR_SCALE],
] as const;
/** G = Y − G_CB·Cb − G_CR·Cr (exact inverse of RGB2YCC). */
export const G_CB = KB * CB_SCALE / KG;
/** See {@link G_CB}. */
export const G_CR = KR * CR_SCALE / KG;

/** Subsampling modes. */
export type JpegSubsampling = 420 | 444;

/** Plane sizes of one image. */
export interface Geometry {
  h: number;
  w: number;
  /** Luma plane, padded to multiples of 8. */
  yh: number;
  yw: number;
  /** Full-resolution chroma padded (to 16 for 4:2:0, 8 for 4:4:4). */
  ph: number;
  pw: number;
  /** Coded chroma plane (ph/2 × pw/2 for 4:2:0). */
  ch: number;
  cw: number;
  /** Decoded chroma extent used by the upsampler (⌈h/2⌉ × ⌈w/2⌉ for 4:2:0). */
  dh: number;
  dw: number;
  sub: boolean;
  /** Upsampler taps per output row / column: near = ⌊i/2⌋ (weight ¾), far (weight ¼). */
  nearR: Int32Array;
  farR: Int32Array;
  nearC: Int32Array;
  farC: Int32Array;
}

export function geometry(h: number, w: number, sub: boolean): Geometry {
  const up = (v: number, m: number) => Math.ceil(v / m) * m;
  const m = sub ? 16 : 8;
  const ph = up(h, m), pw = up(w, m);
  const dh = sub ? Math.ceil(h / 2) : h, dw = sub ? Math.ceil(w / 2) : w;
  return {
    h,
    w,
    yh: up(h, 8),
    yw: up(w, 8),
    ph,
    pw,
    ch: sub ? ph / 2 : ph,
    cw: sub ? pw / 2 : pw,
    dh,
    dw,
    sub,
    nearR: Int32Array.from({ length: h }, (_, i) => sub ? i >> 1 : i),
    farR: Int32Array.from({ length: h }, (_, i) => sub ? farTap(i, dh) : i),
    nearC: Int32Array.from({ length: w }, (_, j) => sub ? j >> 1 : j),
    farC: Int32Array.from({ length: w }, (_, j) => sub ? farTap(j, dw) : j),
  };
}

/** Replicate-pad an h×w plane to ph×pw. */
export function padReplicate(src: Float64Array, h: number, w: number, ph: number, pw: number) {
  const out = new Float64Array(ph * pw);
  for (let i = 0; i < ph; i++) {
    const si = Math.min(i, h - 1) * w;
    for (let j = 0; j < pw; j++) out[i * pw + j] = src[si + Math.min(j, w - 1)];
  }
  return out;
}

/** Transpose of {@link padReplicate}: fold the padding back onto the edge pixels. */
export function padReplicateT(g: Float64Array, h: number, w: number, ph: number, pw: number) {
  const out = new Float64Array(h * w);
  for (let i = 0; i < ph; i++) {
    const si = Math.min(i, h - 1) * w;
    for (let j = 0; j < pw; j++) out[si + Math.min(j, w - 1)] += g[i * pw + j];
  }
  return out;
}

/** 2×2 box average of a ph×pw plane (even sides). */
export function downsample(p: Float64Array, ph: number, pw: number): Float64Array {
  const ch = ph / 2, cw = pw / 2, out = new Float64Array(ch * cw);
  for (let i = 0; i < ch; i++) {
    for (let j = 0; j < cw; j++) {
      const a = 2 * i * pw + 2 * j;
      out[i * cw + j] = 0.25 * (p[a] + p[a + 1] + p[a + pw] + p[a + pw + 1]);
    }
  }
  return out;
}

/** Transpose of {@link downsample}. */
export function downsampleT(g: Float64Array, ph: number, pw: number): Float64Array {
  const ch = ph / 2, cw = pw / 2, out = new Float64Array(ph * pw);
  for (let i = 0; i < ch; i++) {
    for (let j = 0; j < cw; j++) {
      const v = 0.25 * g[i * cw + j], a = 2 * i * pw + 2 * j;
      out[a] = v, out[a + 1] = v, out[a + pw] = v, out[a + pw + 1] = v;
    }
  }
  return out;
}

/**
 * The far tap of the triangular upsampler along one axis for output index i (source extent n): the
 * neighbour of ⌊i/2⌋ on i's side, replicated at the edges (the near tap ⌊i/2⌋ has weight ¾, the
 * far one ¼).
 */
export function farTap(i: number, n: number): number {
  const near = i >> 1;
  return i & 1 ? Math.min(near + 1, n - 1) : Math.max(near - 1, 0);
}

/** C⁻¹ (rows R, G, B; columns Y, Cb, Cr): the decoder's colour matrix. */
export const YCC2RGB = [[1, 0, CR_SCALE], [1, -G_CB, -G_CR], [1, CB_SCALE, 0]] as const;

/** diag((C Cᵀ)⁻¹) for C = RGB2YCC: the per-plane weights g_p of the model Hessian below. */
export const PLANE_WEIGHT = (() => {
  // (C Cᵀ)⁻¹ = C⁻ᵀ C⁻¹, so its diagonal is the squared norm of column p of C⁻¹.
  return [0, 1, 2].map((p) => YCC2RGB.reduce((s, row) => s + row[p] * row[p], 0));
})();
