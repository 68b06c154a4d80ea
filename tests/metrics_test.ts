/**
 * PSNR, SSIM and measurement-consistency PSNR.
 *
 * SSIM is compared with a NumPy/SciPy reimplementation of scikit-image's
 * `structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
 * data_range=1, channel_axis=0)` (scikit-image itself is not installable here). The reference
 * follows skimage's code path step by step: per channel, `gaussian_filter(·, sigma=1.5,
 * truncate=3.5)` of x, y, x², y², xy; population (co)variances (cov_norm = 1); the SSIM map with
 * C1 = (0.01)², C2 = (0.03)²; `crop(S, (win_size − 1)//2)` with win_size = 2·int(3.5·1.5 + 0.5) + 1
 * = 11; the float64 mean; the mean over channels.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  gaussianWindow,
  InputError,
  measure,
  measurementPsnr,
  mse,
  psnr,
  readImage,
  ssim,
  streams,
  type Tensor,
  writeNpy,
} from "../mod.ts";
import { gainPlugin } from "../examples/gain_plugin.ts";
import { createOperator, PluginRegistry } from "../core/registry.ts";

const SKIMAGE_REFERENCE = `
import sys, json, numpy as np
from scipy.ndimage import gaussian_filter

def skimage_ssim_channel(x, y, sigma=1.5, truncate=3.5, K1=0.01, K2=0.03, R=1.0):
    r = int(truncate * sigma + 0.5)
    win_size = 2 * r + 1
    filt = lambda a: gaussian_filter(a, sigma=sigma, truncate=truncate, mode="reflect")
    ux, uy = filt(x), filt(y)
    uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
    cov_norm = 1.0  # use_sample_covariance=False
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    C1, C2 = (K1 * R) ** 2, (K2 * R) ** 2
    A1, A2 = 2 * ux * uy + C1, 2 * vxy + C2
    B1, B2 = ux ** 2 + uy ** 2 + C1, vx + vy + C2
    S = (A1 * A2) / (B1 * B2)
    pad = (win_size - 1) // 2
    S = S[pad:S.shape[0] - pad, pad:S.shape[1] - pad]
    return S.mean(dtype=np.float64)

out = []
for pa, pb in zip(sys.argv[1::2], sys.argv[2::2]):
    a = np.load(pa).astype(np.float64)[0]
    b = np.load(pb).astype(np.float64)[0]
    s = float(np.mean([skimage_ssim_channel(a[c], b[c]) for c in range(a.shape[0])]))
    m = float(np.mean((a - b) ** 2))
    out.append({"ssim": s, "psnr": 10 * np.log10(1.0 / m)})
print(json.dumps(out))
`;

async function reference(pairs: [Tensor, Tensor][]): Promise<{ ssim: number; psnr: number }[]> {
  const dir = await Deno.makeTempDir({ prefix: "metrics_test_" });
  try {
    const args: string[] = [];
    for (let k = 0; k < pairs.length; k++) {
      const pa = join(dir, `a${k}.npy`), pb = join(dir, `b${k}.npy`);
      await writeNpy(pa, pairs[k][0]);
      await writeNpy(pb, pairs[k][1]);
      args.push(pa, pb);
    }
    const r = await new Deno.Command("python3", { args: ["-c", SKIMAGE_REFERENCE, ...args] })
      .output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return JSON.parse(new TextDecoder().decode(r.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function uniformImage(shape: number[], seed: number): Tensor {
  const rng = streams(seed).get("metrics-test");
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.uniform();
  return { data, shape };
}

function crop(x: Tensor, top: number, left: number, h: number, w: number): Tensor {
  const [, c, H, W] = x.shape;
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h; i++) {
      const src = (k * H + top + i) * W + left;
      out.set(x.data.subarray(src, src + w), (k * h + i) * w);
    }
  }
  return { data: out, shape: [1, c, h, w] };
}

/** x + σ·n clamped to [0,1], then a 3-tap horizontal box blur: a plausible "restoration". */
function degradeForTest(x: Tensor, sigma: number, seed: number): Tensor {
  const rng = streams(seed).get("metrics-test-noise");
  const [, c, h, w] = x.shape;
  const noisy = x.data.map((v) => Math.min(1, Math.max(0, v + sigma * rng.normal())));
  const out = new Float32Array(noisy.length);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const o = (k * h + i) * w;
        const l = noisy[o + Math.max(0, j - 1)], r = noisy[o + Math.min(w - 1, j + 1)];
        out[o + j] = (l + noisy[o + j] + r) / 3;
      }
    }
  }
  return { data: out, shape: [...x.shape] };
}

Deno.test("psnr: exact values, +∞ for identical images, shape mismatch is an InputError", () => {
  const a = { data: new Float32Array(12).fill(0.5), shape: [1, 3, 2, 2] };
  const b = { data: new Float32Array(12).fill(0.5), shape: [1, 3, 2, 2] };
  assert.equal(psnr(a, b), Infinity);
  b.data[0] = 0.5 + 0.6; // MSE = 0.36 / 12 = 0.03
  assert.ok(Math.abs(mse(a, b) - 0.03) < 1e-8);
  assert.ok(Math.abs(psnr(a, b) - 10 * Math.log10(1 / 0.03)) < 1e-6);
  assert.ok(Math.abs(psnr(a, b, 255) - 10 * Math.log10(255 * 255 / 0.03)) < 1e-6);
  assert.throws(
    () => psnr(a, { data: new Float32Array(4), shape: [1, 1, 2, 2] }),
    (e: unknown) => e instanceof InputError && /shape/.test(e.message),
  );
});

Deno.test("ssim: Gaussian window is the normalised 11-tap σ = 1.5 kernel", () => {
  const g = gaussianWindow(1.5, 3.5);
  assert.equal(g.length, 11);
  assert.ok(Math.abs(g.reduce((s, v) => s + v, 0) - 1) < 1e-15);
  assert.ok(Math.abs(g[4] / g[5] - Math.exp(-1 / (2 * 2.25))) < 1e-14);
});

Deno.test("ssim: identical images give 1; constant images give the closed form", () => {
  const x = uniformImage([1, 3, 24, 20], 1);
  assert.ok(Math.abs(ssim(x, x) - 1) < 1e-12);
  // Constant p vs constant q: variances vanish, S = (2pq + C1)/(p² + q² + C1) everywhere.
  const p = 0.3, q = 0.7, c1 = 1e-4;
  const a = { data: new Float32Array(3 * 16 * 16).fill(p), shape: [1, 3, 16, 16] };
  const b = { data: new Float32Array(3 * 16 * 16).fill(q), shape: [1, 3, 16, 16] };
  const pf = Math.fround(p), qf = Math.fround(q);
  const expected = (2 * pf * qf + c1) / (pf * pf + qf * qf + c1);
  assert.ok(Math.abs(ssim(a, b) - expected) < 1e-12, `${ssim(a, b)} vs ${expected}`);
  // Symmetric.
  const y = uniformImage([1, 3, 24, 20], 2);
  assert.ok(Math.abs(ssim(x, y) - ssim(y, x)) < 1e-14);
});

Deno.test("ssim: images smaller than the 11×11 window are refused", () => {
  const a = uniformImage([1, 3, 10, 40], 3);
  assert.throws(
    () => ssim(a, a),
    (e: unknown) => e instanceof InputError && /11×11/.test(e.message),
  );
});

Deno.test("ssim and psnr match the scikit-image algorithm (NumPy/SciPy reference) within 1e-4", async () => {
  const pairs: [Tensor, Tensor][] = [];
  for (
    const [k, top, left, h, w] of [[1, 100, 200, 96, 128], [5, 300, 500, 64, 80], [9, 0, 0, 77, 53]]
  ) {
    const x = crop(
      await readImage(`../shared/data/kodak/kodim${String(k).padStart(2, "0")}.png`),
      top,
      left,
      h,
      w,
    );
    pairs.push([x, degradeForTest(x, 0.05, k)]);
  }
  pairs.push([uniformImage([1, 3, 40, 33], 7), uniformImage([1, 3, 40, 33], 8)]);
  const x = uniformImage([1, 1, 31, 45], 9);
  pairs.push([x, degradeForTest(x, 0.2, 9)]);
  const ref = await reference(pairs);
  pairs.forEach(([a, b], k) => {
    const s = ssim(a, b), p = psnr(a, b);
    assert.ok(Math.abs(s - ref[k].ssim) < 1e-4, `pair ${k}: ssim ${s} vs reference ${ref[k].ssim}`);
    assert.ok(Math.abs(p - ref[k].psnr) < 1e-6, `pair ${k}: psnr ${p} vs reference ${ref[k].psnr}`);
    console.log(
      `pair ${k} [${a.shape}]: ssim ${s.toFixed(6)} (|Δ| ${
        Math.abs(s - ref[k].ssim).toExponential(1)
      })`,
    );
  });
  // The reference sees real differences between pairs (the comparison is not vacuous).
  assert.ok(ref.some((r) => r.ssim < 0.9) && ref.some((r) => r.ssim > 0.5));
});

Deno.test("measurementPsnr is the PSNR between A(x̂) and y", async () => {
  const registry = new PluginRegistry().register(gainPlugin);
  const shape = [1, 3, 16, 16];
  const op = await createOperator(registry, "gain:strength=0.8", shape, 0);
  const x = uniformImage(shape, 11);
  const y = await measure(op, x, 0.05, streams(0).get("measurement-noise"));
  const xhat = uniformImage(shape, 12);
  const got = await measurementPsnr(op, xhat, y);
  assert.ok(Math.abs(got - psnr(await op.forward(xhat), y)) < 1e-12);
  // The true x explains y up to the noise: PSNR ≈ 10 log10(1/σ²) = 26 dB.
  const atTruth = await measurementPsnr(op, x, y);
  assert.ok(Math.abs(atTruth - 26.02) < 0.5, `${atTruth}`);
  assert.ok(atTruth > got);
  await assert.rejects(
    measurementPsnr(op, xhat, uniformImage([1, 3, 8, 8], 1)),
    (e: unknown) => e instanceof InputError,
  );
});
