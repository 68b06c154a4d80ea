/**
 * Shape rules of the data-movement and shape-plumbing ops (beside the gradient rules in
 * `../rules/movement.ts`): constants, Shape/Size, Reshape, Squeeze/Unsqueeze, Transpose, Expand,
 * Tile, Concat, Split, Slice, Gather*, Pad, Resize, … Values are propagated through the integer
 * plumbing (Shape → Gather → Concat → Reshape), which is what gives a Reshape whose target shape is
 * computed inside the graph a concrete output shape.
 *
 * @module
 */
import type { TensorProto } from "../../proto.ts";
import { intAttr, intsAttr, normAxis, numel } from "../graph.ts";
import { broadcastShapes, resolveSlice } from "../geometry.ts";
import { sameShape } from "./elementwise.ts";
import {
  axesOf,
  broadcastMap,
  each,
  InferenceGap,
  INT64,
  MAX_VALUE_ELEMS,
  need,
  needAll,
  needValue,
  optValue,
  type ShapeCtx,
  type ShapeRule,
  strides,
  type TensorInfo,
  tensorInfo,
} from "./util.ts";

/** Gather values along an axis. */
function gatherValues(data: TensorInfo, idx: number[], axis: number): number[] {
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
  return out;
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

/** Concatenated values along `axis` (when every input's values are known and small). */
function concatValues(ins: TensorInfo[], dims: number[], axis: number): number[] | undefined {
  if (!ins.every((t) => t.value) || numel(dims) > MAX_VALUE_ELEMS) return undefined;
  const outer = numel(dims.slice(0, axis));
  const value: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const t of ins) {
      const blk = numel(t.dims.slice(axis));
      value.push(...t.value!.slice(o * blk, (o + 1) * blk));
    }
  }
  return value;
}

function constant(c: ShapeCtx): TensorInfo[] {
  const a = c.a;
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

function shape(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const r = x.dims.length;
  let s = intAttr(c.a, "start", 0);
  let e = intAttr(c.a, "end", r);
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = Math.min(Math.max(s, 0), r);
  e = Math.min(Math.max(e, 0), r);
  const v = x.dims.slice(s, Math.max(s, e));
  return [{ dtype: INT64, dims: [v.length], value: v }];
}

function reshape(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const target = needValue(c, 1);
  const allowZero = intAttr(c.a, "allowzero", 0) === 1;
  const dims = target.map((d, i) => (d === 0 && !allowZero ? x.dims[i] : d));
  const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  const out = dims.map((d) => (d === -1 ? numel(x.dims) / known : d));
  if (numel(out) !== numel(x.dims)) {
    throw new RangeError(`Reshape of [${x.dims}] to [${target}]`);
  }
  return [{ dtype: x.dtype, dims: out, value: x.value }];
}

function squeeze(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const axes = axesOf(c, 1, optValue(c, 1));
  const r = x.dims.length;
  const ax = axes
    ? axes.map((v) => normAxis(v, r))
    : x.dims.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0);
  return [{ dtype: x.dtype, dims: x.dims.filter((_, i) => !ax.includes(i)), value: x.value }];
}

function unsqueeze(c: ShapeCtx): TensorInfo[] {
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

function split(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const r = x.dims.length;
  const axis = normAxis(intAttr(c.a, "axis", 0), r);
  const nOut = (c.node.output ?? []).length;
  let sizes = intsAttr(c.a, "split") ?? optValue(c, 1);
  if (!sizes) {
    const d = x.dims[axis];
    const no = intAttr(c.a, "num_outputs", nOut);
    const chunk = Math.ceil(d / no);
    sizes = Array.from({ length: no }, (_, i) => Math.min(chunk, d - i * chunk));
  }
  return sizes.map((s) => {
    const dims = [...x.dims];
    dims[axis] = s;
    return { dtype: x.dtype, dims };
  });
}

function slice(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const sl = resolveSlice(x.dims, needValue(c, 1), needValue(c, 2), optValue(c, 3), optValue(c, 4));
  const dims = [...x.dims];
  for (const s of sl) dims[s.axis] = s.count;
  return [{ dtype: x.dtype, dims, value: x.value ? sliceValues(x.value, x.dims, sl) : undefined }];
}

function pad(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const r = x.dims.length;
  const pads = intsAttr(c.a, "pads") ?? needValue(c, 1);
  const axesIn = optValue(c, 3);
  const axes = axesIn ? axesIn.map((v) => normAxis(v, r)) : x.dims.map((_, i) => i);
  const dims = [...x.dims];
  axes.forEach((ax, k) => (dims[ax] += pads[k] + pads[k + axes.length]));
  return [{ dtype: x.dtype, dims }];
}

function resize(c: ShapeCtx): TensorInfo[] {
  const x = need(c, 0);
  const r = x.dims.length;
  const axesA = intsAttr(c.a, "axes");
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

/** Shape rules of the data-movement and shape-plumbing ops. */
export const movementShapes: Record<string, ShapeRule> = {
  Constant: constant,
  Shape: shape,
  Size: (c) => [{ dtype: INT64, dims: [], value: [numel(need(c, 0).dims)] }],
  Reshape: reshape,
  Flatten: (c) => {
    const x = need(c, 0);
    const ax = intAttr(c.a, "axis", 1);
    const axis = ax < 0 ? ax + x.dims.length : ax;
    const dims = [numel(x.dims.slice(0, axis)), numel(x.dims.slice(axis))];
    return [{ dtype: x.dtype, dims, value: x.value }];
  },
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Transpose: (c) => {
    const x = need(c, 0);
    const perm = intsAttr(c.a, "perm") ?? x.dims.map((_, i) => x.dims.length - 1 - i);
    const value = x.value ? transposeValues(x.value, x.dims, perm) : undefined;
    return [{ dtype: x.dtype, dims: perm.map((p) => x.dims[p]), value }];
  },
  Expand: (c) => {
    const x = need(c, 0);
    const dims = broadcastShapes(x.dims, needValue(c, 1));
    return [{ dtype: x.dtype, dims, value: broadcastMap([x], dims, (v) => v) }];
  },
  Tile: (c) => {
    const x = need(c, 0);
    const rep = needValue(c, 1);
    return [{ dtype: x.dtype, dims: x.dims.map((d, i) => d * rep[i]) }];
  },
  Concat: (c) => {
    const ins = needAll(c);
    const axis = normAxis(intAttr(c.a, "axis", 0), ins[0].dims.length);
    const dims = [...ins[0].dims];
    dims[axis] = ins.reduce((p, t) => p + t.dims[axis], 0);
    return [{ dtype: ins[0].dtype, dims, value: concatValues(ins, dims, axis) }];
  },
  Split: split,
  Slice: slice,
  Gather: (c) => {
    const x = need(c, 0);
    const idx = need(c, 1);
    const axis = normAxis(intAttr(c.a, "axis", 0), x.dims.length);
    const dims = [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)];
    const value = x.value && idx.value ? gatherValues(x, idx.value, axis) : undefined;
    return [{ dtype: x.dtype, dims, value }];
  },
  GatherElements: (c) => [{ dtype: need(c, 0).dtype, dims: need(c, 1).dims }],
  GatherND: (c) => {
    const x = need(c, 0);
    const idx = need(c, 1);
    const b = intAttr(c.a, "batch_dims", 0);
    const last = idx.dims[idx.dims.length - 1];
    return [{ dtype: x.dtype, dims: [...idx.dims.slice(0, -1), ...x.dims.slice(b + last)] }];
  },
  ...each(["ScatterND", "ScatterElements", "Trilu", "CumSum"], sameShape),
  Pad: pad,
  ConstantOfShape: (c) => {
    const shape = needValue(c, 0);
    const t = c.a.value as TensorProto | undefined;
    const vi = t ? tensorInfo(t) : { dtype: 1, dims: [1], value: [0] };
    const n = numel(shape);
    const value = n <= MAX_VALUE_ELEMS && vi.value ? new Array(n).fill(vi.value[0]) : undefined;
    return [{ dtype: vi.dtype, dims: shape, value }];
  },
  Range: (c) => {
    const [s] = needValue(c, 0);
    const [l] = needValue(c, 1);
    const [d] = needValue(c, 2);
    const n = Math.max(Math.ceil((l - s) / d), 0);
    const value = n <= MAX_VALUE_ELEMS ? Array.from({ length: n }, (_, i) => s + i * d) : undefined;
    return [{ dtype: need(c, 0).dtype, dims: [n], value }];
  },
  Resize: resize,
  Upsample: (c) => {
    const x = need(c, 0);
    const scales = needValue(c, 1);
    return [{ dtype: x.dtype, dims: x.dims.map((d, i) => Math.floor(d * scales[i])) }];
  },
  DepthToSpace: (c) => {
    const x = need(c, 0);
    const b = intAttr(c.a, "blocksize", 1);
    const [n, ch, h, w] = x.dims;
    return [{ dtype: x.dtype, dims: [n, ch / (b * b), h * b, w * b] }];
  },
  SpaceToDepth: (c) => {
    const x = need(c, 0);
    const b = intAttr(c.a, "blocksize", 1);
    const [n, ch, h, w] = x.dims;
    return [{ dtype: x.dtype, dims: [n, ch * b * b, h / b, w / b] }];
  },
  TopK: (c) => {
    const x = need(c, 0);
    const [k] = needValue(c, 1);
    const axis = normAxis(intAttr(c.a, "axis", -1), x.dims.length);
    const dims = [...x.dims];
    dims[axis] = k;
    return [{ dtype: x.dtype, dims }, { dtype: INT64, dims }];
  },
  OneHot: (c) => {
    const idx = need(c, 0);
    const [depth] = needValue(c, 1);
    const vals = need(c, 2);
    const axis = normAxis(intAttr(c.a, "axis", -1), idx.dims.length + 1);
    const dims = [...idx.dims];
    dims.splice(axis, 0, depth);
    return [{ dtype: vals.dtype, dims }];
  },
  NonZero: (c) => {
    const x = need(c, 0);
    if (!x.value) throw new InferenceGap("NonZero of unknown values");
    const nz = x.value.filter((v) => v !== 0).length;
    return [{ dtype: INT64, dims: [x.dims.length, nz] }];
  },
};
