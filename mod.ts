/**
 * Latent-diffusion and consistency priors for imaging inverse problems, on ONNX Runtime.
 *
 * The public API: the four contracts (ForwardOperator, Prox, Prior, Solver), tensors and seeded
 * streams, the plugin registry and spec strings, the operator contract suite, and the built-in
 * plugins.
 *
 * @example
 * ```ts ignore
 * import { builtinRegistry, createOperator } from "./mod.ts";
 * const op = await createOperator(builtinRegistry(), "blur:sigma=3", [1, 3, 64, 64], 0);
 * ```
 *
 * @module
 */
export * from "./core/tensor.ts";
export * from "./core/rng.ts";
export * from "./core/contracts.ts";
export * from "./core/errors.ts";
export * from "./core/spec.ts";
export * from "./core/registry.ts";
export * from "./core/noise.ts";
export * from "./core/sampling/mod.ts";
export * from "./core/sapg.ts";
export * from "./core/networks.ts";
export * from "./core/context.ts";
export * from "./core/linalg/cg.ts";
export * from "./core/linalg/nonlinear_prox.ts";
export * from "./core/linalg/fft.ts";
export * from "./core/linalg/dct.ts";
export * from "./core/operator_suite.ts";
export * from "./core/linear_operator.ts";
export * from "./core/prox.ts";
export * from "./core/onnx/proto.ts";
export * from "./core/onnx/builder.ts";
export * from "./core/onnx/vjp.ts";
export * from "./core/onnx/graph_tools.ts";
export * from "./core/onnx/external.ts";
export * from "./core/backend/device.ts";
export * from "./core/backend/session.ts";
export * from "./core/backend/pool.ts";
export * from "./core/pipeline/mod.ts";
export * from "./plugins/diffusers/mod.ts";
export * from "./operators/blur.ts";
export * from "./operators/kernels.ts";
export * from "./operators/sr.ts";
export * from "./operators/inpaint.ts";
export * from "./operators/masks.ts";
export * from "./operators/jpeg.ts";
export * from "./core/io/atomic.ts";
export * from "./core/io/npy.ts";
export * from "./core/io/image.ts";
export * from "./core/metrics.ts";
export * from "./core/feature_metrics.ts";
export * from "./core/scene.ts";
export * from "./plugins/builtin-gaussian/mod.ts";

import { PluginRegistry } from "./core/registry.ts";
import { operatorPlugins } from "./operators/mod.ts";
import { solverPlugins } from "./solvers/mod.ts";
import { priorPlugins } from "./plugins/mod.ts";
export { operatorPlugins, priorPlugins, solverPlugins };

/**
 * A registry holding every built-in plugin (operators, priors, solvers). Third-party plugins are
 * added with `registry.register(plugin)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { builtinRegistry } from "./mod.ts";
 * const names = builtinRegistry().list("operator").map((p) => p.name);
 * assert.ok(Array.isArray(names));
 * ```
 */
export function builtinRegistry(): PluginRegistry {
  return new PluginRegistry()
    .registerAll(operatorPlugins, "built-in")
    .registerAll(priorPlugins, "built-in")
    .registerAll(solverPlugins, "built-in");
}
