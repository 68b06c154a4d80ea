/**
 * Shape probing: when static inference cannot size some tensors (an op without a shape rule, a
 * data-dependent shape), run the model once in ONNX Runtime on placeholder inputs and read, for
 * every unknown tensor, its shape (a `Shape` node), its element type (an empty slice of it) and —
 * for the integer tensors that feed shape arguments — its values. Only these small tensors are
 * graph outputs, so the run keeps its normal memory footprint.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { join } from "node:path";
import { encodeModel } from "../proto.ts";
import type { IModelProto, NodeProto, TensorProto, ValueInfoProto } from "../proto.ts";
import { externalLocations, writeModel } from "../external.ts";
import type { InfoMap, TensorInfo } from "./shapes.ts";
import { INT_TYPES, numel } from "./graph.ts";

const ORT_TYPES: Record<string, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
};

/** Inputs of ops whose values are shape arguments (probed as values). */
const SHAPE_ARGS: Record<string, number[]> = {
  Reshape: [1],
  Expand: [1],
  Tile: [1],
  Slice: [1, 2, 3, 4],
  ConstantOfShape: [0],
  Range: [0, 1, 2],
  Pad: [1, 3],
  Split: [1],
  Squeeze: [1],
  Unsqueeze: [1],
  ReduceSum: [1],
  ReduceMean: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  Resize: [2, 3],
  TopK: [1],
  OneHot: [1],
};

function i64(name: string, values: number[]): TensorProto {
  return {
    name,
    dims: [values.length],
    dataType: 7,
    rawData: new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer),
  };
}

/** Placeholder feed for one input: 0 for integers and booleans, 0.5 for floats. */
function placeholder(info: TensorInfo): ort.Tensor {
  const n = numel(info.dims);
  switch (info.dtype) {
    case 1:
      return new ort.Tensor("float32", new Float32Array(n).fill(0.5), info.dims);
    case 11:
      return new ort.Tensor("float64", new Float64Array(n).fill(0.5), info.dims);
    case 7:
      return new ort.Tensor("int64", new BigInt64Array(n), info.dims);
    case 6:
      return new ort.Tensor("int32", new Int32Array(n), info.dims);
    case 9:
      return new ort.Tensor("bool", new Uint8Array(n), info.dims);
    default:
      throw new Error(`probe: cannot make a placeholder of element type ${info.dtype}`);
  }
}

/**
 * Create an ORT session for a decoded model whose external data lies in `baseDir` (written to a
 * temporary folder with hard links, or next to the data when links are impossible).
 */
export async function sessionFor(
  model: IModelProto,
  baseDir: string | undefined,
  bytes: Uint8Array,
  options: ort.InferenceSession.SessionOptions = {},
): Promise<ort.InferenceSession> {
  if (externalLocations(model).length === 0) {
    return await ort.InferenceSession.create(bytes, options);
  }
  const tmp = await Deno.makeTempDir({ prefix: "vjp-probe-" });
  let path = join(tmp, "model.onnx");
  try {
    try {
      await writeModel(model, path, baseDir);
    } catch {
      path = join(baseDir!, `.vjp-probe-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.onnx`);
      await writeModel(model, path, baseDir);
    }
    return await ort.InferenceSession.create(path, options);
  } finally {
    if (!path.startsWith(tmp)) await Deno.remove(path).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/**
 * Probe the tensors in `unknown` with one run and add them to `info`.
 *
 * @param model the model (its graph is not modified)
 * @param baseDir folder of its external data
 * @param nodes nodes in topological order
 * @param info known tensors (graph inputs must be present with concrete dims)
 * @param unknown names to probe
 */
export async function probeShapes(
  model: IModelProto,
  baseDir: string | undefined,
  nodes: NodeProto[],
  info: InfoMap,
  unknown: Set<string>,
): Promise<void> {
  const wantValue = new Set<string>();
  for (const n of nodes) {
    const args = SHAPE_ARGS[n.opType ?? ""] ?? [];
    for (const i of args) {
      const x = n.input?.[i];
      if (x && unknown.has(x)) wantValue.add(x);
    }
  }
  const extra: NodeProto[] = [];
  const outs: ValueInfoProto[] = [];
  const inits: TensorProto[] = [i64("__probe_flat", [-1]), i64("__probe_zero", [0])];
  const key = new Map<string, { shape: string; type: string; value?: string }>();
  let k = 0;
  for (const t of unknown) {
    const shape = `__probe_s${k}`;
    const flat = `__probe_f${k}`;
    const type = `__probe_t${k}`;
    extra.push(
      { opType: "Shape", input: [t], output: [shape], name: `__probe_ns${k}` },
      { opType: "Reshape", input: [t, "__probe_flat"], output: [flat], name: `__probe_nf${k}` },
      {
        opType: "Slice",
        input: [flat, "__probe_zero", "__probe_zero"],
        output: [type],
        name: `__probe_nt${k}`,
      },
    );
    outs.push({ name: shape }, { name: type });
    const entry: { shape: string; type: string; value?: string } = { shape, type };
    if (wantValue.has(t)) {
      const v = `__probe_v${k}`;
      extra.push({ opType: "Identity", input: [t], output: [v], name: `__probe_nv${k}` });
      outs.push({ name: v });
      entry.value = v;
    }
    key.set(t, entry);
    k++;
  }
  const g = model.graph!;
  const probe: IModelProto = {
    ...model,
    graph: {
      ...g,
      node: [...(g.node ?? []), ...extra],
      output: [...(g.output ?? []), ...outs],
      initializer: [...(g.initializer ?? []), ...inits],
    },
  };
  const bytes = encodeModel(probe);
  const session = await sessionFor(probe, baseDir, bytes, { graphOptimizationLevel: "basic" });
  try {
    const feeds: Record<string, ort.Tensor> = {};
    const inits = new Set((g.initializer ?? []).map((t) => t.name));
    for (const i of g.input ?? []) {
      if (!i.name || inits.has(i.name)) continue;
      const ii = info.get(i.name);
      if (!ii) throw new Error(`probe: input '${i.name}' has no concrete shape`);
      feeds[i.name] = placeholder(ii);
    }
    const res = await session.run(feeds);
    for (const [t, e] of key) {
      const dims = Array.from(res[e.shape].data as BigInt64Array, (v) => Number(v));
      const dtype = ORT_TYPES[res[e.type].type] ?? 0;
      const ti: TensorInfo = { dtype, dims };
      if (e.value && INT_TYPES.has(dtype)) {
        ti.value = Array.from(res[e.value].data as ArrayLike<number | bigint>, (v) => Number(v));
      }
      info.set(t, ti);
    }
  } finally {
    await session.release();
  }
}
