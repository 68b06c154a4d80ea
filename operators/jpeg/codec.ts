/**
 * The real codec the JPEG operator models: encode and decode through sharp (libvips, mozjpeg in its
 * libjpeg-turbo-compatible profile) with {@link JPEG_SHARP_OPTIONS}: the standard IJG tables
 * (quantisationTable 0, checked against the DQT segments), baseline sequential, no trellis
 * quantisation, no overshoot deringing, no scan optimisation (sharp's defaults; libvips then puts
 * mozjpeg in its libjpeg-turbo-compatible "fastest" profile). Huffman optimisation is lossless and
 * left on.
 *
 * @module
 */
import { InputError } from "../../core/errors.ts";
import type { Tensor } from "../../core/tensor.ts";
import type { JpegSubsampling } from "./colour.ts";
import { IJG_LUMINANCE_TABLE, jpegQuantTable } from "./quantise.ts";

/**
 * The sharp `.jpeg()` options of the real encoder (with `quality` and `chromaSubsampling` added):
 * standard IJG tables, baseline, no trellis, no deringing, no scan optimisation.
 */
export const JPEG_SHARP_OPTIONS: Readonly<{
  progressive: false;
  mozjpeg: false;
  trellisQuantisation: false;
  overshootDeringing: false;
  optimiseScans: false;
  quantisationTable: 0;
  optimiseCoding: true;
  force: true;
}> = Object.freeze({
  progressive: false,
  mozjpeg: false,
  trellisQuantisation: false,
  overshootDeringing: false,
  optimiseScans: false,
  quantisationTable: 0,
  optimiseCoding: true,
  force: true,
});

/** [1,3,H,W] on [0,1] → interleaved 8-bit RGB (clamped, rounded). */
function toRgb8(x: Tensor): { rgb: Uint8Array; h: number; w: number } {
  if (x.shape.length !== 4 || x.shape[0] !== 1 || x.shape[1] !== 3) {
    throw new InputError(`jpeg: can only encode one [1,3,H,W] RGB image, got [${x.shape}]`);
  }
  const [, , h, w] = x.shape, n = h * w;
  const rgb = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) {
      const v = x.data[c * n + p];
      rgb[3 * p + c] = Math.round(255 * (v > 1 ? 1 : v > 0 ? v : 0)); // NaN → 0
    }
  }
  return { rgb, h, w };
}

/**
 * Encode a [1,3,H,W] image on [0,1] as a real baseline JPEG file through sharp (values are clamped
 * to [0,1] and rounded to 8 bits first). Options: {@link JPEG_SHARP_OPTIONS}.
 *
 * @param quality IJG quality 1–100
 * @param subsampling 420 (default) or 444
 */
export async function encodeJpeg(
  x: Tensor,
  quality: number,
  subsampling: JpegSubsampling = 420,
): Promise<Uint8Array> {
  jpegQuantTable(IJG_LUMINANCE_TABLE, quality); // validates quality
  if (subsampling !== 420 && subsampling !== 444) {
    throw new InputError(`jpeg: subsampling must be 420 or 444, got ${subsampling}`);
  }
  const { rgb, h, w } = toRgb8(x);
  const { default: sharp } = await import("sharp");
  const buf = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({
      ...JPEG_SHARP_OPTIONS,
      quality,
      chromaSubsampling: subsampling === 420 ? "4:2:0" : "4:4:4",
    })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Decode JPEG bytes (sharp / libjpeg-turbo defaults) to a [1,3,H,W] tensor on [0,1]. */
export async function decodeJpeg(bytes: Uint8Array): Promise<Tensor> {
  const { default: sharp } = await import("sharp");
  let decoded;
  try {
    decoded = await sharp(bytes).removeAlpha().toColourspace("srgb").raw().toBuffer({
      resolveWithObject: true,
    });
  } catch (e) {
    throw new InputError(`jpeg: cannot decode the JPEG data (${(e as Error).message})`);
  }
  const { data, info } = decoded;
  const h = info.height, w = info.width, n = h * w;
  const out = new Float32Array(3 * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) out[c * n + p] = data[info.channels * p + c] / 255;
  }
  return { data: out, shape: [1, 3, h, w] };
}

/** decode(encode(x)) with the real codec: what the `jpeg` operator models. */
export async function jpegRoundTrip(
  x: Tensor,
  quality: number,
  subsampling: JpegSubsampling = 420,
): Promise<Tensor> {
  return await decodeJpeg(await encodeJpeg(x, quality, subsampling));
}
