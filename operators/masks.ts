/**
 * Inpainting masks: per-pixel keep-masks `m ∈ {0,1}^{H×W}` (1 = observed, 0 = missing), shared by all
 * channels. Every random draw comes from the stream handed in, so a mask depends only on
 * (seed, spec, image size).
 *
 * - {@link boxMask}: a centred square hole (SILO's 256² hole at 512² is `size = 0.5`).
 * - {@link bandMask}: LATINO's "squared" mask, really a horizontal band, scaled to the image.
 * - {@link randomMask}: each pixel kept independently with probability p (P2L's ablation drops 80%).
 * - {@link freeformMask}: seeded brush strokes covering a target fraction of the image (Palette/LaMa
 *   style free-form holes; P2L uses 10–20 %).
 * - {@link readMaskFile}: a mask image (white = kept).
 *
 * @module
 */
import { InputError } from "../core/errors.ts";
import type { RandomStream } from "../core/rng.ts";

/** A per-pixel keep-mask: `data[i·W + j]` is 1 where pixel (i, j) is observed and 0 where missing. */
export interface PixelMask {
  /** Height. */
  height: number;
  /** Width. */
  width: number;
  /** Row-major 0/1 values, length H·W. */
  data: Float32Array;
}

function fullMask(height: number, width: number): PixelMask {
  return { height, width, data: new Float32Array(height * width).fill(1) };
}

/** Zero the rectangle rows [r0, r1) × cols [c0, c1) (clipped to the image). */
function clearRect(m: PixelMask, r0: number, r1: number, c0: number, c1: number): void {
  const rs = Math.max(0, r0), re = Math.min(m.height, r1);
  const cs = Math.max(0, c0), ce = Math.min(m.width, c1);
  for (let i = rs; i < re; i++) m.data.fill(0, i * m.width + cs, i * m.width + Math.max(cs, ce));
}

/** Fraction of missing pixels (1 − mean(m)). */
export function holeFraction(m: PixelMask): number {
  let kept = 0;
  for (const v of m.data) kept += v;
  return 1 - kept / m.data.length;
}

/**
 * A centred square hole of side `s = round(size · min(H, W))` pixels: rows and columns
 * `[⌊(H − s)/2⌋, ⌊(H − s)/2⌋ + s)` and `[⌊(W − s)/2⌋, …)` are missing. `size = 0.5` at 512² gives
 * SILO's `center_sq_bbox` hole, rows and cols [128, 384).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { boxMask } from "./masks.ts";
 * const m = boxMask(512, 512, 0.5);
 * assert.ok(m.data[128 * 512 + 128] === 0 && m.data[127 * 512 + 128] === 1);
 * ```
 */
export function boxMask(height: number, width: number, size: number): PixelMask {
  const m = fullMask(height, width);
  const s = Math.round(size * Math.min(height, width));
  const r0 = Math.floor((height - s) / 2), c0 = Math.floor((width - s) / 2);
  clearRect(m, r0, r0 + s, c0, c0 + s);
  return m;
}

/**
 * LATINO's inpainting mask (`inpainting_squared_mask`, mask_size s = 512 at 1024²): missing rows
 * `[H/2 − s/5 − 35, H/2 + s/5 − 35)` and columns `[W/2 − 4s/5 − 2, W/2 + 4s/5 + 2)` with Python's
 * integer division, i.e. rows 375..578 and cols 101..922 at 1024² — a horizontal band.
 *
 * For other sizes every length is scaled with its own axis: s_H = H/2 and the 35-px shift becomes
 * round(35·H/1024) for the rows; s_W = W/2 and the 2-px margin becomes round(2·W/1024) for the
 * columns. At 1024² this reproduces LATINO's mask exactly.
 */
export function bandMask(height: number, width: number): PixelMask {
  const m = fullMask(height, width);
  const hh = Math.floor(height / 2), hw = Math.floor(width / 2);
  const sH = Math.floor(height / 2), sW = Math.floor(width / 2);
  const shift = Math.round(35 * height / 1024), margin = Math.round(2 * width / 1024);
  const dr = Math.floor(sH / 5), dc = Math.floor(4 * sW / 5);
  clearRect(m, hh - dr - shift, hh + dr - shift, hw - dc - margin, hw + dc + margin);
  return m;
}

/**
 * Each pixel kept independently with probability `p` (a Bernoulli mask, deepinv's float `mask`).
 * P2L's "random pixel drop 80 %" is `p = 0.2`.
 */
export function randomMask(
  height: number,
  width: number,
  p: number,
  rng: RandomStream,
): PixelMask {
  const m = fullMask(height, width);
  for (let i = 0; i < m.data.length; i++) m.data[i] = rng.uniform() < p ? 1 : 0;
  return m;
}

/** Options of {@link freeformMask}. */
export interface FreeformOptions {
  /** Smallest hole fraction (default 0.1). */
  minArea?: number;
  /** Largest hole fraction (default 0.2). */
  maxArea?: number;
}

/**
 * Zero every pixel whose centre lies within `radius` of the segment (x0,y0)–(x1,y1): a thick line
 * with round caps, the footprint of a round brush dragged along the segment. The indices it newly
 * cleared are appended to `cleared` (so a stroke can be undone).
 */
function strokeSegment(
  m: PixelMask,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  radius: number,
  cleared: number[],
): void {
  const dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  const iMin = Math.max(0, Math.floor(Math.min(y0, y1) - radius));
  const iMax = Math.min(m.height - 1, Math.ceil(Math.max(y0, y1) + radius));
  const jMin = Math.max(0, Math.floor(Math.min(x0, x1) - radius));
  const jMax = Math.min(m.width - 1, Math.ceil(Math.max(x0, x1) + radius));
  const r2 = radius * radius;
  for (let i = iMin; i <= iMax; i++) {
    for (let j = jMin; j <= jMax; j++) {
      // Distance from the pixel centre (j + ½, i + ½) to the segment.
      const px = j + 0.5 - x0, py = i + 0.5 - y0;
      const s = len2 > 0 ? Math.min(1, Math.max(0, (px * dx + py * dy) / len2)) : 0;
      const ex = px - s * dx, ey = py - s * dy;
      if (ex * ex + ey * ey <= r2) {
        const k = i * m.width + j;
        if (m.data[k] !== 0) {
          m.data[k] = 0;
          cleared.push(k);
        }
      }
    }
  }
}

/**
 * Free-form brush-stroke holes (in the spirit of the Palette / LaMa / DeepFill-v2 masks; our own
 * generator — the official Palette mask files are not public).
 *
 * A target hole fraction a ~ U(minArea, maxArea) is drawn; strokes are added until the hole covers at
 * least a. One stroke: a start point uniform in the image, 2–9 vertices, each segment of length
 * U(D/16, D/5) with D = min(H, W), its direction turning by U(−π/2, π/2) from the previous one
 * (first direction U(0, 2π)), vertices clamped to the image, and a round brush of width
 * U(D/40, D/12) (at least 1.5 px). A stroke that would push the hole above maxArea is discarded and
 * redrawn with a brush half as wide (and shorter segments) each time it fails, so the coverage always
 * ends inside [minArea, maxArea] when the image has room for it.
 */
export function freeformMask(
  height: number,
  width: number,
  rng: RandomStream,
  options: FreeformOptions = {},
): PixelMask {
  const minArea = options.minArea ?? 0.1, maxArea = options.maxArea ?? 0.2;
  if (!(minArea > 0 && minArea <= maxArea && maxArea < 1)) {
    throw new InputError(
      `inpaint: freeform area range [${minArea}, ${maxArea}] must satisfy 0 < min ≤ max < 1`,
    );
  }
  const m = fullMask(height, width);
  const total = height * width;
  const target = minArea + (maxArea - minArea) * rng.uniform();
  const maxHoles = Math.floor(maxArea * total);
  const d = Math.min(height, width);
  let holes = 0, shrink = 1, failures = 0;
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.uniform();
  while (holes < target * total) {
    const cleared: number[] = [];
    const radius = Math.max(0.75, shrink * u(d / 40, d / 12) / 2);
    const vertices = 2 + Math.floor(rng.uniform() * 8);
    let x = u(0, width), y = u(0, height), angle = u(0, 2 * Math.PI);
    strokeSegment(m, x, y, x, y, radius, cleared);
    for (let v = 1; v < vertices; v++) {
      const len = shrink * u(d / 16, d / 5);
      const nx = Math.min(width, Math.max(0, x + len * Math.cos(angle)));
      const ny = Math.min(height, Math.max(0, y + len * Math.sin(angle)));
      strokeSegment(m, x, y, nx, ny, radius, cleared);
      x = nx;
      y = ny;
      angle += u(-Math.PI / 2, Math.PI / 2);
    }
    if (holes + cleared.length <= maxHoles) {
      holes += cleared.length;
      failures = 0;
    } else {
      // Too big: undo it and try again with a finer brush. Once strokes are tiny, stop above minArea.
      for (const k of cleared) m.data[k] = 1;
      shrink /= 2;
      if (++failures > 40 && holes >= minArea * total) break;
      if (failures > 200) {
        throw new InputError(
          `inpaint: could not draw a free-form mask covering ${minArea}–${maxArea} of a ${width}×${height} image`,
        );
      }
    }
  }
  return m;
}

/**
 * Read a mask image (PNG, JPEG, …): grey level ≥ ½ (white) = kept, < ½ (black) = missing; alpha is
 * ignored. The image must be exactly W×H.
 */
export async function readMaskFile(
  path: string,
  height: number,
  width: number,
): Promise<PixelMask> {
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) throw new InputError(`inpaint: mask file ${path} is not a file`);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`inpaint: mask file ${path} not found`);
  }
  // Loaded lazily: only mask files need the native image codec.
  const { default: sharp } = await import("sharp");
  let raw: { data: Uint8Array; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(path).removeAlpha().greyscale().raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new InputError(`inpaint: mask file ${path} is not a readable image (${msg})`);
  }
  const { info, data } = raw;
  if (info.width !== width || info.height !== height) {
    throw new InputError(
      `inpaint: mask file ${path} is ${info.width}×${info.height}, expected ${width}×${height} (the image size)`,
    );
  }
  const m = fullMask(height, width);
  const c = info.channels;
  for (let i = 0; i < m.data.length; i++) m.data[i] = data[i * c] >= 128 ? 1 : 0;
  return m;
}
