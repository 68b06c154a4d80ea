/**
 * NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
 *
 * Written files are float32 little-endian (`<f4`), C order, with the tensor's own shape (NCHW
 * [1,C,H,W] for images), values on the [0,1] image scale. Read files may be `<f4` or `<f8` (float64
 * is rounded to float32), C or Fortran order; big-endian data is refused with a clear error rather
 * than silently byte-swapped. {@link toImageTensor} turns 2-D and 3-D arrays into [1,C,H,W].
 *
 * Hand-written rather than taken from npm: the maintained package (`npyjs` 1.2.0) reads `>f4` data
 * as if it were little-endian, does not check that the data length matches the shape (a truncated
 * file gives a short array) and leaves Fortran-ordered data untransposed; guarding against those
 * would mean parsing the header a second time, and the format is a magic string, a length and a
 * Python-literal dict.
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { numel, type Tensor } from "../tensor.ts";
import { writeFileAtomic } from "./atomic.ts";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/**
 * Encode a tensor as a version 1.0 `.npy` file: `<f4`, C order, shape = `t.shape`.
 *
 * The header is padded with spaces so that the data starts at a multiple of 64 bytes, as NumPy
 * does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeNpy, encodeNpy } from "./npy.ts";
 * const t = { data: new Float32Array([0, 0.5, 1, 0.25]), shape: [1, 1, 2, 2] };
 * const back = decodeNpy(encodeNpy(t));
 * assert.ok(back.data[1] === 0.5 && back.shape.join() === "1,1,2,2");
 * ```
 */
export function encodeNpy(t: Tensor): Uint8Array {
  if (t.data.length !== numel(t.shape)) {
    throw new RangeError(
      `tensor has ${t.data.length} values, shape [${t.shape}] needs ${numel(t.shape)}`,
    );
  }
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = MAGIC.length + 2 + 2 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  if (header.length > 0xffff) throw new RangeError("npy header too long for format 1.0");
  const out = new Uint8Array(10 + header.length + 4 * t.data.length);
  out.set(MAGIC, 0);
  out[6] = 1; // major version
  out[7] = 0; // minor version
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, 10 + header.length);
  for (let i = 0; i < t.data.length; i++) view.setFloat32(4 * i, t.data[i], true);
  return out;
}

/** Parsed `.npy` header. */
interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  dataOffset: number;
}

function parseHeader(bytes: Uint8Array, what: string): NpyHeader {
  const bad = (why: string) => new InputError(`${what}: not a valid .npy file (${why})`);
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw bad("no NUMPY magic");
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number, start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw bad("truncated header");
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw bad(`unsupported format version ${major}.${bytes[7]}`);
  }
  if (start + headerLen > bytes.length) throw bad("truncated header");
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(start, start + headerLen),
  );
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]+)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw bad("header lacks descr, fortran_order or shape");
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => {
    const n = Number(s.replace(/L$/, ""));
    if (!Number.isInteger(n) || n < 0) throw bad(`shape entry "${s}"`);
    return n;
  });
  return { descr, fortranOrder: fortran === "True", shape, dataOffset: start + headerLen };
}

/** Reverse the axes of a column-major (Fortran) array into row-major order. */
function fortranToC(src: Float32Array, shape: readonly number[]): Float32Array {
  const n = src.length, d = shape.length;
  if (d < 2) return src;
  const out = new Float32Array(n);
  // Row-major strides of the output; walk the source in column-major order.
  const cStride = new Array<number>(d);
  cStride[d - 1] = 1;
  for (let k = d - 2; k >= 0; k--) cStride[k] = cStride[k + 1] * shape[k + 1];
  const idx = new Array<number>(d).fill(0);
  let c = 0;
  for (let f = 0; f < n; f++) {
    out[c] = src[f];
    // Increment the multi-index with axis 0 fastest (Fortran order), tracking the C offset.
    for (let k = 0; k < d; k++) {
      idx[k]++;
      c += cStride[k];
      if (idx[k] < shape[k]) break;
      c -= cStride[k] * shape[k];
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * Decode a `.npy` file into a float32 tensor with the file's own shape (any rank).
 *
 * Accepts `<f4` and `<f8`, C or Fortran order. Throws an InputError naming `what` for anything else:
 * big-endian data, other dtypes, bad headers, a data length that does not match the shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeNpy, encodeNpy } from "./npy.ts";
 * const t = decodeNpy(encodeNpy({ data: new Float32Array(6), shape: [2, 3] }));
 * assert.ok(t.shape.join() === "2,3");
 * ```
 */
export function decodeNpy(bytes: Uint8Array, what = ".npy data"): Tensor {
  const h = parseHeader(bytes, what);
  const m = /^([<>|=])?([a-zA-Z])(\d+)$/.exec(h.descr);
  if (!m) throw new InputError(`${what}: unsupported .npy dtype "${h.descr}"`);
  const [, order, kind, sizeText] = m;
  const size = Number(sizeText);
  if (order === ">" || order === "=") {
    throw new InputError(
      `${what}: ${
        order === ">" ? "big-endian" : "native-order"
      } .npy data ("${h.descr}") is not supported; ` +
        `save it little-endian, e.g. np.save(path, a.astype("<f4"))`,
    );
  }
  if (kind !== "f" || (size !== 4 && size !== 8)) {
    throw new InputError(
      `${what}: .npy dtype "${h.descr}" is not supported (expected float32 "<f4" or float64 "<f8")`,
    );
  }
  const n = numel(h.shape);
  const need = n * size;
  const have = bytes.length - h.dataOffset;
  if (have !== need) {
    throw new InputError(
      `${what}: .npy data has ${have} bytes, shape (${
        h.shape.join(", ")
      }) of ${h.descr} needs ${need}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + h.dataOffset, need);
  const data = new Float32Array(n);
  if (size === 4) { for (let i = 0; i < n; i++) data[i] = view.getFloat32(4 * i, true); }
  else for (let i = 0; i < n; i++) data[i] = view.getFloat64(8 * i, true);
  return {
    data: h.fortranOrder ? fortranToC(data, h.shape) : data,
    shape: [...h.shape],
  };
}

/**
 * View an array read from `.npy` as an image tensor [1,C,H,W]. The rule:
 *
 * - 4-D `[1,C,H,W]`: kept (a batch size other than 1 is refused);
 * - 3-D: `[C,H,W]` when the first axis has 1, 3 or 4 entries, otherwise `[H,W,C]` (transposed)
 *   when the last axis has 1, 3 or 4 entries, otherwise refused. Channel-first wins when both
 *   could apply, since that is this toolkit's own layout;
 * - 2-D `[H,W]`: one channel, `[1,1,H,W]`.
 *
 * Values are not rescaled: `.npy` images are on the [0,1] scale by convention.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toImageTensor } from "./npy.ts";
 * const hwc = { data: new Float32Array(12), shape: [2, 2, 3] }; // (H,W,C)
 * const t = toImageTensor(hwc);
 * assert.ok(t.shape.join() === "1,3,2,2");
 * ```
 */
export function toImageTensor(t: Tensor, what = ".npy data"): Tensor {
  const s = t.shape;
  const channelLike = (c: number) => c === 1 || c === 3 || c === 4;
  if (s.length === 4) {
    if (s[0] !== 1) {
      throw new InputError(
        `${what}: array of shape (${s.join(", ")}) has batch size ${s[0]}, expected 1`,
      );
    }
    return { data: t.data, shape: [...s] };
  }
  if (s.length === 3) {
    if (channelLike(s[0])) return { data: t.data, shape: [1, ...s] };
    if (channelLike(s[2])) {
      const [h, w, c] = s;
      const out = new Float32Array(t.data.length);
      for (let i = 0; i < h * w; i++) {
        for (let k = 0; k < c; k++) out[k * h * w + i] = t.data[i * c + k];
      }
      return { data: out, shape: [1, c, h, w] };
    }
    throw new InputError(
      `${what}: 3-D array of shape (${s.join(", ")}) has no channel axis of size 1, 3 or 4 ` +
        `(expected (C,H,W) or (H,W,C))`,
    );
  }
  if (s.length === 2) return { data: t.data, shape: [1, 1, s[0], s[1]] };
  throw new InputError(
    `${what}: array of shape (${s.join(", ")}) is not an image (expected 2-D, 3-D or [1,C,H,W])`,
  );
}

/**
 * Read a `.npy` file as an image tensor [1,C,H,W] (see {@link toImageTensor} for the rule).
 * Throws an InputError naming the path when the file is missing or invalid.
 *
 * @example
 * ```ts ignore
 * import { readNpy } from "./npy.ts";
 * const y = await readNpy("y.npy");
 * ```
 */
export async function readNpy(path: string): Promise<Tensor> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw readError(path, e);
  }
  return toImageTensor(decodeNpy(bytes, path), path);
}

/**
 * Write a tensor as `.npy` (`<f4`, C order, its own shape), atomically. Refuses tensors holding
 * NaN or ±Inf.
 *
 * @example
 * ```ts ignore
 * import { writeNpy } from "./npy.ts";
 * await writeNpy("out/y.npy", { data: new Float32Array(12), shape: [1, 3, 2, 2] });
 * ```
 */
export async function writeNpy(path: string, t: Tensor): Promise<void> {
  assertFiniteForWrite(t, path);
  await writeFileAtomic(path, encodeNpy(t));
}

/**
 * Throw when `t` holds NaN or ±Inf, naming the file that would have been written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assertFiniteForWrite } from "./npy.ts";
 * const t = { data: new Float32Array([0, NaN]), shape: [1, 1, 1, 2] };
 * assert.throws(() => assertFiniteForWrite(t, "y.npy"), /refusing to write y.npy/);
 * ```
 */
export function assertFiniteForWrite(t: Tensor, path: string): void {
  let bad = 0;
  for (const v of t.data) if (!Number.isFinite(v)) bad++;
  if (bad > 0) {
    throw new RangeError(
      `refusing to write ${path}: the tensor holds ${bad} non-finite value(s) (NaN or Inf)`,
    );
  }
}

/**
 * An InputError for a file that cannot be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readError } from "./npy.ts";
 * const e = readError("x.png", new Deno.errors.NotFound("gone"));
 * assert.equal(e.message, "x.png: no such file");
 * ```
 */
export function readError(path: string, e: unknown): Error {
  if (e instanceof Deno.errors.NotFound) return new InputError(`${path}: no such file`);
  if (e instanceof Deno.errors.IsADirectory) return new InputError(`${path}: is a folder`);
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return new InputError(`${path}: permission denied`);
  }
  const msg = (e instanceof Error ? e.message : String(e)).split("\n")[0];
  return new InputError(`${path}: cannot read (${msg})`);
}
