/**
 * Gradient rules of normalisations.
 *
 * With x̂ = (x − μ)·r, r = 1/√(σ² + ε) over the normalised axes (N elements) and y = γ x̂ + β:
 *   ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)),  ĝ = γ ḡ,   ∂γ = Σ ḡ ⊙ x̂,   ∂β = Σ ḡ.
 *
 * Statistics are not recomputed from scratch where the forward pass already has them:
 * LayerNormalization exposes its saved mean and inverse std (optional outputs); for
 * InstanceNormalization with γ = 1, β = 0 (the GroupNorm export pattern) x̂ is the forward output
 * itself, and r follows from one reduction: m = mean(x̂ ⊙ x) = r σ² = (s² − ε)/s with s = 1/r, so
 * s = (m + √(m² + 4ε))/2 (exact, no cancellation).
 *
 * @module
 */
import { floatAttr, intAttr, normAxis, numel } from "../graph.ts";
import type { Emitter } from "../emit.ts";
import type { Rule, RuleCtx } from "../rule.ts";

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a }, (_, i) => a + i);
}

/** ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ x̂)) over `axes`. */
export function normBackward(
  e: Emitter,
  xh: string,
  gh: string,
  rstd: string,
  axes: number[],
): string {
  const m1 = e.reduceMean(gh, axes, true);
  const m2 = e.reduceMean(e.mul(gh, xh), axes, true);
  return e.mul(e.sub(e.sub(gh, m1), e.mul(xh, m2)), rstd);
}

/** μ, r and x̂ of x over `axes` (two-pass variance). */
function stats(e: Emitter, x: string, axes: number[], eps: string) {
  const mu = e.reduceMean(x, axes, true);
  const xc = e.sub(x, mu);
  const v = e.reduceMean(e.mul(xc, xc), axes, true);
  const rstd = e.op("Reciprocal", [e.op("Sqrt", [e.add(v, eps)])]);
  return { mu, rstd, xh: e.mul(xc, rstd) };
}

/**
 * r from x̂ and x: s = (m + √(m² + 4ε))/2, m = mean(x̂ ⊙ x), r = 1/s. With `dims` (x's, the axes
 * then the trailing ones) the mean comes from {@link Emitter.dot}.
 */
function rstdFromNormalized(
  c: RuleCtx,
  x: string,
  xh: string,
  axes: number[],
  eps: number,
  t = c.dtype(x),
  dims?: number[],
): string {
  const e = c.e;
  const m = dims
    ? e.mul(
      e.dot(xh, x, dims, axes.length),
      e.scalar(1 / numel(dims.slice(dims.length - axes.length)), t),
    )
    : e.reduceMean(e.mul(xh, x), axes, true);
  const disc = e.op("Sqrt", [e.add(e.mul(m, m), e.scalar(4 * eps, t))]);
  const s = e.mul(e.add(m, disc), e.scalar(0.5, t));
  return e.op("Reciprocal", [s]);
}

function allEqual(v: number[] | undefined, target: number): boolean {
  return v !== undefined && v.every((x) => x === target);
}

/** InstanceNormalization: statistics per (n, c) over the spatial axes. */
const instanceNorm: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const t = c.dtype(x);
  const axes = range(2, xd.length);
  const eps = floatAttr(c.a, "epsilon", 1e-5);
  const scale = c.x(1);
  const bias = c.x(2);
  const unitAffine = allEqual(c.value(scale), 1) && allEqual(c.value(bias), 0);
  const bshape = [xd[1], ...axes.map(() => 1)];
  let xh: string;
  if (unitAffine) xh = c.y(0);
  else {
    const ones = e.constant(t, [xd[1]], new Float64Array(xd[1]).fill(1));
    const zeros = e.constant(t, [xd[1]], new Float64Array(xd[1]));
    xh = e.op("InstanceNormalization", [x, ones, zeros], {
      epsilon: { kind: "float", value: eps },
    });
  }
  const scaleB = () => e.reshape(scale, bshape);
  if (c.needs(0)) {
    const rstd = rstdFromNormalized(c, x, xh, axes, eps);
    const gh = allEqual(c.value(scale), 1) ? g : e.mul(g, scaleB());
    c.add(0, normBackward(e, xh, gh, rstd, axes));
  }
  const red = [0, ...axes];
  if (c.needs(1)) c.add(1, e.reduceSum(e.mul(g, xh), red, false));
  if (c.needs(2)) c.add(2, e.reduceSum(g, red, false));
};

/** LayerNormalization (opset 17): statistics over axes [axis, r). */
const layerNorm: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const t = c.dtype(x);
  const axis = normAxis(intAttr(c.a, "axis", -1), xd.length);
  const axes = range(axis, xd.length);
  const eps = floatAttr(c.a, "epsilon", 1e-5);
  const stash = intAttr(c.a, "stash_type", 1);
  const statDims = xd.map((d, i) => (i < axis ? d : 1));
  let xh: string;
  let rstd: string;
  if (t === 1 && stash === 1) {
    const mu = c.forwardOutput(1, statDims, 1);
    rstd = c.forwardOutput(2, statDims, 1);
    xh = e.mul(e.sub(x, mu), rstd);
  } else {
    const s = stats(e, x, axes, e.scalar(eps, t));
    xh = s.xh;
    rstd = s.rstd;
  }
  const scale = c.x(1);
  const lead = range(0, axis);
  if (c.needs(0)) {
    const gh = allEqual(c.value(scale), 1) ? g : e.mul(g, scale);
    c.add(0, normBackward(e, xh, gh, rstd, axes));
  }
  if (c.needs(1)) c.add(1, e.reduceSum(e.mul(g, xh), lead, false));
  if (c.x(2) && c.needs(2)) c.add(2, e.reduceSum(g, lead, false));
};

/**
 * GroupNormalization (opset 18: γ, β per group; opset 21: per channel): statistics over
 * (channels of the group × spatial), computed on the [N, G, C/G·spatial] view.
 */
const groupNorm: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const t = c.dtype(x);
  const G = intAttr(c.a, "num_groups", 1);
  const eps = floatAttr(c.a, "epsilon", 1e-5);
  const [n, ch] = xd;
  const sp = xd.slice(2);
  const view = [n, G, (ch / G) * numel(sp)];
  const xv = e.reshape(x, view);
  const s = stats(e, xv, [2], e.scalar(eps, t));
  const perGroup = c.dims(c.x(1))[0] === G && G !== ch;
  // γ broadcast in the [N, C, spatial…] layout
  const bshape = [ch, ...sp.map(() => 1)];
  const expandGroup = (p: string) =>
    perGroup
      ? e.reshape(e.expand(e.reshape(p, [G, 1]), [G, ch / G]), bshape)
      : e.reshape(p, bshape);
  const xhFull = e.reshape(s.xh, xd);
  if (c.needs(0)) {
    const gh = e.mul(g, expandGroup(c.x(1)));
    const dx = normBackward(e, s.xh, e.reshape(gh, view), s.rstd, [2]);
    c.add(0, e.reshape(dx, xd));
  }
  const sumToParam = (v: string) => {
    const perC = e.reduceSum(v, [0, ...range(2, xd.length)], false);
    return perGroup ? e.reduceSum(e.reshape(perC, [G, ch / G]), [1], false) : perC;
  };
  if (c.needs(1)) c.add(1, sumToParam(e.mul(g, xhFull)));
  if (c.needs(2)) c.add(2, sumToParam(g));
};

/** BatchNormalization in inference mode: an affine map per channel. */
const batchNorm: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  if (intAttr(c.a, "training_mode", 0) === 1) c.fail("BatchNormalization training_mode");
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const t = c.dtype(x);
  const eps = floatAttr(c.a, "epsilon", 1e-5);
  const bshape = [xd[1], ...xd.slice(2).map(() => 1)];
  const rstd = e.reshape(
    e.op("Reciprocal", [e.op("Sqrt", [e.add(c.x(4), e.scalar(eps, t))])]),
    bshape,
  );
  if (c.needs(0)) c.add(0, e.mul(g, e.mul(e.reshape(c.x(1), bshape), rstd)));
  const red = [0, ...range(2, xd.length)];
  if (c.needs(1)) {
    const xh = e.mul(e.sub(x, e.reshape(c.x(3), bshape)), rstd);
    c.add(1, e.reduceSum(e.mul(g, xh), red, false));
  }
  if (c.needs(2)) c.add(2, e.reduceSum(g, red, false));
};

/** LpNormalization p = 2: y = x/‖x‖, ∂x = (ḡ − y Σ ḡ y)/‖x‖. */
const lpNorm: Rule = (c) => {
  const g = c.gy(0);
  if (!g || !c.needs(0)) return;
  if (intAttr(c.a, "p", 2) !== 2) c.fail("LpNormalization with p ≠ 2");
  const e = c.e;
  const x = c.x(0);
  const y = c.y(0);
  const axis = normAxis(intAttr(c.a, "axis", -1), c.dims(x).length);
  const nrm = e.reduce("ReduceL2", x, [axis], true);
  const s = e.reduceSum(e.mul(g, y), [axis], true);
  c.add(0, e.div(e.sub(g, e.mul(y, s)), nrm));
};

/**
 * The GroupNorm export as one unit (`vjp.GroupNorm`, see patterns.ts): inputs [x, γ, β, x̂], γ and
 * β per channel without gradient, x̂ the forward's normalised tensor in x's layout [N, C, …].
 * With groups g of L = (C/G)·P elements (P spatial), r_{n,g} from x̂ and x as above:
 *   ∂x_{ncp} = r γ_c ḡ − r·mean_g(γ ḡ) − r·x̂·mean_g(γ ḡ x̂)
 *            = k_{nc}·ḡ_{ncp} + b_{nc}·x̂_{ncp} + a_{nc},
 *   k = r γ_c,  a = −(r/L) Σ_{c∈g} γ_c S1_{nc},  b = −(r/L) Σ_{c∈g} γ_c S2_{nc},
 *   S1_{nc} = Σ_p ḡ_{ncp},  S2_{nc} = Σ_p ḡ_{ncp} x̂_{ncp}.
 * γ never multiplies a full tensor: the full-tensor work is the sums of x̂⊙x and ḡ⊙x̂ (dot products
 * that do not write the product for long rows, `Emitter.dot`), b x̂, and k ḡ + a + b x̂ as one depthwise 1×1 Conv (float32, 1–3 spatial axes; per
 * (n, c) on the [1, N·C, …] view) whose Add ONNX Runtime fuses into it — 4 elementwise passes where
 * the node-by-node rules take 7 (γ ḡ, x̂⊙x, ĝ⊙x̂, two Sub, two Mul). Other types and ranks: Mul
 * and Add.
 */
export const groupNormUnit: Rule = (c) => {
  const g = c.gy(0);
  if (!g || !c.needs(0)) return;
  const e = c.e;
  const [x, gamma, , xh] = [c.x(0), c.x(1), c.x(2), c.x(3)];
  const xd = c.dims(x);
  const t = c.dtype(x);
  const G = intAttr(c.a, "groups", 1);
  const eps = floatAttr(c.a, "epsilon", 1e-5);
  const [n, ch] = xd;
  const P = numel(xd.slice(2));
  const L = (ch / G) * P;
  // r per (n, g), from the normalised tensor
  const r = rstdFromNormalized(
    c,
    e.reshape(x, [n, G, L]),
    e.reshape(xh, [n, G, L]),
    [2],
    eps,
    t,
    [n, G, L],
  );
  // per-channel sums over the spatial axes, then γ-weighted per group
  const perC = (v: string) => e.reduceSum(e.reshape(v, [n, ch, P]), [2], false); // [N, C]
  const gam = e.reshape(gamma, [1, G, ch / G]);
  const groupMean = (s: string) => e.reduceSum(e.mul(e.reshape(s, [n, G, ch / G]), gam), [2], true); // [N, G, 1], × L
  const nrL = e.mul(r, e.scalar(-1 / L, t)); // −r/L, [N, G, 1]
  const a = e.mul(nrL, groupMean(perC(g)));
  const ghSums = e.reshape(
    e.dot(e.reshape(g, [n, ch, P]), e.reshape(xh, [n, ch, P]), [n, ch, P], 1),
    [
      n,
      ch,
    ],
  ); // S2, [N, C]
  const b = e.mul(nrL, groupMean(ghSums));
  const perNC = (v: string, dims: number[]) => e.reshape(e.expand(v, [n, G, ch / G]), dims); // [N, G, 1] → per (n, c)
  const kNC = e.mul(r, gam); // [N, G, C/G]
  const bshape = [n, ch, ...xd.slice(2).map(() => 1)];
  const bx = e.mul(xh, perNC(b, bshape));
  const rank = xd.length;
  if (t === 1 && rank >= 3 && rank <= 5) {
    // k ḡ + a: depthwise 1×1 Conv over the [1, N·C, …] view (weights k, bias a); b x̂ is added
    // on the same view with the Conv's output as the Add's direct input, which ONNX Runtime fuses
    // into the Conv (FusedConv with a sum input: one pass fewer). A Reshape between the Conv and
    // the Add — even one to the same shape — stops that fusion.
    const view = [1, n * ch, ...xd.slice(2)];
    const onView = (v: string) => (n === 1 ? v : e.reshape(v, view));
    const w = e.reshape(kNC, [n * ch, 1, ...xd.slice(2).map(() => 1)]);
    const kg = e.op("Conv", [onView(g), w, perNC(a, [n * ch])], {
      group: n * ch,
      kernel_shape: xd.slice(2).map(() => 1),
    });
    const sum = e.add(kg, onView(bx));
    c.add(0, n === 1 ? sum : e.reshape(sum, xd));
  } else {
    c.add(0, e.add(e.add(e.mul(g, e.reshape(kNC, bshape)), perNC(a, bshape)), bx));
  }
};

/** Rules of this module, by op type. */
export const normRules: Record<string, Rule> = {
  InstanceNormalization: instanceNorm,
  LayerNormalization: layerNorm,
  GroupNormalization: groupNorm,
  BatchNormalization: batchNorm,
  LpNormalization: lpNorm,
};
