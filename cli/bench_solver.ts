/**
 * `deno task bench:solver`: where a LATINO step's time goes, per step, with the built-in model.
 *
 * For LATINO (8 steps, default options) at each size (512² and 1024² by default) with Gaussian
 * blur σ = 3, SR ×4 and box inpainting — and blur again with a residual δ rule (`sd15-lcm/gaussian`,
 * the shape of the SD presets: δ ∝ ‖A x + σ'n − y'‖) — on the procedural scene, σ_y = 0.01:
 * - step time (the solver's own per-step `ms`), model time (wall time inside the prior's
 *   consistency, decode and encode calls; of which the ONNX sessions' run time, from the prior's
 *   `stats().ms`, is reported too), non-model = step − model, and prox time (the operator's `proxL2` /
 *   `proxL2Adaptive`, less the time the δ rule spends inside it computing df);
 * - in the same run, the time to draw one latent-sized normal tensor (`fillNormal`, the re-noising
 *   draw) and, for the ratio, the same draw with Box–Muller on the same uniforms (the sampler used
 *   before issue 14);
 * - the target of issue 14: non-model − prox ≤ 2 × one latent-sized draw, plus one image-sized draw
 *   when the δ rule uses the residual (its A x is then inside the prox time, sharing the prox's
 *   transforms). The step no longer draws that image-sized noise — df's noise comes from two
 *   scalars with the same law (solvers/latino_step.ts) — so the allowance is left unused; the
 *   ratio shows by how much.
 * The draw is timed right after every step, so each step is judged against a draw under the same
 * load; the target holds when the median over steps of (non-model − prox)/draw is ≤ 2 (3).
 * Medians over steps 2…8 (step 1 also fills the operator's caches). JSON to
 * `bench-results/solver.json` (or `--out`), a table to stdout.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { createOperator, type PluginRegistry, validateOptions } from "../core/registry.ts";
import type { ForwardOperator, Prior, ProxOptions } from "../core/contracts.ts";
import { measure } from "../core/noise.ts";
import { type RandomStream, streams } from "../core/rng.ts";
import { testScene } from "../core/scene.ts";
import { numel, type Tensor } from "../core/tensor.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { InputError } from "../core/errors.ts";
import { latinoOptions, runLatino } from "../solvers/latino.ts";
import { solveContext } from "../core/context.ts";
import { main, parseCli, parseNumber, priorSpecFromFlags, registryFromFlags } from "./common.ts";
import { formatSpec } from "../core/spec.ts";
import { formatTable, summarize, type Timing } from "./bench_util.ts";
import { Progress, type StepProgress } from "./progress.ts";

const USAGE = `Usage: deno task bench:solver [--sizes 512,1024] [--steps 8] [--runs 9] [--only LIST]
                                 [--prior SPEC | --model DIR] [--out PATH] [--quiet]

Per-step model / non-model / prox time of LATINO on a prior (default the built-in model; --prior
SPEC as in solve) for blur, SR, inpainting, and blur with a residual δ rule, against the time of
one latent-sized normal draw in the same run.
--only takes blur, sr, inpaint; --runs counts the draw timings. Progress with an ETA on stderr.
`;

/** The configurations: operator spec and LATINO options. */
const CONFIGS: { name: string; spec: string; latino: Record<string, unknown> }[] = [
  { name: "blur", spec: "blur:kernel=gaussian,sigma=3", latino: {} },
  { name: "sr", spec: "sr:factor=4", latino: {} },
  { name: "inpaint", spec: "inpaint:mask=box", latino: {} },
  {
    name: "blur, residual δ rule",
    spec: "blur:kernel=gaussian,sigma=3",
    latino: { preset: "sd15-lcm/gaussian" },
  },
];

/** Box–Muller on the stream's 53-bit uniforms (both values of a pair), the reference sampler. */
function boxMullerFill(rng: RandomStream, out: Float32Array): void {
  for (let i = 0; i < out.length; i += 2) {
    let u = rng.uniform();
    while (u === 0) u = rng.uniform();
    const v = rng.uniform(), r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
}

/** The operator with its prox timed (time inside `gammaOf` — the δ rule's df — excluded). */
function timedOperator(op: ForwardOperator): { op: ForwardOperator; proxMs: () => number } {
  let ms = 0;
  const timed: ForwardOperator = {
    ...op,
    async proxL2(z: Tensor, y: Tensor, gamma: number, o?: ProxOptions) {
      const t0 = performance.now();
      try {
        return await op.proxL2(z, y, gamma, o);
      } finally {
        ms += performance.now() - t0;
      }
    },
  };
  if (op.prox) {
    // Solvers call the prox bound to y (core/prox.ts proxOf): time that too.
    timed.prox = (y: Tensor) => {
      const bound = op.prox!(y);
      return {
        ...bound,
        async apply(z: Tensor, gamma: number, o?: ProxOptions) {
          const t0 = performance.now();
          try {
            return await bound.apply(z, gamma, o);
          } finally {
            ms += performance.now() - t0;
          }
        },
      };
    };
  }
  if (op.proxL2Adaptive) {
    timed.proxL2Adaptive = async (z, y, gammaOf, o) => {
      let inRule = 0;
      const t0 = performance.now();
      try {
        return await op.proxL2Adaptive!(z, y, (az) => {
          const t1 = performance.now();
          try {
            return gammaOf(az);
          } finally {
            inRule += performance.now() - t1;
          }
        }, o);
      } finally {
        ms += performance.now() - t0 - inRule;
      }
    };
  }
  return { op: timed, proxMs: () => ms };
}

interface StepTimes {
  step: number;
  total: number;
  /** Wall time inside the prior's calls. */
  model: number;
  /** Of which the ONNX sessions' run time (the prior's `stats().ms`). */
  session: number;
  /** One latent-sized normal draw, timed right after the step. */
  draw: number;
  nonModel: number;
  prox: number;
}

/** Run one configuration; per-step times. */
async function runConfig(
  spec: string,
  latino: Record<string, unknown>,
  size: number,
  steps: number,
  prior: Prior,
  registry: PluginRegistry,
  stepProgress?: StepProgress,
): Promise<StepTimes[]> {
  const shape = [1, 3, size, size];
  const base = await createOperator(registry, spec, shape, 0);
  const x = testScene(size, size);
  const y = await measure(base, x, 0.01, streams(0).get("measurement-noise"));
  const { op, proxMs } = timedOperator(base);
  // Model time: wall time inside the prior's calls (its tensor plumbing included), and the
  // sessions' own run time from its stats, for comparison.
  let priorMs = 0;
  const timed = new Set(["consistency", "decode", "encode"]);
  const timedPrior = new Proxy(prior, {
    get(target, key) {
      const v = Reflect.get(target, key);
      if (typeof v !== "function") return v;
      if (!timed.has(String(key))) return v.bind(target);
      return async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await v.apply(target, args);
        } finally {
          priorMs += performance.now() - t0;
        }
      };
    },
  }) as Prior;
  const modelMs = () => priorMs;
  const sessionMs = () => Object.values(prior.stats().ms).reduce((a, b) => a + b, 0);
  const it = runLatino(
    latinoOptions.parse({ steps, ...latino }),
    { y, operator: op, noise: { kind: "gaussian", sigma: 0.01 }, imageShape: shape },
    timedPrior,
    solveContext({ imageShape: shape }, prior, { rng: streams(0).get("solver"), device: "cpu" }),
  );
  const out: StepTimes[] = [];
  // One latent-sized draw timed after every step (the built-in latent is 3×H×W): the budget of
  // that step, measured under the same load.
  const latent = new Float32Array(numel(prior.latentShape(shape)));
  const drawRng = streams(1).get("bench-draw");
  drawRng.fillNormal(latent);
  let model = modelMs(), prox = proxMs(), session = sessionMs();
  while (true) {
    const r = await it.next();
    if (r.done) break;
    stepProgress?.update(r.value);
    const m = modelMs(), p = proxMs(), sm = sessionMs();
    const t0 = performance.now();
    drawRng.fillNormal(latent);
    const draw = performance.now() - t0;
    // The first delta also holds the initial encode (before the step's clock starts): not used.
    out.push({
      step: r.value.step,
      total: r.value.ms,
      model: m - model,
      session: sm - session,
      nonModel: r.value.ms - (m - model),
      prox: p - prox,
      draw,
    });
    model = m;
    prox = p;
    session = sm;
  }
  stepProgress?.done();
  return out;
}

/**
 * One latent-sized normal draw (the stream's ziggurat sampler) and the reference Box–Muller on the
 * same stream's uniforms, alternated run by run so that both see the same load.
 */
function drawTimings(latentValues: number, runs: number) {
  const latent = new Float32Array(latentValues);
  const rng = streams(1).get("bench-draw");
  const tz: number[] = [], tb: number[] = [];
  for (let i = -2; i < runs; i++) {
    let t0 = performance.now();
    rng.fillNormal(latent);
    const a = performance.now() - t0;
    t0 = performance.now();
    boxMullerFill(rng, latent);
    const b = performance.now() - t0;
    if (i >= 0) tz.push(a), tb.push(b);
  }
  const ziggurat: Timing = summarize(tz), boxMuller: Timing = summarize(tb);
  return { ziggurat, boxMuller, speedup: boxMuller.median / ziggurat.median };
}

/** Run the benchmark. */
export async function benchSolver(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    steps: { type: "string" },
    runs: { type: "string" },
    only: { type: "string" },
    prior: { type: "string" },
    model: { type: "string" },
    out: { type: "string" },
    quiet: { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sizes = (values.sizes ?? "512,1024").split(",").map((s) =>
    parseNumber(s, "--sizes", { min: 16, max: 4096, integer: true })
  );
  const steps = parseNumber(values.steps, "--steps", { fallback: 8, min: 3, integer: true });
  const runs = parseNumber(values.runs, "--runs", { fallback: 9, min: 1, integer: true });
  const only = values.only?.split(",").map((s) => s.trim());
  const configs = CONFIGS.filter((c) => !only || only.includes(c.name.split(",")[0]));
  if (only && configs.length === 0) {
    throw new InputError(`--only ${values.only}: expected some of blur, sr, inpaint`);
  }
  const out = values.out ?? "bench-results/solver.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);
  const registry = await registryFromFlags(values); // --plugin: a prior a module provides
  const priorSpec = priorSpecFromFlags(values);
  const priorPlugin = registry.get("prior", priorSpec.name);
  const priorOptions = validateOptions(priorPlugin, priorSpec.options);

  const results: Record<string, unknown>[] = [];
  const rows: string[][] = [[
    "LATINO",
    "size",
    "step ms",
    "model",
    "(sessions)",
    "non-model",
    "prox",
    "non-model − prox",
    "latent draw",
    "budget",
    "(non-model − prox)/draw",
  ]];
  const samplers: Record<string, unknown>[] = [];
  const progress = new Progress({ enabled: !values.quiet });
  const cases = progress.task("solver", sizes.length * configs.length);
  try {
    for (const size of sizes) {
      const imageShape = [1, 3, size, size];
      const prior = await priorPlugin.create(priorOptions, { device: "cpu", imageShape });
      // The draws, same run: one latent-sized tensor and the reference Box–Muller.
      const latentValues = numel(prior.latentShape(imageShape));
      samplers.push({ size, latentValues, ...drawTimings(latentValues, runs) });
      for (const c of configs) {
        const label = `${c.name.split(",")[0]} ${size}²`;
        const per = await runConfig(
          c.spec,
          c.latino,
          size,
          steps,
          prior,
          registry,
          progress.solverSteps({
            parent: cases,
            label,
          }),
        );
        cases.tick({ case: label });
        const used = per.slice(1); // step 1 fills the operator's caches (F(y), Aᵀy)
        const med = (f: (s: StepTimes) => number) => summarize(used.map(f)).median;
        const stepMs = med((s) => s.total), model = med((s) => s.model);
        const session = med((s) => s.session);
        const nonModel = med((s) => s.nonModel), prox = med((s) => s.prox);
        const extra = med((s) => s.nonModel - s.prox), draw = med((s) => s.draw);
        const residualRule = c.latino.preset !== undefined;
        // The allowance for a residual rule: one image-sized draw (the built-in latent is
        // image-sized, so one latent draw), though the step draws df's noise from two scalars. The
        // target is judged step by step against that step's own draw (same load), by the median.
        const draws = residualRule ? 3 : 2;
        const ratio = med((s) => (s.nonModel - s.prox) / s.draw);
        const budget = draws * draw;
        const holds = ratio <= draws;
        results.push({
          config: c.name,
          spec: c.spec,
          latino: c.latino,
          size,
          steps: per,
          median: { step: stepMs, model, session, nonModel, prox, nonModelMinusProx: extra },
          latentDrawMs: draw,
          budgetMs: budget,
          nonModelMinusProxOverDraw: ratio,
          holds,
        });
        rows.push([
          c.name,
          `${size}²`,
          stepMs.toFixed(1),
          model.toFixed(1),
          session.toFixed(1),
          nonModel.toFixed(1),
          prox.toFixed(1),
          extra.toFixed(1),
          draw.toFixed(1),
          `${budget.toFixed(1)}${residualRule ? " (2+1 draws)" : ""}`,
          `${ratio.toFixed(2)} ≤ ${draws}: ${holds ? "yes" : "NO"}`,
        ]);
      }
    }
  } finally {
    cases.done();
    progress.stop();
  }
  console.log(formatTable(rows));
  const samplerRows = [["latent draw", "values", "ziggurat ms", "Box–Muller ms", "speed-up"]];
  for (
    const s of samplers as {
      size: number;
      latentValues: number;
      ziggurat: Timing;
      boxMuller: Timing;
      speedup: number;
    }[]
  ) {
    samplerRows.push([
      `${s.size}²`,
      String(s.latentValues),
      s.ziggurat.median.toFixed(2),
      s.boxMuller.median.toFixed(2),
      `${s.speedup.toFixed(1)}×`,
    ]);
  }
  console.log(`\n${formatTable(samplerRows)}`);
  const report = {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    hardwareConcurrency: navigator.hardwareConcurrency,
    prior: formatSpec(priorSpec),
    steps,
    samplers,
    results,
  };
  await writeFileAtomic(out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  console.log(`wrote ${out}`);
  return 0;
}

if (import.meta.main) await main(benchSolver);
