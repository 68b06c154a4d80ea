/**
 * A differentiable ONNX graph in the session pool: one model, its VJP model built once, and the
 * two ways of getting gradients when the cotangent is known only after the forward:
 *
 * - `vjp(feeds, cotangents)`: one run of the VJP model (forward + backward, each node once) — for
 *   whole-loss graphs, whose cotangent (1 for the scalar loss) is known up front;
 * - `begin(feeds, mode)` → outputs now, `backward(cotangents)` later:
 *   - `"two-phase"`: phase 1 computes the outputs and returns the activations the backward needs,
 *     phase 2 consumes them (each forward node runs once; the activations are held between the
 *     phases);
 *   - `"recompute"`: a plain forward now, the full VJP model later (the forward runs twice; nothing
 *     is held).
 *
 * The three give the same numbers (the same nodes run on the same inputs). Counters record how
 * often each inlined network's forward and backward ran, so a solver (and its tests) can prove
 * "each network's forward once per step".
 *
 * @module
 */
import { InputError } from "../errors.ts";
import { type SessionPool, sessionPool } from "../backend/pool.ts";
import type { Feed, ModelSession, RawTensor } from "../backend/session.ts";
import { encodeModel, type IModelProto } from "../onnx/proto.ts";
import { writeModel } from "../onnx/external.ts";
import { splitTwoPhase, type TwoPhaseModels } from "../onnx/two_phase.ts";
import { materializeModel, type VjpGraph, vjpTransform, type WritableModel } from "../onnx/vjp.ts";

/** How `begin` keeps what the backward needs. */
export type BackwardMode = "two-phase" | "recompute";

/** A tensor as a graph returns it (float32, or float64 for float64 graphs). */
export interface GraphTensor {
  /** Values, row-major. */
  data: Float32Array | Float64Array;
  /** Dims. */
  shape: number[];
}

/** Options of {@link DifferentiableGraph.create}. */
export interface DifferentiableGraphOptions {
  /** Identity of the model (part of the pool keys; one build per process and key). */
  key: string;
  /** Label for messages and statistics. */
  label?: string;
  /** Outputs to differentiate. */
  of: string[];
  /** Inputs to differentiate with respect to. */
  wrt: string[];
  /** Concrete input dims, when the model's are symbolic. */
  inputShapes?: Record<string, number[]>;
  /** Names of the networks inside (for the counters). */
  networks?: string[];
  /** Session pool (default: the process-wide pool). */
  pool?: SessionPool;
  /** Execution provider request (default "auto"). */
  device?: string;
  /** ONNX Runtime graph optimisation level (default "all"; "basic" for exact float64 checks). */
  optimization?: "all" | "basic";
}

/** Run counters of a graph. */
export interface GraphStats {
  /** Session runs by model: forward, vjp (one-phase), phase1, phase2. */
  runs: { forward: number; vjp: number; phase1: number; phase2: number };
  /** Forward evaluations per network. */
  forwards: Record<string, number>;
  /** Backward (VJP) evaluations per network. */
  vjps: Record<string, number>;
}

/** Outputs of a forward pass and the means to finish it with a backward. */
export interface ForwardPass {
  /** The graph's outputs. */
  outputs: Record<string, GraphTensor>;
  /** Gradients for the given cotangents (once). */
  backward(cotangents: Record<string, Feed>): Promise<Record<string, GraphTensor>>;
}

/** What a source model may be: a writable model (composed or transformed), bytes or a path. */
export type GraphSource = WritableModel | { bytes: Uint8Array } | { path: string };

/** The feeds a session declares (callers may hand a step's whole feed set to every graph). */
function only(s: ModelSession, feeds: Record<string, Feed>): Record<string, Feed> {
  const out: Record<string, Feed> = {};
  for (const n of s.inputNames) if (n in feeds) out[n] = feeds[n];
  return out;
}

function raw(t: RawTensor): GraphTensor {
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) {
    return { data: t.data, shape: t.shape };
  }
  throw new Error(`graph output of type ${t.type} is not floating point`);
}

const built = new Map<string, Promise<Built>>();

interface Built {
  vjp: VjpGraph;
  split?: Promise<TwoPhaseModels>;
}

/**
 * A graph with its VJP: see the module documentation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GraphBuilder } from "../onnx/builder.ts";
 * import { SessionPool } from "../backend/pool.ts";
 * import { DifferentiableGraph } from "./differentiable.ts";
 * const b = new GraphBuilder("f"); // y = x·sin(x)
 * const x = b.input("x", "float32", [2]);
 * b.output(b.op("Mul", [x, b.op("Sin", [x])]), "y", "float32", [2]);
 * const pool = new SessionPool({ threads: 1 });
 * const f = await DifferentiableGraph.create({ bytes: b.toBytes() }, {
 *   key: "x-sin-x", of: ["y"], wrt: ["x"], pool, device: "cpu",
 * });
 * const feeds = { x: { data: [0.5, 1], shape: [2] } }, w = { y: { data: [1, 1], shape: [2] } };
 * const one = await f.vjp(feeds, w);
 * const pass = await f.begin(feeds, "two-phase");
 * const two = await pass.backward(w);
 * assert.ok(Math.abs(one.grads["x"].data[1] - two["x"].data[1]) < 1e-7); // sin 1 + cos 1
 * await pool.release();
 * ```
 */
export class DifferentiableGraph {
  /** Options it was created with. */
  readonly options: DifferentiableGraphOptions;
  #source: GraphSource;
  #built: Built;
  #pool: SessionPool;
  #sessions = new Map<string, Promise<ModelSession>>();
  #stats: GraphStats = {
    runs: { forward: 0, vjp: 0, phase1: 0, phase2: 0 },
    forwards: {},
    vjps: {},
  };

  private constructor(source: GraphSource, built: Built, options: DifferentiableGraphOptions) {
    this.#source = source;
    this.#built = built;
    this.options = options;
    this.#pool = options.pool ?? sessionPool();
  }

  /**
   * Transform `source` (once per process and key) and wrap it; sessions load on first use.
   *
   * @param source the model
   * @param options what to differentiate, identity, pool
   */
  static async create(
    source: GraphSource,
    options: DifferentiableGraphOptions,
  ): Promise<DifferentiableGraph> {
    const key = `${options.key}#${options.of.join(",")}→${options.wrt.join(",")}`;
    let b = built.get(key);
    if (!b) {
      b = (async () => {
        const src = await DifferentiableGraph.#materialized(options.key, source);
        const input = src.path ?? src.bytes!;
        const vjp = await vjpTransform(input, options.of, options.wrt, {
          inputShapes: options.inputShapes,
        });
        return { vjp };
      })();
      built.set(key, b);
      b.catch(() => built.delete(key));
    }
    return new DifferentiableGraph(source, await b, options);
  }

  static async #materialized(
    key: string,
    source: GraphSource,
  ): Promise<{ path?: string; bytes?: Uint8Array }> {
    if ("path" in source) return { path: source.path };
    if ("bytes" in source && !("write" in source)) return { bytes: source.bytes };
    const s = await materializeModel(`${key}#model`, source as WritableModel, key);
    return s;
  }

  /** The forward model as the pool loads it: its bytes, or the path of its file. */
  async forwardModel(): Promise<Uint8Array | string> {
    const s = await DifferentiableGraph.#materialized(this.options.key, this.#source);
    return s.path ?? s.bytes!;
  }

  /** The VJP graph (model, statistics, cotangent/gradient names). */
  get vjpGraph(): VjpGraph {
    return this.#built.vjp;
  }

  /** Name of the cotangent input of output `o`. */
  cotangentName(o: string): string {
    return this.#built.vjp.cotangentName(o);
  }

  /** Counters since creation (or {@link resetStats}). */
  stats(): GraphStats {
    const s = this.#stats;
    return { runs: { ...s.runs }, forwards: { ...s.forwards }, vjps: { ...s.vjps } };
  }

  /** Zero the counters. */
  resetStats(): void {
    this.#stats = { runs: { forward: 0, vjp: 0, phase1: 0, phase2: 0 }, forwards: {}, vjps: {} };
  }

  #count(forward: boolean, backward: boolean): void {
    for (const n of this.options.networks ?? []) {
      if (forward) this.#stats.forwards[n] = (this.#stats.forwards[n] ?? 0) + 1;
      if (backward) this.#stats.vjps[n] = (this.#stats.vjps[n] ?? 0) + 1;
    }
  }

  #session(kind: "forward" | "vjp" | "phase1" | "phase2"): Promise<ModelSession> {
    let s = this.#sessions.get(kind);
    if (!s) {
      s = this.#load(kind);
      this.#sessions.set(kind, s);
      s.catch(() => this.#sessions.delete(kind));
    }
    return s;
  }

  async #load(kind: "forward" | "vjp" | "phase1" | "phase2"): Promise<ModelSession> {
    const o = this.options;
    const label = `${o.label ?? o.key} (${kind})`;
    // gradient models read most weights twice: no per-consumer prepacked copies; their
    // activations are most of the memory: no memory pattern, which would hold them twice (pool docs)
    const request = {
      device: o.device ?? "auto",
      prepack: kind === "forward",
      memPattern: kind === "forward",
      optimization: o.optimization,
    };
    const name = `${o.label ?? o.key}/${kind}`;
    let src: { path?: string; bytes?: Uint8Array };
    if (kind === "forward") src = await DifferentiableGraph.#materialized(o.key, this.#source);
    else if (kind === "vjp") {
      src = await materializeModel(`${o.key}#vjp`, this.#built.vjp, `${o.key}-vjp`);
    } else {
      const split = await this.#split();
      const m = kind === "phase1" ? split.forward : split.backward;
      src = await materializeModel(
        `${o.key}#${kind}`,
        writable(m, this.#built.vjp.baseDir),
        `${o.key}-${kind}`,
      );
    }
    return await this.#pool.session(name, { key: `${o.key}#${kind}`, ...src, label }, request);
  }

  #split(): Promise<TwoPhaseModels> {
    if (!this.#built.split) {
      this.#built.split = Promise.resolve(
        splitTwoPhase(this.#built.vjp, this.options.of, this.options.wrt),
      );
    }
    return this.#built.split;
  }

  /** Forward only (no gradient work): the graph's outputs. */
  async forward(feeds: Record<string, Feed>): Promise<Record<string, GraphTensor>> {
    const s = await this.#session("forward");
    const out = await s.runRaw(only(s, feeds));
    this.#stats.runs.forward++;
    this.#count(true, false);
    return mapValues(out, raw);
  }

  /**
   * Forward and VJP in one run: the outputs and, for each `wrt` input x, the gradient
   * Σ_o (∂o/∂x)ᵀ cotangent_o (keyed by the input's name).
   */
  async vjp(
    feeds: Record<string, Feed>,
    cotangents: Record<string, Feed>,
  ): Promise<{ outputs: Record<string, GraphTensor>; grads: Record<string, GraphTensor> }> {
    const s = await this.#session("vjp");
    const out = await s.runRaw(only(s, { ...feeds, ...this.#cotFeeds(cotangents) }));
    this.#stats.runs.vjp++;
    this.#count(true, true);
    return this.#splitOutputs(out);
  }

  #cotFeeds(cotangents: Record<string, Feed>): Record<string, Feed> {
    const f: Record<string, Feed> = {};
    for (const o of this.options.of) {
      const c = cotangents[o];
      if (!c) throw new InputError(`${this.options.key}: no cotangent for output '${o}'`);
      f[this.cotangentName(o)] = c;
    }
    return f;
  }

  #splitOutputs(out: Record<string, RawTensor>) {
    const outputs: Record<string, GraphTensor> = {}, grads: Record<string, GraphTensor> = {};
    const gradOf = new Map(this.options.wrt.map((w) => [this.#built.vjp.gradName(w), w]));
    for (const [k, v] of Object.entries(out)) {
      const w = gradOf.get(k);
      if (w !== undefined) grads[w] = raw(v);
      else outputs[k] = raw(v);
    }
    return { outputs, grads };
  }

  /**
   * Start a pass whose cotangents are computed outside the graph: returns the outputs now and a
   * `backward` to call once with the cotangents. `mode` decides what is kept (module docs).
   */
  async begin(feeds: Record<string, Feed>, mode: BackwardMode): Promise<ForwardPass> {
    if (mode === "recompute") {
      const outputs = await this.forward(feeds);
      let done = false;
      return {
        outputs,
        backward: async (cot) => {
          if (done) throw new Error("backward called twice");
          done = true;
          const r = await this.vjp(feeds, cot);
          return r.grads;
        },
      };
    }
    const split = await this.#split();
    const p1 = await this.#session("phase1");
    const out = await p1.runRaw(only(p1, feeds));
    this.#stats.runs.phase1++;
    this.#count(true, false);
    const outputs: Record<string, GraphTensor> = {};
    const original = new Set(
      (this.#built.vjp.model.graph?.output ?? []).map((o) => o.name ?? ""),
    );
    for (const [k, v] of Object.entries(out)) if (original.has(k)) outputs[k] = raw(v);
    const held: Record<string, Feed> = {};
    for (const s of split.saved) {
      const t = out[s];
      held[s] = { data: t.data as Feed["data"], shape: t.shape, type: t.type as Feed["type"] };
    }
    for (const i of split.backwardInputs) held[i] = feeds[i];
    let done = false;
    return {
      outputs,
      backward: async (cot) => {
        if (done) throw new Error("backward called twice");
        done = true;
        const p2 = await this.#session("phase2");
        const r = await p2.runRaw(only(p2, { ...held, ...this.#cotFeeds(cot) }));
        this.#stats.runs.phase2++;
        this.#count(false, true);
        return this.#splitOutputs(r).grads;
      },
    };
  }

  /** Elements held between the two phases (activations), 0 before the split is built. */
  async heldElements(): Promise<number> {
    return (await this.#split()).savedElements;
  }
}

function mapValues<A, B>(o: Record<string, A>, f: (a: A) => B): Record<string, B> {
  const out: Record<string, B> = {};
  for (const [k, v] of Object.entries(o)) out[k] = f(v);
  return out;
}

/** A model proto whose external data is relative to `baseDir`, as a {@link WritableModel}. */
function writable(model: IModelProto, baseDir: string | undefined): WritableModel {
  const externalData = (model.graph?.initializer ?? []).some((t) =>
    t.dataLocation === 1 || (t.externalData?.length ?? 0) > 0
  );
  return {
    externalData,
    baseDir,
    bytes: () => encodeModel(model),
    write: (path) => writeModel(model, path, baseDir),
  };
}
