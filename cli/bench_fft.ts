/**
 * `deno task bench:fft`: the npm FFT candidates against SciPy, in one run — the measurement behind
 * the choice of PFFFT for the float32 path (`core/linalg/fft32.ts`).
 *
 * For each size (1024² and Kodak's 512×768 by default), the wall time of one real 2-D forward +
 * inverse transform of one plane (what a filter costs, without the pointwise product), medians of
 * N runs after a warm-up, one thread everywhere:
 * - `fft32` — PFFFT (`@echogarden/pffft-wasm`, WASM SIMD), our row/transpose/column driver;
 * - `fft.ts float64` — fft.js (radix-4) + our mixed-radix/Bluestein steps, the float64 path;
 * - `kissfft-wasm` — its own N-d real transform (`kiss_fftndr`, float32), preallocated arrays;
 * - `webfft` — its fastest sub-library after its own profiling (complex, powers of two only), in
 *   our row/column driver with complex transforms;
 * - SciPy `rfft2` + `irfft2` (pocketfft), float32, `workers=1`: the reference of the ratios,
 *   timed call by call interleaved with each candidate (`cli/bench_reference.ts`).
 *
 * Candidates that fail to load are reported with the reason. kissfft-wasm's loader `fetch`es a
 * file path, which Deno (like Node ≥ 18) refuses: the benchmark serves that one path itself, and
 * runs the candidates in this process only.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { rfft2 } from "../core/linalg/fft.ts";
import { rfft2f32 } from "../core/linalg/fft32.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { InputError } from "../core/errors.ts";
import { main, parseCli, parseNumber } from "./common.ts";
import { formatTable, summarize, type Timing } from "./bench_util.ts";
import { startReference } from "./bench_reference.ts";
import { Progress } from "./progress.ts";

const USAGE = `Usage: deno task bench:fft [--sizes 1024x1024,512x768] [--runs 9] [--only LIST]
                              [--out PATH] [--quiet]

Real 2-D forward + inverse FFT of one plane, per npm candidate and SciPy float32 (1 worker), same
run; ratio = candidate / SciPy. JSON to bench-results/fft.json (or --out). --only takes candidate
names: fft32, fft.ts, kissfft-wasm, webfft. Progress with an ETA goes to stderr (--quiet: none).
`;

/** The short name of a candidate (its first word, lower case), for --only. */
function key(c: { name: string }): string {
  return c.name.split(" ")[0].toLowerCase();
}

/** One candidate: set up for h×w, then a function running forward + inverse once. */
interface Candidate {
  name: string;
  precision: "float32" | "float64";
  setup(h: number, w: number): Promise<() => void>;
}

function randomPlane(n: number): Float32Array {
  let s = 12345;
  return Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32));
}

const candidates: Candidate[] = [
  {
    name: "fft32 (pffft-wasm SIMD)",
    precision: "float32",
    setup(h, w) {
      // Off PFFFT's sizes (2^a·3^b·5^c, multiples of 32 × 16) this is fft32's float64 fallback.
      const p = rfft2f32(h, w), x = randomPlane(h * w), out = new Float32Array(h * w);
      return Promise.resolve(() => {
        p.forward(x);
        p.inverse(out);
      });
    },
  },
  {
    name: "fft.ts float64 (fft.js + mixed radix)",
    precision: "float64",
    setup(h, w) {
      const p = rfft2(h, w), x = Float64Array.from(randomPlane(h * w));
      const re = new Float64Array(h * p.wh), im = new Float64Array(h * p.wh);
      return Promise.resolve(() => {
        p.forward(x, re, im);
        p.inverse(re, im, x);
      });
    },
  },
  {
    name: "kissfft-wasm 1.1.2 (kiss_fftndr)",
    precision: "float32",
    async setup(h, w) {
      const kiss = await loadKiss();
      const fwd = new kiss.RealFFTNDConfig([h, w]), inv = new kiss.InverseRealFFTNDConfig([h, w]);
      const x = kiss.RealArray.fromDataArray(randomPlane(h * w));
      const spec = new kiss.ComplexArray(h * w); // its check wants h·w; h·(w/2+1) are written
      return () => {
        fwd.work(x, spec);
        inv.work(spec, x);
      };
    },
  },
  {
    name: "webfft 1.0.3 (fastest sub-library, complex)",
    precision: "float32",
    async setup(h, w) {
      const pow2 = (n: number) => (n & (n - 1)) === 0;
      if (!pow2(h) || !pow2(w)) throw new Error("powers of two only");
      const mod = await import("webfft");
      const WebFFT = (mod as { default: new (n: number) => WebFft }).default;
      const rowFft = new WebFFT(w), colFft = h === w ? rowFft : new WebFFT(h);
      const silent = console.log;
      console.log = () => {}; // its profiler prints its choice
      try {
        rowFft.profile(0.5);
        if (colFft !== rowFft) colFft.profile(0.5);
      } finally {
        console.log = silent;
      }
      // Complex 2-D of the real plane (imaginary 0), rows then columns, forward and inverse.
      const x = randomPlane(h * w), row = new Float32Array(2 * w), col = new Float32Array(2 * h);
      const re = new Float32Array(h * w), im = new Float32Array(h * w);
      const pass = (inverse: boolean) => {
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) {
            row[2 * j] = inverse ? re[i * w + j] : x[i * w + j];
            row[2 * j + 1] = inverse ? -im[i * w + j] : 0;
          }
          const r = rowFft.fft(row);
          for (let j = 0; j < w; j++) {
            re[i * w + j] = r[2 * j];
            im[i * w + j] = r[2 * j + 1];
          }
        }
        for (let j = 0; j < w; j++) {
          for (let i = 0; i < h; i++) {
            col[2 * i] = re[i * w + j];
            col[2 * i + 1] = im[i * w + j];
          }
          const c = colFft.fft(col);
          for (let i = 0; i < h; i++) {
            re[i * w + j] = c[2 * i];
            im[i * w + j] = c[2 * i + 1];
          }
        }
      };
      return () => {
        pass(false);
        pass(true);
      };
    },
  },
];

interface WebFft {
  fft(x: Float32Array): Float32Array;
  profile(seconds: number): unknown;
}

interface KissModule {
  RealFFTNDConfig: new (dims: number[]) => { work(a: unknown, b: unknown): void };
  InverseRealFFTNDConfig: new (dims: number[]) => { work(a: unknown, b: unknown): void };
  RealArray: { fromDataArray(a: Float32Array): unknown };
  ComplexArray: new (n: number) => unknown;
}

let kissModule: Promise<KissModule> | null = null;

/** kissfft-wasm, with its wasm file served to its `fetch(path)` (refused by Deno otherwise). */
function loadKiss(): Promise<KissModule> {
  return kissModule ??= (async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      const s = String(input);
      if (s.startsWith("/") && s.endsWith("kissfft.wasm")) {
        const headers = { "content-type": "application/wasm" };
        return Promise.resolve(new Response(Deno.readFileSync(s), { headers }));
      }
      return realFetch(input, init);
    }) as typeof fetch;
    try {
      const loader = await import("kissfft-wasm/lib/wasm.js") as unknown as {
        waitLoading(): Promise<void>;
      };
      await loader.waitLoading();
      return await import("kissfft-wasm") as unknown as KissModule;
    } finally {
      globalThis.fetch = realFetch;
    }
  })();
}

/** Run the candidate benchmark. */
export async function benchFft(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    out: { type: "string" },
    only: { type: "string" },
    quiet: { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sizes = (values.sizes ?? "1024x1024,512x768").split(",").map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) throw new InputError(`--sizes ${s}: expected HxW, e.g. 512x768`);
    return [+m[1], +m[2]] as [number, number];
  });
  const runs = parseNumber(values.runs, "--runs", { fallback: 9, min: 1, integer: true });
  const out = values.out ?? "bench-results/fft.json";
  const only = values.only?.split(",").map((x) => x.trim()).filter(Boolean);
  const bad = only?.find((n) => !candidates.some((c) => key(c) === n));
  if (bad !== undefined) {
    throw new InputError(`--only ${bad}: expected some of ${candidates.map(key).join(", ")}`);
  }
  const chosen = candidates.filter((c) => !only || only.includes(key(c)));
  const progress = new Progress({ enabled: !values.quiet });
  const cases = progress.task("fft", sizes.length * chosen.length);
  const results: Record<string, unknown>[] = [];
  const server = await startReference();
  const rows: string[][] = [["candidate", "precision", "size", "fwd+inv ms", "scipy ms", "ratio"]];
  try {
    for (const [h, w] of sizes) {
      for (const c of chosen) {
        cases.update(cases.value, { case: `${key(c)} ${h}×${w}` });
        let ours: Timing | null = null, scipy: Timing | null = null, skipped: string | undefined;
        try {
          const run = await c.setup(h, w);
          // Candidate and SciPy alternate call by call, so both see the same load.
          const a: number[] = [], b: number[] = [];
          for (let i = -2; i < runs; i++) {
            const t0 = performance.now();
            run();
            const t = performance.now() - t0;
            const r = "error" in server
              ? NaN
              : await server.time({ kind: "fft", size: h, width: w });
            if (i >= 0) a.push(t), b.push(r);
          }
          ours = summarize(a);
          scipy = "error" in server ? null : summarize(b);
        } catch (e) {
          skipped = e instanceof Error ? e.message : String(e);
        }
        const ratio = ours && scipy ? ours.median / scipy.median : null;
        const engine = c.name.startsWith("fft32") ? rfft2f32(h, w).engine : undefined;
        results.push({
          candidate: c.name,
          engine,
          precision: c.precision,
          h,
          w,
          ours,
          scipy,
          ratio,
          skipped,
        });
        rows.push([
          engine && engine !== "pffft" ? `${c.name} → ${engine}` : c.name,
          c.precision,
          `${h}×${w}`,
          ours ? ours.median.toFixed(2) : `skipped: ${skipped}`,
          scipy ? scipy.median.toFixed(2) : "-",
          ratio?.toFixed(2) ?? "-",
        ]);
        cases.tick({ case: `${key(c)} ${h}×${w}` });
      }
    }
  } finally {
    cases.done();
    progress.stop();
    if (!("error" in server)) await server.close();
  }
  console.log(formatTable(rows));
  if ("error" in server) console.log(`SciPy reference skipped: ${server.error}`);
  const report = {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    runs,
    reference: "error" in server ? { error: server.error } : server.info,
    results,
  };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  console.log(`wrote ${out}`);
  return 0;
}

if (import.meta.main) await main(benchFft);
