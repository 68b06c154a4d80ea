/**
 * Multi-node patterns differentiated as one unit.
 *
 * ONNX Runtime fuses some exported activation patterns in the forward pass (SiLU
 * `x·Sigmoid(x)` → QuickGelu, the Erf form of GELU → Gelu). A node-by-node backward pass consumes
 * the pattern's interior tensors and so prevents those fusions, and spends more elementwise passes
 * than the closed-form derivative needs. A pattern whose interior tensors have no consumer outside
 * it is therefore differentiated as a unit: the interior nodes stay in the forward graph (and
 * fuse), and the unit's rule uses only the pattern's input x and output y.
 *
 * - attention O = softmax(c·Q K + mask) V: see the rule (score gradient in two passes).
 * - SiLU  y = x·σ(x):                 ∂x = ḡ·s·(1 + x − y),     s = σ(x) recomputed.
 * - GELU  y = ½x(1 + erf(x/√2)):      ∂x = ḡ·(Φ(x) + x·φ(x)),   Φ = y/x written as ½(1 + erf),
 *                                                              φ(x) = e^{−x²/2}/√(2π).
 * - GroupNorm as exported, Reshape → InstanceNormalization(γ = 1, β = 0) → Reshape → Mul γ → Add β
 *   with γ, β per channel and without gradient: see `groupNormUnit` (γ folded into per-group
 *   coefficients, ∂x in three elementwise passes after two reductions).
 * - Upsample-conv, Conv(Resize(x)) with nearest integer upsampling, a stride-1 Conv and a kernel
 *   without gradient: ∂x in one strided Conv, see `upConvUnit` (rules/conv.ts).
 *
 * @module
 */
import type { NodeProto } from "../proto.ts";
import type { Rule, RuleCtx } from "./rule.ts";
import { attrsOf, intAttr, intsAttr, num, strAttr } from "./graph.ts";
import { resizeMatrix, resizeMode, windowGeometry } from "./geometry.ts";
import { groupNormUnit } from "./rules/norm.ts";
import { upConvUnit } from "./rules/conv.ts";
import { isBlockReplicate } from "./rules/util.ts";

/** A recognised unit: a synthetic node standing for the pattern, at the root's position. */
export interface FusedUnit {
  /**
   * Synthetic node (opType `vjp.Silu` / `vjp.Gelu`: input x, output y; `vjp.Attention` and
   * `vjp.GroupNorm`: see their rules).
   */
  node: NodeProto;
  /** Indices of the interior nodes (skipped by the sweep). */
  interior: number[];
}

type ValueOf = (name: string) => number[] | undefined;

function scalarIs(value: ValueOf, name: string, v: number, rel = 1e-6): boolean {
  const a = value(name);
  return !!a && a.length === 1 && Math.abs(a[0] - v) <= rel * Math.abs(v);
}

/**
 * Find SiLU and Erf-GELU units.
 *
 * @param nodes nodes in topological order
 * @param value constant values of small tensors
 * @param keep tensors that must stay visible (graph outputs, differentiated inputs)
 * @param rankOf rank of a tensor
 * @param isActive whether a tensor carries a gradient (an attention mask must not)
 * @param dimsOf concrete dims of a tensor
 */
export function findUnits(
  nodes: NodeProto[],
  value: ValueOf,
  keep: Set<string>,
  rankOf: (name: string) => number | undefined = () => undefined,
  isActive: (name: string) => boolean = () => true,
  dimsOf: (name: string) => number[] | undefined = () => undefined,
): Map<number, FusedUnit> {
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, k) => {
    for (const o of n.output ?? []) if (o) producer.set(o, k);
    for (const i of n.input ?? []) {
      if (!i) continue;
      const l = consumers.get(i);
      if (l) l.push(k);
      else consumers.set(i, [k]);
    }
  });
  const only = (t: string, k: number) => {
    const c = consumers.get(t) ?? [];
    return c.length === 1 && c[0] === k && !keep.has(t);
  };
  const prod = (t: string) => {
    const k = producer.get(t);
    return k === undefined ? undefined : { k, n: nodes[k] };
  };
  const units = new Map<number, FusedUnit>();
  const used = new Set<number>();
  // attention core: O = Softmax(c·(Q Kᵀ) [+ mask]) V
  /** Below `t` (consumed by node `at`): optional scalar Mul/Div, then a MatMul. */
  const scoreChain = (t: string, at: number) => {
    const interior: number[] = [];
    let cur = t;
    let consumer = at;
    let scale = 1;
    let pc = prod(cur);
    if (pc && (pc.n.opType === "Mul" || pc.n.opType === "Div") && only(cur, consumer)) {
      let [m0, m1] = pc.n.input ?? [];
      // a Mul may carry the scalar on either side
      if (pc.n.opType === "Mul" && value(m0)?.length === 1) [m0, m1] = [m1, m0];
      const sc = value(m1);
      if (sc && sc.length === 1 && sc[0] !== 0) {
        scale = pc.n.opType === "Mul" ? sc[0] : 1 / sc[0];
        interior.push(pc.k);
        consumer = pc.k;
        cur = m0;
        pc = prod(cur);
      }
    }
    if (!pc || pc.n.opType !== "MatMul" || !only(cur, consumer)) return undefined;
    interior.push(pc.k);
    return { interior, scale, q: pc.n.input?.[0] ?? "", kt: pc.n.input?.[1] ?? "" };
  };
  nodes.forEach((n, k) => {
    if (n.opType !== "MatMul") return;
    const [p, v] = n.input ?? [];
    const pp = prod(p);
    if (!pp || pp.n.opType !== "Softmax" || !only(p, k)) return;
    const pr = rankOf(p);
    const axis = softmaxAxis(pp.n);
    if (pr === undefined || (axis !== -1 && axis !== pr - 1)) return;
    const s = pp.n.input?.[0] ?? "";
    let chain = scoreChain(s, pp.k);
    let mask = "";
    const interior = [pp.k];
    if (!chain) {
      const pa = prod(s);
      if (!pa || pa.n.opType !== "Add" || !only(s, pp.k)) return;
      const [a0, a1] = pa.n.input ?? [];
      for (const [sc, m] of [[a0, a1], [a1, a0]]) {
        if (isActive(m)) continue;
        const ch = scoreChain(sc, pa.k);
        if (ch) {
          chain = ch;
          mask = m;
          interior.push(pa.k);
          break;
        }
      }
      if (!chain) return;
    }
    interior.push(...chain.interior);
    if (interior.some((i) => used.has(i)) || used.has(k)) return;
    units.set(k, {
      node: {
        opType: "vjp.Attention",
        input: [chain.q, chain.kt, v, p, mask],
        output: [(n.output ?? [])[0]],
        name: `${n.name ?? ""}/attention`,
        attribute: [{ name: "scale", type: 1, f: chain.scale }],
      },
      interior,
    });
    used.add(k);
    for (const i of interior) used.add(i);
  });
  const take = (k: number, node: NodeProto, interior: number[]) => {
    units.set(k, { node, interior });
    used.add(k);
    for (const i of interior) used.add(i);
  };
  // GroupNorm as exported: Add(Mul(Reshape(InstanceNorm(Reshape(x), 1, 0)), γ), β)
  nodes.forEach((n, k) => {
    if (n.opType !== "Add" || used.has(k)) return;
    const gn = groupNormAt(n, k, { prod, only, value, isActive, dimsOf });
    if (gn && !gn.interior.some((i) => used.has(i))) take(k, gn.node, gn.interior);
  });
  // nearest integer upsampling into a stride-1 Conv: Conv(Resize(x), w)
  nodes.forEach((n, k) => {
    if (n.opType !== "Conv" || used.has(k)) return;
    const uc = upConvAt(n, k, { prod, only, value, isActive, dimsOf });
    if (uc && !uc.interior.some((i) => used.has(i))) take(k, uc.node, uc.interior);
  });
  nodes.forEach((n, k) => {
    if (n.opType !== "Mul" || used.has(k)) return;
    const [a, b] = n.input ?? [];
    const y = (n.output ?? [])[0];
    // SiLU: Mul(x, Sigmoid(x)) in either order
    for (const [x, s] of [[a, b], [b, a]]) {
      const p = prod(s);
      if (p && p.n.opType === "Sigmoid" && p.n.input?.[0] === x && only(s, k) && !used.has(p.k)) {
        units.set(k, {
          node: { opType: "vjp.Silu", input: [x], output: [y], name: `${n.name ?? ""}/silu` },
          interior: [p.k],
        });
        used.add(k);
        used.add(p.k);
        return;
      }
    }
    // GELU: Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5) — the torch.onnx export of nn.GELU()
    for (const [m, half] of [[a, b], [b, a]]) {
      if (!scalarIs(value, half, 0.5)) continue;
      const pm = prod(m);
      if (!pm || pm.n.opType !== "Mul" || !only(m, k)) continue;
      const [m0, m1] = pm.n.input ?? [];
      for (const [x, add] of [[m0, m1], [m1, m0]]) {
        const pa = prod(add);
        if (!pa || pa.n.opType !== "Add" || !only(add, pm.k)) continue;
        const [e0, e1] = pa.n.input ?? [];
        for (const [er, one] of [[e0, e1], [e1, e0]]) {
          if (!scalarIs(value, one, 1)) continue;
          const pe = prod(er);
          if (!pe || pe.n.opType !== "Erf" || !only(er, pa.k)) continue;
          const u = pe.n.input?.[0] ?? "";
          const pd = prod(u);
          if (!pd || !only(u, pe.k)) continue;
          const [d0, d1] = pd.n.input ?? [];
          const ok = d0 === x &&
            ((pd.n.opType === "Div" && scalarIs(value, d1, Math.SQRT2, 1e-5)) ||
              (pd.n.opType === "Mul" && scalarIs(value, d1, Math.SQRT1_2, 1e-5)));
          if (!ok) continue;
          const interior = [pm.k, pa.k, pe.k, pd.k];
          if (interior.some((i) => used.has(i))) continue;
          units.set(k, {
            node: { opType: "vjp.Gelu", input: [x], output: [y], name: `${n.name ?? ""}/gelu` },
            interior,
          });
          used.add(k);
          for (const i of interior) used.add(i);
          return;
        }
      }
    }
  });
  return units;
}

interface Lookup {
  prod: (t: string) => { k: number; n: NodeProto } | undefined;
  only: (t: string, k: number) => boolean;
  value: ValueOf;
  isActive: (name: string) => boolean;
  dimsOf: (name: string) => number[] | undefined;
}

/**
 * Per-channel parameter of x's layout [N, C, …]: dims [C, 1, …] or [1, C, 1, …] (or 1s when
 * `full` is false). With `full`, the channel axis must hold all C values: the unit's rule reshapes
 * γ to [1, G, C/G], so a scalar or all-ones γ is left to the node-by-node rules.
 */
function perChannel(d: number[] | undefined, xd: number[], full = false): boolean {
  if (!d || d.length > xd.length) return false;
  const p = [...Array(xd.length - d.length).fill(1), ...d];
  if (full && p[1] !== xd[1]) return false;
  return p.every((v, i) => v === 1 || (i === 1 && v === xd[1]));
}

/**
 * The GroupNorm export rooted at the Add node `n` (index `k`), or undefined. Its synthetic node
 * `vjp.GroupNorm` has inputs [x, γ, β, x̂] (x̂: the InstanceNormalization output in x's layout, a
 * forward tensor the rule reads) and attributes `groups`, `epsilon`.
 */
function groupNormAt(n: NodeProto, k: number, l: Lookup): FusedUnit | undefined {
  const y = (n.output ?? [])[0];
  for (const [m, beta] of pairs(n.input)) {
    const pm = l.prod(m);
    if (!pm || pm.n.opType !== "Mul" || !l.only(m, k) || l.isActive(beta)) continue;
    for (const [back, gamma] of pairs(pm.n.input)) {
      const pb = l.prod(back);
      if (!pb || pb.n.opType !== "Reshape" || !l.only(back, pm.k) || l.isActive(gamma)) continue;
      const nn = pb.n.input?.[0] ?? "";
      const pi = l.prod(nn);
      if (!pi || pi.n.opType !== "InstanceNormalization" || !l.only(nn, pb.k)) continue;
      const [r, scale, bias] = pi.n.input ?? [];
      const ones = l.value(scale), zeros = l.value(bias);
      if (!ones?.every((v) => v === 1) || !zeros?.every((v) => v === 0)) continue;
      const pr = l.prod(r);
      if (!pr || pr.n.opType !== "Reshape" || !l.only(r, pi.k)) continue;
      const x = pr.n.input?.[0] ?? "";
      const [xd, rd, bd, yd] = [x, r, back, y].map(l.dimsOf);
      if (!xd || !rd || !bd || !yd || xd.length < 2 || rd.length !== 3) continue;
      const same = (a: number[]) => a.length === xd.length && a.every((v, i) => v === xd[i]);
      const G = rd[1];
      if (!same(bd) || !same(yd) || rd[0] !== xd[0] || G < 1 || xd[1] % G !== 0) continue;
      if (!perChannel(l.dimsOf(gamma), xd, true) || !perChannel(l.dimsOf(beta), xd)) continue;
      const eps = (pi.n.attribute ?? []).find((a) => a.name === "epsilon");
      return {
        node: {
          opType: "vjp.GroupNorm",
          input: [x, gamma, beta, back],
          output: [y],
          name: `${n.name ?? ""}/group_norm`,
          attribute: [
            { name: "groups", type: 2, i: G },
            { name: "epsilon", type: 1, f: eps ? (eps.f as number) : 1e-5 },
          ],
        },
        interior: [pm.k, pb.k, pi.k, pr.k],
      };
    }
  }
  return undefined;
}

/**
 * Per spatial axis, the integer factor of a nearest Resize that repeats each element of its input
 * into a block (batch and channel axes unchanged), or undefined (any other Resize).
 */
function blockFactors(r: NodeProto, l: Lookup): number[] | undefined {
  const a = attrsOf(r);
  const m = resizeMode(a);
  if (m.mode !== "nearest" || m.coord === "tf_crop_and_resize" || intsAttr(a, "axes")) return;
  if (strAttr(a, "keep_aspect_ratio_policy", "stretch") !== "stretch") return;
  const [x, , scales, sizes] = r.input ?? [];
  const [xd, yd] = [x, (r.output ?? [])[0]].map(l.dimsOf);
  if (!xd || !yd || xd.length < 3 || yd.length !== xd.length || yd[0] !== xd[0]) return;
  if (yd[1] !== xd[1]) return;
  const sv = scales && !sizes ? l.value(scales) : undefined;
  if (scales && !sizes && (!sv || sv.length !== xd.length)) return;
  const f: number[] = [];
  for (let ax = 2; ax < xd.length; ax++) {
    const s = yd[ax] / xd[ax];
    if (!Number.isInteger(s) || s < 1) return;
    const scale = sv ? Math.fround(sv[ax]) : s;
    if (s > 1 && !isBlockReplicate(resizeMatrix(xd[ax], yd[ax], scale, m), yd[ax], xd[ax])) return;
    f.push(s);
  }
  return f.some((s) => s > 1) ? f : undefined;
}

/**
 * Conv(Resize(x), w[, b]) at the Conv node `n` (index `k`): nearest integer upsampling whose output
 * only this Conv reads, stride 1, dilation 1, pads below the kernel extent, w and b without
 * gradient. Its synthetic node `vjp.UpConv` has inputs [x, w] and attributes `up` (the factor per
 * spatial axis), `kernel_shape`, `pads` (resolved) and `group`.
 */
function upConvAt(n: NodeProto, k: number, l: Lookup): FusedUnit | undefined {
  const [u, w, b] = n.input ?? [];
  if (!u || !w || l.isActive(w) || (b && l.isActive(b))) return;
  const pr = l.prod(u);
  if (!pr || pr.n.opType !== "Resize" || !l.only(u, k)) return;
  const up = blockFactors(pr.n, l);
  const [ud, wd] = [u, w].map(l.dimsOf);
  if (!up || !ud || !wd || wd.length !== ud.length) return;
  const a = attrsOf(n);
  const kernel = intsAttr(a, "kernel_shape") ?? wd.slice(2);
  const geo = windowGeometry(a, ud.slice(2), kernel);
  const nd = kernel.length;
  if (geo.strides.some((s) => s !== 1) || geo.dilations.some((d) => d !== 1)) return;
  if (geo.pads.some((p, i) => p < 0 || p > kernel[i % nd] - 1)) return;
  return {
    node: {
      opType: "vjp.UpConv",
      input: [pr.n.input?.[0] ?? "", w],
      output: [(n.output ?? [])[0]],
      name: `${n.name ?? ""}/up_conv`,
      attribute: [
        { name: "up", type: 7, ints: up },
        { name: "kernel_shape", type: 7, ints: kernel },
        { name: "pads", type: 7, ints: geo.pads },
        { name: "group", type: 2, i: intAttr(a, "group", 1) },
      ],
    },
    interior: [pr.k],
  };
}

/** Both orders of a binary node's inputs. */
function pairs(input: string[] | null | undefined): [string, string][] {
  const [a, b] = input ?? [];
  return [[a, b], [b, a]];
}

function softmaxAxis(n: NodeProto): number {
  const a = (n.attribute ?? []).find((x) => x.name === "axis");
  return a ? num(a.i as number) : -1;
}

function swapLast2(r: number): number[] {
  const p = Array.from({ length: r }, (_, i) => i);
  [p[r - 2], p[r - 1]] = [p[r - 1], p[r - 2]];
  return p;
}

/**
 * ∂P − r·1ᵀ = ḡ Vᵀ − r·1ᵀ for the attention rule (d = V's last dim).
 *
 * Usually one product with an extra inner column, [ḡ, −r] [V, 1]ᵀ: a broadcast subtraction over
 * the T×S scores is a full extra pass, the extra column nearly free. Not when d is a multiple of
 * 128: ONNX Runtime's CPU GEMM (MLAS) steps through the inner dimension in blocks of 128, so a
 * 129th column opens a block of width one — a whole extra read-modify-write pass over the T×S
 * product, dearer than the subtraction (T = S = 16384, d = 128, one thread: product, subtraction
 * and ⊙P 496 ms against 540 ms augmented; d = 40, 64 or 127: the augmented product is as fast or
 * faster). Both forms give the same values in MLAS (its last block adds −r after the 128 terms).
 * With the ∂K orientation below, the VAE decoder's mid-block attention at T = 16384 (forward +
 * VJP, one thread) went from 3206 to 2946 ms.
 */
function scoreGradient(c: RuleCtx, g: string, v: string, r: string, vd: number[]): string {
  const e = c.e;
  const tr = (t: string) => e.transpose(t, swapLast2(vd.length));
  if (vd[vd.length - 1] % 128 === 0) return e.sub(e.op("MatMul", [g, tr(v)]), r);
  const ones = e.expand(e.scalar(1, c.dtype(v)), [...vd.slice(0, -1), 1]);
  const gAug = e.op("Concat", [g, e.neg(r)], { axis: -1 });
  const vAug = e.op("Concat", [v, ones], { axis: -1 });
  return e.op("MatMul", [gAug, tr(vAug)]);
}

function k(c: RuleCtx, v: number, like: string): string {
  return c.e.scalar(v, c.dtype(like));
}

/** Rules of the synthetic unit ops. */
export const unitRules: Record<string, Rule> = {
  /**
   * Attention core O = P V, P = softmax(S), S = c·Q K (+ mask), rows on the last axis:
   *   ∂V = Pᵀ ḡ,  ∂P = ḡ Vᵀ,  ∂S = P ⊙ (∂P − r),  r = rowsum(∂P ⊙ P) = rowsum(ḡ ⊙ O),
   *   ∂Q = c·∂S Kᵀ,  ∂K = c·Qᵀ ∂S.
   * r is formed on the small [.., T, d] tensors (the FlashAttention identity), ∂P − r comes out of
   * one MatMul with an extra inner column (or a broadcast Sub when d is a multiple of 128, below),
   * and the scale c is applied to the small products: the T×S score gradient costs one product
   * and one or two elementwise passes.
   *
   * Orientation (ONNX Runtime's CPU MatMul, measured at T = S = 16384, d = 128 and at 8 heads of
   * 4096 tokens, d = 40, one thread): ∂K is formed as (∂Sᵀ Q)ᵀ — the T×S operand transposed
   * inside the MatMul, a [.., S, d] result, then a small transpose — which runs 5–14 % faster than
   * Qᵀ ∂S with its d-row left operand; same products, same sums.
   */
  "vjp.Attention": (c) => {
    const g = c.gy(0);
    if (!g) return;
    const e = c.e;
    const [q, kt, v, p] = [c.x(0), c.x(1), c.x(2), c.x(3)];
    const o = c.y(0);
    const scale = (c.a.scale as number) ?? 1;
    const od = c.dims(o);
    const pd = c.dims(p);
    const tr = (t: string, rank = c.dims(t).length) => e.transpose(t, swapLast2(rank));
    if (c.needs(2)) {
      const full = e.op("MatMul", [tr(p), g]);
      const fd = [...od.slice(0, -2), pd[pd.length - 1], od[od.length - 1]];
      c.add(2, e.unbroadcast(full, fd, c.dims(v)));
    }
    if (!c.needs(0) && !c.needs(1)) return;
    const r = e.reduceSum(e.mul(g, o), [od.length - 1], true);
    const vd = c.dims(v);
    const dS = e.mul(p, scoreGradient(c, g, v, r, vd));
    const sc = (t: string) => (scale === 1 ? t : e.mul(t, e.scalar(scale, c.dtype(o))));
    const sd = pd;
    if (c.needs(0)) {
      const kd = c.dims(kt);
      const full = e.op("MatMul", [dS, tr(kt)]);
      const fd = [...sd.slice(0, -2), sd[sd.length - 2], kd[kd.length - 2]];
      c.add(0, sc(e.unbroadcast(full, fd, c.dims(q))));
    }
    if (c.needs(1)) {
      const qd = c.dims(q);
      const full = tr(e.op("MatMul", [tr(dS, sd.length), q]), sd.length);
      const fd = [...sd.slice(0, -2), qd[qd.length - 1], sd[sd.length - 1]];
      c.add(1, sc(e.unbroadcast(full, fd, c.dims(kt))));
    }
  },
  "vjp.GroupNorm": groupNormUnit,
  "vjp.UpConv": upConvUnit,
  "vjp.Silu": (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const x = c.x(0);
    const e = c.e;
    const s = e.op("Sigmoid", [x]);
    // σ'·x + σ = s·(1 + x·(1 − s)) = s·(1 + x − y)
    const d = e.mul(s, e.add(e.sub(x, c.y(0)), k(c, 1, x)));
    c.add(0, e.mul(g, d));
  },
  "vjp.Gelu": (c) => {
    const g = c.gy(0);
    if (!g || !c.needs(0)) return;
    const x = c.x(0);
    const e = c.e;
    const cdf = e.mul(
      e.add(e.op("Erf", [e.mul(x, k(c, Math.SQRT1_2, x))]), k(c, 1, x)),
      k(c, 0.5, x),
    );
    const pdf = e.op("Exp", [e.mul(e.mul(x, x), k(c, -0.5, x))]);
    const d = e.add(cdf, e.mul(x, e.mul(pdf, k(c, 1 / Math.sqrt(2 * Math.PI), x))));
    c.add(0, e.mul(g, d));
  },
};
