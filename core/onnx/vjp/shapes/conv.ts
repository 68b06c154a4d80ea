/**
 * Shape rules of the windowed ops (beside the gradient rules in `../rules/conv.ts`): Conv,
 * ConvTranspose and the pools, from the shared window geometry.
 *
 * @module
 */
import { intAttr, intsAttr } from "../graph.ts";
import { transposeGeometry, windowGeometry } from "../geometry.ts";
import { each, INT64, need, type ShapeRule, type TensorInfo } from "./util.ts";

/** Shape rules of the windowed ops. */
export const convShapes: Record<string, ShapeRule> = {
  Conv: (c) => {
    const x = need(c, 0);
    const w = need(c, 1);
    const k = intsAttr(c.a, "kernel_shape") ?? w.dims.slice(2);
    const g = windowGeometry(c.a, x.dims.slice(2), k);
    return [{ dtype: x.dtype, dims: [x.dims[0], w.dims[0], ...g.out] }];
  },
  ConvTranspose: (c) => {
    const x = need(c, 0);
    const w = need(c, 1);
    const k = intsAttr(c.a, "kernel_shape") ?? w.dims.slice(2);
    const g = transposeGeometry(c.a, x.dims.slice(2), k);
    const channels = w.dims[1] * intAttr(c.a, "group", 1);
    return [{ dtype: x.dtype, dims: [x.dims[0], channels, ...g.out] }];
  },
  ...each(["MaxPool", "AveragePool", "LpPool"], (c) => {
    const x = need(c, 0);
    const k = intsAttr(c.a, "kernel_shape") ?? [];
    const g = windowGeometry(c.a, x.dims.slice(2), k);
    const dims = [x.dims[0], x.dims[1], ...g.out];
    const outs: TensorInfo[] = [{ dtype: x.dtype, dims }];
    if (c.node.opType === "MaxPool") outs.push({ dtype: INT64, dims });
    return outs;
  }),
};
