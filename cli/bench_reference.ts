/**
 * Equal-work NumPy/SciPy references for the operators' proxes, timed call by call INTERLEAVED with
 * ours: a long-running `python3` answers one timed reference call per request, so both sides see
 * the same machine load (on a shared machine, references timed minutes apart drift by 2×).
 *
 * "Equal work" means the same algorithm and the same caching as our prox, written the way NumPy
 * does it best, float32, one thread (BLAS threads pinned to 1; SciPy FFT `workers=1` unless asked):
 * - blur (circular Gaussian σ = 3): u = F⁻¹[(F z + γ conj(K) F y)/(1 + γ|K|²)] with K and the
 *   y-term precomputed (our operator caches F(y)), `scipy.fft.rfft2/irfft2`;
 * - sr (circular bicubic ×f): u = b − γAᵀ(I + γAAᵀ)⁻¹A b, b = γAᵀy + z with Aᵀy precomputed, A
 *   and Aᵀ as 4f strided gathers per axis (what our separable loops do), the low-resolution solve
 *   by `rfft2`;
 * - inpaint (box mask): u = (z + γ m y)/(1 + γ m), NumPy broadcasting over the channels;
 * - fft: `irfft2(rfft2(x))` of one float32 plane (the FFT candidates' reference, `bench:fft`).
 *
 * @module
 */
import { firstLine } from "./common.ts";
import { childEnv } from "./bench_util.ts";

/** One reference case. */
export interface ReferenceCase {
  kind: "blur" | "sr" | "inpaint" | "fft";
  /** Square image size (the height for "fft"). */
  size: number;
  /** Width for "fft" (default: size). */
  width?: number;
  /** SciPy FFT workers (blur, sr). */
  workers?: number;
  /** SR factor. */
  factor?: number;
  /** Prox step γ (default 1). */
  gamma?: number;
}

/** A running reference process; `time` runs one call and returns its wall time in ms. */
export interface ReferenceServer {
  /** Versions reported by the process. */
  readonly info: { scipy: string; numpy: string; python: string };
  /** Time one call of the case (the first request for a case sets it up and warms it up). */
  time(c: ReferenceCase): Promise<number>;
  /** Stop the process. */
  close(): Promise<void>;
}

/**
 * Start the reference process, or explain why it cannot run (no python3, no numpy/scipy).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startReference } from "./bench_reference.ts";
 * const ref = await startReference("/nonexistent/python3");
 * assert.ok("error" in ref);
 * ```
 */
export async function startReference(
  python = "python3",
): Promise<ReferenceServer | { error: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(python, {
      args: ["-u", "-c", SCRIPT],
      // One thread everywhere, as ours: NumPy's BLAS (the SR matmuls) would take every core.
      // without LD_* (Deno refuses a child that would inherit LD_LIBRARY_PATH: bench_util.childEnv)
      env: { ...childEnv(), OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" },
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return { error: `${python}: ${firstLine(e)}` };
  }
  const writer = child.stdin.getWriter();
  const lines = readLines(child.stdout);
  const stderr = new Response(child.stderr).text();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done) {
      const err = (await stderr).trim().split("\n").pop() ?? "";
      throw new Error(`reference process ended: ${err}`);
    }
    return JSON.parse(r.value);
  };
  try {
    const hello = await next();
    const info = { scipy: String(hello.scipy), numpy: String(hello.numpy), python };
    return {
      info,
      async time(c) {
        await writer.write(new TextEncoder().encode(JSON.stringify(c) + "\n"));
        return Number((await next()).ms);
      },
      async close() {
        await writer.close().catch(() => {});
        await child.status;
      },
    };
  } catch (e) {
    await writer.close().catch(() => {});
    await child.status;
    return { error: `${python}: ${firstLine(e)}` };
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

const SCRIPT =
  `# Equal-work NumPy/SciPy references, one timed call per request (interleaved with ours).
import json, sys, time
import numpy as np, scipy, scipy.fft as sfft

def keys(x, a=-0.5):
    t = abs(x)
    if t <= 1: return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2: return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0

def blur_case(n, workers, gamma):
    # circular Gaussian blur σ = 3 (deepinv size rule: c = int(σ/0.3 + 1), 2c+1 taps), kernel
    # spectrum precomputed; y's term γ·conj(K)·F(y) precomputed (as our cache does).
    sigma = 3.0
    c = int(sigma / 0.3 + 1)
    r = np.arange(-c, c + 1)
    g = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma**2)
    g /= g.sum()
    k = np.zeros((n, n), np.float32)
    k[np.ix_(r % n, r % n)] = g
    rng = np.random.default_rng(0)
    z = rng.random((3, n, n), dtype=np.float32)
    y = rng.random((3, n, n), dtype=np.float32)
    K = sfft.rfft2(k, workers=workers)
    Y = (gamma * np.conj(K) * sfft.rfft2(y, workers=workers)).astype(np.complex64)
    den = (1.0 + gamma * np.abs(K) ** 2).astype(np.float32)
    # u = F⁻¹[(F z + γ conj(K) F y) / (1 + γ |K|²)]
    return lambda: sfft.irfft2((sfft.rfft2(z, workers=workers) + Y) / den, s=(n, n), workers=workers)

def sr_case(n, f, workers, gamma):
    # circular bicubic ×f, closed form u = b − γ Aᵀ (I + γAAᵀ)⁻¹ A b, b = γAᵀy + z (Aᵀy cached).
    # A per axis: y[a] = Σ_k taps[k] x[(f a + k − K/2) mod n], K = 4f, written as a matmul over
    # the f phases and 4 shifts (4n multiply-adds per line, the same as our tap loops).
    K = 4 * f
    taps = np.array([keys((j - 2 * f + 0.5) / f) for j in range(K)])
    taps = (taps / taps.sum())[::-1]  # true convolution
    TQ = np.ascontiguousarray(taps.reshape(4, f).T).astype(np.float32)  # TQ[r, q] = taps[f q + r]
    m, off = n // f, K // 2
    def dec(x, ax):  # decimate along axis ax (−1 or −2)
        xr = np.roll(x, off, axis=ax)
        if ax == -1:
            T = xr.reshape(*x.shape[:-1], m, f) @ TQ  # (…, m, 4)
            o = T[..., 0].copy()
            for q in range(1, 4): o += np.roll(T[..., q], -q, axis=-1)
        else:
            T = TQ.T @ xr.reshape(x.shape[0], m, f, x.shape[-1])  # (3, m, 4, c)
            o = T[:, :, 0, :].copy()
            for q in range(1, 4): o += np.roll(T[:, :, q, :], -q, axis=1)
        return o
    def dec_t(v, ax):  # its transpose
        if ax == -1:
            Y = np.stack([np.roll(v, q, axis=-1) for q in range(4)], axis=-1)  # (…, m, 4)
            X = (Y @ TQ.T).reshape(*v.shape[:-1], n)
        else:
            Y = np.stack([np.roll(v, q, axis=1) for q in range(4)], axis=2)  # (3, m, 4, c)
            X = (TQ @ Y).reshape(v.shape[0], n, v.shape[-1])
        return np.roll(X, -off, axis=ax)
    A = lambda x: dec(dec(x, -1), -2)
    At = lambda v: dec_t(dec_t(v, -2), -1)
    # aliased power d(κ) per axis on the low-resolution grid
    H = np.array([np.sum(taps * np.exp(-2j * np.pi * u * (off - np.arange(K)) / n)) for u in range(n)])
    d = (np.abs(H) ** 2).reshape(f, m).sum(0) / f
    inv = (1.0 / (1.0 + gamma * d[:, None] * d[None, : m // 2 + 1])).astype(np.float32)
    rng = np.random.default_rng(0)
    z = rng.random((3, n, n), dtype=np.float32)
    y = rng.random((3, m, m), dtype=np.float32)
    aty = At(y)
    g = np.float32(gamma)
    def prox():
        b = g * aty + z
        w = sfft.irfft2(sfft.rfft2(A(b), workers=workers) * inv, s=(m, m), workers=workers)
        return b - g * At(w)
    return prox

def inpaint_case(n, gamma):
    # box mask (centre half), u = (z + γ m y) / (1 + γ m), m ∈ {0,1} shared by the channels.
    mask = np.ones((n, n), np.float32)
    q = n // 4
    mask[q:n - q, q:n - q] = 0
    rng = np.random.default_rng(0)
    z = rng.random((3, n, n), dtype=np.float32)
    y = rng.random((3, n, n), dtype=np.float32) * mask
    g = np.float32(gamma)
    return lambda: (z + g * mask * y) / (1 + g * mask)

def fft_case(h, w, workers):
    x = np.random.default_rng(0).random((h, w), dtype=np.float32)
    return lambda: sfft.irfft2(sfft.rfft2(x, workers=workers), s=(h, w), workers=workers)

cases = {}
print(json.dumps({"ready": True, "scipy": scipy.__version__, "numpy": np.__version__}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    key = json.dumps(req, sort_keys=True)
    if key not in cases:
        kind, n, w, gamma = req["kind"], req["size"], req.get("workers", 1), req.get("gamma", 1.0)
        cases[key] = (blur_case(n, w, gamma) if kind == "blur" else
                      sr_case(n, req["factor"], w, gamma) if kind == "sr" else
                      fft_case(n, req.get("width", n), w) if kind == "fft" else
                      inpaint_case(n, gamma))
        cases[key]()  # warm-up
    t0 = time.perf_counter()
    out = cases[key]()
    ms = (time.perf_counter() - t0) * 1000
    assert out.dtype == np.float32, out.dtype
    print(json.dumps({"ms": ms}), flush=True)
`;
