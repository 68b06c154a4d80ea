/**
 * Emission of the backward graph: fresh names, small constants (cached by value), and helpers for
 * the patterns every rule needs (un-broadcasting, opset-dependent reductions, zeros, sums).
 * Emits standard `ai.onnx` ops only.
 *
 * @module
 */
import { NodeBuilder } from "../builder.ts";
import { DataType, encodeValues } from "../dtype.ts";
import { numel } from "./graph.ts";

/** Builds backward nodes and constants next to an existing graph. */
export class Emitter extends NodeBuilder {
  #count = 0;
  #consts = new Map<string, string>();

  /**
   * @param used every name already taken in the graph (values and initializers)
   * @param opset the model's ai.onnx opset
   */
  constructor(used: Set<string>, opset: number) {
    super(opset, used);
  }

  /** A fresh value name (`vjp/HINT_N`). */
  override fresh(hint: string): string {
    let n: string;
    do n = `vjp/${hint}_${this.#count++}`; while (this.used.has(n));
    this.used.add(n);
    return n;
  }

  /** Outputs are named after the op type. */
  protected override outputNames(opType: string, nOut: number): string[] {
    return Array.from({ length: nOut }, () => this.fresh(opType));
  }

  /** A constant tensor (cached by type, dims and values). */
  constant(dtype: number, dims: number[], values: ArrayLike<number>): string {
    if (values.length !== numel(dims)) throw new Error("constant: size mismatch");
    const key = `${dtype}|${dims.join(",")}|${Array.from(values).join(",")}`;
    const small = values.length <= 64;
    const hit = small ? this.#consts.get(key) : undefined;
    if (hit) return hit;
    const name = this.fresh("const");
    const rawData = encodeValues(values, dtype, "constant");
    this.initializers.push({ name, dims, dataType: dtype, rawData });
    if (small) this.#consts.set(key, name);
    return name;
  }

  /** An int64 1-D constant. */
  ints(values: number[]): string {
    return this.constant(DataType.INT64, [values.length], values);
  }

  /** A scalar of element type `dtype` (float16 / bfloat16 go through a float32 constant + Cast). */
  scalar(v: number, dtype: number): string {
    if (dtype === DataType.FLOAT || dtype === DataType.DOUBLE || dtype === DataType.INT64) {
      return this.constant(dtype, [], [v]);
    }
    const key = `cast|${dtype}|${v}`;
    const hit = this.#consts.get(key);
    if (hit) return hit;
    const out = this.op("Cast", [this.constant(DataType.FLOAT, [], [v])], { to: dtype });
    this.#consts.set(key, out);
    return out;
  }

  /**
   * A tensor of zeros of the given dims and element type: a scalar zero expanded (not
   * `ConstantOfShape`, which ONNX Runtime's WebGPU provider has no kernel for; see
   * `core/onnx/device_ops.ts`).
   */
  zeros(dims: number[], dtype: number): string {
    return this.expand(this.scalar(0, dtype), dims);
  }

  /**
   * Sum of several tensors as a balanced tree of `Add` nodes (identity for one). Not one `Sum`
   * node: ONNX Runtime's WebGPU provider has no `Sum` kernel, so a `Sum` would run on the CPU with
   * two device↔host copies per input (measured: `../shared/reference/gpu.md`).
   */
  sum(xs: string[]): string {
    if (xs.length === 0) throw new Error("sum of no tensors");
    let level = xs;
    while (level.length > 1) {
      const next: string[] = [];
      for (let i = 0; i + 1 < level.length; i += 2) next.push(this.add(level[i], level[i + 1]));
      if (level.length % 2) next.push(level[level.length - 1]);
      level = next;
    }
    return level[0];
  }

  /**
   * sign(x) ∈ {−1, 0, 1} of element type `dtype`, from comparisons and `Where` (ONNX Runtime's
   * WebGPU provider has no `Sign` kernel).
   */
  sign(x: string, dtype: number): string {
    const zero = this.scalar(0, dtype);
    const neg = this.op("Where", [this.op("Less", [x, zero]), this.scalar(-1, dtype), zero]);
    return this.op("Where", [this.op("Greater", [x, zero]), this.scalar(1, dtype), neg]);
  }

  /** a + b. */
  add(a: string, b: string): string {
    return this.op("Add", [a, b]);
  }
  /** a − b. */
  sub(a: string, b: string): string {
    return this.op("Sub", [a, b]);
  }
  /** a · b. */
  mul(a: string, b: string): string {
    return this.op("Mul", [a, b]);
  }
  /** a / b. */
  div(a: string, b: string): string {
    return this.op("Div", [a, b]);
  }
  /** −a. */
  neg(a: string): string {
    return this.op("Neg", [a]);
  }

  /** A reduction over `axes` (ReduceSum takes axes as an input from opset 13, the rest from 18). */
  reduce(opType: string, x: string, axes: number[], keepdims: boolean): string {
    const keep = keepdims ? 1 : 0;
    const asInput = opType === "ReduceSum" ? this.opset >= 13 : this.opset >= 18;
    return asInput
      ? this.op(opType, [x, this.ints(axes)], { keepdims: keep })
      : this.op(opType, [x], { axes, keepdims: keep });
  }

  /** ReduceSum over axes. */
  reduceSum(x: string, axes: number[], keepdims = true): string {
    return axes.length ? this.reduce("ReduceSum", x, axes, keepdims) : x;
  }

  /**
   * Σ of a ⊙ b over the last `k` axes (a and b both of `dims`), the reduced axes kept with size 1.
   * Rows of at least 1024 terms go through one batched MatMul, [M, 1, K] × [M, 1, K]ᵀ: it reads a
   * and b once and writes M sums, where Mul + ReduceSum also writes and reads the product (ONNX
   * Runtime's CPU provider, one thread: 64 rows of 2²⁰ terms 15 ms against 32, 16 × 2²¹ 17 against
   * 35, 4096 × 1024 1.0 against 1.7; the same rounding error against a float64 sum). Shorter rows:
   * Mul + ReduceSum.
   */
  dot(a: string, b: string, dims: number[], k: number): string {
    const r = dims.length;
    const lead = dims.slice(0, r - k);
    const K = numel(dims.slice(r - k));
    if (k === 0 || K < 1024) {
      return this.reduceSum(this.mul(a, b), Array.from({ length: k }, (_, i) => r - k + i), true);
    }
    const M = numel(lead);
    const rows = (x: string) => this.reshape(x, [M, 1, K]);
    const p = this.op("MatMul", [rows(a), this.transpose(rows(b), [0, 2, 1])]);
    return this.reshape(p, [...lead, ...new Array(k).fill(1)]);
  }

  /** ReduceMean over axes. */
  reduceMean(x: string, axes: number[], keepdims = true): string {
    return axes.length ? this.reduce("ReduceMean", x, axes, keepdims) : x;
  }

  /** Reshape to concrete dims. */
  reshape(x: string, dims: number[]): string {
    return this.op("Reshape", [x, this.ints(dims)]);
  }

  /** Transpose (identity permutations emit nothing). */
  transpose(x: string, perm: number[]): string {
    return perm.every((p, i) => p === i) ? x : this.op("Transpose", [x], { perm });
  }

  /** Expand to dims. */
  expand(x: string, dims: number[]): string {
    return this.op("Expand", [x, this.ints(dims)]);
  }

  /** Split along an axis into the given sizes. */
  split(x: string, sizes: number[], axis: number): string[] {
    if (sizes.length === 1) return [x];
    return this.opset >= 13
      ? this.opN("Split", [x, this.ints(sizes)], sizes.length, { axis })
      : this.opN("Split", [x], sizes.length, { axis, split: sizes });
  }

  /** Unsqueeze at axes. */
  unsqueeze(x: string, axes: number[]): string {
    return this.opset >= 13
      ? this.op("Unsqueeze", [x, this.ints(axes)])
      : this.op("Unsqueeze", [x], { axes });
  }

  /** Zero padding (pads = [begin…, end…], non-negative). */
  padZeros(x: string, pads: number[]): string {
    return pads.every((p) => p === 0) ? x : this.op("Pad", [x, this.ints(pads)], {
      mode: "constant",
    });
  }

  /** Slice with constant parameters. */
  slice(x: string, starts: number[], ends: number[], axes: number[], steps?: number[]): string {
    const ins = [x, this.ints(starts), this.ints(ends), this.ints(axes)];
    if (steps) ins.push(this.ints(steps));
    return this.op("Slice", ins);
  }

  /**
   * Sum a gradient of broadcast shape `gDims` down to `target` dims (numpy broadcasting: leading
   * axes and axes where the target has extent 1).
   */
  unbroadcast(g: string, gDims: number[], target: number[]): string {
    const r = gDims.length;
    if (target.length === r && target.every((d, i) => d === gDims[i])) return g;
    const padded = [...new Array(r - target.length).fill(1), ...target];
    const axes = padded.map((d, i) => (d === 1 && gDims[i] !== 1 ? i : -1)).filter((i) => i >= 0);
    const lead = r - target.length;
    const onlyLead = axes.every((i) => i < lead) && axes.length === lead;
    if (onlyLead && lead > 0) return this.reduceSum(g, axes, false);
    let out = this.reduceSum(g, axes, true);
    if (lead > 0 || axes.length === 0) out = this.reshape(out, target);
    return out;
  }
}
