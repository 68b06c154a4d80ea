/**
 * The differentiable JPEG model A(x) = decode(encode(x)) on one image (steps 1–8 of
 * `operators/jpeg.ts`), its reverse pass, and the linear pieces (encoder E, decoder Jacobian) that
 * the VJP and the proxes are built from; {@link JpegModel} runs it on [N,3,H,W] tensors.
 *
 * @module
 */
import { assertShape, type Tensor } from "../../core/tensor.ts";
import {
  CB_SCALE,
  CR_SCALE,
  downsample,
  G_CB,
  G_CR,
  type Geometry,
  padReplicate,
  RGB2YCC,
} from "./colour.ts";
import { blockDct, codePlane, type Quantiser } from "./quantise.ts";
import { codedSize, encode, encodeT } from "./linear.ts";
import { softClamp255, softClamp255Derivative } from "./rounding.ts";

/** Intermediate values of one forward pass that the VJP needs. */
export interface Trace {
  /** c/Q per coded plane (Y, Cb, Cr). */
  u: Float64Array[];
  /** Decoded planes before the soft clamp (Y, Cb, Cr), coded sizes. */
  dec: Float64Array[];
  /** RGB levels before the final soft clamp, 3·h·w. */
  rgb: Float64Array;
}

/** A(x) for one image (3·h·w values on [0,1]); returns levels/255 and the trace. */
export function forwardImage(
  x: Float32Array,
  g: Geometry,
  qz: Quantiser,
): { out: Float64Array; trace: Trace } {
  const { h, w } = g, n = h * w, tau = qz.tau;
  // 1. RGB → YCbCr (levels).
  const planes = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  for (let p = 0; p < n; p++) {
    const r = 255 * x[p], gg = 255 * x[n + p], b = 255 * x[2 * n + p];
    for (let k = 0; k < 3; k++) {
      const m = RGB2YCC[k];
      planes[k][p] = m[0] * r + m[1] * gg + m[2] * b;
    }
    planes[0][p] -= 128;
  }
  // 2–6.
  const yPad = padReplicate(planes[0], h, w, g.yh, g.yw);
  const coded = [codePlane(yPad, g.yh, g.yw, qz.q[0], qz.round[0])];
  for (let k = 1; k < 3; k++) {
    let c: Float64Array = padReplicate(planes[k], h, w, g.ph, g.pw);
    if (g.sub) c = downsample(c, g.ph, g.pw);
    coded.push(codePlane(c, g.ch, g.cw, qz.q[1], qz.round[1]));
  }
  const clamped = coded.map(({ dec }) => dec.map((v) => softClamp255(v, tau)));
  // 7–8.
  const rgb = new Float64Array(3 * n), out = new Float64Array(3 * n);
  const [yc, cbc, crc] = clamped;
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      let cb: number, cr: number;
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        cb = 0.5625 * cbc[a + nj] + 0.1875 * (cbc[a + fj] + cbc[b + nj]) + 0.0625 * cbc[b + fj];
        cr = 0.5625 * crc[a + nj] + 0.1875 * (crc[a + fj] + crc[b + nj]) + 0.0625 * crc[b + fj];
      } else {
        cb = cbc[i * g.cw + j], cr = crc[i * g.cw + j];
      }
      const yv = yc[i * g.yw + j];
      cb -= 128, cr -= 128;
      const p = i * w + j;
      rgb[p] = yv + CR_SCALE * cr;
      rgb[n + p] = yv - G_CB * cb - G_CR * cr;
      rgb[2 * n + p] = yv + CB_SCALE * cb;
    }
  }
  for (let i = 0; i < 3 * n; i++) out[i] = softClamp255(rgb[i], tau) / 255;
  return { out, trace: { u: coded.map((c) => c.u), dec: coded.map((c) => c.dec), rgb } };
}

/**
 * Decoder half of the VJP: the gradient with respect to the dequantised coefficients ĉ (levels) of
 * each coded plane, e = (∂A/∂ĉ)ᵀ g, through steps 8ᵀ–6ᵀ (clamp, colour, upsampling, clamp, IDCT).
 */
export function decoderVjp(
  gOut: ArrayLike<number>,
  t: Trace,
  g: Geometry,
  qz: Quantiser,
): Float64Array[] {
  const { h, w } = g, n = h * w, tau = qz.tau;
  // 8ᵀ: clamp and colour.
  const gY = new Float64Array(g.yh * g.yw);
  const gCb = new Float64Array(g.ch * g.cw), gCr = new Float64Array(g.ch * g.cw);
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      const p = i * w + j;
      const gr = gOut[p] / 255 * softClamp255Derivative(t.rgb[p], tau);
      const gg = gOut[n + p] / 255 * softClamp255Derivative(t.rgb[n + p], tau);
      const gb = gOut[2 * n + p] / 255 * softClamp255Derivative(t.rgb[2 * n + p], tau);
      gY[i * g.yw + j] = gr + gg + gb;
      const dcb = -G_CB * gg + CB_SCALE * gb, dcr = CR_SCALE * gr - G_CR * gg;
      // 7ᵀ: crop and upsampling.
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        gCb[a + nj] += 0.5625 * dcb, gCr[a + nj] += 0.5625 * dcr;
        gCb[a + fj] += 0.1875 * dcb, gCr[a + fj] += 0.1875 * dcr;
        gCb[b + nj] += 0.1875 * dcb, gCr[b + nj] += 0.1875 * dcr;
        gCb[b + fj] += 0.0625 * dcb, gCr[b + fj] += 0.0625 * dcr;
      } else {
        gCb[i * g.cw + j] = dcb, gCr[i * g.cw + j] = dcr;
      }
    }
  }
  // 6ᵀ: clamp of the decoded samples, then (IDCT)ᵀ = DCT.
  return [gY, gCb, gCr].map((gp, k) => {
    const dec = t.dec[k];
    for (let i = 0; i < gp.length; i++) gp[i] *= softClamp255Derivative(dec[i], tau);
    const [ph, pw] = k === 0 ? [g.yh, g.yw] : [g.ch, g.cw];
    blockDct(gp, ph, pw, false);
    return gp;
  });
}

/** Multiply each coded coefficient by f(plane, in-block position, index) in place. */
export function scaleCoefficients(
  c: Float64Array[],
  g: Geometry,
  f: (k: number, pos: number, idx: number) => number,
): Float64Array[] {
  c.forEach((ck, k) => {
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) ck[i * pw + j] *= f(k, (i & 7) * 8 + (j & 7), i * pw + j);
    }
  });
  return c;
}

/**
 * The linear part of steps 1–4, E: x (3·h·w, [0,1] scale) ↦ coded DCT coefficients c (levels) of
 * each plane (the −128 level shift omitted). The encoder is c = E x − shift. See `linear.ts`.
 */
export function encoderLinear(x: ArrayLike<number>, g: Geometry): Float64Array[] {
  return encode(x, g);
}

/** Eᵀ: coded coefficients ↦ x-space (3·h·w). Overwrites its input. */
export function encoderLinearT(c: Float64Array[], g: Geometry): Float64Array {
  return encodeT(c, g);
}

/**
 * Decoder JVP: the tangent of A (3·h·w, [0,1] scale) for a tangent ĉ' of the dequantised
 * coefficients, through steps 6–8 (IDCT, clamp, upsampling, colour, clamp). Overwrites its input.
 */
export function decoderJvp(dc: Float64Array[], t: Trace, g: Geometry, qz: Quantiser): Float64Array {
  const { h, w } = g, n = h * w, tau = qz.tau;
  const [yd, cbd, crd] = dc.map((ck, k) => {
    const [ph, pw] = codedSize(g, k);
    blockDct(ck, ph, pw, true);
    const dec = t.dec[k];
    for (let i = 0; i < ck.length; i++) ck[i] *= softClamp255Derivative(dec[i], tau);
    return ck;
  });
  const out = new Float64Array(3 * n);
  for (let i = 0; i < h; i++) {
    const ni = g.nearR[i], fi = g.farR[i];
    for (let j = 0; j < w; j++) {
      let cb: number, cr: number;
      if (g.sub) {
        const nj = g.nearC[j], fj = g.farC[j];
        const a = ni * g.cw, b = fi * g.cw;
        cb = 0.5625 * cbd[a + nj] + 0.1875 * (cbd[a + fj] + cbd[b + nj]) + 0.0625 * cbd[b + fj];
        cr = 0.5625 * crd[a + nj] + 0.1875 * (crd[a + fj] + crd[b + nj]) + 0.0625 * crd[b + fj];
      } else {
        cb = cbd[i * g.cw + j], cr = crd[i * g.cw + j];
      }
      const yv = yd[i * g.yw + j], p = i * w + j;
      out[p] = (yv + CR_SCALE * cr) * softClamp255Derivative(t.rgb[p], tau) / 255;
      out[n + p] = (yv - G_CB * cb - G_CR * cr) * softClamp255Derivative(t.rgb[n + p], tau) / 255;
      out[2 * n + p] = (yv + CB_SCALE * cb) * softClamp255Derivative(t.rgb[2 * n + p], tau) / 255;
    }
  }
  return out;
}

/** S'(c/Q) for every coded coefficient of the trace. */
export function slopes(t: Trace, g: Geometry, qz: Quantiser): Float64Array[] {
  return t.u.map((u, k) => {
    const out = new Float64Array(u.length), round = qz.round[k === 0 ? 0 : 1];
    const [ph, pw] = codedSize(g, k);
    for (let i = 0; i < ph; i++) {
      for (let j = 0; j < pw; j++) {
        out[i * pw + j] = round[(i & 7) * 8 + (j & 7)].derivative(u[i * pw + j]);
      }
    }
    return out;
  });
}

/** J_A(x)ᵀ g for one image, from the forward trace: Eᵀ (S' ⊙ e), e the decoder VJP. */
export function vjpImage(
  gOut: ArrayLike<number>,
  t: Trace,
  g: Geometry,
  qz: Quantiser,
): Float64Array {
  const s1 = slopes(t, g, qz);
  return encoderLinearT(
    scaleCoefficients(decoderVjp(gOut, t, g, qz), g, (k, _p, i) => s1[k][i]),
    g,
  );
}

/**
 * The model for one image shape and one quantiser (tables + softness): forward and VJP on
 * [N,3,H,W] tensors, with a one-entry trace cache (vjp(x, ·) or a prox model right after forward(x)
 * reuse the forward pass).
 */
export class JpegModel {
  readonly inputShape: number[];
  readonly geo: Geometry;
  readonly qz: Quantiser;
  /** Values per image (3·H·W). */
  readonly per: number;
  readonly #nb: number;
  #cache: { x: Float32Array; out: Float32Array; traces: Trace[] } | null = null;

  constructor(shape: readonly number[], geo: Geometry, qz: Quantiser) {
    this.inputShape = [...shape];
    this.geo = geo;
    this.qz = qz;
    this.#nb = shape[0];
    this.per = 3 * geo.h * geo.w;
  }

  /** A(x) and the traces, from the cache when x is the last input. */
  evaluate(x: Tensor): { out: Float32Array; traces: Trace[] } {
    const c = this.#cache;
    if (c && c.x.length === x.data.length && c.x.every((v, i) => v === x.data[i])) return c;
    const per = this.per, out = new Float32Array(x.data.length), traces: Trace[] = [];
    for (let b = 0; b < this.#nb; b++) {
      const r = forwardImage(x.data.subarray(b * per, (b + 1) * per), this.geo, this.qz);
      out.set(r.out, b * per);
      traces.push(r.trace);
    }
    this.#cache = { x: x.data.slice(), out, traces };
    return this.#cache;
  }

  forward(x: Tensor): Promise<Tensor> {
    assertShape(x, this.inputShape, "jpeg: x");
    return Promise.resolve({ data: this.evaluate(x).out.slice(), shape: [...this.inputShape] });
  }

  vjp(x: Tensor, gy: Tensor): Promise<Tensor> {
    assertShape(x, this.inputShape, "jpeg: x");
    assertShape(gy, this.inputShape, "jpeg: cotangent");
    const { traces } = this.evaluate(x), per = this.per;
    const out = new Float32Array(x.data.length);
    traces.forEach((t, b) => {
      const gb = gy.data.subarray(b * per, (b + 1) * per);
      out.set(vjpImage(gb, t, this.geo, this.qz), b * per);
    });
    return Promise.resolve({ data: out, shape: [...this.inputShape] });
  }
}
