/**
 * Per-op gradient checks of the VJP transform: MatMul (batched, broadcasting, 1-D operands, shared
 * weights), Gemm (all transpose flags, α, β, broadcast C), Einsum, Conv (strides, pads incl.
 * asymmetric and auto_pad, dilations, groups; input, weight and bias gradients), ConvTranspose,
 * AveragePool and MaxPool, against central finite differences.
 */
import type { GraphBuilder } from "../core/onnx/builder.ts";
import { convOptions } from "../core/onnx/vjp/rules/conv.ts";
import { checkOp, type FloatName } from "./onnx_vjp_harness.ts";

type Attrs = Parameters<GraphBuilder["op"]>[2];

function twoInputs(da: number[], db: number[], op: string, attrs: Attrs = {}) {
  return (g: GraphBuilder, t: FloatName) => {
    const a = g.input("a", t, da);
    const b = g.input("b", t, db);
    g.output(g.op(op, [a, b], attrs), "y", t);
    return { inputs: [{ name: "a", dims: da }, { name: "b", dims: db }], outputs: ["y"] };
  };
}

Deno.test("vjp op MatMul: 2-D, batched, broadcast batch, shared weight, 1-D operands", async () => {
  const cases: [number[], number[]][] = [
    [[3, 4], [4, 5]],
    [[2, 3, 4], [2, 4, 5]],
    [[2, 1, 3, 4], [3, 4, 2]],
    [[2, 3, 4], [4, 5]],
    [[4], [4, 5]],
    [[2, 3, 4], [4]],
    [[4], [4]],
    [[3, 4], [2, 4, 5]],
  ];
  for (const [da, db] of cases) await checkOp(`MatMul[${da}]x[${db}]`, twoInputs(da, db, "MatMul"));
});

Deno.test("vjp op Gemm: transA/transB, alpha, beta, C broadcast", async () => {
  for (const transA of [0, 1]) {
    for (const transB of [0, 1]) {
      await checkOp(`Gemm-${transA}${transB}`, (g, t) => {
        const da = transA ? [4, 3] : [3, 4];
        const db = transB ? [5, 4] : [4, 5];
        const a = g.input("a", t, da);
        const b = g.input("b", t, db);
        const c = g.input("c", t, [5]);
        g.output(
          g.op("Gemm", [a, b, c], {
            transA,
            transB,
            alpha: { kind: "float", value: 0.7 },
            beta: { kind: "float", value: 1.3 },
          }),
          "y",
          t,
        );
        return {
          inputs: [{ name: "a", dims: da }, { name: "b", dims: db }, { name: "c", dims: [5] }],
          outputs: ["y"],
        };
      });
    }
  }
});

Deno.test("vjp op Einsum: matmul, batched attention, ellipsis, summed-out index, outer product", async () => {
  const cases: [string, number[], number[]][] = [
    ["ij,jk->ik", [3, 4], [4, 5]],
    ["bhqd,bhkd->bhqk", [1, 2, 3, 4], [1, 2, 5, 4]],
    ["...ij,...jk", [2, 3, 4], [2, 4, 2]],
    ["ij,kl->il", [3, 4], [2, 5]],
    ["i,j->ij", [3], [4]],
    ["bij,bj->bi", [2, 3, 4], [2, 4]],
  ];
  for (const [equation, da, db] of cases) {
    await checkOp(`Einsum-${equation}`, twoInputs(da, db, "Einsum", { equation }));
  }
});

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  attrs: Attrs;
  bias?: boolean;
}

const CONV_CASES: ConvCase[] = [
  { name: "3x3-pad1", x: [2, 3, 6, 6], w: [4, 3, 3, 3], attrs: { pads: [1, 1, 1, 1] }, bias: true },
  {
    name: "stride2-pad1",
    x: [1, 3, 7, 8],
    w: [4, 3, 3, 3],
    attrs: { strides: [2, 2], pads: [1, 1, 1, 1] },
  },
  {
    name: "stride2-asym",
    x: [1, 2, 7, 7],
    w: [3, 2, 3, 3],
    attrs: { strides: [2, 2], pads: [0, 0, 1, 1] },
  },
  {
    name: "dilation2",
    x: [1, 2, 8, 8],
    w: [2, 2, 3, 3],
    attrs: { dilations: [2, 2], pads: [2, 2, 2, 2] },
  },
  {
    name: "groups2",
    x: [1, 4, 5, 5],
    w: [6, 2, 3, 3],
    attrs: { group: 2, pads: [1, 1, 1, 1] },
    bias: true,
  },
  {
    name: "depthwise-stride2",
    x: [1, 3, 6, 6],
    w: [3, 1, 3, 3],
    attrs: { group: 3, strides: [2, 2] },
  },
  {
    name: "same-upper-s2",
    x: [1, 2, 7, 6],
    w: [2, 2, 3, 3],
    attrs: { auto_pad: "SAME_UPPER", strides: [2, 2] },
  },
  { name: "same-lower", x: [1, 2, 5, 5], w: [2, 2, 4, 4], attrs: { auto_pad: "SAME_LOWER" } },
  { name: "valid-1x1", x: [2, 3, 4, 4], w: [5, 3, 1, 1], attrs: { auto_pad: "VALID" }, bias: true },
  { name: "big-pad", x: [1, 2, 4, 4], w: [2, 2, 2, 2], attrs: { pads: [2, 1, 2, 3] } },
  { name: "1d-stride3", x: [2, 2, 11], w: [3, 2, 4], attrs: { strides: [3], pads: [1, 2] } },
  { name: "3d", x: [1, 2, 4, 4, 4], w: [2, 2, 3, 3, 3], attrs: { pads: [1, 0, 1, 1, 0, 1] } },
];

for (const cc of CONV_CASES) {
  Deno.test(`vjp op Conv ${cc.name}: ∂x, ∂w${cc.bias ? ", ∂b" : ""}`, async () => {
    await checkOp(`Conv-${cc.name}`, (g, t) => {
      const x = g.input("x", t, cc.x);
      const w = g.input("w", t, cc.w);
      const ins = [x, w];
      const inputs = [{ name: "x", dims: cc.x }, { name: "w", dims: cc.w }];
      if (cc.bias) {
        ins.push(g.input("b", t, [cc.w[0]]));
        inputs.push({ name: "b", dims: [cc.w[0]] });
      }
      g.output(g.op("Conv", ins, cc.attrs), "y", t);
      return { inputs, outputs: ["y"] };
    });
  });
}

Deno.test("vjp op Conv stride-1 input gradient: Conv-with-flipped-kernel and ConvTranspose forms agree", async () => {
  const saved = convOptions.stride1InputGrad;
  try {
    for (const form of ["conv", "convtranspose"] as const) {
      convOptions.stride1InputGrad = form;
      for (const cc of CONV_CASES.filter((c) => !("strides" in (c.attrs ?? {})))) {
        await checkOp(`Conv-${form}-${cc.name}`, (g, t) => {
          const x = g.input("x", t, cc.x);
          const w = g.constF("w", cc.w, cc.w.length ? seqValues(cc.w) : []);
          const wt = t === "float64" ? g.op("Cast", [w], { to: 11 }) : w;
          g.output(g.op("Conv", [x, wt], cc.attrs), "y", t);
          return { inputs: [{ name: "x", dims: cc.x }], outputs: ["y"] };
        });
      }
    }
  } finally {
    convOptions.stride1InputGrad = saved;
  }
});

function seqValues(dims: number[]): number[] {
  const n = dims.reduce((a, b) => a * b, 1);
  return Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + 0.3));
}

Deno.test("vjp op ConvTranspose: stride 2 with output_padding, pads, groups (∂x), ∂w, ∂b", async () => {
  const cases: { name: string; x: number[]; w: number[]; attrs: Attrs; wrtW: boolean }[] = [
    {
      name: "s2-op1",
      x: [1, 3, 4, 4],
      w: [3, 2, 3, 3],
      attrs: { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] },
      wrtW: true,
    },
    { name: "s1", x: [2, 2, 3, 3], w: [2, 3, 2, 2], attrs: {}, wrtW: true },
    {
      name: "groups",
      x: [1, 4, 3, 3],
      w: [4, 1, 3, 3],
      attrs: { group: 2, strides: [2, 2] },
      wrtW: false,
    },
    {
      name: "output_shape",
      x: [1, 2, 3, 3],
      w: [2, 2, 3, 3],
      attrs: { strides: [2, 2], output_shape: [6, 6] },
      wrtW: true,
    },
  ];
  for (const cc of cases) {
    await checkOp(`ConvTranspose-${cc.name}`, (g, t) => {
      const x = g.input("x", t, cc.x);
      const w = g.input("w", t, cc.w);
      const cout = cc.w[1] * ((cc.attrs as { group?: number }).group ?? 1);
      const b = g.input("b", t, [cout]);
      g.output(g.op("ConvTranspose", [x, w, b], cc.attrs), "y", t);
      return {
        inputs: [{ name: "x", dims: cc.x }, { name: "w", dims: cc.w, wrt: cc.wrtW }, {
          name: "b",
          dims: [cout],
        }],
        outputs: ["y"],
      };
    });
  }
});

Deno.test("vjp ops AveragePool (pads, count_include_pad, strides) and MaxPool (overlapping, strided)", async () => {
  const avg: [string, Attrs][] = [
    ["k2s2", { kernel_shape: [2, 2], strides: [2, 2] }],
    ["k3s1p1-excl", { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }],
    ["k3s2p1-incl", {
      kernel_shape: [3, 3],
      strides: [2, 2],
      pads: [1, 1, 1, 1],
      count_include_pad: 1,
    }],
  ];
  for (const [name, attrs] of avg) {
    await checkOp(`AveragePool-${name}`, (g, t) => {
      const x = g.input("x", t, [1, 2, 6, 5]);
      g.output(g.op("AveragePool", [x], attrs), "y", t);
      return { inputs: [{ name: "x", dims: [1, 2, 6, 5] }], outputs: ["y"] };
    });
  }
  const mx: [string, Attrs][] = [
    ["k2s2", { kernel_shape: [2, 2], strides: [2, 2] }],
    ["k3s1p1", { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }],
  ];
  for (const [name, attrs] of mx) {
    await checkOp(`MaxPool-${name}`, (g, t) => {
      const x = g.input("x", t, [1, 2, 6, 5]);
      g.output(g.op("MaxPool", [x], attrs), "y", t);
      return {
        inputs: [{
          name: "x",
          dims: [1, 2, 6, 5],
          // distinct values on a grid: no ties within a finite-difference step
          values: (r, n) => {
            const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1);
            for (let i = n - 1; i > 0; i--) {
              const j = Math.floor(r.uniform() * (i + 1));
              [v[i], v[j]] = [v[j], v[i]];
            }
            return v;
          },
        }],
        outputs: ["y"],
      };
    }, { eps: 3e-3 });
  }
});
