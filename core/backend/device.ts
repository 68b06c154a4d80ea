/**
 * Execution-provider choice for ONNX Runtime (onnxruntime-node).
 *
 * `device` is one of "auto" | "cpu" | "cuda" | "webgpu". Availability is decided by actually
 * creating (and running) a one-node session with that provider; the answer is cached for the
 * process. "auto" tries CUDA, then WebGPU, then CPU and reports why the skipped ones were skipped.
 * Asking explicitly for a provider that does not work is an {@link InputError} that says why.
 *
 * Facts this relies on (onnx.md §1.1–1.3): the npm package ships the CPU and WebGPU providers
 * in its linux-x64 binary; the CUDA provider libraries are downloaded from NuGet by an npm
 * postinstall script (Deno never runs it), and WebGPU on Linux needs the Vulkan loader
 * (`libvulkan.so.1`) and a GPU driver's Vulkan ICD.
 *
 * Probing is quiet: what ONNX Runtime, Dawn and the Vulkan layers print to stderr while a provider
 * is tried is captured (stderr_capture.ts) and summarised once, in our words, in the probe's
 * `reason` (e.g. "no usable WebGPU adapter (Vulkan shaderUniform*ArrayDynamicIndexing
 * required.)"), so a run that falls back to the CPU prints nothing that looks like an error.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../onnx/builder.ts";
import { InputError } from "../errors.ts";
import { captureStderr, firstNoiseLine } from "./stderr_capture.ts";

/** What a user may ask for. */
export type DeviceRequest = "auto" | "cpu" | "cuda" | "webgpu";

/** An ONNX Runtime execution provider this toolkit knows how to use. */
export type ExecutionProvider = "cpu" | "cuda" | "webgpu";

/**
 * The valid values of a device request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEVICE_REQUESTS } from "./device.ts";
 * assert.deepEqual(DEVICE_REQUESTS, ["auto", "cpu", "cuda", "webgpu"]);
 * ```
 */
export const DEVICE_REQUESTS: readonly DeviceRequest[] = ["auto", "cpu", "cuda", "webgpu"];

/** The outcome of probing one provider. */
export interface ProviderProbe {
  /** The provider. */
  provider: ExecutionProvider;
  /** True when a session with it was created and ran. */
  available: boolean;
  /** Why it is not available (empty when it is). */
  reason: string;
}

/** The provider chosen for a device request, with a one-line explanation for stderr. */
export interface DeviceChoice {
  /** What was asked for. */
  request: DeviceRequest;
  /** The provider that will run every model. */
  provider: ExecutionProvider;
  /** E.g. `device auto → cpu (cuda: …; webgpu: …)`. */
  report: string;
}

const probes = new Map<string, Promise<ProviderProbe>>();
const choices = new Map<string, Promise<DeviceChoice>>();

/**
 * First line of an error message, without ORT's source-location prefix, at most 200 chars.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shortError } from "./device.ts";
 * const e = new Error("/ort/src/provider.cc:136 Load() <lambda> Failed to load library x.so\nmore");
 * assert.equal(shortError(e), "Failed to load library x.so");
 * ```
 */
export function shortError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const line = msg.split("\n").map((l) => l.trim()).find((l) => l.length > 0) ?? "unknown error";
  // ORT messages look like "/onnxruntime_src/…/file.cc:136 fn(...) <lambda> actual message".
  const m = /(Failed to[^\n]*|No supported adapters[^\n]*|cannot open[^\n]*)$/.exec(line);
  const out = m ? m[1] : line;
  return out.length > 200 ? out.slice(0, 197) + "…" : out;
}

/** The folder holding onnxruntime-node's native libraries for this platform, if found. */
function bindingDir(): string | undefined {
  try {
    const url = new URL(import.meta.resolve("onnxruntime-node"));
    if (url.protocol !== "file:") return undefined;
    return new URL(`../bin/napi-v6/${Deno.build.os}/${archName()}/`, url).pathname;
  } catch {
    return undefined;
  }
}

function archName(): string {
  return Deno.build.arch === "x86_64" ? "x64" : Deno.build.arch === "aarch64" ? "arm64" : "";
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Cheap reasons to skip a provider in "auto" mode without loading it (loading a missing CUDA
 * provider makes ORT print an error to stderr; a missing Vulkan loader makes Dawn print one).
 * Returns undefined when nothing is known against it.
 */
function precheck(provider: ExecutionProvider): string | undefined {
  if (provider === "cuda") {
    const dir = bindingDir();
    if (dir && !fileExists(dir + "libonnxruntime_providers_cuda.so")) {
      return "the CUDA provider library libonnxruntime_providers_cuda.so is not installed beside " +
        "ONNX Runtime (see README: GPU)";
    }
  }
  if (provider === "webgpu" && Deno.build.os === "linux") {
    let extra: string[] = [];
    try {
      extra = (Deno.env.get("LD_LIBRARY_PATH") ?? "").split(":").filter((d) => d);
    } catch { /* no env permission: look in the standard places only */ }
    const dirs = [
      ...extra,
      "/usr/lib/x86_64-linux-gnu",
      "/usr/lib/aarch64-linux-gnu",
      "/lib/x86_64-linux-gnu",
      "/usr/lib64",
      "/usr/lib",
      "/usr/local/lib",
    ];
    if (!dirs.some((d) => fileExists(`${d}/libvulkan.so.1`))) {
      return "the Vulkan loader libvulkan.so.1 is not installed (WebGPU on Linux runs on Vulkan: " +
        "Debian's libvulkan1 and the GPU driver's Vulkan ICD)";
    }
  }
  return undefined;
}

/** ONNX Runtime session options (the subset this toolkit sets; passed to onnxruntime-node). */
export interface SessionOptions {
  /** Providers in order of preference. */
  executionProviders: string[];
  /** "disabled" | "basic" | "extended" | "layout" | "all". */
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "layout" | "all";
  /** Intra-op thread count. */
  intraOpNumThreads?: number;
  /** "sequential" | "parallel". */
  executionMode?: "sequential" | "parallel";
  /** ONNX Runtime's memory pattern (planned on the first run, allocated from the second). */
  enableMemPattern?: boolean;
  /** 0 verbose … 4 fatal. */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /** Session config entries, nested (e.g. session.intra_op.allow_spinning). */
  extra?: Record<string, unknown>;
  /** External-data files of an in-memory model. */
  externalData?: { path: string; data: Uint8Array }[];
}

/**
 * Session options selecting one provider.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { providerOptions } from "./device.ts";
 * assert.deepEqual(providerOptions("cpu"), { executionProviders: ["cpu"] });
 * ```
 */
export function providerOptions(provider: ExecutionProvider): SessionOptions {
  return { executionProviders: [provider] };
}

/** A one-node model used to probe providers. */
function probeModel(): Uint8Array {
  const g = new GraphBuilder("probe");
  const x = g.input("x", "float32", [1, 4]);
  g.output(g.op("Add", [x, x]), "y", "float32", [1, 4]);
  return g.toBytes();
}

/**
 * Create and run the one-node model on `provider`, with everything the native libraries print to
 * stderr meanwhile captured (stderr_capture.ts): the outcome is reported once, in our words.
 */
async function tryProvider(provider: ExecutionProvider): Promise<ProviderProbe> {
  const { value: error, captured } = await captureStderr(async () => {
    let session: ort.InferenceSession | undefined;
    try {
      session = await ort.InferenceSession.create(probeModel(), {
        ...providerOptions(provider),
        logSeverityLevel: 3,
      });
      const x = new ort.Tensor("float32", new Float32Array([1, 2, 3, 4]), [1, 4]);
      const out = await session.run({ x });
      const y = out.y.data as Float32Array;
      if (y[3] !== 8) throw new Error(`probe computed ${Array.from(y)} instead of 2,4,6,8`);
      return undefined;
    } catch (e) {
      return e;
    } finally {
      await session?.release().catch(() => {});
    }
  });
  if (error === undefined) return { provider, available: true, reason: "" };
  return { provider, available: false, reason: explainFailure(provider, error, captured) };
}

/** The name of a shared library the dynamic loader could not find, from an error message. */
function missingLibrary(text: string): string | undefined {
  return /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(text)?.[1];
}

/**
 * Why a provider failed, in our words: the missing library and what provides it, or the native
 * libraries' own first line when nothing better is known.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { explainFailure } from "./device.ts";
 * const e = new Error("Failed to load library /x/libonnxruntime_providers_cuda.so with error: " +
 *   "libcublasLt.so.13: cannot open shared object file: No such file or directory");
 * assert.match(explainFailure("cuda", e, ""), /CUDA 13 runtime .*libcublasLt\.so\.13/);
 * const d = "Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.\n";
 * assert.match(
 *   explainFailure("webgpu", new Error("Failed to get a WebGPU adapter: No supported adapters"), d),
 *   /no usable WebGPU adapter \(Vulkan shaderUniform/,
 * );
 * ```
 */
export function explainFailure(provider: ExecutionProvider, e: unknown, captured: string): string {
  const message = e instanceof Error ? e.message : String(e);
  // Mesa's layers complain about XDG_RUNTIME_DIR (a display setting, irrelevant to compute).
  const noise = firstNoiseLine(captured, /XDG_RUNTIME_DIR/);
  const lib = missingLibrary(message) ?? missingLibrary(captured);
  if (provider === "cuda" && lib) {
    if (/libonnxruntime_providers/.test(lib)) {
      return `the CUDA provider library ${lib} is not installed beside ONNX Runtime`;
    }
    const cuda = /^lib(cudart|cublas|cublasLt|curand|cufft|nvrtc)\.so\.(\d+)/.exec(lib);
    const what = cuda
      ? `the CUDA ${cuda[2] === "10" ? "" : cuda[2] + " "}runtime`
      : /^libcudnn/.test(lib)
      ? "cuDNN 9"
      : /^libcuda\.so/.test(lib)
      ? "the NVIDIA driver"
      : "a library it needs";
    return `the CUDA provider is installed but ${what} is not found (${lib}: put its folder on ` +
      `LD_LIBRARY_PATH)`;
  }
  if (provider === "cuda" && /CUDA failure 100|no CUDA-capable device/.test(message)) {
    return "the CUDA provider loaded, but no CUDA-capable device is visible";
  }
  if (provider === "webgpu" && /No supported adapters|adapter/i.test(message)) {
    const found = /Found no drivers/i.test(captured)
      ? "the Vulkan loader found no GPU driver; set VK_DRIVER_FILES to the driver's ICD file, " +
        "e.g. nvidia_icd.json"
      : noise;
    return `no usable WebGPU adapter${found ? ` (${found})` : ""}`;
  }
  const short = shortError(e);
  return noise && !short.includes(noise) ? `${short} (${noise})` : short;
}

/**
 * Probe a provider (cached per process). With `precheck` (used by "auto"), providers whose
 * libraries are visibly missing are skipped without trying to load them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { probeProvider } from "./device.ts";
 * const cpu = await probeProvider("cpu"); // always available
 * assert.deepEqual(cpu, { provider: "cpu", available: true, reason: "" });
 * ```
 */
export function probeProvider(
  provider: ExecutionProvider,
  options: { precheck?: boolean } = {},
): Promise<ProviderProbe> {
  if (provider === "cpu") {
    return Promise.resolve({ provider, available: true, reason: "" });
  }
  const key = `${provider}:${options.precheck ? "pre" : "try"}`;
  let p = probes.get(key);
  if (!p) {
    const why = options.precheck ? precheck(provider) : undefined;
    p = why !== undefined
      ? Promise.resolve({ provider, available: false, reason: why })
      : tryProvider(provider).then((r) => {
        // A visibly missing library explains a failure better than the loader's message.
        const hint = r.available ? undefined : precheck(provider);
        return hint ? { ...r, reason: hint } : r;
      });
    probes.set(key, p);
  }
  return p;
}

/**
 * Check a device string and narrow it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDevice } from "./device.ts";
 * assert.equal(parseDevice("cuda"), "cuda");
 * assert.throws(() => parseDevice("gpu"), /expected one of auto, cpu, cuda, webgpu/);
 * ```
 */
export function parseDevice(device: string): DeviceRequest {
  if ((DEVICE_REQUESTS as readonly string[]).includes(device)) return device as DeviceRequest;
  throw new InputError(
    `device "${device}": expected one of ${DEVICE_REQUESTS.join(", ")}`,
  );
}

async function choose(request: DeviceRequest): Promise<DeviceChoice> {
  if (request === "cpu") {
    return { request, provider: "cpu", report: "device cpu → cpu" };
  }
  if (request !== "auto") {
    const probe = await probeProvider(request);
    if (!probe.available) {
      throw new InputError(`device "${request}" is not available: ${probe.reason}`);
    }
    return { request, provider: request, report: `device ${request} → ${request}` };
  }
  const skipped: string[] = [];
  for (const provider of ["cuda", "webgpu"] as const) {
    const probe = await probeProvider(provider, { precheck: true });
    if (probe.available) {
      const why = skipped.length ? ` (${skipped.join("; ")})` : "";
      return { request, provider, report: `device auto → ${provider}${why}` };
    }
    skipped.push(`${provider} skipped: ${probe.reason}`);
  }
  return { request, provider: "cpu", report: `device auto → cpu (${skipped.join("; ")})` };
}

/**
 * Resolve a device request to a provider (cached per process).
 *
 * @example
 * ```ts ignore
 * import { resolveDevice } from "./device.ts";
 * const choice = await resolveDevice("auto");
 * console.error(choice.report); // e.g. "device auto → cpu (cuda skipped: …; webgpu skipped: …)"
 * ```
 */
export function resolveDevice(device: string = "auto"): Promise<DeviceChoice> {
  let request: DeviceRequest;
  try {
    request = parseDevice(device);
  } catch (e) {
    return Promise.reject(e);
  }
  let p = choices.get(request);
  if (!p) {
    p = choose(request);
    choices.set(request, p);
    // An explicit request that failed may succeed later (e.g. after a fix); do not cache failures.
    p.catch(() => choices.delete(request));
  }
  return p;
}
