/**
 * NCHW float32 tensors and the handful of vector operations the framework needs.
 *
 * A tensor is a plain object `{ data, shape }` so that third-party plugins can build one without
 * importing anything. Images for operators, noise and metrics live on the [0,1] scale; the model
 * boundary ([-1,1]) is the Prior's business.
 *
 * Reductions (dot, norm) accumulate in float64 so that contract tests are not limited by float32
 * summation error.
 *
 * @module
 */

/** An NCHW (or any-rank) float32 tensor. `data.length` equals the product of `shape`. */
export interface Tensor {
  /** Row-major values. */
  data: Float32Array;
  /** Dimensions, outermost first (NCHW for images). */
  shape: number[];
}

/**
 * Number of elements implied by a shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { numel } from "./tensor.ts";
 * assert.equal(numel([1, 3, 4, 5]), 60);
 * assert.equal(numel([]), 1);
 * ```
 */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Make a tensor of the given shape; copies nothing when `data` is given (it is checked for length).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor } from "./tensor.ts";
 * const t = tensor([1, 3, 2, 2]);
 * assert.ok(t.data.length === 12);
 * ```
 */
export function tensor(shape: readonly number[], data?: Float32Array | number[]): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape [${shape}]`);
  }
  const n = numel(shape);
  const arr = data === undefined
    ? new Float32Array(n)
    : data instanceof Float32Array
    ? data
    : Float32Array.from(data);
  if (arr.length !== n) {
    throw new RangeError(`tensor data has ${arr.length} values, shape [${shape}] needs ${n}`);
  }
  return { data: arr, shape: [...shape] };
}

/**
 * A tensor of zeros with the same shape as `t`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor, zerosLike } from "./tensor.ts";
 * const z = zerosLike(tensor([2, 2], [1, 2, 3, 4]));
 * assert.deepEqual(z.shape, [2, 2]);
 * assert.deepEqual([...z.data], [0, 0, 0, 0]);
 * ```
 */
export function zerosLike(t: Tensor): Tensor {
  return tensor(t.shape);
}

/**
 * A tensor filled with `value`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { full } from "./tensor.ts";
 * assert.deepEqual([...full([1, 3], 0.5).data], [0.5, 0.5, 0.5]);
 * ```
 */
export function full(shape: readonly number[], value: number): Tensor {
  const t = tensor(shape);
  t.data.fill(value);
  return t;
}

/**
 * A deep copy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clone, tensor } from "./tensor.ts";
 * const a = tensor([2], [1, 2]);
 * const b = clone(a);
 * b.data[0] = 9;
 * assert.equal(a.data[0], 1);
 * ```
 */
export function clone(t: Tensor): Tensor {
  return { data: t.data.slice(), shape: [...t.shape] };
}

/**
 * True when two shapes are equal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sameShape } from "./tensor.ts";
 * assert.equal(sameShape([1, 3, 8, 8], [1, 3, 8, 8]), true);
 * assert.equal(sameShape([1, 3, 8, 8], [1, 1, 8, 8]), false);
 * ```
 */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Whether two float32 arrays hold the same bits (a cheap exact test for caches keyed by data, e.g.
 * an operator's spectra of the last measurement y).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sameBits } from "./tensor.ts";
 * assert.ok(sameBits(Float32Array.of(1, 2), Float32Array.of(1, 2)));
 * assert.ok(!sameBits(Float32Array.of(0), Float32Array.of(-0))); // different bits
 * ```
 */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Int32Array(a.buffer, a.byteOffset, a.length);
  const y = new Int32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Throw a clear error when `t` does not have the `expected` shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertShape, tensor } from "./tensor.ts";
 * assert.throws(() => assertShape(tensor([2, 2]), [4], "x"), RangeError);
 * ```
 */
export function assertShape(t: Tensor, expected: readonly number[], what = "tensor"): void {
  if (!sameShape(t.shape, expected)) {
    throw new RangeError(`${what} has shape [${t.shape}], expected [${expected}]`);
  }
}

function binary(a: Tensor, b: Tensor, f: (x: number, y: number) => number): Tensor {
  assertShape(b, a.shape, "second operand");
  const out = new Float32Array(a.data.length);
  const ad = a.data, bd = b.data;
  for (let i = 0; i < out.length; i++) out[i] = f(ad[i], bd[i]);
  return { data: out, shape: [...a.shape] };
}

/**
 * Elementwise a + b.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { add, tensor } from "./tensor.ts";
 * assert.deepEqual([...add(tensor([2], [1, 2]), tensor([2], [3, 4])).data], [4, 6]);
 * ```
 */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary(a, b, (x, y) => x + y);
}

/**
 * Elementwise a − b.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sub, tensor } from "./tensor.ts";
 * assert.deepEqual([...sub(tensor([2], [1, 2]), tensor([2], [3, 5])).data], [-2, -3]);
 * ```
 */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary(a, b, (x, y) => x - y);
}

/**
 * Elementwise a · b.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mul, tensor } from "./tensor.ts";
 * assert.deepEqual([...mul(tensor([2], [1, 2]), tensor([2], [3, 4])).data], [3, 8]);
 * ```
 */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary(a, b, (x, y) => x * y);
}

/**
 * s · a.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { scale, tensor } from "./tensor.ts";
 * assert.deepEqual([...scale(tensor([2], [1, -2]), 3).data], [3, -6]);
 * ```
 */
export function scale(a: Tensor, s: number): Tensor {
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = s * a.data[i];
  return { data: out, shape: [...a.shape] };
}

/**
 * α · x + β · y (new tensor).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { axpby, tensor } from "./tensor.ts";
 * const r = axpby(2, tensor([2], [1, 2]), -1, tensor([2], [1, 1]));
 * assert.deepEqual([...r.data], [1, 3]);
 * ```
 */
export function axpby(alpha: number, x: Tensor, beta: number, y: Tensor): Tensor {
  return binary(x, y, (u, v) => alpha * u + beta * v);
}

/**
 * Apply `f` to every element (new tensor).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { map, tensor } from "./tensor.ts";
 * assert.deepEqual([...map(tensor([3], [1, 2, 3]), (v) => v * v).data], [1, 4, 9]);
 * ```
 */
export function map(a: Tensor, f: (v: number) => number): Tensor {
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(a.data[i]);
  return { data: out, shape: [...a.shape] };
}

/**
 * Clamp every element to [lo, hi] (new tensor).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clamp, tensor } from "./tensor.ts";
 * assert.deepEqual([...clamp(tensor([3], [-1, 0.5, 2]), 0, 1).data], [0, 0.5, 1]);
 * ```
 */
export function clamp(a: Tensor, lo: number, hi: number): Tensor {
  return map(a, (v) => (v < lo ? lo : v > hi ? hi : v));
}

/**
 * <a, b>, accumulated in float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dot, tensor } from "./tensor.ts";
 * assert.equal(dot(tensor([3], [1, 2, 3]), tensor([3], [4, 5, 6])), 32);
 * ```
 */
export function dot(a: Tensor, b: Tensor): number {
  assertShape(b, a.shape, "second operand");
  let s = 0;
  const ad = a.data, bd = b.data;
  for (let i = 0; i < ad.length; i++) s += ad[i] * bd[i];
  return s;
}

/**
 * Euclidean norm, accumulated in float64.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { norm, tensor } from "./tensor.ts";
 * assert.equal(norm(tensor([2], [3, 4])), 5);
 * ```
 */
export function norm(a: Tensor): number {
  let s = 0;
  for (const v of a.data) s += v * v;
  return Math.sqrt(s);
}

/**
 * True when every element is finite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { allFinite, tensor } from "./tensor.ts";
 * assert.equal(allFinite(tensor([2], [0, 1])), true);
 * assert.equal(allFinite(tensor([2], [0, NaN])), false);
 * ```
 */
export function allFinite(a: Tensor): boolean {
  for (const v of a.data) if (!Number.isFinite(v)) return false;
  return true;
}

/**
 * Image scale [0,1] → model scale [−1,1]: x ↦ 2x − 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor, toModelScale } from "./tensor.ts";
 * assert.deepEqual([...toModelScale(tensor([3], [0, 0.5, 1])).data], [-1, 0, 1]);
 * ```
 */
export function toModelScale(x: Tensor): Tensor {
  return map(x, (v) => 2 * v - 1);
}

/**
 * Model scale [−1,1] → image scale [0,1]: x ↦ (x + 1)/2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensor, toImageScale } from "./tensor.ts";
 * assert.deepEqual([...toImageScale(tensor([3], [-1, 0, 1])).data], [0, 0.5, 1]);
 * ```
 */
export function toImageScale(x: Tensor): Tensor {
  return map(x, (v) => 0.5 * v + 0.5);
}
