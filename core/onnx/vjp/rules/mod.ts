/**
 * The table of gradient rules, by ai.onnx op type.
 *
 * @module
 */
import type { Rule } from "../rule.ts";
import { convRules } from "./conv.ts";
import { elementwiseRules } from "./elementwise.ts";
import { linalgRules } from "./linalg.ts";
import { movementRules } from "./movement.ts";
import { normRules } from "./norm.ts";
import { reduceRules } from "./reduce.ts";

/** Every op type with a gradient rule. */
export const RULES: Readonly<Record<string, Rule>> = {
  ...elementwiseRules,
  ...reduceRules,
  ...movementRules,
  ...linalgRules,
  ...convRules,
  ...normRules,
};

/**
 * Sorted list of differentiable op types.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { supportedOps } from "./mod.ts";
 * assert.ok(supportedOps().includes("Conv"));
 * assert.ok(supportedOps().includes("MatMul"));
 * ```
 */
export function supportedOps(): string[] {
  return Object.keys(RULES).sort();
}
