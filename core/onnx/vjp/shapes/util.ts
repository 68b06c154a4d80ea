/**
 * What every shape rule shares: the tensor facts ({@link TensorInfo}), the context of one node,
 * access to its inputs (dims, known values), and the small-value evaluation helpers.
 *
 * @module
 */
import type { NodeProto, TensorProto } from "../../proto.ts";
import { tensorDims, tensorValues } from "../../proto.ts";
import { type Attrs, intsAttr, normAxis, numel } from "../graph.ts";

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

/** ONNX INT64. */
export const INT64 = 7;
/** ONNX BOOL. */
export const BOOL = 9;

/** Context for one node's inference. */
export interface ShapeCtx {
  /** The node. */
  node: NodeProto;
  /** Its decoded attributes. */
  a: Attrs;
  /** What is known of its inputs (undefined: unknown or absent). */
  ins: (TensorInfo | undefined)[];
  /** The model's ai.onnx opset. */
  opset: number;
}

/** A shape rule: the infos of a node's outputs, or an {@link InferenceGap}. */
export type ShapeRule = (c: ShapeCtx) => TensorInfo[];

/** Thrown when a node cannot be inferred statically. */
export class InferenceGap extends Error {}

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

/** Input i, which must be known. */
export function need(c: ShapeCtx, i: number): TensorInfo {
  const t = c.ins[i];
  if (!t) throw new InferenceGap(`input ${i} unknown`);
  return t;
}

/** Values of input i, which must be known. */
export function needValue(c: ShapeCtx, i: number): number[] {
  const t = need(c, i);
  if (!t.value) throw new InferenceGap(`values of input ${i} ('${c.node.input![i]}') unknown`);
  return t.value;
}

/** Values of optional input i (undefined when absent; an InferenceGap when present but unknown). */
export function optValue(c: ShapeCtx, i: number): number[] | undefined {
  const name = c.node.input?.[i];
  if (!name) return undefined;
  return needValue(c, i);
}

/** Every input, each of which must be known. */
export function needAll(c: ShapeCtx): TensorInfo[] {
  return (c.node.input ?? []).map((_, i) => need(c, i));
}

/** Axes attribute (older opsets) or input (newer). */
export function axesOf(c: { node: NodeProto; a: Attrs }, inputIndex: number, vals?: number[]) {
  const attr = intsAttr(c.a, "axes");
  if (attr) return attr;
  const name = c.node.input?.[inputIndex];
  if (!name) return undefined;
  return vals;
}

/** Strides of a row-major shape. */
export function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** Elementwise map over broadcast inputs (values known). */
export function broadcastMap(
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

/** Dims after reducing `axes` (all when absent, unless `noopEmpty`). */
export function reduceDims(
  dims: number[],
  axes: number[] | undefined,
  keep: boolean,
  noopEmpty: boolean,
): number[] {
  const r = dims.length;
  if ((axes === undefined || axes.length === 0) && noopEmpty) return dims;
  const ax = axes && axes.length ? axes.map((a) => normAxis(a, r)) : dims.map((_, i) => i);
  return keep
    ? dims.map((d, i) => (ax.includes(i) ? 1 : d))
    : dims.filter((_, i) => !ax.includes(i));
}

/** Register one rule under several op types. */
export function each(ops: readonly string[], rule: ShapeRule): Record<string, ShapeRule> {
  return Object.fromEntries(ops.map((op) => [op, rule]));
}
