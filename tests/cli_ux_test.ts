/**
 * The command line as users meet it (issue 16): permissions asked up front, quiet success,
 * refusals before any model call, Ctrl-C, bench arguments, and the VJP tool's zero-gradient guard.
 * Every command runs as a subprocess, as a user would start it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { entryTasks } from "../cli/gate.ts";
import { childEnv, runPythonJson } from "../cli/bench_util.ts";
import { DENO, ROOT, task } from "./subprocess.ts";
import { pipelineFiles, writeFolder } from "./diffusers_fixtures.ts";
import { hasScript, runInTty } from "./tty.ts";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { SessionPool } from "../core/backend/pool.ts";
import { encodeNpy, writeNpy } from "../core/io/npy.ts";

/** `deno run ARGS…` in the repository root, no terminal, no colours. */
async function denoRun(args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(DENO, {
    args: ["run", ...args],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("permissions: every entry point run without flags and without a terminal says what to run, exit 2", async () => {
  const scripts = [...new Set(entryTasks().map((t) => t.script))];
  assert.ok(scripts.includes("solve.ts") && scripts.length >= 6, `entries: ${scripts}`);
  for (const script of scripts) {
    const r = await denoRun([script, "--help"]);
    assert.equal(r.code, 2, `${script}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${script}: one line, got ${r.stderr}`);
    assert.match(lines[0], /^error: \S+ needs \w+.* permission .*: run `deno task [\w:-]+ …`/);
    assert.doesNotMatch(r.stderr, /NotCapable|at file:/);
  }
});

Deno.test({
  name:
    "permissions: in a terminal each one is asked for with its reason; a refusal exits 2, writes nothing",
  ignore: !(await hasScript()),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gate_tty_" });
    try {
      const out = join(dir, "run");
      const cmd = [DENO, "run", "solve.ts", "--operator", "blur:sigma=1", "--size", "32x32"];
      const yes = await runInTty([...cmd, "--out", out, "--quiet"], ["y", "y", "y", "y", "y"]);
      assert.equal(yes.code, 0, yes.output);
      assert.equal(yes.prompts, 5, yes.output);
      assert.match(yes.output, /solve\.ts needs ffi access to load ONNX Runtime and sharp/);
      assert.match(yes.output, new RegExp(`needs write \\(${dir}\\) access to write its output`));
      assert.ok(exists(join(out, "restored.png")));
      const out2 = join(dir, "refused");
      const no = await runInTty([...cmd, "--out", out2, "--quiet"], ["y", "n"]);
      assert.equal(no.code, 2, no.output);
      assert.match(no.output, /error: solve\.ts needs write .* run `deno task solve …`/);
      assert.equal(exists(out2), false);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("device probing is quiet: a CPU fallback prints only our one device line; an unavailable device is one error line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "probe_" });
  try {
    const args = ["--operator", "blur:sigma=1", "--size", "32x32", "--out"];
    const ok = await task("solve", ...args, join(dir, "a"));
    assert.equal(ok.code, 0, ok.stderr);
    const noise = ok.stderr.split("\n").filter((l) => l && !l.startsWith('{"event":"step"'));
    assert.equal(noise.length, 2, `only the device line and the summary: ${ok.stderr}`);
    assert.match(noise[0], /^device auto → \w+/);
    assert.match(noise[1], /^vs clean: /);
    assert.doesNotMatch(ok.stderr, /error|warning|XDG_RUNTIME_DIR|\[E:onnxruntime|\.cpp:\d+/i);
    const cuda = await task("solve", ...args, join(dir, "b"), "--device", "cuda", "--quiet");
    if (cuda.code !== 0) {
      assert.equal(cuda.code, 2);
      const lines = cuda.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, cuda.stderr);
      assert.match(lines[0], /^error: device "cuda" is not available: the CUDA provider/);
      assert.equal(exists(join(dir, "b")), false);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench references start where LD_LIBRARY_PATH is set (CUDA images): the child gets none", async () => {
  const before = Deno.env.get("LD_LIBRARY_PATH");
  Deno.env.set("LD_LIBRARY_PATH", "/nonexistent/cuda/lib64");
  try {
    assert.equal(childEnv().LD_LIBRARY_PATH, undefined);
    const r = await runPythonJson(["python3"], [
      "-c",
      "import json, os; print(json.dumps({'ld': os.environ.get('LD_LIBRARY_PATH')}))",
    ]);
    if (r.error && /No such file|not found|NotFound/i.test(r.error)) return; // no python3 here
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.ld, null);
  } finally {
    if (before === undefined) Deno.env.delete("LD_LIBRARY_PATH");
    else Deno.env.set("LD_LIBRARY_PATH", before);
  }
});

Deno.test("bench: --only, --sizes and --runs reach both halves, are checked before anything runs, and progress has an ETA", async () => {
  const dir = `bench-results/test-${crypto.randomUUID()}`;
  try {
    const bad = await task("bench", "--only", "blur,nope", "--out-dir", dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: --only nope: not an operator plugin/);
    assert.equal(exists(join(ROOT, dir)), false);
    const badSize = await task("bench", "--sizes", "48", "--out-dir", dir);
    assert.equal(badSize.code, 2);
    assert.match(badSize.stderr, /--sizes 48: the VJP half runs at size\/8/);
    for (
      const [args, pattern] of [
        [["--only", "blur", "--prior", "builtin"], /--prior applies to the VJP half/],
        [["--only", "blur", "--threads", "1"], /--threads applies to the VJP and loss parts/],
      ] as [string[], RegExp][]
    ) {
      const r = await task("bench", ...args, "--out-dir", dir);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, pattern);
      assert.equal(exists(join(ROOT, dir)), false);
    }
    const r = await task(
      "bench",
      ...["--only", "blur,narrow", "--sizes", "64", "--runs", "1", "--warmup", "0"],
      ...["--no-reference", "--out-dir", dir],
    );
    assert.equal(r.code, 0, r.stderr);
    const ops = JSON.parse(await Deno.readTextFile(join(ROOT, dir, "operators.json")));
    assert.deepEqual(ops.config, { sizes: [64], runs: 1, warmup: 0 });
    assert.deepEqual(
      [...new Set(ops.operators.results.map((x: { spec: string }) => x.spec.split(":")[0]))],
      ["blur"],
    );
    const vjp = JSON.parse(await Deno.readTextFile(join(ROOT, dir, "vjp.json")));
    assert.deepEqual(vjp.results.map((x: { widths: string; size: number }) => [x.widths, x.size]), [
      ["narrow", 8],
    ]);
    assert.equal(vjp.results[0].forward.runs.length, 1);
    const progress = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    for (const label of ["operators", "vjp"]) {
      const lines = progress.filter((p) => p.event === "progress" && p.label === label);
      assert.ok(lines.length >= 2, `${label} progress: ${r.stderr}`);
      assert.equal(lines.at(-1).done, lines.at(-1).total);
      assert.ok(lines.some((p) => typeof p.eta_s === "number"), `an ETA: ${r.stderr}`);
    }
  } finally {
    await Deno.remove(join(ROOT, dir), { recursive: true }).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});

/**
 * sample [1,4] + table[Cast_int(timestep)] → out, plus `steps` (int64) and `unused` (float) that
 * never reach `out` through a derivative.
 */
function timestepModel(): Uint8Array {
  const g = new GraphBuilder("ts");
  const sample = g.input("sample", "float32", [1, 4]);
  const timestep = g.input("timestep", "float32", [1]);
  const steps = g.input("steps", "int64", [1]);
  g.input("unused", "float32", [1]);
  const table = g.constF("table", [10, 4], Array.from({ length: 40 }, (_, i) => i / 40));
  const idx = g.op("Cast", [timestep], { to: 7 }); // → int64: no derivative past this point
  const emb = g.op("Gather", [table, g.op("Add", [idx, steps])], { axis: 0 });
  g.output(g.op("Add", [sample, emb]), "out", "float32", [1, 4]);
  return g.toBytes();
}

Deno.test("vjp: --wrt refuses integer and disconnected inputs, naming why, unless --allow-zero-grad", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vjp_zero_" });
  try {
    const model = join(dir, "ts.onnx");
    await Deno.writeFile(model, timestepModel());
    const base = ["--model", model, "--of", "out", "--out"];
    const cases: [string, RegExp][] = [
      [
        "timestep",
        /--wrt 'timestep' reaches out only through values without a gradient \(node .*Cast.* turns it into int64/,
      ],
      [
        "steps",
        /--wrt 'steps' is int64, not floating point: it has no gradient \(--allow-zero-grad/,
      ],
      ["unused", /--wrt 'unused' does not reach out: its gradient would be all zeros/],
    ];
    for (const [wrt, pattern] of cases) {
      const out = join(dir, `${wrt}.onnx`);
      const r = await task("vjp", ...base, out, "--wrt", `sample,${wrt}`);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], pattern);
      assert.equal(exists(out), false);
    }
    const out = join(dir, "all.onnx");
    const ok = await task(
      "vjp",
      ...base,
      out,
      "--wrt",
      "sample,timestep,steps,unused",
      "--allow-zero-grad",
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /zero gradients \(--allow-zero-grad\): timestep\.grad, steps\.grad, unused\.grad/,
    );
    const pool = new SessionPool({ threads: 1 });
    try {
      const m = await pool.session("vjp", { path: out }, { device: "cpu" });
      const r = await m.run({
        sample: { data: [1, 2, 3, 4], shape: [1, 4] },
        timestep: { data: [3.7], shape: [1] },
        steps: { data: [1], shape: [1] },
        unused: { data: [0], shape: [1] },
        "out.cotangent": { data: [1, -1, 2, 5], shape: [1, 4] },
      });
      assert.deepEqual(Array.from(r["sample.grad"].data), [1, -1, 2, 5]);
      for (const z of ["timestep.grad", "steps.grad", "unused.grad"]) {
        assert.ok(
          Array.from(r[z].data as ArrayLike<number | bigint>).every((v) => Number(v) === 0),
          z,
        );
      }
    } finally {
      await pool.release();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Start `solve` as `deno run` with its task's flags (so signals reach it, not `deno task`). */
function spawnSolve(args: string[]): Deno.ChildProcess {
  const t = entryTasks().find((e) => e.task === "solve")!;
  return new Deno.Command(DENO, {
    args: ["run", ...t.flags, t.script, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** Read stderr lines; call `onLine` for each; resolve with all text when the stream ends. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<string> {
  let text = "", pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    pending += chunk;
    const parts = pending.split("\n");
    pending = parts.pop()!;
    parts.forEach(onLine);
  }
  return text;
}

Deno.test("Ctrl-C: 'stopping after this step…' at once, at most the running step finishes, exit 130, nothing left; twice: at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sigint_" });
  try {
    for (const presses of [1, 2]) {
      const out = join(dir, `new/run${presses}`);
      // the surrogate JPEG prox makes steps of 1–3 s at 128² here: the presses land mid-step
      const child = spawnSolve([
        ...["--operator", "jpeg:quality=10,data_term=surrogate", "--size", "128x128"],
        ...["--previews", "--out", out],
      ]);
      const press = () => {
        try {
          child.kill("SIGINT");
        } catch { /* already gone */ }
      };
      let sent = 0;
      const stderr = await readLines(child.stderr, (line) => {
        if (sent === 0 && line.startsWith('{"event":"step"')) {
          sent = 1;
          press();
        } else if (sent === 1 && presses === 2 && line.startsWith("stopping after this step…")) {
          sent = 2;
          press();
        }
      });
      await child.stdout.cancel();
      const { code } = await child.status;
      assert.equal(code, 130, stderr);
      const lines = stderr.split("\n");
      const at = lines.findIndex((l) => l.startsWith("stopping after this step…"));
      assert.ok(at > 0, stderr);
      const after = lines.slice(at + 1).filter((l) => l.startsWith('{"event":"step"'));
      assert.ok(after.length <= 1, `at most the running step ends after the message: ${stderr}`);
      assert.doesNotMatch(stderr, /error/i);
      assert.equal(exists(join(dir, "new")), false, "no partial files, no folder");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("solve checks before the first model call: NaN in a .npy, --out over an input, an image too small for SSIM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upfront_" });
  try {
    const y = new Float32Array(3 * 16 * 16).fill(0.5);
    y[1 * 256 + 2 * 16 + 5] = NaN;
    y[2 * 256] = Infinity;
    // writeNpy refuses non-finite data (by design): write the file's bytes directly
    await Deno.writeFile(join(dir, "y.npy"), encodeNpy({ data: y, shape: [3, 16, 16] }));
    const x = join(dir, "x.png");
    assert.equal(
      (await task("degrade", "--operator", "blur", "--size", "32x32", "--out", x)).code,
      0,
    );
    const cases: [string[], RegExp][] = [
      [
        ["--operator", "blur", "--measurement", join(dir, "y.npy")],
        /y\.npy: holds NaN at index \[1, 2, 5\] \(2 non-finite values in all\); inputs must be finite/,
      ],
      [
        ["--operator", "blur", "--input", x, "--out", x],
        /--out .*x\.png: refusing to overwrite the input file/,
      ],
      [
        ["--operator", "inpaint:mask=box", "--size", "8x8"],
        /--size 8x8: the image is 8×8, but SSIM .* at least 11×11/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const out = args.includes("--out") ? [] : ["--out", join(dir, "out")];
      const r = await task("solve", ...args, ...out);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(r.stderr, /device auto/, "refused before the prior (model) loaded");
      assert.equal(exists(join(dir, "out")), false);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("solve: a measurement far outside [0,1] gets one warning line and still runs; --noise has one default", async () => {
  const dir = await Deno.makeTempDir({ prefix: "range_" });
  try {
    const y = Float32Array.from(
      { length: 3 * 32 * 32 },
      (_, i) => -2 + 5 * ((i * 7919) % 1000) / 999,
    );
    await writeNpy(join(dir, "y.npy"), { data: y, shape: [1, 3, 32, 32] });
    const r = await task(
      "solve",
      ...["--operator", "blur:sigma=1", "--measurement", join(dir, "y.npy"), "--quiet"],
      ...["--out", join(dir, "out")],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stderr.trimEnd().split("\n"), [
      `warning: ${
        join(dir, "y.npy")
      }: values span [-2, 3], far outside [0,1] (an array on [-1,1] or [0,255]?); used as they are`,
    ]);
    for (const cmd of ["solve", "degrade"]) {
      const help = await task(cmd, "--help");
      assert.match(help.stdout, /--noise SIGMA +.*\(default 0\.01, as in (degrade|solve)/, cmd);
    }
    // degrade's default is solve's: the same measurement as --noise 0.01
    const a = join(dir, "a.npy"), b = join(dir, "b.npy");
    assert.equal(
      (await task("degrade", "--operator", "blur", "--size", "32x32", "--out", a)).code,
      0,
    );
    const d = await task(
      "degrade",
      "--operator",
      "blur",
      "--size",
      "32x32",
      "--noise",
      "0.01",
      "--out",
      b,
    );
    assert.equal(d.code, 0);
    assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("solve reports honest numbers: restored and baselines vs clean, and the data fit named as such", async () => {
  const dir = await Deno.makeTempDir({ prefix: "honest_" });
  try {
    const r = await task("solve", "--operator", "blur:sigma=2", "--size", "48x48", "--out", dir);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const run = JSON.parse(await Deno.readTextFile(join(dir, "run.json")));
    for (const rep of [out, run.metrics]) {
      assert.ok(rep.psnr > 0 && rep.ssim > 0 && rep.dataFitPsnr > 0);
      assert.equal(rep.measurementPsnr, undefined, "the data fit is not called measurement PSNR");
    }
    const base = run.baselines;
    assert.deepEqual(out.baselines, base);
    assert.ok(base.measurement.psnr > 0 && base.measurement.ssim > 0);
    assert.equal(base.pseudoInverse.method, "pseudoInverse");
    assert.match(run.metricsGuide.dataFitPsnr, /not a quality score/);
    // the human line on stderr compares like with like, and names the data fit
    const line = r.stderr.split("\n").find((l) => l.startsWith("vs clean:"));
    assert.match(
      line ?? "",
      /^vs clean: restored [\d.]+ dB \/ SSIM [\d.]+; baselines: measurement [\d.]+ dB \/ SSIM [\d.]+, pseudo-inverse [\d.]+ dB \/ SSIM [\d.]+; data fit PSNR\(A x̂, y\) [\d.]+ dB \(not a quality score\)$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every bench task that builds a prior takes --prior SPEC / --model DIR: a bad one is exit 2 before anything runs; bench:dps on a test-built folder", async () => {
  const dir = `bench-results/test-${crypto.randomUUID()}`;
  const tmp = await Deno.makeTempDir();
  try {
    const bad: [string[], RegExp][] = [
      [["--prior", "nope"], /^error: unknown prior "nope"/],
      // found when the prior is built (the plugin's own check), still before any measurement
      [
        ["--model", join(tmp, "no-such-folder")],
        /^error: prior "diffusers": path .* is not a directory/,
      ],
    ];
    for (const name of ["bench:solver", "bench:latino-pro", "bench:dps", "bench:vjp", "bench"]) {
      for (const [args, pattern] of bad) {
        const out = name === "bench" ? ["--out-dir", dir] : ["--out", `${dir}/x.json`];
        const r = await task(name, ...args, ...out);
        assert.equal(r.code, 2, `${name} ${args.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr.trimEnd().split("\n").length, 1, `${name}: one line: ${r.stderr}`);
        assert.match(r.stderr, pattern, name);
        assert.equal(exists(join(ROOT, dir)), false, `${name} wrote ${dir}`);
      }
    }
    const standin = await task("bench:dps", "--only", "standin-ldps-blur", "--prior", "builtin");
    assert.equal(standin.code, 2, standin.stderr);
    assert.match(standin.stderr, /--prior: applies to the builtin-\* cases/);
    const folder = join(tmp, "sd-like");
    await writeFolder(folder, pipelineFiles({ random: 3 }));
    const r = await task(
      "bench:dps",
      ...["--model", folder, "--only", "builtin-ldps-blur", "--sizes", "32", "--runs", "1"],
      ...["--steps", "3", "--quiet", "--out", `${dir}/dps.json`],
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, dir, "dps.json")));
    assert.equal(report.prior, `diffusers:path=${folder}`);
    assert.equal(report.results[0].prior, `diffusers:path=${folder}`);
    assert.deepEqual(report.results[0].vjpPerStep, { unet: 1, vae_decoder: 1 });
  } finally {
    await Deno.remove(join(ROOT, dir), { recursive: true }).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("every bench task takes --only, --sizes and --runs, and shows progress with an ETA", async () => {
  const dir = `bench-results/test-${crypto.randomUUID()}`;
  const tiny: Record<string, string[]> = {
    "bench:operators": ["--only", "blur", "--sizes", "32", "--runs", "1", "--no-reference"],
    "bench:vjp": ["--only", "narrow", "--sizes", "8", "--runs", "1", "--no-reference"],
    "bench:solver": ["--only", "blur", "--sizes", "32", "--runs", "1", "--steps", "3"],
    "bench:fft": ["--only", "fft32", "--sizes", "32x32", "--runs", "1"],
    "bench:latino-pro": ["--only", "latino", "--sizes", "32", "--runs", "1"],
    "bench:loss": ["--only", "whole", "--sizes", "8", "--runs", "1", "--warmup", "0"],
    "bench:dps": ["--only", "builtin-ldps-blur", "--sizes", "32", "--runs", "1", "--steps", "3"],
    "bench:compare": [
      "--only",
      "solve",
      "--images",
      "1",
      "--seeds",
      "1",
      "--sizes",
      "32",
      "--runs",
      "1",
    ],
  };
  try {
    const benches = entryTasks().map((t) => t.task).filter((t) => t.startsWith("bench:"));
    assert.deepEqual(benches.sort(), Object.keys(tiny).sort(), "a new bench task needs a row here");
    for (const [name, args] of Object.entries(tiny)) {
      const r = await task(name, ...args, "--out", `${dir}/${name.slice(6)}.json`);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      const events = r.stderr.split("\n").filter((l) => l.startsWith('{"event"'))
        .map((l) => JSON.parse(l));
      const last = events.filter((e) => e.event === "progress").at(-1);
      assert.ok(last && last.done === last.total && last.total > 0, `${name}: ${r.stderr}`);
      assert.ok(events.some((e) => typeof e.eta_s === "number"), `${name}: an ETA`);
      const bad = await task(name, "--only", "nope", "--out", `${dir}/x.json`);
      assert.equal(bad.code, 2, `${name} --only nope: ${bad.stderr}`);
    }
  } finally {
    await Deno.remove(join(ROOT, dir), { recursive: true }).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});
