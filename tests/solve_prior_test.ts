/**
 * `solve --prior SPEC`: every prior and every prior option is reachable from the command line
 * (`--model DIR` is the shorthand for `diffusers:path=DIR`), bad prior specs are one-line input
 * errors checked before anything runs, `--help` lists every option with its description and
 * default, and a deprecated camelCase key still works with one warning line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { builtinRegistry } from "../mod.ts";
import { optionsHelp } from "../cli/common.ts";
import { LCM_SCHEDULER, pipelineFiles, writeFolder } from "./diffusers_fixtures.ts";
import { ROOT, task } from "./subprocess.ts";

const SMALL = ["--operator", "blur:sigma=1", "--noise", "0.01", "--seed", "1", "--size", "32x32"];

/** The solver notes of a run: on stderr, in the step JSON lines (stderr is not a terminal here). */
function notes(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith('{"event":"step"'))
    .map((l) => JSON.parse(l).note).filter((n) => n !== undefined);
}

// deno-lint-ignore no-explicit-any -- run.json is free-form JSON
async function runJson(dir: string): Promise<Record<string, any>> {
  return JSON.parse(await Deno.readTextFile(join(dir, "run.json")));
}

Deno.test("solve --prior builtin:lossy=true,ref_size=8 reaches the builtin prior's options", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const r = await task("solve", ...SMALL, "--prior", "builtin:lossy=true,ref_size=8", "--out", out);
  assert.equal(r.code, 0, r.stderr);
  const run = await runJson(out);
  assert.equal(run.prior.spec, "builtin:lossy=true,ref_size=8");
  assert.deepEqual(run.prior.options, { lossy: true, scale: 1, ref_size: 8 });
  assert.equal(run.prior.family.id, "builtin");
  // LATINO says which δ preset it took and why, in one line that is not an error.
  const said = notes(r.stderr);
  assert.equal(said.length, 1, r.stderr);
  assert.match(said[0], /^latino: δ rule builtin\/gaussian \(prior family builtin/);
  assert.doesNotMatch(r.stderr, /error/i);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve --prior diffusers:path=DIR on a test-built LCM folder; --model DIR is the same", async () => {
  const dir = await Deno.makeTempDir();
  const folder = join(dir, "lcm-model");
  await writeFolder(
    folder,
    pipelineFiles({
      scheduler: LCM_SCHEDULER,
      unet: { timestep: "i64-batch", ehsDim: 8, timeCondDim: 4 },
      unetConfig: { in_channels: 4, sample_size: 2, time_cond_proj_dim: 4 },
    }),
  );
  const size = ["--size", "16x16", "--operator", "blur:sigma=1", "--seed", "2"];
  const a = await task(
    "solve",
    ...size,
    "--prior",
    `diffusers:path=${folder}`,
    "--out",
    join(dir, "a"),
  );
  assert.equal(a.code, 0, a.stderr);
  const runA = await runJson(join(dir, "a"));
  assert.equal(runA.prior.name, "lcm-model");
  assert.equal(runA.prior.family.id, "sd-lcm");
  assert.match(notes(a.stderr)[0], /^latino: δ rule sd15-lcm\/gaussian \(prior family sd-lcm/);
  assert.equal(runA.solver.info.deltaRule, "sd15-lcm/gaussian");
  const b = await task("solve", ...size, "--model", folder, "--out", join(dir, "b"), "--quiet");
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stderr, "", "--quiet: nothing on stderr");
  const [ya, yb] = [
    await Deno.readFile(join(dir, "a", "restored.npy")),
    await Deno.readFile(join(dir, "b", "restored.npy")),
  ];
  assert.deepEqual(ya, yb, "--model DIR = --prior diffusers:path=DIR");
  // family= overrides what the config files say (and so the presets LATINO picks).
  const c = await task(
    "solve",
    ...size,
    "--prior",
    `diffusers:path=${folder},family=sdxl-dmd2`,
    "--out",
    join(dir, "c"),
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(
    notes(c.stderr)[0],
    /^latino: δ rule sdxl-dmd2\/gaussian \(prior family sdxl-dmd2 \(set by family=/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve --prior: unknown prior, bad option, both --prior and --model: exit 2, one line, nothing written", async () => {
  const dir = await Deno.makeTempDir();
  const cases: [string[], RegExp][] = [
    [["--prior", "nope"], /unknown prior "nope" \(known: builtin, diffusers\)/],
    [["--prior", "builtin:scale=-1"], /prior "builtin": scale/],
    [["--prior", "builtin:lossless=1"], /prior "builtin": .*lossless/],
    [["--prior", "diffusers"], /prior "diffusers": path/],
    [["--prior", "diffusers:path=/no/such/folder"], /not a directory/],
    [["--prior", "builtin", "--model", dir], /either --prior SPEC or --model DIR/],
  ];
  for (const [args, pattern] of cases) {
    const out = join(dir, "out");
    const r = await task("solve", ...SMALL, ...args, "--out", out, "--quiet");
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(lines[0], /^error: /);
    assert.match(lines[0], pattern);
    assert.throws(() => Deno.statSync(out), Deno.errors.NotFound, `${args.join(" ")} wrote ${out}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve: a deprecated camelCase key works, with one warning line", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const r = await task(
    "solve",
    ...SMALL,
    "--solver",
    "latino:residualNoise=false",
    "--out",
    out,
    "--quiet",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stderr.trimEnd().split("\n"), [
    'warning: solver "latino": option "residualNoise" is deprecated, use "residual_noise"',
  ]);
  assert.equal((await runJson(out)).solver.options.residual_noise, false);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("solve --help: every option of every plugin, with its description and default", async () => {
  const r = await task("solve", "--help");
  assert.equal(r.code, 0, r.stderr);
  const registry = builtinRegistry();
  const lines = r.stdout.split("\n");
  for (const kind of ["solver", "operator", "prior"] as const) {
    for (const p of registry.list(kind)) {
      // The plugin's block: its header line, then its indented option lines.
      const start = lines.findIndex((l) => l.startsWith(`  ${p.name} `));
      assert.ok(start >= 0, `${kind} ${p.name} not listed`);
      const block: string[] = [];
      for (let i = start + 1; i < lines.length && lines[i].startsWith("      "); i++) {
        block.push(lines[i]);
      }
      for (const o of optionsHelp(p.options)) {
        const line = block.find((l) => l.trim().startsWith(`${o.key}=`));
        assert.ok(line, `${kind} ${p.name}: option ${o.key} not listed`);
        assert.ok(line.includes(`(${o.default})`), `${p.name}.${o.key}: ${line}`);
        assert.ok(o.description.length > 0, `${p.name}.${o.key} has no description`);
      }
    }
  }
  for (
    const key of ["lossy", "scale", "ref_size", "write_model", "lcm_guidance", "family", "path"]
  ) {
    assert.match(r.stdout, new RegExp(`\\n\\s+${key}=`), key);
  }
});

Deno.test("solve: a solver that needs gradients refuses a differentiable: false operator, in one line", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const plugin = join(ROOT, "tests", "fixtures", "nondiff_plugins.ts");
  const args = ["--plugin", plugin, "--operator", "quantise", "--size", "16x16", "--quiet"];
  const r = await task("solve", ...args, "--solver", "grad-probe", "--out", out);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(r.stderr.trimEnd().split("\n"), [
    'error: solver "grad-probe" cannot run here: operator "quantise" is not differentiable',
  ]);
  assert.throws(() => Deno.statSync(out), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});
