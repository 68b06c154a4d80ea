/**
 * Per-op gradient checks of the VJP transform: normalisations (InstanceNormalization with general
 * and unit affine parameters, the exported GroupNorm pattern, LayerNormalization over one and
 * several axes, GroupNormalization opset 18 and 21, BatchNormalization, LpNormalization).
 */
import type { GraphBuilder } from "../core/onnx/builder.ts";
import { checkGradient, checkOp, type FloatName, uniform } from "./onnx_vjp_harness.ts";

const eps = (v: number) => ({ epsilon: { kind: "float" as const, value: v } });

Deno.test("vjp op InstanceNormalization: ∂x, ∂scale, ∂bias; unit affine (x̂ = y shortcut)", async () => {
  await checkOp("InstanceNorm-affine", (g, t) => {
    const x = g.input("x", t, [2, 3, 4, 5]);
    const s = g.input("s", t, [3]);
    const b = g.input("b", t, [3]);
    g.output(g.op("InstanceNormalization", [x, s, b], eps(1e-3)), "y", t);
    return {
      inputs: [{ name: "x", dims: [2, 3, 4, 5] }, { name: "s", dims: [3] }, {
        name: "b",
        dims: [3],
      }],
      outputs: ["y"],
    };
  });
  await checkOp("InstanceNorm-unit", (g, t) => {
    const x = g.input("x", t, [1, 4, 6]);
    const s = g.initializer("ones", t, [4], [1, 1, 1, 1]);
    const b = g.initializer("zeros", t, [4], [0, 0, 0, 0]);
    g.output(g.op("InstanceNormalization", [x, s, b], eps(1e-5)), "y", t);
    return {
      inputs: [{
        name: "x",
        dims: [1, 4, 6],
        values: (r, n) => Array.from({ length: n }, () => 2 + r.normal()),
      }],
      outputs: ["y"],
    };
  });
});

Deno.test("vjp GroupNorm export pattern: Reshape → InstanceNormalization(1, 0) → Reshape → Mul γ → Add β", async () => {
  await checkOp("GroupNorm-pattern", (g: GraphBuilder, t: FloatName) => {
    const [n, c, h, w, groups] = [2, 6, 4, 4, 3];
    const x = g.input("x", t, [n, c, h, w]);
    const r = g.op("Reshape", [x, g.constI("s1", [n, groups, -1])]);
    const ones = g.initializer("one", t, [groups], new Array(groups).fill(1));
    const zeros = g.initializer("zero", t, [groups], new Array(groups).fill(0));
    const inorm = g.op("InstanceNormalization", [r, ones, zeros], eps(1e-5));
    const back = g.op("Reshape", [inorm, g.op("Shape", [x])]);
    const gamma = g.input("gamma", t, [c, 1, 1]);
    const beta = g.input("beta", t, [c, 1, 1]);
    g.output(g.op("Add", [g.op("Mul", [back, gamma]), beta]), "y", t);
    return {
      inputs: [
        { name: "x", dims: [n, c, h, w] },
        { name: "gamma", dims: [c, 1, 1] },
        { name: "beta", dims: [c, 1, 1] },
      ],
      outputs: ["y"],
    };
  });
});

Deno.test("vjp op LayerNormalization: last axis, several axes, no bias, float64 and float32", async () => {
  const cases: [string, number[], number, boolean][] = [
    ["last", [2, 3, 8], -1, true],
    ["axis1", [2, 3, 4, 4], 1, true],
    ["nobias", [3, 6], -1, false],
  ];
  for (const [name, dims, axis, bias] of cases) {
    for (const dtype of ["float32", "float64"] as FloatName[]) {
      await checkGradient(`LayerNorm-${name}-${dtype}`, dtype, (g, t) => {
        const pd = dims.slice(axis < 0 ? dims.length + axis : axis);
        const x = g.input("x", t, dims);
        const s = g.input("s", t, pd);
        const ins = [x, s];
        const inputs = [{ name: "x", dims }, { name: "s", dims: pd }];
        if (bias) {
          ins.push(g.input("b", t, pd));
          inputs.push({ name: "b", dims: pd });
        }
        g.output(g.op("LayerNormalization", ins, { axis, ...eps(1e-5) }), "y", t);
        return { inputs, outputs: ["y"] };
      });
    }
  }
});

Deno.test("vjp op GroupNormalization: opset 18 (per-group γ, β) and opset 21 (per-channel)", async () => {
  for (const opset of [18, 21]) {
    await checkOp(`GroupNormalization-${opset}`, (g, t) => {
      const [n, c, groups] = [2, 6, 3];
      const pd = opset === 18 ? [groups] : [c];
      const x = g.input("x", t, [n, c, 3, 3]);
      const s = g.input("s", t, pd);
      const b = g.input("b", t, pd);
      g.output(
        g.op("GroupNormalization", [x, s, b], { num_groups: groups, ...eps(1e-5) }),
        "y",
        t,
      );
      return {
        inputs: [{ name: "x", dims: [n, c, 3, 3] }, { name: "s", dims: pd }, {
          name: "b",
          dims: pd,
        }],
        outputs: ["y"],
      };
    }, { opset });
  }
});

Deno.test("vjp op BatchNormalization (inference) and LpNormalization", async () => {
  await checkOp("BatchNorm", (g, t) => {
    const x = g.input("x", t, [2, 3, 4]);
    const s = g.input("s", t, [3]);
    const b = g.input("b", t, [3]);
    const m = g.initializer("mean", t, [3], [0.1, -0.2, 0.3]);
    const v = g.initializer("var", t, [3], [0.5, 1.5, 2]);
    g.output(g.op("BatchNormalization", [x, s, b, m, v], eps(1e-3)), "y", t);
    return {
      inputs: [{ name: "x", dims: [2, 3, 4] }, { name: "s", dims: [3] }, {
        name: "b",
        dims: [3],
      }],
      outputs: ["y"],
    };
  });
  await checkOp("LpNorm", (g, t) => {
    const x = g.input("x", t, [3, 5]);
    g.output(g.op("LpNormalization", [x], { axis: -1, p: 2 }), "y", t);
    return { inputs: [{ name: "x", dims: [3, 5], values: uniform(0.2, 2) }], outputs: ["y"] };
  });
});
