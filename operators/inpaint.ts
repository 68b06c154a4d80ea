/**
 * Inpainting: y = m ⊙ x, with a per-pixel keep-mask m ∈ {0,1}^{H×W} shared by the channels
 * (deepinv `Inpainting`: the output has the shape of x, with zeros at the missing pixels).
 *
 * A is diagonal and symmetric, so Aᵀ = A = J_A and the L2 prox is exact and elementwise:
 *
 *   argmin_u (γ/2)‖m⊙u − y‖² + ½‖u − z‖²   ⇒   u = (z + γ m y) / (1 + γ m²).
 *
 * Observed pixels move towards y (u → y as γ → ∞); missing pixels keep z.
 *
 * Noise: `projectMeasurement` zeroes the missing pixels of a noisy measurement, so the noise lands
 * only on observed entries and the solver-facing y keeps zeros in the hole (deepinv projects the
 * noise the same way). The prox ignores y in the hole anyway; the projection keeps ‖A x − y‖ honest.
 *
 * `pseudoInverse` is LATINO's inpainting initialisation: y with the hole filled by a box-filter
 * diffusion restricted to the hole (see {@link fillHole}).
 *
 * @module
 */
import { z } from "zod";
import type { ForwardOperator } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import { defineOperator, type OperatorPlugin } from "../core/registry.ts";
import type { RandomStream } from "../core/rng.ts";
import { type Tensor, tensor } from "../core/tensor.ts";
import { linearOperator } from "../core/linear_operator.ts";
import {
  bandMask,
  boxMask,
  freeformMask,
  type PixelMask,
  randomMask,
  readMaskFile,
} from "./masks.ts";
import { inpaintOnnx } from "./inpaint_onnx.ts";

/**
 * LATINO's hole filling: 200 iterations of a 19×19 box filter (S-LAT `utils._get_x_init`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { INPAINT_FILL_DEFAULTS } from "./inpaint.ts";
 * assert.equal(INPAINT_FILL_DEFAULTS.kernel, 19);
 * ```
 */
export const INPAINT_FILL_DEFAULTS = { iterations: 200, kernel: 19, tol: 1e-7 } as const;

/**
 * Fill the hole (m = 0) of each channel of `y` by iterated box-filter diffusion; observed pixels are
 * returned unchanged. Each iteration replaces every hole pixel by the mean of the `kernel`×`kernel`
 * window around it (Jacobi sweep), the window clipped to the image.
 *
 * DEVIATION from LATINO (`_get_x_init`), which filters with zero padding and starts the hole at the
 * measured value (0 on [0,1], −1 on the model scale): here the window is clipped to the image and
 * averaged over the pixels it contains, and the hole starts at the mean of the observed pixels of its
 * channel (½ when nothing is observed). Both keep a constant image exactly constant and stop the
 * fill from being pulled towards black where 200 iterations have not reached the hole's centre
 * (diffusion length ≈ 5.5·√200 ≈ 78 px against LATINO's 204-px band). The sweep also stops early
 * once no pixel moves by more than `tol`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillHole } from "./inpaint.ts";
 * const mask = { height: 1, width: 3, data: new Float32Array([1, 0, 1]) }; // middle pixel missing
 * const y = { data: new Float32Array([0.2, 0, 0.4]), shape: [1, 1, 1, 3] };
 * const x0 = fillHole(y, mask, { kernel: 3 });
 * assert.equal(x0.data[0], y.data[0]); // observed pixels are kept
 * assert.ok(Math.abs(x0.data[1] - 0.3) < 1e-6); // the hole becomes the mean of its neighbours
 * ```
 */
export function fillHole(
  y: Tensor,
  mask: PixelMask,
  options: { iterations?: number; kernel?: number; tol?: number } = {},
): Tensor {
  const iterations = options.iterations ?? INPAINT_FILL_DEFAULTS.iterations;
  const r = Math.floor((options.kernel ?? INPAINT_FILL_DEFAULTS.kernel) / 2);
  const tol = options.tol ?? INPAINT_FILL_DEFAULTS.tol;
  const [, c, h, w] = y.shape;
  const out = tensor(y.shape, y.data.slice());
  // Work only on the hole's bounding box grown by r: nothing else changes or is read.
  let i0 = h, i1 = -1, j0 = w, j1 = -1;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      if (mask.data[i * w + j] === 0) {
        if (i < i0) i0 = i;
        if (i > i1) i1 = i;
        if (j < j0) j0 = j;
        if (j > j1) j1 = j;
      }
    }
  }
  if (i1 < 0) return out;
  const ra = Math.max(0, i0 - r), rb = Math.min(h, i1 + r + 1);
  const ca = Math.max(0, j0 - r), cb = Math.min(w, j1 + r + 1);
  const rh = rb - ra, rw = cb - ca;
  // Hole pixels inside the region: flat index and the window's clipped corners in the integral image.
  const list: number[] = [];
  for (let i = ra; i < rb; i++) {
    for (let j = ca; j < cb; j++) if (mask.data[i * w + j] === 0) list.push((i - ra) * rw + j - ca);
  }
  const holes = Int32Array.from(list);
  const top = new Int32Array(holes.length), bottom = new Int32Array(holes.length);
  const left = new Int32Array(holes.length), right = new Int32Array(holes.length);
  const inv = new Float64Array(holes.length);
  for (let q = 0; q < holes.length; q++) {
    const i = Math.floor(holes[q] / rw), j = holes[q] - i * rw;
    top[q] = Math.max(0, i - r);
    bottom[q] = Math.min(rh, i + r + 1);
    left[q] = Math.max(0, j - r);
    right[q] = Math.min(rw, j + r + 1);
    inv[q] = 1 / ((bottom[q] - top[q]) * (right[q] - left[q]));
  }
  const stride = rw + 1;
  const region = new Float64Array(rh * rw);
  const integral = new Float64Array((rh + 1) * (rw + 1));
  const next = new Float64Array(holes.length);
  for (let ch = 0; ch < c; ch++) {
    const plane = out.data.subarray(ch * h * w, (ch + 1) * h * w);
    let sum = 0, n = 0;
    for (let k = 0; k < h * w; k++) {
      if (mask.data[k] !== 0) {
        sum += plane[k];
        n++;
      }
    }
    const start = n > 0 ? sum / n : 0.5;
    for (let i = 0; i < rh; i++) {
      for (let j = 0; j < rw; j++) region[i * rw + j] = plane[(i + ra) * w + j + ca];
    }
    for (const k of holes) region[k] = start;
    for (let it = 0; it < iterations; it++) {
      // Integral image: S[i][j] = Σ region[<i][<j].
      for (let i = 0; i < rh; i++) {
        let row = 0;
        for (let j = 0; j < rw; j++) {
          row += region[i * rw + j];
          integral[(i + 1) * stride + j + 1] = integral[i * stride + j + 1] + row;
        }
      }
      let change = 0;
      for (let q = 0; q < holes.length; q++) {
        const a = top[q] * stride, b = bottom[q] * stride, l = left[q], e = right[q];
        const v = (integral[b + e] - integral[a + e] - integral[b + l] + integral[a + l]) * inv[q];
        const d = Math.abs(v - region[holes[q]]);
        if (d > change) change = d;
        next[q] = v;
      }
      for (let q = 0; q < holes.length; q++) region[holes[q]] = next[q];
      if (change <= tol) break;
    }
    for (const k of holes) {
      const i = Math.floor(k / rw), j = k - i * rw;
      plane[(i + ra) * w + j + ca] = region[k];
    }
  }
  return out;
}

const MASKS = ["box", "band", "random", "freeform", "file"] as const;
/** Which options each mask type reads. */
const APPLIES: Record<string, readonly (typeof MASKS)[number][]> = {
  size: ["box"],
  p: ["random"],
  path: ["file"],
  min_area: ["freeform"],
  max_area: ["freeform"],
};

const options = z.strictObject({
  /** Mask type. */
  mask: z.enum(MASKS).default("box").describe("box | band | random | freeform | file"),
  /** box: side of the centred square hole as a fraction of min(H, W) (default 0.5). */
  size: z.number().gt(0).max(1).optional()
    .describe("box: hole side as a fraction of min(H, W) (default 0.5)"),
  /** random: probability that a pixel is KEPT (default 0.2, i.e. P2L's 80 % pixel drop). */
  p: z.number().gt(0).max(1).optional()
    .describe("random: probability that a pixel is kept (default 0.2)"),
  /** file: path of a mask image, white = kept, black = missing, same size as the image. */
  path: z.string().min(1).optional()
    .describe("file: mask image, white = kept, black = missing, same size as the image"),
  /** freeform: smallest hole fraction (default 0.1). */
  min_area: z.number().gt(0).lt(1).optional()
    .describe("freeform: smallest hole fraction (default 0.1)"),
  /** freeform: largest hole fraction (default 0.2). */
  max_area: z.number().gt(0).lt(1).optional()
    .describe("freeform: largest hole fraction (default 0.2)"),
}).superRefine((o, ctx) => {
  for (const [key, masks] of Object.entries(APPLIES)) {
    if (o[key as keyof typeof o] !== undefined && !masks.includes(o.mask)) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `applies only to mask=${masks.join("|")} (mask is ${o.mask})`,
      });
    }
  }
  if (o.mask === "file" && o.path === undefined) {
    ctx.addIssue({ code: "custom", path: ["path"], message: "mask=file needs path=FILE" });
  }
  if ((o.min_area ?? 0.1) > (o.max_area ?? 0.2)) {
    ctx.addIssue({ code: "custom", path: ["min_area"], message: "must not exceed max_area" });
  }
});

/** Options of the "inpaint" operator (unset fields take the defaults named below). */
export interface InpaintOptions {
  /** Mask type (default box). */
  mask: "box" | "band" | "random" | "freeform" | "file";
  /** box: side of the centred square hole as a fraction of min(H, W) (default 0.5). */
  size?: number;
  /** random: probability that a pixel is KEPT (default 0.2, i.e. P2L's 80 % pixel drop). */
  p?: number;
  /** file: mask image path, white = kept, black = missing, same size as the image. */
  path?: string;
  /** freeform: smallest hole fraction (default 0.1). */
  min_area?: number;
  /** freeform: largest hole fraction (default 0.2). */
  max_area?: number;
}

/**
 * Build the keep-mask an "inpaint" spec describes, for an H×W image.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { streams } from "../core/rng.ts";
 * import { makeInpaintMask } from "./inpaint.ts";
 * const m = await makeInpaintMask({ mask: "box", size: 0.5 }, 8, 8, streams(0).get("operator"));
 * assert.equal(m.data.reduce((s, v) => s + v, 0), 64 - 16); // a 4×4 hole in the centre
 * ```
 */
export async function makeInpaintMask(
  o: InpaintOptions,
  height: number,
  width: number,
  rng: RandomStream,
): Promise<PixelMask> {
  switch (o.mask) {
    case "box":
      return boxMask(height, width, o.size ?? 0.5);
    case "band":
      return bandMask(height, width);
    case "random":
      return randomMask(height, width, o.p ?? 0.2, rng);
    case "freeform":
      return freeformMask(height, width, rng, { minArea: o.min_area, maxArea: o.max_area });
    case "file":
      return await readMaskFile(o.path!, height, width);
  }
}

/**
 * The "inpaint" operator plugin: `inpaint:mask=box|band|random|freeform|file,...`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createOperator, PluginRegistry } from "../core/registry.ts";
 * import { inpaintPlugin } from "./inpaint.ts";
 * const reg = new PluginRegistry().register(inpaintPlugin);
 * const op = await createOperator(reg, "inpaint:mask=box,size=0.5", [1, 3, 8, 8], 0);
 * assert.ok(op.capabilities.closedFormProx);
 * ```
 */
export const inpaintPlugin: OperatorPlugin<InpaintOptions> = defineOperator({
  kind: "operator",
  name: "inpaint",
  description:
    "inpainting y = m⊙x: mask=box (size=0.5 of min side, centred) | band (LATINO) | random (p = keep prob., 0.2) | freeform (min_area=0.1, max_area=0.2) | file (path, white = kept)",
  options,
  async create(o, { shape, rng }): Promise<ForwardOperator> {
    const [, c, h, w] = shape;
    if (!(c >= 1 && h >= 1 && w >= 1)) throw new InputError(`inpaint: bad image shape [${shape}]`);
    const mask = await makeInpaintMask(o, h, w, rng);
    const m = mask.data, hw = h * w;
    const s = [...shape];
    const applyMask = (t: Tensor): Tensor => {
      const out = tensor(s), src = t.data, dst = out.data;
      for (let ch = 0, o = 0; ch < c; ch++, o += hw) {
        for (let k = 0; k < hw; k++) {
          const mk = m[k];
          dst[o + k] = mk === 0 ? 0 : mk * src[o + k]; // +0 in the hole (not −0)
        }
      }
      return out;
    };
    // Per-pixel factors of the prox for the last γ: γm and 1/(1 + γm²), shared by the channels.
    const gm = new Float32Array(hw), inv = new Float32Array(hw);
    let factorsFor = NaN;
    return linearOperator({
      name: "inpaint",
      options: o,
      inputShape: s,
      outputShape: s,
      forward: applyMask,
      adjoint: applyMask,
      /** u = (z + γ m y)/(1 + γ m²), elementwise; ‖m u − y‖ on request, in the same pass. */
      prox(zt, y, gamma, po) {
        const out = po.out ?? tensor(s);
        if (gamma !== factorsFor) {
          for (let k = 0; k < hw; k++) {
            gm[k] = gamma * m[k];
            inv[k] = 1 / (1 + gamma * m[k] * m[k]);
          }
          factorsFor = gamma;
        }
        const z = zt.data, yd = y.data, u = out.data;
        let r2 = 0;
        for (let ch = 0, o = 0; ch < c; ch++, o += hw) {
          if (po.report) {
            for (let k = 0; k < hw; k++) {
              const v = (z[o + k] + gm[k] * yd[o + k]) * inv[k];
              u[o + k] = v;
              r2 += (m[k] * v - yd[o + k]) ** 2;
            }
          } else {
            for (let k = 0; k < hw; k++) u[o + k] = (z[o + k] + gm[k] * yd[o + k]) * inv[k];
          }
        }
        if (po.report) po.report.residual = Math.sqrt(r2);
        return out;
      },
      projectMeasurement: applyMask,
      pseudoInverse: (y) => fillHole(y, mask),
      artifacts: () => ({ mask: tensor([1, 1, h, w], m.slice()) }),
      exportOnnx: (eo) => inpaintOnnx(m, s, eo),
    });
  },
});
