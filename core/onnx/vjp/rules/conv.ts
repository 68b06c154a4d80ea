/**
 * Gradient rules of convolutions and windowed pools.
 *
 * Conv y[n,o,t] = Σ_{i,k} x[n,i, s·t + d·k − p_b] w[o,i,k] (+ b[o]):
 * - ∂x: for stride 1 a Conv of ḡ with the spatially flipped, in/out-swapped kernel and pads
 *   d(k−1) − p (ONNX Runtime runs Conv in its blocked NCHWc layout, faster than ConvTranspose);
 *   otherwise ConvTranspose(ḡ, w) with the output_padding that restores the input extent.
 * - ∂w[o,i,k] = Σ_{n,t} ḡ[n,o,t] x[n,i,s·t + d·k − p_b]: a Conv over the batch axis with the roles
 *   of stride and dilation swapped (x transposed to [Cin, N, …] as the batch of images, ḡ transposed
 *   to [Cout, N, …] as the kernel), cropped to the kernel extent.
 * - ∂b = Σ_{n,t} ḡ.
 * ConvTranspose is the adjoint of Conv, so its input gradient is a Conv with the same attributes.
 * - Nearest integer upsampling followed by such a Conv (`vjp.UpConv`, patterns.ts): ∂x in one
 *   strided Conv, see {@link upConvUnit}.
 *
 * @module
 */
import { intAttr, intsAttr, numel } from "../graph.ts";
import { transposeGeometry, windowGeometry } from "../geometry.ts";
import type { Rule, RuleCtx } from "../rule.ts";

/** How Conv input gradients are emitted for stride 1 (see the module doc). */
export const convOptions: { stride1InputGrad: "conv" | "convtranspose" } = {
  stride1InputGrad: "conv",
};

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a }, (_, i) => a + i);
}

/** Flip the spatial axes of a kernel [A, B, k…] (Slice with step −1). */
function flipSpatial(c: RuleCtx, w: string, kernel: number[]): string {
  const nd = kernel.length;
  return c.e.slice(
    w,
    new Array(nd).fill(-1),
    kernel.map((k) => -k - 1),
    range(2, 2 + nd),
    new Array(nd).fill(-1),
  );
}

/** [Cout, Cin/G, k…] → [Cin, Cout/G, k…] (per group in/out swap). */
function swapInOut(c: RuleCtx, w: string, wd: number[], group: number): string {
  const nd = wd.length - 2;
  if (group === 1) return c.e.transpose(w, [1, 0, ...range(2, 2 + nd)]);
  const [co, ci] = wd;
  const k = wd.slice(2);
  const v = c.e.reshape(w, [group, co / group, ci, ...k]);
  const t = c.e.transpose(v, [0, 2, 1, ...range(3, 3 + nd)]);
  return c.e.reshape(t, [ci * group, co / group, ...k]);
}

/**
 * ∂w of a convolution-like product: out[a, b, k] = Σ_n Σ_t inp[a, n, d·k + s·t − p_b] ker[b, n, t]
 * computed by Conv(inpT, kerT, strides = d, dilations = s) and cropped to `kernel`.
 * `inp` is [N, A·G, …] and `ker` is [N, B·G, …] in NC… layout; returns [A·G… , B, k…] arranged as
 * [G·B, A, k…] when `outBFirst`, else [G·A, B, k…] is not needed (group 1 only then).
 */
function weightGrad(
  c: RuleCtx,
  inp: string,
  inpDims: number[],
  ker: string,
  kerDims: number[],
  geo: { strides: number[]; dilations: number[]; pads: number[] },
  kernel: number[],
  group: number,
): string {
  const e = c.e;
  const nd = kernel.length;
  const sp = range(3, 3 + nd);
  const [n, ca] = inpDims;
  const cb = kerDims[1];
  let inpT: string;
  let kerT: string;
  if (group === 1) {
    inpT = e.transpose(inp, [1, 0, ...range(2, 2 + nd)]);
    kerT = e.transpose(ker, [1, 0, ...range(2, 2 + nd)]);
  } else {
    const a = ca / group;
    const b = cb / group;
    inpT = e.reshape(
      e.transpose(e.reshape(inp, [n, group, a, ...inpDims.slice(2)]), [2, 1, 0, ...sp]),
      [a, group * n, ...inpDims.slice(2)],
    );
    kerT = e.reshape(
      e.transpose(e.reshape(ker, [n, group, b, ...kerDims.slice(2)]), [1, 2, 0, ...sp]),
      [group * b, n, ...kerDims.slice(2)],
    );
  }
  const inSp = inpDims.slice(2);
  const kSp = kerDims.slice(2);
  // the smallest end pad that still yields ≥ k outputs
  const pe = inSp.map((h, i) =>
    Math.max(
      0,
      geo.dilations[i] * (kernel[i] - 1) + geo.strides[i] * (kSp[i] - 1) + 1 - h - geo.pads[i],
    )
  );
  const pads = [...geo.pads.slice(0, nd), ...pe];
  const conv = e.op("Conv", [inpT, kerT], {
    strides: geo.dilations,
    dilations: geo.strides,
    pads,
    group,
  });
  const got = inSp.map((h, i) =>
    Math.floor(
      (h + pads[i] + pads[i + nd] - geo.strides[i] * (kSp[i] - 1) - 1) / geo.dilations[i],
    ) + 1
  );
  const cropped = got.every((g, i) => g === kernel[i])
    ? conv
    : e.slice(conv, new Array(nd).fill(0), kernel, range(2, 2 + nd));
  // [A, G·B, k…] → [G·B, A, k…]
  return e.transpose(cropped, [1, 0, ...range(2, 2 + nd)]);
}

/** Operands and attributes common to Conv and ConvTranspose (x, w, dims, kernel, group). */
function convOperands(c: RuleCtx) {
  const x = c.x(0);
  const w = c.x(1);
  const xd = c.dims(x);
  const wd = c.dims(w);
  return {
    x,
    w,
    xd,
    wd,
    yd: c.dims(c.y(0)),
    nd: xd.length - 2,
    kernel: intsAttr(c.a, "kernel_shape") ?? wd.slice(2),
    group: intAttr(c.a, "group", 1),
  };
}

/** ∂b = Σ ḡ over the batch and spatial axes (when the bias exists and is needed). */
function biasGrad(c: RuleCtx, g: string, nd: number): void {
  if (c.x(2) && c.needs(2)) c.add(2, c.e.reduceSum(g, [0, ...range(2, 2 + nd)], false));
}

const conv: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const { x, w, xd, wd, yd, nd, kernel, group } = convOperands(c);
  const geo = windowGeometry(c.a, xd.slice(2), kernel);
  if (c.needs(0)) {
    const inSp = xd.slice(2);
    const outSp = yd.slice(2);
    const flipPads = [
      ...kernel.map((k, i) => geo.dilations[i] * (k - 1) - geo.pads[i]),
      ...kernel.map((k, i) => geo.dilations[i] * (k - 1) - geo.pads[i + nd]),
    ];
    const stride1 = geo.strides.every((s) => s === 1);
    if (stride1 && flipPads.every((p) => p >= 0) && convOptions.stride1InputGrad === "conv") {
      const wf = flipSpatial(c, swapInOut(c, w, wd, group), kernel);
      c.add(
        0,
        e.op("Conv", [g, wf], {
          dilations: geo.dilations,
          pads: flipPads,
          group,
          kernel_shape: kernel,
        }),
      );
    } else {
      const outPad = inSp.map((h, i) =>
        h -
        ((outSp[i] - 1) * geo.strides[i] - geo.pads[i] - geo.pads[i + nd] +
          geo.dilations[i] * (kernel[i] - 1) + 1)
      );
      const attrs: Record<string, number[] | number> = {
        strides: geo.strides,
        pads: geo.pads,
        dilations: geo.dilations,
        group,
        kernel_shape: kernel,
      };
      if (outPad.some((v) => v !== 0)) attrs.output_padding = outPad;
      c.add(0, e.op("ConvTranspose", [g, w], attrs));
    }
  }
  if (c.needs(1)) {
    c.add(1, weightGrad(c, x, xd, g, yd, geo, kernel, group));
  }
  biasGrad(c, g, nd);
};

const convTranspose: Rule = (c) => {
  const g = c.gy(0);
  if (!g) return;
  const e = c.e;
  const { x, w, xd, yd, nd, kernel, group } = convOperands(c);
  const geo = transposeGeometry(c.a, xd.slice(2), kernel);
  if (geo.outputPadding.some((p, i) => p >= geo.strides[i] && p >= geo.dilations[i])) {
    c.fail("output_padding not smaller than the stride");
  }
  if (c.needs(0)) {
    c.add(
      0,
      e.op("Conv", [g, w], {
        strides: geo.strides,
        pads: geo.pads,
        dilations: geo.dilations,
        group,
        kernel_shape: kernel,
      }),
    );
  }
  if (c.needs(1)) {
    if (group !== 1) c.fail("weight gradient of a grouped ConvTranspose");
    // ∂w[i,o,k] = Σ_{n,j} x[n,i,j] ḡ[n,o, s·j + d·k − p_b]: ḡ plays the input, x the kernel
    const gw = weightGrad(c, g, yd, x, xd, geo, kernel, 1); // [Cin, Cout, k…]
    c.add(1, gw);
  }
  biasGrad(c, g, nd);
};

/**
 * AveragePool: ∂x = ConvTranspose(ḡ / count, ones) depthwise, where count is the number of
 * elements each window averaged (all kernel taps with count_include_pad, else the in-bounds ones).
 */
const averagePool: Rule = (c) => {
  const g = c.gy(0);
  if (!g || !c.needs(0)) return;
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const yd = c.dims(c.y(0));
  const nd = xd.length - 2;
  const kernel = intsAttr(c.a, "kernel_shape")!;
  const geo = windowGeometry(c.a, xd.slice(2), kernel);
  const incl = intAttr(c.a, "count_include_pad", 0) === 1;
  const outSp = yd.slice(2);
  // per-axis counts, multiplied into a [1,1,out…] divisor map
  const perAxis = outSp.map((o, ax) =>
    Array.from({ length: o }, (_, t) => {
      let n = 0;
      for (let j = 0; j < kernel[ax]; j++) {
        const p = t * geo.strides[ax] + j * geo.dilations[ax] - geo.pads[ax];
        const lo = incl ? -geo.pads[ax] : 0;
        const hi = incl ? xd[ax + 2] + geo.pads[ax + nd] : xd[ax + 2];
        if (p >= lo && p < hi) n++;
      }
      return n;
    })
  );
  const total = numel(outSp);
  const inv = new Float64Array(total);
  for (let k = 0; k < total; k++) {
    let rem = k;
    let cnt = 1;
    for (let ax = nd - 1; ax >= 0; ax--) {
      const t = rem % outSp[ax];
      rem = Math.floor(rem / outSp[ax]);
      cnt *= perAxis[ax][t];
    }
    inv[k] = cnt > 0 ? 1 / cnt : 0;
  }
  const dtype = c.dtype(x);
  const gs = e.mul(g, e.constant(dtype, [1, 1, ...outSp], inv));
  const ch = xd[1];
  const ones = e.constant(dtype, [ch, 1, ...kernel], new Float64Array(ch * numel(kernel)).fill(1));
  const outPad = xd.slice(2).map((h, i) =>
    h -
    ((outSp[i] - 1) * geo.strides[i] - geo.pads[i] - geo.pads[i + nd] +
      geo.dilations[i] * (kernel[i] - 1) + 1)
  );
  if (outPad.some((p, i) => p < 0 || (p >= geo.strides[i] && p >= geo.dilations[i]))) {
    c.fail("AveragePool window layout (ceil_mode windows past the padding)");
  }
  const attrs: Record<string, number[] | number> = {
    strides: geo.strides,
    pads: geo.pads,
    dilations: geo.dilations,
    group: ch,
    kernel_shape: kernel,
  };
  if (outPad.some((v) => v !== 0)) attrs.output_padding = outPad;
  c.add(0, e.op("ConvTranspose", [gs, ones], attrs));
};

/** MaxPool: scatter ḡ to the arg-max positions (the forward node's Indices output). */
const maxPool: Rule = (c) => {
  const g = c.gy(0);
  if (!g || !c.needs(0)) return;
  if (intAttr(c.a, "storage_order", 0) !== 0) c.fail("MaxPool storage_order 1");
  const e = c.e;
  const x = c.x(0);
  const xd = c.dims(x);
  const yd = c.dims(c.y(0));
  const kernel = intsAttr(c.a, "kernel_shape")!;
  const geo = windowGeometry(c.a, xd.slice(2), kernel);
  const overlap = kernel.some((k, i) => (k - 1) * geo.dilations[i] + 1 > geo.strides[i]);
  if (overlap && c.opset < 16) c.fail("overlapping MaxPool windows need opset ≥ 16");
  const idx = c.forwardOutput(1, yd, 7);
  const flatIdx = e.reshape(idx, [-1]);
  const z = e.zeros([numel(xd)], c.dtype(x));
  const attrs: Record<string, string | number> = { axis: 0 };
  if (overlap) attrs.reduction = "add";
  const sc = e.op("ScatterElements", [z, flatIdx, e.reshape(g, [-1])], attrs);
  c.add(0, e.reshape(sc, xd));
};

/**
 * The unit `vjp.UpConv` (see patterns.ts): y = Conv(u, w) with u = up_s(x), nearest integer
 * upsampling (each element of x repeated into an s_1 × … × s_n block), stride 1, dilation 1, and w
 * (and the bias) without gradient. Per spatial axis, with p_b the Conv's begin pad and k its kernel:
 *
 *   ∂x[c, i] = Σ_{a<s} ∂u[c, s·i + a],   ∂u[c, q] = Σ_o Σ_κ w[o, c, κ] ḡ[o, q − κ + p_b]
 *            = Σ_o Σ_τ K[c, o, τ] ḡ[o, s·i + τ − P],   P = k − 1 − p_b,  τ = 0 … k + s − 2,
 *   K[c, o, τ] = Σ_{a<s} w̃[c, o, τ − a],   w̃[c, o, j] = w[o, c, k − 1 − j]
 *
 * (w̃: the flipped, in/out-swapped kernel of the stride-1 input gradient; K: w̃ summed over the s
 * shifts, k + s − 1 taps). So ∂x is one Conv of ḡ with stride s, kernel K and pads P (begin) and
 * k − 1 − p_e (end), instead of a Conv at the upsampled size followed by the block sums: per
 * element of x, (k + s − 1)ⁿ against sⁿkⁿ products — 16 against 36 for a 3×3 kernel after 2×
 * upsampling (the VAE decoder's up-blocks). Same products of w and ḡ, summed in another order. K
 * is built from w in the graph (Pad, Add), so ONNX Runtime folds it at session creation for a
 * constant w and no second weight is stored.
 */
export const upConvUnit: Rule = (c) => {
  const g = c.gy(0);
  if (!g || !c.needs(0)) return;
  const e = c.e;
  const w = c.x(1);
  const wd = c.dims(w);
  const group = intAttr(c.a, "group", 1);
  const up = intsAttr(c.a, "up")!;
  const kernel = intsAttr(c.a, "kernel_shape")!;
  const pads = intsAttr(c.a, "pads")!;
  const nd = kernel.length;
  let k = flipSpatial(c, swapInOut(c, w, wd, group), kernel);
  up.forEach((s, i) => {
    if (s === 1) return;
    const shifted = Array.from({ length: s }, (_, a) => {
      const p = new Array(2 * (nd + 2)).fill(0);
      p[2 + i] = a;
      p[nd + 4 + i] = s - 1 - a;
      return e.padZeros(k, p);
    });
    k = e.sum(shifted);
  });
  c.add(
    0,
    e.op("Conv", [g, k], {
      strides: up,
      pads: [
        ...kernel.map((kk, i) => kk - 1 - pads[i]),
        ...kernel.map((kk, i) => kk - 1 - pads[i + nd]),
      ],
      group,
      kernel_shape: kernel.map((kk, i) => kk + up[i] - 1),
    }),
  );
};

/** Rules of this module, by op type. */
export const convRules: Record<string, Rule> = {
  Conv: conv,
  ConvTranspose: convTranspose,
  AveragePool: averagePool,
  MaxPool: maxPool,
};
