/**
 * The offline pack (`deno task pack`), as a GPU node without network would meet it: built,
 * unpacked into a scratch folder, and run with an empty DENO_DIR, a PATH holding only `sh`,
 * `dirname` and `grep` (no Node, no Deno), and the npm registry pointed at a closed local port.
 * And the CUDA variant: its provider library loads far enough to name the missing CUDA runtime.
 *
 * Cost on 2 shared cores: ≈ 25 s for the archive test (gzip -1 of ≈ 200 MB, unpacking, one small
 * solve), ≈ 10 s for the CUDA test once its two npm tarballs (290 MB) are in the download cache.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { task } from "./subprocess.ts";

/** A folder with the only commands the launcher needs, and nothing else (no node, no deno). */
function minimalPath(dir: string): string {
  const bin = join(dir, "bin");
  Deno.mkdirSync(bin, { recursive: true });
  for (const tool of ["sh", "dirname", "grep"]) {
    const found = ["/bin", "/usr/bin"].map((d) => `${d}/${tool}`).find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(found, `${tool} not found`);
    Deno.symlinkSync(found, join(bin, tool));
  }
  return bin;
}

/** `sh` as the test task's `--allow-run=sh` resolved it (this process's PATH). */
function shPath(): string {
  for (const d of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${d}/sh`).isFile) return `${d}/sh`;
    } catch { /* next */ }
  }
  return "sh";
}

/** Run `PACK/run ARGS…` the way an air-gapped node would. */
async function offline(pack: string, scratch: string, args: string[]) {
  const denoDir = await Deno.makeTempDir({ dir: scratch, prefix: "denodir_" });
  const r = await new Deno.Command(shPath(), {
    args: [join(pack, "run"), ...args],
    cwd: scratch,
    clearEnv: true,
    env: {
      HOME: scratch,
      PATH: minimalPath(await Deno.makeTempDir({ dir: scratch })),
      DENO_DIR: denoDir,
      NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/", // the discard port: nothing listens
      NO_COLOR: "1",
    },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l && !l.startsWith('{"event":"step"'));
}

Deno.test("pack: built, unpacked in a scratch folder, a solve runs offline without Node/Deno and prints no download line", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "pack_test_" });
  try {
    const archive = join(scratch, "li.tar.gz");
    const built = await task("pack", "--out", archive, "--level", "1");
    assert.equal(built.code, 0, built.stderr);
    const info = JSON.parse(built.stdout);
    assert.ok(info.commands.includes("solve") && info.files.stubs > 0, built.stdout);
    const untar = await new Deno.Command("tar", { args: ["-xzf", archive, "-C", scratch] })
      .output();
    assert.equal(untar.code, 0, new TextDecoder().decode(untar.stderr));
    await Deno.remove(archive);
    const pack = join(scratch, "latent-inverse");
    for (const other of ["darwin", "win32", "linux/arm64"]) {
      const bin = join(
        pack,
        "node_modules/onnxruntime-node/bin/napi-v6",
        other,
      );
      assert.throws(() => Deno.statSync(bin), `${other} binaries left out`);
    }
    const r = await offline(pack, scratch, [
      ...["solve", "--operator", "blur:sigma=1", "--size", "32x32", "--seed", "1"],
      ...["--out", "out/run"],
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /download|error|warning|failed/i);
    const rest = lines(r.stderr);
    assert.equal(rest.length, 2, `only the device line and the summary: ${r.stderr}`);
    assert.match(rest[0], /^device auto → cpu/);
    assert.match(rest[1], /^vs clean: /);
    const run = JSON.parse(await Deno.readTextFile(join(scratch, "out/run/run.json")));
    assert.equal(run.seed, 1);
    assert.ok(Deno.statSync(join(scratch, "out/run/restored.npy")).size > 0);
    const help = await offline(pack, scratch, ["help"]);
    assert.equal(help.code, 0);
    for (const cmd of ["solve", "degrade", "metrics", "vjp", "bench", "compare"]) {
      assert.match(help.stdout, new RegExp(`[ ,]${cmd}[,\n]`), `${cmd} in ${help.stdout}`);
    }
    const unknown = await offline(pack, scratch, ["slove"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^error: unknown command "slove"/);
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
});

Deno.test("pack --cuda: ORT 1.29 core + CUDA provider; without a GPU it loads far enough to name the missing CUDA runtime", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "pack_cuda_test_" });
  try {
    const pack = join(scratch, "pack"); // a folder pack: same contents, no archive to unpack
    const built = await task("pack", "--out", pack, "--cuda");
    assert.equal(built.code, 0, built.stderr);
    assert.equal(JSON.parse(built.stdout).cuda.onnxruntime, "1.29.0");
    const args = ["solve", "--operator", "blur:sigma=1", "--size", "32x32", "--quiet"];
    const cpu = await offline(pack, scratch, [...args, "--out", "out/cpu"]);
    assert.equal(cpu.code, 0, cpu.stderr);
    assert.equal(cpu.stderr, "");
    const run = JSON.parse(await Deno.readTextFile(join(scratch, "out/cpu/run.json")));
    assert.equal(run.versions.onnxruntime, "1.29.0");
    const cuda = await offline(pack, scratch, [...args, "--device", "cuda", "--out", "out/cuda"]);
    if (cuda.code === 0) {
      // a machine with the NVIDIA driver, CUDA 13 and cuDNN 9 on LD_LIBRARY_PATH
      const gpu = JSON.parse(await Deno.readTextFile(join(scratch, "out/cuda/run.json")));
      assert.equal(gpu.prior.provider, "cuda");
      return;
    }
    assert.equal(cuda.code, 2);
    const err = cuda.stderr.trimEnd().split("\n");
    assert.equal(err.length, 1, cuda.stderr);
    assert.match(
      err[0],
      /^error: device "cuda" is not available: the CUDA provider (is installed but (the CUDA 13 runtime|cuDNN 9|the NVIDIA driver) is not found \(lib[\w.]+: put its folder on LD_LIBRARY_PATH\)|loaded, but no CUDA-capable device is visible)$/,
    );
    assert.throws(() => Deno.statSync(join(scratch, "out/cuda")), "nothing written");
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
});
