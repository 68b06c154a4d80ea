/**
 * `deno task bench:loss` (part of `deno task bench`): whole-loss graphs on CPU.
 *
 * The chain is LDPS's ‖2(A((D(x̂0/s)+1)/2) − y)‖ with the SD-block composite at SD1.5's first-level
 * widths as the UNet (core/onnx/vjp/fixtures.ts), a VAE-decoder-shaped block (SD's decoder layout at a
 * quarter of its widths, one ResNet per level, 8× upsampling) as
 * D, and the Gaussian blur σ = 3 (its ONNX export) as A, at 64² and 128² latents (512² and 1024²
 * images). Wall time and CPU time (with `--threads 1`, all of ORT's work; robust on a shared machine),
 * medians over N rounds × R timed runs after warm-up rounds, in one process; each round loads the
 * whole graph's forward and forward+VJP sessions, times R alternating pairs of them, releases them,
 * then loads the chain and times R runs of it (the two sets of sessions together exceed the memory
 * at 128²); the first two runs after loading are not timed (arena growth, then the block a forward
 * session's memory pattern planned):
 * - forward: the composed chain's forward (one run, loss out);
 * - whole: the whole-loss graph's forward + VJP w.r.t. z_t (one run);
 * - chained: network by network — UNet forward, decoder forward, A and its VJP in TypeScript, the
 *   decoder's VJP model, the UNet's VJP model (each VJP model repeats its network's forward).
 * Targets: whole / forward ≤ 2.5 and whole / chained ≤ 0.75.
 *
 * Also: the two-phase VJP against recompute on the UNet → x̂0 chain w.r.t. the context (LATINO-PRO's
 * pattern: the cotangent comes from TypeScript after the forward), with the activations held;
 * and the resident memory of forward and VJP sessions of a model with a 52 MB weight, each
 * measured in a fresh child process (`--memory`; ORT copies initializers per session).
 *
 * The machine is shared: compare ratios from one run. JSON in `bench-results/loss.json`.
 *
 * @module
 */
import "./gate.ts"; // first: permissions before any native library loads
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { InputError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { SessionPool } from "../core/backend/pool.ts";
import type { Feed } from "../core/backend/session.ts";
import { sdBlockGraph, vaeDecoderGraph } from "../core/onnx/vjp/fixtures.ts";
import { vjpSource } from "../core/onnx/vjp.ts";
import { GraphBuilder } from "../core/onnx/builder.ts";
import { GraphComposer, inlineSource } from "../core/onnx/compose.ts";
import { encodeModel } from "../core/onnx/proto.ts";
import { writeModel } from "../core/onnx/external.ts";
import { LossGraphBuilder } from "../core/loss/builder.ts";
import { DifferentiableGraph } from "../core/loss/differentiable.ts";
import { createOperator } from "../core/registry.ts";
import type { ForwardOperator } from "../core/contracts.ts";
import { streams } from "../core/rng.ts";
import { builtinRegistry } from "../mod.ts";
import { childEnv, formatTable, type Timing } from "./bench_util.ts";
import { taskForScript } from "./gate.ts";
import { configFor, WIDTHS } from "./bench_vjp.ts";
import { main, parseCli, parseNumber } from "./common.ts";
import { Progress } from "./progress.ts";

const USAGE =
  `Usage: deno task bench:loss [--only whole,two-phase,memory] [--sizes 64,128] [--runs N]
                            [--reps R] [--warmup N] [--threads N] [--no-memory] [--quiet]
                            [--out bench-results/loss.json]

Whole-loss graph (SD-block composite at SD1.5 widths + VAE-decoder-shaped block + blur σ=3 +
norm): forward+VJP vs forward and vs the network-by-network chain, at the given latent sizes (N
rounds of fresh sessions, R timed runs of each in a round: default N = 5 / 3 at 64² / 128², R = 2); the
two-phase VJP vs recompute; resident memory of forward and VJP sessions (fresh child processes).
`;

const SCALE = 0.18215, ALPHA = 1.9, BETA = -0.8;

function randn(n: number, name: string, s = 1): Float32Array {
  const r = streams(0).get(`bench-loss/${name}`);
  const a = new Float32Array(n);
  r.fillNormal(a);
  if (s !== 1) { for (let i = 0; i < n; i++) a[i] *= s; }
  return a;
}

/**
 * CPU time (user + system) as `node:process` reports it in Deno: the calling thread's, which with
 * `--threads 1` is all of ONNX Runtime's work (it then computes in the calling thread). On a shared
 * machine a run's wall time depends on what else runs; its CPU time much less.
 */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Wall and CPU time of one call. */
async function measure(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const c0 = cpuMs(), t0 = performance.now();
  await fn();
  return { wall: performance.now() - t0, cpu: cpuMs() - c0 };
}

/** Wall and CPU timings of one measurement. */
interface Times {
  /** Wall clock. */
  wall: Timing;
  /** Process CPU time (all threads). */
  cpu: Timing;
}

interface SizeReport {
  size: number;
  image: number[];
  /** The "whole" section: forward, whole and chained, and their ratios. */
  whole?: {
    forward: Times;
    whole: Times;
    chained: Times;
    /** whole / forward (medians of CPU time; wall-time ratio beside). */
    ratioForward: { cpu: number; wall: number };
    /** whole / chained (medians of CPU time; wall-time ratio beside). */
    ratioChained: { cpu: number; wall: number };
    /** Loss values of the whole graph and the chain (same numbers). */
    loss: { whole: number; chained: number };
  };
  /** The "two-phase" section. */
  twoPhase?: { twoPhase: Times; recompute: Times; heldMB: number };
}

/** The chain of one size: its networks, the blur, the feeds. */
interface LossCase {
  size: number;
  lat: number[];
  img: number[];
  unet: { key: string; bytes: Uint8Array; label: string };
  vae: { key: string; bytes: Uint8Array; label: string };
  op: ForwardOperator;
  feeds: Record<string, Feed>;
}

const L_CTX = 77, D_CTX = 768;

async function lossCase(size: number): Promise<LossCase> {
  const w = WIDTHS.sd15;
  const cfg = configFor(size, w.channels, w.heads);
  const unet = { key: `bench-loss/unet/${size}`, bytes: sdBlockGraph(cfg), label: "sd-block" };
  const vae = {
    key: `bench-loss/vae/${size}`,
    // SD's VAE-decoder layout at a quarter of its widths (512, 512, 256, 128 → 128, 128, 64, 32),
    // one ResNet per level (SD: 3 — at a 128² latent that no longer fits in 23 GB)
    bytes: vaeDecoderGraph({ height: size, width: size, channels: 128, groups: 16, resnets: 1 }),
    label: "vae-decoder",
  };
  const img = [1, 3, 8 * size, 8 * size];
  const op = await createOperator(builtinRegistry(), "blur:sigma=3", img, 0);
  const lat = [1, 4, size, size];
  const n = lat.reduce((p, q) => p * q, 1), m = img.reduce((p, q) => p * q, 1);
  const feeds: Record<string, Feed> = {
    z_t: { data: randn(n, "z"), shape: lat },
    encoder_hidden_states: { data: randn(L_CTX * D_CTX, "c", 0.5), shape: [1, L_CTX, D_CTX] },
    timestep: { data: [500], shape: [1] },
    x0_z: { data: [ALPHA], shape: [] },
    x0_out: { data: [BETA], shape: [] },
    y: { data: randn(m, "y", 0.1).map((v) => 0.5 + v), shape: img },
  };
  return { size, lat, img, unet, vae, op, feeds };
}

/** The whole-loss graph of the chain: ‖2(A((D(x̂0/s)+1)/2) − y)‖, differentiated w.r.t. z_t. */
async function buildLoss(cs: LossCase, pool: SessionPool) {
  const { unet, vae, op, lat, img } = cs;
  const b = new LossGraphBuilder("ldps-bench");
  const z = b.input("z_t", lat);
  const c = b.input("encoder_hidden_states", [1, L_CTX, D_CTX]);
  const t = await b.inputLike(unet, "timestep");
  const [ca, cb] = [b.scalar("x0_z"), b.scalar("x0_out")];
  const eps = (await b.network("unet", unet, { sample: z, timestep: t, encoder_hidden_states: c }))
    .out_sample;
  const z0 = b.lincomb([[z, ca], [eps, cb]]);
  const x = (await b.network("vae_decoder", vae, { latent_sample: b.scale(z0, 1 / SCALE) }))
    .sample;
  b.loss(b.norm(b.residual(op, b.affine(x, 0.5, 0.5), b.input("y", img)), { scale: 2 }));
  return await b.build({ key: `bench-loss/${cs.size}`, wrt: ["z_t"], pool, device: "cpu" });
}

/** The UNet's feeds of the chain. */
function unetFeeds(feeds: Record<string, Feed>): Record<string, Feed> {
  return {
    sample: feeds.z_t,
    timestep: feeds.timestep,
    encoder_hidden_states: feeds.encoder_hidden_states,
  };
}

/**
 * The chain network by network in `pool`: UNet forward, decoder forward, A and its VJP in
 * TypeScript, the decoder's VJP model, the UNet's VJP model. Returns the run (gradient w.r.t. z_t)
 * and the last loss value.
 */
async function chainRunner(cs: LossCase, pool: SessionPool) {
  const { unet, vae, op, lat, img, feeds } = cs;
  // the VJP models as gradient sessions (as core/networks.ts loads a network's VJP)
  const dev = { device: "cpu" }, grad = { device: "cpu", kind: "vjp" as const };
  const uF = await pool.session("chain/unet", unet, dev);
  const dF = await pool.session("chain/vae", vae, dev);
  const uB = await pool.session(
    "chain/unet-vjp",
    await vjpSource(unet, ["out_sample"], ["sample"]),
    grad,
  );
  const dB = await pool.session(
    "chain/vae-vjp",
    await vjpSource(vae, ["sample"], ["latent_sample"]),
    grad,
  );
  const uFeeds = unetFeeds(feeds);
  const n = lat.reduce((p, q) => p * q, 1), m = img.reduce((p, q) => p * q, 1);
  const y = feeds.y.data as Float32Array, zt = feeds.z_t.data as Float32Array;
  const state = { loss: 0 };
  const run = async () => {
    const e = (await uF.run(uFeeds)).out_sample;
    const zs = new Float32Array(n);
    for (let i = 0; i < n; i++) zs[i] = (ALPHA * zt[i] + BETA * e.data[i]) / SCALE;
    const latent = { data: zs, shape: lat };
    const xd = (await dF.run({ latent_sample: latent })).sample;
    const u = { data: xd.data.map((v) => 0.5 * v + 0.5), shape: xd.shape };
    const ax = await op.forward(u);
    let ss = 0;
    const r = new Float32Array(m);
    for (let i = 0; i < m; i++) {
      r[i] = 2 * (ax.data[i] - y[i]);
      ss += r[i] * r[i];
    }
    state.loss = Math.sqrt(ss);
    for (let i = 0; i < m; i++) r[i] = (2 * r[i]) / state.loss;
    const gu = await op.vjp(u, { data: r, shape: img });
    for (let i = 0; i < m; i++) gu.data[i] *= 0.5;
    const gl =
      (await dB.run({ latent_sample: latent, "sample.cotangent": gu }))["latent_sample.grad"];
    const ge = new Float32Array(n);
    for (let i = 0; i < n; i++) ge[i] = (BETA * gl.data[i]) / SCALE;
    return (await uB.run({ ...uFeeds, "out_sample.cotangent": { data: ge, shape: lat } }))[
      "sample.grad"
    ];
  };
  return { run, state };
}

type M = { wall: number; cpu: number };

/** The "whole" section: forward, whole and chained, in alternating rounds. */
async function wholeSection(
  cs: LossCase,
  runs: number,
  warmup: number,
  threads: number | undefined,
  reps: number,
): Promise<NonNullable<SizeReport["whole"]>> {
  // Rounds alternate two phases, each with its own sessions released at its end: at 128² a
  // gradient session's arena holds several GB (the decoder's mid-block attention alone has 16384²
  // scores) and the whole graph's and the chain's sessions together exceed 23 GB. Alternating
  // within each round keeps a drifting load (a shared machine) from favouring one side.
  const { feeds } = cs;
  const times = { forward: [] as M[], whole: [] as M[], chained: [] as M[] };
  let wholeLoss = 0, chainLoss = 0;
  for (let round = 0; round < warmup + runs; round++) {
    const keep = round >= warmup;
    let pool = new SessionPool({ threads });
    const lg = await buildLoss(cs, pool);
    // the first two runs of each session are not timed: the first grows the arena, and a
    // forward session's second allocates the block its memory pattern planned (page faults:
    // 0.5 s of system time for a gradient session at 64², which therefore runs without one)
    for (let i = 0; i < 2; i++) {
      await lg.graph.forward(feeds);
      await lg.lossAndGrad(feeds);
    }
    // R alternating pairs: single runs at 128² vary by 10–18 % on a shared machine, so more
    // samples per loaded session are cheaper than more rounds (each pays the loading)
    const tf: M[] = [], tw: M[] = [], tc: M[] = [];
    for (let i = 0; i < reps; i++) {
      tf.push(await measure(() => lg.graph.forward(feeds)));
      tw.push(
        await measure(async () => {
          wholeLoss = (await lg.lossAndGrad(feeds)).value;
        }),
      );
    }
    await pool.release();
    pool = new SessionPool({ threads });
    const ch = await chainRunner(cs, pool);
    for (let i = 0; i < 2; i++) await ch.run();
    for (let i = 0; i < reps; i++) tc.push(await measure(() => ch.run()));
    chainLoss = ch.state.loss;
    await pool.release();
    if (keep) {
      times.forward.push(...tf);
      times.whole.push(...tw);
      times.chained.push(...tc);
    }
  }
  const both = (a: M[]): Times => ({
    wall: summary(a.map((x) => x.wall)),
    cpu: summary(a.map((x) => x.cpu)),
  });
  const forward = both(times.forward), whole = both(times.whole), chained = both(times.chained);
  return {
    forward,
    whole,
    chained,
    ratioForward: {
      cpu: whole.cpu.median / forward.cpu.median,
      wall: whole.wall.median / forward.wall.median,
    },
    ratioChained: {
      cpu: whole.cpu.median / chained.cpu.median,
      wall: whole.wall.median / chained.wall.median,
    },
    loss: { whole: wholeLoss, chained: chainLoss },
  };
}

/**
 * The "two-phase" section, LATINO-PRO's pattern: UNet → x̂0 (vector), the cotangent comes from
 * TypeScript after the forward, ∂/∂context — two-phase against recompute.
 */
async function twoPhaseSection(
  cs: LossCase,
  runs: number,
  warmup: number,
  threads: number | undefined,
): Promise<NonNullable<SizeReport["twoPhase"]>> {
  const { unet, lat, size, feeds } = cs;
  const n = lat.reduce((p, q) => p * q, 1);
  const pool2 = new SessionPool({ threads });
  (globalThis as { gc?: () => void }).gc?.();
  const x0Graph = await DifferentiableGraph.create(
    { bytes: await x0Model(unet, lat, L_CTX, D_CTX) },
    {
      key: `bench-loss/x0/${size}`,
      of: ["x0"],
      wrt: ["encoder_hidden_states"],
      pool: pool2,
      device: "cpu",
      networks: ["unet"],
    },
  );
  const cot = { x0: { data: randn(n, "x0-cot"), shape: lat } };
  const pass = (mode: "two-phase" | "recompute") => async () => {
    const p = await x0Graph.begin(uFeeds2(feeds), mode);
    await p.backward(cot);
  };
  const g2 = await interleave(
    { twoPhase: pass("two-phase"), recompute: pass("recompute") },
    runs,
    warmup,
  );
  await pool2.release();
  return {
    twoPhase: g2.twoPhase,
    recompute: g2.recompute,
    heldMB: (await x0Graph.heldElements()) * 4 / 2 ** 20,
  };
}

async function benchSize(
  size: number,
  runs: number,
  warmup: number,
  threads: number | undefined,
  sections: ReadonlySet<string>,
  reps: number,
): Promise<SizeReport> {
  const cs = await lossCase(size);
  const report: SizeReport = { size, image: cs.img };
  if (sections.has("whole")) report.whole = await wholeSection(cs, runs, warmup, threads, reps);
  if (sections.has("two-phase")) {
    report.twoPhase = await twoPhaseSection(cs, runs, warmup, threads);
  }
  return report;
}

/** Median, p10, p90 of timings. */
function summary(a: number[]): Timing {
  const s = [...a].sort((p, q) => p - q);
  const q = (f: number) => {
    const pos = f * (s.length - 1), lo = Math.floor(pos), hi = Math.ceil(pos);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  };
  return { median: q(0.5), p10: q(0.1), p90: q(0.9), runs: a };
}

/** Time functions interleaved: `warmup` rounds, then `runs` rounds each running every function once. */
async function interleave<K extends string>(
  fns: Record<K, () => Promise<unknown>>,
  runs: number,
  warmup: number,
): Promise<Record<K, Times>> {
  const names = Object.keys(fns) as K[];
  for (let i = 0; i < warmup; i++) for (const k of names) await fns[k]();
  const times = Object.fromEntries(
    names.map((k) => [k, [] as { wall: number; cpu: number }[]]),
  ) as Record<
    K,
    { wall: number; cpu: number }[]
  >;
  for (let r = 0; r < runs; r++) for (const k of names) times[k].push(await measure(fns[k]));
  const out = {} as Record<K, Times>;
  for (const k of names) {
    out[k] = {
      wall: summary(times[k].map((x) => x.wall)),
      cpu: summary(times[k].map((x) => x.cpu)),
    };
  }
  return out;
}

function uFeeds2(feeds: Record<string, Feed>): Record<string, Feed> {
  return {
    z_t: feeds.z_t,
    timestep: feeds.timestep,
    encoder_hidden_states: feeds.encoder_hidden_states,
  };
}

/** The UNet → x̂0 = α z + β ε chain as one model (output `x0`). */
async function x0Model(
  unet: { key: string; bytes: Uint8Array },
  lat: number[],
  L: number,
  D: number,
): Promise<Uint8Array> {
  const c = new GraphComposer("x0-chain");
  const z = c.input("z_t", "float32", lat),
    ctx = c.input("encoder_hidden_states", "float32", [1, L, D]);
  const t = c.input("timestep", "float32", [1]);
  const e = c.inline(await inlineSource(unet.bytes), "unet", {
    sample: z,
    timestep: t,
    encoder_hidden_states: ctx,
  }).out_sample;
  const x0 = c.op("Add", [
    c.op("Mul", [z, c.constant("a", "float32", [], [ALPHA])]),
    c.op("Mul", [e, c.constant("b", "float32", [], [BETA])]),
  ]);
  c.output(x0, "x0", "float32", lat);
  return encodeModel(c.build().model);
}

// ---- resident memory of forward and VJP sessions (fresh child processes)

/** Sizes of the weight of {@link writeBigModel}: W is MEM_N × MEM_M float32 (52.4 MB). */
export const MEM_N = 3200, MEM_M = 4096;

/**
 * Write y = tanh(x W) with W (52.4 MB) as external data into `dir` (`model.onnx` +
 * `model.onnx_data`); returns the model path. Shared with the weights-once test.
 */
export async function writeBigModel(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const w = new Float32Array(MEM_N * MEM_M);
  for (let i = 0; i < w.length; i++) w[i] = 0.01 * Math.sin(i);
  await Deno.writeFile(join(dir, "model.onnx_data"), new Uint8Array(w.buffer));
  const g = new GraphBuilder("big");
  const x = g.input("x", "float32", [1, MEM_N]);
  g.initializers.push({
    name: "W",
    dims: [MEM_N, MEM_M],
    dataType: 1,
    dataLocation: 1,
    externalData: [
      { key: "location", value: "model.onnx_data" },
      { key: "offset", value: "0" },
      { key: "length", value: String(w.byteLength) },
    ],
  });
  g.output(g.op("Tanh", [g.op("MatMul", [x, "W"])]), "y", "float32", [1, MEM_M]);
  const path = join(dir, "model.onnx");
  await writeModel(g.toModel(), path, dir);
  return path;
}

/** Child mode: load the sessions named in `which` ("forward", "vjp"), print RSS steps in MB. */
async function memoryChild(path: string, which: string[]): Promise<number> {
  const gc = () => (globalThis as { gc?: () => void }).gc?.();
  const rss = () => Deno.memoryUsage().rss / 2 ** 20;
  const pool = new SessionPool({ threads: 2 });
  const x = { x: { data: new Float32Array(MEM_N).fill(0.01), shape: [1, MEM_N] } };
  gc();
  const steps: Record<string, number> = { before: rss() };
  for (const w of which) {
    if (w === "forward") {
      const s = await pool.session("fwd", { path }, { device: "cpu" });
      await s.run(x);
    } else if (w === "vjp-noprepack") {
      // ONNX Runtime prepacks a constant matrix per consumer: with the forward product and the
      // gradient's both reading W, a VJP session keeps two layouts unless prepacking is off
      const src = await vjpSource({ path }, ["y"], ["x"]);
      const s = await pool.session("vjp-np", src, { device: "cpu", prepack: false });
      await s.run({
        ...x,
        "y.cotangent": { data: new Float32Array(MEM_M).fill(1), shape: [1, MEM_M] },
      });
    } else {
      const s = await pool.session("vjp", await vjpSource({ path }, ["y"], ["x"]), {
        device: "cpu",
      });
      await s.run({
        ...x,
        "y.cotangent": { data: new Float32Array(MEM_M).fill(1), shape: [1, MEM_M] },
      });
    }
    gc();
    steps[w] = rss();
  }
  console.log(JSON.stringify(steps));
  return 0;
}

async function memoryReport(dir: string): Promise<Record<string, unknown>> {
  const path = await writeBigModel(dir);
  const exec = Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state ===
      "granted"
    ? Deno.execPath()
    : "deno";
  // the task's own flags (cli/gate.ts checks them in the child too)
  const flags = taskForScript("cli/bench_loss.ts")?.flags ??
    ["--v8-flags=--expose-gc", "--allow-read", "--allow-write=bench-results", "--allow-ffi"];
  const run = async (which: string) => {
    const r = await new Deno.Command(exec, {
      args: ["run", ...flags, fileURLToPath(import.meta.url), "--memory-child", path, which],
      stdin: "null",
      stderr: "inherit",
      env: childEnv(),
      clearEnv: true,
    }).output();
    if (r.code !== 0) throw new Error(`memory child (${which}) failed`);
    return JSON.parse(new TextDecoder().decode(r.stdout)) as Record<string, number>;
  };
  const f = await run("forward"), v = await run("vjp"), fv = await run("forward,vjp");
  const vn = await run("vjp-noprepack");
  const weightMB = (MEM_N * MEM_M * 4) / 2 ** 20;
  return {
    weightMB,
    forwardMB: f.forward - f.before,
    vjpMB: v.vjp - v.before,
    forwardPlusVjpMB: fv.vjp - fv.before,
    vjpNoPrepackMB: vn["vjp-noprepack"] - vn.before,
    factor: (fv.vjp - fv.before) / weightMB,
  };
}

/** A checked whole-loss benchmark run (see {@link planLossBench}). */
export interface LossBenchPlan {
  /** Latent sizes. */
  sizes: number[];
  /** Rounds of fresh sessions (default by size). */
  runs?: number;
  /** Timed runs of each session per round (default 2). */
  reps: number;
  /** Untimed rounds first. */
  warmup: number;
  /** ORT intra-op threads. */
  threads?: number;
  /** Sections to run: "whole" (forward, whole, chained), "two-phase", "memory". */
  sections: Set<string>;
  /** JSON output path. */
  out: string;
  /** No progress bars. */
  quiet: boolean;
}

/** The benchmark's sections. */
export const LOSS_SECTIONS: readonly string[] = ["whole", "two-phase", "memory"];

function chooseSections(only: string | undefined, noMemory: boolean): Set<string> {
  const names = only === undefined
    ? [...LOSS_SECTIONS]
    : only.split(",").map((n) => n.trim()).filter(Boolean);
  for (const n of names) {
    if (!LOSS_SECTIONS.includes(n)) {
      throw new InputError(`--only ${n}: expected ${LOSS_SECTIONS.join(", ")} (comma-separated)`);
    }
  }
  if (!names.length) throw new InputError("--only: expected a comma-separated list of sections");
  const s = new Set(names);
  if (noMemory) s.delete("memory");
  return s;
}

/** Check the arguments (before anything runs); undefined after printing `--help`. */
export function planLossBench(args: string[]): LossBenchPlan | undefined {
  const { values } = parseCli(args, {
    sizes: { type: "string" },
    runs: { type: "string" },
    reps: { type: "string" },
    warmup: { type: "string" },
    threads: { type: "string" },
    "no-memory": { type: "boolean" },
    only: { type: "string" },
    out: { type: "string" },
    quiet: { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const sizes = (values.sizes ?? "64,128").split(",").map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 8 || v % 4 !== 0) {
      throw new InputError(`--sizes "${s}": expected multiples of 4, ≥ 8`);
    }
    return v;
  });
  const out = values.out ?? "bench-results/loss.json";
  if (!out.endsWith(".json")) throw new InputError(`--out ${out}: expected a .json path`);
  return {
    sizes,
    runs: values.runs === undefined
      ? undefined
      : parseNumber(values.runs, "--runs", { min: 1, integer: true }),
    reps: parseNumber(values.reps, "--reps", { fallback: 2, min: 1, integer: true }),
    warmup: parseNumber(values.warmup, "--warmup", { fallback: 1, min: 0, integer: true }),
    threads: values.threads
      ? parseNumber(values.threads, "--threads", { min: 1, integer: true })
      : undefined,
    sections: chooseSections(values.only, values["no-memory"] ?? false),
    out,
    quiet: values.quiet ?? false,
  };
}

/** Run a checked whole-loss benchmark: every size, the memory section, the JSON file. */
export async function runLossBench(plan: LossBenchPlan): Promise<void> {
  const progress = new Progress({ enabled: !plan.quiet });
  const sized = plan.sections.has("whole") || plan.sections.has("two-phase");
  const memorySection = plan.sections.has("memory");
  const cases = progress.task("loss", (sized ? plan.sizes.length : 0) + (memorySection ? 1 : 0));
  const results: SizeReport[] = [];
  const rows = [[
    "latent",
    "image",
    "forward ms cpu (wall)",
    "whole ms cpu (wall)",
    "chained ms cpu (wall)",
    "whole/forward cpu (wall)",
    "whole/chained cpu (wall)",
    "two-phase ms cpu",
    "recompute ms cpu",
    "held MB",
  ]];
  let memory: Record<string, unknown> | undefined;
  try {
    for (const size of sized ? plan.sizes : []) {
      const runs = plan.runs ?? (size >= 128 ? 3 : 5);
      const r = await benchSize(size, runs, plan.warmup, plan.threads, plan.sections, plan.reps);
      (globalThis as { gc?: () => void }).gc?.();
      results.push(r);
      const t = (x?: Times) => x ? `${x.cpu.median.toFixed(0)} (${x.wall.median.toFixed(0)})` : "–";
      const q = (x?: { cpu: number; wall: number }) =>
        x ? `${x.cpu.toFixed(2)} (${x.wall.toFixed(2)})` : "–";
      const w = r.whole, tp = r.twoPhase;
      rows.push([
        `1x4x${size}x${size}`,
        `${r.image[2]}²`,
        t(w?.forward),
        t(w?.whole),
        t(w?.chained),
        q(w?.ratioForward),
        q(w?.ratioChained),
        tp ? tp.twoPhase.cpu.median.toFixed(0) : "–",
        tp ? tp.recompute.cpu.median.toFixed(0) : "–",
        tp ? tp.heldMB.toFixed(0) : "–",
      ]);
      cases.tick();
    }
    if (memorySection) {
      const dir = join(dirname(plan.out), ".weights-once");
      try {
        memory = await memoryReport(dir);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
      cases.tick();
    }
  } finally {
    cases.done();
    progress.stop();
  }
  const report = {
    kind: "loss",
    date: new Date().toISOString(),
    targets: "whole ≤ 2.5 × forward; whole ≤ 0.75 × chained",
    machine: {
      cpus: navigator.hardwareConcurrency,
      loadavg: Deno.loadavg(),
      threads: plan.threads,
    },
    results,
    memory,
  };
  await writeFileAtomic(plan.out, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
  console.log(`whole-loss graphs (CPU, load ${Deno.loadavg()[0].toFixed(2)})`);
  console.log(formatTable(rows));
  if (memory) console.log(`resident memory, 52 MB weight: ${JSON.stringify(memory)}`);
  console.log(`wrote ${plan.out}`);
}

/** Run the whole-loss benchmark with command-line arguments. */
export async function benchLoss(args: string[]): Promise<number> {
  if (args[0] === "--memory-child") return await memoryChild(args[1], args[2].split(","));
  const plan = planLossBench(args);
  if (plan) await runLossBench(plan);
  return 0;
}

if (import.meta.main) await main(benchLoss);
