/**
 * The reverse-mode transform: ModelProto → ModelProto computing the outputs and the vector–Jacobian
 * products ∂⟨w, f(x)⟩/∂x for cotangents w.
 *
 * Steps: resolve concrete input dims → static shape inference (probe run as fallback) → activity
 * analysis → check that every active op has a rule (all problems reported at once) → reverse sweep
 * in reverse topological order, accumulating contributions per tensor with a tree of `Add` → emit the
 * gradient outputs. The forward nodes stay untouched (except that a rule may switch on an optional
 * output such as LayerNormalization's saved statistics), so the forward activations are computed
 * once and reused by the backward nodes.
 *
 * @module
 */
import { InputError } from "../../errors.ts";
import type { IModelProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from "../proto.ts";
import { Emitter } from "./emit.ts";
import {
  activity,
  attrsOf,
  defaultOpset,
  isFloatType,
  nodeLabel,
  num,
  topoSort,
  typeName,
  zeroGradReason,
} from "./graph.ts";
import { probeShapes } from "./probe.ts";
import { RULES } from "./rules/mod.ts";
import { findUnits, unitRules } from "./patterns.ts";
import { type RuleCtx, UnsupportedVariant } from "./rule.ts";
import { inferShapes, type InfoMap, tensorInfo } from "./shapes.ts";

/**
 * Suffix of the cotangent input of an output.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COTANGENT_SUFFIX } from "./transform.ts";
 * assert.equal("out_sample" + COTANGENT_SUFFIX, "out_sample.cotangent");
 * ```
 */
export const COTANGENT_SUFFIX = ".cotangent";
/**
 * Suffix of the gradient output of an input.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GRAD_SUFFIX } from "./transform.ts";
 * assert.equal("sample" + GRAD_SUFFIX, "sample.grad");
 * ```
 */
export const GRAD_SUFFIX = ".grad";

/** Options of the transform. */
export interface TransformOptions {
  /** Outputs to differentiate (graph outputs). */
  of: string[];
  /** Graph inputs (or initializers) to differentiate with respect to. */
  wrt: string[];
  /** Concrete dims per graph input (overrides the model's). */
  inputShapes?: Record<string, number[]>;
  /** Values of symbolic dims by name (e.g. `{ height: 64 }`); the leading axis defaults to 1. */
  dims?: Record<string, number>;
  /** "auto" (static, probe when needed), "static" (never run the model), "probe" (always probe). */
  shapes?: "auto" | "static" | "probe";
  /** Folder of the model's external data (needed to probe a model given as bytes). */
  baseDir?: string;
  /**
   * Turn the differentiated initializers into graph inputs (the stored values are dropped and must
   * be fed; ONNX Runtime ignores feeds for initializers that are also listed as inputs).
   */
  exposeInitializers?: boolean;
  /** Embedded copies of small external initializers (read for their values only). */
  constants?: Map<string, TensorProto>;
  /**
   * Accept `wrt` entries whose gradient is identically zero (integer inputs, inputs that do not
   * influence `of` through differentiable values) and emit zeros for them. Default false: such an
   * entry is an InputError naming why.
   */
  allowZeroGrad?: boolean;
}

/** Facts about one transform. */
export interface TransformStats {
  /** Forward node count. */
  forwardNodes: number;
  /** Emitted backward node count. */
  backwardNodes: number;
  /** Op types the backward graph uses. */
  backwardOps: string[];
  /** How shapes were obtained. */
  shapeSource: "static" | "probe";
  /** Active forward nodes (those differentiated). */
  activeNodes: number;
  /** `wrt` entries whose gradient is identically zero (written as zeros; see `allowZeroGrad`). */
  zeroGrad: string[];
  /** Multi-node patterns differentiated as units, by kind (e.g. `{ "vjp.Silu": 7 }`). */
  units: Record<string, number>;
  /** Wall time of the transform in ms. */
  ms: number;
}

/** One active node without a usable gradient rule. */
export interface UnsupportedNode {
  /** Op type (with domain when not ai.onnx). */
  op: string;
  /** Node label. */
  node: string;
  /** Why. */
  reason: string;
}

/**
 * Raised when active nodes have no gradient rule; lists all of them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "../../errors.ts";
 * import { VjpUnsupportedError } from "./transform.ts";
 * const e = new VjpUnsupportedError([{ op: "TopK", node: "/topk", reason: "" }]);
 * assert.ok(e instanceof InputError);
 * assert.match(e.message, /TopK/);
 * ```
 */
export class VjpUnsupportedError extends InputError {
  /** The offending nodes. */
  readonly nodes: UnsupportedNode[];
  /**
   * Make the error; the message lists every offending op and node (the first 20 nodes).
   *
   * @param nodes the offending nodes
   */
  constructor(nodes: UnsupportedNode[]) {
    const ops = [...new Set(nodes.map((n) => n.op))];
    const list = nodes.slice(0, 20).map((n) => `${n.node}${n.reason ? ` (${n.reason})` : ""}`);
    super(
      `cannot differentiate op${ops.length > 1 ? "s" : ""} ${ops.join(", ")}: ` +
        list.join("; ") + (nodes.length > 20 ? `; and ${nodes.length - 20} more` : ""),
    );
    this.name = "VjpUnsupportedError";
    this.nodes = nodes;
  }
}

/** Concrete dims of graph inputs, or an InputError naming the unresolved ones. */
function resolveInputs(inputs: ValueInfoProto[], opts: TransformOptions): InfoMap {
  const info: InfoMap = new Map();
  const unresolved: string[] = [];
  for (const vi of inputs) {
    const name = vi.name ?? "";
    const tt = vi.type?.tensorType;
    if (!tt) throw new InputError(`input '${name}': only tensor inputs are supported`);
    const dtype = tt.elemType ?? 1;
    const given = opts.inputShapes?.[name];
    if (given) {
      info.set(name, { dtype, dims: [...given] });
      continue;
    }
    if (!tt.shape) {
      unresolved.push(`${name} (no shape)`);
      continue;
    }
    // a symbolic dim defaults to 1 when it is the leading (batch) axis or named like a batch
    const dims = (tt.shape.dim ?? []).map((d, axis) => {
      if (d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue) > 0) {
        return num(d.dimValue);
      }
      const p = d.dimParam ?? "";
      if (p && opts.dims?.[p] !== undefined) return opts.dims[p];
      if (axis === 0 || /batch/i.test(p)) return 1;
      return -1;
    });
    if (dims.some((d) => d < 0)) {
      const names = (tt.shape.dim ?? []).filter((_, i) => dims[i] < 0).map((d) =>
        d.dimParam || "?"
      );
      unresolved.push(`${name} [${names.join(", ")}]`);
      continue;
    }
    info.set(name, { dtype, dims });
  }
  if (unresolved.length) {
    throw new InputError(
      `symbolic input dims need values: ${unresolved.join("; ")} ` +
        `(give inputShapes or dims, e.g. --shape sample=1,4,64,64 or --dim height=64)`,
    );
  }
  return info;
}

function concreteInfo(name: string, dtype: number, dims: number[]): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: dtype, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  };
}

/** Result of {@link transform}. */
export interface TransformResult {
  /** The new model. */
  model: IModelProto;
  /** Facts about the transform. */
  stats: TransformStats;
  /** Concrete info of every tensor (for callers that need shapes). */
  info: InfoMap;
}

/** What the stages of {@link transform} share about the forward graph. */
interface Forward {
  model: ModelProto;
  graph: NonNullable<ModelProto["graph"]>;
  opset: number;
  opts: TransformOptions;
  inits: Map<string, TensorProto>;
  realInputs: ValueInfoProto[];
  nodes: NodeProto[];
  info: InfoMap;
  outNames: Set<string>;
}

/** The forward graph: opset, initializers, inputs with concrete dims, nodes in order. */
function readForward(model: ModelProto, opts: TransformOptions): Forward {
  const graph = model.graph;
  if (!graph) throw new InputError("model has no graph");
  const opset = defaultOpset(model.opsetImport);
  if (opset < 13) {
    throw new InputError(`model opset ${opset}: the VJP transform needs ai.onnx opset ≥ 13`);
  }
  if (opts.of.length === 0) throw new InputError("vjp: name at least one output (--of)");
  if (opts.wrt.length === 0) throw new InputError("vjp: name at least one input (--wrt)");
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) inits.set(t.name ?? "", t);
  const realInputs = (graph.input ?? []).filter((i) => !inits.has(i.name ?? ""));
  const info = resolveInputs(realInputs, opts);
  for (const [n, t] of inits) {
    if (!info.has(n)) info.set(n, tensorInfo(opts.constants?.get(n) ?? t));
  }
  const nodes = topoSort(graph.node ?? [], [...info.keys()]);
  const outNames = new Set((graph.output ?? []).map((o) => o.name ?? ""));
  return { model, graph, opset, opts, inits, realInputs, nodes, info, outNames };
}

/** Concrete shapes of every tensor: static inference, else one probing run. */
async function resolveShapes(f: Forward): Promise<"static" | "probe"> {
  const { model, opts, nodes, opset, info } = f;
  let shapeSource: "static" | "probe" = "static";
  const allOutputs = nodes.flatMap((n) => (n.output ?? []).filter((o) => o));
  if (opts.shapes !== "probe") {
    const { info: inferred, failures } = inferShapes(nodes, opset, info);
    for (const [k, v] of inferred) info.set(k, v);
    if (failures.length && opts.shapes === "static") {
      throw new InputError(
        `static shape inference failed at ${
          failures.slice(0, 5).map((x) => `${x.node}: ${x.reason}`).join("; ")
        } (allow probing with shapes: "auto")`,
      );
    }
  }
  const unknown = new Set(allOutputs.filter((o) => !info.has(o)));
  if (unknown.size) {
    shapeSource = "probe";
    await probeShapes(model, opts.baseDir, nodes, info, unknown);
    // values recovered by the probe may unlock more static facts; recompute quietly
    const again = inferShapes(nodes, opset, info);
    for (const [k, v] of again.info) if (!info.has(k)) info.set(k, v);
  }

  return shapeSource;
}

/** `of` must be float graph outputs, `wrt` float inputs or initializers (or zeros allowed). */
function checkTargets(f: Forward): void {
  const { opts, info, realInputs, inits, outNames } = f;
  for (const o of opts.of) {
    if (!outNames.has(o)) {
      throw new InputError(
        `--of '${o}' is not a graph output (outputs: ${[...outNames].join(", ")}); ` +
          `expose an intermediate tensor first`,
      );
    }
    if (!isFloatType(info.get(o)?.dtype)) {
      throw new InputError(`--of '${o}' is not floating point`);
    }
  }
  const inputNames = new Set(realInputs.map((i) => i.name ?? ""));
  for (const w of opts.wrt) {
    if (!inputNames.has(w) && !inits.has(w)) {
      throw new InputError(
        `--wrt '${w}' is not a graph input or initializer (inputs: ${[...inputNames].join(", ")})`,
      );
    }
    const dt = info.get(w)?.dtype;
    if (!isFloatType(dt) && !opts.allowZeroGrad) {
      throw new InputError(
        `--wrt '${w}' is ${typeName(dt ?? 0)}, not floating point: it has no gradient ` +
          `(--allow-zero-grad writes zeros for it)`,
      );
    }
  }
  if (new Set(opts.wrt).size !== opts.wrt.length) throw new InputError("--wrt lists a name twice");
  if (new Set(opts.of).size !== opts.of.length) throw new InputError("--of lists a name twice");
}

/** Activity, fused units, and the rule coverage of every active node. */
function analyse(f: Forward) {
  const { opts, info, nodes, outNames } = f;
  // integer entries (accepted only with allowZeroGrad) get zeros, never a path through a Cast
  const floatWrt = opts.wrt.filter((w) => isFloatType(info.get(w)?.dtype));
  const act = activity(nodes, floatWrt, opts.of, (n) => info.get(n)?.dtype);
  const zeroGrad = opts.wrt.filter((w) => !act.active.has(w));
  if (zeroGrad.length && !opts.allowZeroGrad) {
    const w = zeroGrad[0];
    const why = isFloatType(info.get(w)?.dtype)
      ? zeroGradReason(nodes, w, opts.of, (n) => info.get(n)?.dtype)
      : `is ${typeName(info.get(w)?.dtype ?? 0)}`;
    throw new InputError(
      `--wrt '${w}' ${why}: its gradient would be all zeros (--allow-zero-grad writes it anyway)`,
    );
  }
  const keep = new Set<string>([...opts.of, ...opts.wrt, ...outNames]);
  const units = findUnits(
    nodes,
    (n) => info.get(n)?.value,
    keep,
    (n) => info.get(n)?.dims.length,
    (n) => act.active.has(n),
    (n) => info.get(n)?.dims,
  );
  const interior = new Set([...units.values()].flatMap((u) => u.interior));
  const unsupported: UnsupportedNode[] = [];
  for (const k of act.activeNodes) {
    if (interior.has(k) || units.has(k)) continue;
    const n = nodes[k];
    const dom = n.domain ?? "";
    const op = n.opType ?? "";
    if ((dom && dom !== "ai.onnx") || !RULES[op]) {
      unsupported.push({
        op: dom && dom !== "ai.onnx" ? `${dom}:${op}` : op,
        node: nodeLabel(n, k),
        reason: "",
      });
    }
  }
  if (unsupported.length) throw new VjpUnsupportedError(unsupported);

  return { act, zeroGrad, units, interior };
}

/** The reverse sweep: cotangent inputs, every active node's rule, the gradient outputs. */
function emitBackward(f: Forward, a: ReturnType<typeof analyse>, allOutputs: string[]) {
  const { opts, info, nodes, opset } = f;
  const { act, units, interior } = a;
  const used = new Set<string>([...info.keys(), ...allOutputs]);
  for (const n of nodes) if (n.name) used.add(n.name);
  const e = new Emitter(used, opset);
  const contrib = new Map<string, string[]>();
  const gradOf = (t: string): string | undefined => {
    const cs = contrib.get(t);
    if (!cs || cs.length === 0) return undefined;
    if (cs.length === 1) return cs[0];
    const s = e.sum(cs);
    contrib.set(t, [s]);
    return s;
  };
  const cotangents: ValueInfoProto[] = [];
  for (const o of opts.of) {
    const name = e.reserve(o + COTANGENT_SUFFIX);
    const oi = info.get(o)!;
    cotangents.push(concreteInfo(name, oi.dtype, oi.dims));
    if (act.active.has(o)) contrib.set(o, [name]);
  }
  const gradNames = opts.wrt.map((w) => e.reserve(w + GRAD_SUFFIX));

  const failures: UnsupportedNode[] = [];
  for (let j = act.activeNodes.length - 1; j >= 0; j--) {
    const k = act.activeNodes[j];
    if (interior.has(k)) continue;
    const unit = units.get(k);
    const node = unit ? unit.node : nodes[k];
    const outs = node.output ?? [];
    const gys = outs.map((o) => (o && act.active.has(o) ? gradOf(o) : undefined));
    if (gys.every((g) => g === undefined)) continue;
    const ctx = makeCtx(node, e, opset, info, act.active, gys, contrib);
    try {
      (unit ? unitRules : RULES)[node.opType ?? ""](ctx);
    } catch (err) {
      if (err instanceof UnsupportedVariant) {
        failures.push({ op: node.opType ?? "", node: nodeLabel(node, k), reason: err.message });
      } else {
        throw new Error(`vjp rule for ${nodeLabel(node, k)} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
  }
  if (failures.length) throw new VjpUnsupportedError(failures);

  opts.wrt.forEach((w, i) => {
    const wi = info.get(w)!;
    const g = gradOf(w) ?? e.zeros(wi.dims, wi.dtype);
    e.opN("Identity", [g], [gradNames[i]]);
  });

  return { e, cotangents, gradNames };
}

/** The VJP model: the forward graph, the backward nodes, the new inputs and outputs. */
function assembleModel(f: Forward, b: ReturnType<typeof emitBackward>): IModelProto {
  const { model, graph, opts, info, realInputs, inits, nodes } = f;
  const { e, cotangents, gradNames } = b;
  const newInputs: ValueInfoProto[] = realInputs.map((vi) => {
    const ii = info.get(vi.name ?? "")!;
    return concreteInfo(vi.name ?? "", ii.dtype, ii.dims);
  });
  if (opts.exposeInitializers) {
    for (const w of opts.wrt) {
      if (inits.has(w)) newInputs.push(concreteInfo(w, info.get(w)!.dtype, info.get(w)!.dims));
    }
  }
  const newOutputs: ValueInfoProto[] = [
    ...(graph.output ?? []).map((o) => {
      const oi = info.get(o.name ?? "");
      return oi ? concreteInfo(o.name ?? "", oi.dtype, oi.dims) : o;
    }),
    ...opts.wrt.map((w, i) => concreteInfo(gradNames[i], info.get(w)!.dtype, info.get(w)!.dims)),
  ];
  const out: IModelProto = {
    irVersion: model.irVersion,
    producerName: "latent-inverse vjp",
    producerVersion: "1",
    opsetImport: model.opsetImport,
    metadataProps: model.metadataProps,
    graph: {
      name: `${graph.name ?? "graph"}_vjp`,
      node: [...nodes, ...e.nodes],
      input: [...newInputs, ...cotangents],
      output: newOutputs,
      initializer: [
        ...(graph.initializer ?? []).filter((t) =>
          !(opts.exposeInitializers && opts.wrt.includes(t.name ?? ""))
        ),
        ...e.initializers,
      ],
      valueInfo: [],
      sparseInitializer: graph.sparseInitializer,
    },
  };
  return out;
}

/**
 * Build the VJP model.
 *
 * @param model a decoded model (it is modified: callers pass a fresh decode)
 * @param opts what to differentiate
 */
export async function transform(
  model: ModelProto,
  opts: TransformOptions,
): Promise<TransformResult> {
  const t0 = performance.now();
  const f = readForward(model, opts);
  const allOutputs = f.nodes.flatMap((n) => (n.output ?? []).filter((o) => o));
  const shapeSource = await resolveShapes(f);
  checkTargets(f);
  const a = analyse(f);
  const b = emitBackward(f, a, allOutputs);
  const out = assembleModel(f, b);
  const { info, nodes } = f;
  const { act, zeroGrad, units } = a;
  const e = b.e;
  return {
    model: out,
    info,
    stats: {
      forwardNodes: nodes.length,
      backwardNodes: e.nodes.length,
      backwardOps: [...new Set(e.nodes.map((n) => n.opType ?? ""))].sort(),
      shapeSource,
      activeNodes: act.activeNodes.length,
      zeroGrad,
      units: [...units.values()].reduce((acc, u) => {
        acc[u.node.opType ?? ""] = (acc[u.node.opType ?? ""] ?? 0) + 1;
        return acc;
      }, {} as Record<string, number>),
      ms: performance.now() - t0,
    },
  };
}

function makeCtx(
  node: NodeProto,
  e: Emitter,
  opset: number,
  info: InfoMap,
  active: Set<string>,
  gys: (string | undefined)[],
  contrib: Map<string, string[]>,
): RuleCtx {
  const ins = node.input ?? [];
  const outs = node.output ?? [];
  const get = (n: string) => {
    const i = info.get(n);
    if (!i) throw new UnsupportedVariant(`no shape known for '${n}'`);
    return i;
  };
  return {
    node,
    a: attrsOf(node),
    e,
    opset,
    x: (i) => ins[i] ?? "",
    y: (i) => outs[i] ?? "",
    dims: (n) => get(n).dims,
    dtype: (n) => get(n).dtype,
    value: (n) => info.get(n)?.value,
    needs: (i) => !!ins[i] && active.has(ins[i]),
    gy: (i = 0) => gys[i],
    add: (i, g) => {
      const t = ins[i];
      if (!t || !active.has(t)) return;
      const l = contrib.get(t);
      if (l) l.push(g);
      else contrib.set(t, [g]);
    },
    forwardOutput: (k, dims, dtype) => {
      const o = node.output ?? (node.output = []);
      while (o.length <= k) o.push("");
      if (!o[k]) {
        o[k] = e.fresh(`${node.opType}_out${k}`);
        info.set(o[k], { dtype, dims });
      }
      return o[k];
    },
    fail: (reason) => {
      throw new UnsupportedVariant(reason);
    },
  };
}
