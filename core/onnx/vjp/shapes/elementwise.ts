/**
 * Shape rules of the elementwise ops (beside the gradient rules in `../rules/elementwise.ts`):
 * unary maps, broadcasting binary and variadic ops, comparisons, Where and casts, with their values
 * when the inputs' values are known (integer shape plumbing, attention scales).
 *
 * @module
 */
import { INT_TYPES, intAttr } from "../graph.ts";
import { broadcastShapes } from "../geometry.ts";
import {
  BOOL,
  broadcastMap,
  each,
  need,
  needAll,
  type ShapeCtx,
  type ShapeRule,
  type TensorInfo,
} from "./util.ts";

const UNARY_VALUE: Record<string, (x: number) => number> = {
  Identity: (x) => x,
  Neg: (x) => -x,
  Abs: Math.abs,
  Sqrt: Math.sqrt,
  Floor: Math.floor,
  Ceil: Math.ceil,
  Round: (x) => {
    const f = Math.floor(x);
    const d = x - f;
    return d === 0.5 ? (f % 2 === 0 ? f : f + 1) : Math.round(x);
  },
  Reciprocal: (x) => 1 / x,
  Exp: Math.exp,
  Log: Math.log,
  Sin: Math.sin,
  Cos: Math.cos,
  Sign: Math.sign,
  Not: (x) => (x ? 0 : 1),
  Relu: (x) => Math.max(0, x),
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  Tanh: Math.tanh,
};

/** The value of a binary op, for known inputs of element type `dtype`. */
function binaryValue(op: string, dtype: number): ((a: number, b: number) => number) | undefined {
  const isInt = INT_TYPES.has(dtype);
  switch (op) {
    case "Add":
      return (a, b) => a + b;
    case "Sub":
      return (a, b) => a - b;
    case "Mul":
      return (a, b) => a * b;
    case "Div":
      return isInt ? (a, b) => Math.trunc(a / b) : (a, b) => a / b;
    case "Pow":
      return (a, b) => a ** b;
    case "Max":
      return Math.max;
    case "Min":
      return Math.min;
    case "Mod":
      return (a, b) => {
        const m = a % b;
        return m !== 0 && Math.sign(m) !== Math.sign(b) ? m + b : m;
      };
    case "Equal":
      return (a, b) => (a === b ? 1 : 0);
    case "Less":
      return (a, b) => (a < b ? 1 : 0);
    case "LessOrEqual":
      return (a, b) => (a <= b ? 1 : 0);
    case "Greater":
      return (a, b) => (a > b ? 1 : 0);
    case "GreaterOrEqual":
      return (a, b) => (a >= b ? 1 : 0);
    case "And":
      return (a, b) => (a && b ? 1 : 0);
    case "Or":
      return (a, b) => (a || b ? 1 : 0);
    default:
      return undefined;
  }
}

/** A value converted to element type `to` (truncation to integers, rounding to float32). */
export function castValue(v: number, to: number): number {
  if (to === BOOL) return v ? 1 : 0;
  if (INT_TYPES.has(to)) return Math.trunc(v);
  if (to === 1) return Math.fround(v);
  return v;
}

const COMPARE = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor"];

/** Same dims and type as input 0; the value too when the op is a known unary map. */
export function sameShape(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const out: TensorInfo = { dtype: x.dtype, dims: x.dims };
  const f = UNARY_VALUE[c.node.opType ?? ""];
  if (f && x.value) out.value = x.value.map(f);
  return [out];
}

const UNARY = [
  "Identity",
  "Neg",
  "Abs",
  "Relu",
  "LeakyRelu",
  "Elu",
  "Selu",
  "Celu",
  "Sigmoid",
  "HardSigmoid",
  "HardSwish",
  "Tanh",
  "Exp",
  "Log",
  "Sqrt",
  "Reciprocal",
  "Sin",
  "Cos",
  "Tan",
  "Erf",
  "Softplus",
  "Softsign",
  "Gelu",
  "Mish",
  "Floor",
  "Ceil",
  "Round",
  "Sign",
  "Softmax",
  "LogSoftmax",
  "Hardmax",
  "Clip",
  "ThresholdedRelu",
  "Shrink",
  "RandomNormalLike",
  "RandomUniformLike",
  "EyeLike",
];

const binary: ShapeRule = (c) => {
  const op = c.node.opType ?? "";
  const A = need(c, 0);
  const B = need(c, 1);
  const dims = broadcastShapes(A.dims, B.dims);
  const dtype = COMPARE.includes(op) ? BOOL : A.dtype;
  const f = binaryValue(op, A.dtype);
  const value = f ? broadcastMap([A, B], dims, f) : undefined;
  return [{ dtype, dims, value: value?.map((v) => castValue(v, dtype)) }];
};

const variadic: ShapeRule = (c) => {
  const op = c.node.opType;
  const ins = needAll(c);
  const dims = broadcastShapes(...ins.map((i) => i.dims));
  const f = op === "Max"
    ? (...v: number[]) => Math.max(...v)
    : op === "Min"
    ? (...v: number[]) => Math.min(...v)
    : op === "Sum"
    ? (...v: number[]) => v.reduce((p, q) => p + q, 0)
    : (...v: number[]) => v.reduce((p, q) => p + q, 0) / v.length;
  return [{ dtype: ins[0].dtype, dims, value: broadcastMap(ins, dims, f) }];
};

const cast = (c: ShapeCtx, to: number): TensorInfo[] => {
  const x = need(c, 0);
  return [{ dtype: to, dims: x.dims, value: x.value?.map((v) => castValue(v, to)) }];
};

/** Shape rules of the elementwise ops. */
export const elementwiseShapes: Record<string, ShapeRule> = {
  ...each(UNARY, sameShape),
  Dropout: (c) => [...sameShape(c), { dtype: BOOL, dims: need(c, 0).dims }],
  ...each([
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "PRelu",
    "BitShift",
    ...COMPARE,
  ], binary),
  ...each(["Max", "Min", "Sum", "Mean"], variadic),
  Where: (c) => {
    const C = need(c, 0);
    const X = need(c, 1);
    const Y = need(c, 2);
    const dims = broadcastShapes(C.dims, X.dims, Y.dims);
    return [{
      dtype: X.dtype,
      dims,
      value: broadcastMap([C, X, Y], dims, (cc, xx, yy) => (cc ? xx : yy)),
    }];
  },
  Cast: (c) => cast(c, intAttr(c.a, "to", 1)),
  CastLike: (c) => cast(c, need(c, 1).dtype),
  ...each(["Not", "IsNaN", "IsInf"], (c) => {
    const x = need(c, 0);
    return [{
      dtype: BOOL,
      dims: x.dims,
      value: c.node.opType === "Not" ? x.value?.map((v) => (v ? 0 : 1)) : undefined,
    }];
  }),
};
