/**
 * Static shape, element-type and small-value inference over concrete dimensions.
 *
 * The gradient rules need the concrete shape of every active tensor (to un-broadcast, to rebuild
 * Reshape targets, to size ConvTranspose outputs). Graph inputs get concrete dims (symbolic dims
 * resolved by the caller), then every node is evaluated in order: its output dims and element type,
 * and — for small tensors whose inputs are all known (integer shape plumbing such as
 * Shape → Gather → Concat → Reshape, or the `1/√d` scale of an attention export) — its values.
 * Values are what lets a Reshape whose target shape is computed inside the graph get a concrete
 * output shape.
 *
 * Nodes this module cannot infer are reported; the caller then falls back to one probing run of
 * the model in ONNX Runtime (see probe.ts).
 *
 * @module
 */
import type { NodeProto, TensorProto } from "../proto.ts";
import { tensorDims, tensorValues } from "../proto.ts";
import {
  type Attrs,
  attrsOf,
  intAttr,
  intsAttr,
  isFloatType,
  nodeLabel,
  normAxis,
  numel,
  strAttr,
} from "./graph.ts";
import {
  broadcastShapes,
  parseEinsum,
  resolveSlice,
  transposeGeometry,
  windowGeometry,
} from "./geometry.ts";

/** What is known about one tensor. */
export interface TensorInfo {
  /** ONNX element type code. */
  dtype: number;
  /** Concrete dims. */
  dims: number[];
  /** Values (row-major) when the tensor is small and computable at transform time. */
  value?: number[];
}

/** Name → info. */
export type InfoMap = Map<string, TensorInfo>;

/** Largest tensor whose values are tracked. */
export const MAX_VALUE_ELEMS = 4096;

const INT64 = 7;
const BOOL = 9;

/** Info of a constant tensor proto (values when small and embedded). */
export function tensorInfo(t: TensorProto): TensorInfo {
  const dims = tensorDims(t);
  const dtype = t.dataType ?? 1;
  const info: TensorInfo = { dtype, dims };
  const external = (t.externalData?.length ?? 0) > 0 || t.dataLocation === 1;
  if (!external && numel(dims) <= MAX_VALUE_ELEMS && dtype !== 8) {
    try {
      info.value = Array.from(tensorValues(t));
      if (info.value.length === 0 && numel(dims) === 1) info.value = undefined;
    } catch {
      // unsupported raw type (e.g. float16): dims and type are enough
    }
  }
  return info;
}

/** Strides of a row-major shape. */
function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** Elementwise map over broadcast inputs (values known). */
function broadcastMap(
  ins: TensorInfo[],
  outDims: number[],
  f: (...xs: number[]) => number,
): number[] | undefined {
  if (ins.some((i) => i.value === undefined)) return undefined;
  const n = numel(outDims);
  if (n > MAX_VALUE_ELEMS) return undefined;
  const r = outDims.length;
  const os = strides(outDims);
  const ist = ins.map((i) => {
    const pad = [...new Array(r - i.dims.length).fill(1), ...i.dims];
    const st = strides(pad);
    return pad.map((d, k) => (d === 1 ? 0 : st[k]));
  });
  const out = new Array<number>(n);
  const xs = new Array<number>(ins.length);
  for (let k = 0; k < n; k++) {
    let rem = k;
    const off = new Array<number>(ins.length).fill(0);
    for (let a = 0; a < r; a++) {
      const c = Math.floor(rem / os[a]);
      rem -= c * os[a];
      for (let j = 0; j < ins.length; j++) off[j] += c * ist[j][a];
    }
    for (let j = 0; j < ins.length; j++) xs[j] = ins[j].value![off[j]];
    out[k] = f(...xs);
  }
  return out;
}

/** Gather values along an axis. */
function gatherValues(data: TensorInfo, idx: number[], idxDims: number[], axis: number) {
  const d = data.dims;
  const outer = numel(d.slice(0, axis));
  const inner = numel(d.slice(axis + 1));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const i0 of idx) {
      const i = i0 < 0 ? i0 + d[axis] : i0;
      for (let k = 0; k < inner; k++) out.push(data.value![(o * d[axis] + i) * inner + k]);
    }
  }
  return { dims: [...d.slice(0, axis), ...idxDims, ...d.slice(axis + 1)], value: out };
}

/** Transpose values. */
function transposeValues(v: number[], dims: number[], perm: number[]): number[] {
  const outDims = perm.map((p) => dims[p]);
  const is = strides(dims);
  const os = strides(outDims);
  const n = numel(dims);
  const out = new Array<number>(n);
  for (let k = 0; k < n; k++) {
    let rem = k;
    let src = 0;
    for (let a = 0; a < outDims.length; a++) {
      const c = Math.floor(rem / os[a]);
      rem -= c * os[a];
      src += c * is[perm[a]];
    }
    out[k] = v[src];
  }
  return out;
}

/** Slice values (resolved). */
function sliceValues(v: number[], dims: number[], sl: ReturnType<typeof resolveSlice>): number[] {
  const per = dims.map((d) => ({ start: 0, step: 1, count: d }));
  for (const s of sl) per[s.axis] = { start: s.start, step: s.step, count: s.count };
  const outDims = per.map((p) => p.count);
  const is = strides(dims);
  const os = strides(outDims);
  const n = numel(outDims);
  const out = new Array<number>(n);
  for (let k = 0; k < n; k++) {
    let rem = k;
    let src = 0;
    for (let a = 0; a < dims.length; a++) {
      const c = Math.floor(rem / os[a]);
      rem -= c * os[a];
      src += (per[a].start + c * per[a].step) * is[a];
    }
    out[k] = v[src];
  }
  return out;
}

/** Context for one node's inference. */
interface Ctx {
  node: NodeProto;
  a: Attrs;
  ins: (TensorInfo | undefined)[];
  opset: number;
}

/** Thrown when a node cannot be inferred statically. */
export class InferenceGap extends Error {}

function need(c: Ctx, i: number): TensorInfo {
  const t = c.ins[i];
  if (!t) throw new InferenceGap(`input ${i} unknown`);
  return t;
}
function needValue(c: Ctx, i: number): number[] {
  const t = need(c, i);
  if (!t.value) throw new InferenceGap(`values of input ${i} ('${c.node.input![i]}') unknown`);
  return t.value;
}
function optValue(c: Ctx, i: number): number[] | undefined {
  const name = c.node.input?.[i];
  if (!name) return undefined;
  return needValue(c, i);
}

/** Axes attribute (older opsets) or input (newer). */
export function axesOf(c: { node: NodeProto; a: Attrs }, inputIndex: number, vals?: number[]) {
  const attr = intsAttr(c.a, "axes");
  if (attr) return attr;
  const name = c.node.input?.[inputIndex];
  if (!name) return undefined;
  return vals;
}

function reduceDims(
  dims: number[],
  axes: number[] | undefined,
  keep: boolean,
  noopEmpty: boolean,
) {
  const r = dims.length;
  if ((axes === undefined || axes.length === 0) && noopEmpty) return dims;
  const ax = axes && axes.length ? axes.map((a) => normAxis(a, r)) : dims.map((_, i) => i);
  return keep
    ? dims.map((d, i) => (ax.includes(i) ? 1 : d))
    : dims.filter((_, i) => !ax.includes(i));
}

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

const INT_TYPES = new Set([2, 3, 4, 5, 6, 7, 12, 13]);

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

function castValue(v: number, to: number): number {
  if (to === BOOL) return v ? 1 : 0;
  if (INT_TYPES.has(to)) return Math.trunc(v);
  if (to === 1) return Math.fround(v);
  return v;
}

const COMPARE = new Set([
  "Equal",
  "Less",
  "LessOrEqual",
  "Greater",
  "GreaterOrEqual",
  "And",
  "Or",
  "Xor",
]);

const SAME_SHAPE = new Set([
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
  "Trilu",
  "CumSum",
  "InstanceNormalization",
  "GroupNormalization",
  "BatchNormalization",
  "LpNormalization",
  "ThresholdedRelu",
  "Shrink",
  "ScatterND",
  "ScatterElements",
  "RandomNormalLike",
  "RandomUniformLike",
  "Dropout",
  "LayerNormalization",
  "EyeLike",
]);

/** Infer one node's outputs; throws InferenceGap when it cannot. */
function inferNode(c: Ctx): TensorInfo[] {
  const op = c.node.opType ?? "";
  const a = c.a;

  if (op === "Constant") {
    const t = a.value as TensorProto | undefined;
    if (t && typeof t === "object" && "dims" in t) return [tensorInfo(t)];
    if (typeof a.value_float === "number") return [{ dtype: 1, dims: [], value: [a.value_float] }];
    if (typeof a.value_int === "number") return [{ dtype: INT64, dims: [], value: [a.value_int] }];
    const fl = a.value_floats as number[] | undefined;
    if (fl) return [{ dtype: 1, dims: [fl.length], value: fl }];
    const il = intsAttr(a, "value_ints");
    if (il) return [{ dtype: INT64, dims: [il.length], value: il }];
    throw new InferenceGap("Constant without a supported value attribute");
  }

  if (SAME_SHAPE.has(op)) {
    const x = need(c, 0);
    const outs: TensorInfo[] = [{ dtype: x.dtype, dims: x.dims }];
    const f = UNARY_VALUE[op];
    if (f && x.value) outs[0].value = x.value.map(f);
    if (op === "Dropout") outs.push({ dtype: BOOL, dims: x.dims });
    if (op === "LayerNormalization") {
      const axis = normAxis(intAttr(a, "axis", -1), x.dims.length);
      const statDims = x.dims.map((d, i) => (i < axis ? d : 1));
      const st = intAttr(a, "stash_type", 1);
      outs.push({ dtype: st, dims: statDims }, { dtype: st, dims: statDims });
    }
    if (op === "BatchNormalization") {
      const ch = [x.dims[1]];
      outs.push({ dtype: x.dtype, dims: ch }, { dtype: x.dtype, dims: ch });
    }
    return outs;
  }

  switch (op) {
    case "Add":
    case "Sub":
    case "Mul":
    case "Div":
    case "Pow":
    case "Mod":
    case "PRelu":
    case "BitShift":
    case "Equal":
    case "Less":
    case "LessOrEqual":
    case "Greater":
    case "GreaterOrEqual":
    case "And":
    case "Or":
    case "Xor": {
      const A = need(c, 0);
      const B = need(c, 1);
      const dims = broadcastShapes(A.dims, B.dims);
      const dtype = COMPARE.has(op) ? BOOL : A.dtype;
      const f = binaryValue(op, A.dtype);
      const value = f ? broadcastMap([A, B], dims, f) : undefined;
      return [{ dtype, dims, value: value?.map((v) => castValue(v, dtype)) }];
    }
    case "Max":
    case "Min":
    case "Sum":
    case "Mean": {
      const ins = (c.node.input ?? []).map((_, i) => need(c, i));
      const dims = broadcastShapes(...ins.map((i) => i.dims));
      const f = op === "Max"
        ? (...v: number[]) => Math.max(...v)
        : op === "Min"
        ? (...v: number[]) => Math.min(...v)
        : op === "Sum"
        ? (...v: number[]) => v.reduce((p, q) => p + q, 0)
        : (...v: number[]) => v.reduce((p, q) => p + q, 0) / v.length;
      return [{ dtype: ins[0].dtype, dims, value: broadcastMap(ins, dims, f) }];
    }
    case "Where": {
      const C = need(c, 0);
      const X = need(c, 1);
      const Y = need(c, 2);
      const dims = broadcastShapes(C.dims, X.dims, Y.dims);
      return [{
        dtype: X.dtype,
        dims,
        value: broadcastMap([C, X, Y], dims, (cc, xx, yy) => (cc ? xx : yy)),
      }];
    }
    case "Cast": {
      const x = need(c, 0);
      const to = intAttr(a, "to", 1);
      return [{ dtype: to, dims: x.dims, value: x.value?.map((v) => castValue(v, to)) }];
    }
    case "CastLike": {
      const x = need(c, 0);
      const to = need(c, 1).dtype;
      return [{ dtype: to, dims: x.dims, value: x.value?.map((v) => castValue(v, to)) }];
    }
    case "Not":
    case "IsNaN":
    case "IsInf": {
      const x = need(c, 0);
      return [{
        dtype: BOOL,
        dims: x.dims,
        value: op === "Not" ? x.value?.map((v) => (v ? 0 : 1)) : undefined,
      }];
    }
    case "Shape": {
      const x = need(c, 0);
      const r = x.dims.length;
      let s = intAttr(a, "start", 0);
      let e = intAttr(a, "end", r);
      if (s < 0) s += r;
      if (e < 0) e += r;
      s = Math.min(Math.max(s, 0), r);
      e = Math.min(Math.max(e, 0), r);
      const v = x.dims.slice(s, Math.max(s, e));
      return [{ dtype: INT64, dims: [v.length], value: v }];
    }
    case "Size":
      return [{ dtype: INT64, dims: [], value: [numel(need(c, 0).dims)] }];
    case "Reshape": {
      const x = need(c, 0);
      const target = needValue(c, 1);
      const allowZero = intAttr(a, "allowzero", 0) === 1;
      const dims = target.map((d, i) => (d === 0 && !allowZero ? x.dims[i] : d));
      const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
      const out = dims.map((d) => (d === -1 ? numel(x.dims) / known : d));
      if (numel(out) !== numel(x.dims)) {
        throw new RangeError(`Reshape of [${x.dims}] to [${target}]`);
      }
      return [{ dtype: x.dtype, dims: out, value: x.value }];
    }
    case "Flatten": {
      const x = need(c, 0);
      const ax = intAttr(a, "axis", 1);
      const axis = ax < 0 ? ax + x.dims.length : ax;
      return [{
        dtype: x.dtype,
        dims: [numel(x.dims.slice(0, axis)), numel(x.dims.slice(axis))],
        value: x.value,
      }];
    }
    case "Squeeze": {
      const x = need(c, 0);
      const axes = axesOf(c, 1, optValue(c, 1));
      const r = x.dims.length;
      const ax = axes
        ? axes.map((v) => normAxis(v, r))
        : x.dims.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
      return [{ dtype: x.dtype, dims: x.dims.filter((_, i) => !ax.includes(i)), value: x.value }];
    }
    case "Unsqueeze": {
      const x = need(c, 0);
      const axes = axesOf(c, 1, optValue(c, 1));
      if (!axes) throw new InferenceGap("Unsqueeze axes unknown");
      const r = x.dims.length + axes.length;
      const ax = axes.map((v) => normAxis(v, r));
      const dims: number[] = [];
      let k = 0;
      for (let i = 0; i < r; i++) dims.push(ax.includes(i) ? 1 : x.dims[k++]);
      return [{ dtype: x.dtype, dims, value: x.value }];
    }
    case "Transpose": {
      const x = need(c, 0);
      const perm = intsAttr(a, "perm") ?? x.dims.map((_, i) => x.dims.length - 1 - i);
      return [{
        dtype: x.dtype,
        dims: perm.map((p) => x.dims[p]),
        value: x.value ? transposeValues(x.value, x.dims, perm) : undefined,
      }];
    }
    case "Expand": {
      const x = need(c, 0);
      const shape = needValue(c, 1);
      const dims = broadcastShapes(x.dims, shape);
      return [{ dtype: x.dtype, dims, value: broadcastMap([x], dims, (v) => v) }];
    }
    case "Tile": {
      const x = need(c, 0);
      const rep = needValue(c, 1);
      return [{ dtype: x.dtype, dims: x.dims.map((d, i) => d * rep[i]) }];
    }
    case "Concat": {
      const ins = (c.node.input ?? []).map((_, i) => need(c, i));
      const r = ins[0].dims.length;
      const axis = normAxis(intAttr(a, "axis", 0), r);
      const dims = [...ins[0].dims];
      dims[axis] = ins.reduce((p, t) => p + t.dims[axis], 0);
      let value: number[] | undefined;
      if (ins.every((t) => t.value) && numel(dims) <= MAX_VALUE_ELEMS) {
        const outer = numel(dims.slice(0, axis));
        value = [];
        for (let o = 0; o < outer; o++) {
          for (const t of ins) {
            const blk = numel(t.dims.slice(axis));
            value.push(...t.value!.slice(o * blk, (o + 1) * blk));
          }
        }
      }
      return [{ dtype: ins[0].dtype, dims, value }];
    }
    case "Split": {
      const x = need(c, 0);
      const r = x.dims.length;
      const axis = normAxis(intAttr(a, "axis", 0), r);
      const nOut = (c.node.output ?? []).length;
      let sizes = intsAttr(a, "split") ?? optValue(c, 1);
      if (!sizes) {
        const d = x.dims[axis];
        const no = intAttr(a, "num_outputs", nOut);
        const chunk = Math.ceil(d / no);
        sizes = Array.from({ length: no }, (_, i) => Math.min(chunk, d - i * chunk));
      }
      return sizes.map((s) => {
        const dims = [...x.dims];
        dims[axis] = s;
        return { dtype: x.dtype, dims };
      });
    }
    case "Slice": {
      const x = need(c, 0);
      const starts = needValue(c, 1);
      const ends = needValue(c, 2);
      const axes = optValue(c, 3);
      const steps = optValue(c, 4);
      const sl = resolveSlice(x.dims, starts, ends, axes, steps);
      const dims = [...x.dims];
      for (const s of sl) dims[s.axis] = s.count;
      return [{
        dtype: x.dtype,
        dims,
        value: x.value ? sliceValues(x.value, x.dims, sl) : undefined,
      }];
    }
    case "Gather": {
      const x = need(c, 0);
      const idx = need(c, 1);
      const axis = normAxis(intAttr(a, "axis", 0), x.dims.length);
      const dims = [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)];
      let value: number[] | undefined;
      if (x.value && idx.value) value = gatherValues(x, idx.value, idx.dims, axis).value;
      return [{ dtype: x.dtype, dims, value }];
    }
    case "GatherElements":
      return [{ dtype: need(c, 0).dtype, dims: need(c, 1).dims }];
    case "GatherND": {
      const x = need(c, 0);
      const idx = need(c, 1);
      const b = intAttr(a, "batch_dims", 0);
      const last = idx.dims[idx.dims.length - 1];
      return [{
        dtype: x.dtype,
        dims: [...idx.dims.slice(0, -1), ...x.dims.slice(b + last)],
      }];
    }
    case "Pad": {
      const x = need(c, 0);
      const r = x.dims.length;
      const pads = intsAttr(a, "pads") ?? needValue(c, 1);
      const axesIn = optValue(c, 3);
      const axes = axesIn ? axesIn.map((v) => normAxis(v, r)) : x.dims.map((_, i) => i);
      const dims = [...x.dims];
      axes.forEach((ax, k) => (dims[ax] += pads[k] + pads[k + axes.length]));
      return [{ dtype: x.dtype, dims }];
    }
    case "ConstantOfShape": {
      const shape = needValue(c, 0);
      const t = a.value as TensorProto | undefined;
      const vi = t ? tensorInfo(t) : { dtype: 1, dims: [1], value: [0] };
      const n = numel(shape);
      return [{
        dtype: vi.dtype,
        dims: shape,
        value: n <= MAX_VALUE_ELEMS && vi.value ? new Array(n).fill(vi.value[0]) : undefined,
      }];
    }
    case "Range": {
      const [s] = needValue(c, 0);
      const [l] = needValue(c, 1);
      const [d] = needValue(c, 2);
      const n = Math.max(Math.ceil((l - s) / d), 0);
      return [{
        dtype: need(c, 0).dtype,
        dims: [n],
        value: n <= MAX_VALUE_ELEMS ? Array.from({ length: n }, (_, i) => s + i * d) : undefined,
      }];
    }
    case "ArgMax":
    case "ArgMin": {
      const x = need(c, 0);
      const axis = normAxis(intAttr(a, "axis", 0), x.dims.length);
      const keep = intAttr(a, "keepdims", 1) === 1;
      return [{ dtype: INT64, dims: reduceDims(x.dims, [axis], keep, false) }];
    }
    case "ReduceMean":
    case "ReduceSum":
    case "ReduceMax":
    case "ReduceMin":
    case "ReduceProd":
    case "ReduceSumSquare":
    case "ReduceL1":
    case "ReduceL2":
    case "ReduceLogSumExp":
    case "ReduceLogSum": {
      const x = need(c, 0);
      const axes = axesOf(c, 1, optValue(c, 1));
      const keep = intAttr(a, "keepdims", 1) === 1;
      const noop = intAttr(a, "noop_with_empty_axes", 0) === 1;
      const dims = reduceDims(x.dims, axes, keep, noop);
      let value: number[] | undefined;
      if (
        x.value && (op === "ReduceProd" || op === "ReduceSum" || op === "ReduceMax" ||
          op === "ReduceMin") &&
        (!axes || axes.length === 0 || x.dims.length <= 1)
      ) {
        const v = x.value;
        value = [
          op === "ReduceProd"
            ? v.reduce((p, q) => p * q, 1)
            : op === "ReduceSum"
            ? v.reduce((p, q) => p + q, 0)
            : op === "ReduceMax"
            ? Math.max(...v)
            : Math.min(...v),
        ];
        if (numel(dims) !== 1) value = undefined;
      }
      return [{ dtype: x.dtype, dims, value }];
    }
    case "MatMul": {
      const A = need(c, 0);
      const B = need(c, 1);
      const ad = A.dims.length === 1 ? [1, A.dims[0]] : A.dims;
      const bd = B.dims.length === 1 ? [B.dims[0], 1] : B.dims;
      const batch = broadcastShapes(ad.slice(0, -2), bd.slice(0, -2));
      const dims = [...batch, ad[ad.length - 2], bd[bd.length - 1]];
      if (A.dims.length === 1) dims.splice(dims.length - 2, 1);
      if (B.dims.length === 1) dims.splice(dims.length - 1, 1);
      return [{ dtype: A.dtype, dims }];
    }
    case "Gemm": {
      const A = need(c, 0);
      const B = need(c, 1);
      const m = intAttr(a, "transA", 0) ? A.dims[1] : A.dims[0];
      const n = intAttr(a, "transB", 0) ? B.dims[0] : B.dims[1];
      return [{ dtype: A.dtype, dims: [m, n] }];
    }
    case "Einsum": {
      const ins = (c.node.input ?? []).map((_, i) => need(c, i));
      const spec = parseEinsum(strAttr(a, "equation", ""), ins.map((t) => t.dims.length));
      const size = new Map<string, number>();
      spec.inputs.forEach((s, i) =>
        [...s].forEach((ch, k) => {
          const d = ins[i].dims[k];
          if (!size.has(ch) || size.get(ch) === 1) size.set(ch, d);
        })
      );
      return [{ dtype: ins[0].dtype, dims: [...spec.output].map((ch) => size.get(ch)!) }];
    }
    case "Conv": {
      const x = need(c, 0);
      const w = need(c, 1);
      const g = windowGeometry(a, x.dims.slice(2), intsAttr(a, "kernel_shape") ?? w.dims.slice(2));
      return [{ dtype: x.dtype, dims: [x.dims[0], w.dims[0], ...g.out] }];
    }
    case "ConvTranspose": {
      const x = need(c, 0);
      const w = need(c, 1);
      const g = transposeGeometry(
        a,
        x.dims.slice(2),
        intsAttr(a, "kernel_shape") ?? w.dims.slice(2),
      );
      return [{ dtype: x.dtype, dims: [x.dims[0], w.dims[1] * intAttr(a, "group", 1), ...g.out] }];
    }
    case "MaxPool":
    case "AveragePool":
    case "LpPool": {
      const x = need(c, 0);
      const k = intsAttr(a, "kernel_shape") ?? [];
      const g = windowGeometry(a, x.dims.slice(2), k);
      const dims = [x.dims[0], x.dims[1], ...g.out];
      const outs: TensorInfo[] = [{ dtype: x.dtype, dims }];
      if (op === "MaxPool") outs.push({ dtype: INT64, dims });
      return outs;
    }
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "GlobalLpPool": {
      const x = need(c, 0);
      return [{ dtype: x.dtype, dims: x.dims.map((d, i) => (i < 2 ? d : 1)) }];
    }
    case "Resize": {
      const x = need(c, 0);
      const r = x.dims.length;
      const axesA = intsAttr(a, "axes");
      const axes = axesA ? axesA.map((v) => normAxis(v, r)) : x.dims.map((_, i) => i);
      const sizes = optValue(c, 3);
      const scales = sizes ? undefined : optValue(c, 2);
      const dims = [...x.dims];
      if (sizes && sizes.length) axes.forEach((ax, k) => (dims[ax] = sizes[k]));
      else if (scales && scales.length) {
        axes.forEach((ax, k) => (dims[ax] = Math.floor(x.dims[ax] * Math.fround(scales[k]))));
      } else throw new InferenceGap("Resize without scales or sizes");
      return [{ dtype: x.dtype, dims }];
    }
    case "Upsample": {
      const x = need(c, 0);
      const scales = needValue(c, 1);
      return [{ dtype: x.dtype, dims: x.dims.map((d, i) => Math.floor(d * scales[i])) }];
    }
    case "DepthToSpace": {
      const x = need(c, 0);
      const b = intAttr(a, "blocksize", 1);
      const [n, ch, h, w] = x.dims;
      return [{ dtype: x.dtype, dims: [n, ch / (b * b), h * b, w * b] }];
    }
    case "SpaceToDepth": {
      const x = need(c, 0);
      const b = intAttr(a, "blocksize", 1);
      const [n, ch, h, w] = x.dims;
      return [{ dtype: x.dtype, dims: [n, ch * b * b, h / b, w / b] }];
    }
    case "TopK": {
      const x = need(c, 0);
      const [k] = needValue(c, 1);
      const axis = normAxis(intAttr(a, "axis", -1), x.dims.length);
      const dims = [...x.dims];
      dims[axis] = k;
      return [{ dtype: x.dtype, dims }, { dtype: INT64, dims }];
    }
    case "OneHot": {
      const idx = need(c, 0);
      const [depth] = needValue(c, 1);
      const vals = need(c, 2);
      const r = idx.dims.length + 1;
      const axis = normAxis(intAttr(a, "axis", -1), r);
      const dims = [...idx.dims];
      dims.splice(axis, 0, depth);
      return [{ dtype: vals.dtype, dims }];
    }
    case "NonZero": {
      const x = need(c, 0);
      if (!x.value) throw new InferenceGap("NonZero of unknown values");
      const nz = x.value.filter((v) => v !== 0).length;
      return [{ dtype: INT64, dims: [x.dims.length, nz] }];
    }
    default:
      throw new InferenceGap(`no shape rule for ${op}`);
  }
}

/** A node that static inference could not handle. */
export interface InferenceFailure {
  /** Node label. */
  node: string;
  /** Why. */
  reason: string;
}

/**
 * Infer dims, types and small values of every tensor, in node order.
 *
 * @param nodes nodes in topological order
 * @param opset ai.onnx opset
 * @param seed known tensors (graph inputs with concrete dims, initializers)
 * @returns the info map (seed entries included) and the nodes that could not be inferred
 */
export function inferShapes(
  nodes: NodeProto[],
  opset: number,
  seed: InfoMap,
): { info: InfoMap; failures: InferenceFailure[] } {
  const info: InfoMap = new Map(seed);
  const failures: InferenceFailure[] = [];
  nodes.forEach((node, k) => {
    const outs = node.output ?? [];
    if (outs.every((o) => !o || info.has(o))) return;
    const c: Ctx = {
      node,
      a: attrsOf(node),
      ins: (node.input ?? []).map((i) => (i ? info.get(i) : undefined)),
      opset,
    };
    try {
      const res = inferNode(c);
      outs.forEach((o, i) => {
        if (o && res[i]) {
          const r = res[i];
          if (r.value && (numel(r.dims) > MAX_VALUE_ELEMS || r.value.length !== numel(r.dims))) {
            r.value = undefined;
          }
          if (r.value && isFloatType(r.dtype) && r.dtype === 1) r.value = r.value.map(Math.fround);
          info.set(o, r);
        }
      });
    } catch (e) {
      failures.push({ node: nodeLabel(node, k), reason: (e as Error).message });
    }
  });
  return { info, failures };
}
