/**
 * A thin, counted wrapper around one ONNX Runtime inference session.
 *
 * Input names, element types and shapes come from the session's metadata (never hard-coded), so
 * the same call works for every exporter variant: `{ timestep: { data: [t], shape: [] } }` is fed
 * as a float32 scalar, an int64 `[B]` vector or a float32 `[B]` vector, whatever the graph asks
 * for. Every call is counted and timed for run reports (NFE per model name).
 *
 * Float32 at the boundary: float32 typed arrays are handed to the binding without a copy, and
 * float32 outputs are returned as the binding's own Float32Array (no copy). Other float/int
 * outputs are converted to float32.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import type { Tensor } from "../tensor.ts";
import { numel } from "../tensor.ts";
import { InputError } from "../errors.ts";

/** Name, element type and shape of one model input or output (from session metadata). */
export interface ValueInfo {
  /** Input/output name. */
  name: string;
  /** Element type, e.g. "float32", "int64"; "non-tensor" for sequences/maps. */
  type: string;
  /** Dimensions: numbers are fixed, strings are symbolic (e.g. "batch"); [] is a scalar. */
  shape: (number | string)[];
}

/** Data accepted for one input. */
export type FeedData =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | readonly number[];

/** Element types a model input may be fed as. */
export type ElementType = "float32" | "float64" | "int64" | "int32" | "bool" | "uint8" | "float16";

/** One input value: data plus shape; `type` overrides the metadata type (rarely needed). */
export interface Feed {
  /** Values, row-major. Numbers are converted to the model's element type. */
  data: FeedData;
  /** Dimensions ([] for a scalar). */
  shape: readonly number[];
  /** Element type to send; by default the type the model declares. */
  type?: ElementType;
}

/** Options of one call. */
export interface RunOptions {
  /** Only compute and return these outputs (default: all). */
  outputs?: string[];
}

/** Metadata of one value as onnxruntime-common reports it. */
export interface OrtValueMetadata {
  /** Name. */
  readonly name: string;
  /** False for sequences and maps. */
  readonly isTensor: boolean;
  /** Element type (tensors only). */
  readonly type?: string;
  /** Dimensions (tensors only). */
  readonly shape?: ReadonlyArray<number | string>;
}

/** The part of an onnxruntime `InferenceSession` this wrapper uses (kept structural). */
export interface OrtSessionLike {
  /** Input metadata. */
  readonly inputMetadata: readonly OrtValueMetadata[];
  /** Output metadata. */
  readonly outputMetadata: readonly OrtValueMetadata[];
  /** Release the native session. */
  release(): Promise<void>;
}

/** The shared, loaded part of a session (one per model and provider in a pool). */
export interface LoadedModel {
  /** Pool key of the model (path or in-memory key). */
  readonly key: string;
  /** The ONNX Runtime session. */
  readonly session: OrtSessionLike;
  /** Set once the pool released it. */
  released: boolean;
}

function metadataOf(list: readonly OrtValueMetadata[]): ValueInfo[] {
  return list.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type ?? "unknown", shape: [...(m.shape ?? [])] }
      : { name: m.name, type: "non-tensor", shape: [] }
  );
}

/**
 * Does `shape` fit the declared dims (same rank, fixed dims equal)? Unknown metadata fits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shapeFits } from "./session.ts";
 * assert.equal(shapeFits([1, 4, 64, 64], ["batch", 4, -1, 64]), true);
 * assert.equal(shapeFits([1, 3, 64, 64], ["batch", 4, -1, 64]), false);
 * assert.equal(shapeFits([1], []), true); // a scalar input may be fed as [1]
 * ```
 */
export function shapeFits(shape: readonly number[], dims: readonly (number | string)[]): boolean {
  if (dims.length === 0) return shape.length === 0 || numel(shape) === 1;
  if (shape.length !== dims.length) return false;
  return dims.every((d, i) => typeof d !== "number" || d < 0 || d === shape[i]);
}

function toTypedData(
  data: FeedData,
  type: ort.Tensor.Type,
  where: string,
): ort.Tensor.DataType {
  switch (type) {
    case "float32":
      return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
    case "float64":
      return data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>);
    case "int64": {
      if (data instanceof BigInt64Array) return data;
      const src = data as ArrayLike<number>;
      const out = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (!Number.isInteger(v)) {
          throw new RangeError(`${where}: int64 input needs integers, got ${v}`);
        }
        out[i] = BigInt(v);
      }
      return out;
    }
    case "int32": {
      if (data instanceof Int32Array) return data;
      const src = data instanceof BigInt64Array
        ? Array.from(data, Number)
        : data as ArrayLike<number>;
      for (let i = 0; i < src.length; i++) {
        if (!Number.isInteger(src[i])) {
          throw new RangeError(`${where}: int32 input needs integers, got ${src[i]}`);
        }
      }
      return Int32Array.from(src);
    }
    case "bool":
    case "uint8":
      return data instanceof Uint8Array ? data : Uint8Array.from(data as ArrayLike<number>);
    case "float16":
      // DEVIATION from "any type": fp16 inputs are refused. Under Deno 2.9 onnxruntime-common
      // rewraps Uint16Array data as Float16Array and the binding then sees 0 bytes (onnx.md §1.5);
      // fp32 at every model boundary (Cast nodes inside the graph) is the supported layout.
      throw new InputError(
        `${where} is float16; only float32 model inputs are supported (export in fp32, or put Cast nodes inside the graph)`,
      );
    default:
      throw new InputError(`${where} has element type ${type}, which is not supported`);
  }
}

/** An output as ONNX Runtime returns it (typed array of the model's element type). */
export interface RawTensor {
  /** Values, row-major (Float32Array, Float64Array, BigInt64Array, Int32Array, Uint8Array…). */
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
  /** Dims. */
  shape: number[];
  /** Element type name, e.g. "float32", "float64", "int64", "bool". */
  type: string;
}

/** Convert an output tensor to a float32 {@link Tensor} (no copy for float32). */
function toFloat32(t: ort.Tensor): Tensor {
  const shape = t.dims.map(Number);
  const d = t.data;
  if (d instanceof Float32Array) return { data: d, shape };
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    return { data: Float32Array.from(d, Number), shape };
  }
  if (ArrayBuffer.isView(d)) {
    return { data: Float32Array.from(d as unknown as ArrayLike<number>), shape };
  }
  throw new Error(`output of type ${t.type} cannot be converted to float32`);
}

/**
 * One model as seen by one user (a prior, a gradient model…): shares the loaded session with
 * every other handle on the same model, keeps its own call counter and timer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "../onnx/builder.ts";
 * import { SessionPool } from "./pool.ts";
 * const g = new GraphBuilder("square");
 * const x = g.input("x", "float32", ["n"]);
 * g.output(g.op("Mul", [x, x]), "y", "float32", ["n"]);
 * const pool = new SessionPool({ threads: 1 });
 * const m = await pool.session("square", { key: "square", bytes: g.toBytes() }, { device: "cpu" });
 * assert.deepEqual(m.inputNames, ["x"]);
 * const { y } = await m.run({ x: { data: [3], shape: [1] } });
 * assert.equal(y.data[0], 9);
 * assert.equal(m.calls, 1);
 * await pool.release();
 * ```
 */
export class ModelSession {
  /** Name used in statistics, e.g. "unet". */
  readonly name: string;
  /** Inputs as declared by the model. */
  readonly inputs: readonly ValueInfo[];
  /** Outputs as declared by the model. */
  readonly outputs: readonly ValueInfo[];
  /** How its calls are counted: forward calls (NFE) or VJP calls of the network `name`. */
  readonly kind: "forward" | "vjp";
  /** Number of calls made through this handle. */
  calls = 0;
  /** Milliseconds spent in those calls. */
  ms = 0;
  #model: LoadedModel;
  #onRun?: (name: string, ms: number) => void;

  /**
   * Wrap a loaded model (use `SessionPool.session` rather than calling this directly).
   *
   * @param name statistics name
   * @param model the shared loaded model
   * @param onRun called after every run with the name and milliseconds (pool-wide totals)
   * @param kind "forward" (default) or "vjp" (a gradient model of the network `name`)
   */
  constructor(
    name: string,
    model: LoadedModel,
    onRun?: (name: string, ms: number) => void,
    kind: "forward" | "vjp" = "forward",
  ) {
    this.name = name;
    this.kind = kind;
    this.#model = model;
    this.#onRun = onRun;
    this.inputs = metadataOf(model.session.inputMetadata);
    this.outputs = metadataOf(model.session.outputMetadata);
  }

  /** Pool key of the underlying model. */
  get key(): string {
    return this.#model.key;
  }

  /** Declared input names, in order. */
  get inputNames(): string[] {
    return this.inputs.map((i) => i.name);
  }

  /** Declared output names, in order. */
  get outputNames(): string[] {
    return this.outputs.map((o) => o.name);
  }

  /** Metadata of an input, or undefined. */
  input(name: string): ValueInfo | undefined {
    return this.inputs.find((i) => i.name === name);
  }

  /** Metadata of an output, or undefined. */
  output(name: string): ValueInfo | undefined {
    return this.outputs.find((o) => o.name === name);
  }

  /**
   * Run the model. Every declared input must be fed; element types follow the model's metadata
   * (numbers become BigInt64Array for int64 inputs, etc.). Returns the outputs as float32 tensors.
   */
  async run(
    feeds: Record<string, Feed>,
    options: RunOptions = {},
  ): Promise<Record<string, Tensor>> {
    const out = await this.#runOrt(feeds, options);
    const result: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(out)) result[k] = toFloat32(v);
    return result;
  }

  /**
   * Run the model like {@link run} but return every output in its own element type (float64
   * outputs stay Float64Array, int64 BigInt64Array…): for float64 graphs and for activations handed
   * from one model to another unchanged.
   */
  async runRaw(
    feeds: Record<string, Feed>,
    options: RunOptions = {},
  ): Promise<Record<string, RawTensor>> {
    const out = await this.#runOrt(feeds, options);
    const result: Record<string, RawTensor> = {};
    for (const [k, v] of Object.entries(out)) {
      result[k] = {
        data: v.data as RawTensor["data"],
        shape: v.dims.map(Number),
        type: v.type,
      };
    }
    return result;
  }

  async #runOrt(
    feeds: Record<string, Feed>,
    options: RunOptions,
  ): Promise<Record<string, ort.Tensor>> {
    if (this.#model.released) {
      throw new Error(`model "${this.name}" was released (SessionPool.release was called)`);
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const info of this.inputs) {
      const f = feeds[info.name];
      const where = `model "${this.name}" input "${info.name}"`;
      if (!f) {
        throw new RangeError(
          `${where} was not fed (fed: ${Object.keys(feeds).join(", ") || "nothing"})`,
        );
      }
      if (f.data.length !== numel(f.shape)) {
        throw new RangeError(`${where}: ${f.data.length} values for shape [${f.shape}]`);
      }
      if (!shapeFits(f.shape, info.shape)) {
        throw new InputError(
          `${where} has shape [${f.shape}], the model expects [${info.shape}]`,
        );
      }
      const type = f.type ??
        (info.type === "non-tensor" ? "float32" : info.type) as ort.Tensor.Type;
      const data = toTypedData(f.data, type, where);
      ortFeeds[info.name] = new ort.Tensor(type, data as Float32Array, [...f.shape]);
    }
    for (const k of Object.keys(feeds)) {
      if (!this.input(k)) {
        throw new RangeError(
          `model "${this.name}" has no input "${k}" (inputs: ${this.inputNames.join(", ")})`,
        );
      }
    }
    const t0 = performance.now();
    const session = this.#model.session as ort.InferenceSession;
    const out = options.outputs
      ? await session.run(ortFeeds, options.outputs)
      : await session.run(ortFeeds);
    const ms = performance.now() - t0;
    this.calls++;
    this.ms += ms;
    this.#onRun?.(this.name, ms);
    return out as Record<string, ort.Tensor>;
  }
}
