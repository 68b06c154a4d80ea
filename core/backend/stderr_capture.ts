/**
 * Capture what native libraries print to the process's standard error while a piece of work runs.
 *
 * Execution providers print from C++ straight to file descriptor 2, past every JavaScript API:
 * ONNX Runtime logs `[E:onnxruntime:…] Failed to load library …` when a provider library is
 * missing, Dawn (the WebGPU provider) prints `Warning: Vulkan … required` with a source-location
 * line when it refuses a Vulkan device, and Mesa's Vulkan layers print `error: XDG_RUNTIME_DIR is
 * invalid or not set`. Probing a provider must not print any of that on a run that then succeeds
 * on another provider, so the probe runs with fd 2 pointed at an anonymous in-memory file
 * (`memfd_create`, or an unlinked temporary file), and the text is handed back for the caller to
 * summarise in its own words.
 *
 * Written by hand on libc through Deno's FFI (`dup`, `dup2`, `memfd_create`/`mkstemp`, `read`):
 * no npm package redirects a file descriptor. Where that is unavailable (Windows, or no ffi
 * permission) the work runs uncaptured and `captured` is empty.
 *
 * Everything the process writes to stderr meanwhile is captured too (JavaScript's
 * `console.error` included), so keep captured sections short and free of user-facing output.
 * Captures are serialised: a second one waits for the first.
 *
 * @module
 */

/** The libc calls used, bound once. */
interface Libc {
  dup(fd: number): number;
  dup2(fd: number, to: number): number;
  close(fd: number): number;
  read(fd: number, buf: Uint8Array, n: bigint): number | bigint;
  lseek(fd: number, offset: bigint, whence: number): number | bigint;
  tempFd(): number;
}

let libc: Libc | null | undefined;

function bindLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  const os = Deno.build.os;
  if (os !== "linux" && os !== "darwin") return libc;
  try {
    const name = os === "linux" ? "libc.so.6" : "libSystem.B.dylib";
    const lib = Deno.dlopen(name, {
      dup: { parameters: ["i32"], result: "i32" },
      dup2: { parameters: ["i32", "i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
      read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
      lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
      mkstemp: { parameters: ["buffer"], result: "i32" },
      unlink: { parameters: ["buffer"], result: "i32" },
      ...(os === "linux"
        ? { memfd_create: { parameters: ["buffer", "u32"], result: "i32" } } as const
        : {}),
    });
    const s = lib.symbols as typeof lib.symbols & {
      memfd_create?: (name: Uint8Array, flags: number) => number;
    };
    const cstr = (t: string) => new TextEncoder().encode(t + "\0");
    libc = {
      dup: (fd) => s.dup(fd),
      dup2: (fd, to) => s.dup2(fd, to),
      close: (fd) => s.close(fd),
      read: (fd, buf, n) => s.read(fd, buf, n),
      lseek: (fd, off, whence) => s.lseek(fd, off, whence),
      tempFd() {
        if (s.memfd_create) {
          const fd = s.memfd_create(cstr("latent-inverse-stderr"), 0);
          if (fd >= 0) return fd;
        }
        const tmpl = cstr("/tmp/latent-inverse-stderr-XXXXXX");
        const fd = s.mkstemp(tmpl);
        if (fd >= 0) s.unlink(tmpl);
        return fd;
      },
    };
  } catch {
    libc = null; // no ffi permission, or no libc by that name: run uncaptured
  }
  return libc;
}

let queue: Promise<unknown> = Promise.resolve();

/** What {@link captureStderr} returns. */
export interface Captured<T> {
  /** The work's result. */
  value: T;
  /** Everything written to fd 2 meanwhile ("" when capture was not possible). */
  captured: string;
}

/**
 * Run `work` with the process's fd 2 redirected to an in-memory file; restore it and return the
 * result with the captured text. A rejection of `work` is re-thrown after restoring fd 2, with the
 * captured text attached as `captured` on the error object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { captureStderr } from "./stderr_capture.ts";
 * const r = await captureStderr(() => {
 *   console.error("noise from a library");
 *   return Promise.resolve(42);
 * });
 * assert.equal(r.value, 42);
 * // captured where libc and ffi permission are available; uncaptured (empty) elsewhere
 * assert.ok(r.captured === "" || r.captured.includes("noise from a library"));
 * ```
 */
export function captureStderr<T>(work: () => Promise<T>): Promise<Captured<T>> {
  const run = queue.then(() => captureNow(work));
  queue = run.catch(() => {});
  return run;
}

async function captureNow<T>(work: () => Promise<T>): Promise<Captured<T>> {
  const c = bindLibc();
  const tmp = c ? c.tempFd() : -1;
  const saved = tmp >= 0 ? c!.dup(2) : -1;
  if (!c || tmp < 0 || saved < 0 || c.dup2(tmp, 2) < 0) {
    if (c && tmp >= 0) c.close(tmp);
    if (c && saved >= 0) c.close(saved);
    return { value: await work(), captured: "" };
  }
  const restore = (): string => {
    c.dup2(saved, 2);
    c.close(saved);
    const text = readAll(c, tmp);
    c.close(tmp);
    return text;
  };
  let value: T;
  try {
    value = await work();
  } catch (e) {
    const text = restore();
    if (e !== null && typeof e === "object") (e as { captured?: string }).captured = text;
    throw e;
  }
  return { value, captured: restore() };
}

function readAll(c: Libc, fd: number): string {
  c.lseek(fd, 0n, 0);
  const parts: Uint8Array[] = [];
  let total = 0;
  while (total < 1 << 20) {
    const buf = new Uint8Array(65536);
    const n = Number(c.read(fd, buf, BigInt(buf.length)));
    if (n <= 0) break;
    parts.push(buf.subarray(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * The meaningful lines of native stderr noise, without ANSI colours, `Warning:`/`error:` prefixes,
 * ONNX Runtime's `[E:onnxruntime:…]` header and source-location continuation lines.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { noiseLines } from "./stderr_capture.ts";
 * const dawn = "Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.\n" +
 *   " - While initializing adapter (backend=BackendType::Vulkan)\n    at InitializeImpl (x.cpp:253)\n";
 * assert.deepEqual(noiseLines(dawn), ["Vulkan shaderUniform*ArrayDynamicIndexing required."]);
 * ```
 */
export function noiseLines(text: string): string[] {
  // deno-lint-ignore no-control-regex
  const clean = text.replace(/\x1b\[[0-9;]*m/g, "");
  const out: string[] = [];
  for (const raw of clean.split("\n")) {
    const line = raw.trim()
      .replace(/^\d{4}-\d\d-\d\d [0-9:.]+ /, "")
      .replace(/^\[[EWIF]:onnxruntime:[^\]]*\]\s*/, "")
      .replace(/^[^ ]+\.cc:\d+ \S+ /, "")
      .replace(/^(warning|error):\s*/i, "");
    if (line && !/^(-|at) /.test(line)) {
      out.push(line.length > 160 ? line.slice(0, 157) + "…" : line);
    }
  }
  return out;
}

/**
 * The first meaningful line of native stderr noise (see {@link noiseLines}) that does not match
 * `ignore`; "" when there is none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstNoiseLine } from "./stderr_capture.ts";
 * const t = "error: XDG_RUNTIME_DIR is invalid\nWarning: Vulkan feature X required.\n";
 * assert.equal(firstNoiseLine(t, /XDG_RUNTIME_DIR/), "Vulkan feature X required.");
 * ```
 */
export function firstNoiseLine(text: string, ignore?: RegExp): string {
  return noiseLines(text).find((l) => !ignore || !ignore.test(l)) ?? "";
}
