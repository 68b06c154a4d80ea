/**
 * Operators as ONNX graphs (`exportOnnx`): the exported forward equals the TypeScript forward on
 * kodim01–12 crops (max abs error < 1e-5 on [0,1] images), and the contract suite passes through
 * the exported graph (its VJP from the transform vs finite differences, adjointness, prox
 * optimality against the exported map).
 */
import assert from "node:assert/strict";
import { createOperator, PluginRegistry } from "../core/registry.ts";
import { testOperator } from "../core/operator_suite.ts";
import { readTensor } from "../core/io/image.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { offDeviceNodes } from "../core/onnx/device_ops.ts";
import { decodeModel } from "../core/onnx/proto.ts";
import type { Tensor } from "../core/tensor.ts";
import { operatorPlugins } from "../operators/mod.ts";
import { blurPlugin } from "../operators/blur.ts";
import { srPlugin } from "../operators/sr.ts";
import { inpaintPlugin } from "../operators/inpaint.ts";

const KODAK = new URL("../../shared/data/kodak/", import.meta.url);
const registry = new PluginRegistry();
for (const p of operatorPlugins) registry.register(p);

/** A C×h×w crop of an image at (top, left). */
function crop(x: Tensor, top: number, left: number, h: number, w: number): Tensor {
  const [, C, H, W] = x.shape;
  const out = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < h; i++) {
      const src = c * H * W + (top + i) * W + left;
      out.set(x.data.subarray(src, src + w), c * h * w + i * w);
    }
  }
  return { data: out, shape: [1, C, h, w] };
}

const SPECS = [
  "blur:sigma=3",
  "blur:sigma=2,boundary=symmetric",
  "blur:sigma=1.5,boundary=reflect",
  "blur:sigma_x=2,sigma_y=1,angle=30,boundary=reflect",
  "blur:kernel=motion,size=21,boundary=circular",
  "blur:kernel=motion,size=15,boundary=reflect",
  "sr:factor=4",
  "sr:factor=2,boundary=reflect",
  "sr:factor=4,filter=avgpool",
  "inpaint:mask=box",
  "inpaint:mask=random,p=0.7",
];

Deno.test("operator ONNX export: the exported graph equals the TypeScript forward on kodim01–12 crops (1e-5)", async () => {
  const pool = new SessionPool({ threads: 2 });
  const [h, w] = [96, 128];
  const images: Tensor[] = [];
  for (let k = 1; k <= 12; k++) {
    const full = await readTensor(
      new URL(`kodim${String(k).padStart(2, "0")}.png`, KODAK).pathname,
    );
    images.push(crop(full, 40 + 13 * k, 60 + 17 * k, h, w));
  }
  let worst = 0;
  for (const spec of SPECS) {
    const op = await createOperator(registry, spec, [1, 3, h, w], 0);
    const m = op.exportOnnx!();
    assert.deepEqual(offDeviceNodes(decodeModel(m.bytes)), [], `${spec}: ops without GPU kernels`);
    const s = await pool.session(spec, { key: spec, bytes: m.bytes }, { device: "cpu" });
    for (const x of images) {
      const want = await op.forward(x);
      const got = (await s.run({ x }))[m.output];
      assert.deepEqual(got.shape, want.shape);
      let err = 0;
      for (let i = 0; i < want.data.length; i++) {
        err = Math.max(err, Math.abs(got.data[i] - want.data[i]));
      }
      worst = Math.max(worst, err);
      assert.ok(err < 1e-5, `${spec}: max |ONNX − TS| = ${err.toExponential(2)}`);
    }
  }
  assert.ok(worst > 0, "the comparison compared something");
  await pool.release();
});

Deno.test("operator ONNX export: float64 graphs (dense axis matrices) equal the TypeScript forward", async () => {
  const pool = new SessionPool({ threads: 2 });
  const shape = [1, 3, 24, 32];
  const x: Tensor = {
    data: new Float32Array(3 * 24 * 32).map((_, i) => ((i * 37) % 101) / 101),
    shape,
  };
  for (
    const spec of [
      "blur:sigma=2",
      "blur:sigma=1,boundary=symmetric",
      "sr:factor=4,boundary=reflect",
      "sr:factor=2,filter=avgpool",
      "inpaint:mask=box",
    ]
  ) {
    const op = await createOperator(registry, spec, shape, 0);
    const m = op.exportOnnx!({ dtype: "float64" });
    assert.equal(m.dtype, "float64");
    const s = await pool.session(`${spec}/f64`, { key: `${spec}/f64`, bytes: m.bytes }, {
      device: "cpu",
    });
    const want = await op.forward(x);
    const got = (await s.run({ x }))[m.output];
    let err = 0;
    for (let i = 0; i < want.data.length; i++) {
      err = Math.max(err, Math.abs(got.data[i] - want.data[i]));
    }
    assert.ok(err < 1e-6, `${spec} float64: max |ONNX − TS| = ${err.toExponential(2)}`);
  }
  const motion = await createOperator(registry, "blur:kernel=motion,size=9", shape, 0);
  assert.throws(() => motion.exportOnnx!({ dtype: "float64" }), /separable/);
  await pool.release();
});

for (
  const [plugin, options] of [
    [blurPlugin, { sigma: 2 }],
    [blurPlugin, { sigma: 1.5, boundary: "symmetric" }],
    [blurPlugin, { kernel: "motion", size: 9, boundary: "reflect" }],
    [srPlugin, { factor: 4 }],
    [srPlugin, { factor: 2, boundary: "reflect" }],
    [srPlugin, { factor: 4, filter: "avgpool" }],
    [inpaintPlugin, { mask: "random", p: 0.6 }],
  ] as const
) {
  Deno.test(`operator ONNX export: contract suite through the exported graph, ${plugin.name} ${JSON.stringify(options)}`, async () => {
    await testOperator(plugin, options as Record<string, string | number>, { through: "onnx" });
  });
}
