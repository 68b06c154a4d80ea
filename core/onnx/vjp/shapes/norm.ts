/**
 * Shape rules of the normalisations (beside the gradient rules in `../rules/norm.ts`): the output
 * has the input's shape; LayerNormalization's saved statistics and BatchNormalization's running
 * statistics are the optional extra outputs.
 *
 * @module
 */
import { intAttr, normAxis } from "../graph.ts";
import { sameShape } from "./elementwise.ts";
import { each, need, type ShapeRule } from "./util.ts";

/** Shape rules of the normalisations. */
export const normShapes: Record<string, ShapeRule> = {
  ...each(["InstanceNormalization", "GroupNormalization", "LpNormalization"], sameShape),
  LayerNormalization: (c) => {
    const x = need(c, 0);
    const axis = normAxis(intAttr(c.a, "axis", -1), x.dims.length);
    const statDims = x.dims.map((d, i) => (i < axis ? d : 1));
    const st = intAttr(c.a, "stash_type", 1);
    return [...sameShape(c), { dtype: st, dims: statDims }, { dtype: st, dims: statDims }];
  },
  BatchNormalization: (c) => {
    const x = need(c, 0);
    const ch = [x.dims[1]];
    return [...sameShape(c), { dtype: x.dtype, dims: ch }, { dtype: x.dtype, dims: ch }];
  },
};
