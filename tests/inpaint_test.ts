import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import {
  createOperator,
  InputError,
  measure,
  PluginRegistry,
  streams,
  type Tensor,
  tensor,
  testOperator,
} from "../mod.ts";
import { fillHole, inpaintPlugin } from "../operators/inpaint.ts";
import {
  bandMask,
  boxMask,
  freeformMask,
  holeFraction,
  type PixelMask,
  randomMask,
} from "../operators/masks.ts";

const registry = new PluginRegistry().register(inpaintPlugin);
const make = (spec: string, shape: number[], seed = 0) =>
  createOperator(registry, spec, shape, seed);

/** A 40×32 mask image: left half white (kept), a black square hole, as a PNG in a temp dir. */
async function writeMaskPng(width = 40, height = 32): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "inpaint-test-" });
  const px = new Uint8Array(width * height).fill(255);
  for (let i = 8; i < 20; i++) for (let j = 10; j < 30; j++) px[i * width + j] = 0;
  const path = join(dir, "mask.png");
  await sharp(px, { raw: { width, height, channels: 1 } }).png().toFile(path);
  return path;
}

const maskFile = await writeMaskPng();

for (
  const options of <Record<string, string | number>[]> [
    { mask: "box" },
    { mask: "box", size: 0.25 },
    { mask: "band" },
    { mask: "random", p: 0.5 },
    { mask: "freeform" },
    { mask: "file", path: maskFile },
  ]
) {
  Deno.test(`inpaint ${JSON.stringify(options)} passes the operator contract suite`, async () => {
    const r = await testOperator(inpaintPlugin, options, { shape: [1, 3, 32, 40] });
    console.log(JSON.stringify(r));
  });
}

function rows(m: PixelMask, value: number): { r0: number; r1: number; c0: number; c1: number } {
  let r0 = m.height, r1 = -1, c0 = m.width, c1 = -1;
  for (let i = 0; i < m.height; i++) {
    for (let j = 0; j < m.width; j++) {
      if (m.data[i * m.width + j] === value) {
        r0 = Math.min(r0, i);
        r1 = Math.max(r1, i);
        c0 = Math.min(c0, j);
        c1 = Math.max(c1, j);
      }
    }
  }
  return { r0, r1, c0, c1 };
}

Deno.test("box mask: SILO's centre 256² hole at 512² (rows and cols [128, 384))", () => {
  const m = boxMask(512, 512, 0.5);
  assert.deepEqual(rows(m, 0), { r0: 128, r1: 383, c0: 128, c1: 383 });
  assert.equal(holeFraction(m), 0.25);
  const n = boxMask(32, 40, 0.5); // side 16 of min(H, W) = 32, centred
  assert.deepEqual(rows(n, 0), { r0: 8, r1: 23, c0: 12, c1: 27 });
});

Deno.test("band mask: LATINO's rows 375..578 and cols 101..922 at 1024², scaled elsewhere", () => {
  const m = bandMask(1024, 1024);
  assert.deepEqual(rows(m, 0), { r0: 375, r1: 578, c0: 101, c1: 922 });
  assert.equal(holeFraction(m), (204 * 822) / (1024 * 1024));
  const half = bandMask(512, 512);
  const b = rows(half, 0);
  // Half the size: the band is about half as tall and wide.
  assert.ok(Math.abs(b.r1 - b.r0 + 1 - 102) <= 1 && Math.abs(b.c1 - b.c0 + 1 - 411) <= 2);
});

Deno.test("random mask keeps a fraction ≈ p of the pixels, shared by the channels", async () => {
  for (const p of [0.2, 0.5, 0.8]) {
    const m = randomMask(128, 128, p, streams(1).get("t"));
    const kept = 1 - holeFraction(m);
    assert.ok(Math.abs(kept - p) < 0.015, `p=${p}: kept ${kept}`); // 4σ ≈ 0.013 at p = ½
  }
  const op = await make("inpaint:mask=random", [1, 3, 64, 64]);
  const m = op.artifacts!().mask;
  assert.deepEqual(m.shape, [1, 1, 64, 64]);
  const kept = m.data.reduce((a, b) => a + b, 0) / m.data.length;
  assert.ok(Math.abs(kept - 0.2) < 0.03, `default p = 0.2 keeps ${kept}`);
  const y = await op.forward(tensor([1, 3, 64, 64], new Float32Array(3 * 64 * 64).fill(1)));
  for (let c = 0; c < 3; c++) {
    for (let k = 0; k < 64 * 64; k++) assert.equal(y.data[c * 4096 + k], m.data[k]);
  }
});

Deno.test("freeform masks cover 10–20 % on many seeds and sizes, deterministically", async () => {
  for (const [h, w] of [[32, 40], [128, 96], [512, 512]]) {
    const seen = new Set<number>();
    for (let seed = 0; seed < (h > 256 ? 3 : 10); seed++) {
      const m = freeformMask(h, w, streams(seed).get("t"));
      const a = holeFraction(m);
      assert.ok(a >= 0.1 && a <= 0.2, `${w}×${h} seed ${seed}: hole fraction ${a}`);
      seen.add(a);
      const again = freeformMask(h, w, streams(seed).get("t"));
      assert.deepEqual(again.data, m.data, "same stream, same mask");
    }
    assert.ok(seen.size > 1, "different seeds give different masks");
  }
  const custom = freeformMask(64, 64, streams(3).get("t"), { minArea: 0.3, maxArea: 0.35 });
  const a = holeFraction(custom);
  assert.ok(a >= 0.3 && a <= 0.35, `custom range: ${a}`);
  // Through the plugin: same seed, same mask; another seed, another mask.
  const shape = [1, 3, 64, 64];
  const m0 = (await make("inpaint:mask=freeform", shape, 7)).artifacts!().mask;
  const m1 = (await make("inpaint:mask=freeform", shape, 7)).artifacts!().mask;
  const m2 = (await make("inpaint:mask=freeform", shape, 8)).artifacts!().mask;
  assert.deepEqual(m0.data, m1.data);
  assert.notDeepEqual(m0.data, m2.data);
});

Deno.test("mask files: white = kept; missing or wrongly sized files are InputErrors", async () => {
  const op = await make(`inpaint:mask=file,path=${maskFile}`, [1, 3, 32, 40]);
  const m = op.artifacts!().mask;
  assert.equal(m.data[0], 1);
  assert.equal(m.data[8 * 40 + 10], 0);
  assert.equal(m.data[19 * 40 + 29], 0);
  assert.equal(m.data[20 * 40 + 29], 1);
  await assert.rejects(
    () => make("inpaint:mask=file,path=/nonexistent/mask.png", [1, 3, 32, 40]),
    (e: Error) => e instanceof InputError && e.message.includes("not found"),
  );
  await assert.rejects(
    () => make(`inpaint:mask=file,path=${maskFile}`, [1, 3, 40, 40]),
    (e: Error) => e instanceof InputError && e.message.includes("40×32, expected 40×40"),
  );
  await assert.rejects(() => make("inpaint:mask=file", [1, 3, 32, 40]), InputError);
});

Deno.test("options that do not apply to the mask type are rejected", async () => {
  await assert.rejects(() => make("inpaint:mask=random,size=0.5", [1, 3, 8, 8]), InputError);
  await assert.rejects(() => make("inpaint:mask=box,p=0.5", [1, 3, 8, 8]), InputError);
  await assert.rejects(() => make("inpaint:mask=box,size=2", [1, 3, 8, 8]), InputError);
  await assert.rejects(() => make("inpaint:mask=random,p=0", [1, 3, 8, 8]), InputError);
  await assert.rejects(
    () => make("inpaint:mask=freeform,minArea=0.3,maxArea=0.2", [1, 3, 8, 8]),
    InputError,
  );
  await assert.rejects(() => make("inpaint:mask=circle", [1, 3, 8, 8]), InputError);
});

Deno.test("prox is the exact elementwise formula; huge γ pastes y back on observed pixels", async () => {
  const shape = [1, 2, 16, 16];
  const op = await make("inpaint:mask=box", shape);
  const m = op.artifacts!().mask.data;
  const z = tensor(shape), y = tensor(shape);
  const r = streams(2).get("t");
  for (let k = 0; k < z.data.length; k++) {
    z.data[k] = r.uniform();
    y.data[k] = m[k % 256] * r.uniform();
  }
  const u = await op.proxL2(z, y, 1e8);
  for (let k = 0; k < z.data.length; k++) {
    const expect = m[k % 256] ? y.data[k] : z.data[k];
    assert.ok(Math.abs(u.data[k] - expect) < 1e-6);
  }
});

Deno.test("measure: noise lands only on observed pixels, the hole stays zero", async () => {
  const shape = [1, 3, 32, 40];
  const op = await make("inpaint:mask=box", shape);
  const m = op.artifacts!().mask.data;
  const x = tensor(shape, new Float32Array(3 * 32 * 40).fill(0.5));
  const y = await measure(op, x, 0.1, streams(0).get("measurement-noise"));
  let noisy = 0;
  for (let k = 0; k < y.data.length; k++) {
    if (m[k % 1280] === 0) assert.equal(y.data[k], 0);
    else if (y.data[k] !== 0.5) noisy++;
  }
  assert.ok(noisy > 0.9 * 3 * 1280 * 0.75);
});

function imageWith(shape: number[], f: (c: number, i: number, j: number) => number): Tensor {
  const [, c, h, w] = shape;
  const t = tensor(shape);
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) t.data[(ch * h + i) * w + j] = f(ch, i, j);
    }
  }
  return t;
}

Deno.test("inpainting init keeps known pixels exactly and fills the hole smoothly", async () => {
  const shape = [1, 3, 64, 80];
  for (const spec of ["inpaint:mask=box", "inpaint:mask=band", "inpaint:mask=freeform"]) {
    const op = await make(spec, shape);
    const m = op.artifacts!().mask.data;
    // A constant image (per channel): the hole is filled with exactly that constant.
    const cst = imageWith(shape, (c) => [0.2, 0.5, 0.9][c]);
    const fill = await op.pseudoInverse!(await op.forward(cst));
    for (let k = 0; k < fill.data.length; k++) {
      assert.ok(Math.abs(fill.data[k] - cst.data[k]) < 1e-6, `${spec}: constant not kept`);
    }
    // A smooth ramp: known pixels unchanged, hole within the known range (maximum principle) and
    // close to the ramp.
    const ramp = imageWith(shape, (c, i, j) => 0.1 + 0.6 * j / 79 + 0.2 * i / 63 + 0.05 * c);
    const y = await op.forward(ramp);
    const p = await op.pseudoInverse!(y);
    let worst = 0;
    for (let k = 0; k < p.data.length; k++) {
      if (m[k % (64 * 80)]) assert.equal(p.data[k], y.data[k]);
      else {
        assert.ok(p.data[k] >= 0.1 - 1e-6 && p.data[k] <= 1.0 + 1e-6);
        worst = Math.max(worst, Math.abs(p.data[k] - ramp.data[k]));
      }
    }
    assert.ok(worst < 0.1, `${spec}: fill deviates ${worst} from the ramp`);
  }
});

Deno.test("fillHole: the fill is smoother than the zero-filled measurement", () => {
  const shape = [1, 1, 48, 48];
  const x = imageWith(shape, (_c, i, j) => 0.5 + 0.3 * Math.sin(i / 7) * Math.cos(j / 9));
  const mask = boxMask(48, 48, 0.4);
  const y = tensor(shape, x.data.map((v, k) => v * mask.data[k]));
  const f = fillHole(y, mask);
  // Total variation across the hole boundary drops and the error shrinks against zero filling.
  const err = (t: Tensor) => Math.sqrt(t.data.reduce((s, v, k) => s + (v - x.data[k]) ** 2, 0));
  assert.ok(err(f) < 0.2 * err(y), `fill error ${err(f)} vs zero-fill ${err(y)}`);
});
