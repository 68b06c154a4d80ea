/**
 * The float32 FFT path (core/linalg/fft32.ts) against the float64 one (core/linalg/fft.ts, itself
 * checked against a naive DFT in fft_test.ts).
 *
 * Stated bound: relative L2 error ≤ 1e-6 for the forward half spectrum and for the inverse, on
 * sizes 64…1024 including Kodak's 768×512 (both orientations), rectangular and odd sizes. float32
 * has ε = 6e-8; a radix-2/3/5 transform of n points accumulates ≈ ε·√log₂n in RMS, and the input's
 * own rounding to float32 adds ε/√3: the measured errors are 1.2–2.5e-7.
 */
import assert from "node:assert/strict";
import { rfft2 } from "../core/linalg/fft.ts";
import { pffftSupports, rfft2f32 } from "../core/linalg/fft32.ts";
import { streams } from "../core/rng.ts";

const BOUND = 1e-6;

const SIZES: [number, number][] = [
  [64, 64],
  [128, 96],
  [96, 160],
  [256, 256],
  [512, 512],
  [512, 768], // Kodak landscape (h×w)
  [768, 512], // Kodak portrait
  [1024, 1024],
  [480, 640],
  // Sizes PFFFT cannot do directly (odd, primes, not multiples of 32/16): Bluestein on PFFFT,
  // rows paired into complex transforms.
  [63, 65],
  [100, 100],
  [97, 101],
  [1, 64],
  [64, 1],
  [3, 7],
  [1000, 1000],
  [1, 1],
];

function plane(n: number, name: string): Float64Array {
  return Float64Array.from(streams(21).get("fft32").child(name).fillNormal(new Float32Array(n)));
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0, n = 0;
  for (let k = 0; k < a.length; k++) {
    e += (a[k] - b[k]) ** 2;
    n += b[k] ** 2;
  }
  return Math.sqrt(e / n);
}

for (const [h, w] of SIZES) {
  Deno.test(`fft32 ${h}×${w}: forward and inverse within ${BOUND} of float64`, () => {
    const p = rfft2f32(h, w), q = rfft2(h, w);
    assert.equal(p.engine, pffftSupports(h, w) ? "pffft" : "pffft + Bluestein");
    assert.equal(p.wh, q.wh);
    const x = plane(h * w, `${h}x${w}`);
    const re = new Float64Array(h * q.wh), im = new Float64Array(h * q.wh);
    q.forward(x, re, im);
    const spec = p.forward(Float32Array.from(x));
    assert.equal(spec.length, p.spectrumLength);
    // The float32 spectrum is transposed: column v holds X[0..h−1, v] interleaved.
    const ref = new Float64Array(p.spectrumLength);
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < q.wh; v++) {
        ref[2 * (v * h + u)] = re[u * q.wh + v];
        ref[2 * (v * h + u) + 1] = im[u * q.wh + v];
      }
    }
    const ef = relErr(spec, ref);
    assert.ok(ef <= BOUND, `forward: relative error ${ef.toExponential(2)}`);
    // Inverse of an arbitrary spectrum (imaginary parts of the DC/Nyquist columns are ignored,
    // as in irfft2), against the float64 inverse of the same spectrum.
    const r2 = plane(h * q.wh, `re${h}x${w}`), i2 = plane(h * q.wh, `im${h}x${w}`);
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < q.wh; v++) {
        spec[2 * (v * h + u)] = r2[u * q.wh + v];
        spec[2 * (v * h + u) + 1] = i2[u * q.wh + v];
      }
    }
    const want = new Float64Array(h * w), got = new Float32Array(h * w);
    q.inverse(r2, i2, want);
    p.inverse(got);
    const ei = relErr(got, want);
    assert.ok(ei <= BOUND, `inverse: relative error ${ei.toExponential(2)}`);
    // Round trip, and a scale other than the default.
    p.forward(got);
    const twice = new Float64Array(h * w);
    p.inverse(twice, 2 / (h * w));
    const er = relErr(twice.map((v) => v / 2), got);
    assert.ok(er <= BOUND, `round trip: relative error ${er.toExponential(2)}`);
  });
}

Deno.test("fft32: PFFFT takes the common image sizes; plans are cached; wrong lengths rejected", () => {
  for (const [h, w] of [[512, 768], [768, 512], [1024, 1024], [256, 256], [720, 1280]]) {
    assert.ok(pffftSupports(h, w), `${h}×${w}`);
  }
  assert.ok(!pffftSupports(100, 100) && !pffftSupports(512, 100) && !pffftSupports(8, 64));
  assert.equal(rfft2f32(64, 64), rfft2f32(64, 64));
  assert.throws(() => rfft2f32(64, 64).forward(new Float32Array(10)), /64×64: got 10 values/);
  assert.throws(() => rfft2f32(0, 4), /positive integers/);
});
