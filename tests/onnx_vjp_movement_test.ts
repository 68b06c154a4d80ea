/**
 * Per-op gradient checks of the VJP transform: data movement (Reshape family, Transpose, Expand,
 * Tile, Concat, Split, Slice, Pad, Gather*, Scatter*, Resize, DepthToSpace/SpaceToDepth, Trilu,
 * CumSum) and reductions, against central finite differences.
 */
import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { streams } from "../core/rng.ts";
import { awayFromZero, type CaseInput, checkOp, type FloatName } from "./onnx_vjp_harness.ts";

/** A shuffled grid (spacing apart): no ties within a finite-difference step. */
function distinct(spacing: number): CaseInput["values"] {
  return (r, n) => {
    const v = Array.from({ length: n }, (_, i) => (i - n / 2) * spacing);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r.uniform() * (i + 1));
      [v[i], v[j]] = [v[j], v[i]];
    }
    return v;
  };
}

type Attrs = Parameters<GraphBuilder["op"]>[2];

/** One-input case: x of dims → op(x, …consts) → y. */
function oneInput(
  dims: number[],
  body: (g: GraphBuilder, x: string, t: FloatName) => string,
  values?: CaseInput["values"],
) {
  return (g: GraphBuilder, t: FloatName) => {
    const x = g.input("x", t, dims);
    g.output(body(g, x, t), "y", t);
    return { inputs: [{ name: "x", dims, values }], outputs: ["y"] };
  };
}

Deno.test("vjp ops Reshape / Flatten / Squeeze / Unsqueeze / Transpose", async () => {
  await checkOp(
    "Reshape",
    oneInput([2, 3, 4], (g, x) => g.op("Reshape", [x, g.constI("s", [4, 0, -1])])),
  );
  await checkOp("Flatten", oneInput([2, 3, 4], (g, x) => g.op("Flatten", [x], { axis: 2 })));
  await checkOp("Squeeze", oneInput([2, 1, 4], (g, x) => g.op("Squeeze", [x, g.constI("a", [1])])));
  await checkOp(
    "Unsqueeze",
    oneInput([2, 4], (g, x) => g.op("Unsqueeze", [x, g.constI("a", [0, -1])])),
  );
  await checkOp(
    "Transpose",
    oneInput([2, 3, 4], (g, x) => g.op("Transpose", [x], { perm: [2, 0, 1] })),
  );
  await checkOp("Transpose-default", oneInput([2, 3, 4], (g, x) => g.op("Transpose", [x])));
});

Deno.test("vjp ops Expand and Tile", async () => {
  await checkOp(
    "Expand",
    oneInput([3, 1], (g, x) => g.op("Expand", [x, g.constI("s", [2, 3, 4])])),
  );
  await checkOp("Tile", oneInput([2, 3], (g, x) => g.op("Tile", [x, g.constI("r", [2, 3])])));
});

Deno.test("vjp ops Concat (3 operands, negative axis) and Split (sizes, equal, unused output)", async () => {
  await checkOp("Concat", (g, t) => {
    const a = g.input("a", t, [2, 3]);
    const b = g.input("b", t, [2, 1]);
    const c = g.input("c", t, [2, 2]);
    g.output(g.op("Concat", [a, b, c], { axis: -1 }), "y", t, [2, 6]);
    return {
      inputs: [{ name: "a", dims: [2, 3] }, { name: "b", dims: [2, 1] }, {
        name: "c",
        dims: [2, 2],
        wrt: false,
      }],
      outputs: ["y"],
    };
  });
  await checkOp("Split-sizes", (g, t) => {
    const x = g.input("x", t, [2, 6]);
    const [p, q, r] = g.opN("Split", [x, g.constI("s", [1, 2, 3])], 3, { axis: 1 });
    g.output(g.op("Mul", [p, p]), "y1", t);
    g.output(q, "y2", t);
    void r; // unused output: its gradient is zero
    return { inputs: [{ name: "x", dims: [2, 6] }], outputs: ["y1", "y2"] };
  });
  await checkOp("Split-equal", (g, t) => {
    const x = g.input("x", t, [4, 3]);
    const [p, q] = g.opN("Split", [x], 2, { axis: 0 });
    g.output(g.op("Mul", [p, q]), "y", t);
    return { inputs: [{ name: "x", dims: [4, 3] }], outputs: ["y"] };
  });
  await checkOp("Split-num_outputs-18", (g, t) => {
    const x = g.input("x", t, [5, 2]);
    const [p, q] = g.opN("Split", [x], 2, { axis: 0, num_outputs: 2 });
    g.output(g.op("Concat", [q, p], { axis: 0 }), "y", t);
    return { inputs: [{ name: "x", dims: [5, 2] }], outputs: ["y"] };
  }, { opset: 18 });
});

Deno.test("vjp op Slice (steps 1, negative indices, steps 2 and -1, clamped ends)", async () => {
  const cases: [string, number[], number[], number[], number[]?][] = [
    ["basic", [1, 0], [3, 2], [0, 2]],
    ["negative", [-3], [-1], [1]],
    ["step2", [0, 1], [4, 100], [0, 1], [2, 2]],
    ["reverse", [-1], [-100], [2], [-1]],
    ["reverse-step2", [3, 4], [0, 0], [0, 2], [-2, -3]],
  ];
  for (const [name, st, en, ax, steps] of cases) {
    await checkOp(
      `Slice-${name}`,
      oneInput([4, 5, 6], (g, x) => {
        const ins = [x, g.constI("st", st), g.constI("en", en), g.constI("ax", ax)];
        if (steps) ins.push(g.constI("sp", steps));
        return g.op("Slice", ins);
      }),
    );
  }
});

Deno.test("vjp op Pad (constant incl. negative pads, reflect, edge, wrap; axes input)", async () => {
  const cases: [string, number[], string, number[]?][] = [
    ["constant", [0, 1, 2, 0, 2, 1], "constant"],
    ["crop", [0, -1, 1, 0, 2, -2], "constant"],
    ["reflect", [0, 2, 1, 0, 1, 2], "reflect"],
    ["edge", [0, 1, 3, 0, 2, 1], "edge"],
    ["wrap", [0, 1, 2, 0, 2, 1], "wrap"],
    ["axes", [1, 2], "reflect", [-1]],
  ];
  for (const [name, pads, mode, axes] of cases) {
    await checkOp(
      `Pad-${name}`,
      oneInput([2, 4, 5], (g, x) => {
        const ins = [x, g.constI("p", pads)];
        if (axes) ins.push("", g.constI("ax", axes));
        return g.op("Pad", ins, { mode });
      }),
      { opset: mode === "wrap" || axes ? 19 : 17 },
    );
  }
});

Deno.test("vjp ops Gather (axis 0/1, repeated and negative indices), GatherElements, GatherND", async () => {
  for (const axis of [0, 1]) {
    await checkOp(`Gather-axis${axis}`, (g, t) => {
      const x = g.input("x", t, [4, 5]);
      const idx = g.constI("i", [1, -1, 1, 0], [2, 2]);
      g.output(g.op("Gather", [x, idx], { axis }), "y", t);
      return { inputs: [{ name: "x", dims: [4, 5] }], outputs: ["y"] };
    });
  }
  await checkOp("Gather-scalar-index", (g, t) => {
    const x = g.input("x", t, [3, 4, 2]);
    const idx = g.constI("i", [2], []);
    g.output(g.op("Gather", [x, idx], { axis: 1 }), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4, 2] }], outputs: ["y"] };
  });
  await checkOp("Gather-index-input", (g, t) => {
    const x = g.input("x", t, [6, 3]);
    const idx = g.input("ids", "int64", [1, 4]);
    g.output(g.op("Gather", [x, idx]), "y", t);
    return {
      inputs: [{ name: "x", dims: [6, 3] }, {
        name: "ids",
        dims: [1, 4],
        type: "int64",
        values: () => [5, 0, 5, 2],
      }],
      outputs: ["y"],
    };
  });
  await checkOp("GatherElements", (g, t) => {
    const x = g.input("x", t, [3, 4]);
    const idx = g.constI("i", [0, 3, 3, 1, 2, 2], [3, 2]);
    g.output(g.op("GatherElements", [x, idx], { axis: 1 }), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4] }], outputs: ["y"] };
  });
  await checkOp("GatherND", (g, t) => {
    const x = g.input("x", t, [3, 4, 2]);
    const idx = g.constI("i", [0, 1, 2, 3, 0, 1], [3, 2]);
    g.output(g.op("GatherND", [x, idx]), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4, 2] }], outputs: ["y"] };
  });
});

Deno.test("vjp ops ScatterND and ScatterElements (data and updates)", async () => {
  await checkOp("ScatterND", (g, t) => {
    const x = g.input("x", t, [4, 3]);
    const u = g.input("u", t, [2, 3]);
    const idx = g.constI("i", [3, 1], [2, 1]);
    g.output(g.op("ScatterND", [x, idx, u]), "y", t);
    return { inputs: [{ name: "x", dims: [4, 3] }, { name: "u", dims: [2, 3] }], outputs: ["y"] };
  });
  await checkOp("ScatterElements", (g, t) => {
    const x = g.input("x", t, [3, 4]);
    const u = g.input("u", t, [3, 2]);
    const idx = g.constI("i", [0, 3, 1, 2, 2, 0], [3, 2]);
    g.output(g.op("ScatterElements", [x, idx, u], { axis: 1 }), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4] }, { name: "u", dims: [3, 2] }], outputs: ["y"] };
  });
});

Deno.test("vjp op Resize (nearest ×2 asymmetric/floor, half_pixel; linear; cubic; sizes; downsampling)", async () => {
  const cases: [string, Attrs, number[] | null, number[] | null][] = [
    [
      "nearest-x2-asym-floor",
      {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      },
      [1, 1, 2, 2],
      null,
    ],
    ["nearest-x2-halfpixel", { mode: "nearest" }, [1, 1, 2, 2], null],
    ["nearest-x1.5", { mode: "nearest" }, [1, 1, 1.5, 1.5], null],
    ["linear-x2-halfpixel", { mode: "linear" }, [1, 1, 2, 2], null],
    ["linear-align", { mode: "linear", coordinate_transformation_mode: "align_corners" }, null, [
      1,
      2,
      7,
      5,
    ]],
    [
      "linear-pytorch-down",
      {
        mode: "linear",
        coordinate_transformation_mode: "pytorch_half_pixel",
      },
      [1, 1, 0.5, 0.75],
      null,
    ],
    [
      "cubic",
      { mode: "cubic", cubic_coeff_a: { kind: "float", value: -0.5 } },
      [1, 1, 2, 1.5],
      null,
    ],
    ["cubic-exclude", { mode: "cubic", exclude_outside: 1 }, [1, 1, 2, 2], null],
  ];
  for (const [name, attrs, scales, sizes] of cases) {
    await checkOp(
      `Resize-${name}`,
      oneInput([1, 2, 4, 4], (g, x) => {
        const ins = [x, ""];
        if (scales) ins.push(g.constF("sc", [4], scales));
        else ins.push("", g.constI("sz", sizes!));
        return g.op("Resize", ins, attrs);
      }),
    );
  }
});

Deno.test("vjp ops DepthToSpace (DCR, CRD), SpaceToDepth, Trilu, CumSum", async () => {
  for (const mode of ["DCR", "CRD"]) {
    await checkOp(
      `DepthToSpace-${mode}`,
      oneInput([1, 8, 2, 3], (g, x) => g.op("DepthToSpace", [x], { blocksize: 2, mode })),
    );
  }
  await checkOp(
    "SpaceToDepth",
    oneInput([1, 2, 4, 6], (g, x) => g.op("SpaceToDepth", [x], { blocksize: 2 })),
  );
  await checkOp(
    "Trilu",
    oneInput([2, 4, 4], (g, x) => g.op("Trilu", [x, g.constI("k", [1], [])], { upper: 0 })),
  );
  for (const [exclusive, reverse] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
    await checkOp(
      `CumSum-${exclusive}${reverse}`,
      oneInput(
        [3, 4],
        (g, x) => g.op("CumSum", [x, g.constI("ax", [1], [])], { exclusive, reverse }),
      ),
    );
  }
});

Deno.test("vjp reductions (Sum/Mean/SumSquare/L2/L1/LogSumExp/Max/Min; keepdims; opset 17 and 18)", async () => {
  const ops = [
    "ReduceSum",
    "ReduceMean",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceL1",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMin",
  ];
  for (const opset of [17, 18]) {
    for (const op of ops) {
      for (
        const [axes, keepdims] of [[[1], 1], [[0, 2], 0], [[-1], 0], [[], 1]] as [
          number[],
          number,
        ][]
      ) {
        const axesAsInput = op === "ReduceSum" || opset >= 18;
        await checkOp(
          `${op}-${opset}-[${axes}]-${keepdims}`,
          oneInput([2, 3, 4], (g, x) => {
            if (axes.length === 0) return g.op(op, [x], { keepdims });
            return axesAsInput
              ? g.op(op, [x, g.constI("ax", axes)], { keepdims })
              : g.op(op, [x], { axes, keepdims });
          }, op === "ReduceL1" ? awayFromZero() : undefined),
          { opset },
        );
      }
    }
  }
});

Deno.test("vjp global pools (GlobalAveragePool, GlobalMaxPool)", async () => {
  await checkOp(
    "GlobalAveragePool",
    oneInput([2, 3, 4, 5], (g, x) => g.op("GlobalAveragePool", [x])),
  );
  await checkOp(
    "GlobalMaxPool",
    oneInput([2, 3, 4, 5], (g, x) => g.op("GlobalMaxPool", [x]), distinct(0.3)),
    { eps: 3e-3 },
  );
});

Deno.test("vjp op Resize: nearest rounding modes, half_pixel_symmetric (opset 19), axes attribute (opset 18), sizes", async () => {
  const cases: [string, Attrs, number[] | null, number[] | null, number, number[]?][] = [
    [
      "round_prefer_ceil",
      { mode: "nearest", nearest_mode: "round_prefer_ceil" },
      [1, 1, 1.6, 2.5],
      null,
      17,
    ],
    [
      "ceil-align",
      {
        mode: "nearest",
        nearest_mode: "ceil",
        coordinate_transformation_mode: "align_corners",
      },
      null,
      [1, 2, 7, 3],
      17,
    ],
    ["nearest-down-sizes", { mode: "nearest" }, null, [1, 2, 3, 2], 17],
    [
      "half_pixel_symmetric",
      {
        mode: "linear",
        coordinate_transformation_mode: "half_pixel_symmetric",
      },
      [1, 1, 1.7, 0.6],
      null,
      19,
    ],
    ["axes-attr", { mode: "linear", axes: [2, 3] }, [2, 1.5], null, 18],
  ];
  for (const [name, attrs, scales, sizes, opset] of cases) {
    await checkOp(
      `Resize-${name}`,
      oneInput([1, 2, 4, 4], (g, x) => {
        const ins = [x, ""];
        if (scales) ins.push(g.constF("sc", [scales.length], scales));
        else ins.push("", g.constI("sz", sizes!));
        return g.op("Resize", ins, attrs);
      }),
      { opset },
    );
  }
});

Deno.test("vjp ops Dropout (inference, with mask output), CastLike, Flatten axis 0", async () => {
  await checkOp("Dropout", (g, t) => {
    const x = g.input("x", t, [3, 4]);
    const [y, mask] = g.opN("Dropout", [x, g.initializer("ratio", t, [], [0.3])], 2);
    void mask;
    g.output(g.op("Mul", [y, y]), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4] }], outputs: ["y"] };
  });
  await checkOp("CastLike", (g, t) => {
    const x = g.input("x", t, [3, 4]);
    const like = g.initializer("like", t === "float64" ? "float32" : "float64", [], [0]);
    const c = g.op("CastLike", [x, like]);
    g.output(g.op("CastLike", [g.op("Mul", [c, c]), x]), "y", t);
    return { inputs: [{ name: "x", dims: [3, 4] }], outputs: ["y"] };
  }, { tol: 2e-3, eps: 3e-2 });
  await checkOp("Flatten0", oneInput([2, 3, 4], (g, x) => g.op("Flatten", [x], { axis: 0 })));
});

Deno.test("vjp op TopK (values output; largest and smallest)", async () => {
  for (const largest of [1, 0]) {
    await checkOp(`TopK-${largest}`, (g, t) => {
      const x = g.input("x", t, [3, 6]);
      const [v] = g.opN("TopK", [x, g.constI("k", [2])], 2, { axis: 1, largest });
      g.output(g.op("Mul", [v, v]), "y", t);
      return { inputs: [{ name: "x", dims: [3, 6], values: distinct(0.3) }], outputs: ["y"] };
    }, { eps: 3e-3 });
  }
});

Deno.test("vjp op Resize nearest integer upsampling: the block sums (depthwise ones Conv for float32 spatial blocks, ReduceSum otherwise) equal the adjoint exactly", async () => {
  // [dims, scales, path expected for float32]
  const cases: [number[], number[], "Conv" | "ReduceSum"][] = [
    [[1, 3, 4, 5], [1, 1, 2, 2], "Conv"],
    [[2, 3, 4, 5], [1, 1, 2, 3], "Conv"], // batch 2, different factors per axis
    [[1, 3, 4, 5], [1, 1, 1, 2], "Conv"], // one spatial axis (kernel 1 on the other)
    [[1, 2, 6], [1, 1, 3], "Conv"], // rank 3 (Conv1d)
    [[1, 2, 2, 3, 2], [1, 1, 2, 1, 2], "Conv"], // rank 5 (Conv3d)
    [[1, 2, 3, 3], [1, 2, 2, 2], "ReduceSum"], // the channel axis replicated: no Conv
  ];
  const rng = streams(7).get("vjp-resize-block");
  for (const [dims, scales, path] of cases) {
    for (const t of ["float32", "float64"] as const) {
      const g = new GraphBuilder(`resize-${dims}-${t}`);
      const x = g.input("x", t, dims);
      const attrs = {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      };
      const sc = g.constF("sc", [scales.length], scales);
      g.output(g.op("Resize", [x, "", sc], attrs), "y", t);
      const vjp = await vjpTransform(g.toBytes(), ["y"], ["x"]);
      const want = t === "float32" ? path : "ReduceSum";
      const other = want === "Conv" ? "ReduceSum" : "Conv";
      assert.ok(vjp.stats.backwardOps.includes(want), `${dims}×${scales} ${t}: ${want} emitted`);
      assert.ok(!vjp.stats.backwardOps.includes(other), `${dims}×${scales} ${t}: no ${other}`);
      if (t === "float64") continue; // ONNX Runtime has no double Resize kernel on CPU
      const yd = dims.map((d, i) => d * scales[i]);
      const xv = new Float32Array(numel(dims)), w = new Float32Array(numel(yd));
      rng.fillNormal(xv);
      rng.fillNormal(w);
      const s = await ort.InferenceSession.create(vjp.bytes());
      const out = await s.run({
        x: new ort.Tensor("float32", xv, dims),
        [vjp.cotangentName("y")]: new ort.Tensor("float32", w, yd),
      });
      await s.release();
      const got = out[vjp.gradName("x")].data as Float32Array;
      // the adjoint of replication: each x element receives the sum of its block of w (float64)
      const ref = new Float64Array(numel(dims));
      const xs = strides(dims), ys = strides(yd);
      for (let j = 0; j < w.length; j++) {
        let k = 0;
        for (let a = 0; a < yd.length; a++) {
          k += Math.floor(Math.floor(j / ys[a]) % yd[a] / scales[a]) * xs[a];
        }
        ref[k] += w[j];
      }
      const block = scales.reduce((p, q) => p * q, 1);
      for (let i = 0; i < ref.length; i++) {
        // float32 sum of `block` terms of magnitude ≤ 5: a few ulps of the partial sums
        assert.ok(
          Math.abs(got[i] - ref[i]) <= block * 5 * 2 ** -23 * 4,
          `${dims}×${scales} [${i}]`,
        );
      }
    }
  }
});

function strides(d: number[]): number[] {
  const s = new Array(d.length).fill(1);
  for (let i = d.length - 2; i >= 0; i--) s[i] = s[i + 1] * d[i + 1];
  return s;
}

function numel(d: number[]): number {
  return d.reduce((p, q) => p * q, 1);
}
