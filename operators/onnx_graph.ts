/**
 * Building blocks for exporting linear image operators as ONNX graphs (`exportOnnx`): boundary
 * extension by index maps (runs of `Slice` joined by `Concat`), depthwise and separable
 * convolutions, dense per-axis matrices, and the model wrapper with input `x` and output `y`.
 *
 * Two strategies, by element type:
 * - float32: extension + depthwise `Conv` (separable kernels as two 1-D convolutions) — fast on
 *   every execution provider;
 * - float64: dense per-axis matrices (`MatMul`), because ONNX Runtime's CPU provider has no
 *   double-precision `Conv`. Exact, O(n²) per axis: meant for the float64 tests, at small sizes.
 *
 * Every op used is in `core/onnx/device_ops.ts`, so exported operators stay on a GPU.
 *
 * @module
 */
import { GraphBuilder } from "../core/onnx/builder.ts";
import type { OnnxExportOptions, OnnxModel } from "../core/contracts.ts";

/** Element type of an export. */
export type ExportType = "float32" | "float64";

/** The element type an export asks for (default float32). */
export function exportType(o: OnnxExportOptions | undefined): ExportType {
  const t = o?.dtype ?? "float32";
  if (t !== "float32" && t !== "float64") throw new RangeError(`exportOnnx: dtype ${t}`);
  return t;
}

/** A graph under construction: the builder, its element type and a constant helper. */
export interface OpGraph {
  /** The graph builder. */
  g: GraphBuilder;
  /** Element type of the data path. */
  dtype: ExportType;
  /** A constant of the data type. */
  constant(hint: string, dims: number[], values: ArrayLike<number>): string;
}

/**
 * Build an operator model `x: inputShape → y: outputShape`.
 *
 * @param name graph name
 * @param inputShape dims of x
 * @param outputShape dims of y
 * @param dtype element type
 * @param body emits the nodes from x and returns the value holding y
 */
export function operatorModel(
  name: string,
  inputShape: readonly number[],
  outputShape: readonly number[],
  dtype: ExportType,
  body: (og: OpGraph, x: string) => string,
): OnnxModel {
  const g = new GraphBuilder(name, 17);
  const og: OpGraph = {
    g,
    dtype,
    constant: (hint, dims, values) => g.initializer(hint, dtype, dims, values),
  };
  const x = g.input("x", dtype, [...inputShape]);
  g.output(body(og, x), "y", dtype, [...outputShape]);
  return { bytes: g.toBytes("latent-inverse operator export"), input: "x", output: "y", dtype };
}

/** A run of consecutive source indices: start, start + step, … (step ±1). */
interface Run {
  start: number;
  step: 1 | -1;
  count: number;
}

/** Split an index map into maximal runs of step +1 or −1. */
function runsOf(idx: ArrayLike<number>): Run[] {
  const runs: Run[] = [];
  let i = 0;
  while (i < idx.length) {
    let step: 1 | -1 = 1;
    if (i + 1 < idx.length && idx[i + 1] - idx[i] === -1) step = -1;
    let j = i + 1;
    while (j < idx.length && idx[j] - idx[j - 1] === step) j++;
    runs.push({ start: idx[i], step, count: j - i });
    i = j;
  }
  return runs;
}

/**
 * x̃ = x indexed along `axis` by `idx` (out[…, q, …] = x[…, idx[q], …]), emitted as one `Slice` per
 * run of consecutive indices and one `Concat` — boundary extensions (periodic, half- and whole-
 * sample reflections) are a few runs each. Nothing is emitted for the identity map.
 *
 * @param og graph
 * @param x value
 * @param n extent of x along `axis`
 * @param axis axis
 * @param idx source index of every output position (0 ≤ idx < n)
 */
export function indexAxis(
  og: OpGraph,
  x: string,
  n: number,
  axis: number,
  idx: ArrayLike<number>,
): string {
  for (let q = 0; q < idx.length; q++) {
    if (!(idx[q] >= 0 && idx[q] < n)) {
      throw new RangeError(`indexAxis: index ${idx[q]} ∉ [0, ${n})`);
    }
  }
  const runs = runsOf(idx);
  const g = og.g;
  const parts = runs.map((r) => {
    if (r.step === 1 && r.start === 0 && r.count === n) return x;
    // ends for a reversed run that reaches index 0 must be "before the start": −n − 1
    const end = r.step === 1 ? r.start + r.count : r.start - r.count;
    return g.op("Slice", [
      x,
      g.constI("starts", [r.start]),
      g.constI("ends", [end < 0 ? -n - 1 : end]),
      g.constI("axes", [axis]),
      g.constI("steps", [r.step]),
    ]);
  });
  return parts.length === 1 ? parts[0] : g.op("Concat", parts, { axis });
}

/**
 * Depthwise correlation of every channel with one kernel (weights as applied, [kh, kw]), with
 * strides, no padding: `Conv` with group = C.
 */
export function depthwiseConv(
  og: OpGraph,
  x: string,
  channels: number,
  kh: number,
  kw: number,
  weights: ArrayLike<number>,
  strides: [number, number] = [1, 1],
): string {
  const w = new Float64Array(channels * kh * kw);
  for (let c = 0; c < channels; c++) w.set(Array.from(weights), c * kh * kw);
  return og.g.op("Conv", [x, og.constant("kernel", [channels, 1, kh, kw], w)], {
    group: channels,
    kernel_shape: [kh, kw],
    strides,
  });
}

/**
 * y = M x along `axis` (2: rows, 3: columns) of a [1,C,H,W] value, with M dense [m, n] row-major:
 * `MatMul(M, x)` for rows, `MatMul(x, Mᵀ)` for columns.
 */
export function axisMatrix(
  og: OpGraph,
  x: string,
  axis: 2 | 3,
  M: Float64Array,
  m: number,
  n: number,
): string {
  if (M.length !== m * n) throw new RangeError("axisMatrix: size mismatch");
  if (axis === 2) return og.g.op("MatMul", [og.constant("rows", [m, n], M), x]);
  const mt = new Float64Array(n * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) mt[j * m + i] = M[i * n + j];
  return og.g.op("MatMul", [x, og.constant("cols_t", [n, m], mt)]);
}

/**
 * Rank-1 factors k = u vᵀ of a kernel, or null when it is not separable (relative residual above
 * `tol`). u has kh entries, v has kw.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { separableFactors } from "./onnx_graph.ts";
 * const f = separableFactors({ h: 2, w: 2, data: Float64Array.from([1, 2, 2, 4]) })!;
 * assert.ok(Math.abs(f.u[1] * f.v[1] - 4) < 1e-12);
 * assert.equal(separableFactors({ h: 2, w: 2, data: Float64Array.from([1, 0, 0, 1]) }), null);
 * ```
 */
export function separableFactors(
  k: { h: number; w: number; data: Float64Array },
  tol = 1e-12,
): { u: Float64Array; v: Float64Array } | null {
  const { h, w, data } = k;
  let p = 0;
  for (let i = 1; i < data.length; i++) if (Math.abs(data[i]) > Math.abs(data[p])) p = i;
  const pv = data[p];
  if (pv === 0) return null;
  const pi = Math.floor(p / w), pj = p % w;
  const u = new Float64Array(h), v = new Float64Array(w);
  for (let i = 0; i < h; i++) u[i] = data[i * w + pj] / pv;
  for (let j = 0; j < w; j++) v[j] = data[pi * w + j];
  let err = 0, norm = 0;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      err = Math.max(err, Math.abs(u[i] * v[j] - data[i * w + j]));
      norm = Math.max(norm, Math.abs(data[i * w + j]));
    }
  }
  return err <= tol * norm ? { u, v } : null;
}

/**
 * The dense matrix of a 1-D "extend, then correlate with `taps` at stride f" map along one axis:
 * M[a, src(f·a + j)] += taps[j], with src the boundary index map of the extended signal.
 *
 * @param m output length
 * @param n input length
 * @param taps weights as applied (correlation)
 * @param stride f
 * @param src source index in [0, n) of extended position q (q = f·a + j)
 */
export function correlationMatrix(
  m: number,
  n: number,
  taps: ArrayLike<number>,
  stride: number,
  src: (q: number) => number,
): Float64Array {
  const M = new Float64Array(m * n);
  for (let a = 0; a < m; a++) {
    for (let j = 0; j < taps.length; j++) M[a * n + src(stride * a + j)] += taps[j];
  }
  return M;
}

/**
 * Extend (by the index map `src`), then correlate with a kernel at a stride, both axes: the float32
 * path pads by `indexAxis` and runs one depthwise `Conv` (two 1-D ones when separable); the
 * float64 path applies the two dense axis matrices (separable kernels only).
 *
 * @param og graph
 * @param x [1,C,H,W] value
 * @param shape [1,C,H,W]
 * @param kernel weights as applied (correlation), kh×kw row-major
 * @param out [m_h, m_w] output extents
 * @param stride [f_h, f_w]
 * @param srcRow source row of extended row q, for q < f_h·(m_h − 1) + kh
 * @param srcCol source column of extended column q
 */
export function extendAndCorrelate(
  og: OpGraph,
  x: string,
  shape: readonly number[],
  kernel: { h: number; w: number; data: Float64Array },
  out: [number, number],
  stride: [number, number],
  srcRow: (q: number) => number,
  srcCol: (q: number) => number,
): string {
  const [, C, H, W] = shape;
  const sep = separableFactors(kernel);
  if (og.dtype === "float64") {
    if (!sep) {
      throw new RangeError(
        "float64 export needs a separable kernel (ONNX Runtime's CPU provider has no double Conv)",
      );
    }
    const rows = correlationMatrix(out[0], H, sep.u, stride[0], srcRow);
    const cols = correlationMatrix(out[1], W, sep.v, stride[1], srcCol);
    return axisMatrix(og, axisMatrix(og, x, 2, rows, out[0], H), 3, cols, out[1], W);
  }
  const lenH = stride[0] * (out[0] - 1) + kernel.h, lenW = stride[1] * (out[1] - 1) + kernel.w;
  const padded = indexAxis(
    og,
    indexAxis(og, x, H, 2, Int32Array.from({ length: lenH }, (_, q) => srcRow(q))),
    W,
    3,
    Int32Array.from({ length: lenW }, (_, q) => srcCol(q)),
  );
  if (sep) {
    const r = depthwiseConv(og, padded, C, kernel.h, 1, sep.u, [stride[0], 1]);
    return depthwiseConv(og, r, C, 1, kernel.w, sep.v, [1, stride[1]]);
  }
  return depthwiseConv(og, padded, C, kernel.h, kernel.w, kernel.data, stride);
}

/** A kernel flipped in both axes (a convolution as a correlation). */
export function flipKernel(k: { h: number; w: number; data: Float64Array }): {
  h: number;
  w: number;
  data: Float64Array;
} {
  const out = new Float64Array(k.data.length);
  for (let i = 0; i < k.h; i++) {
    for (let j = 0; j < k.w; j++) out[i * k.w + j] = k.data[(k.h - 1 - i) * k.w + (k.w - 1 - j)];
  }
  return { h: k.h, w: k.w, data: out };
}
