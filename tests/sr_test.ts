import assert from "node:assert/strict";
import {
  createOperator,
  InputError,
  PluginRegistry,
  streams,
  type Tensor,
  tensor,
  testOperator,
} from "../mod.ts";
import { bicubicTaps, keysCubic, srPlugin } from "../operators/sr.ts";
import { pffftSupports } from "../core/linalg/fft32.ts";

const registry = new PluginRegistry().register(srPlugin);
const make = (spec: string, shape: number[]) => createOperator(registry, spec, shape, 0);

function random(shape: number[], seed: number): Tensor {
  const t = tensor(shape);
  const r = streams(seed).get("sr-test");
  for (let i = 0; i < t.data.length; i++) t.data[i] = r.uniform();
  return t;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const filter of ["bicubic", "avgpool"]) {
  for (const boundary of ["circular", "reflect"]) {
    for (const factor of [2, 4]) {
      Deno.test(`sr ${filter} ${boundary} ×${factor} passes the operator contract suite`, async () => {
        const r = await testOperator(srPlugin, { factor, filter, boundary }, {
          shape: [1, 3, 32, 48],
        });
        console.log(JSON.stringify(r));
      });
    }
  }
}

Deno.test("sr circular bicubic ×2 passes the suite with its low-resolution solve on PFFFT", async () => {
  assert.ok(pffftSupports(32, 64)); // the 32×64 low-resolution grid of a 64×128 image
  const r = await testOperator(srPlugin, { factor: 2, filter: "bicubic", boundary: "circular" }, {
    shape: [1, 3, 64, 128],
  });
  console.log(JSON.stringify(r));
});

Deno.test("closed-form prox claims: circular bicubic and avgpool yes, reflect bicubic no", async () => {
  const shape = [1, 1, 16, 16];
  assert.ok((await make("sr:factor=2,boundary=circular", shape)).capabilities.closedFormProx);
  assert.ok(!(await make("sr:factor=2,boundary=reflect", shape)).capabilities.closedFormProx);
  assert.ok(
    (await make("sr:factor=2,filter=avgpool,boundary=reflect", shape)).capabilities.closedFormProx,
  );
});

Deno.test("bicubic taps are deepinv's Keys (a = -1/2) kernel", () => {
  // Hand-computed for f = 2: x = (j − 3.5)/2, W(±0.25) = 0.8671875, W(±0.75) = 0.2265625,
  // W(±1.25) = −0.0703125, W(±1.75) = −0.0234375; the sum is 2.
  const expected = [-0.0234375, -0.0703125, 0.2265625, 0.8671875].map((v) => v / 2);
  const k2 = bicubicTaps(2);
  assert.deepEqual([...k2], [...expected, ...expected.toReversed()]);
  // General f against the formula written out, and the Keys kernel's own values.
  assert.equal(keysCubic(0), 1);
  assert.equal(keysCubic(1), 0);
  assert.equal(keysCubic(2), 0);
  assert.equal(keysCubic(1.5), -0.5 * 3.375 + 2.5 * 2.25 - 4 * 1.5 + 2);
  for (const f of [3, 4, 8, 16]) {
    const k = bicubicTaps(f);
    assert.equal(k.length, 4 * f);
    const raw = Array.from({ length: 4 * f }, (_, j) => {
      const x = Math.abs((j - 2 * f + 0.5) / f);
      return x <= 1
        ? 1.5 * x ** 3 - 2.5 * x ** 2 + 1
        : x < 2
        ? -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
        : 0;
    });
    const s = raw.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(s - f) < 1e-12, "Keys taps sum to f before normalisation");
    assert.ok(maxAbsDiff(k, raw.map((v) => v / s)) < 1e-15);
  }
});

Deno.test("A(1) = 1 for every filter and boundary; artifacts hold the normalised kernel", async () => {
  for (const spec of ["filter=bicubic,boundary=reflect", "filter=bicubic", "filter=avgpool"]) {
    for (const f of [2, 3, 4]) {
      const op = await make(`sr:factor=${f},${spec}`, [1, 2, 24, 36]);
      const y = await op.forward(tensor([1, 2, 24, 36], new Float32Array(2 * 24 * 36).fill(1)));
      assert.deepEqual(y.shape, [1, 2, 24 / f, 36 / f]);
      assert.ok(maxAbsDiff(y.data, new Float32Array(y.data.length).fill(1)) < 1e-6, spec);
      const k = op.artifacts!().kernel;
      const ks = spec.includes("avgpool") ? f : 4 * f;
      assert.deepEqual(k.shape, [1, 1, ks, ks]);
      assert.ok(Math.abs(k.data.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    }
  }
});

Deno.test("avgpool is the exact f×f block mean; its pseudo-inverse is nearest upsampling", async () => {
  const shape = [1, 2, 16, 24], f = 4;
  const x = random(shape, 1);
  const op = await make(`sr:factor=${f},filter=avgpool`, shape);
  const y = await op.forward(x);
  for (let c = 0; c < 2; c++) {
    for (let a = 0; a < 4; a++) {
      for (let b = 0; b < 6; b++) {
        let s = 0;
        for (let i = 0; i < f; i++) {
          for (let j = 0; j < f; j++) s += x.data[(c * 16 + a * f + i) * 24 + b * f + j];
        }
        assert.ok(Math.abs(y.data[(c * 4 + a) * 6 + b] - s / 16) < 1e-6);
      }
    }
  }
  const up = await op.pseudoInverse!(y);
  for (let c = 0; c < 2; c++) {
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 24; j++) {
        const v = y.data[(c * 4 + Math.floor(i / f)) * 6 + Math.floor(j / f)];
        assert.equal(up.data[(c * 16 + i) * 24 + j], v);
      }
    }
  }
});

Deno.test("sr rejects sizes not divisible by the factor and images smaller than the kernel", async () => {
  await assert.rejects(() => make("sr:factor=4", [1, 3, 30, 48]), (e: Error) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.message, "sr: image 48×30 is not divisible by factor 4");
    return true;
  });
  await assert.rejects(
    () => make("sr:factor=4,filter=bicubic", [1, 3, 12, 32]),
    (e: Error) => e instanceof InputError && e.message.includes("smaller than the 16×16"),
  );
  await assert.rejects(() => make("sr:factor=1", [1, 3, 8, 8]), InputError);
  await assert.rejects(() => make("sr:factor=2.5", [1, 3, 10, 10]), InputError);
  await assert.rejects(() => make("sr:boundary=zero", [1, 3, 16, 16]), InputError);
  // The avgpool kernel is only f×f, so small images are fine.
  await make("sr:factor=4,filter=avgpool", [1, 3, 4, 8]);
});

Deno.test("pseudo-inverse: reproduces constants; equals f²·Aᵀy (circular everywhere, reflect inside)", async () => {
  const shape = [1, 1, 32, 40];
  for (const f of [2, 4]) {
    for (const boundary of ["circular", "reflect"]) {
      const op = await make(`sr:factor=${f},boundary=${boundary}`, shape);
      const m = [1, 1, 32 / f, 40 / f];
      const c = await op.pseudoInverse!(tensor(m, new Float32Array(m[2] * m[3]).fill(0.3)));
      assert.ok(maxAbsDiff(c.data, new Float32Array(32 * 40).fill(0.3)) < 1e-6);
      const y = random(m, 2);
      const p = await op.pseudoInverse!(y);
      const at = await op.adjoint!(y);
      let worst = 0;
      for (let i = 0; i < 32; i++) {
        for (let j = 0; j < 40; j++) {
          // Reflect: compare only pixels whose bicubic support stays inside the image.
          const inside = i >= 3 * f && i < 32 - 3 * f && j >= 3 * f && j < 40 - 3 * f;
          if (boundary === "reflect" && !inside) continue;
          worst = Math.max(worst, Math.abs(p.data[i * 40 + j] - f * f * at.data[i * 40 + j]));
        }
      }
      assert.ok(worst < 1e-5, `${boundary} ×${f}: ${worst}`);
    }
  }
});

Deno.test("circular bicubic closed-form prox matches CG at large γ (LATINO's regime)", async () => {
  const shape = [1, 2, 32, 48];
  const op = await make("sr:factor=4,boundary=circular", shape);
  const x = random(shape, 3), zt = random(shape, 4);
  const y = await op.forward(x);
  const { cgProxL2 } = await import("../core/linalg/cg.ts");
  for (const gamma of [1e2, 1e4]) {
    const u = await op.proxL2(zt, y, gamma);
    const ucg = await cgProxL2(op, zt, y, gamma, { maxIter: 20000, tol: 1e-12 });
    let d = 0, n = 0;
    for (let i = 0; i < u.data.length; i++) {
      d += (u.data[i] - ucg.data[i]) ** 2;
      n += ucg.data[i] ** 2;
    }
    assert.ok(Math.sqrt(d / n) < 1e-3, `γ=${gamma}: ${Math.sqrt(d / n)}`);
  }
});

interface Case {
  x: number[];
  h: number;
  w: number;
  f: number;
  mode: string;
}

/** deepinv's convention, computed independently with scipy.ndimage (one python3 call for all cases). */
async function scipyDownsample(cases: Case[]): Promise<number[][]> {
  // deepinv: filter flipped, even kernel padded (K/2 before, K/2 − 1 after), PyTorch 'reflect'
  // (= scipy 'mirror') or circular (= 'wrap'), valid correlation, then [::f, ::f]. In scipy terms:
  // a true convolution with origin −1 (scipy centres an even kernel one sample to the other side).
  const script = `
import sys, json, numpy as np, scipy.ndimage as nd
out = []
for d in json.load(sys.stdin):
    f = d["f"]
    x = np.array(d["x"], dtype=np.float64).reshape(d["h"], d["w"])
    t = np.abs(np.arange(-2 * f + 0.5, 2 * f, 1) / f); a = -0.5
    k = ((a + 2) * t**3 - (a + 3) * t**2 + 1) * (t <= 1) + (a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a) * (t > 1) * (t < 2)
    k = np.outer(k, k); k /= k.sum()
    out.append(nd.convolve(x, k, mode=d["mode"], origin=-1)[::f, ::f].ravel().tolist())
json.dump(out, sys.stdout)
`;
  const p = new Deno.Command("python3", { args: ["-c", script], stdin: "piped", stdout: "piped" })
    .spawn();
  const writer = p.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(cases)));
  await writer.close();
  const out = await p.output();
  assert.ok(out.success, "python3 with numpy/scipy is needed for this test");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("bicubic SR matches an independent scipy.ndimage implementation of deepinv's convention", async () => {
  const cases: Case[] = [], ours: Float32Array[] = [], labels: string[] = [];
  for (const [f, h, w] of [[2, 12, 16], [4, 20, 24], [3, 18, 12]]) {
    for (const [boundary, mode] of [["reflect", "mirror"], ["circular", "wrap"]]) {
      const shape = [1, 1, h, w];
      const x = random(shape, 10 + f);
      const op = await make(`sr:factor=${f},boundary=${boundary}`, shape);
      ours.push((await op.forward(x)).data);
      cases.push({ x: [...x.data], h, w, f, mode });
      labels.push(`×${f} ${boundary}`);
    }
  }
  const ref = await scipyDownsample(cases);
  ref.forEach((r, i) => {
    const err = maxAbsDiff(ours[i], r);
    assert.ok(err < 1e-6, `${labels[i]}: max |ours − scipy| = ${err}`);
  });
});
