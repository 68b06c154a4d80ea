/**
 * Gradient rules of reductions and global pools. With ḡ broadcast back over the reduced axes
 * (written ĝ): ReduceSum ĝ, ReduceMean ĝ/N, ReduceSumSquare 2xĝ, ReduceL2 ĝx/y, ReduceL1 ĝ·sign x,
 * ReduceLogSumExp ĝ·exp(x − y), ReduceMax/Min ĝ on the arg-extrema (shared among ties).
 *
 * @module
 */
import { intAttr, numel } from "../graph.ts";
import type { Rule, RuleCtx } from "../rule.ts";
import { expandReduced, reductionAxes } from "./movement.ts";

function reduceRule(
  f: (c: RuleCtx, gh: string, x: string, yk: string, axes: number[]) => string,
): Rule {
  return (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const x = c.x(0);
    const xd = c.dims(x);
    const axes = reductionAxes(c, xd.length);
    if (axes === "noop") return c.add(0, g);
    const gh = expandReduced(c, g, xd, axes);
    const keep = intAttr(c.a, "keepdims", 1) === 1;
    const kd = xd.map((d, i) => (axes.includes(i) ? 1 : d));
    const yk = keep ? c.y(0) : c.e.reshape(c.y(0), kd);
    c.add(0, f(c, gh, x, yk, axes));
  };
}

function extremum(c: RuleCtx, gh: string, x: string, yk: string, axes: number[]): string {
  const mask = c.e.op("Cast", [c.e.op("Equal", [x, yk])], { to: c.dtype(x) });
  const count = c.e.reduceSum(mask, axes, true);
  return c.e.div(c.e.mul(gh, mask), count);
}

/** Rules of this module, by op type. */
export const reduceRules: Record<string, Rule> = {
  ReduceSum: reduceRule((_c, gh) => gh),
  ReduceMean: reduceRule((c, gh, x, _y, axes) => {
    const xd = c.dims(x);
    const n = numel(axes.map((a) => xd[a]));
    return c.e.mul(gh, c.e.scalar(1 / n, c.dtype(x)));
  }),
  ReduceSumSquare: reduceRule((c, gh, x) => c.e.mul(gh, c.e.mul(x, c.e.scalar(2, c.dtype(x))))),
  ReduceL2: reduceRule((c, gh, x, yk) => c.e.mul(gh, c.e.div(x, yk))),
  ReduceL1: reduceRule((c, gh, x) => c.e.mul(gh, c.e.sign(x, c.dtype(x)))),
  ReduceLogSumExp: reduceRule((c, gh, x, yk) => c.e.mul(gh, c.e.op("Exp", [c.e.sub(x, yk)]))),
  // DEVIATION: ties share the gradient equally (PyTorch's amax/amin convention).
  ReduceMax: reduceRule(extremum),
  ReduceMin: reduceRule(extremum),
  GlobalAveragePool: (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const xd = c.dims(c.x(0));
    const n = numel(xd.slice(2));
    c.add(0, c.e.expand(c.e.mul(g, c.e.scalar(1 / n, c.dtype(c.x(0)))), xd));
  },
  GlobalMaxPool: (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const x = c.x(0);
    const xd = c.dims(x);
    const axes = xd.slice(2).map((_, i) => i + 2);
    c.add(0, extremum(c, c.e.expand(g, xd), x, c.y(0), axes));
  },
};
