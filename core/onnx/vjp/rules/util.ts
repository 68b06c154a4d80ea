/**
 * Helpers shared by several rule modules.
 *
 * @module
 */
import type { Emitter } from "../emit.ts";

/**
 * Apply Mᵀ along one axis: given ḡ with extent `out` on `axis` and a dense map M (out × in,
 * row-major) with y = M x along that axis, return Mᵀ ḡ (extent `in` on `axis`). Used for linear
 * index maps without a cheaper pattern (Resize linear/cubic, reflect/edge Pad, strided Slice).
 * One MatMul with a constant matrix (transposes only when the axis is not one of the last two).
 */
export function adjointAlongAxis(
  e: Emitter,
  g: string,
  gDims: number[],
  axis: number,
  M: Float64Array,
  inLen: number,
  dtype: number,
): string {
  const r = gDims.length;
  const out = gDims[axis];
  if (axis === r - 1) {
    // ḡ[..., out] @ M[out, in]
    return e.op("MatMul", [g, e.constant(dtype, [out, inLen], M)]);
  }
  if (axis === r - 2) {
    // Mᵀ[in, out] @ ḡ[..., out, W]
    const Mt = new Float64Array(inLen * out);
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inLen; i++) Mt[i * out + o] = M[o * inLen + i];
    }
    return e.op("MatMul", [e.constant(dtype, [inLen, out], Mt), g]);
  }
  const perm = gDims.map((_, i) => i);
  perm.splice(axis, 1);
  perm.push(axis);
  const inv = new Array<number>(r);
  perm.forEach((p, i) => (inv[p] = i));
  const t = e.transpose(g, perm);
  const m = e.op("MatMul", [t, e.constant(dtype, [out, inLen], M)]);
  return e.transpose(m, inv);
}

/** Whether M (out × in) is a block replication: row o selects column ⌊o/f⌋ with f = out/in. */
export function isBlockReplicate(M: Float64Array, out: number, inLen: number): boolean {
  if (out % inLen !== 0) return false;
  const f = out / inLen;
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inLen; i++) {
      if (M[o * inLen + i] !== (i === Math.floor(o / f) ? 1 : 0)) return false;
    }
  }
  return true;
}

/** Inverse of a permutation. */
export function invertPerm(perm: number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}
