/**
 * Image files ⇄ [1,3,H,W] float32 tensors on [0,1], through `sharp` (libvips).
 *
 * Reading (PNG, JPEG, WebP, TIFF, and whatever else libvips decodes), the rules:
 * - **Scale**: 8-bit samples are divided by 255, 16-bit samples by 65535. A 16-bit source is
 *   decoded as 16-bit (sharp's `rgb16` colour space, `ushort` raw output), so no precision is lost.
 *   Other sample formats (float or 32-bit TIFF) are refused: store such data as `.npy`.
 * - **Grey** images are replicated to three identical channels (R = G = B).
 * - **Palette** images are expanded to RGB through their palette.
 * - **Alpha** is dropped, not composited: the colour samples are used as stored. This is the least
 *   surprising choice for measurements (a composite would mix in a background that is not in the
 *   data).
 * - **EXIF orientation** is applied (the image is rotated/flipped as a viewer shows it), so width and
 *   height are those of the displayed picture. Files this module writes carry no orientation tag.
 * - **Colour**: CMYK and other colour spaces are converted to sRGB by libvips; sRGB values are used
 *   as they are (no linearisation).
 *
 * Writing: PNG, 8-bit (default) or 16-bit, RGB for C = 3 and grey for C = 1; values are clamped to
 * [0,1] and rounded to the nearest level (v·255 or v·65535). Tensors holding NaN or ±Inf are refused.
 * Writes are atomic (temp file + rename).
 *
 * @module
 */
import { extname } from "node:path";
import sharp, { type Metadata, type OutputInfo } from "sharp";
import { InputError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { writeFileAtomic } from "./atomic.ts";
import { assertFiniteForWrite, readError, readNpy, writeNpy } from "./npy.ts";

// libvips caches decoded inputs by default; a file rewritten during a run must be read afresh.
sharp.cache(false);

/** What the decoder found in an image file. */
export interface ImageInfo {
  /** Container format reported by libvips ("png", "jpeg", "webp", "tiff", …). */
  format: string;
  /** Bits per sample of the source: 8 or 16. */
  bitDepth: 8 | 16;
  /** Channels in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA or CMYK). */
  channels: number;
  /** True when the file had an alpha channel (which was dropped). */
  hadAlpha: boolean;
  /** True when the file was palette-based. */
  palette: boolean;
  /** EXIF orientation tag (1–8) that was applied, if any. */
  orientation?: number;
}

/** A decoded image: the tensor and what the file held. */
export interface DecodedImage {
  /** [1,3,H,W] on [0,1]. */
  tensor: Tensor;
  /** Source description. */
  info: ImageInfo;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0].trim();
}

/**
 * Decode image bytes into a [1,3,H,W] float32 tensor on [0,1] (rules in the module doc), with a
 * description of the source. Throws an InputError naming `what` when the bytes are not a readable
 * 8- or 16-bit image.
 *
 * @example
 * ```ts ignore
 * import { decodeImageWithInfo } from "./image.ts";
 * const { tensor, info } = await decodeImageWithInfo(await Deno.readFile("x.png"), "x.png");
 * console.log(tensor.shape, info.bitDepth);
 * ```
 */
export async function decodeImageWithInfo(
  bytes: Uint8Array,
  what = "image",
): Promise<DecodedImage> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch (e) {
    throw new InputError(`${what}: not a readable image (${firstLine(e)})`);
  }
  const depth = meta.depth ?? "uchar";
  let bitDepth: 8 | 16;
  if (depth === "uchar" || depth === "char") bitDepth = 8;
  else if (depth === "ushort" || depth === "short") bitDepth = 16;
  else {
    throw new InputError(
      `${what}: ${depth} samples are not supported (8- or 16-bit images only; use .npy for float data)`,
    );
  }
  const pipeline = sharp(bytes).autoOrient().removeAlpha();
  let raw: { data: Uint8Array; info: OutputInfo };
  try {
    raw = bitDepth === 16
      ? await pipeline.toColourspace("rgb16").raw({ depth: "ushort" }).toBuffer({
        resolveWithObject: true,
      })
      : await pipeline.toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new InputError(`${what}: cannot decode image (${firstLine(e)})`);
  }
  const { width: w, height: h, channels } = raw.info;
  if (channels !== 3) {
    throw new InputError(`${what}: decoded to ${channels} channels, expected 3`);
  }
  const n = w * h;
  const out = new Float32Array(3 * n);
  if (bitDepth === 16) {
    // Raw `ushort` output is in the machine's (little-endian) byte order.
    const view = new DataView(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) out[c * n + i] = view.getUint16(2 * (3 * i + c), true) / 65535;
    }
  } else {
    const d = raw.data;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) out[c * n + i] = d[3 * i + c] / 255;
    }
  }
  return {
    tensor: { data: out, shape: [1, 3, h, w] },
    info: {
      format: meta.format ?? "unknown",
      bitDepth,
      channels: meta.channels ?? channels,
      hadAlpha: meta.hasAlpha ?? false,
      palette: meta.isPalette ?? false,
      orientation: meta.orientation,
    },
  };
}

/**
 * Decode image bytes into a [1,3,H,W] float32 tensor on [0,1].
 *
 * @example
 * ```ts ignore
 * import { decodeImage } from "./image.ts";
 * const x = await decodeImage(await Deno.readFile("x.png"));
 * ```
 */
export async function decodeImage(bytes: Uint8Array, what = "image"): Promise<Tensor> {
  return (await decodeImageWithInfo(bytes, what)).tensor;
}

/**
 * Read an image file into a [1,3,H,W] float32 tensor on [0,1]. Throws an InputError naming the
 * path when it is missing or not a readable image.
 *
 * @example
 * ```ts ignore
 * import { readImage } from "./image.ts";
 * const x = await readImage("photo.jpg"); // shape [1, 3, H, W]
 * ```
 */
export async function readImage(path: string): Promise<Tensor> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw readError(path, e);
  }
  return await decodeImage(bytes, path);
}

/** Options for PNG output. */
export interface PngOptions {
  /** 8 (default) or 16 bits per sample. */
  bitDepth?: 8 | 16;
}

/** Check that `t` is [1,C,H,W] with C = 1 or 3, returning [C,H,W]. */
function imageDims(t: Tensor, what: string): [number, number, number] {
  const s = t.shape;
  if (s.length !== 4 || s[0] !== 1 || (s[1] !== 1 && s[1] !== 3) || s[2] < 1 || s[3] < 1) {
    throw new InputError(
      `${what}: tensor of shape [${s}] cannot be an image (expected [1,1|3,H,W])`,
    );
  }
  return [s[1], s[2], s[3]];
}

/**
 * Encode a [1,C,H,W] tensor (C = 1 grey or 3 RGB) on [0,1] as PNG bytes. Values are clamped to
 * [0,1] and rounded: q = round(clamp(v)·(2^bits − 1)). NaN/Inf are refused.
 *
 * @example
 * ```ts ignore
 * import { encodePng } from "./image.ts";
 * const png = await encodePng({ data: new Float32Array(12).fill(0.5), shape: [1, 3, 2, 2] });
 * ```
 */
export async function encodePng(
  t: Tensor,
  options: PngOptions = {},
  what = "PNG output",
): Promise<Uint8Array> {
  const [c, h, w] = imageDims(t, what);
  assertFiniteForWrite(t, what);
  const bits = options.bitDepth ?? 8;
  if (bits !== 8 && bits !== 16) throw new InputError(`${what}: bit depth must be 8 or 16`);
  const max = bits === 16 ? 65535 : 255;
  const n = h * w;
  const samples = bits === 16 ? new Uint16Array(c * n) : new Uint8Array(c * n);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < n; i++) {
      const v = t.data[k * n + i];
      samples[i * c + k] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * max);
    }
  }
  let img = sharp(samples, { raw: { width: w, height: h, channels: c as 1 | 3 } });
  if (bits === 16) img = img.toColourspace(c === 1 ? "grey16" : "rgb16");
  else if (c === 1) img = img.toColourspace("b-w");
  const buf = await img.png().toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Write a tensor as a PNG file (8-bit by default), atomically, creating the folder if needed.
 *
 * @example
 * ```ts ignore
 * import { writePng } from "./image.ts";
 * await writePng("out/x.png", x, { bitDepth: 16 });
 * ```
 */
export async function writePng(path: string, t: Tensor, options: PngOptions = {}): Promise<void> {
  const bytes = await encodePng(t, options, path);
  await writeFileAtomic(path, bytes);
}

/**
 * True when a path names a `.npy` file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isNpyPath } from "./image.ts";
 * assert.equal(isNpyPath("out/y.NPY"), true);
 * assert.equal(isNpyPath("out/y.png"), false);
 * ```
 */
export function isNpyPath(path: string): boolean {
  return extname(path).toLowerCase() === ".npy";
}

/**
 * Read an image or `.npy` file into [1,C,H,W] on [0,1] (by extension: `.npy` → {@link readNpy},
 * anything else → {@link readImage}).
 *
 * @example
 * ```ts ignore
 * import { readTensor } from "./image.ts";
 * const y = await readTensor("y.npy");
 * ```
 */
export async function readTensor(path: string): Promise<Tensor> {
  return isNpyPath(path) ? await readNpy(path) : await readImage(path);
}

/**
 * File extensions {@link writeTensor} accepts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WRITABLE_EXTENSIONS } from "./image.ts";
 * assert.ok(WRITABLE_EXTENSIONS.includes(".npy"));
 * ```
 */
export const WRITABLE_EXTENSIONS = [".png", ".npy"] as const;

/**
 * Write a tensor by extension: `.png` (clamped and rounded, 8- or 16-bit) or `.npy` (exact
 * float32). Other extensions are refused with an InputError.
 *
 * @example
 * ```ts ignore
 * import { writeTensor } from "./image.ts";
 * await writeTensor("out/y.npy", y); // exact
 * await writeTensor("out/y.png", y); // clamped to [0,1], 8-bit
 * ```
 */
export async function writeTensor(
  path: string,
  t: Tensor,
  options: PngOptions = {},
): Promise<void> {
  const ext = extname(path).toLowerCase();
  if (ext === ".npy") return await writeNpy(path, t);
  if (ext === ".png") return await writePng(path, t, options);
  throw new InputError(
    `${path}: cannot write "${ext || "(no extension)"}" files (use ${
      WRITABLE_EXTENSIONS.join(" or ")
    })`,
  );
}
