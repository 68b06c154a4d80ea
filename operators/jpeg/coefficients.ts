/**
 * Reading the quantised DCT coefficients out of a baseline JPEG file, and the codec-sense data
 * consistency measure built on it: the fraction of quantised coefficients two files share.
 *
 * Written by hand (≈ 150 lines) because no maintained npm package exposes the coefficients: sharp /
 * libvips decode to pixels only, and jpeg-js keeps its coefficient blocks inside a closure. Only
 * what sharp's baseline encoder writes is supported: SOF0/SOF1 (8-bit Huffman, sequential), one
 * interleaved scan, optional restart intervals.
 *
 * @module
 */
import { InputError } from "../../core/errors.ts";

/** ZIGZAG[k] = natural (row-major) index of the k-th coefficient in scan order. */
const ZIGZAG = (() => {
  // Walk the anti-diagonals d = i + j, alternating direction (the JPEG scan order).
  const out = new Int32Array(64);
  let k = 0;
  for (let d = 0; d < 15; d++) {
    for (let t = 0; t <= d; t++) {
      const i = d % 2 ? t : d - t, j = d - i;
      if (i < 8 && j < 8) out[k++] = i * 8 + j;
    }
  }
  return out;
})();

/** One component's quantised coefficients. */
export interface JpegComponentCoefficients {
  /** Component id from the frame header (1 = Y, 2 = Cb, 3 = Cr for JFIF). */
  id: number;
  /** Horizontal sampling factor. */
  h: number;
  /** Vertical sampling factor. */
  v: number;
  /** Blocks stored per row (whole MCUs, padding blocks included). */
  blocksWide: number;
  /** Blocks stored per column. */
  blocksHigh: number;
  /** Blocks per row that cover the image (the rest is MCU padding). */
  usedWide: number;
  /** Blocks per column that cover the image. */
  usedHigh: number;
  /**
   * Quantised coefficients as a (8·blocksHigh)×(8·blocksWide) plane: coefficient (u, v) of block
   * (i, j) at row 8i + u, column 8j + v (u vertical frequency), the layout of a block DCT plane.
   */
  coefficients: Int32Array;
  /** The quantisation table (natural order). */
  table: Int32Array;
}

/** A decoded baseline JPEG header and its coefficients. */
export interface JpegCoefficients {
  /** Image width in pixels. */
  width: number;
  /** Image height in pixels. */
  height: number;
  /** Components in frame order (Y, Cb, Cr for JFIF). */
  components: JpegComponentCoefficients[];
}

interface Huffman {
  /** Symbols in code order. */
  symbols: Uint8Array;
  /** Per code length L (1..16): largest code, smallest code, index of its first symbol. */
  maxCode: Int32Array;
  minCode: Int32Array;
  first: Int32Array;
}

function huffman(counts: Uint8Array, symbols: Uint8Array): Huffman {
  const maxCode = new Int32Array(18).fill(-1), minCode = new Int32Array(17);
  const first = new Int32Array(17);
  let code = 0, k = 0;
  for (let len = 1; len <= 16; len++) {
    first[len] = k;
    minCode[len] = code;
    code += counts[len - 1];
    k += counts[len - 1];
    maxCode[len] = counts[len - 1] ? code - 1 : -1;
    code <<= 1;
  }
  return { symbols, maxCode, minCode, first };
}

/** Bit reader over entropy-coded data (byte stuffing removed, stops at markers). */
class Bits {
  #pos: number;
  #acc = 0;
  #n = 0;
  constructor(readonly b: Uint8Array, pos: number) {
    this.#pos = pos;
  }
  get pos(): number {
    return this.#pos;
  }
  bit(): number {
    if (this.#n === 0) {
      const byte = this.b[this.#pos];
      if (byte === 0xff) {
        const next = this.b[this.#pos + 1];
        if (next !== 0) throw new InputError(`jpeg: unexpected marker FF${next.toString(16)}`);
        this.#pos += 2;
      } else this.#pos++;
      if (byte === undefined) throw new InputError("jpeg: entropy-coded data ends early");
      this.#acc = byte;
      this.#n = 8;
    }
    this.#n--;
    return (this.#acc >> this.#n) & 1;
  }
  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = (v << 1) | this.bit();
    return v;
  }
  decode(t: Huffman): number {
    let code = 0;
    for (let len = 1; len <= 16; len++) {
      code = (code << 1) | this.bit();
      if (code <= t.maxCode[len]) return t.symbols[t.first[len] + code - t.minCode[len]];
    }
    throw new InputError("jpeg: bad Huffman code");
  }
  /** Skip to the byte after an RSTn marker (resets the bit buffer). */
  restart(): void {
    this.#n = 0;
    while (this.#pos < this.b.length && this.b[this.#pos] !== 0xff) this.#pos++;
    this.#pos += 2;
  }
}

/** JPEG's EXTEND: the s-bit magnitude category v as a signed value. */
function extend(v: number, s: number): number {
  return s === 0 ? 0 : v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
}

/**
 * The quantised DCT coefficients of a baseline JPEG file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeJpeg } from "../jpeg.ts";
 * import { readJpegCoefficients } from "./coefficients.ts";
 * const flat = { data: new Float32Array(3 * 16 * 16).fill(0.75), shape: [1, 3, 16, 16] };
 * const c = readJpegCoefficients(await encodeJpeg(flat, 50));
 * // A flat grey 16×16 image: luma DC of every block is 8·(191 − 128)/16 ≈ 31.5 → 32, AC zero.
 * assert.equal(c.components[0].coefficients[0], 32);
 * assert.equal(c.components[0].coefficients[1], 0);
 * ```
 */
export function readJpegCoefficients(b: Uint8Array): JpegCoefficients {
  if (b[0] !== 0xff || b[1] !== 0xd8) throw new InputError("jpeg: not a JPEG file (no SOI)");
  const tables: Int32Array[] = [], dc: Huffman[] = [], ac: Huffman[] = [];
  let frame: JpegCoefficients | null = null;
  const tableOf: number[] = [];
  let restart = 0;
  for (let i = 2; i < b.length;) {
    if (b[i] !== 0xff) throw new InputError(`jpeg: expected a marker at byte ${i}`);
    const m = b[i + 1], len = (b[i + 2] << 8) | b[i + 3], seg = i + 4, end = i + 2 + len;
    if (m === 0xd9) break;
    if (m === 0xdb) {
      for (let j = seg; j < end;) {
        const wide = b[j] >> 4, t = new Int32Array(64);
        for (let k = 0; k < 64; k++) {
          t[ZIGZAG[k]] = wide ? (b[j + 1 + 2 * k] << 8) | b[j + 2 + 2 * k] : b[j + 1 + k];
        }
        tables[b[j] & 15] = t;
        j += 1 + (wide ? 128 : 64);
      }
    } else if (m === 0xc4) {
      for (let j = seg; j < end;) {
        const counts = b.subarray(j + 1, j + 17), total = counts.reduce((s, c) => s + c, 0);
        const t = huffman(counts, b.slice(j + 17, j + 17 + total));
        (b[j] >> 4 ? ac : dc)[b[j] & 15] = t;
        j += 17 + total;
      }
    } else if (m === 0xdd) restart = (b[seg] << 8) | b[seg + 1];
    else if (m === 0xc0 || m === 0xc1) frame = readFrame(b, seg, tableOf);
    else if (m >= 0xc2 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      throw new InputError("jpeg: only baseline (sequential Huffman) files are supported");
    } else if (m === 0xda) {
      if (!frame) throw new InputError("jpeg: scan before frame header");
      frame.components.forEach((c, k) => c.table = tables[tableOf[k]]);
      decodeScan(b, seg, frame, dc, ac, restart);
      return frame;
    }
    i = end;
  }
  throw new InputError("jpeg: no scan found");
}

function readFrame(b: Uint8Array, seg: number, tableOf: number[]): JpegCoefficients {
  const height = (b[seg + 1] << 8) | b[seg + 2], width = (b[seg + 3] << 8) | b[seg + 4];
  const n = b[seg + 5];
  const specs = Array.from({ length: n }, (_, k) => {
    const o = seg + 6 + 3 * k;
    tableOf.push(b[o + 2]);
    return { id: b[o], h: b[o + 1] >> 4, v: b[o + 1] & 15 };
  });
  const hmax = Math.max(...specs.map((s) => s.h)), vmax = Math.max(...specs.map((s) => s.v));
  const mcusWide = Math.ceil(width / (8 * hmax)), mcusHigh = Math.ceil(height / (8 * vmax));
  const components = specs.map((s) => {
    const blocksWide = mcusWide * s.h, blocksHigh = mcusHigh * s.v;
    return {
      ...s,
      blocksWide,
      blocksHigh,
      usedWide: Math.ceil(Math.ceil(width * s.h / hmax) / 8),
      usedHigh: Math.ceil(Math.ceil(height * s.v / vmax) / 8),
      coefficients: new Int32Array(64 * blocksWide * blocksHigh),
      table: new Int32Array(64),
    };
  });
  return { width, height, components };
}

/** Decode the single interleaved baseline scan starting at the SOS segment `seg`. */
function decodeScan(
  b: Uint8Array,
  seg: number,
  frame: JpegCoefficients,
  dc: Huffman[],
  ac: Huffman[],
  restart: number,
): void {
  const ns = b[seg];
  if (ns !== frame.components.length) {
    throw new InputError("jpeg: only single-scan interleaved files are supported");
  }
  const sel = Array.from({ length: ns }, (_, k) => b[seg + 2 + 2 * k]);
  const bits = new Bits(b, seg + 1 + 2 * ns + 3);
  const comps = frame.components;
  const mcusWide = comps[0].blocksWide / comps[0].h, mcusHigh = comps[0].blocksHigh / comps[0].v;
  const pred = new Int32Array(ns);
  for (let mcu = 0; mcu < mcusWide * mcusHigh; mcu++) {
    if (restart && mcu > 0 && mcu % restart === 0) {
      bits.restart();
      pred.fill(0);
    }
    const my = Math.floor(mcu / mcusWide), mx = mcu % mcusWide;
    comps.forEach((c, k) => {
      const tdc = dc[sel[k] >> 4], tac = ac[sel[k] & 15], w = 8 * c.blocksWide;
      for (let by = 0; by < c.v; by++) {
        for (let bx = 0; bx < c.h; bx++) {
          const o = (8 * (my * c.v + by)) * w + 8 * (mx * c.h + bx);
          const s = bits.decode(tdc);
          pred[k] += extend(bits.bits(s), s);
          c.coefficients[o] = pred[k];
          for (let z = 1; z < 64;) {
            const rs = bits.decode(tac), r = rs >> 4, sz = rs & 15;
            if (sz === 0) {
              if (r !== 15) break;
              z += 16;
              continue;
            }
            z += r;
            const nat = ZIGZAG[z];
            c.coefficients[o + (nat >> 3) * w + (nat & 7)] = extend(bits.bits(sz), sz);
            z++;
          }
        }
      }
    });
  }
}

/** Agreement of two files' quantised coefficients (same geometry), over the image's blocks. */
export interface JpegBinAgreement {
  /** Fraction of all quantised coefficients with equal values. */
  all: number;
  /** The same, restricted to coefficients that are non-zero in the reference. */
  nonzero: number;
  /** Per component (Y, Cb, Cr), fraction over all coefficients. */
  perComponent: number[];
}

/**
 * The fraction of quantised DCT coefficients of `test` that fall in the same bins as `reference`'s
 * (both baseline JPEG files of the same size, tables and sampling), over the blocks that cover the
 * image: data consistency in the codec's own sense.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeJpeg } from "../jpeg.ts";
 * import { jpegBinAgreement } from "./coefficients.ts";
 * const x = { data: new Float32Array(3 * 16 * 16).map((_, i) => (i % 7) / 7), shape: [1, 3, 16, 16] };
 * const bytes = await encodeJpeg(x, 30);
 * assert.equal(jpegBinAgreement(bytes, bytes).all, 1);
 * ```
 */
export function jpegBinAgreement(test: Uint8Array, reference: Uint8Array): JpegBinAgreement {
  const a = readJpegCoefficients(test), r = readJpegCoefficients(reference);
  if (a.width !== r.width || a.height !== r.height || a.components.length !== r.components.length) {
    throw new InputError("jpeg: the two files differ in size or components");
  }
  let same = 0, total = 0, sameNz = 0, totalNz = 0;
  const perComponent = r.components.map((rc, k) => {
    const ac = a.components[k];
    if (ac.blocksWide !== rc.blocksWide || ac.h !== rc.h || ac.v !== rc.v) {
      throw new InputError("jpeg: the two files differ in sampling");
    }
    let s = 0, t = 0;
    const w = 8 * rc.blocksWide;
    for (let i = 0; i < 8 * rc.usedHigh; i++) {
      for (let j = 0; j < 8 * rc.usedWide; j++) {
        const v = rc.coefficients[i * w + j], eq = ac.coefficients[i * w + j] === v ? 1 : 0;
        s += eq, t++;
        if (v !== 0) sameNz += eq, totalNz++;
      }
    }
    same += s, total += t;
    return s / t;
  });
  return { all: same / total, nonzero: totalNz ? sameNz / totalNz : 1, perComponent };
}
