/**
 * The one ONNX node builder: {@link NodeBuilder} emits nodes and initializers under fresh, unique
 * names; {@link GraphBuilder} adds graph inputs and outputs and serialises a model (the built-in
 * exact model, test graphs with the real Optimum/diffusers names), and the VJP transform's
 * emitter (`vjp/emit.ts`) extends it with the patterns gradient rules need.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * const g = new GraphBuilder("double");
 * const x = g.input("x", "float32", [1, 4]);
 * g.output(g.op("Add", [x, x]), "y", "float32", [1, 4]);
 * const bytes = g.toBytes();
 * assert.ok(bytes.length > 0);
 * ```
 *
 * @module
 */
import { type AttributeProto, encodeModel, type NodeProto, onnx } from "./proto.ts";
import type { IModelProto, TensorProto, ValueInfoProto } from "./proto.ts";
import { elemCode, type ElemType, encodeValues } from "./dtype.ts";

export { elemCode, type ElemType } from "./dtype.ts";

/** A float attribute (JS numbers that happen to be integers would otherwise become INT). */
export interface FloatAttr {
  /** Tag. */
  kind: "float";
  /** Value(s). */
  value: number | number[];
}

/**
 * Mark a number (or list) as a float attribute.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { float, makeAttr } from "./builder.ts";
 * assert.equal(makeAttr("alpha", 1).i, 1); // an integer number becomes INT
 * assert.equal(makeAttr("alpha", float(1)).f, 1); // float() keeps it FLOAT
 * ```
 */
export function float(value: number | number[]): FloatAttr {
  return { kind: "float", value };
}

/** Attribute values accepted by {@link GraphBuilder.op}. */
export type AttrValue = number | number[] | string | string[] | FloatAttr | TensorProto;

/**
 * Encode one attribute. Integers become INT/INTS; use {@link float} for float attributes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeAttr } from "./builder.ts";
 * assert.deepEqual(makeAttr("axes", [0, 2]).ints, [0, 2]);
 * assert.equal(makeAttr("epsilon", 1e-5).f, 1e-5);
 * ```
 */
export function makeAttr(name: string, v: AttrValue): AttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === "string") return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === "number") {
    return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  }
  if (Array.isArray(v)) {
    if (v.every((e) => typeof e === "string")) {
      return {
        name,
        type: A.STRINGS,
        strings: (v as string[]).map((e) => new TextEncoder().encode(e)),
      };
    }
    const nums = v as number[];
    return nums.every(Number.isInteger)
      ? { name, type: A.INTS, ints: nums }
      : { name, type: A.FLOATS, floats: nums };
  }
  if ((v as FloatAttr).kind === "float") {
    const fv = (v as FloatAttr).value;
    return Array.isArray(fv)
      ? { name, type: A.FLOATS, floats: fv }
      : { name, type: A.FLOAT, f: fv };
  }
  return { name, type: A.TENSOR, t: v as TensorProto };
}

/** Dims: numbers are fixed, strings are symbolic (dim_param). */
export type Dims = (number | string)[];

/**
 * Make a value info.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { valueInfo } from "./builder.ts";
 * const v = valueInfo("sample", "float32", ["batch", 4, 64, 64]);
 * assert.deepEqual(v.type?.tensorType?.shape?.dim?.[0], { dimParam: "batch" });
 * ```
 */
export function valueInfo(name: string, type: ElemType, dims?: Dims): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: elemCode(type),
        shape: dims
          ? {
            dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })),
          }
          : undefined,
      },
    },
  };
}

/**
 * Make an embedded tensor proto from values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tensorValues } from "./proto.ts";
 * import { makeTensor } from "./builder.ts";
 * const t = makeTensor("shape", "int64", [2], [4, 64]);
 * assert.deepEqual(Array.from(tensorValues(t)), [4, 64]);
 * ```
 */
export function makeTensor(
  name: string,
  type: ElemType,
  dims: number[],
  values: ArrayLike<number> | ArrayLike<bigint>,
): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  if (values.length !== n) {
    throw new RangeError(`tensor ${name}: ${values.length} values for dims [${dims}]`);
  }
  const code = elemCode(type);
  return { name, dims, dataType: code, rawData: encodeValues(values, code, `makeTensor ${name}`) };
}

/**
 * Emits nodes and initializers with fresh, unique value names. The naming scheme is the one thing
 * subclasses change ({@link NodeBuilder.fresh}, {@link NodeBuilder.outputNames}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NodeBuilder } from "./builder.ts";
 * const b = new NodeBuilder(17, new Set(["x"]));
 * const y = b.op("Relu", ["x"]);
 * assert.equal(y, "relu");
 * assert.equal(b.op("Relu", [y]), "relu_1");
 * assert.equal(b.nodes.length, 2);
 * ```
 */
export class NodeBuilder {
  /** Nodes in order. */
  readonly nodes: NodeProto[] = [];
  /** Initializers. */
  readonly initializers: TensorProto[] = [];
  /** ai.onnx opset version. */
  readonly opset: number;
  /** Every name taken (values, initializers, node names). */
  protected readonly used: Set<string>;
  #counter = 0;

  /**
   * Start with no nodes.
   *
   * @param opset ai.onnx opset version
   * @param used names already taken (e.g. every value of a graph being extended)
   */
  constructor(opset: number, used: Set<string> = new Set()) {
    this.opset = opset;
    this.used = used;
  }

  /** A fresh, unused value name starting with `hint` (`hint`, `hint_1`, `hint_2`, …). */
  fresh(hint = "v"): string {
    let n = hint;
    while (this.used.has(n)) n = `${hint}_${++this.#counter}`;
    this.used.add(n);
    return n;
  }

  /** Reserve an exact name (throws if taken). */
  reserve(name: string): string {
    if (this.used.has(name)) throw new Error(`name '${name}' already exists in the graph`);
    this.used.add(name);
    return name;
  }

  /** Fresh names for the `nOut` outputs of a new `opType` node. */
  protected outputNames(opType: string, nOut: number, hint?: string): string[] {
    return Array.from(
      { length: nOut },
      (_, i) => this.fresh(`${hint ?? opType.toLowerCase()}${nOut > 1 ? `_${i}` : ""}`),
    );
  }

  /** Add a node with `nOut` outputs (or with the given output names); returns their names. */
  opN(
    opType: string,
    inputs: string[],
    nOut: number | string[],
    attrs: Record<string, AttrValue> = {},
    hint?: string,
  ): string[] {
    const outs = typeof nOut === "number" ? this.outputNames(opType, nOut, hint) : nOut;
    this.nodes.push({
      opType,
      input: inputs,
      output: outs,
      name: this.fresh(`node_${opType}`),
      attribute: Object.entries(attrs).map(([k, v]) => makeAttr(k, v)),
    });
    return outs;
  }

  /** Add a node with one output; returns the output name. */
  op(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    hint?: string,
  ): string {
    return this.opN(opType, inputs, 1, attrs, hint)[0];
  }

  /** Add an initializer named after `hint`; returns its name. */
  initializer(
    hint: string,
    type: ElemType,
    dims: number[],
    values: ArrayLike<number> | ArrayLike<bigint>,
  ): string {
    const name = this.fresh(hint);
    this.initializers.push(makeTensor(name, type, dims, values));
    return name;
  }
}

/**
 * Builds one graph; names of intermediate values are made unique automatically.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeModel } from "./proto.ts";
 * import { GraphBuilder } from "./builder.ts";
 * const g = new GraphBuilder("affine");
 * const x = g.input("x", "float32", ["n"]);
 * const y = g.op("Add", [g.op("Mul", [x, g.constF("a", [1], [2])]), g.constF("b", [1], [1])]);
 * g.output(y, "y", "float32", ["n"]);
 * const model = decodeModel(g.toBytes());
 * // output() names the result through an Identity node
 * assert.deepEqual(model.graph?.node?.map((n) => n.opType), ["Mul", "Add", "Identity"]);
 * ```
 */
export class GraphBuilder extends NodeBuilder {
  /** Graph inputs. */
  readonly inputs: ValueInfoProto[] = [];
  /** Graph outputs. */
  readonly outputs: ValueInfoProto[] = [];
  /** Graph name. */
  readonly name: string;

  /**
   * Start an empty graph.
   *
   * @param name graph name
   * @param opset ai.onnx opset version (default 17)
   */
  constructor(name: string, opset = 17) {
    super(opset);
    this.name = name;
  }

  /** Declare a graph input; returns its name. */
  input(name: string, type: ElemType, dims?: Dims): string {
    if (this.used.has(name)) throw new Error(`name ${name} already used`);
    this.used.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** A float32 constant (initializer) of the given dims. */
  constF(hint: string, dims: number[], values: ArrayLike<number>): string {
    return this.initializer(hint, "float32", dims, values);
  }

  /** An int64 constant (initializer), e.g. shapes and axes. */
  constI(hint: string, values: number[], dims: number[] = [values.length]): string {
    return this.initializer(hint, "int64", dims, values);
  }

  /**
   * Declare `value` as a graph output named `name` (an Identity node is added when the names
   * differ).
   */
  output(value: string, name: string, type: ElemType, dims?: Dims): string {
    if (value !== name) {
      if (this.used.has(name)) throw new Error(`output name ${name} already used`);
      this.used.add(name);
      this.nodes.push({
        opType: "Identity",
        input: [value],
        output: [name],
        name: this.fresh("node_Identity"),
      });
    }
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** The model object (ir_version 8). */
  toModel(producer = "latent-inverse"): IModelProto {
    return {
      irVersion: 8,
      producerName: producer,
      opsetImport: [{ domain: "", version: this.opset }],
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    };
  }

  /** Serialized model bytes. */
  toBytes(producer?: string): Uint8Array {
    return encodeModel(this.toModel(producer));
  }
}
