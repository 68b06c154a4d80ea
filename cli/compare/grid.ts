/**
 * Image grids: one PNG per (image, operator, σ_y) — clean | measurement | each method — with a
 * title strip and a caption of metrics under every tile.
 *
 * Tiles are the images at an integer zoom (nearest neighbour, so pixels stay pixels; small crops
 * are enlarged to ≈ 256 px), a measurement smaller than the image (SR) is shown at the image's size
 * by nearest-neighbour upsampling. Text is SVG rendered by sharp (librsvg with the system's
 * fonts, DejaVu/Liberation on Debian).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import sharp from "sharp";
import type { Tensor } from "../../core/tensor.ts";

/** One tile. */
export interface GridTile {
  /** First caption line (the method). */
  label: string;
  /** Second caption line (metrics), may be empty. */
  caption: string;
  /** The image on [0,1] (any size: shown at the grid's tile size). */
  image: Tensor;
}

/** Geometry of a grid. */
export interface GridLayout {
  /** Integer magnification of the images. */
  zoom: number;
  /** Tile width and height in pixels. */
  tileW: number;
  /** Tile height. */
  tileH: number;
  /** Gap between tiles and around them. */
  gap: number;
  /** Height of the title strip. */
  titleH: number;
  /** Height of a caption. */
  captionH: number;
  /** PNG width. */
  width: number;
  /** PNG height. */
  height: number;
}

/**
 * The layout of a grid of `n` tiles of h×w images: zoom = max(1, ⌊256 / max(h, w)⌋),
 * width = n·tileW + (n+1)·gap, height = titleH + tileH + captionH + gap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gridLayout } from "./grid.ts";
 * const g = gridLayout(32, 48, 5);
 * assert.equal(g.zoom, 5);
 * assert.deepEqual([g.tileW, g.tileH], [240, 160]);
 * assert.equal(g.width, 5 * 240 + 6 * g.gap);
 * ```
 */
export function gridLayout(h: number, w: number, n: number): GridLayout {
  const zoom = Math.max(1, Math.floor(256 / Math.max(h, w)));
  const gap = 8, titleH = 26, captionH = 40;
  const tileW = w * zoom, tileH = h * zoom;
  return {
    zoom,
    tileW,
    tileH,
    gap,
    titleH,
    captionH,
    width: n * tileW + (n + 1) * gap,
    height: titleH + tileH + captionH + gap,
  };
}

function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Cut a text to about `px` pixels at font size `size` (average glyph ≈ 0.6 em). */
function fit(s: string, px: number, size: number): string {
  const max = Math.max(4, Math.floor(px / (0.6 * size)));
  return s.length <= max ? s : s.slice(0, max - 1) + "…";
}

/**
 * Render a grid as PNG bytes.
 *
 * @param h image height (tiles of other sizes are resampled to h×w)
 * @param w image width
 */
export async function renderGrid(
  tiles: readonly GridTile[],
  h: number,
  w: number,
  title: string,
): Promise<Uint8Array> {
  const L = gridLayout(h, w, tiles.length);
  const rgb = new Uint8Array(L.width * L.height * 3).fill(255);
  tiles.forEach((tile, k) => {
    const [, c, th, tw] = tile.image.shape;
    const plane = th * tw;
    const x0 = L.gap + k * (L.tileW + L.gap), y0 = L.titleH;
    for (let i = 0; i < L.tileH; i++) {
      const si = Math.min(th - 1, Math.floor((i * th) / L.tileH));
      for (let j = 0; j < L.tileW; j++) {
        const sj = Math.min(tw - 1, Math.floor((j * tw) / L.tileW));
        const o = ((y0 + i) * L.width + x0 + j) * 3;
        for (let ch = 0; ch < 3; ch++) {
          const v = tile.image.data[Math.min(ch, c - 1) * plane + si * tw + sj];
          rgb[o + ch] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
        }
      }
    }
  });
  const font = `font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"`;
  const texts: string[] = [
    `<text x="${L.gap}" y="18" ${font} font-size="14" font-weight="bold" fill="#222">${
      xml(fit(title, L.width - 2 * L.gap, 14))
    }</text>`,
  ];
  tiles.forEach((tile, k) => {
    const x = L.gap + k * (L.tileW + L.gap), y = L.titleH + L.tileH;
    texts.push(
      `<text x="${x}" y="${y + 16}" ${font} font-size="13" font-weight="bold" fill="#111">${
        xml(fit(tile.label, L.tileW, 13))
      }</text>`,
      `<text x="${x}" y="${y + 33}" ${font} font-size="12" fill="#333">${
        xml(fit(tile.caption, L.tileW, 12))
      }</text>`,
    );
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}">` +
    texts.join("") + `</svg>`;
  const buf = await sharp(rgb, { raw: { width: L.width, height: L.height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
