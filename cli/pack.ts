/**
 * `deno task pack --out FILE.tar.gz [--cuda]`: a relocatable bundle for a Linux x64 machine with no
 * network and no Node/Deno (a cluster GPU node): this project, its npm packages with only this
 * platform's native binaries, the Deno binary, and a launcher:
 *
 *   tar -xzf FILE.tar.gz && latent-inverse/run solve --operator blur:sigma=3 --out out/run1
 *
 * The recipe is the one that worked on an air-gapped H200 (../shared/reference/gpu.md), with its
 * pitfalls handled here:
 * - other platforms' packages (sharp's musl builds, `@types/node`) are left as empty folders with an
 *   `.initialized` file: Deno expects every package of the lockfile to have its folder;
 * - onnxruntime-node's darwin/win32/linux-arm64 binaries are left out;
 * - the launcher runs Deno with `--cached-only`: with an empty DENO_DIR and no registry, Deno then
 *   reads everything from `node_modules/` and prints no (failed) download lines;
 * - the Vulkan loader (`libvulkan.so.1`, Apache-2.0) of the building machine is bundled when it has
 *   one, and used only where the node has none (WebGPU on Linux runs on Vulkan); the launcher points
 *   `VK_DRIVER_FILES` at the NVIDIA driver's ICD when it sits outside the loader's search path.
 *
 * `--cuda` adds a CUDA execution provider that loads offline (pack_cuda.ts): ONNX Runtime 1.29.0's
 * provider libraries (npm `com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9`, built for CUDA 13 and
 * cuDNN 9) with the matching 1.29.0 core and binding (npm `onnxruntime-node@1.29.0`); the CUDA and
 * cuDNN runtime libraries are left to the machine (`LD_LIBRARY_PATH`).
 *
 * Only the `--out` file (and a staging folder beside it, removed afterwards) is written; GNU tar
 * makes the archive.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../core/errors.ts";
import { main, parseCli, parseNumber } from "./args.ts";
import { entryTasks, type TaskCommand } from "./gate.ts";
import { addCudaProvider, CUDA_PACKAGES } from "./pack_cuda.ts";

const USAGE = `Usage: deno task pack --out FILE.tar.gz [--cuda] [options]

Build a relocatable bundle for Linux x64 (glibc) machines without network, Node or Deno: the
project, its npm packages (this platform's native binaries only), the Deno binary and a launcher.
On the target:  tar -xzf FILE.tar.gz && latent-inverse/run solve …   (./run help lists commands)

Options:
  --out FILE.tar.gz   the bundle to write (required); a path not ending in .tar.gz/.tgz makes
                      the pack as a new folder instead (hard links where possible)
  --cuda              add ONNX Runtime's CUDA execution provider (1.29.0, CUDA 13 + cuDNN 9; the
                      CUDA/cuDNN runtime stays the machine's): downloads ${
  CUDA_PACKAGES.map((p) => `${p.name}@${p.version}`).join(" and ")
} from the npm registry (cached), or takes their .tgz files from --cuda-from
  --cuda-from DIR     folder holding those two npm tarballs (no download)
  --vulkan-loader F   libvulkan.so.1 to bundle (default: this machine's, when it has one)
  --name NAME         top folder inside the archive (default latent-inverse)
  --level N           gzip level 1–9 (default 6; 1 is 3× faster and 10 % larger)
`;

/** Packages not needed on Linux x64 glibc: their folders become stubs. */
const OTHER_PLATFORMS = /linuxmusl|darwin|win32|linux-arm|freebsd|android|wasm32|@types\+node@/;

/** The project root (this file is cli/pack.ts). */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** One gitignore-style rule (the subset the project uses: names, globs, trailing `/`, leading `/`). */
interface IgnoreRule {
  re: RegExp;
  dirOnly: boolean;
  anchored: boolean;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.split("").map((c) =>
    c === "*" ? "[^/]*" : c === "?" ? "[^/]" : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")
  ).join("");
  return new RegExp(`^${body}$`);
}

function readIgnore(root: string): IgnoreRule[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(join(root, ".gitignore"));
  } catch { /* none */ }
  return text.split("\n").map((l) => l.trim()).filter((l) =>
    l && !l.startsWith("#") && !l.startsWith("!")
  )
    .map((l) => {
      const dirOnly = l.endsWith("/");
      const anchored = l.startsWith("/") || l.slice(0, -1).includes("/");
      const pat = l.replace(/^\//, "").replace(/\/$/, "");
      return { re: globToRegExp(pat), dirOnly, anchored };
    });
}

function ignored(rules: IgnoreRule[], rel: string, isDir: boolean): boolean {
  const name = basename(rel);
  return rules.some((r) =>
    (!r.dirOnly || isDir) && (r.anchored ? r.re.test(rel) : r.re.test(name))
  );
}

/** The project's files: everything not git-ignored, without `.git` and `node_modules`. */
export function projectFiles(root: string, skip: readonly string[] = []): string[] {
  const rules = readIgnore(root);
  const out: string[] = [];
  const stack = [""];
  while (stack.length) {
    const rel = stack.pop()!;
    for (const e of Deno.readDirSync(join(root, rel))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const isDir = e.isDirectory && !e.isSymlink;
      if (
        e.name === ".git" || r === "node_modules" || skip.includes(r) || ignored(rules, r, isDir)
      ) continue;
      if (isDir) stack.push(r);
      else out.push(r);
    }
  }
  return out.sort();
}

/**
 * The npm packages for Linux x64: every file under node_modules except other platforms'
 * packages (listed in `stubs`, to be replaced by empty folders) and onnxruntime-node's other
 * platforms' binaries. Paths are relative to the project root.
 */
export function moduleFiles(root: string, skip: ReadonlySet<string> = new Set()): {
  files: string[];
  stubs: string[];
} {
  const nm = join(root, "node_modules");
  try {
    Deno.statSync(join(nm, ".deno"));
  } catch {
    throw new InputError(
      `${nm}: no npm packages installed here; run \`deno install\` first (the pack task does)`,
    );
  }
  const files: string[] = [];
  const stubs: string[] = [];
  const stack = [""];
  while (stack.length) {
    const rel = stack.pop()!;
    for (const e of Deno.readDirSync(join(nm, rel))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const full = `node_modules/${r}`;
      if (rel === ".deno" && e.isDirectory && OTHER_PLATFORMS.test(e.name)) {
        stubs.push(full);
        continue;
      }
      if (/onnxruntime-node\/bin\/napi-v6\/(darwin|win32|linux\/arm64)$/.test(r)) continue;
      if (skip.has(full)) continue;
      if (e.isDirectory && !e.isSymlink) stack.push(r);
      else files.push(full);
    }
  }
  return { files: files.sort(), stubs: stubs.sort() };
}

/** Quote a word for a POSIX shell script. */
function sh(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The launcher script: `run COMMAND ARGS…` runs the deno.json task COMMAND with the bundled Deno,
 * `--cached-only`, the task's own permission flags, and paths resolved from the user's folder.
 */
export function launcher(tasks: readonly TaskCommand[]): string {
  const cases = tasks.map((t) =>
    `  ${sh(t.task)}) exec "$deno" run --cached-only --config "$here/deno.json" ${
      t.flags.map(sh).join(" ")
    } "$here/${t.script}" ${t.args.map(sh).join(" ")}${t.args.length ? " " : ""}"$@" ;;`
  ).join("\n");
  const names = tasks.map((t) => t.task).join(", ");
  return `#!/bin/sh
# latent-inverse offline pack: ./run COMMAND [ARGS…]   (COMMAND: ${names})
# Runs with the bundled Deno, never downloads (--cached-only), relative paths from your folder.
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
deno="$here/bin/deno"
export DENO_NO_UPDATE_CHECK=1
# child processes named "deno" (bench:vjp's memory probe) are this Deno
export PATH="$here/bin:$PATH"
# WebGPU runs on Vulkan: use the bundled loader where the machine has none
if [ -e "$here/lib/libvulkan.so.1" ] && ! (ldconfig -p 2>/dev/null | grep -q 'libvulkan\\.so\\.1 '); then
  export LD_LIBRARY_PATH="$here/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# the NVIDIA driver's Vulkan ICD, where the loader does not look by default (container images)
if [ -z "\${VK_DRIVER_FILES:-}\${VK_ICD_FILENAMES:-}" ]; then
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -e "$d/nvidia_icd.json" ] && found=1
  done
  if [ -z "\${found:-}" ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  fi
fi
cmd=\${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
${cases}
  deno) exec "$deno" "$@" ;;
  help|-h|--help)
    echo "usage: $0 COMMAND [ARGS…]; COMMAND is one of: ${names}"
    echo "       $0 COMMAND --help   for a command's options; see PACK.md"
    exit 0 ;;
  *) echo "error: unknown command \\"$cmd\\" (one of: ${names}; $0 help)" >&2; exit 2 ;;
esac
`;
}

/** The Vulkan loader of this machine, if it has one (resolved through its symlinks). */
function systemVulkanLoader(): string | undefined {
  for (
    const d of ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
  ) {
    try {
      return Deno.realPathSync(`${d}/libvulkan.so.1`);
    } catch { /* next */ }
  }
  return undefined;
}

async function copyOrLink(from: string, to: string): Promise<void> {
  await Deno.mkdir(dirname(to), { recursive: true });
  try {
    await Deno.link(from, to);
  } catch {
    await Deno.copyFile(from, to);
  }
}

function toolkitVersion(root: string): string {
  try {
    return String(JSON.parse(Deno.readTextFileSync(join(root, "deno.json"))).version ?? "unknown");
  } catch {
    return "unknown";
  }
}

/** Commands of the pack: every task that runs a script, except this one. */
function packTasks(root: string): TaskCommand[] {
  const seen = new Set<string>();
  return entryTasks().filter((t) => {
    if (t.task === "pack" || seen.has(t.task)) return false;
    seen.add(t.task);
    try {
      return Deno.statSync(join(root, t.script)).isFile;
    } catch {
      return false;
    }
  });
}

function packReadme(name: string, tasks: TaskCommand[], manifest: Record<string, unknown>): string {
  return `# ${name}: offline pack of latent-inverse ${manifest.version}

Built ${manifest.built} on ${manifest.builtOn} for Linux x64 (glibc). Needs no network, Node or Deno.

    ./run solve --operator blur:sigma=3 --noise 0.01 --input photo.png --out out/run1
    ./run help            # commands: ${tasks.map((t) => t.task).join(", ")}
    ./run solve --help    # a command's options

Relative paths are taken from your folder. Deno runs with \`--cached-only\` (never downloads) and
the permissions of the matching task in deno.json.

Execution providers (\`--device auto|cpu|cuda|webgpu\`):
- cpu: always.
- webgpu: needs the Vulkan loader (bundled in lib/ ${
    manifest.vulkanLoader
      ? "— yes, in this pack"
      : "— not in this pack: install Debian's libvulkan1"
  }) and the GPU driver's Vulkan ICD; the launcher sets VK_DRIVER_FILES to
  /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json when only that one exists.
- cuda: ${
    manifest.cuda
      ? "ONNX Runtime 1.29.0's CUDA provider is in this pack (core and binding 1.29.0 too). It needs the CUDA 13 runtime (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10) and cuDNN 9 on LD_LIBRARY_PATH, and the NVIDIA driver."
      : "not in this pack (build it with `deno task pack --cuda`)."
  }

Contents: the project's files, node_modules/ (other platforms' packages are empty stub folders),
bin/deno (${manifest.deno}), run, PACK.json. Licences: Deno MIT; ONNX Runtime MIT; sharp
Apache-2.0 with libvips LGPL-3.0; the Vulkan loader Apache-2.0; see each package's files.
`;
}

/** Write the `.tar.gz`: the project's files, then the staged ones, under `name/` (GNU tar). */
async function writeArchive(
  staging: string,
  files: string[],
  staged: string[],
  name: string,
  level: number,
  out: string,
): Promise<void> {
  const tmpArchive = join(staging, "pack.tar.gz");
  const list1 = join(staging, "project.list"), list2 = join(staging, "staged.list");
  await Deno.writeTextFile(list1, files.join("\0") + "\0");
  await Deno.writeTextFile(list2, staged.join("\0") + "\0");
  const tar = await new Deno.Command("tar", {
    args: [
      "--create",
      `--file=${tmpArchive}`,
      `--use-compress-program=gzip -${level}`,
      `--transform=s,^,${name}/,S`,
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--null",
      "-C",
      ROOT,
      "-T",
      list1,
      "-C",
      staging,
      "-T",
      list2,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output().catch((e) => {
    throw new InputError(`cannot run GNU tar (${e instanceof Error ? e.message : e})`);
  });
  if (tar.code !== 0) {
    const err = new TextDecoder().decode(tar.stderr).trim().split("\n").pop();
    throw new Error(`tar failed: ${err}`);
  }
  await Deno.rename(tmpArchive, out);
}

/**
 * Write the pack as a folder (no archive): the project's files hard-linked (copied across file
 * systems), symbolic links recreated, the staged files moved in; the folder appears at once.
 */
async function writeFolder(
  staging: string,
  files: string[],
  staged: string[],
  out: string,
): Promise<void> {
  const tmp = join(staging, "folder");
  const dirs = new Set<string>();
  const mkdir = async (d: string) => {
    if (dirs.has(d)) return;
    await Deno.mkdir(d, { recursive: true });
    dirs.add(d);
  };
  for (const rel of files) {
    const src = join(ROOT, rel), dst = join(tmp, rel);
    await mkdir(dirname(dst));
    if (Deno.lstatSync(src).isSymlink) await Deno.symlink(Deno.readLinkSync(src), dst);
    else await copyOrLink(src, dst);
  }
  for (const rel of staged) {
    await mkdir(dirname(join(tmp, rel)));
    await Deno.rename(join(staging, rel), join(tmp, rel));
  }
  await Deno.remove(out).catch(() => {}); // an empty folder given as --out
  await Deno.rename(tmp, out);
}

/** Run `pack` with command-line arguments. */
export async function pack(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    out: { type: "string" },
    cuda: { type: "boolean" },
    "cuda-from": { type: "string" },
    "vulkan-loader": { type: "string" },
    name: { type: "string" },
    level: { type: "string" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.out) throw new InputError("--out FILE.tar.gz (or a new folder) is required");
  const out = resolve(values.out);
  const archive = /\.(tar\.gz|tgz)$/.test(out);
  if (!archive) {
    let entries: Deno.DirEntry[] | undefined;
    try {
      entries = [...Deno.readDirSync(out)];
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new InputError(`--out ${values.out}: exists and is not a folder (or a .tar.gz path)`);
      }
    }
    if (entries?.length) {
      throw new InputError(`--out ${values.out}: the folder exists and is not empty`);
    }
  }
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new InputError(
      `the pack is for Linux x64 and bundles the running Deno; build it on Linux x64 ` +
        `(this is ${Deno.build.os} ${Deno.build.arch})`,
    );
  }
  const level = parseNumber(values.level, "--level", {
    fallback: 6,
    min: 1,
    max: 9,
    integer: true,
  });
  const name = values.name ?? "latent-inverse";
  if (!/^[\w.-]+$/.test(name)) throw new InputError(`--name ${name}: expected a plain folder name`);
  if (values["cuda-from"] && !values.cuda) throw new InputError("--cuda-from: only with --cuda");
  let vulkan = values["vulkan-loader"];
  if (vulkan !== undefined) {
    try {
      vulkan = Deno.realPathSync(vulkan);
    } catch {
      throw new InputError(`--vulkan-loader ${values["vulkan-loader"]}: no such file`);
    }
  } else vulkan = systemVulkanLoader();
  await Deno.mkdir(dirname(out), { recursive: true });

  const staging = await Deno.makeTempDir({ dir: dirname(out), prefix: `.${basename(out)}.` });
  const t0 = performance.now();
  try {
    // what stays out of the project list: the archive and staging folder when inside the project
    const inside = (p: string) => relative(ROOT, p);
    const skip = [out, staging].map(inside).filter((r) => !r.startsWith("..") && r !== "");
    const project = projectFiles(ROOT, skip);
    const replaced = new Set<string>();
    let cuda: Record<string, unknown> | undefined;
    if (values.cuda) {
      cuda = await addCudaProvider(ROOT, staging, {
        from: values["cuda-from"],
        replaced,
        log: (m) => console.error(m),
      });
    }
    const modules = moduleFiles(ROOT, replaced);
    for (const stub of modules.stubs) {
      await Deno.mkdir(join(staging, stub), { recursive: true });
      await Deno.writeFile(join(staging, stub, ".initialized"), new Uint8Array());
    }
    await copyOrLink(Deno.execPath(), join(staging, "bin", "deno"));
    await Deno.chmod(join(staging, "bin", "deno"), 0o755);
    if (vulkan) await copyOrLink(vulkan, join(staging, "lib", "libvulkan.so.1"));
    const tasks = packTasks(ROOT);
    await Deno.writeTextFile(join(staging, "run"), launcher(tasks), { mode: 0o755 });
    await Deno.chmod(join(staging, "run"), 0o755);
    const manifest = {
      name,
      version: toolkitVersion(ROOT),
      built: new Date().toISOString(),
      builtOn: `${Deno.build.target}`,
      deno: Deno.version.deno,
      platform: "linux-x64-glibc",
      commands: tasks.map((t) => t.task),
      vulkanLoader: vulkan !== undefined,
      cuda: cuda ?? false,
      files: {
        project: project.length,
        modules: modules.files.length,
        stubs: modules.stubs.length,
      },
    };
    await Deno.writeTextFile(join(staging, "PACK.json"), JSON.stringify(manifest, null, 2) + "\n");
    await Deno.writeTextFile(join(staging, "PACK.md"), packReadme(name, tasks, manifest));

    const stagedList = [
      "run",
      "bin/deno",
      "PACK.json",
      "PACK.md",
      ...modules.stubs.map((d) => `${d}/.initialized`),
    ];
    if (vulkan) stagedList.push("lib/libvulkan.so.1");
    stagedList.push(...replaced);
    if (archive) {
      await writeArchive(staging, [...project, ...modules.files], stagedList, name, level, out);
    } else {
      await writeFolder(staging, [...project, ...modules.files], stagedList, out);
    }
    const mb = archive ? Deno.statSync(out).size / 2 ** 20 : undefined;
    console.log(JSON.stringify({
      out,
      ...(mb !== undefined ? { mb: Math.round(mb * 10) / 10 } : {}),
      seconds: Math.round((performance.now() - t0) / 100) / 10,
      ...manifest,
    }));
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
  return 0;
}

if (import.meta.main) await main(pack);
