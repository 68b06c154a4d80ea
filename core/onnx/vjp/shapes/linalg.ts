/**
 * Shape rules of the products (beside the gradient rules in `../rules/linalg.ts`): MatMul with
 * NumPy broadcasting and 1-D promotion, Gemm, Einsum.
 *
 * @module
 */
import { intAttr, strAttr } from "../graph.ts";
import { broadcastShapes, parseEinsum } from "../geometry.ts";
import { need, needAll, type ShapeRule } from "./util.ts";

/** Shape rules of the products. */
export const linalgShapes: Record<string, ShapeRule> = {
  MatMul: (c) => {
    const A = need(c, 0);
    const B = need(c, 1);
    const ad = A.dims.length === 1 ? [1, A.dims[0]] : A.dims;
    const bd = B.dims.length === 1 ? [B.dims[0], 1] : B.dims;
    const batch = broadcastShapes(ad.slice(0, -2), bd.slice(0, -2));
    const dims = [...batch, ad[ad.length - 2], bd[bd.length - 1]];
    if (A.dims.length === 1) dims.splice(dims.length - 2, 1);
    if (B.dims.length === 1) dims.splice(dims.length - 1, 1);
    return [{ dtype: A.dtype, dims }];
  },
  Gemm: (c) => {
    const A = need(c, 0);
    const B = need(c, 1);
    const m = intAttr(c.a, "transA", 0) ? A.dims[1] : A.dims[0];
    const n = intAttr(c.a, "transB", 0) ? B.dims[0] : B.dims[1];
    return [{ dtype: A.dtype, dims: [m, n] }];
  },
  Einsum: (c) => {
    const ins = needAll(c);
    const spec = parseEinsum(strAttr(c.a, "equation", ""), ins.map((t) => t.dims.length));
    const size = new Map<string, number>();
    spec.inputs.forEach((s, i) =>
      [...s].forEach((ch, k) => {
        const d = ins[i].dims[k];
        if (!size.has(ch) || size.get(ch) === 1) size.set(ch, d);
      })
    );
    return [{ dtype: ins[0].dtype, dims: [...spec.output].map((ch) => size.get(ch)!) }];
  },
};
