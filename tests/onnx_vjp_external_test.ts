/**
 * External data, the per-process VJP model cache and the `deno task vjp` command: the transformed
 * model references the same data file (not copied), ORT loads it from a path, results match the
 * inline-weights model.
 */
import { SMALL_SD_BLOCK } from "./onnx_vjp_harness.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { decodeModel, encodeModel, type IModelProto } from "../core/onnx/proto.ts";
import { externalLocations } from "../core/onnx/external.ts";
import { vjpModel, vjpTransform } from "../core/onnx/vjp.ts";
import { sdBlockGraph } from "../core/onnx/vjp/fixtures.ts";
import { run as vjpCli } from "../cli/vjp.ts";
import { InputError } from "../core/errors.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CFG = { ...SMALL_SD_BLOCK };

/** Move initializers larger than 256 bytes into `dir/weights.bin`; write `dir/model.onnx`. */
async function saveWithExternalData(
  bytes: Uint8Array,
  dir: string,
): Promise<{ path: string; dataBytes: number }> {
  const m = decodeModel(bytes) as IModelProto;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of m.graph!.initializer!) {
    const raw = t.rawData;
    if (!raw || raw.length <= 256) continue;
    chunks.push(raw.slice());
    t.externalData = [
      { key: "location", value: "weights.bin" },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    t.dataLocation = 1;
    t.rawData = undefined;
    offset += raw.length;
  }
  const data = new Uint8Array(offset);
  let o = 0;
  for (const c of chunks) {
    data.set(c, o);
    o += c.length;
  }
  await Deno.writeFile(join(dir, "weights.bin"), data);
  const path = join(dir, "model.onnx");
  await Deno.writeFile(path, encodeModel(m));
  return { path, dataBytes: offset };
}

function feeds(extra: Record<string, ort.Tensor> = {}) {
  const n = 4 * 8 * 8;
  return {
    sample: new ort.Tensor("float32", Float32Array.from({ length: n }, (_, i) => Math.sin(i)), [
      1,
      4,
      8,
      8,
    ]),
    timestep: new ort.Tensor("float32", Float32Array.from([500]), [1]),
    encoder_hidden_states: new ort.Tensor(
      "float32",
      Float32Array.from({ length: 60 }, (_, i) => Math.cos(i)),
      [1, 5, 12],
    ),
    "out_sample.cotangent": new ort.Tensor(
      "float32",
      Float32Array.from({ length: n }, (_, i) => Math.cos(3 * i)),
      [1, 4, 8, 8],
    ),
    ...extra,
  };
}

async function gradsOf(src: Uint8Array | string) {
  const s = await ort.InferenceSession.create(src as string);
  const r = await s.run(feeds());
  await s.release();
  return {
    x: Array.from(r["sample.grad"].data as Float32Array),
    c: Array.from(r["encoder_hidden_states.grad"].data as Float32Array),
  };
}

Deno.test("external data: the VJP model references the same data file (same dir and hard-linked dir), loads from a path, matches inline weights", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vjp_ext_" });
  try {
    const inline = sdBlockGraph(CFG);
    const { path, dataBytes } = await saveWithExternalData(inline, dir);
    const dataStat = await Deno.stat(join(dir, "weights.bin"));
    const g = await vjpTransform(path, ["out_sample"], ["sample", "encoder_hidden_states"]);
    assert.equal(g.externalData, true);
    assert.deepEqual(externalLocations(g.model), ["weights.bin"]);
    const out = join(dir, "model.vjp.onnx");
    await g.write(out);
    // every external initializer of the source is still external, with the same reference
    const src = decodeModel(await Deno.readFile(path));
    const written = decodeModel(await Deno.readFile(out));
    const refs = (m: typeof src) =>
      new Map(
        m.graph!.initializer!.filter((t) => t.dataLocation === 1).map((t) => [
          t.name,
          JSON.stringify(t.externalData!.map((e) => [e.key, e.value])),
        ]),
      );
    assert.deepEqual(refs(written), refs(src));
    assert.ok(refs(src).size > 10 && dataBytes > 50_000);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(files, ["model.onnx", "model.vjp.onnx", "weights.bin"], "no data copy");
    const after = await Deno.stat(join(dir, "weights.bin"));
    assert.equal(after.size, dataStat.size);
    assert.equal(after.mtime?.getTime(), dataStat.mtime?.getTime(), "data file untouched");

    const ref = await gradsOf(
      (await vjpTransform(inline, ["out_sample"], ["sample", "encoder_hidden_states"])).bytes(),
    );
    const ext = await gradsOf(out);
    assert.deepEqual(ext.x, ref.x);
    assert.deepEqual(ext.c, ref.c);

    // another folder on the same file system: hard links, not copies
    const other = join(dir, "elsewhere");
    await g.write(join(other, "grad.onnx"));
    const a = await Deno.stat(join(dir, "weights.bin"));
    const b = await Deno.stat(join(other, "weights.bin"));
    assert.equal(a.ino, b.ino, "same inode: referenced, not copied");
    assert.ok((a.nlink ?? 0) >= 2);
    const ext2 = await gradsOf(join(other, "grad.onnx"));
    assert.deepEqual(ext2.x, ref.x);

    // a model given as bytes needs its folder for external data; with baseDir it works (probe too)
    const bytes = await Deno.readFile(path);
    const g2 = await vjpTransform(bytes, ["out_sample"], ["sample"], {
      baseDir: dir,
      shapes: "probe",
    });
    assert.equal(g2.stats.shapeSource, "probe");
    await g2.write(join(dir, "probe.vjp.onnx"));
    const s = await ort.InferenceSession.create(join(dir, "probe.vjp.onnx"));
    const r = await s.run(feeds());
    assert.deepEqual(Array.from(r["sample.grad"].data as Float32Array), ref.x);
    await s.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vjpModel: built once per process per (model, outputs, inputs); bytes without external data, a path with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vjp_cache_" });
  try {
    const inline = sdBlockGraph(CFG);
    const p1 = vjpModel("sd-block-inline", inline, ["out_sample"], ["sample"]);
    const p2 = vjpModel("sd-block-inline", inline, ["out_sample"], ["sample"]);
    assert.equal(p1, p2, "same promise: transformed once");
    const b = await p1;
    assert.ok(b instanceof Uint8Array);
    const p3 = vjpModel("sd-block-inline", inline, ["out_sample"], ["encoder_hidden_states"]);
    assert.notEqual(p1, p3);
    const { path } = await saveWithExternalData(inline, dir);
    const ext = await vjpModel(`file:${path}`, path, ["out_sample"], [
      "sample",
      "encoder_hidden_states",
    ]);
    assert.equal(typeof ext, "string");
    const got = await gradsOf(ext as string);
    const ref = await gradsOf(
      (await vjpTransform(inline, ["out_sample"], ["sample", "encoder_hidden_states"])).bytes(),
    );
    assert.deepEqual(got.x, ref.x);
    assert.equal(
      await vjpModel(`file:${path}`, path, ["out_sample"], ["sample", "encoder_hidden_states"]),
      ext,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli vjp: writes OUT with o.cotangent inputs and x.grad outputs; input errors are InputErrors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vjp_cli_" });
  try {
    const { path } = await saveWithExternalData(sdBlockGraph(CFG), dir);
    const out = join(dir, "grad.onnx");
    const log = console.log;
    console.log = () => {};
    try {
      assert.equal(
        await vjpCli([
          "--model",
          path,
          "--of",
          "out_sample",
          "--wrt",
          "sample,encoder_hidden_states",
          "--out",
          out,
        ]),
        0,
      );
    } finally {
      console.log = log;
    }
    const m = decodeModel(await Deno.readFile(out));
    assert.deepEqual(m.graph!.input!.map((i) => i.name), [
      "sample",
      "timestep",
      "encoder_hidden_states",
      "out_sample.cotangent",
    ]);
    assert.deepEqual(m.graph!.output!.map((o) => o.name), [
      "out_sample",
      "sample.grad",
      "encoder_hidden_states.grad",
    ]);
    await assert.rejects(
      () => vjpCli(["--model", path, "--of", "out_sample", "--wrt", "sample", "--out", path]),
      /refusing to overwrite/,
    );
    await assert.rejects(
      () => vjpCli(["--model", path, "--of", "nope", "--wrt", "sample", "--out", out]),
      InputError,
    );
    await assert.rejects(
      () => vjpCli(["--model", join(dir, "missing.onnx"), "--of", "a", "--wrt", "b", "--out", out]),
      /cannot read/,
    );
    await assert.rejects(
      () => vjpCli(["--model", path, "--of", "out_sample", "--out", out]),
      /--wrt is required/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task vjp: exit code 0 and one-line error with exit code 2", async () => {
  const DENO =
    Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state === "granted"
      ? Deno.execPath()
      : "deno";
  const dir = await Deno.makeTempDir({ prefix: "vjp_task_" });
  try {
    const model = join(dir, "m.onnx");
    await Deno.writeFile(model, sdBlockGraph(CFG));
    const task = (...args: string[]) =>
      new Deno.Command(DENO, {
        args: ["task", "-q", "vjp", ...args],
        cwd: ROOT,
        stdin: "null",
        env: { NO_COLOR: "1" },
      }).output();
    const ok = await task(
      "--model",
      model,
      "--of",
      "out_sample",
      "--wrt",
      "sample",
      "--out",
      join(dir, "g.onnx"),
    );
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(new TextDecoder().decode(ok.stdout), /sample\.grad/);
    const bad = await task(
      "--model",
      model,
      "--of",
      "out_sample",
      "--wrt",
      "timestepx",
      "--out",
      join(dir, "h.onnx"),
    );
    assert.equal(bad.code, 2);
    const err = new TextDecoder().decode(bad.stderr).trimEnd().split("\n");
    assert.equal(err.length, 1);
    assert.match(err[0], /^error: --wrt 'timestepx' is not a graph input/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vjpSource: the VJP model runs through the process session pool like any model", async () => {
  const { SessionPool } = await import("../core/backend/pool.ts");
  const { vjpSource } = await import("../core/onnx/vjp.ts");
  const dir = await Deno.makeTempDir({ prefix: "vjp_pool_" });
  const pool = new SessionPool({ threads: 1 });
  try {
    const inline = sdBlockGraph(CFG);
    const { path } = await saveWithExternalData(inline, dir);
    const src = await vjpSource({ path, label: "sd-block" }, ["out_sample"], ["sample"]);
    assert.ok(src.path && src.key.includes("#vjp(out_sample→sample)"));
    const again = await vjpSource({ path }, ["out_sample"], ["sample"]);
    assert.equal(again.path, src.path, "cached per process");
    const s = await pool.session("unet-vjp", src, { device: "cpu" });
    const f = feeds();
    const toFeed = (t: ort.Tensor) => ({ data: t.data as Float32Array, shape: t.dims as number[] });
    const r = await s.run({
      sample: toFeed(f.sample),
      timestep: toFeed(f.timestep),
      encoder_hidden_states: toFeed(f.encoder_hidden_states),
      "out_sample.cotangent": toFeed(f["out_sample.cotangent"]),
    });
    const ref = await gradsOf(
      (await vjpTransform(inline, ["out_sample"], ["sample", "encoder_hidden_states"])).bytes(),
    );
    const got = Array.from(r["sample.grad"].data);
    for (let i = 0; i < got.length; i++) {
      assert.ok(Math.abs(got[i] - ref.x[i]) < 1e-4 * (1 + Math.abs(ref.x[i])));
    }
  } finally {
    await pool.release();
    await Deno.remove(dir, { recursive: true });
  }
});
