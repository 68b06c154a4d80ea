/**
 * Gradient rules of MatMul, Gemm and Einsum.
 *
 * MatMul Y = A B (batched, broadcasting): ∂A = unb(ḡ Bᵀ), ∂B = unb(Aᵀ ḡ). When B is a 2-D matrix
 * (a weight shared by a batch of A rows), ∂A and ∂B are each one GEMM over the flattened rows:
 * ∂A = Gemm(ḡ, B, transB) — a Transpose of a constant B would be folded by ONNX Runtime into a
 * second, transposed copy of the weight — and ∂B = Gemm(A, ḡ, transA), with no batched product
 * followed by a reduction. Other transposes are left to ONNX Runtime's MatMul.
 *
 * @module
 */
import { floatAttr, intAttr, strAttr } from "../graph.ts";
import { parseEinsum } from "../geometry.ts";
import type { Rule } from "../rule.ts";

function swapLast2(r: number): number[] {
  const p = Array.from({ length: r }, (_, i) => i);
  [p[r - 2], p[r - 1]] = [p[r - 1], p[r - 2]];
  return p;
}

const matmul: Rule = (c) => {
  const g0 = c.gy(0);
  if (!g0) return;
  const e = c.e;
  const A = c.x(0);
  const B = c.x(1);
  const ad = c.dims(A);
  const bd = c.dims(B);
  // promote 1-D operands as ONNX does (prepend / append a unit axis)
  const ap = ad.length === 1 ? [1, ad[0]] : ad;
  const bp = bd.length === 1 ? [bd[0], 1] : bd;
  const yd = c.dims(c.y(0));
  const batch = yd.slice(0, yd.length - (ad.length === 1 ? 0 : 1) - (bd.length === 1 ? 0 : 1));
  const yp = [...batch, ap[ap.length - 2], bp[bp.length - 1]];
  const g = yp.length === yd.length ? g0 : e.reshape(g0, yp);
  const Ap = ap === ad ? A : e.reshape(A, ap);
  const Bp = bp === bd ? B : e.reshape(B, bp);
  if (c.needs(0)) {
    let dA: string;
    if (bp.length === 2) {
      // a 2-D B (a weight): ∂A = ḡ Bᵀ as one Gemm(transB) over all rows. No Transpose of B: ONNX
      // Runtime would constant-fold it into a second, transposed copy of the weight.
      const N = bp[1];
      const rows = e.op("Gemm", [yp.length === 2 ? g : e.reshape(g, [-1, N]), Bp], { transB: 1 });
      dA = yp.length === 2 ? rows : e.reshape(rows, ap);
    } else {
      const full = e.op("MatMul", [g, e.transpose(Bp, swapLast2(bp.length))]);
      const fullDims = [...batch, ap[ap.length - 2], ap[ap.length - 1]];
      dA = e.unbroadcast(full, fullDims, ap);
    }
    if (ap !== ad) dA = e.reshape(dA, ad);
    c.add(0, dA);
  }
  if (c.needs(1)) {
    let dB: string;
    if (bp.length === 2 && ap.length > 2) {
      // shared weight: ∂B = A_flatᵀ ḡ_flat over all rows of the batch
      const K = ap[ap.length - 1];
      const N = bp[1];
      const Af = e.reshape(Ap, [-1, K]);
      const gf = e.reshape(g, [-1, N]);
      dB = e.op("Gemm", [Af, gf], { transA: 1 });
    } else {
      const full = e.op("MatMul", [e.transpose(Ap, swapLast2(ap.length)), g]);
      const fullDims = [...batch, bp[bp.length - 2], bp[bp.length - 1]];
      dB = e.unbroadcast(full, fullDims, bp);
    }
    if (bp !== bd) dB = e.reshape(dB, bd);
    c.add(1, dB);
  }
};

/**
 * Gemm Y = α op(A) op(B) + βC:
 * ∂op(A) = α ḡ op(B)ᵀ, ∂op(B) = α op(A)ᵀ ḡ, ∂C = β unb(ḡ); each written as one Gemm with the
 * transpose flags chosen so no explicit Transpose is emitted.
 */
const gemm: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const A = c.x(0);
  const B = c.x(1);
  const alpha = floatAttr(c.a, "alpha", 1);
  const beta = floatAttr(c.a, "beta", 1);
  const tA = intAttr(c.a, "transA", 0);
  const tB = intAttr(c.a, "transB", 0);
  const al = { alpha: { kind: "float" as const, value: alpha } };
  if (c.needs(0)) {
    const dA = tA === 0
      ? e.op("Gemm", [g, B], { ...al, transB: 1 - tB })
      : e.op("Gemm", [B, g], { ...al, transA: tB, transB: 1 });
    c.add(0, dA);
  }
  if (c.needs(1)) {
    const dB = tB === 0
      ? e.op("Gemm", [A, g], { ...al, transA: 1 - tA })
      : e.op("Gemm", [g, A], { ...al, transA: 1, transB: tA });
    c.add(1, dB);
  }
  if (c.x(2) && c.needs(2)) {
    const gs = beta === 1 ? g : e.mul(g, e.scalar(beta, c.dtype(A)));
    c.add(2, e.unbroadcast(gs, c.dims(c.y(0)), c.dims(c.x(2))));
  }
};

/**
 * Einsum: ∂operand_i = einsum(ḡ, operands_j≠i → subscripts_i). Letters of operand i that occur in
 * neither the output nor another operand were summed out: the gradient is constant along them
 * (Unsqueeze + Expand). Repeated letters inside one operand (diagonals) are not supported.
 */
const einsum: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const ins = c.node.input ?? [];
  const spec = parseEinsum(strAttr(c.a, "equation", ""), ins.map((x) => c.dims(x).length));
  // map every letter (incl. ellipsis capitals) to a lowercase letter
  const letters = [...new Set([...spec.inputs.join(""), ...spec.output])];
  if (letters.length > 26) c.fail("Einsum with more than 26 distinct indices");
  const lower = new Map(letters.map((l, i) => [l, String.fromCharCode(97 + i)]));
  const low = (s: string) => [...s].map((ch) => lower.get(ch)!).join("");
  const size = new Map<string, number>();
  spec.inputs.forEach((s, i) =>
    [...s].forEach((ch, k) => {
      const d = c.dims(ins[i])[k];
      if (!size.has(ch) || size.get(ch) === 1) size.set(ch, d);
    })
  );
  ins.forEach((x, i) => {
    if (!c.needs(i)) return;
    const s = spec.inputs[i];
    if (new Set(s).size !== s.length) c.fail("Einsum operand with a repeated index (diagonal)");
    const xd = c.dims(x);
    if ([...s].some((ch, k) => xd[k] === 1 && size.get(ch)! !== 1)) {
      c.fail("Einsum operand broadcast along an index");
    }
    const others = spec.inputs.filter((_, j) => j !== i);
    const avail = new Set([...spec.output, ...others.join("")]);
    const kept = [...s].filter((ch) => avail.has(ch)).join("");
    const eq = [low(spec.output), ...others.map(low)].join(",") + "->" + low(kept);
    let d = c.e.op("Einsum", [g, ...ins.filter((_, j) => j !== i)], { equation: eq });
    if (kept.length !== s.length) {
      const missing = [...s].map((ch, k) => (avail.has(ch) ? -1 : k)).filter((k) => k >= 0);
      d = c.e.expand(c.e.unsqueeze(d, missing), xd);
    }
    c.add(i, d);
  });
};

/** Rules of this module, by op type. */
export const linalgRules: Record<string, Rule> = {
  MatMul: matmul,
  Gemm: gemm,
  Einsum: einsum,
};
