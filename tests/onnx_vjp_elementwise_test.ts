/**
 * Per-op gradient checks of the VJP transform: elementwise ops (unary, binary with broadcasting,
 * activations, Softmax), against central finite differences.
 */
import { float } from "../core/onnx/builder.ts";
import {
  awayFromZero,
  type CaseInput,
  checkOp,
  type FloatName,
  uniform,
} from "./onnx_vjp_harness.ts";
import type { GraphBuilder } from "../core/onnx/builder.ts";
import type { RandomStream } from "../core/rng.ts";

type Attrs = Parameters<GraphBuilder["op"]>[2];

function unaryCase(op: string, attrs: Attrs = {}, values?: CaseInput["values"]) {
  return (g: GraphBuilder, t: FloatName) => {
    const x = g.input("x", t, [2, 3, 4]);
    g.output(g.op(op, [x], attrs), "y", t, [2, 3, 4]);
    return { inputs: [{ name: "x", dims: [2, 3, 4], values }], outputs: ["y"] };
  };
}

const UNARY: [string, Attrs, CaseInput["values"]?][] = [
  ["Identity", {}],
  ["Neg", {}],
  ["Abs", {}, awayFromZero()],
  ["Relu", {}, awayFromZero()],
  ["LeakyRelu", { alpha: float(0.1) }, awayFromZero()],
  ["Elu", { alpha: float(0.7) }, awayFromZero()],
  ["Selu", {}, awayFromZero()],
  ["Celu", { alpha: float(1.5) }, awayFromZero()],
  ["Sigmoid", {}],
  ["HardSigmoid", { alpha: float(0.2), beta: float(0.5) }, uniform(-2, 2)],
  ["HardSwish", {}, uniform(-2.5, 2.5)],
  ["Tanh", {}],
  ["Exp", {}],
  ["Log", {}, uniform(0.5, 3)],
  ["Sqrt", {}, uniform(0.5, 3)],
  ["Reciprocal", {}, uniform(0.5, 3)],
  ["Sin", {}],
  ["Cos", {}],
  ["Tan", {}, uniform(-1, 1)],
  ["Erf", {}],
  ["Softplus", {}],
  ["Softsign", {}, awayFromZero()],
  ["ThresholdedRelu", { alpha: float(0.5) }, awayFromZero(0.7)],
  ["Softmax", { axis: -1 }],
  ["Softmax", { axis: 1 }],
  ["LogSoftmax", { axis: -1 }],
];

for (const [op, attrs, values] of UNARY) {
  Deno.test(`vjp op ${op} ${JSON.stringify(attrs)}`, async () => {
    await checkOp(`${op}`, unaryCase(op, attrs, values));
  });
}

Deno.test("vjp op Gelu (opset 20, exact and tanh)", async () => {
  for (const approximate of ["none", "tanh"]) {
    await checkOp(`Gelu-${approximate}`, (g, t) => {
      const x = g.input("x", t, [3, 5]);
      g.output(g.op("Gelu", [x], { approximate }), "y", t, [3, 5]);
      return { inputs: [{ name: "x", dims: [3, 5] }], outputs: ["y"] };
    }, { opset: 20 });
  }
});

Deno.test("vjp op Mish (opset 18)", async () => {
  await checkOp("Mish", unaryCase("Mish"), { opset: 18 });
});

Deno.test("vjp op Clip with min/max inputs and without", async () => {
  await checkOp("Clip", (g, t) => {
    const x = g.input("x", t, [4, 5]);
    const lo = g.initializer("lo", t, [], [-0.5]);
    const hi = g.initializer("hi", t, [], [0.8]);
    g.output(g.op("Clip", [x, lo, hi]), "y", t, [4, 5]);
    g.output(g.op("Clip", [x, "", hi]), "y2", t, [4, 5]);
    return {
      inputs: [{
        name: "x",
        dims: [4, 5],
        values: (r, n) =>
          Array.from({ length: n }, (_, i) => [-1.2, -0.2, 0.3, 1.4][i % 4] + 0.05 * r.normal()),
      }],
      outputs: ["y", "y2"],
    };
  });
});

const BIN_SHAPES: [number[], number[]][] = [
  [[2, 3, 4], [2, 3, 4]],
  [[2, 3, 4], [4]],
  [[2, 1, 4], [3, 1]],
  [[1, 3, 1], [2, 3, 4]],
  [[2, 3, 4], []],
];

for (const op of ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"]) {
  Deno.test(`vjp op ${op} with broadcasting`, async () => {
    for (const [da, db] of BIN_SHAPES) {
      // PRelu broadcasts the slope to the input only (unidirectional)
      if (
        op === "PRelu" &&
        (db.length > da.length || da.some((d, i) => d === 1 && db[i - da.length + db.length] > 1))
      ) continue;
      await checkOp(`${op}[${da}]x[${db}]`, (g, t) => {
        const a = g.input("a", t, da);
        const b = g.input("b", t, db);
        const y = g.op(op, [a, b]);
        g.output(y, "y", t);
        const pos = op === "Pow" || op === "Div";
        // Max/Min: operands on interleaved grids so |a − b| ≥ 0.5 (no kink within the FD step)
        const grid = (off: number) => (r: RandomStream, n: number) =>
          Array.from({ length: n }, () => Math.floor(6 * r.uniform()) - 3 + off);
        const mm = op === "Max" || op === "Min";
        return {
          inputs: [
            {
              name: "a",
              dims: da,
              values: mm ? grid(0.25) : op === "Pow" ? uniform(0.5, 2) : awayFromZero(0.3),
            },
            {
              name: "b",
              dims: db,
              values: mm ? grid(0.75) : pos ? uniform(0.6, 2) : awayFromZero(0.3),
            },
          ],
          outputs: ["y"],
        };
      });
    }
  });
}

Deno.test("vjp op Pow with constant exponents 2, 0.5, 3 and -1", async () => {
  for (const p of [2, 0.5, 3, -1]) {
    await checkOp(`Pow-${p}`, (g, t) => {
      const x = g.input("x", t, [3, 4]);
      const e = g.initializer("p", t, [], [p]);
      g.output(g.op("Pow", [x, e]), "y", t, [3, 4]);
      return { inputs: [{ name: "x", dims: [3, 4], values: uniform(0.5, 2) }], outputs: ["y"] };
    });
  }
});

/** Integers plus a fixed offset: operands with different offsets never tie within an FD step. */
const grid3 = (off: number) => (r: RandomStream, n: number) =>
  Array.from({ length: n }, () => Math.floor(6 * r.uniform()) - 3 + off);

Deno.test("vjp op Sum / Mean / Max (variadic, broadcasting)", async () => {
  for (const op of ["Sum", "Mean", "Max", "Min"]) {
    await checkOp(`${op}-variadic`, (g, t) => {
      const a = g.input("a", t, [2, 3]);
      const b = g.input("b", t, [3]);
      const c = g.input("c", t, [2, 1]);
      g.output(g.op(op, [a, b, c]), "y", t, [2, 3]);
      return {
        inputs: [
          { name: "a", dims: [2, 3], values: grid3(0.1) },
          { name: "b", dims: [3], values: grid3(0.45) },
          { name: "c", dims: [2, 1], values: grid3(0.8) },
        ],
        outputs: ["y"],
      };
    });
  }
});

Deno.test("vjp op Where (both branches, broadcast condition)", async () => {
  await checkOp("Where", (g, t) => {
    const a = g.input("a", t, [2, 3, 4]);
    const b = g.input("b", t, [3, 1]);
    const cond = g.input("c", "bool", [1, 4]);
    g.output(g.op("Where", [cond, a, b]), "y", t, [2, 3, 4]);
    return {
      inputs: [
        { name: "a", dims: [2, 3, 4] },
        { name: "b", dims: [3, 1] },
        { name: "c", dims: [1, 4], type: "bool", values: () => [1, 0, 0, 1] },
      ],
      outputs: ["y"],
    };
  });
});

Deno.test("vjp op Cast float32 ↔ float64 inside a graph", async () => {
  await checkOp("Cast", (g, t) => {
    const x = g.input("x", t, [3, 4]);
    const other = t === "float64" ? 1 : 11;
    const c1 = g.op("Cast", [x], { to: other });
    const sq = g.op("Mul", [c1, c1]);
    const back = g.op("Cast", [sq], { to: t === "float64" ? 11 : 1 });
    g.output(back, "y", t, [3, 4]);
    return { inputs: [{ name: "x", dims: [3, 4] }], outputs: ["y"] };
  }, { tol: 2e-3, eps: 3e-2 });
});
