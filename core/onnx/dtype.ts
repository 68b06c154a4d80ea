/**
 * ONNX element types: the one table of code, name, kind and the typed array that holds their raw
 * bytes, with the conversions every ONNX writer and reader here uses (graph builder, VJP emitter,
 * tensor decoding, shape inference).
 *
 * @module
 */

/** An element type's name (the onnxruntime / NumPy spelling). */
export type ElemType =
  | "float32"
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "int32"
  | "int64"
  | "string"
  | "bool"
  | "float16"
  | "float64"
  | "uint32"
  | "uint64"
  | "bfloat16";

type Holder =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Uint8ArrayConstructor
  | Int8ArrayConstructor
  | Uint16ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/** One ONNX element type. */
interface DType {
  /** `onnx.TensorProto.DataType` code. */
  code: number;
  /** Name. */
  name: ElemType;
  /** Kind: floating point, integer, boolean or string. */
  kind: "float" | "int" | "bool" | "string";
  /** Typed array of its raw little-endian bytes (none for float16/bfloat16/string here). */
  holder?: Holder;
}

const TABLE: readonly DType[] = [
  { code: 1, name: "float32", kind: "float", holder: Float32Array },
  { code: 2, name: "uint8", kind: "int", holder: Uint8Array },
  { code: 3, name: "int8", kind: "int", holder: Int8Array },
  { code: 4, name: "uint16", kind: "int", holder: Uint16Array },
  { code: 5, name: "int16", kind: "int", holder: Int16Array },
  { code: 6, name: "int32", kind: "int", holder: Int32Array },
  { code: 7, name: "int64", kind: "int", holder: BigInt64Array },
  { code: 8, name: "string", kind: "string" },
  { code: 9, name: "bool", kind: "bool", holder: Uint8Array },
  { code: 10, name: "float16", kind: "float" },
  { code: 11, name: "float64", kind: "float", holder: Float64Array },
  { code: 12, name: "uint32", kind: "int", holder: Uint32Array },
  { code: 13, name: "uint64", kind: "int", holder: BigUint64Array },
  { code: 16, name: "bfloat16", kind: "float" },
];
const BY_CODE = new Map(TABLE.map((d) => [d.code, d]));
const BY_NAME = new Map(TABLE.map((d) => [d.name, d]));

/**
 * ONNX element type codes used by name in the code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DataType } from "./dtype.ts";
 * import { onnx } from "./proto.ts";
 * assert.equal(DataType.INT64, onnx.TensorProto.DataType.INT64);
 * ```
 */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const;

/**
 * ONNX data type code of an element type name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { elemCode } from "./dtype.ts";
 * assert.equal(elemCode("float32"), 1); // onnx.TensorProto.DataType.FLOAT
 * assert.equal(elemCode("int64"), 7);
 * ```
 */
export function elemCode(t: ElemType): number {
  const d = BY_NAME.get(t);
  if (!d) throw new RangeError(`unknown element type "${t}"`);
  return d.code;
}

/**
 * Human-readable name of an ONNX element type code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { typeName } from "./dtype.ts";
 * assert.equal(typeName(11), "float64");
 * assert.equal(typeName(99), "type99");
 * ```
 */
export function typeName(code: number): string {
  return BY_CODE.get(code)?.name ?? `type${code}`;
}

/**
 * Floating-point ONNX element types (FLOAT, FLOAT16, DOUBLE, BFLOAT16).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FLOAT_TYPES } from "./dtype.ts";
 * assert.deepEqual([...FLOAT_TYPES].sort((a, b) => a - b), [1, 10, 11, 16]);
 * ```
 */
export const FLOAT_TYPES: ReadonlySet<number> = new Set(
  TABLE.filter((d) => d.kind === "float").map((d) => d.code),
);

/**
 * Integer ONNX element types (signed and unsigned, 8 to 64 bits; not bool).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { INT_TYPES } from "./dtype.ts";
 * assert.ok(INT_TYPES.has(7) && !INT_TYPES.has(9));
 * ```
 */
export const INT_TYPES: ReadonlySet<number> = new Set(
  TABLE.filter((d) => d.kind === "int").map((d) => d.code),
);

/**
 * Whether an ONNX element type is floating point.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isFloatType } from "./dtype.ts";
 * assert.equal(isFloatType(1), true);
 * assert.equal(isFloatType(7), false);
 * assert.equal(isFloatType(undefined), false);
 * ```
 */
export function isFloatType(t: number | undefined): boolean {
  return t !== undefined && FLOAT_TYPES.has(t);
}

function holderOf(code: number, what: string): Holder {
  const d = BY_CODE.get(code);
  if (!d?.holder) throw new Error(`${what}: element type ${typeName(code)} is not supported`);
  return d.holder;
}

/**
 * Raw little-endian bytes of `values` in ONNX element type `code` (an ONNX `raw_data` field).
 *
 * @param what names the tensor in the error for an unsupported type (float16, bfloat16, string)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeValues, encodeValues } from "./dtype.ts";
 * const bytes = encodeValues([4, 64], 7);
 * assert.equal(bytes.length, 16);
 * assert.deepEqual([...decodeValues(bytes, 7)], [4, 64]);
 * assert.throws(() => encodeValues([1], 10, "constant"), /float16 is not supported/);
 * ```
 */
export function encodeValues(
  values: ArrayLike<number> | ArrayLike<bigint>,
  code: number,
  what = "tensor",
): Uint8Array {
  const H = holderOf(code, what);
  const arr = H === BigInt64Array || H === BigUint64Array
    ? (H as BigInt64ArrayConstructor).from(values as ArrayLike<number>, (v) => BigInt(v))
    : (H as Float64ArrayConstructor).from(values as ArrayLike<number>);
  return arr instanceof Uint8Array ? arr : new Uint8Array(arr.buffer);
}

/**
 * Values of raw little-endian bytes in ONNX element type `code`, as float64 numbers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeValues } from "./dtype.ts";
 * const raw = new Uint8Array(Float32Array.of(0.5, -1).buffer);
 * assert.deepEqual([...decodeValues(raw, 1)], [0.5, -1]);
 * ```
 */
export function decodeValues(raw: Uint8Array, code: number, what = "tensor"): Float64Array {
  const H = holderOf(code, what);
  const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  if (H === BigInt64Array || H === BigUint64Array) {
    return Float64Array.from(new (H as BigInt64ArrayConstructor)(buf), (v) => Number(v));
  }
  return Float64Array.from(new (H as Float64ArrayConstructor)(buf));
}
