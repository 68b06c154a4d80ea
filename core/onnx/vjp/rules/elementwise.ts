/**
 * Gradient rules of elementwise ops. Notation: x input, y output, ḡ upstream gradient, unb(·) the
 * sum over broadcast axes down to the operand's shape.
 *
 * @module
 */
import { floatAttr, intAttr, normAxis, strAttr } from "../graph.ts";
import type { Rule, RuleCtx } from "../rule.ts";

/** Emit a unary rule dx = f(ḡ, x, y). */
function unary(f: (c: RuleCtx, g: string, x: string, y: string) => string): Rule {
  return (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    c.add(0, f(c, g, c.x(0), c.y(0)));
  };
}

/** A scalar constant in the element type of tensor `like`. */
function k(c: RuleCtx, v: number, like: string): string {
  return c.e.scalar(v, c.dtype(like));
}

/** Binary op gradient with broadcasting: add unb(full_i) for each needed operand. */
function addUnb(c: RuleCtx, i: number, full: string) {
  c.add(i, c.e.unbroadcast(full, c.dims(c.y(0)), c.dims(c.x(i))));
}

/** Rules of this module, by op type. */
export const elementwiseRules: Record<string, Rule> = {
  Identity: unary((_c, g) => g),
  Dropout: unary((_c, g) => g),
  Neg: unary((c, g) => c.e.neg(g)),
  // d|x| = sign(x)
  Abs: unary((c, g, x) => c.e.mul(g, c.e.sign(x, c.dtype(x)))),
  // dReLU = [x > 0]
  Relu: unary((c, g, x) => c.e.op("Where", [c.e.op("Greater", [x, k(c, 0, x)]), g, k(c, 0, x)])),
  // LeakyReLU: ḡ·(x > 0 ? 1 : α)
  LeakyRelu: unary((c, g, x) => {
    const alpha = floatAttr(c.a, "alpha", 0.01);
    const s = c.e.op("Where", [c.e.op("Greater", [x, k(c, 0, x)]), k(c, 1, x), k(c, alpha, x)]);
    return c.e.mul(g, s);
  }),
  // ELU: x > 0 ? ḡ : ḡ·(y + α)
  Elu: unary((c, g, x, y) => {
    const alpha = floatAttr(c.a, "alpha", 1);
    const neg = c.e.mul(g, c.e.add(y, k(c, alpha, x)));
    return c.e.op("Where", [c.e.op("Greater", [x, k(c, 0, x)]), g, neg]);
  }),
  // SELU: x > 0 ? γḡ : ḡ·(y + γα)
  Selu: unary((c, g, x, y) => {
    const alpha = floatAttr(c.a, "alpha", 1.67326319217681884765625);
    const gamma = floatAttr(c.a, "gamma", 1.05070102214813232421875);
    const pos = c.e.mul(g, k(c, gamma, x));
    const neg = c.e.mul(g, c.e.add(y, k(c, gamma * alpha, x)));
    return c.e.op("Where", [c.e.op("Greater", [x, k(c, 0, x)]), pos, neg]);
  }),
  // CELU: x > 0 ? ḡ : ḡ·(y/α + 1)
  Celu: unary((c, g, x, y) => {
    const alpha = floatAttr(c.a, "alpha", 1);
    const neg = c.e.mul(g, c.e.add(c.e.mul(y, k(c, 1 / alpha, x)), k(c, 1, x)));
    return c.e.op("Where", [c.e.op("Greater", [x, k(c, 0, x)]), g, neg]);
  }),
  // σ' = y(1 − y)
  Sigmoid: unary((c, g, x, y) => c.e.mul(g, c.e.mul(y, c.e.sub(k(c, 1, x), y)))),
  // HardSigmoid: α·[0 < αx + β < 1]
  HardSigmoid: unary((c, g, x, y) => {
    const alpha = floatAttr(c.a, "alpha", 0.2);
    const inside = c.e.op("And", [
      c.e.op("Greater", [y, k(c, 0, x)]),
      c.e.op("Less", [y, k(c, 1, x)]),
    ]);
    return c.e.op("Where", [inside, c.e.mul(g, k(c, alpha, x)), k(c, 0, x)]);
  }),
  // HardSwish y = x·clip(x/6 + ½, 0, 1): derivative 0 (x < −3), 1 (x > 3), (2x + 3)/6 between
  HardSwish: unary((c, g, x) => {
    const mid = c.e.add(c.e.mul(x, k(c, 1 / 3, x)), k(c, 0.5, x));
    const d = c.e.op("Where", [
      c.e.op("Less", [x, k(c, -3, x)]),
      k(c, 0, x),
      c.e.op("Where", [c.e.op("Greater", [x, k(c, 3, x)]), k(c, 1, x), mid]),
    ]);
    return c.e.mul(g, d);
  }),
  // tanh' = 1 − y²
  Tanh: unary((c, g, x, y) => c.e.mul(g, c.e.sub(k(c, 1, x), c.e.mul(y, y)))),
  Exp: unary((c, g, _x, y) => c.e.mul(g, y)),
  Log: unary((c, g, x) => c.e.div(g, x)),
  // (√x)' = 1/(2y)
  Sqrt: unary((c, g, x, y) => c.e.div(c.e.mul(g, k(c, 0.5, x)), y)),
  // (1/x)' = −y²
  Reciprocal: unary((c, g, _x, y) => c.e.neg(c.e.mul(g, c.e.mul(y, y)))),
  Sin: unary((c, g, x) => c.e.mul(g, c.e.op("Cos", [x]))),
  Cos: unary((c, g, x) => c.e.neg(c.e.mul(g, c.e.op("Sin", [x])))),
  // tan' = 1 + y²
  Tan: unary((c, g, x, y) => c.e.mul(g, c.e.add(k(c, 1, x), c.e.mul(y, y)))),
  // erf'(x) = 2/√π · exp(−x²)
  Erf: unary((c, g, x) => {
    const e2 = c.e.op("Exp", [c.e.neg(c.e.mul(x, x))]);
    return c.e.mul(g, c.e.mul(e2, k(c, 2 / Math.sqrt(Math.PI), x)));
  }),
  // softplus' = σ(x)
  Softplus: unary((c, g, x) => c.e.mul(g, c.e.op("Sigmoid", [x]))),
  // softsign' = 1/(1 + |x|)²
  Softsign: unary((c, g, x) => {
    const d = c.e.add(k(c, 1, x), c.e.op("Abs", [x]));
    return c.e.div(g, c.e.mul(d, d));
  }),
  // GELU (opset 20): exact Φ(x) + xφ(x); tanh form 0.5(1+t) + 0.5x(1−t²)·√(2/π)(1 + 3·0.044715x²)
  Gelu: unary((c, g, x) => {
    const e = c.e;
    if (strAttr(c.a, "approximate", "none") === "tanh") {
      const s = Math.sqrt(2 / Math.PI);
      const x2 = e.mul(x, x);
      const u = e.mul(e.mul(x, e.add(k(c, 1, x), e.mul(x2, k(c, 0.044715, x)))), k(c, s, x));
      const t = e.op("Tanh", [u]);
      const du = e.mul(e.add(k(c, 1, x), e.mul(x2, k(c, 3 * 0.044715, x))), k(c, s, x));
      const a = e.mul(e.add(k(c, 1, x), t), k(c, 0.5, x));
      const b = e.mul(e.mul(e.mul(x, k(c, 0.5, x)), e.sub(k(c, 1, x), e.mul(t, t))), du);
      return e.mul(g, e.add(a, b));
    }
    const cdf = e.mul(
      e.add(k(c, 1, x), e.op("Erf", [e.mul(x, k(c, Math.SQRT1_2, x))])),
      k(c, 0.5, x),
    );
    const pdf = e.mul(
      e.op("Exp", [e.mul(e.mul(x, x), k(c, -0.5, x))]),
      k(c, 1 / Math.sqrt(2 * Math.PI), x),
    );
    return e.mul(g, e.add(cdf, e.mul(x, pdf)));
  }),
  // Mish y = x·tanh(sp(x)): tanh(sp) + x·(1 − tanh²(sp))·σ(x)
  Mish: unary((c, g, x) => {
    const e = c.e;
    const t = e.op("Tanh", [e.op("Softplus", [x])]);
    const d = e.add(
      t,
      e.mul(e.mul(x, e.sub(k(c, 1, x), e.mul(t, t))), e.op("Sigmoid", [x])),
    );
    return e.mul(g, d);
  }),
  // ThresholdedRelu: [x > α]
  ThresholdedRelu: unary((c, g, x) => {
    const alpha = floatAttr(c.a, "alpha", 1);
    return c.e.op("Where", [c.e.op("Greater", [x, k(c, alpha, x)]), g, k(c, 0, x)]);
  }),
  // Clip: ḡ where min ≤ x ≤ max (bounds are treated as constants)
  Clip: (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const x = c.x(0);
    let mask: string | undefined;
    const lo = c.x(1) || (c.a.min !== undefined ? k(c, c.a.min as number, x) : "");
    const hi = c.x(2) || (c.a.max !== undefined ? k(c, c.a.max as number, x) : "");
    if (lo) mask = c.e.op("GreaterOrEqual", [x, lo]);
    if (hi) {
      const m2 = c.e.op("LessOrEqual", [x, hi]);
      mask = mask ? c.e.op("And", [mask, m2]) : m2;
    }
    c.add(0, mask ? c.e.op("Where", [mask, g, k(c, 0, x)]) : g);
  },
  // float ↔ float casts: cast the gradient back
  Cast: unary((c, g, x) => c.e.op("Cast", [g], { to: c.dtype(x) })),
  CastLike: unary((c, g, x) => c.e.op("Cast", [g], { to: c.dtype(x) })),

  Add: (c) => {
    const g = c.gy(0);
    if (!g) return;
    if (c.needs(0)) addUnb(c, 0, g);
    if (c.needs(1)) addUnb(c, 1, g);
  },
  Sub: (c) => {
    const g = c.gy(0);
    if (!g) return;
    if (c.needs(0)) addUnb(c, 0, g);
    if (c.needs(1)) addUnb(c, 1, c.e.neg(g));
  },
  Mul: (c) => {
    const g = c.gy(0);
    if (!g) return;
    if (c.needs(0)) addUnb(c, 0, c.e.mul(g, c.x(1)));
    if (c.needs(1)) addUnb(c, 1, c.e.mul(g, c.x(0)));
  },
  // y = a/b: ∂a = ḡ/b, ∂b = −ḡ·y/b = −(∂a)·y
  Div: (c) => {
    const g = c.gy(0);
    if (!g) return;
    const ga = c.e.div(g, c.x(1));
    if (c.needs(0)) addUnb(c, 0, ga);
    if (c.needs(1)) addUnb(c, 1, c.e.neg(c.e.mul(ga, c.y(0))));
  },
  // y = xᵖ: ∂x = ḡ·p·x^(p−1), ∂p = ḡ·y·ln x
  Pow: (c) => {
    const g = c.gy(0);
    if (!g) return;
    const x = c.x(0);
    const p = c.x(1);
    const e = c.e;
    if (c.needs(0)) {
      const pv = c.value(p);
      let d: string;
      if (pv && pv.length === 1) {
        const v = pv[0];
        if (v === 1) d = g;
        else if (v === 2) d = e.mul(g, e.mul(x, k(c, 2, x)));
        else if (v === 0.5) d = e.div(e.mul(g, k(c, 0.5, x)), c.y(0));
        else d = e.mul(g, e.mul(e.op("Pow", [x, k(c, v - 1, x)]), k(c, v, x)));
      } else {
        const pc = c.dtype(p) === c.dtype(x) ? p : e.op("Cast", [p], { to: c.dtype(x) });
        d = e.mul(g, e.mul(e.op("Pow", [x, e.sub(pc, k(c, 1, x))]), pc));
      }
      addUnb(c, 0, d);
    }
    if (c.needs(1)) addUnb(c, 1, e.mul(e.mul(g, c.y(0)), e.op("Log", [x])));
  },
  Sum: (c) => {
    const g = c.gy(0);
    if (!g) return;
    (c.node.input ?? []).forEach((_, i) => c.needs(i) && addUnb(c, i, g));
  },
  Mean: (c) => {
    const g = c.gy(0);
    if (!g) return;
    const n = (c.node.input ?? []).length;
    const gs = c.e.mul(g, k(c, 1 / n, c.y(0)));
    (c.node.input ?? []).forEach((_, i) => c.needs(i) && addUnb(c, i, gs));
  },
  // Max/Min: the gradient goes to the operands equal to the result, shared among ties
  Max: minMax,
  Min: minMax,
  // PRelu y = x ≥ 0 ? x : s·x
  PRelu: (c) => {
    const g = c.gy(0);
    if (!g) return;
    const x = c.x(0);
    const pos = c.e.op("Greater", [x, k(c, 0, x)]);
    if (c.needs(0)) {
      c.add(
        0,
        c.e.unbroadcast(c.e.op("Where", [pos, g, c.e.mul(g, c.x(1))]), c.dims(c.y(0)), c.dims(x)),
      );
    }
    if (c.needs(1)) {
      addUnb(c, 1, c.e.op("Where", [pos, k(c, 0, x), c.e.mul(g, x)]));
    }
  },
  // Where(cond, a, b): ∂a = unb(Where(cond, ḡ, 0)), ∂b = unb(Where(cond, 0, ḡ))
  Where: (c) => {
    const g = c.gy(0);
    if (!g) return;
    const z = k(c, 0, c.y(0));
    if (c.needs(1)) addUnb(c, 1, c.e.op("Where", [c.x(0), g, z]));
    if (c.needs(2)) addUnb(c, 2, c.e.op("Where", [c.x(0), z, g]));
  },
  // softmax: ∂x = y ⊙ (ḡ − Σ_axis ḡ⊙y)
  Softmax: (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const y = c.y(0);
    const axes = softmaxAxes(c);
    const s = c.e.reduceSum(c.e.mul(g, y), axes, true);
    c.add(0, c.e.mul(y, c.e.sub(g, s)));
  },
  // log-softmax: ∂x = ḡ − exp(y)·Σ_axis ḡ
  LogSoftmax: (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const axes = softmaxAxes(c);
    const s = c.e.reduceSum(g, axes, true);
    c.add(0, c.e.sub(g, c.e.mul(c.e.op("Exp", [c.y(0)]), s)));
  },
};

/** Softmax reduction axes: one axis from opset 13, the flattened tail before. */
function softmaxAxes(c: RuleCtx): number[] {
  const r = c.dims(c.x(0)).length;
  if (c.opset >= 13) return [normAxis(intAttr(c.a, "axis", -1), r)];
  const ax = normAxis(intAttr(c.a, "axis", 1), r);
  return Array.from({ length: r - ax }, (_, i) => ax + i);
}

function minMax(c: RuleCtx) {
  const g = c.gy(0);
  if (!g) return;
  const y = c.y(0);
  const ins = c.node.input ?? [];
  if (ins.length === 1) {
    if (c.needs(0)) c.add(0, g);
    return;
  }
  // DEVIATION: ties share the gradient equally (as PyTorch's max/min of several tensors does for
  // its reductions); ONNX defines no derivative at ties.
  const masks = ins.map((x) => c.e.op("Cast", [c.e.op("Equal", [x, y])], { to: c.dtype(y) }));
  const count = c.e.sum(masks);
  const share = c.e.div(g, count);
  ins.forEach((_, i) => {
    if (c.needs(i)) addUnb(c, i, c.e.mul(share, masks[i]));
  });
}
