/**
 * Graph surgery used with the VJP transform:
 *
 * - {@link cutAtEmbedding}: cut a text encoder at its token-embedding lookup so the prompt
 *   embeddings become a graph input (prompt tuning differentiates with respect to them);
 * - {@link exposeIntermediate}: make an intermediate tensor a graph output (e.g. to read the token
 *   embeddings of a prompt from the uncut encoder, or to differentiate a UNet feature map).
 *
 * Both return a new model object sharing the untouched parts (initializers with external data stay
 * external); write it with `writeModel` from external.ts.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import type { IModelProto, NodeProto, ValueInfoProto } from "./proto.ts";
import { attrsOf, defaultOpset, intAttr, num, topoSort } from "./vjp/graph.ts";
import { inferShapes, type InfoMap, tensorInfo } from "./vjp/shapes.ts";

/** Result of {@link cutAtEmbedding}. */
export interface CutResult {
  /** The cut model. */
  model: IModelProto;
  /** Name of the new embeddings input ([B, T, D], the table's element type). */
  inputName: string;
  /** The token-id input the lookup read. */
  idsInput: string;
  /** Whether the token ids are still an input (e.g. CLIP's pooler reads the EOS position). */
  idsStillUsed: boolean;
  /** The embedding table initializer. */
  table: string;
  /** The tensor the lookup produced in the original graph (expose it to get embeddings). */
  lookupOutput: string;
}

/** Options of {@link cutAtEmbedding}. */
export interface CutOptions {
  /** Name of the Gather node to cut at (default: the lookup of a token-id graph input). */
  node?: string;
  /** Name of the new input (default `inputs_embeds`). */
  inputName?: string;
}

/** Follow Cast / Reshape / Identity / Unsqueeze back to a graph input, if any. */
function traceToInput(name: string, producers: Map<string, NodeProto>, inputs: Set<string>) {
  let cur = name;
  for (let k = 0; k < 8; k++) {
    if (inputs.has(cur)) return cur;
    const p = producers.get(cur);
    if (!p || !["Cast", "Reshape", "Identity", "Unsqueeze", "Squeeze"].includes(p.opType ?? "")) {
      return undefined;
    }
    cur = (p.input ?? [])[0];
  }
  return undefined;
}

/**
 * Cut a text encoder at its token-embedding lookup: the `Gather(table, input_ids)` node is removed
 * and its output becomes the new float input `inputs_embeds` [B, T, D] (dims from the ids input and
 * the table). Everything downstream (position embeddings, attention, final norm) is unchanged, so
 * feeding the embeddings of a prompt reproduces the original outputs. The table initializer is
 * dropped when nothing else uses it; the ids input stays when other nodes read it (CLIP pools at
 * the EOS token found by ArgMax(input_ids)).
 *
 * @example
 * ```ts ignore
 * const { model, inputName } = cutAtEmbedding(decodeModel(await Deno.readFile("text_encoder/model.onnx")));
 * ```
 */
export function cutAtEmbedding(model: IModelProto, opts: CutOptions = {}): CutResult {
  const g = model.graph;
  if (!g) throw new InputError("model has no graph");
  const nodes = g.node ?? [];
  const inits = new Map((g.initializer ?? []).map((t) => [t.name ?? "", t]));
  const inputs = new Set((g.input ?? []).map((i) => i.name ?? "").filter((n) => !inits.has(n)));
  const producers = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producers.set(o, n);
  const candidates = nodes.filter((n) => {
    if (n.opType !== "Gather") return false;
    if (opts.node) return n.name === opts.node;
    const [data, idx] = n.input ?? [];
    const t = inits.get(data);
    if (!t || (t.dims ?? []).length !== 2) return false;
    if (intAttr(attrsOf(n), "axis", 0) !== 0) return false;
    return traceToInput(idx, producers, inputs) !== undefined;
  });
  if (candidates.length === 0) {
    throw new InputError(
      opts.node
        ? `no Gather node named '${opts.node}'`
        : "no token-embedding lookup found (a Gather of a 2-D initializer by a token-id input)",
    );
  }
  if (candidates.length > 1) {
    throw new InputError(
      `several embedding lookups (${
        candidates.map((n) => n.name || "unnamed").join(", ")
      }): choose one with the node option`,
    );
  }
  const lookup = candidates[0];
  const [table, idx] = lookup.input ?? [];
  const out = (lookup.output ?? [])[0];
  const idsInput = traceToInput(idx, producers, inputs);
  if (!idsInput) throw new InputError(`Gather '${lookup.name}' does not read a graph input`);
  const tableT = inits.get(table);
  if (!tableT) {
    throw new InputError(`Gather '${lookup.name}': table '${table}' is not an initializer`);
  }
  const inputName = opts.inputName ?? "inputs_embeds";
  const used = new Set<string>([
    ...nodes.flatMap((n) => [...(n.input ?? []), ...(n.output ?? [])]),
    ...inits.keys(),
    ...inputs,
  ]);
  if (used.has(inputName)) throw new InputError(`name '${inputName}' already exists in the graph`);

  const rest = nodes.filter((n) => n !== lookup).map((n) => ({
    ...n,
    input: (n.input ?? []).map((i) => (i === out ? inputName : i)),
  }));
  // drop the chain Cast/Reshape… between ids and the lookup when nothing else uses it
  const readers = new Map<string, number>();
  for (const n of rest) for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 0) + 1);
  const outputs = (g.output ?? []).map((o) => (o.name === out ? { ...o, name: inputName } : o));
  for (const o of outputs) readers.set(o.name ?? "", (readers.get(o.name ?? "") ?? 0) + 1);
  let kept = rest;
  let changed = true;
  while (changed) {
    changed = false;
    kept = kept.filter((n) => {
      const dead = (n.output ?? []).every((o) => !readers.get(o)) &&
        ["Cast", "Reshape", "Identity", "Unsqueeze", "Squeeze"].includes(n.opType ?? "");
      if (dead) {
        for (const i of n.input ?? []) readers.set(i, (readers.get(i) ?? 1) - 1);
        changed = true;
      }
      return !dead;
    });
  }
  const idsStillUsed = (readers.get(idsInput) ?? 0) > 0;
  const tableStillUsed = (readers.get(table) ?? 0) > 0;
  const idsVi = (g.input ?? []).find((i) => i.name === idsInput);
  const idsDims = idsVi?.type?.tensorType?.shape?.dim ?? [];
  const d = num((tableT.dims ?? [])[1] as number);
  const embeds: ValueInfoProto = {
    name: inputName,
    type: {
      tensorType: {
        elemType: tableT.dataType ?? 1,
        shape: { dim: [...idsDims.map((x) => ({ ...x })), { dimValue: d }] },
      },
    },
  };
  const newInputs = [
    ...(g.input ?? []).filter((i) => i.name !== idsInput || idsStillUsed),
    embeds,
  ];
  return {
    model: {
      ...model,
      graph: {
        ...g,
        node: kept,
        input: newInputs,
        output: outputs,
        initializer: (g.initializer ?? []).filter((t) => t.name !== table || tableStillUsed),
        valueInfo: (g.valueInfo ?? []).filter((v) => v.name !== out),
      },
    },
    inputName,
    idsInput,
    idsStillUsed,
    table,
    lookupOutput: out,
  };
}

/** Options of {@link exposeIntermediate}. */
export interface ExposeOptions {
  /** Output name (default: the tensor's own name). */
  name?: string;
  /** Concrete input dims used to infer the output's type and shape (default: batch dims 1). */
  inputShapes?: Record<string, number[]>;
}

/**
 * Make an intermediate tensor a graph output (with an Identity when renamed). Its element type and
 * shape come from the graph's value_info or from static inference; the shape is left out when it
 * depends on symbolic input dims.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "./builder.ts";
 * import { exposeIntermediate } from "./graph_tools.ts";
 * const g = new GraphBuilder("g");
 * const x = g.input("x", "float32", [1, 4]);
 * const h = g.op("Relu", [x]);
 * g.output(g.op("Neg", [h]), "y", "float32", [1, 4]);
 * const model = exposeIntermediate(g.toModel(), h, { name: "features" });
 * assert.deepEqual(model.graph?.output?.map((o) => o.name), ["y", "features"]);
 * ```
 */
export function exposeIntermediate(
  model: IModelProto,
  tensor: string,
  opts: ExposeOptions = {},
): IModelProto {
  const g = model.graph;
  if (!g) throw new InputError("model has no graph");
  const nodes = g.node ?? [];
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  if (!produced.has(tensor)) {
    throw new InputError(`tensor '${tensor}' is not produced by any node of the graph`);
  }
  const name = opts.name ?? tensor;
  if ((g.output ?? []).some((o) => o.name === name)) {
    throw new InputError(`'${name}' is already a graph output`);
  }
  let vi: ValueInfoProto | undefined = (g.valueInfo ?? []).find((v) => v.name === tensor);
  if (!vi?.type?.tensorType?.elemType) {
    const info = inferInfo(model, opts.inputShapes);
    const ti = info.info.get(tensor);
    if (!ti) throw new InputError(`cannot infer the type of '${tensor}'`);
    vi = {
      name,
      type: {
        tensorType: {
          elemType: ti.dtype,
          shape: info.concrete ? { dim: ti.dims.map((d) => ({ dimValue: d })) } : undefined,
        },
      },
    };
  } else vi = { ...vi, name };
  const extra: NodeProto[] = name === tensor
    ? []
    : [{ opType: "Identity", input: [tensor], output: [name], name: `expose_${name}` }];
  if (name !== tensor && (produced.has(name) || (g.input ?? []).some((i) => i.name === name))) {
    throw new InputError(`name '${name}' already exists in the graph`);
  }
  return {
    ...model,
    graph: { ...g, node: [...nodes, ...extra], output: [...(g.output ?? []), vi] },
  };
}

/** Static inference with concrete input dims (symbolic dims → 1, reported as not concrete). */
function inferInfo(model: IModelProto, shapes?: Record<string, number[]>) {
  const g = model.graph!;
  const seed: InfoMap = new Map();
  let concrete = true;
  const inits = new Set((g.initializer ?? []).map((t) => t.name ?? ""));
  for (const i of g.input ?? []) {
    if (inits.has(i.name ?? "")) continue;
    const tt = i.type?.tensorType;
    const given = shapes?.[i.name ?? ""];
    const dims = given ?? (tt?.shape?.dim ?? []).map((d) => {
      const v = num(d.dimValue as number);
      if (v > 0) return v;
      concrete = false;
      return 1;
    });
    seed.set(i.name ?? "", { dtype: tt?.elemType ?? 1, dims });
  }
  for (const t of g.initializer ?? []) seed.set(t.name ?? "", tensorInfo(t));
  const nodes = topoSort(g.node ?? [], seed.keys());
  const { info } = inferShapes(nodes, defaultOpset(model.opsetImport), seed);
  return { info, concrete };
}
