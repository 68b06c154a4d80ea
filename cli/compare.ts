/**
 * `deno task compare`: run solvers side by side on the same images under the same degradations.
 *
 *   compare --solvers "latino;latino:delta=0.3" --operators "blur:sigma=3;sr:factor=4"
 *           --images DIR|FILE… [--crop HxW] --seeds 0,1 --noise 0.01,0.05 [--prior SPEC]
 *           [--reference NAME] [--lpips M.onnx] [--fid-features M.onnx] [--shard i/n|auto]
 *           --out RUN_DIR
 *
 * Every cell (method × operator × σ_y × image × seed) is computed once; the methods of one
 * (operator, σ_y, image, seed) share its measurement. Results go to RUN_DIR/results.jsonl (one line
 * per finished cell), then summary.md/csv, grids/ and report.html. Re-running with the same
 * configuration skips finished cells; Ctrl-C (or SIGTERM) stops between solver steps after
 * recording the finished cells and writes the reports for them.
 *
 * Exit codes: 0 every cell of this run (shard) ok; 3 some cell failed (recorded with its error);
 * 130 interrupted; 2 bad input (nothing computed); 1 anything else.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { join, resolve, sep } from "node:path";
import { InputError } from "../core/errors.ts";
import type { PluginRegistry } from "../core/registry.ts";
import { createOperator, validateOptions } from "../core/registry.ts";
import { formatSpec, parseSpec } from "../core/spec.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import {
  describePlugins,
  main,
  parseCli,
  parseSize,
  priorSpecFromFlags,
  registryFromFlags,
} from "./common.ts";
import { Progress } from "./progress.ts";
import { baselineUnavailable } from "./compare/baselines.ts";
import { planCells, shardCells } from "./compare/cells.ts";
import {
  type BaselineName,
  BASELINES,
  COMPARE_FORMAT,
  type CompareConfig,
  configDifferences,
  configIdentity,
  type Exclusion,
  fileEntry,
  type ImageEntry,
  listImages,
  type MethodEntry,
  type OperatorEntry,
  parseNumberList,
  parseShard,
  readCleanImage,
  sha256,
  splitList,
} from "./compare/config.ts";
import { FeatureNet, LpipsNet, parseRange } from "./compare/perceptual.ts";
import { writeReports } from "./compare/report.ts";
import { type CellRow, loadResults, ResultsWriter } from "./compare/results.ts";
import { CellProgress, CellRunner, RUN_FILES } from "./compare/runner.ts";
import { runLine } from "./compare/summary.ts";

const USAGE = `Usage: deno task compare --solvers "SPEC;SPEC…" --operators "SPEC;SPEC…"
                         --images DIR|FILE [--images …] --out RUN_DIR [options]

Run every cell solver × operator × σ_y × image × seed, with baselines, and write results.jsonl,
summary.md, summary.csv, grids/*.png and report.html into RUN_DIR. Lists of specs are separated by
";" (specs contain commas). Re-running with the same options resumes (finished cells are skipped).

Options:
  --solvers LIST         solver specs, e.g. "latino;latino:delta=0.3" (required)
  --operators LIST       operator specs, e.g. "blur:sigma=3;sr:factor=4" (required)
  --images DIR|FILE      a folder of images or image files (repeatable, or ";"-separated)
  --crop HxW             centre-crop every image to H×W
  --seeds LIST           seeds, e.g. 0,1 or 0-4 (default 0)
  --noise LIST           σ_y on the [0,1] scale, e.g. 0.01,0.05 (default 0.01)
  --prior SPEC           prior, e.g. builtin or diffusers:path=DIR (default builtin)
  --model DIR            shorthand for --prior diffusers:path=DIR
  --prompt TEXT          prompt for every solver with a prompt option and for the exact posterior
  --device D             auto | cpu | cuda | webgpu (default auto)
  --reference NAME       method the paired differences are taken against (default: first solver)
  --baselines LIST       auto (default: every applicable one), none, or a comma list of
                         measurement, pseudo-inverse, posterior-mean, posterior-sample
  --lpips MODEL.onnx     LPIPS-type network of two [−1,1] images → distance (adds an LPIPS column)
  --fid-features M.onnx  feature network for FID/KID (adds FID and KID per method)
  --fid-range LO,HI      input range of the feature network (default 0,1)
  --shard i/n|auto|auto/n  run part i of n (auto: SLURM_ARRAY_TASK_ID/COUNT, or
                         JOB_COMPLETION_INDEX with auto/n); merge with compare-merge
  --retry-failed         redo cells recorded as failed
  --save-npy             also save every reconstruction as exact float32 .npy
  --out RUN_DIR          run folder (required)
  --quiet                no progress output
  --json                 one JSON line per finished cell on stdout, and a final summary line
  --plugin PATH          load plugins from a module (repeatable); --allow-remote-plugins for URLs
  --debug                stack traces of unexpected errors
  --help                 this text

Exit code: 0 all cells ok, 3 some cell failed (see summary.md), 130 interrupted, 2 bad input.
`;

const OPTIONS = {
  solvers: { type: "string", multiple: true },
  operators: { type: "string", multiple: true },
  images: { type: "string", multiple: true },
  crop: { type: "string" },
  seeds: { type: "string" },
  noise: { type: "string" },
  prior: { type: "string" },
  model: { type: "string" },
  prompt: { type: "string" },
  device: { type: "string" },
  reference: { type: "string" },
  baselines: { type: "string" },
  lpips: { type: "string" },
  "fid-features": { type: "string" },
  "fid-range": { type: "string" },
  shard: { type: "string" },
  "retry-failed": { type: "boolean" },
  "save-npy": { type: "boolean" },
  out: { type: "string" },
  quiet: { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** Default CG settings of the exact posterior baselines. */
export const EXACT_CG = { tol: 1e-6, max_iter: 3000 };

async function toolkitVersion(): Promise<string> {
  try {
    const cfg = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    return String(cfg.version ?? "unknown");
  } catch {
    return "unknown";
  }
}

function hasOption(plugin: { options: unknown }, key: string): boolean {
  const shape = (plugin.options as { shape?: Record<string, unknown> }).shape;
  return !!shape && key in shape;
}

/** Solvers from --solvers (validated; --prompt fills each solver's prompt option). */
function solverEntries(
  registry: PluginRegistry,
  list: string[],
  prompt: string | undefined,
): MethodEntry[] {
  if (!list.length) throw new InputError('--solvers is required, e.g. --solvers "latino"');
  return list.map((label) => {
    const spec = parseSpec(label, "--solvers");
    const plugin = registry.get("solver", spec.name);
    if (prompt !== undefined && hasOption(plugin, "prompt")) {
      if ("prompt" in spec.options) {
        throw new InputError(
          `--solvers ${label}: give the prompt in the spec or with --prompt, not both`,
        );
      }
      spec.options.prompt = prompt;
    }
    const options = validateOptions(plugin, spec.options) as Record<string, unknown>;
    if (BASELINES.includes(label as BaselineName)) {
      throw new InputError(`--solvers: "${label}" is the name of a baseline`);
    }
    return { kind: "solver", label, name: spec.name, options };
  });
}

function baselineNames(value: string | undefined): BaselineName[] {
  if (value === undefined || value.trim() === "auto") return [...BASELINES];
  if (value.trim() === "none") return [];
  const names = value.split(",").map((s) => s.trim()).filter((s) => s);
  for (const n of names) {
    if (!BASELINES.includes(n as BaselineName)) {
      throw new InputError(
        `--baselines: unknown baseline "${n}" (known: ${BASELINES.join(", ")}, auto, none)`,
      );
    }
  }
  return names as BaselineName[];
}

/** Read, hash and measure every image (errors name the file). */
async function imageEntries(
  values: string[],
  crop: [number, number] | null,
): Promise<ImageEntry[]> {
  const out: ImageEntry[] = [];
  for (const { name, path } of await listImages(values)) {
    const { sha256: hash, source } = await fileEntry(path, "--images");
    const x = await readCleanImage(path, crop);
    out.push({ name, sha256: hash, shape: [...x.shape], source });
  }
  return out;
}

/** (method, operator) pairs that cannot run, found by building each operator at each shape. */
async function exclusions(
  registry: PluginRegistry,
  methods: MethodEntry[],
  operators: OperatorEntry[],
  images: ImageEntry[],
  priorName: string,
): Promise<Exclusion[]> {
  const shapes = [...new Map(images.map((i) => [i.shape.join("x"), i.shape])).values()];
  const out = new Map<string, Exclusion>();
  const solvers = await Promise.all(
    methods.filter((m) => m.kind === "solver").map(async (m) => ({
      m,
      s: await registry.get("solver", m.name).create(m.options, {}),
    })),
  );
  for (const opEntry of operators) {
    for (const shape of shapes) {
      const op = await createOperator(registry, opEntry.label, shape, 0);
      const add = (method: string, reason: string) => {
        const k = `${method}\u0000${opEntry.label}`;
        if (!out.has(k)) out.set(k, { method, operator: opEntry.label, reason });
      };
      for (const m of methods) {
        if (m.kind !== "baseline") continue;
        const why = baselineUnavailable(m.name as BaselineName, op, priorName);
        if (why) add(m.label, why);
      }
      for (const { m, s } of solvers) {
        const req = s.requires.operator;
        const why = req
          ? Object.entries(req).filter(([k, v]) =>
            v && !op.capabilities[k as keyof typeof op.capabilities]
          )
          : [];
        if (why.length) add(m.label, `the operator is not ${why.map(([k]) => k).join(", ")}`);
      }
    }
  }
  return [...out.values()];
}

/** Build and check the configuration from the command line (no expensive work). */
async function buildConfig(
  values: ReturnType<typeof parseCli<typeof OPTIONS>>["values"],
  registry: PluginRegistry,
): Promise<CompareConfig> {
  const priorSpec = priorSpecFromFlags(values);
  const priorText = formatSpec(priorSpec);
  const priorPlugin = registry.get("prior", priorSpec.name);
  const priorOptions = validateOptions(priorPlugin, priorSpec.options) as Record<string, unknown>;
  const solvers = solverEntries(registry, splitList(values.solvers, "--solvers"), values.prompt);
  const baselines: MethodEntry[] = baselineNames(values.baselines).map((name) => ({
    kind: "baseline",
    label: name,
    name,
    options: {},
  }));
  const opList = splitList(values.operators, "--operators");
  if (!opList.length) {
    throw new InputError('--operators is required, e.g. --operators "blur:sigma=3"');
  }
  const operators: OperatorEntry[] = opList.map((label) => {
    const spec = parseSpec(label, "--operators");
    const options = validateOptions(registry.get("operator", spec.name), spec.options);
    return { label, name: spec.name, options: options as Record<string, unknown> };
  });
  const noise = parseNumberList(values.noise ?? "0.01", "--noise", { min: 0 });
  const seeds = parseNumberList(values.seeds ?? "0", "--seeds", { integer: true, min: 0 });
  const crop = values.crop !== undefined ? parseSize(values.crop, "--crop") : null;
  if (!values.images?.length) {
    throw new InputError("--images is required (a folder or image files)");
  }
  const images = await imageEntries(splitList(values.images, "--images"), crop);
  const methods = [...solvers, ...baselines];
  const reference = values.reference ?? solvers[0].label;
  if (!methods.some((m) => m.label === reference)) {
    throw new InputError(
      `--reference "${reference}": not one of the methods (${
        methods.map((m) => m.label).join("; ")
      })`,
    );
  }
  const device = values.device ?? "auto";
  const lpips = values.lpips !== undefined ? await fileEntry(values.lpips, "--lpips") : null;
  const fid = values["fid-features"] !== undefined
    ? {
      ...(await fileEntry(values["fid-features"], "--fid-features")),
      range: parseRange(values["fid-range"]),
    }
    : null;
  if (values["fid-range"] !== undefined && !fid) {
    throw new InputError("--fid-range applies to --fid-features only");
  }
  const plugins = await Promise.all(
    (values.plugin ?? []).map((p) =>
      /^https?:\/\//.test(p) ? { sha256: sha256(p), source: p } : fileEntry(p, "--plugin")
    ),
  );
  return {
    format: COMPARE_FORMAT,
    toolkit: await toolkitVersion(),
    methods,
    operators,
    noise,
    seeds,
    images,
    crop,
    prior: { spec: priorText, name: priorSpec.name, options: priorOptions },
    prompt: values.prompt ?? null,
    device,
    reference,
    exact: EXACT_CG,
    lpips,
    fid,
    plugins,
    excluded: await exclusions(registry, methods, operators, images, priorSpec.name),
  };
}

/** Refuse an --out that would overwrite or mix with an input. */
function checkOutDir(outDir: string, config: CompareConfig): void {
  const inputs = [
    ...config.images.map((i) => i.source),
    ...(config.lpips ? [config.lpips.source] : []),
    ...(config.fid ? [config.fid.source] : []),
  ];
  for (const p of inputs) {
    if (resolve(p).startsWith(outDir + sep)) {
      throw new InputError(`--out ${outDir}: the input ${p} lies inside the run folder`);
    }
  }
}

/** Load config.json of an existing run, or undefined. */
export async function readConfig(dir: string): Promise<CompareConfig | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, RUN_FILES.config));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const c = JSON.parse(text) as CompareConfig;
    if (c.format !== COMPARE_FORMAT) throw new Error("format");
    return c;
  } catch {
    throw new InputError(
      `${join(dir, RUN_FILES.config)}: not a compare configuration (${COMPARE_FORMAT})`,
    );
  }
}

/** Run `compare` with command-line arguments. */
export async function compare(args: string[]): Promise<number> {
  const { values } = parseCli(args, OPTIONS);
  if (values.help) {
    console.log(
      USAGE + "\n" +
        describePlugins(await registryFromFlags(values), ["solver", "operator", "prior"]),
    );
    return 0;
  }
  if (!values.out) throw new InputError("--out RUN_DIR is required");
  const outDir = resolve(values.out);
  const shard = parseShard(values.shard, Deno.env.toObject());
  const registry = await registryFromFlags(values);
  const config = await buildConfig(values, registry);
  checkOutDir(outDir, config);

  // New run, or the same configuration as before (resume); anything else is refused.
  const previous = await readConfig(outDir);
  if (previous && configIdentity(previous) !== configIdentity(config)) {
    throw new InputError(
      `--out ${values.out}: holds a run with a different configuration ` +
        `(${configDifferences(previous, config).join(", ")} differ); use a new --out`,
    );
  }
  const resultsPath = join(outDir, RUN_FILES.results);
  if (!previous) {
    try {
      await Deno.stat(resultsPath);
      throw new InputError(
        `--out ${values.out}: has results.jsonl but no config.json; use a new --out`,
      );
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await writeFileAtomic(
      join(outDir, RUN_FILES.config),
      new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
    );
  }
  const loaded = await loadResults(resultsPath);
  const rows = loaded.rows;
  const warnings: string[] = [];
  if (loaded.bad) {
    warnings.push(
      `${loaded.bad} torn line(s) in results.jsonl were dropped (an interrupted write)`,
    );
  }

  const all = planCells(config);
  const mine = shardCells(all, shard);
  const todo = mine.filter((c) => {
    const r = rows.get(c.key);
    return !r || (values["retry-failed"] && r.status === "failed");
  });

  // Perceptual networks and the first model load: failures here are input errors (exit 2).
  const lpips = config.lpips ? await LpipsNet.load(config.lpips.source, config.device) : undefined;
  if (lpips) { for (const img of config.images) lpips.check(img.shape, config.lpips!.source); }
  const fid = config.fid
    ? await FeatureNet.load(config.fid.source, config.device, config.fid.range)
    : undefined;

  const quiet = values.quiet ?? false, json = values.json ?? false;
  const display = new Progress({ enabled: !quiet && !json });
  const progress = new CellProgress(display, todo.length);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) Deno.exit(130); // a second Ctrl-C: stop now (rows on disk are complete)
    controller.abort();
    if (!quiet) {
      console.error("\ninterrupted: finishing the current step, then writing the reports…");
    }
  };
  const sigs: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of sigs) {
    try {
      Deno.addSignalListener(s, onSignal);
    } catch { /* signal not available here */ }
  }
  const writer = await ResultsWriter.open(resultsPath);
  const runner = new CellRunner({
    config,
    registry,
    outDir,
    writer,
    rows,
    progress,
    signal: controller.signal,
    lpips,
    fid,
    saveNpy: values["save-npy"] ?? false,
    onRow: json ? (r) => console.log(JSON.stringify(rowEvent(r))) : undefined,
  });
  let outcome;
  try {
    await runner.prepare(todo);
    if (!quiet && !json && shard) {
      console.error(`shard ${shard.index}/${shard.count}: ${mine.length} of ${all.length} cells`);
    }
    outcome = await runner.run(todo);
  } finally {
    display.stop();
    writer.close();
    for (const s of sigs) {
      try {
        Deno.removeSignalListener(s, onSignal);
      } catch { /* ignore */ }
    }
  }
  const summary = await writeReports(outDir, config, rows, ["compare", ...args], warnings);
  const mineRows = mine.map((c) => rows.get(c.key)).filter((r): r is CellRow => !!r);
  const failed = mineRows.filter((r) => r.status === "failed").length;
  const done = {
    event: "done",
    out: outDir,
    cells: mine.length,
    finished: mineRows.length,
    ran: outcome.ran,
    failed,
    interrupted: outcome.interrupted,
    report: join(outDir, RUN_FILES.report),
  };
  if (json) console.log(JSON.stringify(done));
  else if (!quiet) {
    console.log(
      `${runLine(summary)}: ${mineRows.length}/${mine.length} cells finished ` +
        `(${outcome.ran} now, ${failed} failed${outcome.interrupted ? ", interrupted" : ""})\n` +
        `report: ${done.report}`,
    );
  }
  if (outcome.interrupted) return 130;
  return failed > 0 ? 3 : 0;
}

/** The --json line of a finished cell. */
function rowEvent(r: CellRow): Record<string, unknown> {
  return {
    event: "cell",
    key: r.key,
    method: r.method.label,
    operator: r.operator.label,
    noise: r.noise,
    image: r.image.name,
    seed: r.seed,
    status: r.status,
    error: r.error,
    metrics: r.metrics,
    nfe: r.nfe,
    wall_ms: r.timing.wall_ms,
  };
}

if (import.meta.main) await main(compare);
