/**
 * `deno task solve` / `deno run … solve.ts`: restore an image with a solver, an operator and a prior.
 *
 *   solve.ts --solver latino --operator blur:sigma=3 --noise 0.01 --seed 0
 *            [--input clean.png | --measurement y.png|y.npy [--size HxW]] [--prior SPEC | --model DIR]
 *            [--prompt "…" | --embedding E.npy [--embedding-pooled P.npy]]
 *            [--device auto|cpu|cuda|webgpu] --out DIR
 *
 * Writes into DIR (atomically, never over an input): `measurement.png`, `restored.png`,
 * `restored.npy`, `side_by_side.png` (clean | measurement | restored, or measurement | restored),
 * `run.json` (options, seed, versions, execution provider, NFE per model, timings, metrics) and,
 * for a solver that optimises its conditioning (LATINO-PRO), `embedding.npy` (the
 * `encoder_hidden_states` it ended with) plus `embedding_pooled.npy` (SDXL's `text_embeds`) when
 * the prior takes one — what `--embedding` reads back.
 * Without `--input`/`--measurement` the procedural test scene is used. Progress goes to stderr.
 *
 * @module
 */
import "./cli/gate.ts"; // first: permissions before any native library loads
import { dirname, join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import type { ForwardOperator, Prior, Problem } from "./core/contracts.ts";
import { unmetRequirements } from "./core/contracts.ts";
import { InputError } from "./core/errors.ts";
import { createOperator, type PluginRegistry, validateOptions } from "./core/registry.ts";
import { testScene } from "./core/scene.ts";
import { formatSpec, parseSpec } from "./core/spec.ts";
import { allFinite, numel, sameShape, type Tensor, tensor } from "./core/tensor.ts";
import { assertNotInput, writeFileAtomic } from "./core/io/atomic.ts";
import { writeTensor } from "./core/io/image.ts";
import { decodeNpy, readError, writeNpy } from "./core/io/npy.ts";
import {
  type CliValues,
  type COMMON_OPTIONS,
  DEFAULT_NOISE,
  describePlugins,
  main,
  parseCli,
  parseNumber,
  parseSize,
  priorSpecFromFlags,
  readInput,
  registryFromFlags,
} from "./cli/common.ts";
import { ProgressReporter } from "./cli/progress.ts";
import { Interrupt } from "./cli/interrupt.ts";
import {
  type Baselines,
  baselines,
  checkMetricSize,
  runSolver,
  scoreReconstruction,
  simulate,
  type SolverRun,
} from "./cli/run_problem.ts";

const USAGE = `Usage: deno task solve --solver SPEC --operator SPEC --out DIR [options]

Restore an image. Specs are NAME[:key=value,...], e.g. latino:steps=8 or blur:sigma=3.

Options:
  --solver SPEC        solver and its options (default latino)
  --operator SPEC      forward operator and its options (required)
  --noise SIGMA        measurement noise σ_y on the [0,1] scale (default ${DEFAULT_NOISE}, as in degrade)
  --seed N             run seed; every random draw comes from a named stream of it (default 0)
  --input PATH         clean image (PNG/JPEG/WebP/TIFF or .npy): the measurement is simulated
  --measurement PATH   an existing measurement y (.png or .npy on [0,1]) instead of --input
  --size HxW           image size: the test-scene size (default 256x256), or the unknown image's
                       size with --measurement when it differs from y (e.g. SR)
  --prior SPEC         prior and its options (default builtin), e.g. builtin:lossy=true,
                       diffusers:path=DIR,family=sdxl-dmd2, or a prior from --plugin
  --model DIR          shorthand for --prior diffusers:path=DIR (a diffusers/Optimum ONNX folder)
  --prompt TEXT        prompt for the prior (sets the solver's "prompt" option)
  --embedding FILE     conditioning from a .npy [1,T,D] (encoder_hidden_states) instead of a
                       prompt, e.g. the embedding.npy a latino-pro run wrote; for any solver
  --embedding-pooled FILE
                       SDXL's pooled text_embeds [1,P] for --embedding (default: FILE's
                       sibling <stem>_pooled.npy when the prior takes one)
  --device D           auto | cpu | cuda | webgpu (default auto)
  --out DIR            output folder (required)
  --previews           save a preview PNG of every step in DIR/steps/
  --quiet              no progress bar
  --plugin PATH        load plugins from a module (repeatable); --allow-remote-plugins for URLs
  --help               this text, plus the solvers and operators with their options
`;

const OPTIONS = {
  solver: { type: "string" },
  operator: { type: "string" },
  noise: { type: "string" },
  seed: { type: "string" },
  input: { type: "string" },
  measurement: { type: "string" },
  size: { type: "string" },
  prior: { type: "string" },
  model: { type: "string" },
  prompt: { type: "string" },
  embedding: { type: "string" },
  "embedding-pooled": { type: "string" },
  device: { type: "string" },
  out: { type: "string" },
  previews: { type: "boolean" },
  quiet: { type: "boolean" },
} as const;

/** Nearest-neighbour resize of a [1,C,h,w] tensor to H×W (for the side-by-side picture only). */
function nearest(t: Tensor, h: number, w: number): Tensor {
  const [, c, th, tw] = t.shape;
  const out = tensor([1, c, h, w]);
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h; i++) {
      const si = Math.min(th - 1, Math.floor(i * th / h));
      for (let j = 0; j < w; j++) {
        const sj = Math.min(tw - 1, Math.floor(j * tw / w));
        out.data[(k * h + i) * w + j] = t.data[(k * th + si) * tw + sj];
      }
    }
  }
  return out;
}

/** Concatenate [1,3,H,W] images left to right with a white 4-pixel gap. */
export function sideBySide(images: Tensor[]): Tensor {
  const [, c, h] = images[0].shape;
  const gap = 4;
  const widths = images.map((t) => t.shape[3]);
  const w = widths.reduce((a, b) => a + b, 0) + gap * (images.length - 1);
  const out = tensor([1, c, h, w]);
  out.data.fill(1);
  let x0 = 0;
  for (const img of images) {
    const iw = img.shape[3], ic = img.shape[1];
    for (let k = 0; k < c; k++) {
      const sk = Math.min(k, ic - 1);
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < iw; j++) {
          out.data[(k * h + i) * w + x0 + j] = img.data[(sk * h + i) * iw + j];
        }
      }
    }
    x0 += iw + gap;
  }
  return out;
}

/** The files `solve` writes into `--out` (besides `steps/` with `--previews`). */
const OUTPUT_FILES = [
  "measurement.png",
  "restored.png",
  "restored.npy",
  "side_by_side.png",
  "run.json",
  "embedding.npy",
  "embedding_pooled.npy",
] as const;

/** What each figure of run.json means (stored beside them, for whoever reads the file later). */
const METRICS_GUIDE = {
  psnr: "restored vs the clean image, dB (data range 1)",
  ssim: "restored vs the clean image",
  dataFitPsnr:
    "PSNR(A x̂, y): how well the restoration explains the measurement — a data-fit figure, not " +
    "a quality score; it saturates near 10·log10(1/σ_y²) for anything that fits the noise",
  baselines: "what needs no model, vs the clean image: the measurement y itself (when it has " +
    "the image's shape) and the operator's pseudo-inverse of y (unclamped)",
};

function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch {
    return undefined;
  }
}

/** The outermost folder on the way to `dir` that does not exist yet (what a run would create). */
function firstMissing(dir: string): string | undefined {
  let missing: string | undefined;
  for (let d = dir; statOrUndefined(d) === undefined; d = dirname(d)) {
    missing = d;
    if (dirname(d) === d) break;
  }
  return missing;
}

/** One line for people: the restoration and its baselines vs the clean image, and the data fit. */
function summaryLine(metrics: Record<string, number>, base: Baselines): string {
  const db = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)} dB` : "∞ dB");
  const pair = (b: { psnr: number; ssim: number }) => `${db(b.psnr)} / SSIM ${b.ssim.toFixed(3)}`;
  const fit = `data fit PSNR(A x̂, y) ${db(metrics.dataFitPsnr)} (not a quality score)`;
  if (metrics.psnr === undefined) return `no clean image to score against; ${fit}`;
  const refs = [
    base.measurement ? `measurement ${pair(base.measurement)}` : "",
    base.pseudoInverse
      ? `${base.pseudoInverse.method === "adjoint" ? "adjoint Aᵀy" : "pseudo-inverse"} ${
        pair(base.pseudoInverse)
      }`
      : "",
  ].filter((r) => r);
  return `vs clean: restored ${pair({ psnr: metrics.psnr, ssim: metrics.ssim })}` +
    (refs.length ? `; baselines: ${refs.join(", ")}` : "") + `; ${fit}`;
}

async function toolkitVersion(): Promise<string> {
  try {
    const cfg = JSON.parse(await Deno.readTextFile(new URL("./deno.json", import.meta.url)));
    return String(cfg.version ?? "unknown");
  } catch {
    return "unknown";
  }
}

/** File names of the conditioning a solver ended with (`--embedding` reads them back). */
export const EMBEDDING_FILE = "embedding.npy";
/** SDXL's pooled part of it. */
export const EMBEDDING_POOLED_FILE = "embedding_pooled.npy";
const EHS = "encoder_hidden_states", POOLED = "text_embeds";

/**
 * Read `--embedding` (and SDXL's pooled part when the prior takes `text_embeds`) into conditioning
 * tensors, checked by the prior (names, shapes, finite values; one InputError otherwise).
 */
async function readEmbedding(
  prior: Prior,
  file: string,
  pooledFile: string | undefined,
): Promise<Record<string, Tensor>> {
  const read = async (path: string) => {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw readError(path, e);
    }
    return decodeNpy(bytes, path); // any rank, float32 (float64 files are rounded)
  };
  const tensors: Record<string, Tensor> = { [EHS]: await read(file) };
  const takesPooled = prior.conditioningTensors().some((i) => i.name === POOLED);
  if (pooledFile && !takesPooled) {
    throw new InputError(
      `--embedding-pooled ${pooledFile}: model "${prior.name}" takes no ${POOLED}`,
    );
  }
  if (takesPooled) {
    const sibling = file.replace(/(\.npy)?$/i, "_pooled.npy");
    try {
      tensors[POOLED] = await read(pooledFile ?? sibling);
    } catch (e) {
      if (pooledFile || !(e instanceof InputError) || !/no such file/.test(e.message)) throw e;
      throw new InputError(
        `--embedding ${file}: model "${prior.name}" also takes ${POOLED}; give --embedding-pooled ` +
          `FILE (no ${sibling})`,
      );
    }
  }
  try {
    prior.conditionFromTensors(tensors);
  } catch (e) {
    if (e instanceof InputError) throw new InputError(`--embedding ${file}: ${e.message}`);
    throw e;
  }
  return tensors;
}

/** Write the conditioning a solver ended with (embedding.npy, embedding_pooled.npy). */
async function writeEmbedding(
  outDir: string,
  conditioning: Record<string, Tensor> | undefined,
): Promise<string[]> {
  const written: string[] = [];
  if (!conditioning?.[EHS]) return written;
  await writeNpy(join(outDir, EMBEDDING_FILE), conditioning[EHS]);
  written.push(EMBEDDING_FILE);
  if (conditioning[POOLED]) {
    await writeNpy(join(outDir, EMBEDDING_POOLED_FILE), conditioning[POOLED]);
    written.push(EMBEDDING_POOLED_FILE);
  }
  return written;
}

type Values = CliValues<typeof OPTIONS & typeof COMMON_OPTIONS>;

/** --out is a folder: never an input file, never over one (checked before anything is read). */
function checkOutDir(values: Values): string {
  const outDir = resolve(values.out!);
  if (values.embedding && values.prompt !== undefined) {
    throw new InputError("give either --prompt or --embedding, not both");
  }
  if (values["embedding-pooled"] && !values.embedding) {
    throw new InputError("--embedding-pooled needs --embedding");
  }
  const inputs = [
    values.input,
    values.measurement,
    values.embedding,
    values["embedding-pooled"],
    ...(values.plugin ?? []),
  ].filter((p): p is string => !!p);
  assertNotInput(values.out!, inputs);
  const outStat = statOrUndefined(outDir);
  if (outStat && !outStat.isDirectory) {
    throw new InputError(`--out ${values.out}: is a file; --out names the output folder`);
  }
  for (const f of OUTPUT_FILES) assertNotInput(join(outDir, f), inputs);
  return outDir;
}

/** The solver from --solver (the --prompt flag fills the solver's "prompt" option). */
async function solverFromFlags(registry: PluginRegistry, values: Values) {
  const solverSpec = parseSpec(values.solver ?? "latino", "--solver");
  const promptInSpec = "prompt" in solverSpec.options;
  if (values.prompt !== undefined) {
    if (promptInSpec) {
      throw new InputError("give the prompt either with --prompt or in the solver spec, not both");
    }
    solverSpec.options.prompt = values.prompt;
  }
  const solverPlugin = registry.get("solver", solverSpec.name);
  const options = validateOptions(solverPlugin, solverSpec.options);
  return { solver: await solverPlugin.create(options, {}), options, promptInSpec };
}

/** The problem: clean image (or scene) → operator → measurement, or a given measurement. */
async function problemFromFlags(
  registry: PluginRegistry,
  values: Values,
  sigma: number,
  seed: number,
): Promise<{ op: ForwardOperator; y: Tensor; clean?: Tensor }> {
  const opSpec = parseSpec(values.operator!, "--operator");
  if (values.measurement) {
    const y = await readInput(values.measurement);
    const [h, w] = values.size ? parseSize(values.size) : [y.shape[2], y.shape[3]];
    const op = await createOperator(registry, opSpec, [1, 3, h, w], seed);
    if (!sameShape(op.outputShape, y.shape)) {
      throw new InputError(
        `--measurement ${values.measurement}: shape [${y.shape}] but ${values.operator} on a ` +
          `${h}×${w} image gives [${op.outputShape}] (set --size to the unknown image's HxW)`,
      );
    }
    return { op, y };
  }
  if (values.input && values.size) {
    throw new InputError("--size applies to the test scene or --measurement, not --input");
  }
  const clean = values.input
    ? await readInput(values.input)
    : testScene(...parseSize(values.size ?? "256x256"));
  // the metrics run after every step: an image too small for them is refused now
  checkMetricSize(clean.shape, values.input ? `--input ${values.input}` : `--size ${values.size}`);
  return { ...await simulate(registry, opSpec, clean, sigma, seed), clean };
}

/** Run `solve` with command-line arguments. */
export async function solve(args: string[]): Promise<number> {
  const { values } = parseCli(args, OPTIONS);
  const registry = await registryFromFlags(values);
  if (values.help) {
    console.log(USAGE + "\n" + describePlugins(registry));
    return 0;
  }
  if (!values.operator) throw new InputError("--operator is required (e.g. blur:sigma=3)");
  if (!values.out) throw new InputError("--out DIR is required");
  if (values.input && values.measurement) {
    throw new InputError("give either --input (clean image) or --measurement, not both");
  }
  const outDir = checkOutDir(values);
  const sigma = parseNumber(values.noise, "--noise", { fallback: DEFAULT_NOISE, min: 0 });
  const seed = parseNumber(values.seed, "--seed", { fallback: 0, min: 0, integer: true });
  const device = values.device ?? "auto";

  // Every spec is checked before the image is read or a model loaded.
  const { solver, options: solverOptions, promptInSpec } = await solverFromFlags(registry, values);
  const priorSpec = priorSpecFromFlags(values);
  const priorPlugin = registry.get("prior", priorSpec.name);
  const priorOptions = validateOptions(priorPlugin, priorSpec.options);

  const { op, y, clean } = await problemFromFlags(registry, values, sigma, seed);
  const imageShape = [...op.inputShape];

  const prior: Prior = await priorPlugin.create(priorOptions, { device, imageShape });
  const why = unmetRequirements(solver.requires, op, prior);
  if (why) throw new InputError(`solver "${solver.name}" cannot run here: ${why}`);
  // --embedding: conditioning tensors instead of the prompt, checked against the prior up front.
  let conditioning: Record<string, Tensor> | undefined;
  if (values.embedding) {
    if (promptInSpec) {
      throw new InputError("give either a prompt in the solver spec or --embedding, not both");
    }
    conditioning = await readEmbedding(prior, values.embedding, values["embedding-pooled"]);
  }
  const priorInfo = prior.info?.() ?? {};
  if (!values.quiet && (priorInfo.device || priorInfo.provider)) {
    // e.g. "device auto → cpu (cuda skipped: …; webgpu skipped: …)"
    console.error(String(priorInfo.device ?? `execution provider: ${priorInfo.provider}`));
  }

  // Run, with a progress bar on stderr. Ctrl-C: "stopping after this step…" at once, then exit 130
  // with nothing of this run left behind (cli/interrupt.ts).
  const problem: Problem = { y, operator: op, noise: { kind: "gaussian", sigma }, imageShape };
  const created = firstMissing(outDir); // the folder this run creates, if any
  const stop = new Interrupt();
  if (created) stop.track(created);
  const progress = new ProgressReporter(!values.quiet);
  let run: SolverRun;
  try {
    if (stop.interrupted) return await stop.exitCode(); // pressed while the model loaded
    run = await runSolver(solver, problem, prior, {
      seed,
      device,
      signal: stop.signal,
      previews: values.previews ?? false,
      conditioning,
      onStep: async (ev) => {
        progress.update(ev);
        if (ev.preview) {
          const file = join(outDir, "steps", `step_${String(ev.step).padStart(3, "0")}.png`);
          if (!created) stop.track(file);
          await writeTensor(file, ev.preview);
        }
      },
    });
    progress.stop();
    if (stop.interrupted) return await stop.exitCode(); // pressed during the last step
    const { result, totalMs } = run;
    const x = result.x;
    if (!allFinite(x)) throw new Error(`solver ${solver.name} produced non-finite values`);

    // Metrics, baselines (no model involved) and outputs.
    const scores = await scoreReconstruction(op, x, y, clean);
    const metrics: Record<string, number> = {};
    if (scores.psnr !== undefined) metrics.psnr = scores.psnr;
    if (scores.ssim !== undefined) metrics.ssim = scores.ssim;
    metrics.dataFitPsnr = scores.dataFitPsnr;
    const base = clean ? await baselines(op, y, clean) : {};
    const [, , h, w] = imageShape;
    const yShow = y.shape.length === 4 && y.shape[1] >= 1 ? nearest(y, h, w) : y;
    await writeTensor(join(outDir, "measurement.png"), y);
    await writeTensor(join(outDir, "restored.png"), x);
    await writeTensor(join(outDir, "restored.npy"), x);
    await writeTensor(
      join(outDir, "side_by_side.png"),
      sideBySide(clean ? [clean, yShow, x] : [yShow, x]),
    );
    const written = await writeEmbedding(outDir, result.conditioning);
    const report = {
      toolkit: { version: await toolkitVersion() },
      versions: {
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        onnxruntime: ort.env.versions?.node,
      },
      command: ["solve.ts", ...args],
      seed,
      noise: { kind: "gaussian", sigma, scale: "[0,1]" },
      input: values.input ?? values.measurement ?? `test-scene:${h}x${w}`,
      ...(values.embedding
        ? { embedding: { file: values.embedding, tensors: Object.keys(conditioning ?? {}) } }
        : {}),
      ...(written.length ? { outputs: { conditioning: written } } : {}),
      imageShape,
      operator: { spec: values.operator, name: op.name, options: op.options },
      solver: { name: solver.name, options: solverOptions, info: result.info },
      prior: {
        spec: formatSpec(priorSpec),
        name: prior.name,
        options: priorOptions,
        family: prior.family,
        ...priorInfo,
      },
      nfe: run.nfe,
      vjp: run.vjp,
      modelMs: run.modelMs,
      vjpMs: run.vjpMs,
      timings: { totalMs, steps: run.steps },
      metrics,
      baselines: base,
      metricsGuide: METRICS_GUIDE,
      pixels: numel(imageShape),
    };
    await writeFileAtomic(
      join(outDir, "run.json"),
      new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"),
    );
    if (created) stop.untrack(created);
    if (!values.quiet) console.error(summaryLine(metrics, base));
    console.log(JSON.stringify({
      out: outDir,
      ...metrics,
      baselines: base,
      nfe: run.nfe,
      vjp: run.vjp,
      totalMs,
    }));
    return 0;
  } catch (e) {
    if (stop.interrupted) return await stop.exitCode();
    throw e;
  } finally {
    progress.stop();
    stop.dispose();
  }
}

if (import.meta.main) await main(solve);
