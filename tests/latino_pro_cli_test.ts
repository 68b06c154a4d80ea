/**
 * `solve.ts --solver latino-pro` and `--embedding` end to end, as subprocesses through the `solve`
 * task: the outputs (embedding.npy beside the image, counts and SAPG records in run.json), the
 * round trip (`latino --embedding E.npy` is bit-identical to LATINO run in memory with the tensors
 * E was written from), and bad input (exit 2, one line, nothing written).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { builtinRegistry, decodeNpy, readNpy, testScene } from "../mod.ts";
import { validateOptions } from "../core/registry.ts";
import { runSolver, simulate } from "../cli/run_problem.ts";
import type { Problem } from "../core/contracts.ts";
import { ROOT, task } from "./subprocess.ts";

const ARGS = ["--operator", "blur:sigma=1", "--noise", "0.01", "--seed", "3", "--size", "32x32"];

Deno.test("solve --solver latino-pro: embedding.npy, 68 forwards and 45 VJPs in run.json; --embedding round trip is bit-identical", async () => {
  const dir = await Deno.makeTempDir();
  const pro = join(dir, "pro");
  const r = await task(
    "solve",
    "--solver",
    "latino-pro",
    ...ARGS,
    "--prompt",
    "a grainy photo",
    "--out",
    pro,
    "--quiet",
  );
  assert.equal(r.code, 0, r.stderr);
  const names = [...Deno.readDirSync(pro)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "embedding.npy",
    "measurement.png",
    "restored.npy",
    "restored.png",
    "run.json",
    "side_by_side.png",
  ]);
  const run = JSON.parse(await Deno.readTextFile(join(pro, "run.json")));
  assert.equal(run.nfe.consistency_unet, 68);
  assert.deepEqual(run.vjp, { consistency_unet: 45 });
  assert.equal(run.solver.info.preset, "builtin/gaussian");
  assert.equal(run.solver.info.sapg.iterations.length, 15);
  assert.deepEqual(run.outputs.conditioning, ["embedding.npy"]);
  const records = run.timings.steps.filter((s: { info?: object }) => s.info);
  assert.equal(records.length, 15);
  assert.deepEqual(Object.keys(records[14].info).sort(), [
    "delta_c",
    "distance",
    "gamma",
    "sapg_iteration",
    "surrogate",
  ]);

  // The same run in memory gives the tensors embedding.npy was written from, bit for bit.
  const registry = builtinRegistry();
  const clean = testScene(32, 32);
  const { op, y } = await simulate(registry, "blur:sigma=1", clean, 0.01, 3);
  const problem: Problem = {
    y,
    operator: op,
    noise: { kind: "gaussian", sigma: 0.01 },
    imageShape: [...op.inputShape],
  };
  const priorPlugin = registry.get("prior", "builtin");
  const prior = await priorPlugin.create(validateOptions(priorPlugin, {}), {
    device: "cpu",
    imageShape: problem.imageShape,
  });
  const proPlugin = registry.get("solver", "latino-pro");
  const proSolver = await proPlugin.create(
    validateOptions(proPlugin, { prompt: "a grainy photo" }),
    {},
  );
  const mem = await runSolver(proSolver, problem, prior, { seed: 3, device: "cpu" });
  const E = mem.result.conditioning!;
  const file = decodeNpy(await Deno.readFile(join(pro, "embedding.npy")));
  assert.deepEqual(file.shape, [1, 77, 16]);
  assert.deepEqual(file.data, E.encoder_hidden_states.data);

  // latino --embedding E.npy (CLI) ≡ latino with the in-memory tensors E.
  const lat = join(dir, "latino");
  const r2 = await task(
    "solve",
    "--solver",
    "latino",
    ...ARGS,
    "--embedding",
    join(pro, "embedding.npy"),
    "--out",
    lat,
    "--quiet",
  );
  assert.equal(r2.code, 0, r2.stderr);
  const latPlugin = registry.get("solver", "latino");
  const latSolver = await latPlugin.create(validateOptions(latPlugin, {}), {});
  const latMem = await runSolver(latSolver, problem, prior, {
    seed: 3,
    device: "cpu",
    conditioning: E,
  });
  const fromCli = await readNpy(join(lat, "restored.npy"));
  assert.deepEqual(fromCli.data, latMem.result.x.data);
  // and the embedding mattered: the prompt-conditioned LATINO differs
  const plain = await runSolver(latSolver, problem, prior, { seed: 3, device: "cpu" });
  assert.notDeepEqual(plain.result.x.data, latMem.result.x.data);
  const runLat = JSON.parse(await Deno.readTextFile(join(lat, "run.json")));
  assert.deepEqual(runLat.embedding.tensors, ["encoder_hidden_states"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve --embedding: bad input exits 2 with one line and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  const wrong = join(dir, "wrong.npy");
  await Deno.writeFile(
    wrong,
    (await import("../core/io/npy.ts")).encodeNpy({ data: new Float32Array(12), shape: [1, 3, 4] }),
  );
  const cases: [string[], RegExp][] = [
    [["--embedding", wrong, "--prompt", "a cat"], /either --prompt or --embedding/],
    [["--embedding", join(dir, "missing.npy")], /missing\.npy: no such file/],
    [["--embedding", wrong], /wrong\.npy: .*encoder_hidden_states" has shape \[1,3,4\]/],
    [["--embedding-pooled", wrong], /--embedding-pooled needs --embedding/],
    [["--embedding", wrong, "--embedding-pooled", wrong], /takes no text_embeds/],
  ];
  for (const [args, pattern] of cases) {
    const out = join(dir, "out");
    const r = await task("solve", "--solver", "latino", ...ARGS, ...args, "--out", out, "--quiet");
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], pattern);
    assert.throws(() => Deno.statSync(out), Deno.errors.NotFound, `${args.join(" ")} wrote ${out}`);
  }
  const help = await task("solve", "--help");
  assert.match(help.stdout, /latino-pro .*not the operator's/s);
  assert.match(help.stdout, /--embedding FILE/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bench:latino-pro: both solvers at a tiny size in fresh processes, counts, times, memory and ratios in its JSON", async () => {
  const out = join("bench-results", `test-latino-pro-${crypto.randomUUID()}.json`);
  try {
    const r = await task(
      "bench:latino-pro",
      "--sizes",
      "32",
      "--runs",
      "1",
      "--quiet",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    const [latino, pro] = report.cases;
    assert.equal(latino.nfe.consistency_unet, 8);
    assert.deepEqual(latino.vjp, {});
    assert.equal(pro.nfe.consistency_unet, 68);
    assert.deepEqual(pro.vjp, { consistency_unet: 45 });
    assert.ok(pro.vjpMs.consistency_unet > 0 && pro.peakRssMB > 0 && latino.peakRssMB > 0);
    const s = report.summaries[0];
    assert.ok(s.wallRatio > 0 && s.memoryRatio > 0 && s.vjpOverForward > 0);
    const bad = await task("bench:latino-pro", "--sizes", "8");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--sizes/);
  } finally {
    await Deno.remove(join(ROOT, out)).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});
