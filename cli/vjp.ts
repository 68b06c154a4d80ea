/**
 * `deno task vjp`: write the vector–Jacobian-product model of an ONNX model.
 *
 * In the written model the cotangent of output `o` is the new input `o.cotangent`, the gradient of
 * input `x` is the new output `x.grad`, and the original outputs stay. External data stays where
 * it is: the new model references the same data file (written next to it, or hard-linked into
 * the output folder on the same file system — never copied).
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { InputError } from "../core/errors.ts";
import { assertNotInput } from "../core/io/atomic.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import { main, parseCli } from "./common.ts";

const USAGE = `Usage: deno task vjp --model IN.onnx --of OUT1[,OUT2] --wrt IN1[,IN2] --out GRAD.onnx

Writes a model computing the original outputs and the vector–Jacobian products: for every output
o a new input "o.cotangent", for every input x a new output "x.grad" = Σ_o (∂o/∂x)ᵀ o.cotangent.
Only standard ai.onnx ops are emitted (runs on every execution provider).

Options:
  --model PATH        the ONNX model (external data allowed)
  --of LIST           outputs to differentiate (comma-separated)
  --wrt LIST          inputs (or initializers) to differentiate with respect to
  --out PATH          the model to write (must not be the input)
  --shape NAME=DIMS   concrete dims of an input, e.g. --shape sample=1,4,64,64 (repeatable)
  --dim NAME=VALUE    value of a symbolic dim, e.g. --dim height=64 (repeatable; a symbolic
                      leading (batch) axis defaults to 1)
  --shapes MODE       auto (default: static inference, one probing run if needed), static, probe
  --allow-zero-grad   accept --wrt inputs whose gradient is identically zero (integer inputs, or
                      inputs that reach the outputs only through values without a derivative) and
                      write zeros for them; by default they are refused, naming why
  --debug             print stack traces
`;

function list(v: string | undefined, name: string): string[] {
  if (!v) throw new InputError(`${name} is required`);
  const items = v.split(",").map((s) => s.trim()).filter((s) => s);
  if (!items.length) throw new InputError(`${name}: expected a comma-separated list of names`);
  return items;
}

function keyed(values: string[] | undefined, name: string): [string, string][] {
  return (values ?? []).map((s) => {
    const i = s.indexOf("=");
    if (i <= 0) throw new InputError(`${name} "${s}": expected NAME=VALUE`);
    return [s.slice(0, i), s.slice(i + 1)];
  });
}

function ints(v: string, what: string): number[] {
  const parts = v.split(/[,x×]/).map((s) => Number(s.trim()));
  if (!parts.length || parts.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new InputError(`${what} "${v}": expected positive integers, e.g. 1,4,64,64`);
  }
  return parts;
}

/** The tool body (exported for tests). */
export async function run(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    model: { type: "string" },
    of: { type: "string" },
    wrt: { type: "string" },
    out: { type: "string" },
    shape: { type: "string", multiple: true },
    dim: { type: "string", multiple: true },
    shapes: { type: "string" },
    "allow-zero-grad": { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const model = values.model;
  if (!model) throw new InputError("--model is required");
  const out = values.out;
  if (!out) throw new InputError("--out is required");
  if (!out.endsWith(".onnx")) throw new InputError(`--out ${out}: expected a .onnx path`);
  assertNotInput(out, [model]);
  const of = list(values.of, "--of");
  const wrt = list(values.wrt, "--wrt");
  const inputShapes = Object.fromEntries(
    keyed(values.shape, "--shape").map(([k, v]) => [k, ints(v, `--shape ${k}`)]),
  );
  const dims = Object.fromEntries(
    keyed(values.dim, "--dim").map(([k, v]) => [k, ints(v, `--dim ${k}`)[0]]),
  );
  const mode = values.shapes ?? "auto";
  if (!["auto", "static", "probe"].includes(mode)) {
    throw new InputError(`--shapes ${mode}: expected auto, static or probe`);
  }
  const g = await vjpTransform(model, of, wrt, {
    inputShapes,
    dims,
    shapes: mode as "auto" | "static" | "probe",
    allowZeroGrad: values["allow-zero-grad"] ?? false,
  });
  await g.write(out);
  const s = g.stats;
  console.log(
    `wrote ${out}: ${s.forwardNodes} forward + ${s.backwardNodes} backward nodes ` +
      `(${s.activeNodes} differentiated, shapes by ${s.shapeSource}, ${s.ms.toFixed(0)} ms)` +
      (g.externalData ? "; external data referenced, not copied" : ""),
  );
  if (s.zeroGrad.length) {
    console.log(
      `zero gradients (--allow-zero-grad): ${s.zeroGrad.map((x) => g.gradName(x)).join(", ")}`,
    );
  }
  console.log(
    `inputs: ${of.map((o) => g.cotangentName(o)).join(", ")} added; outputs: ` +
      `${wrt.map((x) => g.gradName(x)).join(", ")} added`,
  );
  return 0;
}

if (import.meta.main) main(run);
