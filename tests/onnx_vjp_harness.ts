/**
 * Test harness for the VJP transform: builds a graph, transforms it, runs forward and VJP models
 * in ONNX Runtime, and compares the gradient with central finite differences (Richardson-
 * extrapolated, accumulated in float64) — per coordinate for small inputs, along random
 * directions for larger ones.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder, valueInfo } from "../core/onnx/builder.ts";
import { DEVICE_OPS } from "../core/onnx/device_ops.ts";
import { decodeModel, encodeModel, tensorDims, tensorValues } from "../core/onnx/proto.ts";
import { type VjpOptions, vjpTransform } from "../core/onnx/vjp.ts";
import { type RandomStream, streams } from "../core/rng.ts";

/** Element type names used by the tests. */
export type FloatName = "float32" | "float64";

/** One input of a test graph. */
export interface CaseInput {
  /** Input name. */
  name: string;
  /** Dims. */
  dims: number[];
  /** Element type (default: the case dtype). */
  type?: "float32" | "float64" | "int64" | "int32" | "bool";
  /** Values (default: N(0,1) for floats). */
  values?: (rng: RandomStream, n: number) => number[];
  /** Differentiate w.r.t. this input (default: floats yes). */
  wrt?: boolean;
}

/** A built test graph. */
export interface BuiltCase {
  /** Graph inputs. */
  inputs: CaseInput[];
  /** Output names to differentiate. */
  outputs: string[];
  /** Model bytes. */
  bytes: Uint8Array;
  /** Extra initializers to differentiate with respect to. */
  wrtInitializers?: string[];
}

/** Normal draws kept away from 0 by `gap` (avoids kinks of ReLU/Abs/Clip in finite differences). */
export function awayFromZero(gap = 0.2): (rng: RandomStream, n: number) => number[] {
  return (rng, n) =>
    Array.from({ length: n }, () => {
      const v = rng.normal();
      return Math.sign(v || 1) * (Math.abs(v) + gap);
    });
}

/** Uniform draws in [lo, hi). */
export function uniform(lo: number, hi: number): (rng: RandomStream, n: number) => number[] {
  return (rng, n) => Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

function makeTensor(type: string, dims: number[], vals: number[]): ort.Tensor {
  switch (type) {
    case "float32":
      return new ort.Tensor("float32", Float32Array.from(vals), dims);
    case "float64":
      return new ort.Tensor("float64", Float64Array.from(vals), dims);
    case "int64":
      return new ort.Tensor("int64", BigInt64Array.from(vals, (v) => BigInt(v)), dims);
    case "int32":
      return new ort.Tensor("int32", Int32Array.from(vals), dims);
    case "bool":
      return new ort.Tensor("bool", Uint8Array.from(vals), dims);
  }
  throw new Error(type);
}

function numel(d: number[]) {
  return d.reduce((a, b) => a * b, 1);
}

/** Result of a gradient check. */
export interface GradReport {
  /** Element type that ran. */
  dtype: FloatName;
  /** Worst relative error per differentiated tensor. */
  errors: Record<string, number>;
  /** Backward node count. */
  backwardNodes: number;
  /** Backward op types. */
  backwardOps: string[];
}

/** Options of {@link checkGradient}. */
export interface CheckOptions {
  /** Seed. */
  seed?: number;
  /** Relative tolerance (default 1e-4 float64, 2e-3 float32). */
  tol?: number;
  /** Finite-difference step (default 1e-3 float64, 3e-2 float32), scaled by max(1, |x|∞). */
  eps?: number;
  /** Transform options. */
  vjp?: VjpOptions;
  /** Random directions for inputs larger than `fullMax` elements (default 3). */
  directions?: number;
  /** Largest input checked coordinate by coordinate (default 48). */
  fullMax?: number;
  /** ai.onnx opset of the built graph (default 17). */
  opset?: number;
  /** Richardson levels of the central difference (2: steps h, h/2; 3: h, h/2, h/4). */
  levels?: 2 | 3;
  /**
   * Derivative estimator: "richardson" (default) or "polyfit" — a least-squares polynomial
   * (degree 6) through L(x + t v) at 25 points t ∈ [−h, h]; averages float32 rounding noise in
   * deep graphs while the polynomial absorbs the curvature.
   */
  fd?: "richardson" | "polyfit";
}

/** Slope at 0 of the least-squares polynomial of `degree` through (t_k, L_k) (t scaled by h). */
export function polyfitSlope(ts: number[], ls: number[], h: number, degree: number): number {
  const m = degree + 1;
  const A = Array.from({ length: m }, () => new Float64Array(m));
  const b = new Float64Array(m);
  for (let k = 0; k < ts.length; k++) {
    const u = ts[k] / h;
    const p = Array.from({ length: m }, (_, j) => u ** j);
    for (let i = 0; i < m; i++) {
      b[i] += p[i] * ls[k];
      for (let j = 0; j < m; j++) A[i][j] += p[i] * p[j];
    }
  }
  // Gaussian elimination with partial pivoting
  for (let c = 0; c < m; c++) {
    let piv = c;
    for (let r = c + 1; r < m; r++) if (Math.abs(A[r][c]) > Math.abs(A[piv][c])) piv = r;
    [A[c], A[piv]] = [A[piv], A[c]];
    [b[c], b[piv]] = [b[piv], b[c]];
    for (let r = c + 1; r < m; r++) {
      const f = A[r][c] / A[c][c];
      for (let j = c; j < m; j++) A[r][j] -= f * A[c][j];
      b[r] -= f * b[c];
    }
  }
  const coef = new Float64Array(m);
  for (let r = m - 1; r >= 0; r--) {
    let acc = b[r];
    for (let j = r + 1; j < m; j++) acc -= A[r][j] * coef[j];
    coef[r] = acc / A[r][r];
  }
  return coef[1] / h;
}

/**
 * Build a case with `build(g, t)` in `dtype`, transform, and check gradients against finite
 * differences. Returns the report; asserts the tolerance.
 */
export async function checkGradient(
  label: string,
  dtype: FloatName,
  build: (g: GraphBuilder, t: FloatName) => Omit<BuiltCase, "bytes">,
  opts: CheckOptions = {},
): Promise<GradReport> {
  const g = new GraphBuilder(label, opts.opset ?? 17);
  const spec = build(g, dtype);
  const built: BuiltCase = { ...spec, bytes: g.toBytes() };
  return await checkBuilt(label, dtype, built, opts);
}

/** Perturb initializers through feeds: the case with its `wrtInitializers` turned into inputs. */
function initializersAsInputs(built: BuiltCase): BuiltCase {
  // perturb initializers through feeds: turn them into graph inputs
  const m = decodeModel(built.bytes);
  const extra: CaseInput[] = [];
  for (const name of built.wrtInitializers ?? []) {
    const t = m.graph!.initializer!.find((i) => i.name === name);
    if (!t) throw new Error(`no initializer ${name}`);
    const dims = tensorDims(t);
    const vals = Array.from(tensorValues(t));
    m.graph!.input!.push(valueInfo(name, t.dataType === 11 ? "float64" : "float32", dims));
    m.graph!.initializer = m.graph!.initializer!.filter((i) => i.name !== name);
    extra.push({
      name,
      dims,
      values: () => vals,
      type: t.dataType === 11 ? "float64" : "float32",
    });
  }
  return {
    ...built,
    bytes: encodeModel(m),
    inputs: [...built.inputs, ...extra],
    wrtInitializers: [],
  };
}

/** Check a pre-built model (see {@link checkGradient}). */
export async function checkBuilt(
  label: string,
  dtype: FloatName,
  built: BuiltCase,
  opts: CheckOptions = {},
): Promise<GradReport> {
  if (built.wrtInitializers?.length) {
    built = initializersAsInputs(built);
    opts = { ...opts, vjp: { ...opts.vjp, exposeInitializers: true } };
  }
  const rng = streams(opts.seed ?? 7).get(`vjp-test/${label}`);
  const tol = opts.tol ?? (dtype === "float64" ? 1e-4 : 2e-3);
  const epsBase = opts.eps ?? (dtype === "float64" ? 1e-3 : 3e-2);
  const values = new Map<string, number[]>();
  for (const inp of built.inputs) {
    const n = numel(inp.dims);
    values.set(
      inp.name,
      inp.values ? inp.values(rng, n) : Array.from({ length: n }, () => rng.normal()),
    );
  }
  const isFloat = (i: CaseInput) => (i.type ?? dtype).startsWith("float");
  const wrt = [
    ...built.inputs.filter((i) => isFloat(i) && i.wrt !== false).map((i) => i.name),
    ...(built.wrtInitializers ?? []),
  ];
  const vg = await vjpTransform(built.bytes, built.outputs, wrt, opts.vjp);
  // every op a rule emits must have a kernel on ORT's WebGPU and CUDA providers
  const offDevice = vg.stats.backwardOps.filter((op) => !DEVICE_OPS.has(op));
  assert.deepEqual(offDevice, [], `${label}: backward graph uses ops without GPU kernels`);
  const fwd = await ort.InferenceSession.create(built.bytes);
  const bwd = await ort.InferenceSession.create(vg.bytes(), { graphOptimizationLevel: "all" });
  try {
    const feeds = (over?: { name: string; vals: number[] }): Record<string, ort.Tensor> => {
      const f: Record<string, ort.Tensor> = {};
      for (const inp of built.inputs) {
        const v = over && over.name === inp.name ? over.vals : values.get(inp.name)!;
        f[inp.name] = makeTensor(inp.type ?? dtype, inp.dims, v);
      }
      return f;
    };
    const base = await fwd.run(feeds());
    const cot = new Map<string, number[]>();
    const cotFeeds: Record<string, ort.Tensor> = {};
    for (const o of built.outputs) {
      const dims = base[o].dims as number[];
      const w = Array.from({ length: numel(dims) }, () => rng.normal());
      cot.set(o, w);
      cotFeeds[vg.cotangentName(o)] = makeTensor(base[o].type, dims, w);
    }
    // initializer-valued wrt tensors cannot be perturbed through feeds
    const feedWrt = wrt.filter((w) => built.inputs.some((i) => i.name === w));
    const res = await bwd.run({ ...feeds(), ...cotFeeds });
    for (const o of built.outputs) {
      const a = base[o].data as Float32Array;
      const b = res[o].data as Float32Array;
      assert.equal(a.length, b.length);
      for (let i = 0; i < a.length; i++) {
        assert.ok(
          Math.abs(a[i] - b[i]) <= (dtype === "float64" ? 1e-9 : 1e-4) * (1 + Math.abs(a[i])),
          `${label}: forward output ${o} changed at ${i}: ${a[i]} vs ${b[i]}`,
        );
      }
    }
    const loss = async (name: string, vals: number[]) => {
      const r = await fwd.run(feeds({ name, vals }));
      let s = 0;
      for (const o of built.outputs) {
        const d = r[o].data as Float32Array;
        const w = cot.get(o)!;
        for (let i = 0; i < d.length; i++) s += w[i] * d[i];
      }
      return s;
    };
    const errors: Record<string, number> = {};
    for (const x of feedWrt) {
      const grad = Array.from(res[vg.gradName(x)].data as Float32Array);
      const x0 = values.get(x)!;
      const scale = Math.max(1, ...x0.map(Math.abs));
      const h = epsBase * scale;
      const dirDeriv = async (v: number[]) => {
        const at = async (t: number) => await loss(x, x0.map((xi, i) => xi + t * v[i]));
        if (opts.fd === "polyfit") {
          const ts = Array.from({ length: 25 }, (_, k) => ((k - 12) / 12) * h);
          const ls: number[] = [];
          for (const t of ts) ls.push(await at(t));
          return polyfitSlope(ts, ls, h, 6);
        }
        const central = async (s: number) => ((await at(s)) - (await at(-s))) / (2 * s);
        const d1 = await central(h);
        const d2 = await central(h / 2);
        const r1 = (4 * d2 - d1) / 3;
        if ((opts.levels ?? 2) === 2) return r1;
        const r1b = (4 * (await central(h / 4)) - d2) / 3;
        return (16 * r1b - r1) / 15;
      };
      const fullMax = opts.fullMax ?? 48;
      if (x0.length <= fullMax) {
        const fd: number[] = [];
        for (let i = 0; i < x0.length; i++) {
          const v = new Array<number>(x0.length).fill(0);
          v[i] = 1;
          fd.push(await dirDeriv(v));
        }
        let num = 0;
        let den = 0;
        for (let i = 0; i < fd.length; i++) {
          num += (grad[i] - fd[i]) ** 2;
          den += fd[i] ** 2;
        }
        errors[x] = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-12);
        if (den < 1e-20) errors[x] = Math.sqrt(num);
      } else {
        let worst = 0;
        for (let k = 0; k < (opts.directions ?? 3); k++) {
          const v = Array.from({ length: x0.length }, () => rng.normal());
          const fd = await dirDeriv(v);
          const an = grad.reduce((s, gi, i) => s + gi * v[i], 0);
          const gn = Math.sqrt(grad.reduce((s, gi) => s + gi * gi, 0) * x0.length);
          // relative to |fd| with a floor of 1e-3·‖g‖·√n (directional derivatives near 0)
          worst = Math.max(worst, Math.abs(an - fd) / Math.max(Math.abs(fd), 1e-3 * gn, 1e-12));
        }
        errors[x] = worst;
      }
      assert.ok(
        errors[x] < tol,
        `${label} (${dtype}): gradient w.r.t. ${x} has relative error ${
          errors[x].toExponential(2)
        } ≥ ${tol}`,
      );
    }
    if (Deno.env.get("VJP_TEST_VERBOSE")) {
      const errs = Object.entries(errors).map(([k, v]) => `${k}:${v.toExponential(1)}`);
      console.log(`[vjp] ${label} ${dtype} ${errs.join(" ")} (${vg.stats.backwardNodes} nodes)`);
    }
    return {
      dtype,
      errors,
      backwardNodes: vg.stats.backwardNodes,
      backwardOps: vg.stats.backwardOps,
    };
  } finally {
    await fwd.release();
    await bwd.release();
  }
}

/** Whether ORT has kernels for everything in the VJP graph of this case in float64. */
export async function runsInFloat64(
  build: (g: GraphBuilder, t: FloatName) => Omit<BuiltCase, "bytes">,
  opset = 17,
): Promise<boolean> {
  const g = new GraphBuilder("probe64", opset);
  const spec = build(g, "float64");
  const bytes = g.toBytes();
  try {
    const wrt = spec.inputs.filter((i) =>
      (i.type ?? "float64").startsWith("float") &&
      i.wrt !== false
    ).map((i) => i.name);
    const vg = await vjpTransform(bytes, spec.outputs, [...wrt, ...(spec.wrtInitializers ?? [])]);
    const s = await ort.InferenceSession.create(vg.bytes());
    await s.release();
    return true;
  } catch (e) {
    const m = String(e);
    if (/implementation|NOT_IMPLEMENTED|kernel|Type Error|type/i.test(m)) return false;
    throw e;
  }
}

/**
 * Check in float64 when ORT supports every op of the case in double, else in float32; returns the
 * report (with the dtype that ran).
 */
export async function checkOp(
  label: string,
  build: (g: GraphBuilder, t: FloatName) => Omit<BuiltCase, "bytes">,
  opts: CheckOptions = {},
): Promise<GradReport> {
  const dtype: FloatName = (await runsInFloat64(build, opts.opset)) ? "float64" : "float32";
  return await checkGradient(label, dtype, build, opts);
}

/**
 * The same model in float64: float32 initializers, graph inputs/outputs, Constant values and
 * Cast/ConstantOfShape targets become double (for float64 finite-difference checks of float32
 * models whose ops all have double kernels).
 */
export function toFloat64(bytes: Uint8Array): Uint8Array {
  const m = decodeModel(bytes);
  const g = m.graph!;
  const conv = (
    t: {
      dataType?: number | null;
      rawData?: Uint8Array | null;
      floatData?: number[] | null;
      doubleData?: number[] | null;
    },
  ) => {
    if (t.dataType !== 1) return;
    const vals = t.rawData && t.rawData.length
      ? Array.from(new Float32Array(Uint8Array.from(t.rawData).buffer))
      : Array.from(t.floatData ?? []);
    t.dataType = 11;
    t.rawData = new Uint8Array(Float64Array.from(vals).buffer);
    t.floatData = [];
  };
  for (const t of g.initializer ?? []) conv(t);
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]) {
    const tt = v.type?.tensorType;
    if (tt && tt.elemType === 1) tt.elemType = 11;
  }
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) conv(a.t);
      if (a.name === "to" && n.opType === "Cast" && Number(a.i) === 1) a.i = 11;
    }
  }
  return encodeModel(m);
}

/** The small SD-block configuration (8×8 latent, 8 channels, 2 heads) shared by the VJP tests. */
export const SMALL_SD_BLOCK = {
  height: 8,
  width: 8,
  channels: 8,
  groups: 4,
  heads: 2,
  contextLength: 5,
  contextDim: 12,
  timeDim: 8,
} as const;
