import assert from "node:assert/strict";
import { fastFftSize, fft2, rfft2 } from "../core/linalg/fft.ts";
import { dct2, dctMatrix } from "../core/linalg/dct.ts";
import { streams } from "../core/rng.ts";

function randomPlane(n: number, name: string): Float64Array {
  const r = streams(7).get("fft-test").child(name);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = r.normal();
  return out;
}

/** Naive 2-D DFT, O((hw)²), sign −1 (forward) or +1 (unscaled backward). */
function naiveDft(
  h: number,
  w: number,
  re: Float64Array,
  im: Float64Array,
  sign = -1,
): [Float64Array, Float64Array] {
  const R = new Float64Array(h * w), I = new Float64Array(h * w);
  for (let u = 0; u < h; u++) {
    for (let v = 0; v < w; v++) {
      let sr = 0, si = 0;
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          // Reduce the phase exactly before scaling so large indices stay accurate.
          const a = sign * 2 * Math.PI * (((u * i) % h) / h + ((v * j) % w) / w);
          const c = Math.cos(a), s = Math.sin(a);
          sr += re[i * w + j] * c - im[i * w + j] * s;
          si += re[i * w + j] * s + im[i * w + j] * c;
        }
      }
      R[u * w + v] = sr;
      I[u * w + v] = si;
    }
  }
  return [R, I];
}

function relErr(a: Float64Array, b: Float64Array, c?: Float64Array, d?: Float64Array): number {
  let e = 0, n = 0;
  for (let k = 0; k < a.length; k++) {
    e += (a[k] - b[k]) ** 2;
    n += b[k] ** 2;
  }
  if (c && d) {
    for (let k = 0; k < c.length; k++) {
      e += (c[k] - d[k]) ** 2;
      n += d[k] ** 2;
    }
  }
  return Math.sqrt(e / n);
}

// Sizes covering every code path: 1, powers of two, m·2^k with small odd m (mixed radix), odd
// composites and primes (Bluestein), and rectangular mixtures.
const SIZES: [number, number][] = [
  [1, 1],
  [1, 8],
  [5, 7],
  [12, 9],
  [8, 16],
  [6, 10],
  [17, 3],
  [13, 34],
  [24, 1],
  [2, 19],
];

Deno.test("fft2 forward matches a naive DFT on small and odd sizes", () => {
  for (const [h, w] of SIZES) {
    const re = randomPlane(h * w, `re-${h}x${w}`), im = randomPlane(h * w, `im-${h}x${w}`);
    const [R, I] = naiveDft(h, w, re, im);
    const p = fft2(h, w);
    const r = re.slice(), i = im.slice();
    p.forward(r, i);
    const err = relErr(r, R, i, I);
    assert.ok(err < 1e-12, `${h}×${w}: forward error ${err.toExponential(2)}`);
    // The inverse is the unscaled backward DFT divided by h·w.
    const [Br, Bi] = naiveDft(h, w, re, im, +1);
    const r2 = re.slice(), i2 = im.slice();
    p.inverse(r2, i2);
    for (let k = 0; k < h * w; k++) {
      Br[k] /= h * w;
      Bi[k] /= h * w;
    }
    const err2 = relErr(r2, Br, i2, Bi);
    assert.ok(err2 < 1e-12, `${h}×${w}: inverse error ${err2.toExponential(2)}`);
  }
});

Deno.test("fft2 on lengths 96 (3·32), 45 (3²·5), 51 (3·17: mixed over Bluestein), 38 match a naive DFT", () => {
  for (const [h, w] of [[2, 96], [3, 45], [96, 2], [2, 51], [1, 38], [2, 90]]) {
    const re = randomPlane(h * w, "re"), im = randomPlane(h * w, "im");
    const [R, I] = naiveDft(h, w, re, im);
    const r = re.slice(), i = im.slice();
    fft2(h, w).forward(r, i);
    const err = relErr(r, R, i, I);
    assert.ok(err < 1e-12, `${h}×${w}: forward error ${err.toExponential(2)}`);
  }
});

Deno.test("fft2 round-trips 768×512 (Kodak) and satisfies Parseval", () => {
  const h = 512, w = 768;
  for (const [hh, ww] of [[h, w], [w, h]]) {
    const re = randomPlane(hh * ww, "rt-re"), im = randomPlane(hh * ww, "rt-im");
    const p = fft2(hh, ww);
    const r = re.slice(), i = im.slice();
    p.forward(r, i);
    let e0 = 0, e1 = 0;
    for (let k = 0; k < re.length; k++) {
      e0 += re[k] ** 2 + im[k] ** 2;
      e1 += r[k] ** 2 + i[k] ** 2;
    }
    assert.ok(Math.abs(e1 / (hh * ww) / e0 - 1) < 1e-12, "Parseval");
    p.inverse(r, i);
    const err = relErr(r, re, i, im);
    assert.ok(err < 1e-13, `${hh}×${ww}: round trip error ${err.toExponential(2)}`);
  }
});

Deno.test("fft2 caches plans and rejects wrong plane sizes", () => {
  assert.equal(fft2(6, 10), fft2(6, 10));
  assert.throws(() => fft2(6, 10).forward(new Float64Array(59), new Float64Array(60)), RangeError);
  assert.throws(() => fft2(0, 3), RangeError);
  assert.throws(() => fft2(2.5, 3), RangeError);
});

Deno.test("rfft2 equals the left half of the complex FFT of a real plane and inverts it", () => {
  for (const [h, w] of [[1, 1], [1, 2], [5, 7], [12, 9], [8, 16], [7, 6], [3, 1], [64, 48]]) {
    const x = randomPlane(h * w, `real-${h}x${w}`);
    const re = x.slice(), im = new Float64Array(h * w);
    fft2(h, w).forward(re, im);
    const p = rfft2(h, w);
    assert.equal(p.wh, Math.floor(w / 2) + 1);
    const hr = new Float64Array(h * p.wh), hi = new Float64Array(h * p.wh);
    p.forward(x, hr, hi);
    let e = 0, n = 0;
    for (let u = 0; u < h; u++) {
      for (let v = 0; v < p.wh; v++) {
        e += (hr[u * p.wh + v] - re[u * w + v]) ** 2 + (hi[u * p.wh + v] - im[u * w + v]) ** 2;
        n += re[u * w + v] ** 2 + im[u * w + v] ** 2;
      }
    }
    assert.ok(Math.sqrt(e / n) < 1e-13, `${h}×${w}: half spectrum error ${Math.sqrt(e / n)}`);
    const back = new Float64Array(h * w);
    const keep = hr.slice();
    p.inverse(hr, hi, back);
    assert.deepEqual(hr, keep, "inverse must not change its input");
    assert.ok(relErr(back, x) < 1e-13, `${h}×${w}: round trip ${relErr(back, x)}`);
  }
});

Deno.test("rfft2 inverse ignores the imaginary parts of the DC and Nyquist columns (irfft2)", () => {
  const h = 4, w = 6;
  const x = randomPlane(h * w, "nyq");
  const p = rfft2(h, w);
  const re = new Float64Array(h * p.wh), im = new Float64Array(h * p.wh);
  p.forward(x, re, im);
  // Perturb the imaginary parts of column 0 at u = 0 and of column w/2 at u = 0: for a real
  // signal they are zero, and irfft2 discards them.
  im[0] += 5;
  im[w / 2] -= 3;
  const back = new Float64Array(h * w);
  p.inverse(re, im, back);
  assert.ok(relErr(back, x) < 1e-13);
});

Deno.test("fastFftSize picks a cheap 13-smooth length ≥ n", () => {
  assert.equal(fastFftSize(1), 1);
  assert.equal(fastFftSize(512), 512);
  assert.equal(fastFftSize(572), 576); // 2⁶·3²
  for (const n of [17, 100, 534, 572, 769, 1000]) {
    const m = fastFftSize(n);
    assert.ok(m >= n && m <= 2 ** Math.ceil(Math.log2(n)), `${n} → ${m}`);
    let odd = m;
    for (const p of [2, 3, 5, 7, 11, 13]) while (odd % p === 0) odd /= p;
    assert.equal(odd, 1, `${n} → ${m} has a large prime factor`);
  }
});

/** Φ_h x Φ_wᵀ with explicit matrices. */
function matrixDct(h: number, w: number, x: Float64Array): Float64Array {
  const Ph = dctMatrix(h), Pw = dctMatrix(w);
  const t = new Float64Array(h * w), out = new Float64Array(h * w);
  for (let k = 0; k < h; k++) {
    for (let j = 0; j < w; j++) {
      let s = 0;
      for (let i = 0; i < h; i++) s += Ph[k * h + i] * x[i * w + j];
      t[k * w + j] = s;
    }
  }
  for (let k = 0; k < h; k++) {
    for (let l = 0; l < w; l++) {
      let s = 0;
      for (let j = 0; j < w; j++) s += t[k * w + j] * Pw[l * w + j];
      out[k * w + l] = s;
    }
  }
  return out;
}

Deno.test("dctMatrix is orthonormal", () => {
  for (const n of [1, 2, 5, 8, 13]) {
    const P = dctMatrix(n);
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += P[a * n + i] * P[b * n + i];
        assert.ok(Math.abs(s - (a === b ? 1 : 0)) < 1e-14, `n=${n} <row ${a}, row ${b}> = ${s}`);
      }
    }
  }
});

Deno.test("dct2 equals the orthonormal DCT-II matrix transform and inverts it", () => {
  for (const [h, w] of [[1, 1], [1, 6], [5, 7], [12, 9], [8, 8], [3, 16], [7, 1], [17, 13]]) {
    const x = randomPlane(h * w, `dct-${h}x${w}`);
    const ref = matrixDct(h, w, x);
    const y = x.slice();
    const p = dct2(h, w);
    p.forward(y);
    const err = relErr(y, ref);
    assert.ok(err < 1e-13, `${h}×${w}: DCT-II error ${err.toExponential(2)}`);
    // Orthonormal: energy is preserved.
    let e0 = 0, e1 = 0;
    for (let k = 0; k < x.length; k++) {
      e0 += x[k] ** 2;
      e1 += y[k] ** 2;
    }
    assert.ok(Math.abs(e1 / e0 - 1) < 1e-13, `${h}×${w}: energy ratio ${e1 / e0}`);
    p.inverse(y);
    const back = relErr(y, x);
    assert.ok(back < 1e-13, `${h}×${w}: DCT-III round trip ${back.toExponential(2)}`);
  }
});

Deno.test("dct2 inverse is the transpose: <Φx, Y> = <x, ΦᵀY>", () => {
  const h = 11, w = 6;
  const x = randomPlane(h * w, "adj-x"), Y = randomPlane(h * w, "adj-y");
  const p = dct2(h, w);
  const fx = x.slice(), tY = Y.slice();
  p.forward(fx);
  p.inverse(tY);
  let a = 0, b = 0;
  for (let k = 0; k < x.length; k++) {
    a += fx[k] * Y[k];
    b += x[k] * tY[k];
  }
  assert.ok(Math.abs(a - b) < 1e-12 * Math.abs(a) + 1e-12);
});

Deno.test("dct2 round-trips 512×768", () => {
  const x = randomPlane(512 * 768, "big");
  const y = x.slice();
  const p = dct2(512, 768);
  p.forward(y);
  p.inverse(y);
  assert.ok(relErr(y, x) < 1e-13);
});
