/**
 * The interface between the reverse sweep and the per-op gradient rules.
 *
 * A rule receives the forward node, the upstream gradients ḡ_k = ∂L/∂y_k of its outputs (undefined
 * where an output receives none) and adds, for each input x_i that needs one, the contribution
 * ∂L/∂x_i = Σ_k J_{k,i}ᵀ ḡ_k by emitting standard ONNX nodes.
 *
 * @module
 */
import type { NodeProto } from "../proto.ts";
import type { Emitter } from "./emit.ts";
import type { Attrs } from "./graph.ts";

/** Raised by a rule for an attribute variant or input pattern it does not support. */
export class UnsupportedVariant extends Error {}

/** What a rule can see and do. */
export interface RuleCtx {
  /** The forward node. */
  readonly node: NodeProto;
  /** Its decoded attributes. */
  readonly a: Attrs;
  /** The emitter for backward nodes. */
  readonly e: Emitter;
  /** The model's ai.onnx opset. */
  readonly opset: number;
  /** Name of input i ("" when absent). */
  x(i: number): string;
  /** Name of output i. */
  y(i: number): string;
  /** Concrete dims of a tensor. */
  dims(name: string): number[];
  /** Element type of a tensor. */
  dtype(name: string): number;
  /** Values of a small tensor known at transform time (constants, shape plumbing). */
  value(name: string): number[] | undefined;
  /** Whether input i needs a gradient. */
  needs(i: number): boolean;
  /** Upstream gradient of output i, if any reaches it. */
  gy(i?: number): string | undefined;
  /** Add a gradient contribution for input i (dims and type must equal the input's). */
  add(i: number, grad: string): void;
  /**
   * Make the forward node produce its optional output k (e.g. LayerNormalization's saved mean)
   * and return its name.
   */
  forwardOutput(k: number, dims: number[], dtype: number): string;
  /** Abort this rule: the node's variant is unsupported. */
  fail(reason: string): never;
}

/** A gradient rule. */
export type Rule = (c: RuleCtx) => void;
