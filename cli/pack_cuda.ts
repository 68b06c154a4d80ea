/**
 * The CUDA execution provider for the offline pack (`deno task pack --cuda`).
 *
 * onnxruntime-node's npm package has no CUDA provider: its install script fetches
 * `libonnxruntime_providers_cuda.so` from NuGet (outside npm; Deno runs no install scripts unless
 * allowed). An npm package mirrors ONNX Runtime's official CUDA build:
 * `com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9` holds `libonnxruntime_providers_cuda.so` and
 * `libonnxruntime_providers_shared.so` of ORT 1.29.0, linked against CUDA 13 (`libcudart.so.13`,
 * `libcublas.so.13`, `libcublasLt.so.13`, `libcurand.so.10`, `libcuda.so.1`) and loading cuDNN 9 at
 * run time.
 *
 * ONNX Runtime loads a provider library from the folder of its core library and talks to it through
 * an internal C++ interface that carries no version check; ORT only ships a provider with the core
 * of the same version. Both combinations were tried here without a GPU (stub CUDA libraries that
 * report "no device"; see the issue-16 note): the 1.29 provider beside our 1.30 core and beside a
 * 1.29 core both get as far as `cudaSetDevice` in the provider's constructor. The pack uses the
 * matched pair: the 1.29.0 core `libonnxruntime.so.1` and binding `onnxruntime_binding.node` from
 * npm `onnxruntime-node@1.29.0` replace the 1.30.0 ones (its JavaScript is identical but for the
 * version string, which is patched to tell the truth in run.json). The CUDA/cuDNN runtime libraries
 * stay the machine's (`LD_LIBRARY_PATH`).
 *
 * @module
 */
import { basename, join } from "node:path";
import { InputError } from "../core/errors.ts";

/** An npm tarball the CUDA pack needs, pinned by version and integrity. */
export interface PinnedPackage {
  /** npm name. */
  name: string;
  /** Exact version. */
  version: string;
  /** npm's `dist.integrity` (sha512, base64). */
  integrity: string;
  /** Members to take: path in the tarball → file name in ORT's linux/x64 binary folder. */
  take: Record<string, string>;
}

/** The two packages, pinned (a different tarball under these names is refused). */
export const CUDA_PACKAGES: readonly PinnedPackage[] = [
  {
    name: "onnxruntime-node",
    version: "1.29.0",
    integrity:
      "sha512-WjiVVB72riILz8HbYvxvmjKyE/WmkYoSfKY++axo5jAR609HQg8MwiG/HhShpTcJfmmAdzxxmB+MMST3A+SiPA==",
    take: {
      "package/bin/napi-v6/linux/x64/libonnxruntime.so.1": "libonnxruntime.so.1",
      "package/bin/napi-v6/linux/x64/onnxruntime_binding.node": "onnxruntime_binding.node",
    },
  },
  {
    name: "com.github.asus4.onnxruntime.linux-x64-gpu",
    version: "0.4.9",
    integrity:
      "sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==",
    take: {
      "package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so":
        "libonnxruntime_providers_cuda.so",
      "package/Plugins/Linux/x64/libonnxruntime_providers_shared.so":
        "libonnxruntime_providers_shared.so",
    },
  },
];

/** The ORT version the CUDA pack runs. */
export const CUDA_ORT_VERSION = "1.29.0";

/** File name `npm pack` gives a package's tarball. */
export function tarballName(p: Pick<PinnedPackage, "name" | "version">): string {
  return `${p.name.replace(/^@/, "").replace("/", "-")}-${p.version}.tgz`;
}

async function sha512(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes as BufferSource));
  let bin = "";
  for (const b of d) bin += String.fromCharCode(b);
  return "sha512-" + btoa(bin);
}

function cacheDir(): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined;
    }
  };
  const base = env("XDG_CACHE_HOME") ?? (env("HOME") ? `${env("HOME")}/.cache` : "/tmp");
  return join(base, "latent-inverse", "npm");
}

/** The registry base URL (NPM_CONFIG_REGISTRY, default registry.npmjs.org), with a final `/`. */
function registry(): string {
  let r: string | undefined;
  try {
    r = Deno.env.get("NPM_CONFIG_REGISTRY") ?? Deno.env.get("npm_config_registry");
  } catch { /* no env permission */ }
  r = r || "https://registry.npmjs.org/";
  return r.endsWith("/") ? r : r + "/";
}

/**
 * A pinned tarball's bytes: from `from` (a folder of npm tarballs), else the cache, else the
 * registry (then cached). The integrity is checked every time.
 */
async function tarball(
  p: PinnedPackage,
  from: string | undefined,
  log: (m: string) => void,
): Promise<string> {
  const file = tarballName(p);
  const candidates = from ? [join(from, file)] : [join(cacheDir(), file)];
  for (const path of candidates) {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch {
      continue;
    }
    if (await sha512(bytes) !== p.integrity) {
      throw new InputError(`${path}: not ${p.name}@${p.version} (its sha512 differs from npm's)`);
    }
    return path;
  }
  if (from) {
    throw new InputError(
      `--cuda-from ${from}: no ${file} there (\`npm pack ${p.name}@${p.version}\` makes it)`,
    );
  }
  const url = `${registry()}${p.name}/-/${basename(p.name)}-${p.version}.tgz`;
  log(`downloading ${p.name}@${p.version} (${url})…`);
  let bytes: Uint8Array;
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new InputError(
      `cannot download ${url} (${e instanceof Error ? e.message.split("\n")[0] : e}); ` +
        `put the tarballs in a folder and pass --cuda-from DIR`,
    );
  }
  if (await sha512(bytes) !== p.integrity) {
    throw new InputError(`${url}: the download's sha512 differs from npm's for ${p.version}`);
  }
  const dest = join(cacheDir(), file);
  await Deno.mkdir(cacheDir(), { recursive: true });
  const tmp = `${dest}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, dest);
  return dest;
}

/** onnxruntime-node's package folder inside node_modules, relative to the project root. */
function ortPackageDir(root: string): string {
  for (const e of Deno.readDirSync(join(root, "node_modules", ".deno"))) {
    if (/^onnxruntime-node@/.test(e.name)) {
      return `node_modules/.deno/${e.name}/node_modules/onnxruntime-node`;
    }
  }
  throw new InputError("node_modules has no onnxruntime-node; run `deno install` first");
}

/**
 * Put the CUDA provider and the matching 1.29.0 core into `staging` at their node_modules paths
 * (relative paths added to `replaced`, so the pack takes them instead of the installed ones).
 */
export async function addCudaProvider(
  root: string,
  staging: string,
  options: { from?: string; replaced: Set<string>; log?: (m: string) => void },
): Promise<Record<string, unknown>> {
  const log = options.log ?? (() => {});
  const ort = ortPackageDir(root);
  const binRel = `${ort}/bin/napi-v6/linux/x64`;
  const work = join(staging, "cuda-extract");
  await Deno.mkdir(join(staging, binRel), { recursive: true });
  for (const p of CUDA_PACKAGES) {
    const tgz = await tarball(p, options.from, log);
    await Deno.mkdir(work, { recursive: true });
    const r = await new Deno.Command("tar", {
      args: ["-xzf", tgz, "-C", work, ...Object.keys(p.take)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (r.code !== 0) {
      const err = new TextDecoder().decode(r.stderr).trim().split("\n").pop();
      throw new Error(`tar could not extract ${tgz}: ${err}`);
    }
    for (const [member, fileName] of Object.entries(p.take)) {
      const rel = `${binRel}/${fileName}`;
      await Deno.rename(join(work, member), join(staging, rel));
      await Deno.chmod(join(staging, rel), 0o755);
      options.replaced.add(rel);
    }
    await Deno.remove(work, { recursive: true });
  }
  // The JavaScript of 1.29.0 and 1.30.0 differs only in this string: make run.json tell the truth.
  const versionRel = `${ort}/dist/version.js`;
  const js = await Deno.readTextFile(join(root, versionRel));
  const patched = js.replace(
    /exports\.version = '[^']*'/,
    `exports.version = '${CUDA_ORT_VERSION}'`,
  );
  if (patched === js) throw new Error(`${versionRel}: no version string to set`);
  await Deno.mkdir(join(staging, ort, "dist"), { recursive: true });
  await Deno.writeTextFile(join(staging, versionRel), patched);
  options.replaced.add(versionRel);
  return {
    onnxruntime: CUDA_ORT_VERSION,
    provider: "libonnxruntime_providers_cuda.so (ORT 1.29.0, CUDA 13, cuDNN 9)",
    packages: CUDA_PACKAGES.map((p) => `${p.name}@${p.version}`),
    needsOnTheMachine:
      "NVIDIA driver; CUDA 13 runtime (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, " +
      "libcurand.so.10) and cuDNN 9 on LD_LIBRARY_PATH",
  };
}
