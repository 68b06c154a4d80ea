/**
 * The built-in model's exact posteriors against dense Gaussian algebra and simulations: diagonal
 * posteriors and the evidence, its derivatives and maximiser, LATINO's moment recursion, the CG
 * posterior for general linear operators (split from exact_model_test.ts).
 */
import assert from "node:assert/strict";
import { streams } from "../core/rng.ts";
import {
  choleskySolve,
  consistencyMap,
  decode64,
  diagonalProblem,
  embeddingForTheta,
  embeddingGradient,
  encode64,
  evidenceGainFraction,
  exactSchedule,
  expectedPriorScoreTheta,
  latentLayout,
  LATINO_TIMESTEPS,
  latinoMoments,
  type LinearOperator64,
  linearOperator64,
  logEvidence,
  maskGramDiagonal,
  maximiseEvidence,
  posteriorDiagonal,
  posteriorMeanCG,
  posteriorSampleCG,
  posteriorVarianceCG,
  thetaFromEmbedding,
} from "../plugins/builtin-gaussian/closed_form.ts";
import {
  createExactModel,
  embedIds,
  modelMoments,
  promptIds,
  promptTheta,
} from "../plugins/builtin-gaussian/model.ts";
import { createOperator, PluginRegistry } from "../core/registry.ts";
import { operatorPlugins } from "../operators/mod.ts";
import type { BlurOperator } from "../operators/blur.ts";

import {
  assertClose,
  denseOf,
  H,
  matMul,
  matT,
  matVec,
  model,
  randomImage,
  relErr,
  simulate,
  spdInverse,
  symBlur,
  W,
} from "./exact_model_helpers.ts";

// ---------------------------------------------------------------------------------------------
// Posteriors, evidence, LATINO

const small = latentLayout([1, 3, 4, 6]);
const smallModel = createExactModel({ imageShape: [1, 3, 4, 6] });

Deno.test("exact model: diagonal posterior and evidence equal dense Gaussian algebra (symmetric blur)", () => {
  const l = small, n = 3 * 4 * 6, sigmaY = 0.02;
  const blur = symBlur(4, 6);
  // The symmetric-boundary blur is diagonal in the DCT basis with the expected h.
  const Dm = denseOf((z) => decode64(z, l), n).M; // image ← latent
  const AD = matMul(blur.dense, Dm, n, n, n);
  const M = matMul(matT(Dm, n, n), AD, n, n, n); // Dᵀ A D
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const want = i === j ? blur.hdiag[i % 24] : 0;
      assert.ok(Math.abs(M[i * n + j] - want) < 1e-14, `DᵀAD[${i},${j}]`);
    }
  }
  const theta = promptTheta(smallModel, "a sharp photo");
  const mom = modelMoments(smallModel, theta);
  const { y } = simulate(l, mom, blur.op, sigmaY, "diag");
  const prob = diagonalProblem(y, blur.hdiag, sigmaY, l);
  const post = posteriorDiagonal(prob, mom);
  // dense: P = DᵀAᵀAD/σ′² + Λ⁻¹, b = DᵀAᵀy′/σ′² + Λ⁻¹μ, y′ = 2y − A1
  const s2 = (2 * sigmaY) ** 2;
  const ones = blur.op.forward(new Float64Array(n).fill(1)) as Float64Array;
  const yp = y.map((v, i) => 2 * v - ones[i]);
  const P = matMul(matT(AD, n, n), AD, n, n, n).map((v) => v / s2);
  for (let i = 0; i < n; i++) P[i * n + i] += 1 / mom.lambda[i];
  const b = matVec(matT(AD, n, n), yp, n, n).map((v, i) => v / s2 + mom.mu[i] / mom.lambda[i]);
  const mean = choleskySolve(P, b, n)!;
  const cov = spdInverse(P, n);
  assertClose(post.mean, mean, 1e-9, 1e-9, "posterior mean");
  assertClose(
    post.variance,
    Array.from({ length: n }, (_, i) => cov[i * n + i]),
    1e-9,
    0,
    "posterior variance",
  );
  // evidence: y′ ~ N(A D μ, A D Λ Dᵀ Aᵀ + σ′² I), dense log-density
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += AD[i * n + k] * mom.lambda[k] * AD[j * n + k];
      S[i * n + j] = s + (i === j ? s2 : 0);
    }
  }
  const r = yp.map((v, i) => v - matVec(AD, mom.mu, n, n)[i]);
  const Sr = choleskySolve(S, r, n)!;
  let logdet = 0;
  { // log det by Cholesky diagonal
    const L = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let s = S[i * n + j];
        for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
        L[i * n + j] = i === j ? Math.sqrt(s) : s / L[j * n + j];
      }
      logdet += 2 * Math.log(L[i * n + i]);
    }
  }
  const dense = -0.5 *
    (n * Math.log(2 * Math.PI) + logdet + r.reduce((s, v, i) => s + v * Sr[i], 0));
  const ev = logEvidence(theta, prob, smallModel.spectrum).value;
  assert.ok(Math.abs(ev - dense) < 1e-9 * Math.abs(dense), `evidence ${ev} vs dense ${dense}`);
});

Deno.test("exact model: evidence gradient and Hessian match finite differences; θ* is a maximum", () => {
  const l = latentLayout([1, 3, 12, 16]);
  const m = createExactModel({ imageShape: [1, 3, 12, 16], refSize: 64 });
  const blur = symBlur(12, 16);
  const thetaTrue = promptTheta(m, "a sharp bright photo");
  const { y } = simulate(l, modelMoments(m, thetaTrue), blur.op, 0.01, "evidence");
  const prob = diagonalProblem(y, blur.hdiag, 0.01, l);
  const sp = m.spectrum;
  const theta0 = promptTheta(m, "");
  const d = logEvidence(theta0, prob, sp);
  const step = 1e-5;
  let gErr = 0, hErr = 0, gMax = 0, hMax = 0;
  for (let j = 0; j < 9; j++) {
    const tp = Float64Array.from(theta0), tm = Float64Array.from(theta0);
    tp[j] += step;
    tm[j] -= step;
    const ep = logEvidence(tp, prob, sp), em = logEvidence(tm, prob, sp);
    gErr = Math.max(gErr, Math.abs((ep.value - em.value) / (2 * step) - d.gradient[j]));
    gMax = Math.max(gMax, Math.abs(d.gradient[j]));
    for (let i = 0; i < 9; i++) {
      hErr = Math.max(
        hErr,
        Math.abs((ep.gradient[i] - em.gradient[i]) / (2 * step) - d.hessian[i * 9 + j]),
      );
      hMax = Math.max(hMax, Math.abs(d.hessian[i * 9 + j]));
    }
  }
  console.log(
    `evidence FD: gradient rel ${(gErr / gMax).toExponential(2)}, Hessian rel ${
      (hErr / hMax).toExponential(2)
    }`,
  );
  assert.ok(gErr / gMax < 1e-6 && hErr / hMax < 1e-6);
  // embedding gradient: ∂/∂c of log p(y|θ(c))
  const c0 = embedIds(m, promptIds(m, ""));
  const gc = embeddingGradient(d.gradient, 77, m.text.readout);
  const dir = c0.map((_, i) => Math.sin(i));
  const fd =
    (logEvidence(thetaFromEmbedding(c0.map((v, i) => v + 1e-4 * dir[i]), m.text.readout), prob, sp)
      .value -
      logEvidence(thetaFromEmbedding(c0.map((v, i) => v - 1e-4 * dir[i]), m.text.readout), prob, sp)
        .value) / 2e-4;
  const an = gc.reduce((s, v, i) => s + v * dir[i], 0);
  assert.ok(Math.abs(fd - an) < 1e-5 * Math.abs(an), `∇_c: ${fd} vs ${an}`);
  // θ* by Newton
  const best = maximiseEvidence(prob, sp, theta0);
  console.log(
    `θ*: ${Array.from(best.theta, (v) => v.toFixed(3)).join(" ")} (true ${
      Array.from(thetaTrue, (v) => v.toFixed(3)).join(" ")
    }), ‖∇‖ = ${best.gradientNorm.toExponential(1)}, ${best.iterations} iterations, gain ${
      (best.logEvidence - d.value).toFixed(2)
    } nats`,
  );
  assert.ok(best.converged && best.gradientNorm < 1e-6);
  assert.ok(best.logEvidence >= logEvidence(thetaTrue, prob, sp).value);
  for (let j = 0; j < 9; j++) {
    for (const s of [-1e-2, 1e-2]) {
      const t = Float64Array.from(best.theta);
      t[j] += s;
      assert.ok(logEvidence(t, prob, sp).value < best.logEvidence);
    }
  }
  assert.ok(Math.abs(evidenceGainFraction(best.theta, theta0, prob, sp) - 1) < 1e-9);
  assert.equal(evidenceGainFraction(theta0, theta0, prob, sp, best.theta), 0);
  // Fisher identity: E_post[∇_θ log p(z|θ)] = ∇_θ log p(y|θ), in closed form
  const fisher = expectedPriorScoreTheta(
    posteriorDiagonal(prob, modelMoments(m, theta0)),
    theta0,
    l,
    sp,
  );
  assert.ok(relErr(fisher, d.gradient) < 1e-9, `Fisher identity: ${relErr(fisher, d.gradient)}`);
  // the embedding that realises θ*
  const cStar = embeddingForTheta(best.theta, 77, m.text.readout);
  assertClose(thetaFromEmbedding(cStar, m.text.readout), best.theta, 1e-12, 1e-12, "θ(c*)");
});

Deno.test("exact model: LATINO moment recursion equals a float64 simulation of the pipeline", () => {
  const l = small, n = 3 * 4 * 6, sigmaY = 0.01, delta = 0.3;
  const blur = symBlur(4, 6);
  const mom = modelMoments(smallModel, promptTheta(smallModel, "a photo"));
  const { y } = simulate(l, mom, blur.op, sigmaY, "latino");
  const prob = diagonalProblem(y, blur.hdiag, sigmaY, l);
  const law = latinoMoments(prob, mom, { delta });
  // The pipeline in image space: x_init = Aᵀy′, z = E(x_init); per step: noise to t, G, decode,
  // prox (γAᵀA + I)u = γAᵀy′ + x with γ = δ(1−ᾱ)/σ′² (dense), encode.
  const { alphasCumprod } = exactSchedule();
  const ones = blur.op.forward(new Float64Array(n).fill(1)) as Float64Array;
  const yp = y.map((v, i) => 2 * v - ones[i]);
  const AtA = matMul(matT(blur.dense, n, n), blur.dense, n, n, n);
  const aty = matVec(matT(blur.dense, n, n), yp, n, n);
  const proxInv = LATINO_TIMESTEPS.map((t) => {
    const gamma = delta * (1 - alphasCumprod[t]) / (2 * sigmaY) ** 2;
    const M = AtA.map((v) => gamma * v);
    for (let i = 0; i < n; i++) M[i * n + i] += 1;
    return { gamma, inv: spdInverse(M, n) };
  });
  const run = (noise: () => number) => {
    let z = encode64(aty, l);
    LATINO_TIMESTEPS.forEach((t, s) => {
      const ab = alphasCumprod[t];
      const zt = z.map((v) => Math.sqrt(ab) * v + Math.sqrt(1 - ab) * noise());
      const x = decode64(consistencyMap(zt, t, mom), l);
      const rhs = x.map((v, i) => proxInv[s].gamma * aty[i] + v);
      z = encode64(matVec(proxInv[s].inv, rhs, n, n), l);
    });
    return z;
  };
  assertClose(run(() => 0), law.mean, 1e-10, 1e-12, "zero-noise output = propagated mean");
  const N = 400, r = streams(3).get("latino-test");
  const sum = new Float64Array(n), sq = new Float64Array(n);
  const outs: Float64Array[] = [];
  for (let k = 0; k < N; k++) outs.push(run(() => r.normal()));
  for (const o of outs) o.forEach((v, i) => (sum[i] += v));
  const mean = sum.map((v) => v / N);
  for (const o of outs) o.forEach((v, i) => (sq[i] += (v - mean[i]) ** 2));
  let ratio = 0, zmax = 0;
  for (let i = 0; i < n; i++) {
    ratio += sq[i] / (N - 1) / law.variance[i];
    zmax = Math.max(zmax, Math.abs(mean[i] - law.mean[i]) / Math.sqrt(law.variance[i] / N));
  }
  ratio /= n;
  const bound = 5 * Math.sqrt(2 / (N - 1)) / Math.sqrt(n);
  console.log(
    `LATINO variance: pooled s²/v = ${ratio.toFixed(4)} (bound ±${
      bound.toFixed(4)
    }), max |mean z| ${zmax.toFixed(2)}`,
  );
  assert.ok(Math.abs(ratio - 1) < bound);
  assert.ok(zmax < 5);
});

Deno.test("exact model: CG posterior (box inpainting) equals dense algebra; perturbation samples", async () => {
  const h = 6, w = 8, l = latentLayout([1, 3, h, w]), n = 3 * h * w, sigmaY = 0.02;
  const m = createExactModel({ imageShape: [1, 3, h, w] });
  const mask = new Float64Array(n).fill(1);
  for (let c = 0; c < 3; c++) {
    for (let i = 2; i < 4; i++) for (let j = 3; j < 6; j++) mask[(c * h + i) * w + j] = 0;
  }
  const op: LinearOperator64 = {
    forward: (x) => x.map((v, i) => v * mask[i]),
    adjoint: (y) => y.map((v, i) => v * mask[i]),
  };
  const mom = modelMoments(m, promptTheta(m, "a smooth photo"));
  const { y } = simulate(l, mom, op, sigmaY, "inpaint");
  const Dm = denseOf((z) => decode64(z, l), n).M;
  const MD = Dm.map((v, i) => v * mask[Math.floor(i / n)]);
  const s2 = (2 * sigmaY) ** 2;
  const P = matMul(matT(Dm, n, n), MD, n, n, n);
  const gram = Array.from({ length: n }, (_, i) => P[i * n + i]);
  assertClose(maskGramDiagonal(mask, l), gram, 1e-12, 1e-14, "diag(DᵀMD)");
  for (let i = 0; i < n * n; i++) P[i] /= s2;
  for (let i = 0; i < n; i++) P[i * n + i] += 1 / mom.lambda[i];
  const yp = y.map((v, i) => 2 * v - mask[i]);
  const b = matVec(matT(MD, n, n), yp, n, n).map((v, i) => v / s2 + mom.mu[i] / mom.lambda[i]);
  const dense = choleskySolve(P, b, n)!;
  const prob = { y, op, sigmaY, layout: l, gramDiagonal: maskGramDiagonal(mask, l) };
  const cg = await posteriorMeanCG(prob, mom);
  assertClose(cg.x, dense, 1e-8, 1e-10, "CG posterior mean");
  const cgPlain = await posteriorMeanCG({ ...prob, gramDiagonal: undefined }, mom);
  assertClose(cgPlain.x, dense, 1e-8, 1e-10, "CG posterior mean, default preconditioner");
  const cov = spdInverse(P, n);
  const idx = [0, 5, 27, 50, 100, 143];
  const v = await posteriorVarianceCG(prob, mom, idx);
  assertClose(v, idx.map((i) => cov[i * n + i]), 1e-8, 0, "CG posterior variances");
  // perturbation samples: (x − m)ᵀ P (x − m) ~ χ²_n for exact posterior samples
  const r = streams(5).get("samples");
  const N = 300;
  let q = 0;
  for (let k = 0; k < N; k++) {
    const d = (await posteriorSampleCG(prob, mom, r)).x.map((x, i) => x - dense[i]);
    const pd = matVec(P, d, n, n);
    q += d.reduce((s, v, i) => s + v * pd[i], 0);
  }
  q /= N;
  const bound = 5 * Math.sqrt(2 * n / N);
  console.log(
    `CG iterations ${cg.iterations} (Jacobi with diag(DᵀMD)), ${cgPlain.iterations} (default); ` +
      `mean Mahalanobis² of samples ${q.toFixed(2)} (expected ${n} ± ${bound.toFixed(2)})`,
  );
  assert.ok(Math.abs(q - n) < bound);
});

Deno.test("exact model: CG on a diagonal operator agrees with the closed form, lossless and lossy", async () => {
  const blur = symBlur(8, 12);
  for (const lossy of [null, [5, 7] as [number, number]]) {
    const m = createExactModel({ imageShape: [1, 3, 8, 12], lossy, scale: 0.8 });
    const l = m.layout;
    const mom = modelMoments(m, promptTheta(m, "a sharp photo"));
    const { y } = simulate(l, mom, blur.op, 0.01, "cg-diag");
    const post = posteriorDiagonal(diagonalProblem(y, blur.hdiag, 0.01, l), mom);
    const cg = await posteriorMeanCG({ y, op: blur.op, sigmaY: 0.01, layout: l }, mom);
    assertClose(cg.x, post.mean, 1e-8, 1e-10, `lossy=${lossy}`);
    const v = await posteriorVarianceCG({ y, op: blur.op, sigmaY: 0.01, layout: l }, mom, [
      0,
      7,
      30,
    ]);
    assertClose(v, [0, 7, 30].map((i) => post.variance[i]), 1e-8, 0, "variances");
  }
});

Deno.test("exact model: closed forms with the blur operator plugin (symmetric boundary, its dctDiagonal)", async () => {
  const shape = [1, 3, 16, 24];
  const reg = new PluginRegistry().registerAll(operatorPlugins);
  const op = await createOperator(
    reg,
    "blur:sigma=1.5,boundary=symmetric",
    shape,
    0,
  ) as BlurOperator;
  assert.ok(op.dctDiagonal, "symmetric Gaussian blur exposes its DCT diagonal");
  const l = model.layout;
  const mom = modelMoments(model, promptTheta(model, "a sharp photo"));
  const op64 = linearOperator64(op);
  // A x = D(h · E x) for a 3-channel image (A commutes with the colour transform).
  const x = randomImage(3 * H * W, "blur-x");
  const hx = encode64(x, l).map((v, i) => v * op.dctDiagonal![i % (H * W)]);
  assertClose(await op64.forward(x), decode64(hx, l), 0, 1e-6, "A = D diag(h) E");
  const { y } = simulate(
    l,
    mom,
    {
      forward: (v) => decode64(encode64(v, l).map((u, i) => u * op.dctDiagonal![i % (H * W)]), l),
      adjoint: (v) => v,
    },
    0.01,
    "blur-y",
  );
  const post = posteriorDiagonal(diagonalProblem(y, op.dctDiagonal!, 0.01, l), mom);
  const cg = await posteriorMeanCG({ y, op: op64, sigmaY: 0.01, layout: l }, mom, { tol: 1e-7 });
  assert.ok(
    relErr(cg.x, post.mean) < 1e-5,
    `CG through the plugin vs closed form: ${relErr(cg.x, post.mean)}`,
  );
});
