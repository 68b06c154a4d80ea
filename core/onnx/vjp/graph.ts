/**
 * Graph analysis for the reverse-mode transform: decoded attributes, constant tensors (initializers
 * and `Constant` nodes), a topological node order, the element-type helpers, and the activity
 * analysis that decides which tensors carry a gradient.
 *
 * A tensor is *active* when (1) it has a floating-point element type, (2) it depends on one of the
 * tensors we differentiate with respect to, through ops that have a non-zero derivative, and (3) one
 * of the differentiated outputs depends on it. Integer shape sub-graphs (Shape → Gather → Concat …)
 * fail (1) and are therefore never differentiated.
 *
 * @module
 */
import { type GraphProto, type NodeProto, onnx, type TensorProto } from "../proto.ts";

/** A 64-bit integer as protobufjs decodes it (a number or a `Long`). */
type LongLike = number | { toNumber(): number };

/** A protobufjs int64 (number or Long) as a JS number. */
export function num(v: LongLike | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === "number" ? v : v.toNumber();
}

import { isFloatType, typeName } from "../dtype.ts";
export { FLOAT_TYPES, INT_TYPES, isFloatType, typeName } from "../dtype.ts";

/** A decoded attribute value. */
export type Attr =
  | number
  | number[]
  | string
  | string[]
  | TensorProto
  | GraphProto
  | GraphProto[];

/** Decoded attributes of a node, by name. */
export type Attrs = Record<string, Attr>;

const AT = onnx.AttributeProto.AttributeType;

/** Decode a node's attributes to plain JS values (ints as numbers, strings as UTF-8). */
export function attrsOf(node: NodeProto): Attrs {
  const out: Attrs = {};
  const dec = new TextDecoder();
  for (const a of node.attribute ?? []) {
    const name = a.name ?? "";
    switch (a.type) {
      case AT.INT:
        out[name] = num(a.i as LongLike);
        break;
      case AT.INTS:
        out[name] = (a.ints ?? []).map((v) => num(v as LongLike));
        break;
      case AT.FLOAT:
        out[name] = a.f ?? 0;
        break;
      case AT.FLOATS:
        out[name] = Array.from(a.floats ?? []);
        break;
      case AT.STRING:
        out[name] = dec.decode(a.s ?? new Uint8Array());
        break;
      case AT.STRINGS:
        out[name] = (a.strings ?? []).map((s) => dec.decode(s));
        break;
      case AT.TENSOR:
        out[name] = a.t as TensorProto;
        break;
      case AT.GRAPH:
        out[name] = a.g as GraphProto;
        break;
      case AT.GRAPHS:
        out[name] = (a.graphs ?? []) as GraphProto[];
        break;
      default:
        break;
    }
  }
  return out;
}

/** Integer attribute with a default. */
export function intAttr(a: Attrs, name: string, dflt: number): number {
  const v = a[name];
  return typeof v === "number" ? v : dflt;
}

/** Float attribute with a default. */
export function floatAttr(a: Attrs, name: string, dflt: number): number {
  const v = a[name];
  return typeof v === "number" ? v : dflt;
}

/** Integer-list attribute (undefined when absent). */
export function intsAttr(a: Attrs, name: string): number[] | undefined {
  const v = a[name];
  return Array.isArray(v) && (v.length === 0 || typeof v[0] === "number")
    ? (v as number[])
    : undefined;
}

/** String attribute with a default. */
export function strAttr(a: Attrs, name: string, dflt: string): string {
  const v = a[name];
  return typeof v === "string" ? v : dflt;
}

/** A node's display name for messages: `Conv 'down.0.conv'` or `Conv #12`. */
export function nodeLabel(node: NodeProto, index: number): string {
  return node.name ? `${node.opType} '${node.name}'` : `${node.opType} #${index}`;
}

/** The ai.onnx opset version a model imports. */
export function defaultOpset(
  imports: { domain?: string | null; version?: LongLike | null }[] | null | undefined,
): number {
  const d = (imports ?? []).find((i) => !i.domain || i.domain === "ai.onnx");
  return d ? num(d.version as LongLike) : 0;
}

/**
 * Order nodes topologically (ONNX requires it, but some tools write graphs out of order). Throws on
 * a cycle. Stable: a graph already in order is returned as is.
 */
export function topoSort(nodes: NodeProto[], available: Iterable<string>): NodeProto[] {
  const have = new Set<string>(available);
  have.add("");
  let inOrder = true;
  for (const n of nodes) {
    if (!(n.input ?? []).every((i) => have.has(i))) {
      inOrder = false;
      break;
    }
    for (const o of n.output ?? []) have.add(o);
  }
  if (inOrder) return nodes;
  const ready = new Set<string>(available);
  ready.add("");
  const pending = [...nodes];
  const out: NodeProto[] = [];
  while (pending.length) {
    const before = pending.length;
    for (let i = 0; i < pending.length;) {
      const n = pending[i];
      if ((n.input ?? []).every((x) => ready.has(x))) {
        out.push(n);
        for (const o of n.output ?? []) ready.add(o);
        pending.splice(i, 1);
      } else i++;
    }
    if (pending.length === before) {
      const missing = (pending[0].input ?? []).filter((x) => !ready.has(x));
      throw new Error(
        `graph has a cycle or undefined inputs: node ${pending[0].opType} needs ${
          missing.join(", ")
        }`,
      );
    }
  }
  return out;
}

/**
 * Ops whose derivative is zero almost everywhere (comparisons, rounding, sampling, shape queries)
 * or that produce no floating-point data: their outputs are never active even when an input is.
 * Ops with a non-zero derivative and no rule are not listed here: they are reported as
 * unsupported instead of silently getting a zero gradient.
 */
export const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  "Shape",
  "Size",
  "Equal",
  "Greater",
  "GreaterOrEqual",
  "Less",
  "LessOrEqual",
  "Not",
  "And",
  "Or",
  "Xor",
  "ArgMax",
  "ArgMin",
  "ConstantOfShape",
  "Range",
  "NonZero",
  "Floor",
  "Ceil",
  "Round",
  "Sign",
  "IsNaN",
  "IsInf",
  "RandomNormal",
  "RandomNormalLike",
  "RandomUniform",
  "RandomUniformLike",
  "Multinomial",
  "Bernoulli",
  "EyeLike",
  "Constant",
  "OneHot",
  "BitShift",
]);

/**
 * Inputs of an op that never carry a gradient even when floating point (index list). For example
 * the `roi`/`scales` of Resize, the running statistics of BatchNormalization, or a Where condition.
 */
export const NON_DIFF_INPUTS: Readonly<Record<string, readonly number[]>> = {
  Resize: [1, 2, 3],
  Upsample: [1],
  Pad: [1, 2, 3],
  Slice: [1, 2, 3, 4],
  Reshape: [1],
  Expand: [1],
  Tile: [1],
  Split: [1],
  Squeeze: [1],
  Unsqueeze: [1],
  ReduceSum: [1],
  ReduceMean: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  ReduceSumSquare: [1],
  ReduceL2: [1],
  ReduceLogSumExp: [1],
  Gather: [1],
  GatherElements: [1],
  GatherND: [1],
  Where: [0],
  Dropout: [1, 2],
  CumSum: [1],
  Trilu: [1],
  TopK: [1],
  Clip: [1, 2],
  BatchNormalization: [3, 4],
  ScatterND: [1],
  ScatterElements: [1],
};

/** Result of the activity analysis. */
export interface Activity {
  /** Active tensor names. */
  active: Set<string>;
  /** Indices (into the ordered node list) of nodes with at least one active input and output. */
  activeNodes: number[];
}

/**
 * Activity analysis: forward from `wrt` through differentiable edges, backward from `of`.
 *
 * @param nodes nodes in topological order
 * @param wrt tensors to differentiate with respect to
 * @param of outputs to differentiate
 * @param dtypeOf element type of a tensor (undefined when unknown)
 */
export function activity(
  nodes: NodeProto[],
  wrt: string[],
  of: string[],
  dtypeOf: (name: string) => number | undefined,
): Activity {
  const fwd = new Set<string>(wrt);
  for (const n of nodes) {
    if (NON_DIFFERENTIABLE.has(n.opType ?? "")) continue;
    const skip = NON_DIFF_INPUTS[n.opType ?? ""] ?? [];
    const ins = n.input ?? [];
    if (!ins.some((x, i) => x && fwd.has(x) && !skip.includes(i))) continue;
    for (const o of n.output ?? []) if (o && isFloatType(dtypeOf(o))) fwd.add(o);
  }
  const bwd = new Set<string>(of.filter((o) => fwd.has(o)));
  const activeNodes: number[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    if (!(n.output ?? []).some((o) => o && bwd.has(o))) continue;
    if (NON_DIFFERENTIABLE.has(n.opType ?? "")) continue;
    const skip = NON_DIFF_INPUTS[n.opType ?? ""] ?? [];
    let any = false;
    (n.input ?? []).forEach((x, i) => {
      if (x && fwd.has(x) && !skip.includes(i)) {
        bwd.add(x);
        any = true;
      }
    });
    if (any) activeNodes.push(k);
  }
  activeNodes.reverse();
  const active = new Set<string>([...bwd].filter((t) => fwd.has(t)));
  return { active, activeNodes };
}

/** The element count of a shape. */
export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Normalise a possibly negative axis for rank `r`. */
export function normAxis(axis: number, r: number): number {
  const a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) throw new RangeError(`axis ${axis} out of range for rank ${r}`);
  return a;
}

/**
 * Why `w` gets no gradient from `of` (it is not active): it does not reach them at all, or every
 * path passes a node that carries no derivative (named, with why). For error messages.
 *
 * @param nodes nodes in topological order
 * @param w the input without a gradient
 * @param of outputs differentiated
 * @param dtypeOf element type of a tensor (undefined when unknown)
 */
export function zeroGradReason(
  nodes: NodeProto[],
  w: string,
  of: string[],
  dtypeOf: (name: string) => number | undefined,
): string {
  const reach = new Set<string>([w]);
  let blocker: string | undefined;
  for (const n of nodes) {
    const ins = n.input ?? [];
    const hit = ins.map((x, i) => (x && reach.has(x) ? i : -1)).filter((i) => i >= 0);
    if (!hit.length) continue;
    for (const o of n.output ?? []) if (o) reach.add(o);
    if (blocker) continue;
    const op = n.opType ?? "";
    const name = n.name ? `'${n.name}' (${op})` : op;
    const skip = NON_DIFF_INPUTS[op] ?? [];
    const floatOut = (n.output ?? []).filter((o) => o).some((o) => isFloatType(dtypeOf(o)));
    if (NON_DIFFERENTIABLE.has(op)) blocker = `node ${name} has no derivative`;
    else if (hit.every((i) => skip.includes(i))) {
      blocker = `it enters node ${name} only as input ${hit[0]}, which carries no gradient`;
    } else if (!floatOut) {
      const t = dtypeOf((n.output ?? [])[0] ?? "");
      blocker = `node ${name} turns it into ${t === undefined ? "non-float" : typeName(t)} values`;
    }
  }
  const target = of.join(", ");
  if (!of.some((o) => reach.has(o))) return `does not reach ${target}`;
  return `reaches ${target} only through values without a gradient (${blocker ?? "no path"})`;
}
