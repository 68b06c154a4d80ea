/**
 * Index geometry shared by shape inference and the gradient rules: broadcasting, convolution and
 * pooling windows, Slice ranges, Resize coordinate maps and Einsum equations. Pure functions over
 * concrete dimensions.
 *
 * @module
 */
import { type Attrs, floatAttr, intAttr, intsAttr, normAxis, strAttr } from "./graph.ts";

/** Numpy-style multidirectional broadcast of shapes; throws when incompatible. */
export function broadcastShapes(...shapes: readonly (readonly number[])[]): number[] {
  const r = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(r).fill(1);
  for (const s of shapes) {
    const off = r - s.length;
    s.forEach((d, i) => {
      const o = out[off + i];
      if (o === 1) out[off + i] = d;
      else if (d !== 1 && d !== o) {
        throw new RangeError(
          `shapes [${shapes.map((x) => x.join(",")).join("] [")}] do not broadcast`,
        );
      }
    });
  }
  return out;
}

/** Resolved geometry of a Conv / ConvTranspose / pooling node. */
export interface WindowGeometry {
  /** Kernel spatial extent. */
  kernel: number[];
  /** Strides per spatial axis. */
  strides: number[];
  /** Dilations per spatial axis. */
  dilations: number[];
  /** Pads [begin…, end…] after resolving auto_pad. */
  pads: number[];
  /** Output spatial dims. */
  out: number[];
}

/**
 * Conv / pooling window geometry: out = ⌊(in + p_b + p_e − d(k−1) − 1)/s⌋ + 1 (⌈⌉ with ceil_mode),
 * auto_pad SAME_* giving out = ⌈in/s⌉ with the odd pad at the end (UPPER) or start (LOWER).
 *
 * @param a node attributes
 * @param inSpatial input spatial dims
 * @param kernel kernel spatial dims (from the weight or `kernel_shape`)
 */
export function windowGeometry(a: Attrs, inSpatial: number[], kernel: number[]): WindowGeometry {
  const nd = inSpatial.length;
  const strides = intsAttr(a, "strides") ?? new Array(nd).fill(1);
  const dilations = intsAttr(a, "dilations") ?? new Array(nd).fill(1);
  let pads = intsAttr(a, "pads") ?? new Array(2 * nd).fill(0);
  const autoPad = strAttr(a, "auto_pad", "NOTSET");
  const ceil = intAttr(a, "ceil_mode", 0) === 1;
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    pads = new Array(2 * nd).fill(0);
    for (let i = 0; i < nd; i++) {
      const out = Math.ceil(inSpatial[i] / strides[i]);
      const total = Math.max(
        0,
        (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - inSpatial[i],
      );
      const small = Math.floor(total / 2);
      pads[i] = autoPad === "SAME_UPPER" ? small : total - small;
      pads[i + nd] = total - pads[i];
    }
  } else if (autoPad === "VALID") pads = new Array(2 * nd).fill(0);
  const out = inSpatial.map((h, i) => {
    const span = h + pads[i] + pads[i + nd] - dilations[i] * (kernel[i] - 1) - 1;
    const o = (ceil ? Math.ceil(span / strides[i]) : Math.floor(span / strides[i])) + 1;
    // ceil_mode: the last window must start inside the (begin-padded) input
    return ceil && (o - 1) * strides[i] >= h + pads[i] ? o - 1 : o;
  });
  return { kernel, strides, dilations, pads, out };
}

/** Resolved geometry of a ConvTranspose node (pads from output_shape / auto_pad resolved). */
export interface TransposeGeometry extends WindowGeometry {
  /** output_padding per spatial axis. */
  outputPadding: number[];
}

/**
 * ConvTranspose geometry: out = s(in−1) + output_padding + d(k−1) + 1 − p_b − p_e; when
 * `output_shape` is given the pads are derived from it (ONNX rule: SAME_UPPER puts the smaller
 * half at the start).
 */
export function transposeGeometry(
  a: Attrs,
  inSpatial: number[],
  kernel: number[],
): TransposeGeometry {
  const nd = inSpatial.length;
  const strides = intsAttr(a, "strides") ?? new Array(nd).fill(1);
  const dilations = intsAttr(a, "dilations") ?? new Array(nd).fill(1);
  const outputPadding = intsAttr(a, "output_padding") ?? new Array(nd).fill(0);
  const autoPad = strAttr(a, "auto_pad", "NOTSET");
  let pads = intsAttr(a, "pads") ?? new Array(2 * nd).fill(0);
  const outShape = intsAttr(a, "output_shape");
  const full = inSpatial.map((h, i) =>
    strides[i] * (h - 1) + outputPadding[i] + dilations[i] * (kernel[i] - 1) + 1
  );
  if (outShape || autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    const target = outShape ? outShape.slice(-nd) : inSpatial.map((h, i) => h * strides[i]);
    pads = new Array(2 * nd).fill(0);
    for (let i = 0; i < nd; i++) {
      const total = full[i] - target[i];
      if (autoPad === "SAME_UPPER") {
        pads[i] = Math.floor(total / 2);
        pads[i + nd] = total - pads[i];
      } else {
        pads[i + nd] = Math.floor(total / 2);
        pads[i] = total - pads[i + nd];
      }
    }
  } else if (autoPad === "VALID") pads = new Array(2 * nd).fill(0);
  const out = full.map((f, i) => f - pads[i] - pads[i + nd]);
  return { kernel, strides, dilations, pads, out, outputPadding };
}

/** A Slice resolved on one axis: first index, step and count. */
export interface SliceAxis {
  /** Axis (normalised). */
  axis: number;
  /** First selected index. */
  start: number;
  /** Step (non-zero). */
  step: number;
  /** Number of selected elements. */
  count: number;
}

/**
 * Resolve ONNX Slice parameters against a shape (negative indices count from the end, clamping to
 * [0, d] for positive steps and [−1, d−1] for negative steps).
 */
export function resolveSlice(
  dims: readonly number[],
  starts: number[],
  ends: number[],
  axes?: number[],
  steps?: number[],
): SliceAxis[] {
  const r = dims.length;
  const ax = axes ?? starts.map((_, i) => i);
  return ax.map((a0, k) => {
    const axis = normAxis(a0, r);
    const d = dims[axis];
    const step = steps ? steps[k] : 1;
    if (step === 0) throw new RangeError("Slice step 0");
    let s = starts[k];
    let e = ends[k];
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    const count = step > 0 ? Math.max(0, Math.ceil((e - s) / step)) : Math.max(
      0,
      Math.ceil((s - e) / -step),
    );
    return { axis, start: s, step, count };
  });
}

/** Settings of a Resize node that matter for its coordinate map. */
export interface ResizeMode {
  /** nearest | linear | cubic. */
  mode: string;
  /** coordinate_transformation_mode. */
  coord: string;
  /** nearest_mode. */
  nearest: string;
  /** cubic_coeff_a. */
  cubicA: number;
  /** exclude_outside. */
  excludeOutside: boolean;
}

/** Read the Resize attributes (opset 11+ defaults). */
export function resizeMode(a: Attrs): ResizeMode {
  return {
    mode: strAttr(a, "mode", "nearest"),
    coord: strAttr(a, "coordinate_transformation_mode", "half_pixel"),
    nearest: strAttr(a, "nearest_mode", "round_prefer_floor"),
    cubicA: floatAttr(a, "cubic_coeff_a", -0.75),
    excludeOutside: intAttr(a, "exclude_outside", 0) === 1,
  };
}

/**
 * The 1-D Resize map along one axis as a dense matrix M (out × in, row-major) so that
 * y = M x along that axis. Follows the ONNX Resize reference (coordinate transforms, nearest
 * rounding, linear with edge clamping, cubic with Keys' kernel and optional exclude_outside).
 */
export function resizeMatrix(
  inLen: number,
  outLen: number,
  scale: number,
  m: ResizeMode,
): Float64Array {
  const M = new Float64Array(outLen * inLen);
  const src = (o: number): number => {
    switch (m.coord) {
      case "half_pixel":
        return (o + 0.5) / scale - 0.5;
      case "half_pixel_symmetric": {
        const adj = outLen / (scale * inLen);
        const center = inLen / 2;
        const off = center * (1 - adj);
        return off + (o + 0.5) / scale - 0.5;
      }
      case "pytorch_half_pixel":
        return outLen > 1 ? (o + 0.5) / scale - 0.5 : 0;
      case "align_corners":
        return outLen === 1 ? 0 : (o * (inLen - 1)) / (outLen - 1);
      case "asymmetric":
        return o / scale;
      default:
        throw new RangeError(`coordinate_transformation_mode ${m.coord}`);
    }
  };
  for (let o = 0; o < outLen; o++) {
    const x = src(o);
    if (m.mode === "nearest") {
      let i: number;
      switch (m.nearest) {
        case "floor":
          i = Math.floor(x);
          break;
        case "ceil":
          i = Math.ceil(x);
          break;
        case "round_prefer_ceil":
          i = Math.round(x);
          break;
        default: // round_prefer_floor
          i = x === Math.floor(x) + 0.5 ? Math.floor(x) : Math.round(x);
      }
      i = Math.min(Math.max(i, 0), inLen - 1);
      M[o * inLen + i] = 1;
    } else if (m.mode === "linear") {
      const xc = Math.min(Math.max(x, 0), inLen - 1);
      const i0 = Math.floor(xc);
      const i1 = Math.min(i0 + 1, inLen - 1);
      const f = xc - i0;
      M[o * inLen + i0] += 1 - f;
      M[o * inLen + i1] += f;
    } else if (m.mode === "cubic") {
      const a = m.cubicA;
      const i0 = Math.floor(x);
      const t = x - i0;
      const w = [t + 1, t, 1 - t, 2 - t].map((d) => {
        const ad = Math.abs(d);
        if (ad <= 1) return (a + 2) * ad ** 3 - (a + 3) * ad ** 2 + 1;
        if (ad < 2) return a * ad ** 3 - 5 * a * ad ** 2 + 8 * a * ad - 4 * a;
        return 0;
      });
      const idx = [i0 - 1, i0, i0 + 1, i0 + 2];
      let total = 0;
      if (m.excludeOutside) {
        idx.forEach((i, k) => {
          if (i < 0 || i >= inLen) w[k] = 0;
        });
        total = w.reduce((p, v) => p + v, 0);
      }
      idx.forEach((i, k) => {
        const c = Math.min(Math.max(i, 0), inLen - 1);
        M[o * inLen + c] += m.excludeOutside ? w[k] / total : w[k];
      });
    } else throw new RangeError(`Resize mode ${m.mode}`);
  }
  return M;
}

/** A parsed Einsum equation with explicit output (ellipses replaced by letters). */
export interface EinsumSpec {
  /** Subscripts of each operand. */
  inputs: string[];
  /** Output subscripts. */
  output: string;
}

/**
 * Parse an Einsum equation against operand ranks: `...` becomes fresh capital letters, an implicit
 * output is the sorted letters that appear exactly once (after the ellipsis letters).
 */
export function parseEinsum(eq: string, ranks: number[]): EinsumSpec {
  const clean = eq.replace(/\s+/g, "");
  const [lhs, rhs] = clean.split("->");
  const terms = lhs.split(",");
  if (terms.length !== ranks.length) {
    throw new RangeError(`Einsum '${eq}': ${terms.length} terms for ${ranks.length} operands`);
  }
  const ellLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let ellRank = 0;
  terms.forEach((t, i) => {
    if (t.includes("...")) ellRank = Math.max(ellRank, ranks[i] - (t.length - 3));
  });
  const ell = ellLetters.slice(0, ellRank);
  const inputs = terms.map((t, i) =>
    t.includes("...") ? t.replace("...", ell.slice(ellRank - (ranks[i] - (t.length - 3)))) : t
  );
  let output: string;
  if (rhs !== undefined) output = rhs.replace("...", ell);
  else {
    const count = new Map<string, number>();
    for (const t of inputs) for (const c of t) count.set(c, (count.get(c) ?? 0) + 1);
    const once = [...count.entries()]
      .filter(([c, n]) => n === 1 && !ell.includes(c))
      .map(([c]) => c)
      .sort();
    output = ell + once.join("");
  }
  inputs.forEach((t, i) => {
    if (t.length !== ranks[i]) throw new RangeError(`Einsum '${eq}': operand ${i} rank mismatch`);
  });
  return { inputs, output };
}
