/**
 * Image, .npy and atomic-write I/O, and the procedural test scene.
 *
 * Image decoding is checked against PNG files built by hand here (zlib + CRC, no sharp), so the
 * scale, grey replication, palette expansion and alpha rules are tested independently of the
 * encoder. `.npy` files are exchanged with NumPy in both directions.
 */
import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { join } from "node:path";
import sharp from "sharp";
import {
  assertNotInput,
  decodeImage,
  decodeImageWithInfo,
  decodeNpy,
  encodeNpy,
  InputError,
  readImage,
  readNpy,
  readTensor,
  testScene,
  toImageTensor,
  writeFileAtomic,
  writeNpy,
  writePng,
  writeTensor,
} from "../mod.ts";

// ---------------------------------------------------------------------------------------------
// helpers

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * A PNG built by hand: `samples` are the image's samples in row-major, interleaved order (one
 * number per sample, at most 2^bitDepth − 1); every scanline uses filter type 0.
 */
function handPng(o: {
  width: number;
  height: number;
  bitDepth: 8 | 16;
  colorType: 0 | 2 | 3 | 4 | 6;
  samples: number[];
  palette?: number[];
}): Uint8Array {
  const spp = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[o.colorType];
  const bps = o.bitDepth / 8;
  const rowBytes = o.width * spp * bps;
  const raw = new Uint8Array(o.height * (1 + rowBytes));
  for (let i = 0; i < o.height; i++) {
    for (let k = 0; k < o.width * spp; k++) {
      const v = o.samples[i * o.width * spp + k];
      const at = i * (1 + rowBytes) + 1 + k * bps;
      if (bps === 2) {
        raw[at] = v >> 8;
        raw[at + 1] = v & 0xff;
      } else raw[at] = v;
    }
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, o.width);
  v.setUint32(4, o.height);
  ihdr.set([o.bitDepth, o.colorType, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    ...(o.palette ? [pngChunk("PLTE", new Uint8Array(o.palette))] : []),
    pngChunk("IDAT", new Uint8Array(deflateSync(raw))),
    pngChunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Expected [1,3,H,W] planes from interleaved RGB values already divided to [0,1]. */
function planar(rgb: number[], h: number, w: number): Float32Array {
  const out = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) out[c * h * w + i] = rgb[3 * i + c];
  return out;
}

function seededValues(n: number, seed: number): Float32Array {
  // A small LCG so that the test data are fixed without touching the toolkit's streams.
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32;
  }
  return out;
}

async function python(script: string, ...args: string[]): Promise<string> {
  const r = await new Deno.Command("python3", { args: ["-c", script, ...args] }).output();
  const err = new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 0, `python failed: ${err}`);
  return new TextDecoder().decode(r.stdout);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "io_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function assertInputError(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), "message must be one line");
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// .npy

Deno.test("npy: encode/decode round trip is exact, data 64-byte aligned", () => {
  const t = { data: seededValues(3 * 5 * 7, 1), shape: [1, 3, 5, 7] };
  const bytes = encodeNpy(t);
  const headerLen = new DataView(bytes.buffer).getUint16(8, true);
  assert.equal((10 + headerLen) % 64, 0);
  assert.equal(bytes.length, 10 + headerLen + 4 * t.data.length);
  const back = decodeNpy(bytes);
  assert.deepEqual(back.shape, t.shape);
  assert.deepEqual(back.data, t.data);
});

Deno.test("npy: NumPy reads what we write and we read what NumPy writes", async () => {
  await withTempDir(async (dir) => {
    const t = { data: seededValues(3 * 5 * 7, 2), shape: [1, 3, 5, 7] };
    await writeNpy(join(dir, "ours.npy"), t);
    // NumPy checks our file, then writes variants of the same array.
    const out = await python(
      `
import sys, numpy as np, os
d = sys.argv[1]
a = np.load(os.path.join(d, "ours.npy"))
assert a.dtype == np.dtype("<f4") and a.shape == (1, 3, 5, 7) and a.flags.c_contiguous
np.save(os.path.join(d, "f8.npy"), a.astype("<f8") * 0.5)
np.save(os.path.join(d, "fortran.npy"), np.asfortranarray(a))
np.save(os.path.join(d, "chw.npy"), a[0])
np.save(os.path.join(d, "hwc.npy"), np.ascontiguousarray(a[0].transpose(1, 2, 0)))
np.save(os.path.join(d, "hwc_fortran.npy"), np.asfortranarray(a[0].transpose(1, 2, 0)))
np.save(os.path.join(d, "2d.npy"), a[0, 1])
np.save(os.path.join(d, "be.npy"), a.astype(">f4"))
np.save(os.path.join(d, "int.npy"), (a * 255).astype("<i4"))
np.save(os.path.join(d, "batch2.npy"), np.concatenate([a, a]))
np.save(os.path.join(d, "1d.npy"), a.ravel())
print(float(a.astype(np.float64).sum()))
`,
      dir,
    );
    let sum = 0;
    for (const v of t.data) sum += v;
    assert.ok(Math.abs(Number(out) - sum) < 1e-9, "NumPy sees the same values");

    const f8 = await readNpy(join(dir, "f8.npy"));
    assert.deepEqual(f8.shape, [1, 3, 5, 7]);
    assert.deepEqual(f8.data, t.data.map((v) => v * 0.5));
    for (const name of ["fortran", "chw", "hwc", "hwc_fortran"]) {
      const r = await readNpy(join(dir, `${name}.npy`));
      assert.deepEqual(r.shape, [1, 3, 5, 7], name);
      assert.deepEqual(r.data, t.data, name);
    }
    const two = await readNpy(join(dir, "2d.npy"));
    assert.deepEqual(two.shape, [1, 1, 5, 7]);
    assert.deepEqual(two.data, t.data.slice(35, 70));

    await assertInputError(readNpy(join(dir, "be.npy")), /big-endian/);
    await assertInputError(readNpy(join(dir, "int.npy")), /dtype "<i4" is not supported/);
    await assertInputError(readNpy(join(dir, "batch2.npy")), /batch size 2/);
    await assertInputError(readNpy(join(dir, "1d.npy")), /not an image/);
    await assertInputError(readNpy(join(dir, "missing.npy")), /no such file/);

    // A truncated file and a file that is not .npy at all.
    const ours = await Deno.readFile(join(dir, "ours.npy"));
    await Deno.writeFile(join(dir, "trunc.npy"), ours.subarray(0, ours.length - 4));
    await assertInputError(readNpy(join(dir, "trunc.npy")), /needs 420/);
    await Deno.writeFile(join(dir, "text.npy"), new TextEncoder().encode("hello"));
    await assertInputError(readNpy(join(dir, "text.npy")), /not a valid \.npy file/);
  });
});

Deno.test("npy: the 3-D layout rule prefers (C,H,W) and falls back to (H,W,C)", () => {
  const d = seededValues(24, 3);
  assert.deepEqual(toImageTensor({ data: d, shape: [3, 2, 4] }).shape, [1, 3, 2, 4]);
  const hwc = toImageTensor({ data: d, shape: [2, 4, 3] });
  assert.deepEqual(hwc.shape, [1, 3, 2, 4]);
  // (H,W,C) element (i=1, j=2, c=1) lands at plane 1, row 1, column 2.
  assert.equal(hwc.data[1 * 8 + 1 * 4 + 2], d[(1 * 4 + 2) * 3 + 1]);
  assert.throws(() => toImageTensor({ data: d, shape: [2, 6, 2] }), InputError);
});

Deno.test("npy: writing refuses NaN and Inf and leaves no file", async () => {
  await withTempDir(async (dir) => {
    const t = { data: new Float32Array([0, NaN, 1, Infinity]), shape: [1, 1, 2, 2] };
    await assert.rejects(writeNpy(join(dir, "bad.npy"), t), /non-finite/);
    await assert.rejects(writePng(join(dir, "bad.png"), t), /non-finite/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

// ---------------------------------------------------------------------------------------------
// images

Deno.test("image: 8-bit RGB PNG decodes to samples / 255", async () => {
  const samples = [0, 1, 2, 128, 200, 255, 7, 77, 177, 250, 251, 252];
  const x = await decodeImage(
    handPng({ width: 2, height: 2, bitDepth: 8, colorType: 2, samples }),
  );
  assert.deepEqual(x.shape, [1, 3, 2, 2]);
  assert.deepEqual(x.data, planar(samples.map((s) => s / 255), 2, 2));
});

Deno.test("image: 16-bit PNG keeps 16-bit precision (samples / 65535)", async () => {
  const samples = [0, 1, 257, 32768, 65534, 65535, 12345, 54321, 3, 40000, 40001, 40002];
  const { tensor: x, info } = await decodeImageWithInfo(
    handPng({ width: 4, height: 1, bitDepth: 16, colorType: 2, samples }),
  );
  assert.equal(info.bitDepth, 16);
  assert.deepEqual(x.data, planar(samples.map((s) => s / 65535), 1, 4));
  // Neighbouring 16-bit levels stay distinct (an 8-bit path would merge them).
  assert.notEqual(x.data[3 + 1], x.data[3 + 2]);
});

Deno.test("image: grey is replicated to RGB (8- and 16-bit)", async () => {
  const g8 = [0, 10, 128, 255, 3, 99];
  const x8 = await decodeImage(
    handPng({ width: 3, height: 2, bitDepth: 8, colorType: 0, samples: g8 }),
  );
  const e8 = Float32Array.from(g8, (s) => s / 255);
  assert.deepEqual(x8.shape, [1, 3, 2, 3]);
  for (let c = 0; c < 3; c++) assert.deepEqual(x8.data.subarray(6 * c, 6 * c + 6), e8);
  const g16 = [0, 1, 2, 65535, 30000, 30001];
  const x16 = await decodeImage(
    handPng({ width: 3, height: 2, bitDepth: 16, colorType: 0, samples: g16 }),
  );
  const e16 = Float32Array.from(g16, (s) => s / 65535);
  for (let c = 0; c < 3; c++) assert.deepEqual(x16.data.subarray(6 * c, 6 * c + 6), e16);
});

Deno.test("image: palette expands to RGB; alpha is dropped, not composited", async () => {
  const palette = [255, 0, 0, 0, 128, 255, 10, 20, 30];
  const pal = await decodeImageWithInfo(
    handPng({ width: 3, height: 1, bitDepth: 8, colorType: 3, samples: [2, 0, 1], palette }),
  );
  assert.ok(pal.info.palette);
  const rgb = [10, 20, 30, 255, 0, 0, 0, 128, 255].map((s) => s / 255);
  assert.deepEqual(pal.tensor.data, planar(rgb, 1, 3));

  // RGBA: colour samples as stored, whatever the alpha (0, 128, 255).
  const rgba = [200, 100, 50, 0, 10, 20, 30, 128, 1, 2, 3, 255];
  const a = await decodeImageWithInfo(
    handPng({ width: 3, height: 1, bitDepth: 8, colorType: 6, samples: rgba }),
  );
  assert.ok(a.info.hadAlpha);
  assert.deepEqual(
    a.tensor.data,
    planar([200, 100, 50, 10, 20, 30, 1, 2, 3].map((s) => s / 255), 1, 3),
  );

  // Grey + alpha, 16-bit.
  const ga = [1000, 0, 60000, 65535];
  const g = await decodeImage(
    handPng({ width: 2, height: 1, bitDepth: 16, colorType: 4, samples: ga }),
  );
  const eg = [1000, 1000, 1000, 60000, 60000, 60000].map((s) => s / 65535);
  assert.deepEqual(g.data, planar(eg, 1, 2));
});

Deno.test("image: PNG write/read round trips (8- and 16-bit, clamped and rounded)", async () => {
  await withTempDir(async (dir) => {
    const h = 5, w = 6, n = 3 * h * w;
    const levels8 = Float32Array.from(seededValues(n, 4), (v) => Math.round(v * 255) / 255);
    await writePng(join(dir, "a.png"), { data: levels8, shape: [1, 3, h, w] });
    assert.deepEqual((await readImage(join(dir, "a.png"))).data, levels8);

    const any = seededValues(n, 5);
    any[0] = -0.3; // clamped to 0
    any[1] = 1.7; // clamped to 1
    await writePng(join(dir, "b.png"), { data: any, shape: [1, 3, h, w] }, { bitDepth: 16 });
    const b = await readImage(join(dir, "b.png"));
    const md = await sharp(join(dir, "b.png")).metadata();
    assert.equal(md.depth, "ushort");
    assert.equal(b.data[0], 0);
    assert.equal(b.data[1], 1);
    for (let i = 2; i < n; i++) {
      assert.equal(b.data[i], Math.fround(Math.round(any[i] * 65535) / 65535), `sample ${i}`);
    }

    // One channel → grey PNG, read back replicated.
    const grey = Float32Array.from(seededValues(h * w, 6), (v) => Math.round(v * 255) / 255);
    await writePng(join(dir, "g.png"), { data: grey, shape: [1, 1, h, w] });
    assert.equal((await sharp(join(dir, "g.png")).metadata()).channels, 1);
    const gb = await readImage(join(dir, "g.png"));
    for (let c = 0; c < 3; c++) {
      assert.deepEqual(gb.data.subarray(c * h * w, (c + 1) * h * w), grey);
    }

    await assertInputError(
      writePng(join(dir, "c.png"), { data: new Float32Array(8), shape: [1, 2, 2, 2] }),
      /cannot be an image/,
    );
  });
});

Deno.test("image: EXIF orientation is applied", async () => {
  // An 8×16 (H×W) image: left half black, right half white, stored with orientation 6 (the viewer
  // rotates it 90° clockwise), so the decoded image is 16×8 with the white half at the bottom.
  const h = 8, w = 16;
  const raw = new Uint8Array(h * w * 3);
  for (let i = 0; i < h; i++) {
    for (let j = w / 2; j < w; j++) raw.fill(255, (i * w + j) * 3, (i * w + j) * 3 + 3);
  }
  const jpeg = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
  const { tensor: x, info } = await decodeImageWithInfo(new Uint8Array(jpeg));
  assert.equal(info.orientation, 6);
  assert.deepEqual(x.shape, [1, 3, 16, 8]);
  assert.ok(x.data[1 * 8 + 4] < 0.1, "top is black");
  assert.ok(x.data[14 * 8 + 4] > 0.9, "bottom is white");
});

/** A minimal uncompressed little-endian RGB TIFF with 16-bit samples, built by hand. */
function handTiff16(width: number, height: number, samples: Uint16Array): Uint8Array {
  const entries: [number, number, number][] = []; // tag, type (3 SHORT, 4 LONG), value
  const ifdAt = 8, nEntries = 10;
  const bpsAt = ifdAt + 2 + 12 * nEntries + 4, dataAt = bpsAt + 6;
  entries.push([256, 4, width], [257, 4, height], [258, 3, bpsAt], [259, 3, 1], [262, 3, 2]);
  entries.push([273, 4, dataAt], [277, 3, 3], [278, 4, height], [279, 4, 2 * samples.length]);
  entries.push([284, 3, 1]);
  const out = new Uint8Array(dataAt + 2 * samples.length);
  const v = new DataView(out.buffer);
  out.set([0x49, 0x49], 0);
  v.setUint16(2, 42, true);
  v.setUint32(4, ifdAt, true);
  v.setUint16(ifdAt, nEntries, true);
  entries.forEach(([tag, type, value], k) => {
    const at = ifdAt + 2 + 12 * k;
    v.setUint16(at, tag, true);
    v.setUint16(at + 2, type, true);
    v.setUint32(at + 4, tag === 258 ? 3 : 1, true);
    if (type === 3 && tag !== 258) v.setUint16(at + 8, value, true);
    else v.setUint32(at + 8, value, true);
  });
  for (let c = 0; c < 3; c++) v.setUint16(bpsAt + 2 * c, 16, true);
  samples.forEach((s, i) => v.setUint16(dataAt + 2 * i, s, true));
  return out;
}

Deno.test("image: WebP (lossless) and TIFF (16-bit) decode exactly", async () => {
  const h = 3, w = 4;
  const rgb8 = Uint8Array.from(seededValues(h * w * 3, 7), (v) => Math.floor(v * 256));
  const webp = await sharp(rgb8, { raw: { width: w, height: h, channels: 3 } })
    .webp({ lossless: true }).toBuffer();
  const xw = await decodeImageWithInfo(new Uint8Array(webp));
  assert.equal(xw.info.format, "webp");
  assert.deepEqual(xw.tensor.data, planar([...rgb8].map((s) => s / 255), h, w));

  const rgb16 = Uint16Array.from(seededValues(h * w * 3, 8), (v) => Math.floor(v * 65536));
  const xt = await decodeImageWithInfo(handTiff16(w, h, rgb16));
  assert.equal(xt.info.format, "tiff");
  assert.equal(xt.info.bitDepth, 16);
  assert.deepEqual(xt.tensor.data, planar([...rgb16].map((s) => s / 65535), h, w));
});

Deno.test("image: Kodak PNG reads as [1,3,512,768] on the 8-bit grid", async () => {
  const x = await readImage("../shared/data/kodak/kodim01.png");
  assert.deepEqual(x.shape, [1, 3, 512, 768]);
  let min = 1, max = 0;
  for (const v of x.data) {
    assert.equal(Math.fround(Math.round(v * 255) / 255), v);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(min < 0.1 && max > 0.9);
});

Deno.test("image: missing, corrupt and unsupported files give one-line InputErrors", async () => {
  await withTempDir(async (dir) => {
    await assertInputError(readImage(join(dir, "nope.png")), /nope\.png: no such file/);
    const png = handPng({
      width: 2,
      height: 2,
      bitDepth: 8,
      colorType: 2,
      samples: new Array(12).fill(9),
    });
    await Deno.writeFile(join(dir, "cut.png"), png.subarray(0, 40));
    await assertInputError(readImage(join(dir, "cut.png")), /cut\.png: /);
    await Deno.writeFile(join(dir, "junk.png"), new TextEncoder().encode("not an image at all"));
    await assertInputError(readImage(join(dir, "junk.png")), /junk\.png: not a readable image/);
    await assertInputError(readImage(dir), /is a folder|cannot read/);
    await assertInputError(
      writeTensor(join(dir, "y.bmp"), { data: new Float32Array(3), shape: [1, 3, 1, 1] }),
      /cannot write "\.bmp" files/,
    );
    // readTensor dispatches on the extension.
    await writeNpy(join(dir, "t.npy"), { data: new Float32Array([0.25]), shape: [1, 1, 1, 1] });
    assert.deepEqual((await readTensor(join(dir, "t.npy"))).data, new Float32Array([0.25]));
  });
});

// ---------------------------------------------------------------------------------------------
// atomic writes

Deno.test("atomic: creates folders, replaces whole files, leaves no temp files", async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, "a", "b", "out.bin");
    await writeFileAtomic(target, new Uint8Array([1, 2, 3]));
    assert.deepEqual(await Deno.readFile(target), new Uint8Array([1, 2, 3]));
    await writeFileAtomic(target, new Uint8Array([4]));
    assert.deepEqual(await Deno.readFile(target), new Uint8Array([4]));
    assert.deepEqual([...Deno.readDirSync(join(dir, "a", "b"))].map((e) => e.name), ["out.bin"]);
    // Writing onto a folder fails and leaves nothing behind.
    await assert.rejects(writeFileAtomic(join(dir, "a"), new Uint8Array([5])));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a"]);
  });
});

Deno.test("atomic: an output may not be an input (paths, symlinks, hard links)", async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, "x.png");
    await Deno.writeFile(input, new Uint8Array([1]));
    assert.throws(() => assertNotInput(input, [input]), InputError);
    assert.throws(() => assertNotInput(join(dir, "sub", "..", "x.png"), [input]), InputError);
    await Deno.symlink(input, join(dir, "link.png"));
    assert.throws(() => assertNotInput(join(dir, "link.png"), [input]), InputError);
    await Deno.link(input, join(dir, "hard.png"));
    assert.throws(() => assertNotInput(join(dir, "hard.png"), [input]), InputError);
    assertNotInput(join(dir, "y.png"), [input]); // a different, new file is fine
  });
});

// ---------------------------------------------------------------------------------------------
// test scene

Deno.test("scene: deterministic, on [0,1], with edges, texture and colour at any size", () => {
  for (const [h, w] of [[1, 1], [17, 33], [96, 128]]) {
    const a = testScene(h, w), b = testScene(h, w);
    assert.deepEqual(a.shape, [1, 3, h, w]);
    assert.deepEqual(a.data, b.data);
    assert.ok(a.data.every((v) => v >= 0 && v <= 1));
  }
  const h = 128, w = 128, n = h * w;
  const x = testScene(h, w);
  // Colour: mean absolute difference between channels is far from zero.
  let chroma = 0;
  for (let i = 0; i < n; i++) {
    chroma += Math.abs(x.data[i] - x.data[n + i]) + Math.abs(x.data[n + i] - x.data[2 * n + i]);
  }
  assert.ok(chroma / n > 0.1, `chroma ${chroma / n}`);
  // Edges and texture: many large horizontal steps, many small ones (smooth regions).
  let big = 0, small = 0;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j + 1 < w; j++) {
      const d = Math.abs(x.data[i * w + j + 1] - x.data[i * w + j]);
      if (d > 0.2) big++;
      else if (d < 0.01) small++;
    }
  }
  assert.ok(big > 300, `edges: ${big}`);
  assert.ok(small > n / 3, `smooth: ${small}`);
  assert.throws(() => testScene(0, 4), RangeError);
});
