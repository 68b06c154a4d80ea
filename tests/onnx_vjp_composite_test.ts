/**
 * Composite graphs with the architecture of SD blocks, a VAE encoder, a CLIP text encoder and the
 * built-in exact model: gradients w.r.t. the latent input and the conditioning embedding against
 * finite differences; and the adjoint identity ⟨J v, w⟩ = ⟨v, Jᵀ w⟩ on linear graphs.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import {
  clipTextGraph,
  exactUnetGraph,
  sdBlockGraph,
  vaeEncoderGraph,
} from "../core/onnx/vjp/fixtures.ts";
import { streams } from "../core/rng.ts";
import { checkBuilt, SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";

/**
 * float32 deep graphs: FD by a least-squares polynomial through 25 points (rounding noise of ~20
 * float32 layers would otherwise dominate a two-point difference); ORT has no double Conv.
 */
const F32_DEEP = { fd: "polyfit" as const, eps: 1e-2, directions: 4 };

Deno.test("vjp composite: SD UNet blocks — ∂/∂sample and ∂/∂encoder_hidden_states vs FD", async () => {
  const cfg = { ...SMALL_SD_BLOCK };
  const rep = await checkBuilt("sd-block", "float32", {
    bytes: sdBlockGraph(cfg),
    inputs: [
      { name: "sample", dims: [1, 4, 8, 8] },
      { name: "timestep", dims: [1], values: () => [417], wrt: false },
      { name: "encoder_hidden_states", dims: [1, 5, 12] },
    ],
    outputs: ["out_sample"],
  }, F32_DEEP);
  assert.ok(rep.backwardNodes > 100);
  // standard ops only
  for (const op of rep.backwardOps) assert.ok(!op.includes(":"), op);
});

Deno.test("vjp composite: VAE-encoder patterns (Pad + stride-2 Conv, mid attention) vs FD", async () => {
  await checkBuilt("vae-encoder", "float32", {
    bytes: vaeEncoderGraph(8, 8, 8),
    inputs: [{ name: "sample", dims: [1, 3, 8, 8] }],
    outputs: ["latent_parameters"],
  }, F32_DEEP);
});

Deno.test("vjp composite: CLIP text-encoder patterns — ∂/∂token_embedding (initializer), integer mask plumbing skipped", async () => {
  const rep = await checkBuilt("clip-text", "float32", {
    bytes: clipTextGraph(),
    inputs: [{ name: "input_ids", dims: [1, 6], type: "int64", values: () => [0, 5, 3, 3, 19, 2] }],
    outputs: ["last_hidden_state", "pooler_output"],
    wrtInitializers: ["token_embedding"],
  }, F32_DEEP);
  assert.ok(rep.backwardNodes > 20);
});

Deno.test("vjp composite: built-in exact model structure (float64) — ∂/∂sample, ∂/∂encoder_hidden_states", async () => {
  await checkBuilt("exact-unet", "float64", {
    bytes: exactUnetGraph(4, 5, 4, 12, "float64"),
    inputs: [
      { name: "sample", dims: [1, 3, 4, 5] },
      { name: "timestep", dims: [], values: () => [311.2], wrt: false },
      {
        name: "encoder_hidden_states",
        dims: [1, 4, 12],
        values: (r, n) => Array.from({ length: n }, () => 0.5 * r.normal()),
      },
    ],
    outputs: ["out_sample"],
  });
});

/** ⟨A v, w⟩ (forward) vs ⟨v, Aᵀ w⟩ (VJP) for a linear graph. */
async function adjointGap(
  bytes: Uint8Array,
  dims: number[],
  type: "float32" | "float64",
  seed: number,
) {
  const vg = await vjpTransform(bytes, ["y"], ["x"]);
  const s = await ort.InferenceSession.create(vg.bytes());
  const rng = streams(seed).get("adjoint");
  const n = dims.reduce((a, b) => a * b, 1);
  const A = type === "float32" ? Float32Array : Float64Array;
  const v = A.from(Array.from({ length: n }, () => rng.normal()));
  // one run to learn the output size, then the real one
  const probe = await (await ort.InferenceSession.create(bytes)).run({
    x: new ort.Tensor(type, v, dims),
  });
  const yd = probe.y.dims as number[];
  const m = yd.reduce((a, b) => a * b, 1);
  const w = A.from(Array.from({ length: m }, () => rng.normal()));
  const r = await s.run({
    x: new ort.Tensor(type, v, dims),
    "y.cotangent": new ort.Tensor(type, w, yd),
  });
  const Av = r.y.data as Float64Array;
  const ATw = r["x.grad"].data as Float64Array;
  let lhs = 0, rhs = 0, scale = 0;
  for (let i = 0; i < m; i++) {
    lhs += Av[i] * w[i];
    scale += Math.abs(Av[i] * w[i]);
  }
  for (let i = 0; i < n; i++) rhs += v[i] * ATw[i];
  await s.release();
  return Math.abs(lhs - rhs) / scale;
}

Deno.test("vjp adjoint identity ⟨Jv, w⟩ = ⟨v, Jᵀw⟩ on linear graphs", async () => {
  // float64: MatMul, Slice (step 2), Pad reflect, Gather, Transpose, Einsum, Tile, ReduceSum, Concat
  {
    const g = new GraphBuilder("lin64");
    const x = g.input("x", "float64", [2, 3, 6]);
    const M = g.initializer(
      "M",
      "float64",
      [6, 4],
      Array.from({ length: 24 }, (_, i) => Math.cos(i)),
    );
    const K = g.initializer(
      "K",
      "float64",
      [3, 5],
      Array.from({ length: 15 }, (_, i) => Math.sin(2 * i)),
    );
    const a = g.op("MatMul", [x, M]);
    const b = g.op("Slice", [
      x,
      g.constI("s", [0]),
      g.constI("e", [6]),
      g.constI("a", [2]),
      g.constI("st", [2]),
    ]);
    const c = g.op("Pad", [b, g.constI("p", [0, 0, 2, 0, 0, 1])], { mode: "reflect" });
    const d = g.op("Transpose", [g.op("Gather", [x, g.constI("i", [2, 0, 2])], { axis: 2 })], {
      perm: [0, 2, 1],
    });
    const e = g.op("Einsum", [x, K], { equation: "abc,bd->adc" });
    const f = g.op(
      "ReduceSum",
      [g.op("Tile", [e, g.constI("r", [1, 2, 1])]), g.constI("ax", [1])],
      { keepdims: 1 },
    );
    const flat = (t: string) => g.op("Reshape", [t, g.constI("flat", [-1])]);
    g.output(g.op("Concat", [flat(a), flat(c), flat(d), flat(f)], { axis: 0 }), "y", "float64");
    const gap = await adjointGap(g.toBytes(), [2, 3, 6], "float64", 1);
    assert.ok(gap < 1e-12, `float64 adjoint gap ${gap}`);
  }
  // float32: Conv (stride 2, groups), ConvTranspose, Resize linear, AveragePool, nearest upsample
  {
    const g = new GraphBuilder("lin32");
    const x = g.input("x", "float32", [1, 4, 8, 8]);
    const w = g.constF("w", [6, 2, 3, 3], Array.from({ length: 108 }, (_, i) => Math.sin(i)));
    const c1 = g.op("Conv", [x, w], { strides: [2, 2], pads: [1, 1, 1, 1], group: 2 });
    const wt = g.constF(
      "wt",
      [6, 4, 3, 3],
      Array.from({ length: 216 }, (_, i) => Math.cos(0.3 * i)),
    );
    const c2 = g.op("ConvTranspose", [c1, wt], {
      strides: [2, 2],
      pads: [1, 1, 1, 1],
      output_padding: [1, 1],
    });
    const r = g.op("Resize", [c2, "", g.constF("sc", [4], [1, 1, 1.5, 1.5])], { mode: "linear" });
    const p = g.op("AveragePool", [r], {
      kernel_shape: [3, 3],
      pads: [1, 1, 1, 1],
      strides: [2, 2],
    });
    const u = g.op("Resize", [p, "", g.constF("sc2", [4], [1, 1, 2, 2])], {
      mode: "nearest",
      coordinate_transformation_mode: "asymmetric",
      nearest_mode: "floor",
    });
    g.output(u, "y", "float32");
    const gap = await adjointGap(g.toBytes(), [1, 4, 8, 8], "float32", 2);
    assert.ok(gap < 1e-5, `float32 adjoint gap ${gap}`);
  }
});
