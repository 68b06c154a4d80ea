/**
 * Weights once: a model with a ≥ 50 MB external initializer, its VJP model and a whole-loss graph
 * built on it are pooled together, and the disk use of the folders involved grows by < 1 MB — the
 * derived models reference the same weight file (hard links: the same inode), never a copy.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { MEM_M, MEM_N, writeBigModel } from "../cli/bench_loss.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { vjpSource } from "../core/onnx/vjp.ts";
import { LossGraphBuilder } from "../core/loss/builder.ts";

/** Bytes allocated on disk by the files under `dirs`, each inode counted once. */
function diskUse(dirs: string[]): number {
  const seen = new Set<string>();
  let total = 0;
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) walk(p);
      else if (e.isFile) {
        const s = Deno.statSync(p);
        const id = `${s.dev}:${s.ino}`;
        if (seen.has(id)) continue;
        seen.add(id);
        total += (s.blocks ?? Math.ceil(s.size / 512)) * 512;
      }
    }
  };
  for (const d of dirs) walk(d);
  return total;
}

Deno.test("weights once: a 52 MB external initializer, its VJP model and a whole-loss graph add < 1 MB on disk", async () => {
  const dir = await Deno.makeTempDir({ prefix: "weights-once-" });
  const N = MEM_N, M = MEM_M;
  const path = await writeBigModel(dir);
  const before = diskUse([dir]);
  assert.ok(before >= 50e6, `the model folder holds ${before} bytes`);

  const pool = new SessionPool({ threads: 2 });
  const feeds = { x: { data: new Float32Array(N).fill(0.01), shape: [1, N] } };
  const fwd = await pool.session("big", { path }, { device: "cpu" });
  const y = (await fwd.run(feeds)).y;
  const vs = await vjpSource({ path }, ["y"], ["x"]);
  assert.ok(vs.path, "a model with external data is pooled from a file");
  const vjp = await pool.session("big-vjp", vs, { device: "cpu" });
  const gx = (await vjp.run({
    ...feeds,
    "y.cotangent": { data: new Float32Array(M).fill(1), shape: [1, M] },
  }))["x.grad"];
  assert.equal(gx.data.length, N);

  const b = new LossGraphBuilder("big-loss");
  const xin = b.input("x", [1, N]);
  const out = (await b.network("big", { path }, { x: xin })).y;
  b.loss(b.norm(b.sub(out, b.input("target", [1, M])), { squared: true }));
  const lg = await b.build({ key: "weights-once/big-loss", wrt: ["x"], pool, device: "cpu" });
  const r = await lg.lossAndGrad({
    ...feeds,
    target: { data: new Float32Array(M), shape: [1, M] },
  });
  let ss = 0;
  for (const v of y.data) ss += v * v;
  assert.ok(Math.abs(r.value - ss) / ss < 1e-5, `loss ${r.value} vs ‖y‖² ${ss}`);

  // the per-process cache folder holds the VJP model and the loss graph's models (links inside)
  const after = diskUse([dir, dirname(dirname(vs.path!))]);
  const grown = after - before;
  assert.ok(grown < 1e6, `disk use grew by ${(grown / 1e6).toFixed(2)} MB`);
  assert.ok(
    (Deno.statSync(join(dir, "model.onnx_data")).nlink ?? 0) >= 3,
    "VJP and loss models link the data",
  );
  await pool.release();
  await Deno.remove(dir, { recursive: true });
});
