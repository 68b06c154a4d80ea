/**
 * The two-phase split of a VJP model: a forward model that computes the outputs and also returns
 * every forward activation the backward nodes read, and a backward model that takes those
 * activations, the cotangents (and the original inputs it reads) and returns the gradients.
 *
 * For chains whose cotangent needs work outside the graph after the forward (LATINO-PRO: the
 * cotangent at ẑ0 depends on z' = encode(prox(decode(ẑ0)))), this computes each network's forward
 * once: phase 1, outside work, phase 2 — instead of a forward run and then a VJP run that repeats
 * the forward. The price is holding the activations between the phases (host memory, and a
 * device↔host round trip for them on a GPU); `core/loss/differentiable.ts` offers both and the
 * solver chooses.
 *
 * The split is exact: the VJP model's node list is [forward nodes…, backward nodes…] (the transform
 * never changes that order), so phase 1 is the first part and phase 2 the rest, and the two phases
 * run the very same nodes as the one-phase VJP model.
 *
 * @module
 */
import type { IModelProto, NodeProto, TensorProto, ValueInfoProto } from "./proto.ts";
import { valueInfo } from "./builder.ts";
import { elemName } from "./compose.ts";
import type { VjpGraph } from "./vjp.ts";

/** The two phases of a VJP model. */
export interface TwoPhaseModels {
  /** Forward: original inputs → original outputs + saved activations. */
  forward: IModelProto;
  /** Backward: saved activations + original inputs it reads + cotangents → gradients. */
  backward: IModelProto;
  /** Names of the saved activations (outputs of phase 1, inputs of phase 2). */
  saved: string[];
  /** Original inputs phase 2 reads besides the saved activations and cotangents. */
  backwardInputs: string[];
  /** Number of values (elements) held between the phases. */
  savedElements: number;
}

function usedInitializers(nodes: NodeProto[], inits: TensorProto[]): TensorProto[] {
  const used = new Set<string>();
  for (const n of nodes) for (const x of n.input ?? []) used.add(x);
  return inits.filter((t) => used.has(t.name ?? ""));
}

/**
 * Split a VJP model (from {@link vjpTransform} with `of` outputs and `wrt` inputs) into its two
 * phases.
 *
 * @param g the VJP graph
 * @param of the differentiated outputs
 * @param wrt the inputs differentiated with respect to
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { vjpTransform } from "./vjp.ts";
 * import { splitTwoPhase } from "./two_phase.ts";
 * const b = new GraphBuilder("sq"); // y = sin(x)·x
 * const x = b.input("x", "float32", [3]);
 * b.output(b.op("Mul", [b.op("Sin", [x]), x]), "y", "float32", [3]);
 * const g = await vjpTransform(b.toBytes(), ["y"], ["x"]);
 * const tp = splitTwoPhase(g, ["y"], ["x"]);
 * assert.ok(tp.saved.length >= 1); // sin(x) is computed once and handed to the backward
 * assert.deepEqual(tp.backward.graph?.output?.map((o) => o.name), ["x.grad"]);
 * ```
 */
export function splitTwoPhase(g: VjpGraph, of: string[], wrt: string[]): TwoPhaseModels {
  const graph = g.model.graph!;
  const nodes = graph.node ?? [];
  const nF = g.stats.forwardNodes;
  const fwd = nodes.slice(0, nF), bwd = nodes.slice(nF);
  const inits = graph.initializer ?? [];
  const initNames = new Set(inits.map((t) => t.name ?? ""));
  const cotangents = new Set(of.map((o) => g.cotangentName(o)));
  const inputs = (graph.input ?? []) as ValueInfoProto[];
  const origInputs = inputs.filter((i) => !cotangents.has(i.name ?? ""));
  const origNames = new Set(origInputs.map((i) => i.name ?? ""));
  const produced = new Set<string>();
  for (const n of fwd) for (const o of n.output ?? []) if (o) produced.add(o);
  const saved: string[] = [], backwardInputs: string[] = [];
  const seen = new Set<string>();
  for (const n of bwd) {
    for (const x of n.input ?? []) {
      if (!x || seen.has(x) || initNames.has(x)) continue;
      seen.add(x);
      if (produced.has(x)) saved.push(x);
      else if (origNames.has(x)) backwardInputs.push(x);
    }
  }
  const gradNames = new Set(wrt.map((w) => g.gradName(w)));
  const outputs = (graph.output ?? []) as ValueInfoProto[];
  const fwdOutputs = outputs.filter((o) => !gradNames.has(o.name ?? ""));
  const fwdOutNames = new Set(fwdOutputs.map((o) => o.name ?? ""));
  const info = (name: string): ValueInfoProto => {
    const i = g.tensorInfo(name);
    if (!i) throw new Error(`two-phase split: no shape known for '${name}'`);
    return valueInfo(name, elemName(i.dtype), i.dims);
  };
  let savedElements = 0;
  for (const s of saved) savedElements += g.tensorInfo(s)!.dims.reduce((a, b) => a * b, 1);
  const base = { irVersion: g.model.irVersion, opsetImport: g.model.opsetImport };
  const forward: IModelProto = {
    ...base,
    producerName: "latent-inverse vjp (phase 1)",
    graph: {
      name: `${graph.name}_phase1`,
      node: fwd,
      input: origInputs,
      output: [...fwdOutputs, ...saved.filter((s) => !fwdOutNames.has(s)).map(info)],
      initializer: usedInitializers(fwd, inits),
    },
  };
  const backward: IModelProto = {
    ...base,
    producerName: "latent-inverse vjp (phase 2)",
    graph: {
      name: `${graph.name}_phase2`,
      node: bwd,
      input: [
        ...saved.map(info),
        ...origInputs.filter((i) => backwardInputs.includes(i.name ?? "")),
        ...inputs.filter((i) => cotangents.has(i.name ?? "")),
      ],
      output: outputs.filter((o) => gradNames.has(o.name ?? "")),
      initializer: usedInitializers(bwd, inits),
    },
  };
  return { forward, backward, saved, backwardInputs, savedElements };
}
