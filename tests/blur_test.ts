import assert from "node:assert/strict";
import { join } from "node:path";
import { testOperator } from "../core/operator_suite.ts";
import { createOperator, type OperatorPlugin, PluginRegistry } from "../core/registry.ts";
import { srPlugin } from "../operators/sr.ts";
import { inpaintPlugin } from "../operators/inpaint.ts";
import { InputError } from "../core/errors.ts";
import { streams } from "../core/rng.ts";
import { type Tensor, tensor } from "../core/tensor.ts";
import { encodeNpy } from "../core/io/npy.ts";
import { encodePng } from "../core/io/image.ts";
import { dct2 } from "../core/linalg/dct.ts";
import { pffftSupports } from "../core/linalg/fft32.ts";
import {
  type BlurBoundary,
  type BlurOperator,
  blurPlugin,
  makeBlurOperator,
  symmetricBlurDctDiagonal,
} from "../operators/blur.ts";
import {
  gaussianKernel,
  gaussianKernelSize,
  type Kernel2,
  motionKernel,
} from "../operators/kernels.ts";

const registry = new PluginRegistry().register(blurPlugin);
const BOUNDARIES: BlurBoundary[] = ["circular", "symmetric", "reflect"];

function randomKernel(h: number, w: number, name: string): Kernel2 {
  const r = streams(3).get("blur-test").child(name);
  const data = new Float64Array(h * w);
  for (let i = 0; i < data.length; i++) data[i] = 0.05 + r.uniform();
  return { h, w, data };
}

function randomImage(shape: number[], name: string): Tensor {
  const r = streams(3).get("blur-test").child(name);
  const t = tensor(shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = r.uniform();
  return t;
}

/** Index extension of each boundary rule (one fold is enough for the sizes used here). */
function extend(i: number, n: number, mode: BlurBoundary | "mirror"): number {
  if (mode === "circular") return ((i % n) + n) % n;
  if (mode === "symmetric") return i < 0 ? -i - 1 : i >= n ? 2 * n - 1 - i : i;
  // whole-sample reflect (= scipy "mirror")
  return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i;
}

/** Direct spatial TRUE convolution: y[i,j] = Σ k[a,b] x̃[i − (a − ⌊kh/2⌋), j − (b − ⌊kw/2⌋)]. */
function directConv(
  x: Float64Array,
  H: number,
  W: number,
  k: Kernel2,
  mode: BlurBoundary | "mirror",
): Float64Array {
  const y = new Float64Array(H * W);
  const ch = Math.floor(k.h / 2), cw = Math.floor(k.w / 2);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) {
      let s = 0;
      for (let a = 0; a < k.h; a++) {
        const r = extend(i - (a - ch), H, mode);
        for (let b = 0; b < k.w; b++) {
          s += k.data[a * k.w + b] * x[r * W + extend(j - (b - cw), W, mode)];
        }
      }
      y[i * W + j] = s;
    }
  }
  return y;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let tmpDir: string | undefined;
/** A small asymmetric kernel (5×4, even width) as a .npy file, written once per test run. */
async function asymmetricKernelFile(): Promise<{ path: string; kernel: Kernel2 }> {
  const kernel = randomKernel(5, 4, "file-kernel");
  tmpDir ??= await Deno.makeTempDir({ prefix: "blur_test_" });
  const path = join(tmpDir, "kernel.npy");
  await Deno.writeFile(
    path,
    encodeNpy({ data: Float32Array.from(kernel.data), shape: [kernel.h, kernel.w] }),
  );
  return { path, kernel };
}

Deno.test("blur passes the operator contract suite: every kernel × boundary, both FFT engines", async () => {
  const { path } = await asymmetricKernelFile();
  const kernels: Record<string, number | string>[] = [
    { kernel: "gaussian", sigma: 1.5 },
    { kernel: "motion", size: 9 },
    { kernel: "file", path },
  ];
  // 32×64 runs circular blur on PFFFT directly; 32×40 through Bluestein on PFFFT (rows must be
  // multiples of 32 for PFFFT). Padded boundaries always pick a direct PFFFT plane size.
  assert.ok(pffftSupports(32, 64) && !pffftSupports(32, 40));
  for (const [h, w] of [[32, 64], [32, 40]]) {
    for (const k of kernels) {
      for (const boundary of BOUNDARIES) {
        const r = await testOperator(blurPlugin, { ...k, boundary }, { shape: [1, 3, h, w] });
        console.log(JSON.stringify({ h, w, ...r }));
      }
    }
  }
});

Deno.test("blur passes the suite with larger kernels (σ=3, motion 31) on 64×80 and 64×96", async () => {
  for (const boundary of BOUNDARIES) {
    for (const w of [80, 96]) {
      await testOperator(blurPlugin, { kernel: "gaussian", sigma: 3, boundary }, {
        shape: [1, 3, 64, w],
      });
    }
  }
  await testOperator(blurPlugin, { kernel: "motion", size: 31, boundary: "reflect" }, {
    shape: [1, 1, 64, 80],
  });
});

Deno.test("blur equals a direct spatial convolution sum (odd and even kernel sizes)", async () => {
  const H = 11, W = 9;
  for (const [kh, kw] of [[3, 5], [4, 3], [5, 4], [1, 1], [11, 9]]) {
    const k = randomKernel(kh, kw, `conv-${kh}x${kw}`);
    const x = randomImage([1, 2, H, W], `conv-x-${kh}`);
    for (const boundary of BOUNDARIES) {
      const y = await makeBlurOperator(k, boundary, [1, 2, H, W]).forward(x);
      for (let c = 0; c < 2; c++) {
        const xc = Float64Array.from(x.data.subarray(c * H * W, (c + 1) * H * W));
        const want = directConv(xc, H, W, k, boundary);
        const err = maxAbsDiff(y.data.subarray(c * H * W, (c + 1) * H * W), want);
        assert.ok(err < 1e-5 * kh * kw, `${boundary} ${kh}×${kw}: ${err}`);
      }
    }
  }
});

Deno.test("convolution vs direct sum, and the correlation is different (asymmetric kernel)", async () => {
  const H = 12, W = 10;
  const k = randomKernel(3, 5, "corr");
  // Make the kernel strongly asymmetric: a ramp.
  for (let i = 0; i < k.data.length; i++) k.data[i] = 1 + i;
  const flipped: Kernel2 = { h: k.h, w: k.w, data: k.data.slice().reverse() };
  const x = randomImage([1, 1, H, W], "corr-x");
  const x64 = Float64Array.from(x.data);
  for (const boundary of BOUNDARIES) {
    const y = await makeBlurOperator(k, boundary, [1, 1, H, W]).forward(x);
    const conv = directConv(x64, H, W, k, boundary);
    const corr = directConv(x64, H, W, flipped, boundary); // correlation with k
    assert.ok(maxAbsDiff(y.data, conv) < 1e-4, `${boundary}: differs from the convolution`);
    assert.ok(maxAbsDiff(y.data, corr) > 1e-1, `${boundary}: equals the correlation`);
  }
});

Deno.test("A(1) = 1 for normalised kernels under every boundary", async () => {
  const { path } = await asymmetricKernelFile();
  const shape = [1, 3, 24, 30];
  const kernels: Record<string, number | string>[] = [
    { kernel: "gaussian", sigma: 2 },
    { kernel: "motion", size: 15 },
    { kernel: "file", path },
  ];
  for (const k of kernels) {
    for (const boundary of BOUNDARIES) {
      const op = await createOperator(
        registry,
        { name: "blur", options: { ...k, boundary } },
        shape,
        1,
      );
      const y = await op.forward(tensor(shape, new Float32Array(3 * 24 * 30).fill(1)));
      assert.ok(
        maxAbsDiff(y.data, new Float32Array(y.data.length).fill(1)) < 1e-6,
        `${k.kernel}/${boundary}`,
      );
    }
  }
});

/** M = Φ A Φᵀ for a spatial operator on H×W (columns: A applied to DCT basis images). */
function dctMatrixOf(apply: (x: Float64Array) => Float64Array, H: number, W: number): Float64Array {
  const n = H * W, d = dct2(H, W), M = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const e = new Float64Array(n);
    e[c] = 1;
    d.inverse(e); // basis image Φᵀ e_c
    const col = apply(e);
    d.forward(col);
    for (let r = 0; r < n; r++) M[r * n + c] = col[r];
  }
  return M;
}

function offDiagonalRatio(M: Float64Array, n: number): number {
  let off = 0, all = 0;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const v = M[r * n + c] ** 2;
      all += v;
      if (r !== c) off += v;
    }
  }
  return Math.sqrt(off / all);
}

Deno.test("symmetric boundary + Gaussian is DCT-II diagonal; whole-sample reflect is not", async () => {
  const H = 12, W = 10;
  const k = gaussianKernel(1); // 9×9
  const n = H * W;
  const half = dctMatrixOf((x) => directConv(x, H, W, k, "symmetric"), H, W);
  const whole = dctMatrixOf((x) => directConv(x, H, W, k, "mirror"), H, W);
  const rHalf = offDiagonalRatio(half, n), rWhole = offDiagonalRatio(whole, n);
  assert.ok(rHalf < 1e-12, `half-sample symmetric off-diagonal ratio ${rHalf}`);
  assert.ok(
    rWhole > 1e-2,
    `whole-sample reflect off-diagonal ratio ${rWhole} (should not be diagonal)`,
  );

  // The operator's public diagonal is that diagonal, and its forward is the spatial convolution.
  const op = makeBlurOperator(k, "symmetric", [1, 2, H, W]);
  assert.ok(op.dctDiagonal && op.capabilities.closedFormProx);
  let err = 0;
  for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(op.dctDiagonal![i] - half[i * n + i]));
  assert.ok(err < 1e-12, `dctDiagonal vs matrix diagonal ${err}`);
  assert.ok(Math.abs(op.dctDiagonal![0] - 1) < 1e-12, "DC gain of a normalised kernel is 1");
  const x = randomImage([1, 2, H, W], "diag-x");
  const y = await op.forward(x);
  for (let c = 0; c < 2; c++) {
    const want = directConv(
      Float64Array.from(x.data.subarray(c * n, (c + 1) * n)),
      H,
      W,
      k,
      "symmetric",
    );
    assert.ok(maxAbsDiff(y.data.subarray(c * n, (c + 1) * n), want) < 1e-6);
  }
  // Non-axis-symmetric kernels get no diagonal and fall back to CG.
  const asym = makeBlurOperator(randomKernel(3, 3, "asym"), "symmetric", [1, 1, H, W]);
  assert.equal(asym.dctDiagonal, undefined);
  assert.equal(asym.capabilities.closedFormProx, false);
  assert.equal(symmetricBlurDctDiagonal(randomKernel(3, 3, "asym"), H, W), null);
  // Circular and reflect never expose one.
  assert.equal(makeBlurOperator(k, "circular", [1, 1, H, W]).dctDiagonal, undefined);
  assert.equal(makeBlurOperator(k, "reflect", [1, 1, H, W]).dctDiagonal, undefined);
});

Deno.test("scipy.ndimage.convolve cross-check: reflect=symmetric, mirror=reflect, wrap=circular", async () => {
  const H = 13, W = 11;
  const x = randomImage([1, 1, H, W], "scipy-x");
  const cases: [Kernel2, string][] = [
    [randomKernel(5, 3, "scipy-a"), "odd"],
    [randomKernel(4, 6, "scipy-b"), "even"],
    [gaussianKernel(1.2), "gauss"],
  ];
  const script = `
import json, sys
import numpy as np
from scipy import ndimage
d = json.load(sys.stdin)
x = np.array(d["x"], dtype=np.float64).reshape(d["H"], d["W"])
out = []
for k in d["kernels"]:
    kk = np.array(k["data"], dtype=np.float64).reshape(k["h"], k["w"])
    out.append({m: ndimage.convolve(x, kk, mode=m).ravel().tolist() for m in ["reflect", "mirror", "wrap"]})
json.dump(out, sys.stdout)
`;
  const cmd = new Deno.Command("python3", {
    args: ["-c", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify({
    H,
    W,
    x: Array.from(x.data),
    kernels: cases.map(([k]) => ({ h: k.h, w: k.w, data: Array.from(k.data) })),
  })));
  await w.close();
  const res = await child.output();
  assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
  const ref = JSON.parse(new TextDecoder().decode(res.stdout)) as Record<string, number[]>[];
  const modes: [BlurBoundary, string][] = [["symmetric", "reflect"], ["reflect", "mirror"], [
    "circular",
    "wrap",
  ]];
  for (let c = 0; c < cases.length; c++) {
    for (const [ours, theirs] of modes) {
      const y = await makeBlurOperator(cases[c][0], ours, [1, 1, H, W]).forward(x);
      const err = maxAbsDiff(y.data, ref[c][theirs]);
      assert.ok(
        err < 2e-6 * cases[c][0].data.reduce((a, b) => a + b),
        `${cases[c][1]} ${ours} vs scipy ${theirs}: ${err}`,
      );
    }
  }
});

Deno.test("Gaussian kernel: deepinv size rule and values", () => {
  assert.equal(gaussianKernelSize(3), 23);
  assert.equal(gaussianKernelSize(6), 43);
  assert.equal(gaussianKernelSize(1.5), 13);
  assert.equal(gaussianKernelSize(10), 69);
  assert.equal(gaussianKernelSize(20), 135);
  const k = gaussianKernel(3);
  assert.equal(k.h, 23);
  assert.equal(k.w, 23);
  const c = 11;
  let s = 0;
  for (let i = 0; i < 23; i++) {
    for (let j = 0; j < 23; j++) s += Math.exp(-((i - c) ** 2 + (j - c) ** 2) / 18);
  }
  for (const [i, j] of [[11, 11], [0, 0], [3, 17], [11, 20]]) {
    const want = Math.exp(-((i - c) ** 2 + (j - c) ** 2) / 18) / s;
    assert.ok(Math.abs(k.data[i * 23 + j] - want) < 1e-15 * Math.max(want, 1e-300) + 1e-18);
  }
  // Anisotropic: σx along columns, σy along rows; size from max σ.
  const a = gaussianKernel(2, 1);
  assert.equal(a.h, gaussianKernelSize(2));
  const m = (a.h - 1) / 2;
  assert.ok(a.data[m * a.w + m + 2] > a.data[(m + 2) * a.w + m], "wider along columns");
  // A 90° rotation swaps the axes.
  const r = gaussianKernel(2, 1, 90);
  assert.ok(Math.abs(r.data[(m + 2) * r.w + m] - a.data[m * a.w + m + 2]) < 1e-12);
});

Deno.test("motion kernel: deterministic per seed, non-negative, sums to 1, not a point", async () => {
  const shape = [1, 3, 128, 128];
  const make = async (seed: number, size = 61) =>
    (await createOperator(
      registry,
      { name: "blur", options: { kernel: "motion", size } },
      shape,
      seed,
    )) as BlurOperator;
  const a = await make(0), b = await make(0), c = await make(1);
  assert.deepEqual(a.kernel.data, b.kernel.data);
  assert.notDeepEqual(a.kernel.data, c.kernel.data);
  for (const op of [a, c, await make(5, 122)]) {
    const k = op.kernel;
    assert.equal(k.h, k.w);
    let s = 0, nz = 0, min = Infinity;
    for (const v of k.data) {
      s += v;
      min = Math.min(min, v);
      if (v > 0) nz++;
    }
    assert.ok(Math.abs(s - 1) < 1e-12, `sum ${s}`);
    assert.ok(min >= 0, `min ${min}`);
    assert.ok(nz >= 9, `only ${nz} non-zero taps`);
    const art = op.artifacts!().kernel;
    assert.deepEqual(art.shape, [1, 1, k.h, k.w]);
  }
  // The default stream of the plugin is operator/blur: same kernel as drawing from it directly.
  const direct = motionKernel(61, 0.5, streams(0).get("operator").child("blur"));
  assert.deepEqual(direct.data, a.kernel.data);
});

Deno.test("blur: errors name the input", async () => {
  const shape = [1, 3, 16, 20];
  const bad = async (options: Record<string, number | string>, pattern: RegExp) => {
    await assert.rejects(
      () => createOperator(registry, { name: "blur", options }, shape, 0),
      (e: unknown) => e instanceof InputError && pattern.test(e.message),
    );
  };
  await bad({ sigma: 6 }, /kernel 43×43 is larger than the image 16×20/);
  await bad({ kernel: "motion" }, /kernel 61×61 is larger than the image 16×20/);
  await bad({ blurriness: 2 }, /blurriness/);
  await bad({ kernel: "file" }, /path/);
  await bad({ kernel: "file", path: "/nonexistent/k.npy" }, /nonexistent/);
  await bad({ kernel: "gaussian", intensity: 0.3 }, /intensity/);
  await bad({ kernel: "motion", sigma: 2, size: 9 }, /sigma/);
  await bad({ boundary: "zero" }, /boundary/);
  await bad({ sigma: -1 }, /sigma/);
});

Deno.test("blur: pseudoInverse is Aᵀy, circular prox is the deepinv closed form", async () => {
  const shape = [1, 3, 16, 20];
  const op = await createOperator(registry, "blur:sigma=1,boundary=circular", shape, 0);
  const y = randomImage(shape, "pinv");
  assert.deepEqual((await op.pseudoInverse!(y)).data, (await op.adjoint!(y)).data);
  // Wrong shapes reject the returned promise (they do not throw synchronously).
  const wrong = tensor([1, 3, 16, 21]);
  for (
    const call of [() => op.forward(wrong), () => op.proxL2(wrong, y, 1), () => op.vjp(wrong, y)]
  ) {
    const p = call();
    assert.ok(p instanceof Promise);
    await assert.rejects(p, RangeError);
  }
  assert.ok(op.capabilities.closedFormProx);
  // γ → 0 gives z, and the prox is a fixed point map for (z, y) = (x, Ax).
  const z = randomImage(shape, "pz");
  const u0 = await op.proxL2(z, y, 0);
  assert.ok(maxAbsDiff(u0.data, z.data) < 1e-6);
  const ax = await op.forward(z);
  const u = await op.proxL2(z, ax, 100);
  assert.ok(maxAbsDiff(u.data, z.data) < 1e-5);
  // Cached measurement spectra are not stale when y changes.
  const y2 = randomImage(shape, "pinv2");
  const a1 = await op.proxL2(z, y, 1), a2 = await op.proxL2(z, y2, 1);
  const fresh = await (await createOperator(registry, "blur:sigma=1", shape, 0)).proxL2(z, y2, 1);
  assert.notDeepEqual(a1.data, a2.data);
  assert.deepEqual(a2.data, fresh.data);
});

Deno.test("kernel=file reads PNG kernels: asymmetric values, symmetric ones get the DCT prox", async () => {
  tmpDir ??= await Deno.makeTempDir({ prefix: "blur_test_" });
  // Grey 8-bit PNG with levels 0…255: the kernel is levels / Σ levels.
  const levels = [0, 10, 20, 30, 40, 50, 60, 70, 255, 90, 100, 110, 120, 130, 140];
  const asym = join(tmpDir, "asym.png");
  await Deno.writeFile(
    asym,
    await encodePng({ data: Float32Array.from(levels, (v) => v / 255), shape: [1, 1, 3, 5] }),
  );
  const shape = [1, 1, 12, 14];
  const op = (await createOperator(
    registry,
    { name: "blur", options: { kernel: "file", path: asym, boundary: "symmetric" } },
    shape,
    0,
  )) as BlurOperator;
  const total = levels.reduce((a, b) => a + b);
  assert.deepEqual([op.kernel.h, op.kernel.w], [3, 5]);
  assert.ok(maxAbsDiff(op.kernel.data, levels.map((v) => v / total)) < 1e-7); // float32 file
  assert.equal(op.capabilities.closedFormProx, false);
  // A symmetric RGB PNG (equal channels): symmetric boundary is closed form.
  const sym = [1, 2, 1, 2, 4, 2, 1, 2, 1].map((v) => v / 4);
  const symPath = join(tmpDir, "sym.png");
  await Deno.writeFile(
    symPath,
    await encodePng({ data: Float32Array.from([...sym, ...sym, ...sym]), shape: [1, 3, 3, 3] }),
  );
  const op2 = (await createOperator(
    registry,
    { name: "blur", options: { kernel: "file", path: symPath, boundary: "symmetric" } },
    shape,
    0,
  )) as BlurOperator;
  assert.ok(op2.capabilities.closedFormProx && op2.dctDiagonal);
  await testOperator(blurPlugin, { kernel: "file", path: symPath, boundary: "symmetric" }, {
    shape: [1, 2, 12, 14],
  });
});

Deno.test("the closed-form proxes report ‖A u − y‖ through ProxOptions.report (checked by the suite)", async () => {
  const { path } = await asymmetricKernelFile();
  const cases: [OperatorPlugin<never>, Record<string, unknown>, number[]][] = [
    [blurPlugin as OperatorPlugin<never>, { sigma: 2 }, [1, 3, 32, 64]],
    [blurPlugin as OperatorPlugin<never>, { sigma: 2 }, [1, 3, 20, 30]],
    [blurPlugin as OperatorPlugin<never>, { sigma: 2, boundary: "symmetric" }, [1, 3, 20, 30]],
    [blurPlugin as OperatorPlugin<never>, { kernel: "file", path }, [1, 3, 32, 64]],
    [srPlugin as OperatorPlugin<never>, { factor: 2 }, [1, 3, 64, 128]],
    [srPlugin as OperatorPlugin<never>, { factor: 4, filter: "avgpool" }, [1, 3, 32, 48]],
    [inpaintPlugin as OperatorPlugin<never>, { mask: "random", p: 0.5 }, [1, 3, 24, 40]],
  ];
  for (const [plugin, options, shape] of cases) {
    const r = await testOperator(plugin, options as never, { shape });
    assert.equal(r.reportedResidual, true, `${r.spec} ${shape}: no residual reported`);
  }
});
