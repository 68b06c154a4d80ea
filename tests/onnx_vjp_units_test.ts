/**
 * Multi-node patterns differentiated as units (attention core, SiLU, Erf-GELU): gradients against
 * finite differences, and the patterns are recognised (and not recognised when an interior
 * tensor is used elsewhere or a mask carries a gradient).
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../core/onnx/builder.ts";
import * as ort from "onnxruntime-node";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { decodeModel } from "../core/onnx/proto.ts";
import { streams } from "../core/rng.ts";
import {
  type CaseInput,
  checkGradient,
  checkOp,
  type FloatName,
  uniform,
} from "./onnx_vjp_harness.ts";

/** Attention O = softmax(scale(Q Kᵀ) + mask) V with heads; scale as Mul, Div or absent. */
function attention(
  kind: "mul" | "mul-left" | "div" | "none",
  withMask: boolean,
  maskActive = false,
  d = 5,
) {
  return (g: GraphBuilder, t: FloatName) => {
    const [b, h, tq, tk] = [1, 2, 3, 4];
    const q = g.input("q", t, [b, h, tq, d]);
    const k = g.input("k", t, [b, h, tk, d]);
    const v = g.input("v", t, [b, h, tk, d]);
    let s = g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 1, 3, 2] })]);
    if (kind === "mul") s = g.op("Mul", [s, g.initializer("c", t, [], [0.4])]);
    if (kind === "mul-left") s = g.op("Mul", [g.initializer("c", t, [], [0.4]), s]);
    if (kind === "div") s = g.op("Div", [s, g.initializer("c", t, [], [2.5])]);
    const inputs = [
      { name: "q", dims: [b, h, tq, d] },
      { name: "k", dims: [b, h, tk, d] },
      { name: "v", dims: [b, h, tk, d] },
    ];
    if (withMask) {
      const m = maskActive ? g.input("m", t, [tq, tk]) : g.initializer(
        "m",
        t,
        [tq, tk],
        Array.from({ length: tq * tk }, (_, i) => (i % 5 === 4 ? -3 : 0.2 * i)),
      );
      if (maskActive) inputs.push({ name: "m", dims: [tq, tk] });
      s = g.op("Add", [m, s]);
    }
    const p = g.op("Softmax", [s], { axis: -1 });
    g.output(g.op("MatMul", [p, v]), "o", t);
    return { inputs, outputs: ["o"] };
  };
}

Deno.test("unit vjp.Attention: scale Mul / Div / none, with and without a constant mask (float64)", async () => {
  for (const kind of ["mul", "mul-left", "div", "none"] as const) {
    for (const withMask of [false, true]) {
      const rep = await checkOp(`attention-${kind}-${withMask}`, attention(kind, withMask));
      assert.equal(rep.dtype, "float64");
    }
  }
});

Deno.test("unit vjp.Attention: ∂P − r by an extra inner column, or by a Sub when d is a multiple of 128", async () => {
  // the two forms of the score gradient (patterns.ts scoreGradient), each against finite
  // differences, and which one the rule emits
  for (const [d, sub] of [[5, false], [127, false], [128, true], [256, true]] as const) {
    const build = attention("mul", true, false, d);
    assert.equal((await checkOp(`attention-d${d}`, build)).dtype, "float64");
    const g = new GraphBuilder(`att-d${d}`, 17);
    build(g, "float64");
    const ops = (await vjpTransform(g.toBytes(), ["o"], ["q", "k", "v"])).stats.backwardOps;
    assert.equal(ops.includes("Concat"), !sub, `d = ${d}: Concat`);
    assert.equal(ops.includes("Sub"), sub, `d = ${d}: Sub`);
  }
});

Deno.test("unit vjp.Attention: K and V shared by all heads (broadcast over the head axis)", async () => {
  const build = (g: GraphBuilder, t: FloatName) => {
    const q = g.input("q", t, [1, 2, 3, 5]);
    const k = g.input("k", t, [1, 4, 5]);
    const v = g.input("v", t, [1, 4, 5]);
    const s = g.op("Mul", [
      g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 2, 1] })]),
      g.initializer("c", t, [], [0.4]),
    ]);
    g.output(g.op("MatMul", [g.op("Softmax", [s], { axis: -1 }), v]), "o", t);
    return {
      inputs: [
        { name: "q", dims: [1, 2, 3, 5] },
        { name: "k", dims: [1, 4, 5] },
        { name: "v", dims: [1, 4, 5] },
      ],
      outputs: ["o"],
    };
  };
  assert.equal((await checkOp("attention-shared-kv", build)).dtype, "float64");
  const g = new GraphBuilder("att-shared", 17);
  build(g, "float64");
  const r = await vjpTransform(g.toBytes(), ["o"], ["q", "k", "v"]);
  assert.equal(r.stats.units["vjp.Attention"], 1);
});

Deno.test("unit vjp.Attention: recognised; not used when the mask needs a gradient", async () => {
  const build = (maskActive: boolean) => {
    const g = new GraphBuilder("att", 17);
    attention("mul", true, maskActive)(g, "float64");
    return g.toBytes();
  };
  const a = await vjpTransform(build(false), ["o"], ["q", "k", "v"]);
  assert.equal(a.stats.units["vjp.Attention"], 1);
  const left = new GraphBuilder("att-left", 17);
  attention("mul-left", false)(left, "float64");
  assert.equal((await vjpTransform(left.toBytes(), ["o"], ["q"])).stats.units["vjp.Attention"], 1);
  const b = await vjpTransform(build(true), ["o"], ["q", "k", "v", "m"]);
  assert.equal(b.stats.units["vjp.Attention"] ?? 0, 0);
  await checkGradient(
    "attention-mask-active",
    "float64",
    (g, t) => attention("mul", true, true)(g, t),
  );
});

Deno.test("unit vjp.Silu and vjp.Gelu: gradients; not fused when an interior tensor is an output", async () => {
  // float32: ORT fuses x·σ(x) into com.microsoft.QuickGelu, which has no double kernel
  await checkGradient("silu", "float32", (g, t) => {
    const x = g.input("x", t, [2, 3, 4]);
    g.output(g.op("Mul", [g.op("Sigmoid", [x]), x]), "y", t);
    return { inputs: [{ name: "x", dims: [2, 3, 4] }], outputs: ["y"] };
  });
  const gelu = (g: GraphBuilder, t: FloatName, exposeErf = false) => {
    const x = g.input("x", t, [3, 5]);
    const e = g.op("Erf", [g.op("Div", [x, g.initializer("s2", t, [], [Math.SQRT2])])]);
    const m = g.op("Mul", [x, g.op("Add", [e, g.initializer("one", t, [], [1])])]);
    g.output(g.op("Mul", [m, g.initializer("half", t, [], [0.5])]), "y", t);
    const outputs = ["y"];
    if (exposeErf) {
      g.output(e, "erf_out", t);
      outputs.push("erf_out");
    }
    return { inputs: [{ name: "x", dims: [3, 5] }], outputs };
  };
  await checkOp("gelu", (g, t) => gelu(g, t));
  await checkOp("gelu-exposed", (g, t) => gelu(g, t, true));
  const g1 = new GraphBuilder("g1");
  gelu(g1, "float32");
  assert.equal((await vjpTransform(g1.toBytes(), ["y"], ["x"])).stats.units["vjp.Gelu"], 1);
  const g2 = new GraphBuilder("g2");
  gelu(g2, "float32", true);
  assert.equal(
    (await vjpTransform(g2.toBytes(), ["y", "erf_out"], ["x"])).stats.units["vjp.Gelu"] ?? 0,
    0,
  );
});

/**
 * The GroupNorm export: Reshape → InstanceNormalization(1, 0) → Reshape(Shape(x)) → Mul γ → Add β,
 * γ and β per channel; `gammaInput`: γ a graph input (differentiated: no unit); `exposeInterior`:
 * the normalised tensor also a graph output (no unit).
 */
function groupNormExport(
  dims: number[],
  groups: number,
  opts: {
    gammaInput?: boolean;
    exposeInterior?: boolean;
    gammaLeft?: boolean;
    /** γ and β of dims [1] (a scalar scale and shift after a GroupNorm without affine). */
    scalarAffine?: boolean;
  } = {},
) {
  return (g: GraphBuilder, t: FloatName) => {
    const ch = dims[1];
    const pdims = [ch, ...dims.slice(2).map(() => 1)];
    const x = g.input("x", t, dims);
    const r = g.op("Reshape", [x, g.constI("s1", [0, groups, -1])]);
    const ones = g.initializer("one", t, [groups], new Array(groups).fill(1));
    const zeros = g.initializer("zero", t, [groups], new Array(groups).fill(0));
    const n = g.op("InstanceNormalization", [r, ones, zeros], {
      epsilon: { kind: "float", value: 1e-5 },
    });
    const back = g.op("Reshape", [n, g.op("Shape", [x])]);
    const gv = Array.from({ length: ch }, (_, i) => 0.6 + 0.35 * Math.sin(1 + 2 * i));
    const gamma = opts.gammaInput
      ? g.input("gamma", t, pdims)
      : opts.scalarAffine
      ? g.initializer("gamma", t, [1], [0.7])
      : g.initializer("gamma", t, pdims, gv);
    const beta = opts.scalarAffine
      ? g.initializer("beta", t, [1], [-0.2])
      : g.initializer("beta", t, [1, ...pdims], gv.map((v, i) => 0.1 * i - v));
    const m = g.op("Mul", opts.gammaLeft ? [gamma, back] : [back, gamma]);
    g.output(g.op("Add", [beta, m]), "y", t);
    // group means away from 0
    const inputs: CaseInput[] = [{ name: "x", dims, values: uniform(1, 4) }];
    if (opts.gammaInput) inputs.push({ name: "gamma", dims: pdims });
    const outputs = ["y"];
    if (opts.exposeInterior) {
      g.output(back, "xhat", t);
      outputs.push("xhat");
    }
    return { inputs, outputs };
  };
}

Deno.test("unit vjp.GroupNorm: recognised on the export; gradients vs finite differences", async () => {
  // ONNX Runtime has no double InstanceNormalization kernel on CPU: float32 checks
  const cases: [number[], number, boolean][] = [
    [[2, 6, 4, 4], 3, false], // batch 2
    [[1, 4, 5], 2, true], // rank 3, γ on the left of the Mul
    [[1, 4, 2, 3, 2], 4, false], // rank 5, one channel per group
    [[1, 6, 3, 3], 1, false], // one group
    [[3, 8], 2, false], // no spatial axis: Mul and Add instead of the Conv
    [[1, 4, 32, 32], 2, false], // rows of ≥ 1024 terms: the sums of x̂⊙x and ḡ⊙x̂ by MatMul
  ];
  for (const [dims, groups, gammaLeft] of cases) {
    const build = groupNormExport(dims, groups, { gammaLeft });
    await checkGradient(`gn-unit-${dims}-${groups}`, "float32", build);
    const g = new GraphBuilder("gn", 17);
    build(g, "float32");
    const v = await vjpTransform(g.toBytes(), ["y"], ["x"]);
    assert.equal(v.stats.units["vjp.GroupNorm"], 1, `${dims}: unit taken`);
    // 1–3 spatial axes: k ḡ + a as a depthwise Conv whose output goes straight into the Add of
    // b x̂ (ONNX Runtime fuses Conv + Add into FusedConv with a sum input, not across a Reshape)
    assert.equal(v.stats.backwardOps.includes("Conv"), dims.length >= 3, `${dims}: Conv`);
    const long = dims.slice(2).reduce((a, b) => a * b, 1) >= 1024;
    assert.equal(v.stats.backwardOps.includes("MatMul"), long, `${dims}: dot products by MatMul`);
    const nodes = decodeModel(v.bytes()).graph!.node ?? [];
    for (const conv of nodes.filter((n) => n.opType === "Conv")) {
      const users = nodes.filter((n) => n.input?.includes(conv.output![0]));
      assert.deepEqual(users.map((n) => n.opType), ["Add"], `${dims}: the Conv feeds the Add`);
    }
  }
  // and ORT does fuse it (the optimized backward graph of the batch-1 case)
  const g = new GraphBuilder("gn-fused", 17);
  groupNormExport([1, 4, 6, 6], 2)(g, "float32");
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/opt.onnx`;
    const bytes = (await vjpTransform(g.toBytes(), ["y"], ["x"])).bytes();
    const s = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: "all",
      optimizedModelFilePath: path,
      logSeverityLevel: 3,
    });
    await s.release();
    const ops = (decodeModel(Deno.readFileSync(path)).graph!.node ?? []).map((n) => n.opType);
    assert.ok(ops.includes("FusedConv"), `optimized backward: ${ops.join(",")}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("unit vjp.GroupNorm: not taken with a differentiated γ or a used interior tensor; the unit and the node-by-node rules against the closed form in float64", async () => {
  const dims = [2, 6, 5, 4], groups = 3;
  const model = (o = {}) => {
    const g = new GraphBuilder("gn", 17);
    groupNormExport(dims, groups, o)(g, "float32");
    return g.toBytes();
  };
  const count = async (bytes: Uint8Array, of: string[], wrt: string[]) =>
    (await vjpTransform(bytes, of, wrt)).stats.units["vjp.GroupNorm"] ?? 0;
  assert.equal(await count(model({ gammaInput: true }), ["y"], ["x", "gamma"]), 0);
  assert.equal(await count(model({ gammaInput: true }), ["y"], ["x"]), 1);
  assert.equal(await count(model({ exposeInterior: true }), ["y", "xhat"], ["x"]), 0);
  // a scalar γ: the unit's rule needs C values of γ, so the node-by-node rules take it
  assert.equal(await count(model({ scalarAffine: true }), ["y"], ["x"]), 0);
  await checkGradient(
    "gn-scalar-affine",
    "float32",
    groupNormExport(dims, groups, { scalarAffine: true }),
  );
  await checkGradient(
    "gn-gamma-wrt",
    "float32",
    groupNormExport(dims, groups, { gammaInput: true }),
  );
  await checkGradient(
    "gn-exposed",
    "float32",
    groupNormExport(dims, groups, { exposeInterior: true }),
  );

  // one x (group means far from 0: 3 ± 2) and one cotangent through the unit and through the
  // node-by-node rules (the interior exposed, its cotangent zero), against the closed form
  const rng = streams(11).get("vjp-gn-unit");
  const nx = dims.reduce((p, q) => p * q, 1);
  const xv = new Float32Array(nx), w = new Float32Array(nx);
  rng.fillNormal(xv);
  rng.fillNormal(w);
  for (let i = 0; i < nx; i++) xv[i] = 3 + 2 * xv[i];
  const run = async (exposed: boolean) => {
    const of = exposed ? ["y", "xhat"] : ["y"];
    const v = await vjpTransform(model({ exposeInterior: exposed }), of, ["x"]);
    assert.equal(v.stats.units["vjp.GroupNorm"] ?? 0, exposed ? 0 : 1);
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor("float32", xv, dims),
      [v.cotangentName("y")]: new ort.Tensor("float32", w, dims),
    };
    if (exposed) {
      feeds[v.cotangentName("xhat")] = new ort.Tensor("float32", new Float32Array(nx), dims);
    }
    const s = await ort.InferenceSession.create(v.bytes());
    const out = await s.run(feeds);
    await s.release();
    return out[v.gradName("x")].data as Float32Array;
  };
  // closed form (float64): ∂x = r(ĝ − mean ĝ − x̂ mean(ĝ x̂)), ĝ = γ ḡ, per (n, group)
  const ch = dims[1], P = dims[2] * dims[3], L = (ch / groups) * P;
  const gamma = Array.from({ length: ch }, (_, i) => Math.fround(0.6 + 0.35 * Math.sin(1 + 2 * i)));
  const ref = new Float64Array(nx);
  for (let s0 = 0; s0 < nx; s0 += L) {
    const idx = Array.from({ length: L }, (_, j) => s0 + j);
    const gam = (i: number) => gamma[Math.floor(i / P) % ch];
    const mu = idx.reduce((a, i) => a + xv[i], 0) / L;
    const v = idx.reduce((a, i) => a + (xv[i] - mu) ** 2, 0) / L;
    const r = 1 / Math.sqrt(v + 1e-5);
    const xh = (i: number) => (xv[i] - mu) * r;
    const m1 = idx.reduce((a, i) => a + gam(i) * w[i], 0) / L;
    const m2 = idx.reduce((a, i) => a + gam(i) * w[i] * xh(i), 0) / L;
    for (const i of idx) ref[i] = r * (gam(i) * w[i] - m1 - xh(i) * m2);
  }
  const scale = Math.max(...ref.map(Math.abs));
  for (const [label, got] of [["unit", await run(false)], ["nodes", await run(true)]] as const) {
    let worst = 0;
    for (let i = 0; i < nx; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / scale);
    // float32 rounding of sums over L = 40 terms, r from m = mean(x̂ x) with |μ|/σ ≈ 1.5
    assert.ok(worst < 2e-6, `${label}: worst relative error ${worst}`);
  }
});

/** Options of {@link upConv}: the upsampling and the Conv after it. */
interface UpConvCase {
  dims: number[];
  /** Resize scales per axis (or `sizes` with `bySizes`). */
  scales: number[];
  cout: number;
  kernel: number[];
  pads: number[];
  group?: number;
  strides?: number[];
  dilations?: number[];
  resize?: Record<string, string>;
  bySizes?: boolean;
  /** The upsampled tensor also a graph output (no unit). */
  expose?: boolean;
  bias?: boolean;
}

/** y = Conv(Resize(x), w[, b]) with constant w (and b). */
function upConv(o: UpConvCase) {
  return (g: GraphBuilder, t: FloatName) => {
    const x = g.input("x", t, o.dims);
    const ud = o.dims.map((d, i) => d * o.scales[i]);
    const attrs = o.resize ?? { mode: "nearest" };
    const u = o.bySizes ? g.op("Resize", [x, "", "", g.constI("sizes", ud)], attrs) : g.op(
      "Resize",
      [x, "", g.initializer("scales", "float32", [o.scales.length], o.scales)],
      attrs,
    );
    const group = o.group ?? 1;
    const wd = [o.cout, o.dims[1] / group, ...o.kernel];
    const wn = wd.reduce((a, b) => a * b, 1);
    const w = g.initializer(
      "w",
      t,
      wd,
      Array.from({ length: wn }, (_, i) => Math.sin(0.7 * i + 1)),
    );
    const ins = [u, w];
    if (o.bias) {
      ins.push(g.initializer("b", t, [o.cout], Array.from({ length: o.cout }, (_, i) => 0.1 * i)));
    }
    const cattrs: Record<string, number[] | number> = {
      pads: o.pads,
      kernel_shape: o.kernel,
      group,
    };
    if (o.strides) cattrs.strides = o.strides;
    if (o.dilations) cattrs.dilations = o.dilations;
    g.output(g.op("Conv", ins, cattrs), "y", t);
    const outputs = ["y"];
    if (o.expose) {
      g.output(u, "u", t);
      outputs.push("u");
    }
    return { inputs: [{ name: "x", dims: o.dims }], outputs };
  };
}

/** ∂x of `bytes` w.r.t. x for the cotangent `gy` of y (float32). */
async function gradX(bytes: Uint8Array, dims: number[], gy: Float32Array, yd: number[]) {
  const v = await vjpTransform(bytes, ["y"], ["x"]);
  const s = await ort.InferenceSession.create(v.bytes(), { logSeverityLevel: 3 });
  try {
    const n = dims.reduce((a, b) => a * b, 1);
    const x = Float32Array.from({ length: n }, (_, i) => Math.cos(0.37 * i));
    const out = await s.run({
      x: new ort.Tensor("float32", x, dims),
      "y.cotangent": new ort.Tensor("float32", gy, yd),
    });
    return { grad: out["x.grad"].data as Float32Array, stats: v.stats, bytes: v.bytes() };
  } finally {
    await s.release();
  }
}

Deno.test("unit vjp.UpConv: nearest integer upsampling into a stride-1 Conv — gradients vs finite differences and vs the node-by-node rules, one strided Conv", async () => {
  const cases: [string, UpConvCase][] = [
    ["2x2 3x3 bias", {
      dims: [1, 3, 4, 5],
      scales: [1, 1, 2, 2],
      cout: 4,
      kernel: [3, 3],
      pads: [1, 1, 1, 1],
      bias: true,
    }],
    ["2x3 asymmetric pads", {
      dims: [2, 4, 3, 3],
      scales: [1, 1, 2, 3],
      cout: 2,
      kernel: [3, 2],
      pads: [0, 1, 2, 0],
    }],
    ["groups", {
      dims: [1, 4, 3, 3],
      scales: [1, 1, 2, 2],
      cout: 6,
      kernel: [3, 3],
      pads: [1, 1, 1, 1],
      group: 2,
    }],
    ["rank 3, ×3, k 5", { dims: [1, 2, 5], scales: [1, 1, 3], cout: 3, kernel: [5], pads: [2, 2] }],
    ["1x1 kernel", {
      dims: [1, 3, 3, 3],
      scales: [1, 1, 2, 2],
      cout: 2,
      kernel: [1, 1],
      pads: [0, 0, 0, 0],
    }],
    ["one axis, valid pads", {
      dims: [1, 2, 3, 4],
      scales: [1, 1, 1, 2],
      cout: 3,
      kernel: [3, 3],
      pads: [0, 0, 0, 0],
    }],
    ["sizes, half_pixel", {
      dims: [1, 2, 3, 3],
      scales: [1, 1, 2, 2],
      cout: 2,
      kernel: [3, 3],
      pads: [1, 1, 1, 1],
      bySizes: true,
      resize: { mode: "nearest", coordinate_transformation_mode: "half_pixel" },
    }],
    ["asymmetric floor (torch export)", {
      dims: [1, 2, 4, 4],
      scales: [1, 1, 2, 2],
      cout: 2,
      kernel: [3, 3],
      pads: [1, 1, 1, 1],
      resize: {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      },
    }],
  ];
  for (const [label, o] of cases) {
    const rep = await checkOp(`upconv-${label}`, upConv(o));
    assert.ok(rep.backwardOps.includes("Conv"), label);
    const g = new GraphBuilder("uc", 17);
    upConv(o)(g, "float32");
    const e = new GraphBuilder("uc-exposed", 17);
    upConv({ ...o, expose: true })(e, "float32");
    const yd = [
      o.dims[0],
      o.cout,
      ...o.dims.slice(2).map((d, i) => {
        const u = d * o.scales[i + 2];
        return u + o.pads[i] + o.pads[i + o.kernel.length] - o.kernel[i] + 1;
      }),
    ];
    const gy = Float32Array.from(
      { length: yd.reduce((a, b) => a * b, 1) },
      (_, i) => Math.sin(0.11 * i + 0.3),
    );
    const unit = await gradX(g.toBytes(), o.dims, gy, yd);
    const plain = await gradX(e.toBytes(), o.dims, gy, yd);
    assert.equal(unit.stats.units["vjp.UpConv"], 1, `${label}: unit taken`);
    assert.equal(plain.stats.units["vjp.UpConv"] ?? 0, 0, `${label}: not taken with u an output`);
    let md = 0, mx = 0;
    for (let i = 0; i < unit.grad.length; i++) {
      md = Math.max(md, Math.abs(unit.grad[i] - plain.grad[i]));
      mx = Math.max(mx, Math.abs(plain.grad[i]));
    }
    assert.ok(md <= 1e-5 * mx, `${label}: unit vs node by node ${md} (max ${mx})`);
    // the forward Conv and one backward Conv with stride = the factors, nothing at the
    // upsampled size
    const convs = (decodeModel(unit.bytes).graph!.node ?? []).filter((n) => n.opType === "Conv");
    const strides = convs.map((n) =>
      n.attribute?.find((a) => a.name === "strides")?.ints?.map(Number) ?? []
    );
    assert.deepEqual(strides, [[], o.scales.slice(2)], `${label}: one strided Conv`);
  }
});

Deno.test("unit vjp.UpConv: not taken for a strided or dilated Conv, linear or non-integer Resize, or a kernel with a gradient", async () => {
  const base: UpConvCase = {
    dims: [1, 2, 3, 3],
    scales: [1, 1, 2, 2],
    cout: 2,
    kernel: [3, 3],
    pads: [1, 1, 1, 1],
  };
  const variants: [string, UpConvCase][] = [
    ["stride 2", { ...base, strides: [2, 2] }],
    ["dilation 2", { ...base, dilations: [2, 2], pads: [2, 2, 2, 2] }],
    ["linear", { ...base, resize: { mode: "linear" } }],
    ["×1.5", { ...base, dims: [1, 2, 4, 4], scales: [1, 1, 1.5, 1.5] }],
    ["pads ≥ k", { ...base, pads: [3, 3, 3, 3] }],
  ];
  for (const [label, o] of variants) {
    await checkOp(`upconv-no-${label}`, upConv(o));
    const g = new GraphBuilder("uc", 17);
    upConv(o)(g, "float32");
    const v = await vjpTransform(g.toBytes(), ["y"], ["x"]);
    assert.equal(v.stats.units["vjp.UpConv"] ?? 0, 0, label);
  }
  // w differentiated: the node-by-node rules (its gradient needs the upsampled tensor)
  const g = new GraphBuilder("uc-w", 17);
  upConv(base)(g, "float32");
  const v = await vjpTransform(g.toBytes(), ["y"], ["x", "w"]);
  assert.equal(v.stats.units["vjp.UpConv"] ?? 0, 0, "w with a gradient");
  await checkGradient("upconv-w", "float32", (b, t) => ({
    ...upConv(base)(b, t),
    wrtInitializers: ["w"],
  }));
});
