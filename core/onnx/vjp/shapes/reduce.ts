/**
 * Shape rules of the reductions (beside the gradient rules in `../rules/reduce.ts`): Reduce*
 * (axes as attribute or input, keepdims, noop_with_empty_axes), ArgMax/ArgMin and the global
 * pools; full reductions of known values are evaluated.
 *
 * @module
 */
import { intAttr, normAxis } from "../graph.ts";
import {
  axesOf,
  each,
  INT64,
  need,
  optValue,
  reduceDims,
  type ShapeCtx,
  type ShapeRule,
  type TensorInfo,
} from "./util.ts";
import { numel } from "../graph.ts";

const REDUCE = [
  "ReduceMean",
  "ReduceSum",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceSumSquare",
  "ReduceL1",
  "ReduceL2",
  "ReduceLogSumExp",
  "ReduceLogSum",
];

/** The value of a full reduction of known values, for the ops shape plumbing uses. */
function fullReduction(op: string, v: number[]): number | undefined {
  switch (op) {
    case "ReduceProd":
      return v.reduce((p, q) => p * q, 1);
    case "ReduceSum":
      return v.reduce((p, q) => p + q, 0);
    case "ReduceMax":
      return Math.max(...v);
    case "ReduceMin":
      return Math.min(...v);
    default:
      return undefined;
  }
}

function reduce(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const axes = axesOf(c, 1, optValue(c, 1));
  const keep = intAttr(c.a, "keepdims", 1) === 1;
  const noop = intAttr(c.a, "noop_with_empty_axes", 0) === 1;
  const dims = reduceDims(x.dims, axes, keep, noop);
  let value: number[] | undefined;
  if (x.value && (!axes || axes.length === 0 || x.dims.length <= 1) && numel(dims) === 1) {
    const v = fullReduction(c.node.opType ?? "", x.value);
    if (v !== undefined) value = [v];
  }
  return [{ dtype: x.dtype, dims, value }];
}

/** Shape rules of the reductions. */
export const reduceShapes: Record<string, ShapeRule> = {
  ...each(REDUCE, reduce),
  ...each(["ArgMax", "ArgMin"], (c) => {
    const x = need(c, 0);
    const axis = normAxis(intAttr(c.a, "axis", 0), x.dims.length);
    const keep = intAttr(c.a, "keepdims", 1) === 1;
    return [{ dtype: INT64, dims: reduceDims(x.dims, [axis], keep, false) }];
  }),
  ...each(["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"], (c) => {
    const x = need(c, 0);
    return [{ dtype: x.dtype, dims: x.dims.map((d, i) => (i < 2 ? d : 1)) }];
  }),
};
