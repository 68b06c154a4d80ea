/**
 * The table of static shape rules, by ai.onnx op type, one module per op family beside the
 * gradient rules (`../rules/`).
 *
 * @module
 */
import { convShapes } from "./conv.ts";
import { elementwiseShapes } from "./elementwise.ts";
import { linalgShapes } from "./linalg.ts";
import { movementShapes } from "./movement.ts";
import { normShapes } from "./norm.ts";
import { reduceShapes } from "./reduce.ts";
import type { ShapeRule } from "./util.ts";

/** Every op type with a static shape rule. */
export const SHAPE_RULES: Readonly<Record<string, ShapeRule>> = {
  ...elementwiseShapes,
  ...reduceShapes,
  ...movementShapes,
  ...linalgShapes,
  ...convShapes,
  ...normShapes,
};
