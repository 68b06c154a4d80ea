/**
 * Named, seeded random streams.
 *
 * Every random draw in the toolkit comes from a stream obtained by name from one root seed:
 * `streams(seed).get("measurement-noise")`, `.get("operator")`, `.get("solver")`, … Streams are
 * independent of one another and of the order in which they are requested, so adding a draw to the
 * solver never changes the measurement noise, and the same seed gives bit-identical output.
 *
 * Generator: xoshiro128** (Blackman & Vigna) seeded by SplitMix32 from a 128-bit hash of
 * `(seed, name)`. It is written here (30 lines) rather than taken from npm because the one thing we
 * need beyond a plain generator, derivation of independent streams from names, is not offered by
 * the maintained packages (pure-rand offers jumps, not named derivation).
 *
 * @module
 */

/** A deterministic stream of random numbers. */
export interface RandomStream {
  /** The stream's name (as derived from the root seed). */
  readonly name: string;
  /** Next 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform double in [0, 1) with 53 random bits. */
  uniform(): number;
  /** Standard normal draw (Box–Muller, both values of a pair used in turn). */
  normal(): number;
  /** Fill `out` with independent N(0,1) draws and return it. */
  fillNormal(out: Float32Array): Float32Array;
  /** Derive an independent child stream, e.g. `solver.child("step-3")`. */
  child(name: string): RandomStream;
}

/** A source of named streams derived from one root seed. */
export interface StreamSource {
  /** The root seed. */
  readonly seed: number;
  /** The stream with this name; asking twice gives two generators in the same start state. */
  get(name: string): RandomStream;
}

/**
 * Standard stream names used by the built-in CLIs and solvers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STREAMS, streams } from "./rng.ts";
 * const noise = streams(1).get(STREAMS.measurementNoise);
 * assert.equal(noise.name, "measurement-noise");
 * ```
 */
export const STREAMS = {
  measurementNoise: "measurement-noise",
  operator: "operator",
  solver: "solver",
  init: "init",
} as const;

function hash128(text: string): [number, number, number, number] {
  // cyrb128: a small, well-mixed string hash (public domain), used only to seed SplitMix32.
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

function splitmix32(a: number): () => number {
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t = t ^ (t >>> 15);
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

class Xoshiro128 implements RandomStream {
  #s: Uint32Array;
  #spare: number | null = null;
  constructor(readonly name: string, key: string) {
    const [a, b, c, d] = hash128(key);
    const sm = splitmix32(a ^ Math.imul(b, 0x85ebca6b) ^ Math.imul(c, 0xc2b2ae35) ^ d);
    this.#s = new Uint32Array([sm(), sm(), sm(), sm()]);
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
    this.#key = key;
  }
  #key: string;
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
  uniform(): number {
    const hi = this.nextUint32() >>> 5, lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }
  child(name: string): RandomStream {
    return new Xoshiro128(`${this.name}/${name}`, `${this.#key}\u0000${name}`);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * The named streams of one root seed.
 *
 * @example
 * ```ts
 * import { streams } from "./rng.ts";
 * const a = streams(0).get("measurement-noise").normal();
 * const b = streams(0).get("measurement-noise").normal();
 * console.assert(a === b);
 * ```
 */
export function streams(seed: number): StreamSource {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  }
  return {
    seed,
    get: (name: string) => new Xoshiro128(name, `seed:${seed}\u0000${name}`),
  };
}

/**
 * A stream that only returns zeros from `normal`/`fillNormal` (for exact deterministic tests).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { zeroNoiseStream } from "./rng.ts";
 * const z = zeroNoiseStream();
 * assert.equal(z.normal(), 0);
 * assert.deepEqual([...z.fillNormal(new Float32Array(3))], [0, 0, 0]);
 * ```
 */
export function zeroNoiseStream(name = "zero"): RandomStream {
  const base = streams(0).get(name);
  const z: RandomStream = {
    name,
    nextUint32: () => base.nextUint32(),
    uniform: () => base.uniform(),
    normal: () => 0,
    fillNormal: (out) => out.fill(0),
    child: () => z,
  };
  return z;
}
