/**
 * `deno task export-operator`: write an operator's forward map as an ONNX model for one image size
 * (input `x` [1,C,H,W], output `y`), for use in any ONNX pipeline — and, with `--vjp`, the VJP model
 * the transform derives from it (inputs `x`, `y.cotangent`; outputs `y`, `x.grad`).
 *
 * The operator is built from its spec with the run seed exactly as `degrade` and `solve` build it
 * (random masks and motion kernels come from the seed's `operator/NAME` stream), so the exported
 * graph is the operator those commands use. Operators without an ONNX export (a third-party plugin
 * without `exportOnnx`) are refused with one line.
 *
 * Only `--out` (and `--vjp`) and temporary files beside them are written.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { extname } from "node:path";
import { createOperator } from "../core/registry.ts";
import { InputError } from "../core/errors.ts";
import { assertNotInput, writeFileAtomic } from "../core/io/atomic.ts";
import { exportedGraph } from "../core/onnx/exported_operator.ts";
import { vjpTransform } from "../core/onnx/vjp.ts";
import {
  describePlugins,
  main,
  parseCli,
  parseNumber,
  parseSize,
  registryFromFlags,
} from "./common.ts";

const USAGE = `Usage: deno task export-operator --operator SPEC --size HxW --out A.onnx [options]

Write the operator's noiseless forward map y = A(x) as an ONNX model (opset 17, standard ops only)
for images of the given size: input "x" [1,C,H,W], output "y".

Options:
  --operator SPEC     operator spec, e.g. blur:sigma=3, sr:factor=4, inpaint:mask=box
  --size HxW          image size (height x width), e.g. 512x512
  --channels N        image channels (default 3)
  --dtype TYPE        float32 (default) or float64 (float64 needs a separable blur kernel)
  --seed N            run seed for random masks and motion kernels (default 0, as degrade/solve)
  --out PATH          the model (.onnx)
  --vjp PATH          also write its VJP model (.onnx): inputs x, y.cotangent; outputs y, x.grad
  --plugin PATH       load operator plugins from a module (repeatable)
  --allow-remote-plugins  allow --plugin URLs
  --debug             print stack traces of unexpected errors
`;

const OPTIONS = {
  operator: { type: "string" },
  size: { type: "string" },
  channels: { type: "string" },
  dtype: { type: "string" },
  seed: { type: "string" },
  out: { type: "string" },
  vjp: { type: "string" },
} as const;

function onnxPath(path: string, flag: string): string {
  if (extname(path).toLowerCase() !== ".onnx") {
    throw new InputError(`${flag} ${path}: expected a .onnx path`);
  }
  return path;
}

/** Run `export-operator` with command-line arguments. */
export async function exportOperator(args: string[]): Promise<number> {
  const { values } = parseCli(args, OPTIONS);
  if (values.help) {
    console.log(USAGE + "\n" + describePlugins(await registryFromFlags(values), ["operator"]));
    return 0;
  }
  if (!values.operator) {
    throw new InputError("--operator is required (e.g. --operator blur:sigma=3)");
  }
  if (!values.size) throw new InputError("--size is required (e.g. --size 512x512)");
  if (!values.out) throw new InputError("--out is required (a .onnx path)");
  const out = onnxPath(values.out, "--out");
  const vjpOut = values.vjp !== undefined ? onnxPath(values.vjp, "--vjp") : undefined;
  if (vjpOut !== undefined && vjpOut === out) throw new InputError("--vjp must differ from --out");
  const [h, w] = parseSize(values.size);
  const channels = parseNumber(values.channels, "--channels", {
    fallback: 3,
    min: 1,
    integer: true,
  });
  const seed = parseNumber(values.seed, "--seed", { fallback: 0, min: 0, integer: true });
  const dtype = values.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float64") {
    throw new InputError(`--dtype ${dtype}: expected float32 or float64`);
  }
  const inputs = values.plugin ?? [];
  assertNotInput(out, inputs);
  if (vjpOut) assertNotInput(vjpOut, inputs);

  const registry = await registryFromFlags(values);
  const op = await createOperator(registry, values.operator, [1, channels, h, w], seed);
  let model;
  try {
    model = exportedGraph(op, { dtype });
  } catch (e) {
    if (e instanceof RangeError) {
      throw new InputError(`--operator ${values.operator}: ${e.message}`);
    }
    throw e;
  }
  await writeFileAtomic(out, model.bytes);
  let vjpInfo: Record<string, unknown> | undefined;
  if (vjpOut) {
    const g = await vjpTransform(model.bytes, [model.output], [model.input]);
    await writeFileAtomic(vjpOut, g.bytes());
    vjpInfo = {
      vjp: vjpOut,
      cotangent: g.cotangentName(model.output),
      grad: g.gradName(model.input),
    };
  }
  console.log(JSON.stringify({
    operator: values.operator,
    options: op.options,
    seed,
    dtype,
    input: { name: model.input, shape: op.inputShape },
    output: { name: model.output, shape: op.outputShape },
    out,
    ...vjpInfo,
  }));
  return 0;
}

if (import.meta.main) await main(exportOperator);
