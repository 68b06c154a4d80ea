/**
 * `deno task export-operator`, run as a subprocess through its deno.json task: the written model
 * (and its VJP model) reproduce the operator degrade/solve build from the same spec and seed; bad
 * input is one line and exit code 2, with nothing written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SessionPool } from "../core/backend/pool.ts";
import { createOperator } from "../core/registry.ts";
import { builtinRegistry } from "../mod.ts";
import { task } from "./subprocess.ts";

Deno.test("export-operator: the written model and its VJP model match the operator (same spec, seed)", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "A.onnx"), vjp = join(dir, "A_vjp.onnx");
  const spec = "inpaint:mask=random,p=0.5";
  const r = await task(
    "export-operator",
    "--operator",
    spec,
    "--size",
    "16x24",
    "--seed",
    "3",
    "--out",
    out,
    "--vjp",
    vjp,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const info = JSON.parse(r.stdout);
  assert.deepEqual(info.output.shape, [1, 3, 16, 24]);
  const op = await createOperator(builtinRegistry(), spec, [1, 3, 16, 24], 3);
  const x = {
    data: new Float32Array(3 * 16 * 24).map((_, i) => 0.1 + (i % 11) / 13),
    shape: [1, 3, 16, 24],
  };
  const g = {
    data: new Float32Array(3 * 16 * 24).map((_, i) => Math.sin(i)),
    shape: [1, 3, 16, 24],
  };
  const pool = new SessionPool({ threads: 1 });
  const fwd = await pool.session("A", { path: out }, { device: "cpu" });
  const bwd = await pool.session("A-vjp", { path: vjp }, { device: "cpu" });
  const y = (await fwd.run({ x })).y;
  const want = await op.forward(x);
  assert.ok(want.data.every((v, i) => Math.abs(v - y.data[i]) < 1e-6));
  const grad = (await bwd.run({ x, "y.cotangent": g }))["x.grad"];
  const wantGrad = await op.vjp(x, g);
  assert.ok(wantGrad.data.every((v, i) => Math.abs(v - grad.data[i]) < 1e-6));
  await pool.release();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("export-operator: bad input is one line, exit code 2, nothing written", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "A.onnx");
  for (
    const args of [
      ["--operator", "jpeg", "--size", "16x16", "--out", out],
      [
        "--operator",
        "blur:kernel=motion,size=5",
        "--size",
        "16x16",
        "--dtype",
        "float64",
        "--out",
        out,
      ],
      ["--operator", "blur", "--size", "16", "--out", join(dir, "A.png")],
      ["--operator", "blur:sigmaa=2", "--size", "16x16", "--out", out],
      ["--operator", "sr:factor=3", "--size", "16x16", "--out", out],
      ["--size", "16x16", "--out", out],
    ]
  ) {
    const r = await task("export-operator", ...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^error: /);
  }
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});
