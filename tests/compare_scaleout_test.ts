/**
 * The scale-out examples as written: the sbatch script run once per array task of its
 * `#SBATCH --array`, and the Kubernetes Indexed Job's container command run once per completion
 * index, each with the environment the scheduler would set (a tiny configuration swapped in through
 * the variables both files read). Between them the shards must cover every cell exactly once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { planCells } from "../cli/compare/cells.ts";
import type { CompareConfig } from "../cli/compare/config.ts";
import { DENO, ROOT, task } from "./subprocess.ts";

const KODAK = join(ROOT, "..", "shared", "data", "kodak");

/** The tiny configuration both examples are run with (the env variables they read). */
function tinyEnv(run: string): Record<string, string> {
  return {
    SOLVERS: "latino:steps=2",
    OPERATORS: "blur:sigma=1",
    IMAGES: `${join(KODAK, "kodim01.png")};${join(KODAK, "kodim02.png")}`,
    CROP: "24x24",
    SEEDS: "0,1",
    NOISE: "0.01",
    PRIOR: "builtin",
    DEVICE: "cpu",
    RUN: run,
    DENO,
    NO_COLOR: "1",
  };
}

async function run(cmd: string, args: string[], env: Record<string, string>): Promise<void> {
  const r = await new Deno.Command(cmd, { args, env, cwd: ROOT, stdin: "null" }).output();
  const dec = new TextDecoder();
  assert.equal(r.code, 0, dec.decode(r.stderr) + dec.decode(r.stdout));
}

/** Keys of the rows of every shard folder under `root`, and the configuration. */
async function shardKeys(
  root: string,
): Promise<{ keys: string[]; config: CompareConfig; dirs: string[] }> {
  const dirs = [...Deno.readDirSync(root)].map((e) => join(root, e.name)).sort();
  const keys: string[] = [];
  for (const d of dirs) {
    const text = await Deno.readTextFile(join(d, "results.jsonl"));
    for (const l of text.split("\n").filter((x) => x.trim())) keys.push(JSON.parse(l).key);
  }
  const config = JSON.parse(await Deno.readTextFile(join(dirs[0], "config.json")));
  return { keys, config, dirs };
}

Deno.test("examples: the sbatch script's array tasks cover every cell once; their merge is complete", async () => {
  const tmp = await Deno.makeTempDir();
  const script = await Deno.readTextFile(join(ROOT, "examples/compare/compare.sbatch"));
  const m = /^#SBATCH --array=(\d+)-(\d+)\s*$/m.exec(script);
  assert.ok(m, "the script declares a job array");
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  const runDir = join(tmp, "slurm");
  for (let id = lo; id <= hi; id++) {
    await run("bash", ["examples/compare/compare.sbatch"], {
      ...tinyEnv(runDir),
      SLURM_ARRAY_TASK_ID: String(id),
      SLURM_ARRAY_TASK_MIN: String(lo),
      SLURM_ARRAY_TASK_COUNT: String(hi - lo + 1),
      SLURM_SUBMIT_DIR: ROOT,
    });
  }
  const { keys, config, dirs } = await shardKeys(runDir);
  assert.equal(dirs.length, hi - lo + 1);
  const planned = planCells(config).map((c) => c.key);
  assert.equal(planned.length, 20); // (latino + 4 baselines) × 2 images × 2 seeds
  assert.deepEqual([...keys].sort(), [...planned].sort()); // each exactly once
  const merged = await task("compare-merge", ...dirs, "--out", join(tmp, "merged"), "--json");
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal(JSON.parse(merged.stdout).present, 20);
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("examples: the Kubernetes Indexed Job's pods cover every cell once", async () => {
  const tmp = await Deno.makeTempDir();
  const job = parse(await Deno.readTextFile(join(ROOT, "examples/compare/compare-job.yaml")));
  assert.equal(job.kind, "Job");
  assert.equal(job.spec.completionMode, "Indexed");
  const n = job.spec.completions;
  const container = job.spec.template.spec.containers[0];
  const env: Record<string, string> = Object.fromEntries(
    container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
  );
  assert.equal(Number(env.SHARDS), n, "SHARDS must equal completions");
  const runDir = join(tmp, "k8s");
  const [cmd, ...cmdArgs] = [...container.command, ...container.args];
  for (let i = 0; i < n; i++) {
    await run(cmd, cmdArgs, { ...env, ...tinyEnv(runDir), JOB_COMPLETION_INDEX: String(i) });
  }
  const { keys, config, dirs } = await shardKeys(runDir);
  assert.equal(dirs.length, n);
  const planned = planCells(config).map((c) => c.key);
  assert.deepEqual([...keys].sort(), [...planned].sort());
  await Deno.remove(tmp, { recursive: true });
});
