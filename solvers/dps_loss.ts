/**
 * The per-step loss of LDPS and PSLD as one whole-loss graph (core/loss), differentiated once and
 * run once per step:
 *
 *   o    = UNet(z_t, t, c)                        ε, v or x0 output
 *   ẑ0   = α_t z_t + β_t o,   ε̂ = κ_t z_t + ν_t o  (coefficients fed per step: core/sampling)
 *   x̂    = D(ẑ0/s + shift)                        image on [-1,1]
 *   r    = A((x̂ + 1)/2) − y_m                      residual on the [0,1] scale
 *   meas = ‖2 r‖ = ‖A'x̂ − y'‖                     the papers' un-squared norm on the [-1,1] scale
 *   glue = ‖E(x̂ − 2 Aᵀ(A((x̂+1)/2) − y)) − ẑ0‖    PSLD's gluing: E(Aᵀy' + x̂ − AᵀA x̂) − ẑ0
 *   loss = ω·meas + γ·glue                         (squared norms with `squared`)
 *
 * and ∂loss/∂z_t through the UNet, the decoder (and the encoder) in the same run. y_m is the
 * measurement the residual compares with: y, or y − σ_y n when the official code's noise on the
 * prediction is asked for (A x̂ + σ n − y = A x̂ − (y − σ n)).
 *
 * Scale bookkeeping. With x' = 2x − 1 and y' = 2y − A(1) (linear A), A x̂' − y' = 2(A x̂ − y) and
 * Aᵀy' + x̂' − AᵀA x̂' = x̂' − Aᵀ(A x̂' − y') = x̂' − 2Aᵀ(A x̂ − y): the [0,1] operators give the
 * official [-1,1] quantities exactly. For a non-linear A (JPEG) meas is ‖2(A(x̂) − y)‖ on [0,1]
 * images, the same scale.
 *
 * Operators without an ONNX export: LDPS uses the builder's operator fallback (graph up to A's
 * input, A and its VJP in TypeScript); PSLD a TypeScript tail over (x̂, ẑ0) that applies A and Aᵀ
 * and runs a small gluing graph over the encoder (forward and backward once). Both give the same
 * numbers as the whole graph (tests/dps_gradient_exact_test.ts).
 *
 * @module
 */
import type { Conditioning, ForwardOperator } from "../core/contracts.ts";
import { InputError } from "../core/errors.ts";
import type { Feed } from "../core/backend/session.ts";
import type { SessionPool } from "../core/backend/pool.ts";
import { modelKey } from "../core/backend/pool.ts";
import { denoiserAffine, type DenoiserNetwork, type PriorNetworks } from "../core/networks.ts";
import {
  type LossGraph,
  LossGraphBuilder,
  type TailResult,
  type Value,
} from "../core/loss/builder.ts";
import type { GraphStats } from "../core/loss/differentiable.ts";
import {
  addDecoder,
  addDenoiser,
  addEncoder,
  denoiserFeeds,
  type DenoiserInGraph,
} from "../core/loss/prior.ts";
import type { Tensor } from "../core/tensor.ts";

/** The structure of the loss (what the graph contains; weights are fed per step). */
export interface DpsLossSpec {
  /** Include PSLD's gluing term (γ > 0). */
  gluing: boolean;
  /** Squared norms instead of the papers' un-squared norms. */
  squared: boolean;
}

/** Where and how to build the graph. */
export interface DpsLossSetup {
  /** The prior's networks (sources, names, prediction type, VAE scaling). */
  networks: PriorNetworks;
  /** The forward operator. */
  operator: ForwardOperator;
  /** The latent shape [1,C,h,w]. */
  latentShape: readonly number[];
  /** Session pool and device request. */
  pool: SessionPool;
  /** "auto" | "cpu" | "cuda" | "webgpu". */
  device: string;
  /** Element type of the graph (float64 needs float64 networks; tests). Default float32. */
  dtype?: "float32" | "float64";
  /** The fallback's backward: keep the activations ("two-phase", default) or recompute. */
  fallback?: "two-phase" | "recompute";
  /** ONNX Runtime graph optimisation (float64 graphs checked to 1e-9 need "basic"). */
  optimization?: "all" | "basic";
}

/** One step's inputs. */
export interface DpsLossInputs {
  /** z_t. */
  zt: Tensor;
  /** The integer timestep t (the ᾱ_t of every coefficient). */
  t: number;
  /** Added to the UNet's timestep input (1: the official code's off-by-one). Default 0. */
  timestepOffset?: number;
  /** The conditioning tensors. */
  c: Conditioning;
  /** The measurement y ([0,1] scale). */
  y: Tensor;
  /** The measurement the residual compares with (y − σ n with noise on the prediction; else y). */
  yMeas: Tensor;
  /** ω, the weight of the measurement term. */
  omega: number;
  /** γ, the weight of the gluing term (ignored without `gluing`). */
  gamma: number;
}

/** One step's outputs. */
export interface DpsLossResult {
  /** ω·meas + γ·glue. */
  loss: number;
  /** meas = ‖A'x̂ − y'‖ (squared with `squared`), unweighted. */
  meas: number;
  /** glue = ‖E(…) − ẑ0‖ (squared with `squared`), unweighted; 0 without gluing. */
  glue: number;
  /** ∂loss/∂z_t (the graph's element type). */
  grad: Float32Array | Float64Array;
  /** ẑ0. */
  x0: Float32Array | Float64Array;
  /** ε̂. */
  eps: Float32Array | Float64Array;
}

function f32(d: Float32Array | Float64Array): Float32Array {
  return d instanceof Float32Array ? d : Float32Array.from(d);
}

/** Length and two 32-bit FNV-1a digests of the operator's export: its identity in the pool key. */
function digest(bytes: Uint8Array): string {
  let h1 = 0x811c9dc5, h2 = 0xcbf29ce4;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i], 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ bytes[i] ^ (i & 0xff), 0x01000193) >>> 0;
  }
  return `${bytes.length}-${h1.toString(16)}${h2.toString(16)}`;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * The norm of a weighted term and the factor of its gradient: for n = ‖v‖ (or ‖v‖²), returns n
 * and k with ∂n/∂v = k·v.
 */
function normAndFactor(v: ArrayLike<number>, squared: boolean): [number, number] {
  const ss = dot(v, v);
  if (squared) return [ss, 2];
  const n = Math.sqrt(ss);
  return [n, n > 0 ? 1 / n : 0];
}

/** The UNet's timestep feed (its declared shape: [] or [1]). */
function timestepFeed(net: DenoiserNetwork, t: number): Feed {
  const shape = net.timestep.shape.map((d) => (typeof d === "number" && d > 0 ? d : 1));
  return { data: new Array(Math.max(1, shape.reduce((p, q) => p * q, 1))).fill(t), shape };
}

/** The per-step loss graph of LDPS / PSLD. */
export class DpsStepLoss {
  /** The step's whole-loss graph. */
  readonly graph: LossGraph;
  /** PSLD's gluing graph when the operator runs in TypeScript. */
  readonly glue?: LossGraph;
  /** The structure it was built for. */
  readonly spec: DpsLossSpec;
  readonly #den: DenoiserInGraph;
  readonly #nets: PriorNetworks;
  readonly #dtype: "float32" | "float64";

  private constructor(
    graph: LossGraph,
    glue: LossGraph | undefined,
    spec: DpsLossSpec,
    den: DenoiserInGraph,
    nets: PriorNetworks,
    dtype: "float32" | "float64",
  ) {
    this.graph = graph;
    this.glue = glue;
    this.spec = spec;
    this.#den = den;
    this.#nets = nets;
    this.#dtype = dtype;
  }

  /** Whether the operator runs in TypeScript (it has no ONNX export). */
  get usesFallback(): boolean {
    return this.graph.usesFallback;
  }

  /** Per-network forward and VJP counts of the step's graphs. */
  stats(): { forwards: Record<string, number>; vjps: Record<string, number> } {
    const out = { forwards: {} as Record<string, number>, vjps: {} as Record<string, number> };
    for (const g of [this.graph, this.glue]) {
      if (!g) continue;
      const st: GraphStats = g.stats();
      for (const [k, v] of Object.entries(st.forwards)) {
        out.forwards[k] = (out.forwards[k] ?? 0) + v;
      }
      for (const [k, v] of Object.entries(st.vjps)) out.vjps[k] = (out.vjps[k] ?? 0) + v;
    }
    return out;
  }

  /** Build (the transform once per process and structure) the loss graph. */
  static async build(spec: DpsLossSpec, s: DpsLossSetup): Promise<DpsStepLoss> {
    const { networks: nets, operator: op } = s;
    const unet = nets.unet;
    if (!unet) throw new InputError("LDPS/PSLD need a denoising UNet (ε, v or x0 prediction)");
    const enc = nets.encoder;
    if (spec.gluing && !enc) throw new InputError("PSLD's gluing term needs the VAE encoder");
    const dtype = s.dtype ?? "float32";
    const b = new LossGraphBuilder(spec.gluing ? "psld_step" : "ldps_step", { dtype });

    // ẑ0 and ε̂ from one network output, with the per-step coefficients as inputs.
    const z = b.input("z_t", s.latentShape);
    const cond: Record<string, Value> = {};
    for (const name of unet.conditioning) cond[name] = await b.inputLike(unet.source, name);
    const den = await addDenoiser(b, unet, z, cond, { output: "x0" });
    const z0 = den.value;
    const eps = b.lincomb([[z, b.scalar("eps_z")], [den.raw, b.scalar("eps_out")]]);
    b.output("x0", z0);
    b.output("eps", eps);

    // x̂ = D(ẑ0/s + shift) on [-1,1]; x̂01 = (x̂ + 1)/2 is what the operator sees.
    const dec = nets.decoder;
    const x = await addDecoder(b, dec, z0);
    const x01 = b.affine(x, 0.5, 0.5);
    const yMeas = b.input("y_meas", op.outputShape);
    const omega = b.scalar("omega");

    let loss: Value;
    let opKey: string;
    let glue: LossGraph | undefined;
    if (op.exportOnnx) {
      opKey = digest(op.exportOnnx({ dtype }).bytes);
      const meas = b.norm(b.residual(op, x01, yMeas), { scale: 2, squared: spec.squared });
      b.output("meas", meas);
      loss = b.mul(meas, omega);
      if (spec.gluing) {
        // u = x̂ − 2 Aᵀ(A x̂01 − y) = Aᵀy' + x̂ − AᵀA x̂ on [-1,1]; glue = ‖E(u) − ẑ0‖.
        const r = b.residual(op, x01, b.input("y", op.outputShape));
        const u = b.sub(x, b.scale(await b.operatorVjp(op, x01, r), 2));
        const e = b.sub(await addEncoder(b, enc!, u), z0);
        const glue = b.norm(e, { squared: spec.squared });
        b.output("glue", glue);
        loss = b.add(loss, b.mul(glue, b.scalar("gamma")));
      }
    } else if (!spec.gluing) {
      // LDPS: the builder's operator fallback (ω enters through the norm's weight below).
      opKey = `ts:${op.name}`;
      loss = b.norm(b.residual(op, x01, yMeas), { scale: 2, squared: spec.squared });
    } else {
      opKey = `ts:${op.name}`;
      glue = await glueGraph(spec, s, op.inputShape);
      loss = b.tail({ x_hat: x, z0_hat: z0 }, psldTail(op, spec.squared, glue));
    }
    b.loss(loss);

    const key = [
      spec.gluing ? "psld" : "ldps",
      spec.squared ? "squared" : "norm",
      dtype,
      modelKey(unet.source),
      modelKey(dec.source),
      spec.gluing && enc ? modelKey(enc.source) : "",
      `op:${opKey}`,
      `z:${s.latentShape.join("x")}`,
      `x:${op.inputShape.join("x")}`,
      `y:${op.outputShape.join("x")}`,
    ].join("|");
    const graph = await b.build({
      key,
      wrt: ["z_t"],
      pool: s.pool,
      device: s.device,
      fallback: s.fallback,
      optimization: s.optimization,
    });
    return new DpsStepLoss(graph, glue, spec, den, nets, dtype);
  }

  /** The graph's feeds for one step. */
  #feeds(i: DpsLossInputs): Record<string, Feed> {
    const unet = this.#nets.unet!;
    const eps = denoiserAffine(unet, this.#nets.schedule, i.t, "eps");
    const feeds: Record<string, Feed> = {
      // the UNet sees t + offset (the official off-by-one), every coefficient uses ᾱ_t
      ...denoiserFeeds(this.#den, unet, this.#nets.schedule, i.t, this.#dtype),
      [this.#den.inputs.timestep]: timestepFeed(unet, i.t + (i.timestepOffset ?? 0)),
      z_t: { data: this.#cast(i.zt.data), shape: i.zt.shape },
      eps_z: this.#scalar(eps.z),
      eps_out: this.#scalar(eps.out),
      y_meas: { data: this.#cast(i.yMeas.data), shape: i.yMeas.shape },
      omega: this.#scalar(i.omega),
    };
    for (const name of unet.conditioning) {
      const v = i.c.tensors[name];
      if (!v) throw new InputError(`LDPS/PSLD: the conditioning has no tensor "${name}"`);
      feeds[name] = { data: this.#cast(v.data), shape: v.shape };
    }
    if (this.spec.gluing) {
      feeds.y = { data: this.#cast(i.y.data), shape: i.y.shape };
      feeds.gamma = this.#scalar(i.gamma);
    }
    return feeds;
  }

  /**
   * The graph's forward alone (no gradient work): its outputs (loss, ẑ0, ε̂… — up to the operator's
   * input when the operator runs in TypeScript). For benchmarks against {@link evaluate}.
   */
  async forward(i: DpsLossInputs): Promise<Record<string, { data: ArrayLike<number> }>> {
    return await this.graph.graph.forward(this.#feeds(i));
  }

  /** ∂loss/∂z_t, the loss and its terms, ẑ0 and ε̂ at one step: one graph run. */
  async evaluate(i: DpsLossInputs): Promise<DpsLossResult> {
    const feeds = this.#feeds(i);
    if (!this.spec.gluing && this.graph.usesFallback) {
      // the fallback's norm has weight 1: scale the gradient by ω here
      const r = await this.graph.lossAndGrad(feeds);
      const g = r.grads.z_t.data;
      if (i.omega !== 1) { for (let k = 0; k < g.length; k++) g[k] *= i.omega; }
      return {
        loss: i.omega * r.value,
        meas: r.value,
        glue: 0,
        grad: g,
        x0: r.outputs.x0.data,
        eps: r.outputs.eps.data,
      };
    }
    const r = await this.graph.lossAndGrad(feeds);
    const meas = r.outputs.meas?.data[0] ?? r.extras?.meas ?? NaN;
    const glue = r.outputs.glue?.data[0] ?? r.extras?.glue ?? 0;
    return {
      loss: r.value,
      meas,
      glue,
      grad: r.grads.z_t.data,
      x0: r.outputs.x0.data,
      eps: r.outputs.eps.data,
    };
  }

  #cast(d: Float32Array | ArrayLike<number>): Float32Array | Float64Array {
    if (this.#dtype === "float64") return Float64Array.from(d);
    return d instanceof Float32Array ? d : Float32Array.from(d);
  }

  #scalar(v: number): Feed {
    return { data: this.#dtype === "float64" ? Float64Array.of(v) : Float32Array.of(v), shape: [] };
  }
}

/**
 * The gluing term alone as a graph, for PSLD's TypeScript tail: glue = ‖E(u) − ẑ0‖ (or squared)
 * with ∂/∂u and ∂/∂ẑ0 — one encoder forward and backward per step.
 */
async function glueGraph(spec: DpsLossSpec, s: DpsLossSetup, imageShape: readonly number[]) {
  const enc = s.networks.encoder!;
  const dtype = s.dtype ?? "float32";
  const b = new LossGraphBuilder("psld_glue", { dtype });
  const u = b.input("u", imageShape), z0 = b.input("x0", s.latentShape);
  const glue = b.norm(b.sub(await addEncoder(b, enc, u), z0), { squared: spec.squared });
  b.output("glue", glue);
  b.loss(glue);
  return await b.build({
    key: ["psld-glue", spec.squared ? "squared" : "norm", dtype, modelKey(enc.source)].join("|") +
      `|u:${imageShape.join("x")}|z:${s.latentShape.join("x")}`,
    wrt: ["u", "x0"],
    pool: s.pool,
    device: s.device,
    optimization: s.optimization,
  });
}

/**
 * PSLD's loss in TypeScript for a linear operator without an ONNX export, from the graph's x̂
 * and ẑ0 (everything on the [-1,1] scale as in the module documentation):
 *
 *   meas = ‖2(A x̂01 − y_m)‖,  u = x̂ − 2Aᵀ(A x̂01 − y),  glue = ‖E(u) − ẑ0‖  (glue graph)
 *   ∂loss/∂x̂  = ω Aᵀ(∂meas/∂(2r_m)) + (I − AᵀA) γ ∂glue/∂u,   ∂loss/∂ẑ0 = γ ∂glue/∂ẑ0.
 */
function psldTail(op: ForwardOperator, squared: boolean, glue: LossGraph) {
  return async (v: Record<string, Tensor>, feeds: Record<string, Feed>): Promise<TailResult> => {
    const adjoint = op.adjoint?.bind(op);
    if (!adjoint) throw new InputError(`PSLD needs Aᵀ: operator "${op.name}" is not linear`);
    const x = v.x_hat, z0 = v.z0_hat;
    const n = x.data.length;
    const half = (d: ArrayLike<number>) => Float32Array.from(d, (a) => 0.5 * a + 0.5);
    const ax = await op.forward({ data: half(x.data), shape: x.shape });
    const ym = feeds.y_meas.data as ArrayLike<number>, y = feeds.y.data as ArrayLike<number>;
    const omega = Number((feeds.omega.data as ArrayLike<number>)[0]);
    const gamma = Number((feeds.gamma.data as ArrayLike<number>)[0]);
    // r_m' = 2(A x̂01 − y_m), meas = ‖r_m'‖: ∂r_m'/∂x̂ = 2A·½ = A, so ∂meas/∂x̂ = Aᵀ(k r_m')
    const rm = Float64Array.from(ax.data, (a, k) => 2 * (a - ym[k]));
    const [meas, km] = normAndFactor(rm, squared);
    const gm = await adjoint({
      data: Float32Array.from(rm, (a) => omega * km * a),
      shape: ax.shape,
    });
    // u = x̂ − 2 Aᵀ(A x̂01 − y)
    const atr = await adjoint({
      data: Float32Array.from(ax.data, (a, k) => a - y[k]),
      shape: ax.shape,
    });
    const u = Float32Array.from(x.data, (a, k) => a - 2 * atr.data[k]);
    const gl = await glue.lossAndGrad({
      u: { data: u, shape: x.shape },
      x0: { data: z0.data, shape: z0.shape },
    });
    // ∂u/∂x̂ = I − 2Aᵀ·A·½ = I − AᵀA (A linear), so ∂(γ glue)/∂x̂ = γ(I − AᵀA) ∂glue/∂u
    const gu = f32(gl.grads.u.data);
    const agu = await op.forward({ data: gu, shape: x.shape });
    const atagu = await adjoint(agu);
    const gx = new Float32Array(n);
    for (let k = 0; k < n; k++) gx[k] = gm.data[k] + gamma * (gu[k] - atagu.data[k]);
    const gz0 = Float32Array.from(gl.grads.x0.data, (a) => gamma * a);
    return {
      value: omega * meas + gamma * gl.value,
      cotangents: { x_hat: { data: gx, shape: x.shape }, z0_hat: { data: gz0, shape: z0.shape } },
      extras: { meas, glue: gl.value },
    };
  };
}
