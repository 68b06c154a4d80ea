/**
 * `deno task bench`: the benchmarks — operators (cli/bench.ts), VJPs (cli/bench_vjp.ts) and
 * whole-loss graphs (cli/bench_loss.ts) — with one set of arguments that reaches every part, every
 * argument checked before anything runs.
 *
 * `--sizes` are image sizes: the operator half runs at them, the VJP half at the latent size of a
 * Stable Diffusion VAE for them (size / 8: 512, 1024 → 64², 128², both halves' defaults).
 * `--only` takes names from either half (operator plugins, VJP sections) or `operators` / `vjp` for a
 * whole half; a half with nothing selected is skipped.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { InputError } from "../core/errors.ts";
import { operatorNames, planOperatorBench, runOperatorBench } from "./bench.ts";
import { planVjpBench, runVjpBench, VJP_NAMES } from "./bench_vjp.ts";
import { checkPriorSelection } from "./bench_prior_vjp.ts";
import { planLossBench, runLossBench } from "./bench_loss.ts";
import { main, parseCli, parseNumber } from "./common.ts";

const USAGE = `Usage: deno task bench [--only LIST] [--sizes 512,1024] [--runs N] [options]

Runs bench:operators (JSON in bench-results/operators.json), bench:vjp (bench-results/vjp.json) and
bench:loss (bench-results/loss.json) with the same arguments; progress with an ETA on stderr.

Options:
  --only LIST       names, comma-separated: operator plugins (blur, sr, inpaint, jpeg, …), VJP
                    sections (sd15, narrow, prior), "operators" / "vjp" for a whole half, "loss"
                    for the whole-loss part; a part with nothing named is skipped (default:
                    everything)
  --sizes LIST      image sizes (default 512,1024); the VJP and loss parts run at size/8 (the SD
                    latent), so they need multiples of 32 from 64
  --runs N          timed runs per measurement (defaults: operators 7, VJP 7 below 128², 5 above)
  --warmup N        untimed runs first (defaults: operators 1, VJP 2)
  --threads N       ORT intra-op threads of the VJP half and the loss part
  --prior SPEC      the prior of the VJP half's prior section (default builtin; as in solve)
  --model DIR       shorthand for --prior diffusers:path=DIR
  --no-reference    skip the SciPy and PyTorch references
  --quiet           no progress bars
  --out-dir DIR     where operators.json and vjp.json go (default bench-results; the task may
                    write only inside bench-results/)

Each half alone: deno task bench:operators --help, deno task bench:vjp --help.
`;

/** The arguments of each half, from `bench`'s own (exported for tests). */
export function splitBenchArgs(
  args: string[],
): { operators?: string[]; vjp?: string[]; loss?: string[] } {
  const { values } = parseCli(args, {
    only: { type: "string" },
    sizes: { type: "string" },
    runs: { type: "string" },
    warmup: { type: "string" },
    threads: { type: "string" },
    "no-reference": { type: "boolean" },
    quiet: { type: "boolean" },
    "out-dir": { type: "string" },
    prior: { type: "string" },
    model: { type: "string" },
  });
  if (values.help) return {};
  const dir = (values["out-dir"] ?? "bench-results").replace(/\/+$/, "");
  const ops = operatorNames(), widths = [...VJP_NAMES];
  let opOnly: string[] | undefined, vjpOnly: string[] | undefined, loss = true;
  if (values.only !== undefined) {
    const names = values.only.split(",").map((s) => s.trim()).filter(Boolean);
    if (!names.length) throw new InputError("--only: expected a comma-separated list of names");
    opOnly = [];
    vjpOnly = [];
    loss = false;
    for (const n of names) {
      if (n === "loss") loss = true;
      else if (n === "operators") opOnly.push(...ops);
      else if (n === "vjp") vjpOnly.push(...widths);
      else if (ops.includes(n)) opOnly.push(n);
      else if (widths.includes(n)) vjpOnly.push(n);
      else {
        throw new InputError(
          `--only ${n}: not an operator plugin (${ops.join(", ")}), a VJP width ` +
            `(${widths.join(", ")}), "operators", "vjp" or "loss"`,
        );
      }
    }
  }
  const sizes = values.sizes?.split(",").map((s) =>
    parseNumber(s, "--sizes", { min: 16, max: 8192, integer: true })
  );
  const common = [
    ...(values.runs !== undefined ? ["--runs", values.runs] : []),
    ...(values.warmup !== undefined ? ["--warmup", values.warmup] : []),
    ...(values["no-reference"] ? ["--no-reference"] : []),
    ...(values.quiet ? ["--quiet"] : []),
  ];
  const out: { operators?: string[]; vjp?: string[]; loss?: string[] } = {};
  if (!opOnly || opOnly.length) {
    out.operators = [
      ...common,
      "--out",
      `${dir}/operators.json`,
      ...(sizes ? ["--sizes", sizes.join(",")] : []),
      ...(opOnly ? ["--only", [...new Set(opOnly)].join(",")] : []),
    ];
  }
  if (vjpOnly && !vjpOnly.length) {
    if (values.threads !== undefined && !loss) {
      throw new InputError("--threads applies to the VJP and loss parts, which --only leaves out");
    }
    for (const flag of ["prior", "model", "plugin"] as const) {
      if (values[flag] !== undefined) {
        throw new InputError(`--${flag} applies to the VJP half, which --only leaves out`);
      }
    }
  }
  const plugins = (values.plugin ?? []).flatMap((p) => ["--plugin", p]);
  if (!vjpOnly || vjpOnly.length) {
    if (sizes) {
      const bad = sizes.find((s) => s % 32 !== 0 || s < 64);
      if (bad !== undefined) {
        throw new InputError(
          `--sizes ${bad}: the VJP half runs at size/8 (the SD latent) and needs multiples of 32 ` +
            `from 64 (or leave it out with --only operators)`,
        );
      }
    }
    out.vjp = [
      ...common,
      "--out",
      `${dir}/vjp.json`,
      ...(sizes ? ["--sizes", sizes.map((s) => s / 8).join(",")] : []),
      ...(vjpOnly ? ["--only", [...new Set(vjpOnly)].join(",")] : []),
      ...(values.threads !== undefined ? ["--threads", values.threads] : []),
      ...(values.prior !== undefined ? ["--prior", values.prior] : []),
      ...(values.model !== undefined ? ["--model", values.model] : []),
      ...plugins,
    ];
  }
  if (loss) {
    out.loss = [
      ...common.filter((a) => a !== "--no-reference"),
      "--out",
      `${dir}/loss.json`,
      ...(sizes ? ["--sizes", sizes.map((s) => s / 8).join(",")] : []),
      ...(values.threads !== undefined ? ["--threads", values.threads] : []),
    ];
  }
  return out;
}

/** Run `bench` with command-line arguments. */
export async function benchAll(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const halves = splitBenchArgs(args);
  // both halves' arguments are checked before either runs
  const operators = halves.operators && planOperatorBench(halves.operators);
  const vjp = halves.vjp && planVjpBench(halves.vjp);
  const loss = halves.loss && planLossBench(halves.loss);
  // the prior too, before anything runs
  if (vjp && vjp.prior) await checkPriorSelection(vjp.prior, vjp.prior.sizes[0]);
  if (operators) await runOperatorBench(operators);
  if (vjp) await runVjpBench(vjp);
  if (loss) await runLossBench(loss);
  return 0;
}

if (import.meta.main) await main(benchAll);
