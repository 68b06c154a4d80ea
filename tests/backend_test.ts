import assert from "node:assert/strict";
import { join } from "node:path";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { coreCount, SessionPool } from "../core/backend/pool.ts";
import { parseDevice, probeProvider, resolveDevice } from "../core/backend/device.ts";
import { InputError } from "../core/errors.ts";
import { externalize } from "./diffusers_fixtures.ts";

/** y = x·2 + t (t scalar float), k = Identity(int64 [batch]), n = Cast(int32 ids) to float. */
function mixedModel(): Uint8Array {
  const g = new GraphBuilder("mixed");
  const x = g.input("x", "float32", ["batch", 3]);
  const t = g.input("t", "float32", []);
  const k = g.input("k", "int64", ["batch"]);
  const ids = g.input("ids", "int32", [1, 4]);
  g.output(g.op("Add", [g.op("Mul", [x, g.constF("two", [1], [2])]), t]), "y", "float32", [
    "batch",
    3,
  ]);
  g.output(g.op("Identity", [k]), "k_out", "int64", ["batch"]);
  g.output(g.op("Cast", [ids], { to: 1 }), "ids_f", "float32", [1, 4]);
  return g.toBytes();
}

function scaleModel(s: number): Uint8Array {
  const g = new GraphBuilder("scale");
  const x = g.input("x", "float32", [2]);
  g.output(g.op("Mul", [x, g.constF("s", [2], [s, s])]), "y", "float32", [2]);
  return g.toBytes();
}

Deno.test("backend: device requests resolve, report and refuse honestly", async () => {
  assert.equal(parseDevice("auto"), "auto");
  assert.throws(() => parseDevice("tpu"), InputError);
  await assert.rejects(
    () => resolveDevice("tpu"),
    /device "tpu": expected one of auto, cpu, cuda, webgpu/,
  );
  const cpu = await resolveDevice("cpu");
  assert.equal(cpu.provider, "cpu");
  const auto = await resolveDevice("auto");
  assert.ok(["cpu", "cuda", "webgpu"].includes(auto.provider));
  assert.match(auto.report, /^device auto → (cpu|cuda|webgpu)/);
  if (auto.provider === "cpu") {
    // Both GPU providers were tried (or pre-checked) and the report says why each was skipped.
    assert.match(auto.report, /cuda skipped: .+; webgpu skipped: .+/);
  }
  for (const ep of ["cuda", "webgpu"] as const) {
    const probe = await probeProvider(ep);
    if (probe.available) {
      assert.equal((await resolveDevice(ep)).provider, ep);
    } else {
      assert.ok(probe.reason.length > 0);
      await assert.rejects(
        () => resolveDevice(ep),
        (e: unknown) =>
          e instanceof InputError && e.message.includes(`device "${ep}" is not available`) &&
          e.message.includes(probe.reason),
      );
    }
  }
  // Probes are cached: the same promise result comes back.
  assert.equal(await probeProvider("cuda"), await probeProvider("cuda"));
});

Deno.test("backend: session options follow the brief", async () => {
  const pool = new SessionPool();
  const o = pool.sessionOptions(await resolveDevice("cpu"));
  assert.equal(o.graphOptimizationLevel, "all");
  assert.equal(o.intraOpNumThreads, coreCount());
  assert.deepEqual(o.extra, { session: { intra_op: { allow_spinning: "0" } } });
  assert.deepEqual(o.executionProviders, ["cpu"]);
  assert.ok(coreCount() >= 1);
  assert.equal(o.enableMemPattern, true);
  // gradient sessions: weights once, no memory pattern (it holds the activations twice)
  const g = pool.sessionOptions(await resolveDevice("cpu"), false, false);
  assert.equal(g.enableMemPattern, false);
  assert.deepEqual(g.extra, {
    session: { intra_op: { allow_spinning: "0" }, disable_prepacking: "1" },
  });
});

Deno.test("backend: a model asked for as a forward and as a gradient session loads twice (memory pattern on / off), an explicit memPattern wins", async () => {
  const pool = new SessionPool({ threads: 1 });
  const src = { key: "mixed-pattern", bytes: mixedModel() };
  await pool.session("a", src, { device: "cpu" });
  await pool.session("b", src, { device: "cpu" });
  assert.equal(pool.size, 1);
  await pool.session("c", src, { device: "cpu", kind: "vjp" });
  assert.equal(pool.size, 2);
  await pool.session("d", src, { device: "cpu", memPattern: false });
  assert.equal(pool.size, 2); // the same session as the "vjp" request
  await pool.session("e", src, { device: "cpu", kind: "vjp", memPattern: true });
  assert.equal(pool.size, 2); // the same as the forward one
  await pool.release();
});

Deno.test("backend: metadata drives feeds (float scalar, int64 from numbers, int32), zero-copy float32 in", async () => {
  const pool = new SessionPool();
  const s = await pool.session("mixed", { key: "mixed", bytes: mixedModel() }, { device: "cpu" });
  assert.deepEqual(s.inputNames, ["x", "t", "k", "ids"]);
  assert.deepEqual(s.input("t"), { name: "t", type: "float32", shape: [] });
  assert.deepEqual(s.input("k"), { name: "k", type: "int64", shape: ["batch"] });
  assert.equal(s.input("ids")!.type, "int32");
  const x = new Float32Array([1, 2, 3, 4, 5, 6]);
  const out = await s.run({
    x: { data: x, shape: [2, 3] },
    t: { data: [0.5], shape: [] },
    k: { data: [7, 9], shape: [2] },
    ids: { data: [49406, 320, 49407, 0], shape: [1, 4] },
  });
  assert.deepEqual(Array.from(out.y.data), [2.5, 4.5, 6.5, 8.5, 10.5, 12.5]);
  assert.deepEqual(out.y.shape, [2, 3]);
  assert.ok(out.y.data instanceof Float32Array);
  assert.deepEqual(Array.from(out.k_out.data), [7, 9]);
  assert.deepEqual(Array.from(out.ids_f.data), [49406, 320, 49407, 0]);
  // Asking for one output only.
  const only = await s.run({
    x: { data: x, shape: [2, 3] },
    t: { data: [0], shape: [] },
    k: { data: new BigInt64Array([1n, 2n]), shape: [2] },
    ids: { data: new Int32Array(4), shape: [1, 4] },
  }, { outputs: ["y"] });
  assert.deepEqual(Object.keys(only), ["y"]);
  assert.equal(s.calls, 2);
  assert.ok(s.ms > 0);
  await pool.release();
});

Deno.test("backend: bad feeds give clear errors", async () => {
  const pool = new SessionPool();
  const s = await pool.session("mixed", { key: "mixed", bytes: mixedModel() }, { device: "cpu" });
  const good = {
    x: { data: new Float32Array(3), shape: [1, 3] },
    t: { data: [0], shape: [] },
    k: { data: [1], shape: [1] },
    ids: { data: [1, 2, 3, 4], shape: [1, 4] },
  };
  await assert.rejects(
    () => s.run({ x: good.x, t: good.t, k: good.k }),
    /model "mixed" input "ids" was not fed/,
  );
  await assert.rejects(
    () => s.run({ ...good, x: { data: new Float32Array(4), shape: [1, 4] } }),
    (e: unknown) =>
      e instanceof InputError &&
      /input "x" has shape \[1,4\], the model expects \[batch,3\]/.test(e.message),
  );
  await assert.rejects(
    () => s.run({ ...good, k: { data: [1.5], shape: [1] } }),
    /int64 input needs integers/,
  );
  await assert.rejects(
    () => s.run({ ...good, extra: { data: [1], shape: [1] } }),
    /has no input "extra"/,
  );
  await assert.rejects(
    () => s.run({ ...good, x: { data: new Float32Array(2), shape: [1, 3] } }),
    /2 values for shape \[1,3\]/,
  );
  assert.equal(s.calls, 0);
  // fp16 inputs are refused with a one-line InputError (fp32 at every model boundary).
  const g = new GraphBuilder("half");
  const h = g.input("h", "float16", [2]);
  g.output(g.op("Cast", [h], { to: 1 }), "y", "float32", [2]);
  const half = await pool.session("half", { key: "half", bytes: g.toBytes() }, { device: "cpu" });
  await assert.rejects(
    () => half.run({ h: { data: [1, 2], shape: [2] } }),
    (e: unknown) => e instanceof InputError && /float16; only float32 model inputs/.test(e.message),
  );
  await pool.release();
});

Deno.test("backend: one session per model, shared by handles; per-name statistics; release", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "scale.onnx");
    await Deno.writeFile(path, scaleModel(3));
    const pool = new SessionPool();
    const a = await pool.session("first", { path }, { device: "cpu" });
    const b = await pool.session("second", { path: join(dir, ".", "scale.onnx") }, {
      device: "cpu",
    });
    const c = await pool.session("grad", { key: "vjp:scale", bytes: scaleModel(5) }, {
      device: "cpu",
    });
    const c2 = await pool.session("grad", { key: "vjp:scale", bytes: new Uint8Array(0) }, {
      device: "cpu",
    }); // same key → the loaded model is reused, the bytes are not even looked at
    assert.equal(pool.size, 2);
    assert.equal(a.key, b.key);
    const feed = { x: { data: [1, 2], shape: [2] } };
    assert.deepEqual(Array.from((await a.run(feed)).y.data), [3, 6]);
    await b.run(feed);
    await b.run(feed);
    assert.deepEqual(Array.from((await c2.run(feed)).y.data), [5, 10]);
    await c.run(feed);
    assert.equal(a.calls, 1);
    assert.equal(b.calls, 2);
    const st = pool.stats();
    assert.deepEqual(st.calls, { first: 1, second: 2, grad: 2 });
    assert.ok(st.ms.first > 0 && st.ms.second > 0);
    await pool.release();
    assert.equal(pool.size, 0);
    await assert.rejects(() => a.run(feed), /was released/);
    // The pool can be used again after release.
    const again = await pool.session("first", { path }, { device: "cpu" });
    assert.deepEqual(Array.from((await again.run(feed)).y.data), [3, 6]);
    // The synchronous release used on process unload.
    pool.releaseNow();
    assert.equal(pool.size, 0);
    await assert.rejects(() => again.run(feed), /was released/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backend: external data from a path and from memory; load errors name the model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { onnx, data } = externalize(scaleModel(4));
    await Deno.writeFile(join(dir, "model.onnx"), onnx);
    await Deno.writeFile(join(dir, "model.onnx_data"), data);
    const pool = new SessionPool();
    const feed = { x: { data: [1, -1], shape: [2] } };
    const p = await pool.session("ext", { path: join(dir, "model.onnx") }, { device: "cpu" });
    assert.deepEqual(Array.from((await p.run(feed)).y.data), [4, -4]);
    const m = await pool.session("ext-mem", {
      key: "mem:ext",
      bytes: onnx,
      externalData: [{ path: "model.onnx_data", data }],
    }, { device: "cpu" });
    assert.deepEqual(Array.from((await m.run(feed)).y.data), [4, -4]);
    await assert.rejects(
      () =>
        pool.session("bad", { key: "bad", bytes: new Uint8Array([1, 2, 3]), label: "bad.onnx" }),
      (e: unknown) =>
        e instanceof InputError && e.message.startsWith("bad.onnx: ONNX Runtime cannot load"),
    );
    await assert.rejects(() => pool.session("nokey", { bytes: onnx }), /needs a key/);
    await pool.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
