/**
 * A procedural RGB test scene, so that demos and benchmarks need no image files.
 *
 * Deterministic (no randomness at all) and defined for any size. It holds what an inverse-problem
 * test needs: smooth colour gradients (background), sharp edges of several orientations and
 * curvatures (a disk, a triangle, rectangles, anti-aliased by 4×4 supersampling), an oriented
 * sinusoidal grating and a checkerboard (textures whose period is fixed in pixels, so they stay
 * resolvable at any size), and saturated colours. Every value lies in [0,1].
 *
 * Shapes are placed in normalised coordinates u = (j + ½)/W, v = (i + ½)/H, so the layout scales
 * with the image; textures use pixel units.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";

type Rgb = readonly [number, number, number];

/** One layer: an inside test in normalised coordinates and a colour function. */
interface Layer {
  inside(u: number, v: number): boolean;
  colour(u: number, v: number, i: number, j: number): Rgb;
}

/** Edge function of the oriented segment a→b; ≥ 0 on its left. */
function edge(ax: number, ay: number, bx: number, by: number, x: number, y: number): number {
  return (bx - ax) * (y - ay) - (by - ay) * (x - ax);
}

function layers(h: number, w: number): Layer[] {
  const aspect = w / h;
  const periodPx = Math.max(4, Math.round(Math.min(h, w) / 24)); // grating period in pixels
  const cell = Math.max(2, Math.round(Math.min(h, w) / 32)); // checker cell in pixels
  const theta = Math.PI / 6;
  const [ct, st] = [Math.cos(theta), Math.sin(theta)];
  return [
    // Disk (curved edges), red with a soft internal shading.
    {
      inside: (u, v) => ((u - 0.28) * aspect) ** 2 + (v - 0.32) ** 2 <= 0.2 ** 2,
      colour: (u, v) => [0.85 - 0.3 * (v - 0.12), 0.18 + 0.2 * (u - 0.08), 0.12],
    },
    // Rectangle filled with an oriented sinusoidal grating (texture), greenish.
    {
      inside: (u, v) => u >= 0.56 && u <= 0.92 && v >= 0.08 && v <= 0.42,
      colour: (_u, _v, i, j) => {
        const s = 0.5 + 0.4 * Math.sin((2 * Math.PI * (j * ct + i * st)) / periodPx);
        return [0.2 + 0.3 * s, 0.35 + 0.6 * s, 0.25 + 0.2 * s];
      },
    },
    // Checkerboard patch (high-contrast texture with axis-aligned edges).
    {
      inside: (u, v) => u >= 0.08 && u <= 0.44 && v >= 0.6 && v <= 0.92,
      colour: (_u, _v, i, j) =>
        (Math.floor(i / cell) + Math.floor(j / cell)) % 2 === 0
          ? [0.95, 0.93, 0.9]
          : [0.08, 0.1, 0.14],
    },
    // Triangle (oblique edges), blue.
    {
      inside: (u, v) => {
        const [ax, ay, bx, by, cx, cy] = [0.62, 0.52, 0.94, 0.94, 0.5, 0.9];
        const e1 = edge(ax, ay, bx, by, u, v), e2 = edge(bx, by, cx, cy, u, v);
        const e3 = edge(cx, cy, ax, ay, u, v);
        return (e1 >= 0 && e2 >= 0 && e3 >= 0) || (e1 <= 0 && e2 <= 0 && e3 <= 0);
      },
      colour: (u) => [0.1, 0.3 + 0.2 * (u - 0.5), 0.85],
    },
    // A thin bright bar across the middle (a fine line detail).
    {
      inside: (u, v) => Math.abs(v - 0.5 - 0.08 * (u - 0.5)) <= 0.006 && u > 0.04 && u < 0.96,
      colour: () => [1, 0.95, 0.4],
    },
  ];
}

/**
 * Render the test scene as a [1,3,H,W] float32 tensor on [0,1].
 *
 * Background: R = 0.2 + 0.5u, G = 0.2 + 0.5v, B = 0.45 + 0.25 sin(π(u + v)); shapes are composited
 * over it with their 4×4-supersampled coverage as opacity.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { testScene } from "./scene.ts";
 * const x = testScene(64, 96);
 * assert.ok(x.shape.join() === "1,3,64,96");
 * assert.ok(x.data.every((v) => v >= 0 && v <= 1));
 * ```
 */
export function testScene(height: number, width: number): Tensor {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new RangeError(`test scene size must be positive integers, got ${height}×${width}`);
  }
  const h = height, w = width, n = h * w;
  const out = new Float32Array(3 * n);
  const ls = layers(h, w);
  const S = 4; // supersampling per axis
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const u = (j + 0.5) / w, v = (i + 0.5) / h;
      let r = 0.2 + 0.5 * u, g = 0.2 + 0.5 * v, b = 0.45 + 0.25 * Math.sin(Math.PI * (u + v));
      for (const layer of ls) {
        let hits = 0;
        for (let a = 0; a < S; a++) {
          for (let c = 0; c < S; c++) {
            if (layer.inside((j + (c + 0.5) / S) / w, (i + (a + 0.5) / S) / h)) hits++;
          }
        }
        if (hits === 0) continue;
        const alpha = hits / (S * S);
        const [lr, lg, lb] = layer.colour(u, v, i, j);
        r += alpha * (lr - r);
        g += alpha * (lg - g);
        b += alpha * (lb - b);
      }
      const p = i * w + j;
      out[p] = Math.min(1, Math.max(0, r));
      out[n + p] = Math.min(1, Math.max(0, g));
      out[2 * n + p] = Math.min(1, Math.max(0, b));
    }
  }
  return { data: out, shape: [1, 3, h, w] };
}
