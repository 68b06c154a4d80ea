/**
 * The `degrade` and `metrics` commands, run as subprocesses through their deno.json tasks (so the
 * tasks' permission sets are exercised too): outputs, determinism, exit codes, one-line errors, and
 * that a failing run writes no file.
 *
 * The subprocess is `deno task -q …`, spawned by command name: the test task grants
 * `--allow-run=python3,deno`, and `deno` on PATH is the running binary (npx puts it there).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  builtinRegistry,
  createOperator,
  InputError,
  measure,
  PluginRegistry,
  readNpy,
  streams,
  testScene,
  writeNpy,
} from "../mod.ts";
import { gainPlugin } from "../examples/gain_plugin.ts";
import { percentile, timeIt } from "../cli/bench_util.ts";
import { classifyError, parseCli } from "../cli/common.ts";
import { ROOT, task, type TaskResult } from "./subprocess.ts";
import { pipelineFiles, writeFolder } from "./diffusers_fixtures.ts";

const GAIN = join(ROOT, "examples", "gain_plugin.ts");

type Result = TaskResult;

/** Expect exit code 2, exactly one stderr line `error: …` matching `pattern`, and no files in `dir`. */
function expectInputError(r: Result, pattern: RegExp, dir?: string, keep: string[] = []): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one stderr line, got: ${r.stderr}`);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], pattern);
  if (dir) {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => !keep.includes(n));
    assert.deepEqual(names, [], "no output (or temporary) file written");
  }
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const builtins = builtinRegistry();
const hasOperator = (name: string) => builtins.list("operator").some((p) => p.name === name);

Deno.test("degrade: --help exits 0", async () => {
  const r = await task("degrade", "--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: deno task degrade/);
});

Deno.test("degrade: y = A(x) + σ n with the seed's streams, deterministic; PNG = quantised .npy", async () => {
  await withTempDir(async (dir) => {
    const common = ["--plugin", GAIN, "--operator", "gain:strength=0.6", "--size", "24x32"];
    const r1 = await task(
      "degrade",
      ...common,
      "--noise",
      "0.05",
      "--seed",
      "3",
      "--out",
      join(dir, "y.npy"),
    );
    assert.equal(r1.code, 0, r1.stderr);
    assert.deepEqual(JSON.parse(r1.stdout).outputShape, [1, 3, 24, 32]);
    const y = await readNpy(join(dir, "y.npy"));

    // The same run in-process: operator stream and measurement-noise stream of seed 3.
    const x = testScene(24, 32);
    const op = await createOperator(
      new PluginRegistry().register(gainPlugin),
      "gain:strength=0.6",
      x.shape,
      3,
    );
    const expected = await measure(op, x, 0.05, streams(3).get("measurement-noise"));
    assert.deepEqual(y.data, expected.data);

    // Same arguments → identical bytes; another seed → another y.
    const r2 = await task(
      "degrade",
      ...common,
      "--noise",
      "0.05",
      "--seed",
      "3",
      "--out",
      join(dir, "y2.npy"),
    );
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(
      await Deno.readFile(join(dir, "y2.npy")),
      await Deno.readFile(join(dir, "y.npy")),
    );
    const r3 = await task(
      "degrade",
      ...common,
      "--noise",
      "0.05",
      "--seed",
      "4",
      "--out",
      join(dir, "y3.npy"),
    );
    assert.equal(r3.code, 0, r3.stderr);
    assert.notDeepEqual((await readNpy(join(dir, "y3.npy"))).data, y.data);

    // PNG output: clamp and round of the same y.
    const r4 = await task(
      "degrade",
      ...common,
      "--noise",
      "0.05",
      "--seed",
      "3",
      "--out",
      join(dir, "y.png"),
    );
    assert.equal(r4.code, 0, r4.stderr);
    const m = await task("metrics", join(dir, "y.npy"), join(dir, "y.png"));
    assert.equal(m.code, 0, m.stderr);
    const { psnr, ssim } = JSON.parse(m.stdout);
    // Clamping the noise tails and 8-bit rounding (error ≤ 1/510) only: PSNR well above 40 dB.
    assert.ok(psnr > 40 && ssim > 0.99, m.stdout);
    const same = await task("metrics", join(dir, "y.npy"), join(dir, "y2.npy"));
    assert.deepEqual(JSON.parse(same.stdout), { psnr: null, ssim: 1 });
  });
});

Deno.test("degrade: bad input exits 2 with one line and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, "out");
    await Deno.mkdir(out);
    const y = join(out, "y.png");
    const g = ["--plugin", GAIN];
    expectInputError(
      await task(
        "degrade",
        ...g,
        "--operator",
        "gain",
        "--input",
        join(dir, "missing.png"),
        "--out",
        y,
      ),
      /missing\.png: no such file/,
      out,
    );
    const junk = join(dir, "junk.png");
    await Deno.writeTextFile(junk, "this is not a PNG");
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--input", junk, "--out", y),
      /junk\.png: not a readable image/,
      out,
    );
    expectInputError(
      await task("degrade", "--operator", "nope:x=1", "--out", y),
      /unknown operator "nope"/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain:bogus=1", "--out", y),
      /operator "gain": .*bogus/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--out", y, "--bogus"),
      /unknown option --bogus/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--noise", "abc", "--out", y),
      /--noise "abc": expected a number/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--noise=-1", "--out", y),
      /--noise -1: must be ≥ 0/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--noise", "-1", "--out", y),
      /option --noise: a value starting with "-" must be written --noise=VALUE/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--out", join(out, "y.bmp")),
      /unsupported extension "\.bmp"/,
      out,
    );
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--out", join(out, "y.jpg")),
      /only for the jpeg operator/,
      out,
    );
    // Image smaller than the operator allows (the gain field needs 2×2).
    const tiny = join(dir, "tiny.npy");
    await writeNpy(tiny, { data: new Float32Array([0.5, 0.5, 0.5]), shape: [1, 3, 1, 1] });
    expectInputError(
      await task("degrade", ...g, "--operator", "gain", "--input", tiny, "--out", y),
      /too small/,
      out,
    );
    expectInputError(await task("degrade", "--out", y), /--operator is required/, out);
    expectInputError(
      await task(
        "degrade",
        ...g,
        "--operator",
        "gain",
        "--plugin",
        join(dir, "nowhere.ts"),
        "--out",
        y,
      ),
      /--plugin .*nowhere\.ts: cannot load module/,
      out,
    );
    expectInputError(
      await task(
        "degrade",
        "--plugin",
        "https://example.invalid/p.ts",
        "--operator",
        "gain",
        "--out",
        y,
      ),
      /needs --allow-remote-plugins/,
      out,
    );
  });
});

Deno.test("degrade: refuses to overwrite its input", async () => {
  await withTempDir(async (dir) => {
    const x = join(dir, "x.npy");
    await writeNpy(x, testScene(16, 16));
    const before = await Deno.readFile(x);
    expectInputError(
      await task(
        "degrade",
        "--plugin",
        GAIN,
        "--operator",
        "gain",
        "--input",
        x,
        "--out",
        join(dir, "sub", "..", "x.npy"),
      ),
      /refusing to overwrite the input file/,
      dir,
      ["x.npy"],
    );
    assert.deepEqual(await Deno.readFile(x), before);
  });
});

Deno.test({
  name: "degrade: SR factor that does not divide the size exits 2",
  ignore: !hasOperator("sr"),
  fn: async () => {
    await withTempDir(async (dir) => {
      expectInputError(
        await task(
          "degrade",
          "--operator",
          "sr:factor=4",
          "--size",
          "30x32",
          "--out",
          join(dir, "y.png"),
        ),
        /sr: .*not divisible by factor 4/,
        dir,
      );
      // And a dividing size works, with the smaller output shape.
      const ok = await task(
        "degrade",
        "--operator",
        "sr:factor=4",
        "--size",
        "32x48",
        "--out",
        join(dir, "y.npy"),
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual((await readNpy(join(dir, "y.npy"))).shape, [1, 3, 8, 12]);
    });
  },
});

Deno.test({
  name: "degrade: an image smaller than the blur kernel exits 2",
  ignore: !hasOperator("blur"),
  fn: async () => {
    await withTempDir(async (dir) => {
      expectInputError(
        await task(
          "degrade",
          "--operator",
          "blur:sigma=3",
          "--size",
          "4x4",
          "--out",
          join(dir, "y.png"),
        ),
        /blur/,
        dir,
      );
    });
  },
});

Deno.test("degrade: unexpected failures exit 1 with one line; --debug adds the stack", async () => {
  await withTempDir(async (dir) => {
    const plugin = join(dir, "boom.ts");
    await Deno.writeTextFile(
      plugin,
      `export default {
        kind: "operator", name: "boom", description: "always fails",
        options: { safeParse: (v) => ({ success: true, data: v }) },
        create() { throw new Error("boom happened\\nsecond line"); },
      };`,
    );
    const out = join(dir, "y.png");
    const r = await task("degrade", "--plugin", plugin, "--operator", "boom", "--out", out);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trimEnd(), "error: boom happened");
    const d = await task(
      "degrade",
      "--plugin",
      plugin,
      "--operator",
      "boom",
      "--out",
      out,
      "--debug",
    );
    assert.equal(d.code, 1);
    assert.match(d.stderr, /^error: boom happened\n/);
    assert.match(d.stderr, /at .*create/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["boom.ts"]);
  });
});

Deno.test("metrics: JSON on stdout; bad input exits 2", async () => {
  await withTempDir(async (dir) => {
    const a = join(dir, "a.npy"), b = join(dir, "b.npy"), c = join(dir, "c.npy");
    const x = testScene(20, 24);
    await writeNpy(a, x);
    await writeNpy(b, { data: x.data.map((v) => v + 0.1), shape: x.shape }); // MSE = 0.01
    await writeNpy(c, testScene(20, 20));
    const r = await task("metrics", a, b);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout);
    assert.ok(Math.abs(m.psnr - 20) < 1e-4, r.stdout);
    assert.ok(m.ssim > 0.9 && m.ssim < 1, r.stdout);
    expectInputError(await task("metrics", a, c), /shape \[1,3,20,24\] but .*\[1,3,20,20\]/);
    expectInputError(await task("metrics", a), /expected 2 files/);
    expectInputError(await task("metrics", a, join(dir, "none.png")), /none\.png: no such file/);
  });
});

Deno.test("bench utilities: percentiles interpolate like NumPy; timeIt counts runs", async () => {
  assert.equal(percentile([1, 2, 3, 4], 0.5), 2.5);
  assert.ok(Math.abs(percentile([10, 20, 30, 40, 50], 0.1) - 14) < 1e-12);
  assert.equal(percentile([7], 0.9), 7);
  let calls = 0;
  const t = await timeIt(() => calls++, { warmup: 2, runs: 5 });
  assert.equal(calls, 7);
  assert.equal(t.runs.length, 5);
  assert.ok(t.p10 <= t.median && t.median <= t.p90);
});

Deno.test("bench: runs end to end at a tiny size and writes its JSON", async () => {
  const name = `test-${crypto.randomUUID()}.json`;
  const out = join("bench-results", name);
  try {
    const r = await task(
      "bench:operators",
      "--sizes",
      "32",
      "--runs",
      "1",
      "--warmup",
      "0",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    const names = builtins.list("operator").map((p) => p.name);
    const seen = new Set<string>([
      ...report.operators.results.map((x: { spec: string }) => x.spec.split(":")[0]),
      ...report.operators.skipped.map((x: { plugin: string }) => x.plugin),
    ]);
    assert.deepEqual(
      [...seen].sort(),
      [...names].sort(),
      "every built-in operator is measured or skipped",
    );
    for (const x of report.operators.results) {
      assert.ok(x.forward.median > 0 && x.prox.median > 0 && x.forward.mpps > 0);
    }
    assert.ok(
      Array.isArray(report.reference.results) || typeof report.reference.error === "string",
    );
    expectInputError(
      await task("bench:operators", "--only", "nope"),
      /--only nope: no such operator plugin/,
    );
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});

Deno.test("bench:solver: every configuration at a tiny size, per-step times and the draw in its JSON", async () => {
  const out = join("bench-results", `test-solver-${crypto.randomUUID()}.json`);
  try {
    const r = await task(
      "bench:solver",
      "--sizes",
      "32",
      "--steps",
      "3",
      "--runs",
      "1",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    assert.deepEqual(
      report.results.map((x: { config: string }) => x.config),
      ["blur", "sr", "inpaint", "blur, residual δ rule"],
    );
    for (const x of report.results) {
      assert.equal(x.steps.length, 3);
      assert.ok(x.median.model > 0 && x.median.prox > 0 && x.latentDrawMs > 0);
      assert.equal(typeof x.holds, "boolean");
    }
    assert.equal(report.samplers[0].latentValues, 3 * 32 * 32);
    expectInputError(await task("bench:solver", "--only", "nope"), /--only nope/);
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});

Deno.test("bench:fft: the candidates at a small size; failures are reported per candidate", async () => {
  const out = join("bench-results", `test-fft-${crypto.randomUUID()}.json`);
  try {
    const r = await task("bench:fft", "--sizes", "64x96", "--runs", "1", "--out", out);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    const fft32 = report.results.find((x: { candidate: string }) =>
      x.candidate.startsWith("fft32")
    );
    assert.ok(fft32.ours.median > 0, "fft32 measured");
    const webfft = report.results.find((x: { candidate: string }) =>
      x.candidate.startsWith("webfft")
    );
    assert.match(webfft.skipped, /powers of two only/);
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});

Deno.test("bench:vjp: both widths and the built-in prior at a tiny size; a missing torch reference is reported, not fatal", async () => {
  const out = join("bench-results", `test-vjp-${crypto.randomUUID()}.json`);
  try {
    const r = await task(
      "bench:vjp",
      "--sizes",
      "8",
      "--runs",
      "1",
      "--warmup",
      "0",
      "--torch-python",
      "/nonexistent/python3",
      "--prior-sizes",
      "16",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    const results = report.results as {
      widths: string;
      size: number;
      config: { channels: number; heads: number };
      ratio: number;
      torch: { error?: string };
    }[];
    assert.deepEqual(results.map((x) => `${x.widths}@${x.size}`), ["sd15@8", "narrow@8"]);
    assert.deepEqual(results.map((x) => [x.config.channels, x.config.heads]), [[160, 8], [64, 4]]);
    for (const x of results) {
      // a ratio is reported (never asserted on: one timed run on a shared machine is noise)
      assert.ok(Number.isFinite(x.ratio) && x.ratio > 0, `ratio ${x.ratio}`);
      assert.match(x.torch.error ?? "", /\/nonexistent\/python3: /);
    }
    assert.match(r.stderr, /torch reference \(sd15, 8\): /);
    // the prior section: every network's forward and VJP method, with peak memory
    const prior = report.prior as {
      network: string;
      size: number;
      ratio: number;
      peakMB: { forward?: number; vjp?: number };
    }[];
    assert.deepEqual(prior.map((x) => `${x.network}@${x.size}`), [
      "unet@16",
      "consistency_unet@16",
      "vae_decoder@16",
      "vae_encoder@16",
    ]);
    for (const x of prior) {
      assert.ok(Number.isFinite(x.ratio) && x.ratio > 0, `${x.network} ratio ${x.ratio}`);
      assert.ok(x.peakMB.forward !== undefined && x.peakMB.vjp !== undefined, x.network);
    }
    expectInputError(
      await task("bench:vjp", "--widths", "sd21"),
      /--widths "sd21": expected one of sd15, narrow/,
    );
    expectInputError(
      await task("bench:vjp", "--channels", "40"),
      /--channels 40 --heads 4: expected/,
    );
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});

Deno.test("bench:vjp --model DIR: the prior section measures a test-built diffusers folder; a bad --prior is exit 2 before anything runs", async () => {
  const dir = await Deno.makeTempDir();
  const folder = join(dir, "sd-like");
  // networks read from files (not bytes), int64 [1] timestep, encoder with mean ‖ logvar
  await writeFolder(folder, pipelineFiles({ unet: { timestep: "i64-batch", ehsDim: 8 } }));
  const out = join("bench-results", `test-vjp-prior-${crypto.randomUUID()}.json`);
  try {
    const r = await task(
      "bench:vjp",
      ...["--only", "prior", "--model", folder, "--prior-sizes", "16"],
      ...["--runs", "1", "--warmup", "0", "--no-reference", "--quiet", "--out", out],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    assert.equal(report.priorSpec, `diffusers:path=${folder}`);
    assert.deepEqual(report.results, []); // no composite widths asked for
    const prior = report.prior as {
      network: string;
      size: number;
      ratio: number;
      peakMB: { forward?: number; vjp?: number; measuredIn: string };
    }[];
    // an SD-like folder has no consistency map: only the networks it has are measured
    assert.deepEqual(prior.map((x) => `${x.network}@${x.size}`), [
      "unet@16",
      "vae_decoder@16",
      "vae_encoder@16",
    ]);
    for (const x of prior) {
      assert.ok(Number.isFinite(x.ratio) && x.ratio > 0, `${x.network} ratio ${x.ratio}`);
      assert.equal(x.peakMB.measuredIn, "child process", x.network);
      assert.ok(x.peakMB.forward !== undefined && x.peakMB.vjp !== undefined, x.network);
    }
    assert.match(r.stdout, new RegExp(`prior-level VJPs, prior diffusers:path=`));
    for (
      const [args, pattern] of [
        [["--prior", "nope"], /unknown prior "nope"/],
        [["--prior", "builtin:scale=-1"], /prior "builtin": scale/],
        [["--prior", "builtin", "--model", folder], /either --prior SPEC or --model DIR/],
        [["--only", "sd15", "--prior", "builtin"], /--prior: applies to the prior section/],
      ] as [string[], RegExp][]
    ) {
      const bad = join("bench-results", `test-vjp-bad-${crypto.randomUUID()}.json`);
      expectInputError(await task("bench:vjp", ...args, "--quiet", "--out", bad), pattern);
      await Deno.stat(join(ROOT, bad)).then(
        () => assert.fail(`${args.join(" ")} wrote ${bad}`),
        (e) => assert.ok(e instanceof Deno.errors.NotFound),
      );
    }
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("classifyError: input, schema and argument errors → 2; anything else → 1", async () => {
  const { z } = await import("zod");
  let zodError: unknown;
  try {
    z.strictObject({ sigma: z.number() }).parse({ sigma: "x" });
  } catch (e) {
    zodError = e;
  }
  const zc = classifyError(zodError);
  assert.equal(zc.exitCode, 2);
  assert.match(zc.message, /^sigma: /);
  assert.ok(!zc.message.includes("\n"));
  let argError: unknown;
  try {
    parseCli(["--nope"], {});
  } catch (e) {
    argError = e;
  }
  assert.deepEqual(classifyError(argError), { exitCode: 2, message: "unknown option --nope" });
  assert.deepEqual(classifyError(new InputError("x.png: no such file")), {
    exitCode: 2,
    message: "x.png: no such file",
  });
  assert.deepEqual(classifyError(new TypeError("bad\nthing")), { exitCode: 1, message: "bad" });
});

Deno.test({
  name: "degrade: the jpeg operator writes a real JPEG file whose decode matches A(x)",
  ignore: !hasOperator("jpeg"),
  fn: async () => {
    await withTempDir(async (dir) => {
      const args = ["--operator", "jpeg:quality=10", "--size", "64x96", "--noise", "0"];
      const r = await task("degrade", ...args, "--out", join(dir, "y.jpg"));
      assert.equal(r.code, 0, r.stderr);
      const bytes = await Deno.readFile(join(dir, "y.jpg"));
      assert.deepEqual([...bytes.subarray(0, 3)], [0xff, 0xd8, 0xff], "JPEG magic");
      const n = await task("degrade", ...args, "--out", join(dir, "y.npy"));
      assert.equal(n.code, 0, n.stderr);
      const m = await task("metrics", join(dir, "y.jpg"), join(dir, "y.npy"));
      assert.equal(m.code, 0, m.stderr);
      assert.ok(JSON.parse(m.stdout).psnr > 30, m.stdout);
      expectInputError(
        await task("degrade", ...args.slice(0, 4), "--out", join(dir, "z.jpg")),
        /cannot carry noise; add --noise 0 \(the default is 0\.01\)/,
      );
    });
  },
});
