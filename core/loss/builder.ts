/**
 * Whole-loss graphs: one ONNX model for a gradient solver's loss, made of prior networks (inlined
 * whole), scheduler formulas (x̂0 = α z_t + β·network output, with α, β fed per step), the decoder,
 * the forward operator (its `exportOnnx` graph) and a norm — differentiated once by the VJP
 * transform, cached in the session pool, run once per step. Each network's forward is computed
 * once per step: the VJP model holds every forward node once and one session run evaluates it.
 *
 * Operators without an ONNX export (third-party plugins) fall back to the chained VJP: the graph
 * ends at the operator's input u, and the tail — A(u), the residual, the norm and their VJP through
 * the operator's TypeScript `vjp` — runs in TypeScript between a forward pass and a backward pass
 * (`"two-phase"`: the networks' forwards still run once; `"recompute"`: the backward repeats them).
 * The numbers are the same.
 *
 * @example
 * ```ts ignore
 * // LDPS's loss ‖y − A(D(ẑ0(z_t)))‖ on the [-1,1] scale, gradient w.r.t. z_t:
 * const b = new LossGraphBuilder("ldps");
 * const z = b.input("z_t", [1, 4, 64, 64]);
 * const [alpha, beta] = [b.scalar("x0_z"), b.scalar("x0_out")];
 * const eps = (await b.network("unet", unet, {
 *   sample: z, timestep: b.inputLike(unet, "timestep"), encoder_hidden_states: b.input("c", [1, 77, 768]),
 * })).out_sample;
 * const z0 = b.lincomb([[z, alpha], [eps, beta]]);                  // x̂0 from ε (sampling layer)
 * const x = (await b.network("vae_decoder", vae, { latent_sample: b.scale(z0, 1 / 0.18215) })).sample;
 * const r = b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", op.outputShape)); // A(x) − y on [0,1]
 * b.loss(b.norm(r, { scale: 2 }));                                     // ‖2r‖ = ‖y' − A(x')‖
 * const loss = await b.build({ key: "ldps/…", wrt: ["z_t"] });
 * const { value, grads } = await loss.lossAndGrad(feeds);              // one run per step
 * ```
 *
 * @module
 */
import { InputError } from "../errors.ts";
import type { ForwardOperator } from "../contracts.ts";
import type { Tensor } from "../tensor.ts";
import type { Feed } from "../backend/session.ts";
import type { ModelSource, SessionPool } from "../backend/pool.ts";
import type { ElemType } from "../onnx/builder.ts";
import { decodeModel, encodeModel } from "../onnx/proto.ts";
import { inlineExternalData } from "../onnx/external.ts";
import { vjpTransform } from "../onnx/vjp.ts";
import {
  elemName,
  GraphComposer,
  type InlineSource,
  inlineSource,
  modelPorts,
} from "../onnx/compose.ts";
import {
  type BackwardMode,
  DifferentiableGraph,
  type GraphStats,
  type GraphTensor,
} from "./differentiable.ts";

/** A value of the graph under construction. */
export interface Value {
  /** Graph value name. */
  readonly name: string;
  /** Dims, when known. */
  readonly dims?: readonly number[];
}

/** The norm of a residual: w·‖s·r‖ (or w·‖s·r‖² when squared). */
export interface NormOptions {
  /** Squared norm (default false, as LDPS/PSLD/SILO's codes: the un-squared norm). */
  squared?: boolean;
  /** s: multiplies the residual first (2 for the [-1,1] scale of [0,1] images). Default 1. */
  scale?: number;
  /** w: multiplies the norm (default 1). */
  weight?: number;
}

/** Options of {@link LossGraphBuilder.build}. */
export interface LossBuildOptions {
  /** Identity of this loss graph (pool key; one build per process). Include every setting. */
  key: string;
  /** Inputs to differentiate with respect to. */
  wrt: string[];
  /** Session pool (default: the process-wide pool). */
  pool?: SessionPool;
  /** Execution provider request (default "auto"). */
  device?: string;
  /** How the operator fallback keeps the forward for its backward (default "two-phase"). */
  fallback?: BackwardMode;
  /**
   * ONNX Runtime graph optimisation (default "all"). Float64 graphs checked to 1e-9 need "basic":
   * the extended level folds scalar multiplications into float32 attributes.
   */
  optimization?: "all" | "basic";
}

const decoded = new Map<string, Promise<InlineSource>>();

/** A network decoded once per process (weights are never read). */
function networkSource(src: ModelSource): Promise<InlineSource> {
  const key = src.key ?? src.path;
  const model = src.path ?? src.bytes;
  if (!key || !model) throw new InputError("network: give a path, or bytes with a key");
  let p = decoded.get(key);
  if (!p) {
    p = inlineSource(model).then((s) => {
      // in-memory external data (a model handed over as bytes + files) is embedded for inlining
      if (src.externalData?.length) inlineExternalData(s.model, src.externalData);
      return s;
    });
    decoded.set(key, p);
    p.catch(() => decoded.delete(key));
  }
  return p;
}

/** Placeholders for the fallback's residual and loss (they live in TypeScript, not the graph). */
const FALLBACK_RESIDUAL = "<fallback residual>";
const FALLBACK_LOSS = "<fallback loss>";

interface Tail {
  op: ForwardOperator;
  u: Value;
  y: Value;
  norm?: Required<NormOptions>;
}

/** What a TypeScript loss tail returns for the graph values it was given. */
export interface TailResult {
  /** The loss value. */
  value: number;
  /** ∂loss/∂value for every value the tail was given (shaped like it). */
  cotangents: Record<string, Tensor>;
  /** Scalars to report beside the loss (e.g. the terms of a weighted sum). */
  extras?: Record<string, number>;
}

/**
 * A loss computed in TypeScript from values of the graph (see {@link LossGraphBuilder.tail}):
 * gets the values (float32, whatever the graph's element type) and the feeds of the step.
 */
export type TailFunction = (
  values: Record<string, Tensor>,
  feeds: Record<string, Feed>,
) => Promise<TailResult>;

interface CustomTail {
  values: Record<string, Value>;
  fn: TailFunction;
}

/** Placeholder for the loss of a custom TypeScript tail. */
const CUSTOM_LOSS = "<custom tail loss>";

/**
 * Builds a whole-loss graph (see the module documentation).
 */
export class LossGraphBuilder {
  /** Element type of the data path. */
  readonly dtype: "float32" | "float64";
  #c: GraphComposer;
  #networks: string[] = [];
  #tail?: Tail;
  #custom?: CustomTail;
  #loss?: Value;
  #shapes: Record<string, number[]> = {};
  #extra: [string, Value][] = [];

  /**
   * @param name graph name
   * @param options element type of inputs, constants and the operator graph (default float32;
   *   float64 needs float64 networks)
   */
  constructor(name: string, options: { dtype?: "float32" | "float64" } = {}) {
    this.dtype = options.dtype ?? "float32";
    this.#c = new GraphComposer(name);
  }

  #v(name: string, dims?: readonly number[]): Value {
    return { name, dims };
  }

  /** A data input of the graph's element type. */
  input(name: string, dims: readonly number[]): Value {
    this.#shapes[name] = [...dims];
    return this.#v(this.#c.input(name, this.dtype, [...dims]), dims);
  }

  /** A scalar input (a per-step coefficient such as √ᾱ_t). */
  scalar(name: string): Value {
    return this.input(name, []);
  }

  /**
   * An input with the element type and dims a network declares for one of its inputs (e.g. the
   * UNet's `timestep`: float32 [] or int64 [1], whatever the export says); symbolic dims become 1.
   */
  async inputLike(net: ModelSource, port: string, name = port): Promise<Value> {
    const src = await networkSource(net);
    const p = modelPorts(src).inputs.find((i) => i.name === port);
    if (!p) throw new InputError(`${net.label ?? net.key ?? net.path}: no input '${port}'`);
    const dims = (p.dims ?? []).map((d) => (typeof d === "number" ? d : 1));
    this.#shapes[name] = dims;
    return this.#v(this.#c.input(name, elemName(p.elemType) as ElemType, dims), dims);
  }

  /** A constant of the graph's element type. */
  constant(values: number | ArrayLike<number>, dims: number[] = []): Value {
    const v = typeof values === "number" ? [values] : values;
    return this.#v(this.#c.constant("k", this.dtype, dims, v), dims);
  }

  /**
   * Inline a network (its forward runs inside this graph); returns its outputs by name.
   *
   * @param name statistics name (e.g. "unet"); also the name prefix inside the graph
   * @param net the model
   * @param inputs every input of the network, wired to values of this graph
   */
  async network(
    name: string,
    net: ModelSource,
    inputs: Record<string, Value>,
  ): Promise<Record<string, Value>> {
    const src = await networkSource(net);
    const wired: Record<string, string> = {};
    for (const [k, v] of Object.entries(inputs)) wired[k] = v.name;
    const outs = this.#c.inline(src, name, wired);
    this.#networks.push(name);
    const res: Record<string, Value> = {};
    for (const [k, v] of Object.entries(outs)) res[k] = this.#v(v);
    return res;
  }

  #k(x: Value | number): string {
    return typeof x === "number" ? this.constant(x).name : x.name;
  }

  /** a + b (broadcasting). */
  add(a: Value, b: Value | number): Value {
    return this.#v(this.#c.op("Add", [a.name, this.#k(b)]), a.dims);
  }
  /** a − b. */
  sub(a: Value, b: Value | number): Value {
    return this.#v(this.#c.op("Sub", [a.name, this.#k(b)]), a.dims);
  }
  /** a · b (elementwise; b may be a scalar value or number). */
  mul(a: Value, b: Value | number): Value {
    return this.#v(this.#c.op("Mul", [a.name, this.#k(b)]), a.dims);
  }
  /** k · a. */
  scale(a: Value, k: number): Value {
    return k === 1 ? a : this.mul(a, k);
  }
  /** k · a + c. */
  affine(a: Value, k: number, c: number): Value {
    const s = this.scale(a, k);
    return c === 0 ? s : this.add(s, c);
  }
  /** Channels [start, end) of an NCHW value (e.g. the mean half of `latent_parameters`). */
  channels(v: Value, start: number, end: number): Value {
    const g = this.#c.g;
    const out = this.#c.op("Slice", [
      v.name,
      g.constI("starts", [start]),
      g.constI("ends", [end]),
      g.constI("axes", [1]),
    ]);
    return this.#v(out, v.dims ? [v.dims[0], end - start, ...v.dims.slice(2)] : undefined);
  }

  /** Σ coefficient_i · value_i (coefficients: scalar inputs or numbers). */
  lincomb(terms: [Value, Value | number][]): Value {
    if (!terms.length) throw new RangeError("lincomb of no terms");
    const parts = terms.map(([v, k]) => (k === 1 ? v : this.mul(v, k)));
    return parts.slice(1).reduce((acc, p) => this.add(acc, p), parts[0]);
  }

  /**
   * J_A(x)ᵀ g inside the graph: the VJP of the operator's ONNX export (built by the VJP transform)
   * inlined, so that it is differentiated again with the rest — for a linear operator this is
   * Aᵀ g (independent of x), e.g. PSLD's gluing x − Aᵀ(A x − y). An operator without an export is
   * an InputError (use {@link tail} for those).
   */
  async operatorVjp(op: ForwardOperator, x: Value, g: Value): Promise<Value> {
    if (!op.exportOnnx) {
      throw new InputError(`operator "${op.name}" has no ONNX export (no in-graph VJP)`);
    }
    const m = op.exportOnnx({ dtype: this.dtype });
    const v = await vjpTransform(m.bytes, [m.output], [m.input]);
    const outs = this.#c.inline({ model: v.model }, `operator_${op.name}_vjp`, {
      [m.input]: x.name,
      [v.cotangentName(m.output)]: g.name,
    });
    return this.#v(outs[v.gradName(m.input)], op.inputShape);
  }

  /**
   * A loss computed in TypeScript from values of this graph, for chains whose operator has no ONNX
   * export but is needed before the end (PSLD's gluing through a third-party operator): the graph
   * returns `values` (a forward pass), `fn` computes the loss and its cotangents w.r.t. them, and
   * the graph's backward finishes (two-phase or recompute, as the operator fallback). The returned
   * placeholder is the loss: pass it to {@link loss} as is.
   */
  tail(values: Record<string, Value>, fn: TailFunction): Value {
    if (this.#tail || this.#custom) throw new InputError("one TypeScript tail per loss graph");
    if (!Object.keys(values).length) throw new InputError("a TypeScript tail needs graph values");
    this.#custom = { values, fn };
    return this.#v(CUSTOM_LOSS, []);
  }

  /**
   * The residual A(x) − y: A inlined from `op.exportOnnx` when the operator has it (in this
   * builder's element type), else the TypeScript fallback (then the residual may only feed the
   * loss's norm).
   */
  residual(op: ForwardOperator, x: Value, y: Value): Value {
    if (op.exportOnnx) {
      const m = op.exportOnnx({ dtype: this.dtype });
      const src: InlineSource = { model: decodeModel(m.bytes) }; // small, self-contained
      const ax = this.#c.inline(src, `operator_${op.name}`, { [m.input]: x.name })[m.output];
      return this.sub(this.#v(ax, op.outputShape), y);
    }
    if (this.#tail || this.#custom) {
      throw new InputError("one operator without an ONNX export per loss graph");
    }
    this.#tail = { op, u: x, y };
    return this.#v(FALLBACK_RESIDUAL, op.outputShape);
  }

  /** The loss's norm of a residual (see {@link NormOptions}); a scalar. */
  norm(r: Value, options: NormOptions = {}): Value {
    const o = { squared: false, scale: 1, weight: 1, ...options };
    if (this.#tail && r.name === FALLBACK_RESIDUAL) {
      this.#tail.norm = o;
      return this.#v(FALLBACK_LOSS, []);
    }
    const s = this.#c.op("ReduceSumSquare", [this.scale(r, o.scale).name], { keepdims: 0 });
    const n = o.squared ? s : this.#c.op("Sqrt", [s]);
    return this.scale(this.#v(n, []), o.weight);
  }

  /** Declare the scalar loss. */
  loss(v: Value): void {
    this.#loss = v;
  }

  /** Also return a value (e.g. x̂0 for the solver's update) as output `name`. */
  output(name: string, v: Value): void {
    this.#extra.push([name, v]);
  }

  /** Compose, differentiate (once per process and key) and wrap the loss graph. */
  async build(options: LossBuildOptions): Promise<LossGraph> {
    if (!this.#loss) throw new InputError("loss graph: declare the loss (builder.loss(norm(…)))");
    const c = this.#c;
    const tail = this.#tail;
    const custom = this.#custom;
    if (custom && this.#loss.name !== CUSTOM_LOSS) {
      throw new InputError("loss graph: a TypeScript tail's result must be the loss");
    }
    if (tail && this.#loss.name !== FALLBACK_LOSS) {
      throw new InputError("loss graph: the fallback operator's residual must feed the loss norm");
    }
    if (tail && !tail.norm) {
      throw new InputError("loss graph: missing norm of the fallback residual");
    }
    const of = tail ? ["operator_input"] : custom ? Object.keys(custom.values) : ["loss"];
    if (custom) {
      for (const [name, v] of Object.entries(custom.values)) {
        c.output(v.name, name, this.dtype, v.dims ? [...v.dims] : undefined);
      }
    } else if (tail) {
      c.output(
        tail.u.name,
        "operator_input",
        this.dtype,
        tail.u.dims ? [...tail.u.dims] : undefined,
      );
    } else c.output(this.#loss.name, "loss", this.dtype, []);
    for (const [name, v] of this.#extra) {
      c.output(v.name, name, this.dtype, v.dims ? [...v.dims] : undefined);
    }
    const composed = c.build();
    const graph = await DifferentiableGraph.create(
      {
        externalData: composed.externalData,
        bytes: () => encodeModel(composed.model),
        write: composed.write,
      },
      {
        key: options.key,
        label: options.key,
        of,
        wrt: options.wrt,
        inputShapes: this.#shapes,
        networks: [...this.#networks],
        pool: options.pool,
        device: options.device,
        optimization: options.optimization,
      },
    );
    return new LossGraph(graph, this.dtype, tail, options.fallback ?? "two-phase", custom);
  }
}

/** The result of one loss evaluation. */
export interface LossAndGrad {
  /** The loss value. */
  value: number;
  /** Gradients by input name. */
  grads: Record<string, GraphTensor>;
  /** Extra outputs declared with `output`. */
  outputs: Record<string, GraphTensor>;
  /** Scalars a TypeScript tail reported beside the loss. */
  extras?: Record<string, number>;
}

function feedData(f: Feed): Float32Array | Float64Array {
  if (f.data instanceof Float32Array || f.data instanceof Float64Array) return f.data;
  return Float64Array.from(f.data as ArrayLike<number>);
}

/** A built whole-loss graph: one run per step gives the loss and its gradients. */
export class LossGraph {
  /** The differentiable graph (its VJP model, sessions and counters). */
  readonly graph: DifferentiableGraph;
  /** Element type. */
  readonly dtype: "float32" | "float64";
  /** How the operator fallback keeps the forward (when there is a fallback). */
  readonly fallbackMode: BackwardMode;
  #tail?: Tail;
  #custom?: CustomTail;

  /** @internal Use {@link LossGraphBuilder.build}. */
  constructor(
    graph: DifferentiableGraph,
    dtype: "float32" | "float64",
    tail: Tail | undefined,
    fallbackMode: BackwardMode,
    custom?: CustomTail,
  ) {
    this.graph = graph;
    this.dtype = dtype;
    this.#tail = tail;
    this.#custom = custom;
    this.fallbackMode = fallbackMode;
  }

  /** Whether part of the loss runs in TypeScript (an operator without an ONNX export). */
  get usesFallback(): boolean {
    return this.#tail !== undefined || this.#custom !== undefined;
  }

  /** Forward pass, TypeScript tail, backward pass. */
  async #customLossAndGrad(custom: CustomTail, feeds: Record<string, Feed>): Promise<LossAndGrad> {
    const pass = await this.graph.begin(feeds, this.fallbackMode);
    const values: Record<string, Tensor> = {}, outputs: Record<string, GraphTensor> = {};
    for (const [k, v] of Object.entries(pass.outputs)) {
      if (k in custom.values) {
        values[k] = {
          data: v.data instanceof Float32Array ? v.data : Float32Array.from(v.data),
          shape: v.shape,
        };
      } else outputs[k] = v;
    }
    const r = await custom.fn(values, feeds);
    const cot: Record<string, Feed> = {};
    for (const k of Object.keys(custom.values)) {
      const g = r.cotangents[k];
      if (!g) throw new InputError(`loss graph: the TypeScript tail gave no cotangent for '${k}'`);
      const data = this.dtype === "float64" ? Float64Array.from(g.data) : g.data;
      cot[k] = { data, shape: g.shape };
    }
    const grads = await pass.backward(cot);
    return { value: r.value, grads, outputs, extras: r.extras };
  }

  /** Counters (session runs, forwards and VJPs per network). */
  stats(): GraphStats {
    return this.graph.stats();
  }

  /**
   * The loss and its gradients w.r.t. the `wrt` inputs: one run of the VJP model (whole graph), or
   * forward → operator in TypeScript → backward (fallback). `feeds` holds every graph input (and
   * `y` for the fallback).
   */
  async lossAndGrad(feeds: Record<string, Feed>): Promise<LossAndGrad> {
    if (this.#custom) return await this.#customLossAndGrad(this.#custom, feeds);
    const tail = this.#tail;
    if (!tail) {
      const one = this.dtype === "float64" ? Float64Array.of(1) : Float32Array.of(1);
      const r = await this.graph.vjp(feeds, { loss: { data: one, shape: [] } });
      const { loss, ...outputs } = r.outputs;
      return { value: loss.data[0], grads: r.grads, outputs };
    }
    const yFeed = feeds[tail.y.name];
    if (!yFeed) throw new InputError(`loss graph: feed '${tail.y.name}' (the measurement)`);
    const graphFeeds = { ...feeds };
    delete graphFeeds[tail.y.name];
    const pass = await this.graph.begin(graphFeeds, this.fallbackMode);
    const { operator_input: u, ...outputs } = pass.outputs;
    const uT: Tensor = { data: Float32Array.from(u.data), shape: u.shape };
    const ax = await tail.op.forward(uT);
    const y = feedData(yFeed);
    const { scale: s, weight: w, squared } = tail.norm!;
    const r = new Float64Array(ax.data.length);
    let ss = 0;
    for (let i = 0; i < r.length; i++) {
      r[i] = s * (ax.data[i] - y[i]);
      ss += r[i] * r[i];
    }
    const value = squared ? w * ss : w * Math.sqrt(ss);
    // ∂loss/∂A(u) = w·s·(2 s r' or s r'/‖s r'‖) with r' = A(u) − y, i.e. in terms of r = s r':
    const k = squared ? 2 * w * s : (ss > 0 ? w * s / Math.sqrt(ss) : 0);
    const g: Tensor = { data: new Float32Array(r.length), shape: [...ax.shape] };
    for (let i = 0; i < r.length; i++) g.data[i] = k * r[i];
    const gu = await tail.op.vjp(uT, g);
    const data = this.dtype === "float64" ? Float64Array.from(gu.data) : gu.data;
    const grads = await pass.backward({ operator_input: { data, shape: gu.shape } });
    return { value, grads, outputs };
  }
}
