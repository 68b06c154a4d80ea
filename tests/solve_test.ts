/**
 * `solve.ts` end to end, as a subprocess through the `solve` task (the task's permissions are
 * exercised): outputs and run.json, --help, measurement mode, a third-party plugin, bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readNpy } from "../mod.ts";
import { ROOT, task } from "./subprocess.ts";

Deno.test("solve: LATINO on the test scene writes every output and a complete run.json", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const r = await task(
    "solve",
    "--solver",
    "latino",
    "--operator",
    "blur:sigma=1",
    "--noise",
    "0.01",
    "--seed",
    "3",
    "--size",
    "32x48",
    "--out",
    out,
    "--quiet",
  );
  assert.equal(r.code, 0, r.stderr);
  const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "measurement.png",
    "restored.npy",
    "restored.png",
    "run.json",
    "side_by_side.png",
  ]);
  const run = JSON.parse(await Deno.readTextFile(join(out, "run.json")));
  assert.equal(run.seed, 3);
  assert.equal(run.solver.name, "latino");
  assert.equal(run.operator.name, "blur");
  assert.equal(run.prior.name.startsWith("builtin"), true);
  assert.equal(run.prior.provider, "cpu");
  // 8 consistency NFEs, 9 encodes (incl. init), 9 decodes (incl. final).
  assert.equal(run.nfe.consistency_unet, 8);
  assert.equal(run.nfe.vae_encoder, 9);
  assert.equal(run.nfe.vae_decoder, 9);
  // LATINO takes no gradients: VJP counters are reported, and empty
  assert.deepEqual(run.vjp, {});
  assert.deepEqual(run.timings.steps[7].vjp, {});
  assert.ok(run.metrics.psnr > 15 && run.metrics.ssim > 0 && run.metrics.dataFitPsnr > 20);
  assert.equal(run.timings.steps.length, 8);
  const x = await readNpy(join(out, "restored.npy"));
  assert.deepEqual(x.shape, [1, 3, 32, 48]);
  // Same seed, same bytes.
  const out2 = join(dir, "run2");
  const r2 = await task(
    "solve",
    "--operator",
    "blur:sigma=1",
    "--seed",
    "3",
    "--size",
    "32x48",
    "--out",
    out2,
    "--quiet",
  );
  assert.equal(r2.code, 0, r2.stderr);
  const x2 = await readNpy(join(out2, "restored.npy"));
  assert.deepEqual(x2.data, x.data);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve: --help lists solvers, operators and their options", async () => {
  const r = await task("solve", "--help");
  assert.equal(r.code, 0);
  for (const name of ["latino", "blur", "sr", "inpaint", "builtin", "diffusers"]) {
    assert.match(r.stdout, new RegExp(`\\b${name}\\b`));
  }
  assert.match(r.stdout, /sigma/);
});

Deno.test("solve: from a measurement file (SR ×2 with --size), and with a --plugin operator", async () => {
  const dir = await Deno.makeTempDir();
  const y = join(dir, "y.npy");
  const d = await task(
    "degrade",
    "--operator",
    "sr:factor=2",
    "--noise",
    "0.01",
    "--size",
    "32x32",
    "--out",
    y,
  );
  assert.equal(d.code, 0, d.stderr);
  const r = await task(
    "solve",
    "--operator",
    "sr:factor=2",
    "--measurement",
    y,
    "--size",
    "32x32",
    "--out",
    join(dir, "a"),
    "--quiet",
  );
  assert.equal(r.code, 0, r.stderr);
  const run = JSON.parse(await Deno.readTextFile(join(dir, "a", "run.json")));
  assert.equal(run.metrics.psnr, undefined, "no clean image, no PSNR");
  assert.ok(run.metrics.dataFitPsnr > 20);
  // A third-party operator loaded with --plugin.
  const p = await task(
    "solve",
    "--plugin",
    join(ROOT, "examples", "gain_plugin.ts"),
    "--operator",
    "gain:strength=0.5",
    "--size",
    "24x24",
    "--out",
    join(dir, "b"),
    "--quiet",
  );
  assert.equal(p.code, 0, p.stderr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve: bad input exits 2 with one line and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  const cases: [string[], RegExp][] = [
    [["--operator", "blurr"], /unknown operator "blurr"/],
    [["--operator", "blur:sigma=-1"], /sigma/],
    [["--operator", "blur", "--solver", "latino:steps=0"], /steps/],
    [["--operator", "blur", "--input", join(dir, "missing.png")], /missing\.png/],
    [["--operator", "sr:factor=3", "--size", "32x32"], /not divisible/],
    [["--operator", "blur", "--device", "tpu"], /tpu/],
  ];
  for (const [args, pattern] of cases) {
    const out = join(dir, "out");
    const r = await task("solve", ...args, "--out", out, "--quiet");
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], pattern);
    let exists = true;
    try {
      Deno.statSync(out);
    } catch {
      exists = false;
    }
    assert.equal(exists, false, `${args.join(" ")}: wrote ${out}`);
  }
  await Deno.remove(dir, { recursive: true });
});
