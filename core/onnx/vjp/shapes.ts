/**
 * Static shape, element-type and small-value inference over concrete dimensions.
 *
 * The gradient rules need the concrete shape of every active tensor (to un-broadcast, to rebuild
 * Reshape targets, to size ConvTranspose outputs). Graph inputs get concrete dims (symbolic dims
 * resolved by the caller), then every node is evaluated in order: its output dims and element type,
 * and — for small tensors whose inputs are all known (integer shape plumbing such as
 * Shape → Gather → Concat → Reshape, or the `1/√d` scale of an attention export) — its values.
 * Values are what lets a Reshape whose target shape is computed inside the graph get a concrete
 * output shape.
 *
 * The rules live one module per op family in `shapes/`, beside the gradient rules in `rules/`.
 * Nodes this module cannot infer are reported; the caller then falls back to one probing run of
 * the model in ONNX Runtime (see probe.ts).
 *
 * @module
 */
import type { NodeProto } from "../proto.ts";
import { attrsOf, isFloatType, nodeLabel, numel } from "./graph.ts";
import { SHAPE_RULES } from "./shapes/mod.ts";
import { InferenceGap, type InfoMap, MAX_VALUE_ELEMS, type ShapeCtx } from "./shapes/util.ts";

export {
  axesOf,
  InferenceGap,
  type InfoMap,
  MAX_VALUE_ELEMS,
  type ShapeCtx,
  type ShapeRule,
  type TensorInfo,
  tensorInfo,
} from "./shapes/util.ts";
export { SHAPE_RULES } from "./shapes/mod.ts";

/** A node that static inference could not handle. */
export interface InferenceFailure {
  /** Node label. */
  node: string;
  /** Why. */
  reason: string;
}

/**
 * Infer dims, types and small values of every tensor, in node order.
 *
 * @param nodes nodes in topological order
 * @param opset ai.onnx opset
 * @param seed known tensors (graph inputs with concrete dims, initializers)
 * @returns the info map (seed entries included) and the nodes that could not be inferred
 */
export function inferShapes(
  nodes: NodeProto[],
  opset: number,
  seed: InfoMap,
): { info: InfoMap; failures: InferenceFailure[] } {
  const info: InfoMap = new Map(seed);
  const failures: InferenceFailure[] = [];
  nodes.forEach((node, k) => {
    const outs = node.output ?? [];
    if (outs.every((o) => !o || info.has(o))) return;
    const c: ShapeCtx = {
      node,
      a: attrsOf(node),
      ins: (node.input ?? []).map((i) => (i ? info.get(i) : undefined)),
      opset,
    };
    try {
      const rule = SHAPE_RULES[node.opType ?? ""];
      if (!rule) throw new InferenceGap(`no shape rule for ${node.opType ?? ""}`);
      const res = rule(c);
      outs.forEach((o, i) => {
        if (o && res[i]) {
          const r = res[i];
          if (r.value && (numel(r.dims) > MAX_VALUE_ELEMS || r.value.length !== numel(r.dims))) {
            r.value = undefined;
          }
          if (r.value && isFloatType(r.dtype) && r.dtype === 1) r.value = r.value.map(Math.fround);
          info.set(o, r);
        }
      });
    } catch (e) {
      failures.push({ node: nodeLabel(node, k), reason: (e as Error).message });
    }
  });
  return { info, failures };
}
