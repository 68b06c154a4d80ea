/**
 * Composing ONNX models into one graph: inline whole models (prior networks, an operator's export)
 * under name prefixes, wire them with glue nodes, and emit one model — so that a chain such as
 * UNet → x̂0 → decoder → operator → norm runs in one session and is differentiated once.
 *
 * Inlining renames every internal value, initializer and node of the model to `PREFIX/name`, and
 * replaces its graph inputs by the values the caller wires in. External weights stay external:
 * each source folder gets a sub-folder key (`w0`, `w1`, …) and the locations are rewritten to
 * `w0/model.onnx_data`; {@link ComposedModel.write} hard-links the data files there (never copies
 * them), so a composed model references the very files its networks do.
 *
 * Models of different opsets are merged at the highest one when that is safe (every opset ≤ 17,
 * where the ops our exports use kept their signatures); otherwise the composer refuses with one
 * line. Nodes, initializers and inputs that no output depends on are pruned at the end (e.g. the
 * unused forward output of an inlined VJP graph).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { InputError } from "../errors.ts";
import { type AttrValue, type Dims, type ElemType, GraphBuilder, valueInfo } from "./builder.ts";
import {
  externalInfo,
  isExternal,
  linkExternalData,
  type LoadedOnnxModel,
  loadModel,
  writeModel,
} from "./external.ts";
import {
  decodeModel,
  encodeModel,
  type IModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.ts";
import { defaultOpset, num, typeName } from "./vjp/graph.ts";

/** Element type names by ONNX code (the float and index types composed graphs carry). */
const ELEM_NAMES: Record<number, ElemType> = {
  1: "float32",
  11: "float64",
  7: "int64",
  6: "int32",
  9: "bool",
  10: "float16",
  2: "uint8",
};

/** An element type name from an ONNX code (InputError for others). */
export function elemName(code: number): ElemType {
  const n = ELEM_NAMES[code];
  if (!n) {
    throw new InputError(`element type ${typeName(code)} is not supported in composed graphs`);
  }
  return n;
}

/** The declared element type and dims of a model input or output. */
export interface PortInfo {
  /** Name. */
  name: string;
  /** ONNX element type code. */
  elemType: number;
  /** Dims (numbers fixed, strings symbolic); undefined when not declared. */
  dims?: Dims;
}

function portInfo(vi: ValueInfoProto): PortInfo {
  const tt = vi.type?.tensorType;
  return {
    name: vi.name ?? "",
    elemType: tt?.elemType ?? 1,
    dims: tt?.shape
      ? (tt.shape.dim ?? []).map((d) =>
        d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue) > 0
          ? num(d.dimValue)
          : d.dimParam || "?"
      )
      : undefined,
  };
}

/** A model ready to inline: its decoded proto and the folder of its external data. */
export interface InlineSource {
  /** The model (decoded; it is copied before renaming, never modified). */
  model: IModelProto;
  /** Folder its external data locations are relative to. */
  baseDir?: string;
}

/**
 * Load a model for inlining (bytes or a path; external weights are not read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { inlineSource, modelPorts } from "./compose.ts";
 * const g = new GraphBuilder("id");
 * g.output(g.op("Neg", [g.input("x", "float32", [2])]), "y", "float32", [2]);
 * const src = await inlineSource(g.toBytes());
 * assert.deepEqual(modelPorts(src).inputs.map((p) => p.name), ["x"]);
 * ```
 */
export async function inlineSource(
  src: Uint8Array | string,
  baseDir?: string,
): Promise<InlineSource> {
  const loaded: LoadedOnnxModel = await loadModel(src, baseDir);
  return { model: loaded.model, baseDir: loaded.baseDir };
}

/** Inputs (initializers excluded) and outputs of a model. */
export function modelPorts(src: InlineSource): { inputs: PortInfo[]; outputs: PortInfo[] } {
  const g = src.model.graph ?? {};
  const inits = new Set((g.initializer ?? []).map((t) => t.name ?? ""));
  return {
    inputs: (g.input ?? []).filter((i) => !inits.has(i.name ?? "")).map(portInfo),
    outputs: (g.output ?? []).map(portInfo),
  };
}

/** A composed model and the external-data folders it references. */
export interface ComposedModel {
  /** The model. */
  model: IModelProto;
  /** Sub-folder key → the folder holding the data files its locations name. */
  externalDirs: Map<string, string>;
  /** Whether any initializer is stored externally. */
  externalData: boolean;
  /**
   * Write the model atomically to `path`; external data files are hard-linked into
   * `dirname(path)/KEY/…` (same file, no copy; InputError when a link is impossible).
   */
  write(path: string): Promise<void>;
}

/** Deep copy of a decoded model (renaming must not touch the caller's copy). */
function copyModel(m: IModelProto): IModelProto {
  return decodeModel(encodeModel(m));
}

/**
 * Builds one graph out of glue nodes and inlined models.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { GraphComposer, inlineSource } from "./compose.ts";
 * const net = new GraphBuilder("double");
 * const x = net.input("x", "float32", [2]);
 * net.output(net.op("Add", [x, x]), "y", "float32", [2]);
 * const c = new GraphComposer("chain");
 * const z = c.input("z", "float32", [2]);
 * const { y } = c.inline(await inlineSource(net.toBytes()), "net", { x: z });
 * const out = c.inline(await inlineSource(net.toBytes()), "net", { x: y }).y; // twice
 * c.output(out, "w", "float32", [2]);
 * const { model } = c.build();
 * assert.equal(model.graph?.node?.filter((n) => n.opType === "Add").length, 2);
 * ```
 */
export class GraphComposer {
  /** The underlying builder (glue nodes, inputs, constants, outputs). */
  readonly g: GraphBuilder;
  #opsets: number[] = [];
  #irVersion = 8;
  #dirKeys = new Map<string, string>(); // baseDir → key
  #prefixes = new Set<string>();

  /**
   * @param name graph name
   * @param opset opset of the glue nodes (default 17)
   */
  constructor(name: string, opset = 17) {
    this.g = new GraphBuilder(name, opset);
    this.#opsets.push(opset);
  }

  /** Declare a graph input. */
  input(name: string, type: ElemType, dims: Dims): string {
    return this.g.input(name, type, dims);
  }

  /** Add a glue node with one output. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.g.op(opType, inputs, attrs);
  }

  /** A constant (initializer) of the given element type. */
  constant(hint: string, type: ElemType, dims: number[], values: ArrayLike<number>): string {
    return this.g.initializer(hint, type, dims, values);
  }

  /** Declare a graph output. */
  output(value: string, name: string, type: ElemType, dims?: Dims): string {
    return this.g.output(value, name, type, dims);
  }

  /** A prefix not used yet, derived from `hint`. */
  #prefix(hint: string): string {
    let p = hint, k = 1;
    while (this.#prefixes.has(p)) p = `${hint}_${++k}`;
    this.#prefixes.add(p);
    return p;
  }

  /** The sub-folder key of an external-data source folder. */
  #dirKey(baseDir: string): string {
    const abs = resolve(baseDir);
    let k = this.#dirKeys.get(abs);
    if (!k) {
      k = `w${this.#dirKeys.size}`;
      this.#dirKeys.set(abs, k);
    }
    return k;
  }

  /**
   * Inline a model: its graph inputs are replaced by `inputs` (every input must be wired), every
   * other name gets the prefix. Returns the values of its outputs by output name.
   *
   * @param src the model
   * @param prefixHint name prefix (made unique)
   * @param inputs input name → value in this graph
   */
  inline(
    src: InlineSource,
    prefixHint: string,
    inputs: Record<string, string>,
  ): Record<string, string> {
    const m = copyModel(src.model);
    const graph = m.graph;
    if (!graph) throw new InputError(`${prefixHint}: model has no graph`);
    const opset = defaultOpset(m.opsetImport);
    this.#opsets.push(opset);
    this.#irVersion = Math.max(this.#irVersion, num(m.irVersion as number));
    for (const imp of m.opsetImport ?? []) {
      if (imp.domain && imp.domain !== "ai.onnx") {
        throw new InputError(`${prefixHint}: models with domain ${imp.domain} cannot be composed`);
      }
    }
    const p = this.#prefix(prefixHint);
    const { inputs: ins } = modelPorts({ model: m, baseDir: src.baseDir });
    const missing = ins.map((i) => i.name).filter((n) => !(n in inputs));
    if (missing.length) {
      throw new InputError(`${p}: inputs not wired: ${missing.join(", ")}`);
    }
    const extra = Object.keys(inputs).filter((k) => !ins.some((i) => i.name === k));
    if (extra.length) throw new InputError(`${p}: no such inputs: ${extra.join(", ")}`);
    const rename = new Map<string, string>(Object.entries(inputs));
    rename.set("", "");
    const fresh = (n: string) => {
      const r = this.g.fresh(`${p}/${n}`);
      rename.set(n, r);
      return r;
    };
    for (const t of graph.initializer ?? []) {
      const name = fresh(t.name ?? "");
      const out: TensorProto = { ...t, name };
      if (isExternal(t)) {
        if (!src.baseDir) {
          throw new InputError(`${p}: model has external data but its folder is unknown`);
        }
        const key = this.#dirKey(src.baseDir);
        const loc = externalInfo(t).location;
        out.externalData = (t.externalData ?? []).map((e) =>
          e.key === "location" ? { key: "location", value: `${key}/${loc}` } : e
        );
      }
      this.g.initializers.push(out);
    }
    for (const n of graph.node ?? []) {
      if ((n.attribute ?? []).some((a) => a.g || (a.graphs?.length ?? 0) > 0)) {
        throw new InputError(`${p}: node ${n.opType} '${n.name}' has a subgraph (not composable)`);
      }
      for (const o of n.output ?? []) if (o && !rename.has(o)) fresh(o);
    }
    for (const n of graph.node ?? []) {
      const node: NodeProto = {
        ...n,
        name: this.g.fresh(`${p}/${n.name || n.opType}`),
        input: (n.input ?? []).map((i) => {
          const r = rename.get(i);
          if (r === undefined) throw new InputError(`${p}: undefined value '${i}'`);
          return r;
        }),
        output: (n.output ?? []).map((o) => rename.get(o) ?? ""),
      };
      this.g.nodes.push(node);
    }
    const outs: Record<string, string> = {};
    for (const o of graph.output ?? []) outs[o.name ?? ""] = rename.get(o.name ?? "")!;
    return outs;
  }

  /** The merged ai.onnx opset (the highest), or an InputError when merging would be unsafe. */
  #opset(): number {
    const lo = Math.min(...this.#opsets), hi = Math.max(...this.#opsets);
    if (lo !== hi && hi > 17) {
      throw new InputError(
        `cannot compose models of opsets ${lo} and ${hi} (ops changed signature at 18); ` +
          `export them at one opset`,
      );
    }
    return hi;
  }

  /** Assemble the model (pruning nodes and initializers no output depends on). */
  build(): ComposedModel {
    const g = this.g;
    const needed = new Set<string>(g.outputs.map((o) => o.name ?? ""));
    const keep: NodeProto[] = [];
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      const n = g.nodes[i];
      if (!(n.output ?? []).some((o) => o && needed.has(o))) continue;
      keep.push(n);
      for (const x of n.input ?? []) if (x) needed.add(x);
    }
    keep.reverse();
    const initializer = g.initializers.filter((t) => needed.has(t.name ?? ""));
    // inputs nothing reads are dropped too (e.g. a measurement the operator fallback uses outside)
    const input = g.inputs.filter((i) => needed.has(i.name ?? ""));
    const dirs = new Map<string, string>();
    for (const [dir, key] of this.#dirKeys) dirs.set(key, dir);
    const model: IModelProto = {
      irVersion: this.#irVersion,
      producerName: "latent-inverse compose",
      opsetImport: [{ domain: "", version: this.#opset() }],
      graph: {
        name: g.name,
        node: keep,
        input,
        output: g.outputs,
        initializer,
      },
    };
    const externalData = initializer.some(isExternal);
    return {
      model,
      externalDirs: dirs,
      externalData,
      write: (path) => writeComposed(model, dirs, path),
    };
  }
}

/** Write a composed model, hard-linking each source folder's data files under their keys. */
export async function writeComposed(
  model: IModelProto,
  dirs: Map<string, string>,
  path: string,
): Promise<void> {
  const outDir = resolve(path, "..");
  for (const [key, dir] of dirs) {
    // writeModel links the files a model references; do it per source folder
    const sub: IModelProto = {
      graph: {
        initializer: (model.graph?.initializer ?? []).filter((t) =>
          isExternal(t) && externalInfo(t).location.startsWith(`${key}/`)
        ).map((t) => ({
          ...t,
          externalData: (t.externalData ?? []).map((e) =>
            e.key === "location" ? { key: "location", value: e.value!.slice(key.length + 1) } : e
          ),
        })),
      },
    };
    await linkExternalData(sub, dir, join(outDir, key));
  }
  // the data now lies under outDir: write the model there without further linking
  await writeModel(model, path, outDir);
}

/** A graph value wired to the declared dims of a port (for inputs created from a network). */
export function portValueInfo(name: string, port: PortInfo): ValueInfoProto {
  return valueInfo(name, elemName(port.elemType), port.dims);
}
