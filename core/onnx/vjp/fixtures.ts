/**
 * Synthetic graphs with the architecture and the ONNX op patterns of the models we differentiate,
 * for the VJP tests and benchmark (not part of the public API):
 *
 * - `sdBlockGraph`: a small SD UNet — sinusoidal time embedding (Sin/Cos, Gemm, SiLU), ResNet blocks
 *   with the exported GroupNorm pattern (Reshape → InstanceNormalization → Reshape → Mul → Add),
 *   time-embedding injection, strided downsample, a transformer block (LayerNorm, self- and cross-
 *   attention with head Reshape/Transpose, Softmax, GEGLU feed-forward with Split and Erf-GELU),
 *   nearest ×2 upsample (Resize), a skip Concat and the output head.
 * - `vaeEncoderGraph`: VAE-encoder patterns (asymmetric Pad + stride-2 Conv, single-head
 *   mid-block attention, latent_parameters = mean ‖ logvar).
 * - `clipTextGraph`: CLIP text-encoder patterns (token Gather, position embeddings, causal mask
 *   built by integer shape plumbing and Trilu/Where, quick-GELU, pooler by ArgMax + Gather).
 * - `exactUnetGraph`: the op structure of the built-in exact model's ε-UNet (token mean, affine
 *   read-out, Exp, Gather of ᾱ tables by a rounded, clipped timestep).
 *
 * Weights come from a named seeded stream; all graphs are float32 unless stated.
 *
 * @module
 */
import { type Dims, type ElemType, float, GraphBuilder } from "../builder.ts";
import { streams } from "../../rng.ts";
import { decodeModel, encodeModel, type NodeProto, type TensorProto } from "../proto.ts";

/** Size of the SD-block composite. */
export interface SdBlockConfig {
  /** Batch (default 1). */
  batch?: number;
  /** Latent height. */
  height: number;
  /** Latent width. */
  width: number;
  /** Base channels (default 32). */
  channels?: number;
  /** GroupNorm groups (default 8). */
  groups?: number;
  /** Attention heads (default 2). */
  heads?: number;
  /** Context tokens (default 77). */
  contextLength?: number;
  /** Context width (default 64). */
  contextDim?: number;
  /** Sinusoidal embedding width (default 32). */
  timeDim?: number;
  /** Weight seed (default 0). */
  seed?: number;
}

/** Weight factory: N(0, scale²) from a named stream. */
function weights(g: GraphBuilder, seed: number, name: string) {
  const rng = streams(seed).get(`vjp-fixture/${name}`);
  return (hint: string, dims: number[], scale: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = scale * rng.normal();
    return g.constF(hint, dims, v);
  };
}

/** Shared layer helpers in the torch-export style. */
class Layers {
  constructor(
    readonly g: GraphBuilder,
    readonly w: ReturnType<typeof weights>,
  ) {}

  silu(x: string): string {
    return this.g.op("Mul", [x, this.g.op("Sigmoid", [x])]);
  }

  conv(x: string, cin: number, cout: number, k: number, stride = 1, pad = (k - 1) / 2): string {
    const W = this.w("conv_w", [cout, cin, k, k], 1 / Math.sqrt(cin * k * k));
    const b = this.w("conv_b", [cout], 0.05);
    return this.g.op("Conv", [x, W, b], {
      kernel_shape: [k, k],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
    });
  }

  /** GroupNorm as exported: Reshape → InstanceNormalization(1, 0) → Reshape → Mul γ → Add β. */
  groupNorm(x: string, ch: number, groups: number, eps = 1e-5): string {
    const g = this.g;
    const r = g.op("Reshape", [x, g.constI("gn_shape", [0, groups, -1])]);
    const ones = g.constF("gn_ones", [groups], new Float32Array(groups).fill(1));
    const zeros = g.constF("gn_zeros", [groups], new Float32Array(groups));
    const n = g.op("InstanceNormalization", [r, ones, zeros], { epsilon: float(eps) });
    const back = g.op("Reshape", [n, g.op("Shape", [x])]);
    const gamma = g.op("Add", [this.w("gn_gamma", [ch, 1, 1], 0.1), g.constF("one", [], [1])]);
    return g.op("Add", [g.op("Mul", [back, gamma]), this.w("gn_beta", [ch, 1, 1], 0.1)]);
  }

  layerNorm(x: string, d: number): string {
    const g = this.g;
    const gamma = g.op("Add", [this.w("ln_gamma", [d], 0.1), g.constF("one", [], [1])]);
    return g.op("LayerNormalization", [x, gamma, this.w("ln_beta", [d], 0.1)], {
      axis: -1,
      epsilon: float(1e-5),
    });
  }

  linear(x: string, din: number, dout: number, bias = true): string {
    const y = this.g.op("MatMul", [x, this.w("lin_w", [din, dout], 1 / Math.sqrt(din))]);
    return bias ? this.g.op("Add", [y, this.w("lin_b", [dout], 0.05)]) : y;
  }

  /** Multi-head attention: q from x [B,T,C], k/v from ctx [B,S,Dc]. */
  attention(
    x: string,
    ctx: string,
    b: number,
    t: number,
    s: number,
    c: number,
    dc: number,
    heads: number,
  ) {
    const g = this.g;
    const d = c / heads;
    const q = this.linear(x, c, c, false);
    const k = this.linear(ctx, dc, c, false);
    const v = this.linear(ctx, dc, c, false);
    const split = (y: string, n: number) =>
      g.op("Reshape", [y, g.constI("heads", [b, n, heads, d])]);
    const qh = g.op("Transpose", [split(q, t)], { perm: [0, 2, 1, 3] });
    const kh = g.op("Transpose", [split(k, s)], { perm: [0, 2, 3, 1] });
    const vh = g.op("Transpose", [split(v, s)], { perm: [0, 2, 1, 3] });
    const scores = g.op("Mul", [
      g.op("MatMul", [qh, kh]),
      g.constF("scale", [], [1 / Math.sqrt(d)]),
    ]);
    const p = g.op("Softmax", [scores], { axis: -1 });
    const o = g.op("Transpose", [g.op("MatMul", [p, vh])], { perm: [0, 2, 1, 3] });
    return this.linear(g.op("Reshape", [o, g.constI("merge", [b, t, c])]), c, c);
  }

  /** Erf-GELU as exported: x·½·(1 + erf(x/√2)). */
  gelu(x: string): string {
    const g = this.g;
    const e = g.op("Erf", [g.op("Div", [x, g.constF("sqrt2", [], [Math.SQRT2])])]);
    return g.op("Mul", [
      g.op("Mul", [x, g.op("Add", [e, g.constF("one", [], [1])])]),
      g.constF("half", [], [0.5]),
    ]);
  }
}

/**
 * The SD-block composite: inputs `sample` [B,4,H,W], `timestep` [B], `encoder_hidden_states`
 * [B,L,Dc]; output `out_sample` [B,4,H,W].
 */
export function sdBlockGraph(cfg: SdBlockConfig): Uint8Array {
  const B = cfg.batch ?? 1;
  const H = cfg.height, W = cfg.width;
  const C = cfg.channels ?? 32;
  const G = cfg.groups ?? 8;
  const heads = cfg.heads ?? 2;
  const L = cfg.contextLength ?? 77;
  const Dc = cfg.contextDim ?? 64;
  const td = cfg.timeDim ?? 32;
  const g = new GraphBuilder("sd_block", 17);
  const l = new Layers(g, weights(g, cfg.seed ?? 0, "sd-block"));
  const sample = g.input("sample", "float32", [B, 4, H, W]);
  const timestep = g.input("timestep", "float32", [B]);
  const ctx = g.input("encoder_hidden_states", "float32", [B, L, Dc]);

  // time embedding: [sin(t f), cos(t f)] → Linear → SiLU → Linear
  const half = td / 2;
  const freqs = Float32Array.from(
    { length: half },
    (_, i) => Math.exp((-Math.log(10000) * i) / half),
  );
  const arg = g.op("Mul", [
    g.op("Unsqueeze", [timestep, g.constI("ax1", [1])]),
    g.constF("freqs", [1, half], freqs),
  ]);
  const temb0 = g.op("Concat", [g.op("Sin", [arg]), g.op("Cos", [arg])], { axis: 1 });
  const Te = 4 * C;
  const gemm = (x: string, din: number, dout: number) =>
    g.op("Gemm", [x, l.w("te_w", [dout, din], 1 / Math.sqrt(din)), l.w("te_b", [dout], 0.05)], {
      transB: 1,
    });
  const temb = gemm(l.silu(gemm(temb0, td, Te)), Te, Te);

  const resnet = (x: string, cin: number, cout: number) => {
    let y = l.conv(l.silu(l.groupNorm(x, cin, G)), cin, cout, 3);
    const t = g.op("Unsqueeze", [gemm(l.silu(temb), Te, cout), g.constI("ax23", [2, 3])]);
    y = g.op("Add", [y, t]);
    y = l.conv(l.silu(l.groupNorm(y, cout, G)), cout, cout, 3);
    const skip = cin === cout ? x : l.conv(x, cin, cout, 1, 1, 0);
    return g.op("Add", [skip, y]);
  };

  const transformer = (x: string, c: number, h: number, w: number) => {
    const t = h * w;
    const pin = l.conv(l.groupNorm(x, c, G, 1e-6), c, c, 1, 1, 0);
    let tok = g.op("Reshape", [
      g.op("Transpose", [pin], { perm: [0, 2, 3, 1] }),
      g.constI("tok", [B, t, c]),
    ]);
    const n1 = l.layerNorm(tok, c);
    tok = g.op("Add", [tok, l.attention(n1, n1, B, t, t, c, c, heads)]);
    tok = g.op("Add", [tok, l.attention(l.layerNorm(tok, c), ctx, B, t, L, c, Dc, heads)]);
    const proj = l.linear(l.layerNorm(tok, c), c, 8 * c);
    const [hid, gate] = g.opN("Split", [proj, g.constI("geglu", [4 * c, 4 * c])], 2, { axis: -1 });
    tok = g.op("Add", [tok, l.linear(g.op("Mul", [hid, l.gelu(gate)]), 4 * c, c)]);
    const back = g.op("Transpose", [g.op("Reshape", [tok, g.constI("untok", [B, h, w, c])])], {
      perm: [0, 3, 1, 2],
    });
    return g.op("Add", [l.conv(back, c, c, 1, 1, 0), x]);
  };

  const h0 = l.conv(sample, 4, C, 3);
  const h1 = resnet(h0, C, C);
  const h2 = l.conv(h1, C, C, 3, 2, 1); // Downsample2D
  const h3 = resnet(h2, C, 2 * C);
  const h4 = transformer(h3, 2 * C, H / 2, W / 2);
  const up = g.op("Resize", [h4, "", g.constF("up_scales", [4], [1, 1, 2, 2])], {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  });
  const h5 = l.conv(up, 2 * C, 2 * C, 3);
  const h6 = resnet(g.op("Concat", [h5, h1], { axis: 1 }), 3 * C, C);
  const out = l.conv(l.silu(l.groupNorm(h6, C, G)), C, 4, 3);
  g.output(out, "out_sample", "float32", [B, 4, H, W]);
  return g.toBytes();
}

/**
 * VAE-encoder patterns: `sample` [B,3,H,W] → `latent_parameters` [B,8,H/4,W/4]: conv, ResNet
 * block (no time embedding), asymmetric Pad + stride-2 Conv (twice), single-head attention over
 * pixels, GroupNorm/SiLU head, 1×1 quant conv.
 */
export function vaeEncoderGraph(h: number, w: number, channels = 16, seed = 1): Uint8Array {
  const g = new GraphBuilder("vae_encoder", 17);
  const l = new Layers(g, weights(g, seed, "vae-encoder"));
  const C = channels, G = 4;
  const x = g.input("sample", "float32", [1, 3, h, w]);
  const res = (y: string, c: number) => {
    const r = l.conv(
      l.silu(l.groupNorm(l.conv(l.silu(l.groupNorm(y, c, G, 1e-6)), c, c, 3), c, G, 1e-6)),
      c,
      c,
      3,
    );
    return g.op("Add", [y, r]);
  };
  const down = (y: string, c: number) =>
    l.conv(
      g.op("Pad", [y, g.constI("pad", [0, 0, 0, 0, 0, 0, 1, 1])], { mode: "constant" }),
      c,
      c,
      3,
      2,
      0,
    );
  let y = l.conv(x, 3, C, 3);
  y = down(res(y, C), C);
  y = down(res(y, C), C);
  // mid-block attention: tokens [1, HW, C], one head
  const hh = h / 4, ww = w / 4, T = hh * ww;
  const n = l.groupNorm(y, C, G, 1e-6);
  const tok = g.op("Transpose", [g.op("Reshape", [n, g.constI("flat", [1, C, T])])], {
    perm: [0, 2, 1],
  });
  const q = l.linear(tok, C, C), k = l.linear(tok, C, C), v = l.linear(tok, C, C);
  const s = g.op("Div", [
    g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 2, 1] })]),
    g.constF("sq", [], [Math.sqrt(C)]),
  ]);
  const a = l.linear(g.op("MatMul", [g.op("Softmax", [s], { axis: -1 }), v]), C, C);
  const back = g.op("Reshape", [
    g.op("Transpose", [a], { perm: [0, 2, 1] }),
    g.constI("img", [1, C, hh, ww]),
  ]);
  y = g.op("Add", [y, back]);
  const out = l.conv(l.conv(l.silu(l.groupNorm(y, C, G, 1e-6)), C, 8, 3), 8, 8, 1, 1, 0);
  g.output(out, "latent_parameters", "float32", [1, 8, hh, ww]);
  return g.toBytes();
}

/**
 * CLIP text-encoder patterns: `input_ids` [1,T] int64 → `last_hidden_state` [1,T,D],
 * `pooler_output` [1,D]. Token embedding by Gather (node `token_embedding_lookup`), causal mask
 * from Shape/Range/Unsqueeze/Less/Where, pre-LN attention block with quick-GELU MLP, final LN,
 * pooler = hidden state at ArgMax(input_ids).
 */
export function clipTextGraph(vocab = 20, T = 6, D = 16, heads = 2, seed = 2): Uint8Array {
  const g = new GraphBuilder("clip_text", 17);
  const l = new Layers(g, weights(g, seed, "clip-text"));
  const ids = g.input("input_ids", "int64", [1, T]);
  const table = l.w("token_embedding", [vocab, D], 0.5);
  const tokEmb = g.opN("Gather", [table, ids], 1, { axis: 0 }, "token_embeds")[0];
  g.nodes[g.nodes.length - 1].name = "token_embedding_lookup";
  // position ids from the sequence length (integer plumbing)
  const seqLen = g.op("Gather", [g.op("Shape", [ids]), g.constI("one_idx", [1], [])], { axis: 0 });
  const pos = g.op("Unsqueeze", [
    g.op("Range", [g.constI("zero", [0], []), seqLen, g.constI("step", [1], [])]),
    g.constI("ax0", [0]),
  ]);
  let h = g.op("Add", [
    tokEmb,
    g.op("Gather", [l.w("position_embedding", [T, D], 0.3), pos], { axis: 0 }),
  ]);
  // causal mask: (j > i) → −1e4
  const r = g.op("Range", [g.constI("zero2", [0], []), seqLen, g.constI("step2", [1], [])]);
  const gt = g.op("Greater", [
    g.op("Unsqueeze", [r, g.constI("ax0b", [0])]),
    g.op("Unsqueeze", [r, g.constI("ax1b", [1])]),
  ]);
  const mask = g.op("Where", [gt, g.constF("neg", [], [-1e4]), g.constF("zero_f", [], [0])]);
  const n1 = l.layerNorm(h, D);
  const d = D / heads;
  const q = l.linear(n1, D, D), k = l.linear(n1, D, D), v = l.linear(n1, D, D);
  const sh = (y: string) =>
    g.op("Transpose", [g.op("Reshape", [y, g.constI("hs", [1, T, heads, d])])], {
      perm: [0, 2, 1, 3],
    });
  const kt = g.op("Transpose", [sh(k)], { perm: [0, 1, 3, 2] });
  const sc = g.op("Add", [
    g.op("Mul", [g.op("MatMul", [sh(q), kt]), g.constF("sc", [], [1 / Math.sqrt(d)])]),
    mask,
  ]);
  const att = g.op("MatMul", [g.op("Softmax", [sc], { axis: -1 }), sh(v)]);
  const merged = g.op("Reshape", [
    g.op("Transpose", [att], { perm: [0, 2, 1, 3] }),
    g.constI("mg", [1, T, D]),
  ]);
  h = g.op("Add", [h, l.linear(merged, D, D)]);
  const m = l.linear(l.layerNorm(h, D), D, 4 * D);
  const qg = g.op("Mul", [m, g.op("Sigmoid", [g.op("Mul", [m, g.constF("qg", [], [1.702])])])]);
  h = g.op("Add", [h, l.linear(qg, 4 * D, D)]);
  const last = l.layerNorm(h, D);
  g.output(last, "last_hidden_state", "float32", [1, T, D]);
  const eos = g.op("ArgMax", [ids], { axis: -1, keepdims: 0 });
  const pooled = g.op("Gather", [g.op("Squeeze", [last, g.constI("sq0", [0])]), eos], { axis: 0 });
  g.output(pooled, "pooler_output", "float32", [1, D]);
  return g.toBytes();
}

/**
 * Op structure of the built-in exact model's ε-UNet (see exact-model.md §2–3): inputs `sample`
 * [1,3,kh,kw], `timestep` [] (float), `encoder_hidden_states` [1,T,D]; θ = W·mean_tokens(c) + b,
 * λ = exp(a − (β/2) L), μ at DC, ᾱ by Gather of Round/Clip/Cast(timestep);
 * ε̂ = √(1−ᾱ)(z − √ᾱ μ)/(ᾱλ + 1 − ᾱ).
 */
export function exactUnetGraph(
  kh: number,
  kw: number,
  T = 4,
  D = 12,
  type: ElemType = "float32",
  seed = 3,
): Uint8Array {
  const g = new GraphBuilder("exact_unet_like", 17);
  const rng = streams(seed).get("vjp-fixture/exact");
  const c = (hint: string, dims: number[], f: (i: number) => number) =>
    g.initializer(
      hint,
      type,
      dims,
      Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => f(i)),
    );
  const z = g.input("sample", type, [1, 3, kh, kw] as Dims);
  const ts = g.input("timestep", type, []);
  const ctx = g.input("encoder_hidden_states", type, [1, T, D]);
  const cbar = g.op("ReduceMean", [ctx], { axes: [1], keepdims: 0 });
  const theta = g.op("Add", [
    g.op("MatMul", [cbar, c("w", [D, 9], () => 0.3 * rng.normal())]),
    c("b", [9], () => 0.1 * rng.normal()),
  ]);
  const part = (from: number) =>
    g.op("Reshape", [
      g.op("Slice", [theta, g.constI("s", [from]), g.constI("e", [from + 3]), g.constI("a", [1])]),
      g.constI("r", [-1, 3, 1, 1]),
    ]);
  const a = part(0), beta = part(3), mk = part(6);
  const Lf = c(
    "logfreq",
    [1, 1, kh, kw],
    (i) => Math.log(1e-3 + (i % kw) ** 2 + Math.floor(i / kw) ** 2),
  );
  const lam = g.op("Exp", [
    g.op("Add", [a, g.op("Mul", [g.op("Mul", [beta, c("mh", [], () => -0.5)]), Lf])]),
  ]);
  const mu = g.op("Mul", [mk, c("dc", [1, 1, kh, kw], (i) => (i === 0 ? 4 : 0))]);
  const abarTab = c("abar", [1000], (t) => Math.exp(-t / 300));
  const idx = g.op("Cast", [
    g.op("Clip", [g.op("Round", [ts]), c("lo", [], () => 0), c("hi", [], () => 999)]),
  ], { to: 7 });
  const ab = g.op("Gather", [abarTab, idx], { axis: 0 });
  const om = g.op("Sub", [c("one", [], () => 1), ab]);
  const d = g.op("Sub", [z, g.op("Mul", [g.op("Sqrt", [ab]), mu])]);
  const den = g.op("Add", [g.op("Mul", [ab, lam]), om]);
  g.output(g.op("Mul", [g.op("Sqrt", [om]), g.op("Div", [d, den])]), "out_sample", type, [
    1,
    3,
    kh,
    kw,
  ]);
  return g.toBytes();
}

/**
 * `count` SD-block composites chained through the latent: block i's `out_sample` feeds block
 * i+1's `sample` (timestep and context shared) — a graph of ~170·count nodes for transform-time
 * measurements.
 */
export function chainedSdBlocks(count: number, cfg: SdBlockConfig): Uint8Array {
  const models = Array.from(
    { length: count },
    (_, i) => decodeModel(sdBlockGraph({ ...cfg, seed: i })),
  );
  const g0 = models[0].graph!;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let prev = "sample";
  const shared = new Set(["timestep", "encoder_hidden_states"]);
  models.forEach((m, i) => {
    const pre = `b${i}/`;
    const ren = (n: string) => (n === "" ? n : n === "sample" ? prev : shared.has(n) ? n : pre + n);
    for (const nd of m.graph!.node!) {
      nodes.push({
        ...nd,
        name: pre + nd.name,
        input: nd.input!.map(ren),
        output: nd.output!.map(ren),
      });
    }
    for (const t of m.graph!.initializer!) inits.push({ ...t, name: pre + t.name });
    prev = pre + "out_sample";
  });
  nodes.push({ opType: "Identity", input: [prev], output: ["out_sample"], name: "final" });
  return encodeModel({ ...models[0], graph: { ...g0, node: nodes, initializer: inits } });
}

/** Size of the VAE-decoder-shaped block. */
export interface VaeDecoderConfig {
  /** Latent height. */
  height: number;
  /** Latent width. */
  width: number;
  /**
   * Channels at the latent resolution (default 32); the levels follow SD's decoder widths
   * (512, 512, 256, 128 → C, C, C/2, C/4).
   */
  channels?: number;
  /** GroupNorm groups (default 4; must divide C/4). */
  groups?: number;
  /** ResNet blocks per level (SD: 3; default 1). */
  resnets?: number;
  /** Weight seed (default 3). */
  seed?: number;
}

/**
 * A VAE-decoder-shaped block: SD's VAE-decoder layout at reduced widths, `latent_sample`
 * [1,4,h,w] → `sample` [1,3,8h,8w]. conv_in; mid block (ResNet, single-head attention over the
 * latent pixels, ResNet); four levels at 1×, 2×, 4×, 8× the latent resolution with C, C, C/2, C/4
 * channels (SD: 512, 512, 256, 128), each `resnets` ResNet blocks (1×1 shortcut where the width
 * changes) followed — except the last — by nearest ×2 `Resize` and a 3×3 conv; GroupNorm + SiLU +
 * conv_out. The exported GroupNorm pattern throughout. With SD's 3 ResNets per level the convolutions
 * dominate the work as in the real decoder (the attention is a few percent at a 64² latent).
 */
export function vaeDecoderGraph(cfg: VaeDecoderConfig): Uint8Array {
  const { height: h, width: w } = cfg;
  const C0 = cfg.channels ?? 32, G = cfg.groups ?? 4, R = cfg.resnets ?? 1;
  const g = new GraphBuilder("vae_decoder", 17);
  const l = new Layers(g, weights(g, cfg.seed ?? 3, "vae-decoder"));
  const z = g.input("latent_sample", "float32", [1, 4, h, w]);
  const res = (y: string, cin: number, cout: number) => {
    const r = l.conv(
      l.silu(
        l.groupNorm(l.conv(l.silu(l.groupNorm(y, cin, G, 1e-6)), cin, cout, 3), cout, G, 1e-6),
      ),
      cout,
      cout,
      3,
    );
    return g.op("Add", [cin === cout ? y : l.conv(y, cin, cout, 1, 1, 0), r]);
  };
  let y = res(l.conv(z, 4, C0, 3), C0, C0);
  // mid-block attention over the latent pixels, one head
  const T = h * w;
  const n = l.groupNorm(y, C0, G, 1e-6);
  const tok = g.op("Transpose", [g.op("Reshape", [n, g.constI("flat", [1, C0, T])])], {
    perm: [0, 2, 1],
  });
  const q = l.linear(tok, C0, C0), k = l.linear(tok, C0, C0), v = l.linear(tok, C0, C0);
  const s = g.op("Div", [
    g.op("MatMul", [q, g.op("Transpose", [k], { perm: [0, 2, 1] })]),
    g.constF("sq", [], [Math.sqrt(C0)]),
  ]);
  const a = l.linear(g.op("MatMul", [g.op("Softmax", [s], { axis: -1 }), v]), C0, C0);
  y = g.op("Add", [
    y,
    g.op("Reshape", [g.op("Transpose", [a], { perm: [0, 2, 1] }), g.constI("img", [1, C0, h, w])]),
  ]);
  y = res(y, C0, C0);
  const widths = [C0, C0, C0 / 2, C0 / 4];
  let c = C0;
  widths.forEach((cw, level) => {
    for (let i = 0; i < R; i++) {
      y = res(y, c, cw);
      c = cw;
    }
    if (level < widths.length - 1) {
      const up = g.op("Resize", [y, "", g.constF("up_scales", [4], [1, 1, 2, 2])], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      });
      y = l.conv(up, c, c, 3);
    }
  });
  const out = l.conv(l.silu(l.groupNorm(y, c, G, 1e-6)), c, 3, 3);
  g.output(out, "sample", "float32", [1, 3, 8 * h, 8 * w]);
  return g.toBytes();
}
